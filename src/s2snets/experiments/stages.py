"""The pipeline's stages as functions: each builds its model, trains it (or finds it finished) and returns it.

Every stage is keyed by a hash of everything that determines its result (its config, the data, the seed and the
keys of the stages it builds on), so a finished stage is skipped and an interrupted one resumes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import torch
from torch import nn

from s2snets import zoo
from s2snets.checkpoint import load_user_weights
from s2snets.config import RunConfig, StageConfig, classifier_weights, config_hash
from s2snets.data import ImageSet
from s2snets.models import build_classifier, build_segnet
from s2snets.models.flat import FlatAutoencoder
from s2snets.rundir import RunDir
from s2snets.runtime import Runtime
from s2snets.train import StageResult, autoencoder_stage, classifier_stage, finetune_stage, train_stage
from s2snets.zoo import sha256_file

log = logging.getLogger("s2snets")


@dataclass
class Context:
    """What every stage needs: the config, the run directory, the device, the data and how to report."""

    config: RunConfig
    run: RunDir
    runtime: Runtime
    train: ImageSet
    test: ImageSet
    progress: bool = True

    @property
    def data_key(self) -> str:
        d = self.config.data
        return config_hash(d, len(self.train), len(self.test), self.train.name)

    def say(self, message: str) -> None:
        """A stage message: to the ``s2snets`` logger (the CLI shows it; the run's log.txt keeps it)."""
        if self.runtime.is_main:
            log.info(message)


class Countdown:
    """Counts finished units of a plan and says how many are left and when they should be done."""

    def __init__(self, total: int):
        self.total, self.done, self.started = total, 0, time.perf_counter()

    def tick(self) -> str:
        self.done += 1
        elapsed = time.perf_counter() - self.started
        eta = elapsed / self.done * (self.total - self.done)
        return f"[{self.done}/{self.total}, {elapsed / 60:.1f} min so far, ETA {eta / 60:.1f} min]"


def stage_steps(ctx: Context, cfg: StageConfig) -> int:
    """Optimizer steps a stage config gives on this run's training split."""
    return cfg.max_steps or cfg.epochs * (len(ctx.train) // max(cfg.batch_size, 1))


def plan_text(ctx: Context) -> str:
    """What the pipeline will do, stage by stage, said before it starts."""
    c = ctx.config
    pretrained = classifier_weights(c)
    from_zoo = [
        n for n in c.classifiers if n not in pretrained and zoo_entry_for(ctx, "classifier", n, c.classifier_downsample, c.seed)
    ]
    trained = [n for n in c.classifiers if n not in from_zoo and n not in pretrained]
    ae = "from the zoo" if zoo_entry_for(ctx, "autoencoder", c.autoencoder.upsample) else f"{stage_steps(ctx, c.pretrain)} steps"
    parts = []
    if pretrained:
        parts.append(f"{len(pretrained)} pretrained classifier(s) from weights files")
    if from_zoo:
        parts.append(f"{len(from_zoo)} classifier(s) from the zoo")
    if trained:
        parts.append(f"{len(trained)} classifier(s) x {stage_steps(ctx, c.train_classifier)} steps")
    parts += [f"autoencoder {ae}", f"{len(c.classifiers)} decoder fine-tuning(s) x {stage_steps(ctx, c.finetune)} steps"]
    evaluated = min(len(ctx.test), c.measure.eval_limit or len(ctx.test))
    parts.append(f"evaluation on {evaluated} test images (finished stages are skipped)")
    return "plan: " + "; ".join(parts)


@dataclass
class Trained:
    model: nn.Module
    key: str
    result: StageResult


def _run_stage(ctx: Context, stage, stage_cfg: StageConfig, seed: int, name: str, key: str) -> StageResult:
    steps = stage_steps(ctx, stage_cfg)
    if 0 < steps < 20:
        ctx.say(f"{name}: only {steps} training steps; a result this short is a smoke test, not a finding")
    return train_stage(
        stage,
        ctx.train,
        stage_cfg,
        seed=seed,
        checkpoint=ctx.run.checkpoint(name),
        key=key,
        runtime=ctx.runtime,
        progress=ctx.progress,
        log=ctx.say,
        metrics_csv=ctx.run.metrics_csv(name),
        tensorboard=ctx.run.root / "tensorboard" if ctx.config.tensorboard else None,
        workers=ctx.config.data.workers,
    )


def zoo_entry_for(ctx: Context, kind: str, arch: str, downsample: str = "native", seed: int = 0, variant: str = ""):
    """The zoo entry that can stand in for this stage, or None (zoo off, other data, or not in the zoo)."""
    d = ctx.config.data
    if not ctx.config.use_zoo or d.dataset != zoo.ZOO_DATA.dataset or d.size != zoo.ZOO_DATA.size or d.channels != 1:
        return None
    if kind == "autoencoder" and arch != zoo.FLAT and ctx.config.autoencoder.preset != zoo.AUTOENCODER_PRESET:
        return None
    entry = zoo.ZooEntry(kind, arch, downsample, seed, variant)
    return entry if zoo.has_weights(entry) else None


def _from_zoo(ctx: Context, entry) -> Trained:
    model = zoo.load_zoo_model(entry).to(ctx.runtime.device)  # sha256 checked there
    record = zoo.read_manifest()["entries"][entry.name]
    score = f"test top-1 {record['test_top1']:.2%}" if "test_top1" in record else f"test PSNR {record['test_psnr_db']:.2f} dB"
    ctx.say(f"{entry.name}: loaded from the zoo ({score} on the full test split)")
    result = StageResult(f"zoo-{entry.name}", int(record.get("steps", 0)), [], 0.0, skipped=True)
    return Trained(model, config_hash("zoo", entry.name, record["sha256"]), result)


def train_classifier(
    ctx: Context,
    name: str,
    downsample: str = "native",
    seed: int | None = None,
    stage_cfg: StageConfig | None = None,
    tag: str = "",
) -> Trained:
    """The classifier: from the zoo when it has this (family, downsampling, seed) for this data, else trained."""
    seed = ctx.config.seed if seed is None else seed
    weights = classifier_weights(ctx.config).get(name)
    if weights is not None:  # pretrained by the user, as the paper used torchvision's classifiers: not trained
        model = build_classifier(
            name, ctx.train.num_classes, ctx.train.channels, downsample, weights=weights, input_size=ctx.train.size
        ).to(ctx.runtime.device)
        ctx.say(f"classifier {name}: pretrained weights from {weights}")
        result = StageResult(f"classifier-{name}{tag}", 0, [], 0.0, skipped=True)
        return Trained(model.eval(), config_hash("pretrained", name, downsample, sha256_file(weights)), result)
    entry = zoo_entry_for(ctx, "classifier", name, downsample, seed)
    if entry is not None:
        return _from_zoo(ctx, entry)
    stage_cfg = stage_cfg or ctx.config.train_classifier
    torch.manual_seed(seed)
    model = build_classifier(name, ctx.train.num_classes, ctx.train.channels, downsample, input_size=ctx.train.size)
    key = config_hash("classifier", name, downsample, stage_cfg, seed, ctx.data_key)
    stage_name = f"classifier-{name}{tag}"
    return Trained(model, key, _run_stage(ctx, classifier_stage(stage_name, model), stage_cfg, seed, stage_name, key))


def build_autoencoder(ctx: Context, upsample: str) -> nn.Module:
    """The config's SegNet preset with decoder ``upsample``, or ("flat") the grid-free autoencoder."""
    if upsample == "flat":
        return FlatAutoencoder(ctx.train.channels)
    return build_segnet(ctx.config.autoencoder.preset, ctx.train.channels, upsample)


def pretrain_autoencoder(ctx: Context, upsample: str, seed: int | None = None, lossy: bool = False) -> Trained:
    """The pretrained autoencoder: from the zoo when it has this upsampling for this data, else trained (MSE).
    ``lossy``: the paper's condition, pretrained only ``autoencoder.lossy_steps`` steps (the zoo's lossy entry)."""
    entry = zoo_entry_for(ctx, "autoencoder", upsample, seed=seed or 0, variant="lossy" if lossy else "")
    seed = ctx.config.seed if seed is None else seed
    if entry is not None:
        return _from_zoo(ctx, entry)
    torch.manual_seed(seed)
    model = build_autoencoder(ctx, upsample)
    encoder_weights = ctx.config.autoencoder.encoder_weights
    init = ""
    if encoder_weights:  # the paper's SegNet starts from a VGG16 encoder
        model.load_vgg16(load_user_weights(encoder_weights))
        init = sha256_file(encoder_weights)
        ctx.say(f"autoencoder encoder initialised from VGG16 weights {encoder_weights}")
    recipe = ctx.config.pretrain
    if lossy:
        recipe = dataclasses.replace(recipe, epochs=1, max_steps=ctx.config.autoencoder.lossy_steps)
    key = config_hash(
        "autoencoder", ctx.config.autoencoder.preset, upsample, recipe, seed, ctx.data_key, *([init] if init else [])
    )
    name = f"autoencoder-{upsample}" + ("-lossy" if lossy else "") + (f"-s{seed}" if seed != ctx.config.seed else "")
    return Trained(model, key, _run_stage(ctx, autoencoder_stage(name, model), recipe, seed, name, key))


def finetune_through(
    ctx: Context,
    plain: Trained,
    classifier: Trained,
    upsample: str,
    seed: int | None = None,
    stage_cfg: StageConfig | None = None,
    tag: str | None = None,
) -> Trained:
    """A copy of the pretrained autoencoder whose decoder is fine-tuned through the frozen classifier."""
    seed = ctx.config.seed if seed is None else seed
    stage_cfg = stage_cfg or ctx.config.finetune
    model = build_autoencoder(ctx, upsample)
    model.load_state_dict(plain.model.state_dict())
    key = config_hash("finetune", plain.key, classifier.key, stage_cfg, seed)
    name = f"finetune-{upsample}-{tag or classifier.result.name.removeprefix('classifier-')}"
    result = _run_stage(ctx, finetune_stage(name, model, classifier.model), stage_cfg, seed, name, key)
    return Trained(model, key, result)
