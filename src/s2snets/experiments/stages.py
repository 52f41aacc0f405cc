"""The pipeline's stages as functions: each builds its model, trains it (or finds it finished) and returns it.

Every stage is keyed by a hash of everything that determines its result (its config, the data, the seed and the
keys of the stages it builds on), so a finished stage is skipped and an interrupted one resumes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from s2snets.checkpoint import load_checkpoint, load_module
from s2snets.config import RunConfig, StageConfig, config_hash
from s2snets.data import ImageSet
from s2snets.models import build_classifier, build_segnet
from s2snets.rundir import RunDir
from s2snets.runtime import Runtime
from s2snets.train import StageResult, autoencoder_stage, classifier_stage, finetune_stage, train_stage


@dataclass
class Context:
    """What every stage needs: the config, the run directory, the device, the data and how to report."""

    config: RunConfig
    run: RunDir
    runtime: Runtime
    train: ImageSet
    test: ImageSet
    progress: bool = True
    echo: Callable[[str], None] = print

    @property
    def data_key(self) -> str:
        d = self.config.data
        return config_hash(d, len(self.train), len(self.test), self.train.name)

    def say(self, message: str) -> None:
        self.run.log(message)
        if self.runtime.is_main:
            self.echo(message)


@dataclass
class Trained:
    model: nn.Module
    key: str
    result: StageResult


def _fit(ctx: Context, stage, stage_cfg: StageConfig, seed: int, name: str, key: str) -> StageResult:
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
    )


def train_classifier(
    ctx: Context,
    name: str,
    downsample: str = "native",
    seed: int | None = None,
    stage_cfg: StageConfig | None = None,
    tag: str = "",
) -> Trained:
    seed = ctx.config.seed if seed is None else seed
    stage_cfg = stage_cfg or ctx.config.train_classifier
    torch.manual_seed(seed)
    model = build_classifier(name, ctx.train.num_classes, ctx.train.channels, downsample, input_size=ctx.train.size)
    key = config_hash("classifier", name, downsample, stage_cfg, seed, ctx.data_key)
    stage_name = f"classifier-{name}{tag}"
    return Trained(model, key, _fit(ctx, classifier_stage(stage_name, model), stage_cfg, seed, stage_name, key))


def build_autoencoder(ctx: Context, upsample: str) -> nn.Module:
    return build_segnet(ctx.config.autoencoder.preset, ctx.train.channels, upsample)


def pretrain_autoencoder(ctx: Context, upsample: str | None = None, seed: int | None = None) -> Trained:
    upsample = upsample or ctx.config.autoencoder.upsample
    seed = ctx.config.seed if seed is None else seed
    torch.manual_seed(seed)
    model = build_autoencoder(ctx, upsample)
    key = config_hash("autoencoder", ctx.config.autoencoder.preset, upsample, ctx.config.pretrain, seed, ctx.data_key)
    name = f"autoencoder-{upsample}"
    return Trained(model, key, _fit(ctx, autoencoder_stage(name, model), ctx.config.pretrain, seed, name, key))


def finetune_decoder(
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
    tensors, _ = load_checkpoint(ctx.run.checkpoint(f"autoencoder-{upsample}"))
    load_module(model, tensors, "model/autoencoder", "the pretrained autoencoder")
    key = config_hash("finetune", plain.key, classifier.key, stage_cfg, seed)
    name = f"finetune-{upsample}-{tag or classifier.result.name.removeprefix('classifier-')}"
    result = _fit(ctx, finetune_stage(name, model, classifier.model), stage_cfg, seed, name, key)
    return Trained(model, key, result)
