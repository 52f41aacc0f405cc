"""The open question as a calibrated experiment: are S2SNets' constant patterns checkerboard artifacts of the
classifier's strided layers, seen through the backward pass?

Design (docs/measures.md, "The checkerboard question"). For each classifier of the grid (the unit of replication)
and each decoder kind, the decoder of a pretrained autoencoder is fine-tuned once per arm (``interventions``:
control, sham, band_stop, stride_smooth, shift_y, shift_x, shift_period) and replicate (its own seed; replicate r
starts from the (r mod n)-th zoo autoencoder of that kind). The planted controls (``controls``) run the same arms
on classifiers whose answer is known by construction; the rules (``verdict``) decide each cell and each control,
and a real cell's verdict is reported only when every control was recovered.

Every fine-tuning (and every classifier probe) is a keyed job (``grid``): ``s2snets hypothesis --jobs N`` runs them
in N worker processes, ``--shard i/N`` on N machines sharing the run directory; any split gives the same numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import logging
import os
import time
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from s2snets.checkpoint import save_checkpoint
from s2snets.config import RunConfig, classifier_weights, config_hash, from_dict, to_dict, validate
from s2snets.errors import ConfigError
from s2snets.experiments import calibration as calibration_curve
from s2snets.experiments import verdict
from s2snets.experiments.controls import CONTROLS, Control, PlantedClassifier, planted_construction
from s2snets.experiments.grid import Job, run_jobs
from s2snets.experiments.interventions import ARMS, READOUTS, Replicate, arm_models, pattern_of, readout_values
from s2snets.experiments.odena import odena_probe
from s2snets.experiments.registration import register, registration, registration_text
from s2snets.experiments.replicate import load_context
from s2snets.experiments.schema import CalibrationSummary, HypothesisResult
from s2snets.experiments.stages import Context, Trained, pretrain_autoencoder, train_classifier, zoo_entry_for
from s2snets.layers.gradient import band_stop_response, sham_removed_share
from s2snets.metrics.gradients import input_gradients
from s2snets.metrics.lattice import (
    band_amplitude,
    lattice_coefficients,
    peak_amplitude,
    phase_modulation,
    phase_scrambled_floor,
    random_sign_floor,
)
from s2snets.metrics.lint import lint_model
from s2snets.metrics.nmi import inter_nmi
from s2snets.metrics.reconstruction import accuracy
from s2snets.metrics.sensitivity import phase_sensitivity, read_ratio
from s2snets.metrics.spectrum import lattice_contrast, power_spectrum
from s2snets.metrics.stats import mean_ci, welch_difference
from s2snets.names import SMALL_FAMILIES
from s2snets.rundir import RunDir
from s2snets.runtime import Runtime, init_runtime
from s2snets.train import autoencode, autoencoder_stage, finetune_stage, predict_logits, to_pixels, train_stage
from s2snets.version import __version__

log = logging.getLogger("s2snets")
MEASURES_VERSION = 5  # bump when a job's measures change: old records are then recomputed

# The arms each planted control runs: those its truth's rule reads, and those a wrong verdict would need (and the
# lattice-shift readouts, where the config runs them).
CONTROL_ARMS = {
    "additive": ("control", "band_stop", "stride_smooth", "shift_y", "shift_x", "shift_period", "lattice_shift_y",
                 "lattice_shift_x", "lattice_shift_period", "sham_band_stop"),
    "multiplicative": ("control", "band_stop", "stride_smooth", "shift_y", "shift_x", "shift_period", "lattice_shift_y",
                       "lattice_shift_x", "lattice_shift_period", "sham_band_stop"),
    "ignored": ("control", "band_stop", "stride_smooth"),
    "none": ("control",),
    "decoder": ("control", "band_stop", "lattice_shift_y", "lattice_shift_x", "lattice_shift_period", "sham_band_stop"),
    "zero_insertion": ("control", "band_stop", "stride_smooth", "shift_y", "shift_x", "shift_period", "lattice_shift_y",
                       "lattice_shift_x", "lattice_shift_period", "sham_band_stop"),
    "null_unpool": ("control", "band_stop", "lattice_shift_y", "lattice_shift_x", "lattice_shift_period", "sham_band_stop"),
    "null_resize_conv": ("control", "band_stop", "lattice_shift_y", "lattice_shift_x", "lattice_shift_period",
                         "sham_band_stop"),
}  # fmt: skip


def control_rows(h) -> list[tuple[str, Control, float]]:
    """(row name, control, strength) per calibration row: a scalable control once per ``control_strengths`` entry
    ('additive@0.1'; at 1 its plain name), the others once."""
    rows = []
    for name in h.controls:
        control = CONTROLS[name]
        for s in h.control_strengths if control.scalable else [1.0]:
            rows.append((name if s == 1.0 else f"{name}@{s:g}", control, float(s)))
    return list({r[0]: r for r in rows}.values())


ROLES = ("probe", "plain", "cell", "control", "sham")


# ----------------------------------------------------------------------------------------------- the grid's cells
@dataclass(frozen=True)
class GridClassifier:
    """One classifier of the grid: ``name`` as the stages build it, ``downsample``/``seed`` for zoo families, and
    the ``cell`` it belongs to (a family and downsampling, or its own name)."""

    name: str
    downsample: str
    seed: int
    cell: str


def grid_classifiers(config: RunConfig) -> list[GridClassifier]:
    h = config.hypothesis
    out = [GridClassifier(f, d, s, f"{f}/{d}") for f, d, s in itertools.product(h.families, h.downsamples, h.seeds)]
    for name in h.classifiers:
        family, _, rest = name.partition("-")
        downsample, _, seed = rest.rpartition("-s")
        if seed.isdigit() and ":" not in name:  # a zoo entry name: it joins its family's cell
            out.append(GridClassifier(family, downsample, int(seed), f"{family}/{downsample}"))
        else:
            out.append(GridClassifier(name, "native", config.seed, name))
    return list(dict.fromkeys(out))


def analysis_period(model: nn.Module, channels: int, size: int) -> int:
    """The lint's dominant input-gradient period for the classifier (the largest over the axes); 2 if it predicts none."""
    cpu = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format)
    report = lint_model(cpu, torch.zeros(1, channels, size, size))
    return max(report.predicted_periods, default=2)


# ----------------------------------------------------------------------------------------------- the worker's view
class GridContext:
    """What a job needs, built once per process: the run's stages (data, zoo), the evaluation images, and caches of
    classifiers, autoencoders and plain reconstructions."""

    def __init__(self, config: RunConfig, run: RunDir, runtime: Runtime):
        self.config, self.runtime = config, runtime
        self.stages: Context = load_context(config, run, runtime, progress=False)
        self.eval = self.stages.test.head(config.measure.eval_limit, seed=config.seed).load()
        self.probe = self.eval.head(config.measure.probe_images, seed=config.seed)
        self._classifiers: dict[tuple, Trained] = {}
        self._autoencoders: dict[tuple, Trained] = {}
        self._plain: dict[tuple, Tensor] = {}

    def classifier(self, c: GridClassifier) -> Trained:
        key = (c.name, c.downsample, c.seed)
        if key not in self._classifiers:
            trained = train_classifier(self.stages, c.name, c.downsample, seed=c.seed, tag=f"-{c.downsample}-s{c.seed}")
            trained.model.eval()
            for p in trained.model.parameters():
                p.requires_grad_(False)
            self._classifiers[key] = trained
        return self._classifiers[key]

    def autoencoder(self, decoder: str, seed: int) -> Trained:
        if (decoder, seed) not in self._autoencoders:
            self._autoencoders[(decoder, seed)] = pretrain_autoencoder(self.stages, decoder, seed)
        return self._autoencoders[(decoder, seed)]

    def plain_raw(self, decoder: str, seed: int, images: str = "eval") -> Tensor:
        """The plain autoencoder's raw outputs on the evaluation (or probe) images."""
        if (decoder, seed, images) not in self._plain:
            data = self.eval if images == "eval" else self.probe
            self._plain[(decoder, seed, images)] = autoencode(self.autoencoder(decoder, seed).model, data, self.runtime)
        return self._plain[(decoder, seed, images)]


def open_context(payload: dict) -> GridContext:
    """A worker's context from the parent's payload (module-level, so spawned workers can import it)."""
    config = from_dict(RunConfig, payload["config"])
    runtime = init_runtime(payload["device"], payload["amp"], payload["compile"])
    return GridContext(config, RunDir(payload["root"]), runtime)


@dataclass(frozen=True)
class JobSpec:
    """Everything that determines one job's record (its key is the hash of this, ``Job.key``).

    ``role``: probe (a classifier's checks), plain (the plain autoencoder's pattern), cell (a real classifier's
    fine-tuning), control (a planted one's), sham (the decoder's own loss). ``upstream``: the stage keys of the
    classifier and autoencoder it builds on, so retraining either re-runs it; ``base``: the run-wide key (the
    fine-tuning recipe, data, evaluation sizes, amp and device)."""

    role: str
    decoder: str
    autoencoder_seed: int
    replicate: int
    seed: int
    arm: str
    period: int
    base: str
    upstream: tuple[str, ...] = ()
    classifier: GridClassifier | None = None
    control: str | None = None
    planted: str | None = None
    construction: dict | None = None
    strength: float = 1.0  # the planted lattice's scale (hypothesis.control_strengths)
    arm_version: int = 1  # interventions.Arm.version: an arm that changes what it does re-keys its jobs

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"unknown job role '{self.role}'; use {', '.join(ROLES)}")
        if self.arm not in ARMS and self.arm not in ("probe", "plain"):
            raise ValueError(f"unknown arm '{self.arm}'; use {', '.join(ARMS)}")

    def record(self) -> dict:
        """The JSON form a ``grid.Job`` carries (and hashes)."""
        out = dataclasses.asdict(self)
        out["upstream"] = list(self.upstream)
        for name, default in (("strength", 1.0), ("arm_version", 1)):  # 0.3's specs had neither: their keys stay valid
            if out[name] == default:
                del out[name]
        return out

    @classmethod
    def from_record(cls, record: dict) -> JobSpec:
        c = record.get("classifier")
        return cls(**{**record, "upstream": tuple(record.get("upstream", ())),
                      "classifier": GridClassifier(**c) if c else None})  # fmt: skip

    @property
    def label(self) -> str:
        c = self.classifier
        who = f"{c.name}-{c.downsample}-s{c.seed}" if c else f"autoencoder s{self.autoencoder_seed}"
        return f"{self.control or self.role} {who} {self.decoder} r{self.replicate} {self.arm}"


def spec_of(job: Job) -> JobSpec:
    return JobSpec.from_record(job.spec)


def _classifier_of(ctx: GridContext, spec: JobSpec) -> nn.Module:
    assert spec.classifier is not None
    base = ctx.classifier(spec.classifier).model
    if not spec.planted:
        return base
    return PlantedClassifier(base, spec.planted, spec.period, ctx.eval.size, seed=spec.seed, scale=spec.strength)


# ----------------------------------------------------------------------------------------------- the jobs
def execute(ctx: GridContext, job: Job) -> dict:
    """Run one job (module-level: workers import it). A probe of a classifier, the plain autoencoder's pattern, or
    one fine-tuning and its measures."""
    spec = spec_of(job)
    if spec.role == "probe":
        return probe_classifier(ctx, spec)
    if spec.role == "plain":
        raw = ctx.plain_raw(spec.decoder, spec.autoencoder_seed)
        return pattern_measures(ctx.eval, to_pixels(ctx.eval, raw), spec.period)
    return finetune_and_measure(ctx, spec, job.key)


def probe_classifier(ctx: GridContext, spec: JobSpec) -> dict:
    """The manipulation checks of the gradient arms (band-stop, lattice shift, matched sham) and the forward read
    test of one (planted) classifier, on the plain autoencoder's reconstructions of the probe images (what the
    classifier sees when fine-tuning starts)."""
    period = spec.period
    classifier = _classifier_of(ctx, spec)
    x = ctx.runtime.to_device(ctx.plain_raw(spec.decoder, spec.autoencoder_seed, "probe"))
    y = ctx.probe.labels.to(ctx.runtime.device)
    g = torch.cat([input_gradients(classifier, x[s : s + 128], y[s : s + 128]) for s in range(0, len(x), 128)]).double()
    g = g - g.mean((-2, -1), keepdim=True)
    power = power_spectrum(g).sum(1)  # (N, H, W), channels summed
    h, w = g.shape[-2:]
    band = 1 - band_stop_response(h, w, period, power.device).double()
    share = [float((p * band).sum() / p.sum()) if float(p.sum()) > 0 else 0.0 for p in power]
    sensitivity = phase_sensitivity(classifier, x, period, seed=ctx.config.seed)
    shares = mean_ci(share)
    matched = sham_removed_share(g.cpu(), period).mean(-1)  # (N,): the sham's removed power / the band's
    return {
        "band_share": shares["mean"], "band_share_high": shares["high"],
        "contrast": lattice_contrast(power.mean(0).float().cpu(), period),
        "modulation": phase_modulation(g, period), "modulation_floor": phase_scrambled_floor(g.cpu(), period),
        "sensitivity": sensitivity.tolist(), "read_ratio": read_ratio(sensitivity),
        "sham_matched": float(matched.median()),
    }  # fmt: skip


def finetune_and_measure(ctx: GridContext, spec: JobSpec, key: str) -> dict:
    runtime, period, arm = ctx.runtime, spec.period, spec.arm
    plain = ctx.autoencoder(spec.decoder, spec.autoencoder_seed)
    model = copy.deepcopy(plain.model)
    classifier = None if arm == "sham" else _classifier_of(ctx, spec)
    autoencoder, judge = arm_models(arm, model, classifier, period)
    name = f"grid-{key}"
    stage = autoencoder_stage(name, autoencoder, decoder_only=True) if judge is None else finetune_stage(name, autoencoder, judge)
    checkpoint = ctx.stages.run.root / "grid" / f"{key}.ckpt.safetensors"
    result = train_stage(
        stage,
        ctx.stages.train,
        ctx.config.finetune,
        seed=spec.seed,
        checkpoint=checkpoint,
        key=key,
        runtime=runtime,
        progress=False,
    )
    raw = autoencode(autoencoder, ctx.eval, runtime)
    record = pattern_measures(ctx.eval, to_pixels(ctx.eval, raw), period)
    record.update({"seconds": result.seconds, "final_loss": result.final_loss})
    if classifier is not None:
        record["finetuned_top1"] = _top1(classifier, ctx, raw)
    if spec.role == "cell" and arm == "control":  # what the claims table reads (the paper's accuracies and nMI)
        plain_raw = ctx.plain_raw(spec.decoder, spec.autoencoder_seed)
        record.update({
            "original_top1": accuracy(predict_logits(classifier, ctx.eval, runtime), ctx.eval.labels, ctx.eval.num_classes)["top1"],
            "plain_top1": _top1(classifier, ctx, plain_raw),
            "inter_nmi": _inter_nmi(ctx, to_pixels(ctx.eval, raw)),
            "plain_inter_nmi": _inter_nmi(ctx, to_pixels(ctx.eval, plain_raw)),
        })  # fmt: skip
    for path in (checkpoint, checkpoint.with_suffix(".json")):  # the record is the result; the decoder is not kept
        path.unlink(missing_ok=True)
    return record


def pattern_measures(data, reconstructions: Tensor, period: int) -> dict:
    """The constant pattern of a set of reconstructions (N, C, H, W) in [0, 1] against the originals, and its
    lattice measures with their noise floors (docs/measures.md)."""
    errors = (reconstructions.double() - data.images.double() / 255.0).mean(1)  # (N, H, W), channel mean
    pattern = errors.mean(0)
    coefficients = lattice_coefficients(pattern, period)
    return {
        "peak": float(peak_amplitude(pattern, period)),
        "peak_floor": random_sign_floor(errors, lambda m: peak_amplitude(m, period)),
        "band": float(band_amplitude(pattern, period)),
        "band_floor": random_sign_floor(errors, lambda m: band_amplitude(m, period)),
        "coefficients": [[float(c.real), float(c.imag)] for c in coefficients],
        "pattern": pattern.float().tolist(),
    }


def _top1(classifier: nn.Module, ctx: GridContext, raw: Tensor) -> float:
    logits = predict_logits(classifier, ctx.eval, ctx.runtime, inputs=raw)
    return accuracy(logits, ctx.eval.labels, ctx.eval.num_classes)["top1"]


def _inter_nmi(ctx: GridContext, pixels: Tensor) -> float:
    return float(inter_nmi(pixels, ctx.eval.labels, ctx.config.measure.nmi_pairs, ctx.config.seed).mean())


# ----------------------------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Upstream:
    """The stage keys the jobs build on: each classifier's (by its cell member) and each autoencoder's."""

    classifiers: dict[GridClassifier, str]
    autoencoders: dict[tuple[str, int], str]

    def of(self, c: GridClassifier | None, decoder: str, seed: int) -> tuple[str, ...]:
        return ((self.classifiers[c],) if c is not None else ()) + (self.autoencoders[(decoder, seed)],)


def plan(config: RunConfig, classifiers: list[GridClassifier], periods: dict[str, int], base_key: str,
         upstream: Upstream) -> list[Job]:  # fmt: skip
    """Every job of the experiment, in a deterministic order (shards split it by index)."""
    h = config.hypothesis
    arms = ["control", *h.interventions]
    specs: list[JobSpec] = []

    def add(role: str, c: GridClassifier | None, decoder: str, r: int, arm: str, period: int, unit: int = 0,
            control: tuple[str, Control, float] | None = None) -> None:  # fmt: skip
        # The zoo's autoencoders of a decoder kind take turns over classifiers and replicates: even one replicate
        # per classifier rests on every one of them.
        ae_seed = h.autoencoder_seeds[(unit + r) % len(h.autoencoder_seeds)]
        row, planted, strength = (control[0], control[1].planted, control[2]) if control else (None, None, 1.0)
        specs.append(JobSpec(role, decoder, ae_seed, r, config.seed + r, arm, period, base_key, upstream.of(c, decoder, ae_seed),
                             c, row, planted, planted_construction(planted, strength) if planted else None, strength,
                             ARMS[arm].version if arm in ARMS else 1))  # fmt: skip

    for c in classifiers if h.upsamples else []:  # no decoder kind: a calibration-only run, no real cell
        i = [m for m in classifiers if m.cell == c.cell].index(c)
        add("probe", c, h.upsamples[0], 0, "probe", periods[c.cell], unit=i)
        for u, r, arm in itertools.product(h.upsamples, range(h.replicates), arms):
            add("cell", c, u, r, arm, periods[c.cell], unit=i)
    bases = [c for c in classifiers if c.cell == classifiers[0].cell][: h.control_classifiers]
    for row in control_rows(h):
        control = row[1]
        for i, c in enumerate(bases):
            p = periods[c.cell]
            add("probe", c, control.decoder, 0, "probe", p, unit=i, control=row)
            for r, arm in itertools.product(range(h.control_replicates), CONTROL_ARMS[control.name]):
                if arm in arms:
                    add("control", c, control.decoder, r, arm, p, unit=i, control=row)
    decoders = list(dict.fromkeys([*h.upsamples, *(CONTROLS[n].decoder for n in h.controls)]))
    replicates = range(max(h.replicates, h.control_replicates))
    for u, p, r, a in itertools.product(decoders, sorted(set(periods.values())), replicates, range(len(h.autoencoder_seeds))):
        add("sham", None, u, r, "sham", p, unit=a - r)  # one per autoencoder and seed
    if any(ARMS[a].lattice for a in h.interventions):  # the induced pattern needs the plain autoencoder's own
        for u, p, a in itertools.product(decoders, sorted(set(periods.values())), range(len(h.autoencoder_seeds))):
            add("plain", None, u, 0, "plain", p, unit=a)
    return [Job(spec.record(), spec.label) for spec in specs]


# ----------------------------------------------------------------------------------------------- the run
def hypothesis(
    config: RunConfig,
    run: RunDir,
    runtime: Runtime,
    progress: bool = True,
    *,
    jobs: int | None = None,
    shard: tuple[int, int] | None = None,
) -> HypothesisResult | dict:
    """Run (or resume) the experiment and its statistics; writes metrics/hypothesis.json when every job is done.

    ``jobs``: fine-tunings at once (None: the config's ``hypothesis.jobs``, 0 = cores / job_threads); ``shard``: this
    machine's share (i, N). Returns the result, or {"incomplete": ...} when other shards still have jobs to run."""
    validate(config)
    with run.logging():
        return run_experiment(config, run, runtime, progress, jobs, shard)


def _check_controls(config: RunConfig, classifiers: list[GridClassifier]) -> None:
    h = config.hypothesis
    first = [c for c in classifiers if c.cell == classifiers[0].cell]
    if h.controls and len(first) < h.control_classifiers:
        raise ConfigError(
            f"hypothesis.control_classifiers = {h.control_classifiers}, but the first cell ({classifiers[0].cell}) has "
            f"{len(first)} classifier(s) to plant the controls on; lower it or add seeds"
        )


def _check_zoo_classifiers(stages: Context, classifiers: list[GridClassifier]) -> None:
    """No silent substitution: where the zoo serves this data, a family classifier it lacks would be trained for the
    config's few steps and pooled with converged ones; refuse it before any work, saying what to do."""
    config = stages.config
    if zoo_entry_for(stages, "classifier", "alexnet_s", "native", 0) is None:  # the zoo does not serve this run at all
        return
    weights = classifier_weights(config)
    missing = [f"{c.name}-{c.downsample}-s{c.seed}" for c in classifiers
               if c.name in SMALL_FAMILIES and c.name not in weights and zoo_entry_for(stages, "classifier", c.name, c.downsample, c.seed) is None]  # fmt: skip
    if missing:
        raise ConfigError(
            f"the zoo has no {', '.join(missing)}: the grid would train {'it' if len(missing) == 1 else 'them'} for the "
            f"config's train_classifier steps and pool {'it' if len(missing) == 1 else 'them'} with converged classifiers. "
            f"Train {'it' if len(missing) == 1 else 'them'} to the zoo's bar first ('s2snets zoo train --only {' '.join(missing)}') "
            "or choose seeds the zoo holds ('s2snets zoo list')"
        )


def run_experiment(config, run, runtime, progress, jobs, shard) -> HypothesisResult | dict:
    """``hypothesis``'s work on a config already validated, inside the run's logging."""
    started = time.perf_counter()
    h = config.hypothesis
    classifiers = grid_classifiers(config)
    _check_controls(config, classifiers)
    payload = {"config": to_dict(config), "root": str(run.root), "device": str(runtime.device),
               "amp": runtime.amp_mode,
               "compile": runtime.compile}  # fmt: skip
    ctx = GridContext(config, run, runtime)
    _check_zoo_classifiers(ctx.stages, classifiers)
    periods: dict[str, int] = {}
    for c in classifiers:  # trained here, once, before any worker needs them (the zoo's load instantly)
        model = ctx.classifier(c).model
        periods.setdefault(c.cell, analysis_period(model, ctx.eval.channels, ctx.eval.size))
    decoders = [*h.upsamples, *(CONTROLS[n].decoder for n in h.controls)]
    upstream = Upstream({c: ctx.classifier(c).key for c in classifiers},
                        {(u, s): ctx.autoencoder(u, s).key for u, s in itertools.product(decoders, h.autoencoder_seeds)})  # fmt: skip
    base_key = config_hash(
        "hypothesis", MEASURES_VERSION, __version__, config.finetune, config.measure.eval_limit, config.seed,
        ctx.stages.data_key, classifier_weights(config), h.job_threads,  # the models: their own keys, in each JobSpec
        config.measure.probe_images, config.measure.nmi_pairs, runtime.amp_mode, runtime.device.type,
    )  # fmt: skip
    job_list = plan(config, classifiers, periods, base_key, upstream)
    registered = register(config, run) if runtime.is_main else registration(config)  # before the first job runs
    ctx.stages.say(registration_text(registered) if "sha256" in registered else "registration: written by the main process")
    workers = jobs if jobs is not None else h.jobs
    workers = workers or max(1, (os.cpu_count() or 1) // h.job_threads)
    tunings = sum(j.spec["role"] not in ("probe", "plain") for j in job_list)
    ctx.stages.say(f"hypothesis: {len(job_list)} jobs ({tunings} fine-tunings), "
                   f"{workers} at once x {h.job_threads} thread(s)" + (f", shard {shard[0]}/{shard[1]}" if shard else ""))  # fmt: skip
    clock = time.perf_counter()

    def on_done(job: Job, record: dict, done: int, total: int) -> None:
        elapsed = time.perf_counter() - clock
        eta = elapsed / done * (total - done)
        amplitude = (
            f"peak {record['peak']:.5f}, band {record['band']:.5f}"
            if "peak" in record
            else f"read ratio {record['read_ratio']:.2f}"
        )
        ctx.stages.say(f"  [{done}/{total}, {elapsed / 60:.1f} min, ETA {eta / 60:.1f} min] {job.label}: {amplitude}")

    records = run_jobs(job_list, root=run.root, execute=execute, initializer=open_context, payload=payload,
                       local_context=ctx, workers=workers, threads=h.job_threads, shard=shard, on_done=on_done)  # fmt: skip
    if len(records) < len(job_list):
        missing = len(job_list) - len(records)
        ctx.stages.say(f"hypothesis: {missing} job(s) are left to other shards; run without --shard to merge")
        return {"incomplete": {"jobs": len(job_list), "missing": missing}}
    result = summarise(job_list, records, config)
    result.update({"registration": registered, "periods": periods, "version": __version__, "config": to_dict(h), "image_size": ctx.eval.size,
                   "jobs": len(job_list), "seconds_total": time.perf_counter() - started})  # fmt: skip
    if h.odena_probe:
        result["odena"] = odena_probe(ctx.stages, config)
    if runtime.is_main:
        run.write_json("hypothesis", result)
        save_checkpoint(run.metrics("hypothesis-arrays").with_suffix(".safetensors"), mean_patterns(job_list, records),
                        {"kind": "hypothesis-arrays"})  # fmt: skip
    return result


# ----------------------------------------------------------------------------------------------- statistics
def finished(jobs: list[Job], records: dict) -> list[tuple[JobSpec, dict]]:
    """(typed spec, record) of every job that has a record, in plan order."""
    return [(spec_of(j), records[j.key]) for j in jobs if j.key in records]


def replicates_of(done: list[tuple[JobSpec, dict]], c: GridClassifier, decoder: str, role: str, control: str | None,
                  replicate: int) -> Replicate | None:  # fmt: skip
    """One classifier's replicate: its arms' records with its sham's and its plain autoencoder's (None: no control arm)."""
    arms = {spec.arm: record for spec, record in done
            if spec.role == role and spec.classifier == c and spec.decoder == decoder and spec.control == control
            and spec.replicate == replicate}  # fmt: skip
    if "control" not in arms:
        return None
    first = next(spec for spec, _ in done if spec.role == role and spec.classifier == c and spec.decoder == decoder
                 and spec.control == control and spec.replicate == replicate and spec.arm == "control")  # fmt: skip

    def shared(role_: str, replicate_: int | None) -> dict | None:
        return next((record for spec, record in done if spec.role == role_ and spec.decoder == decoder
                     and spec.period == first.period and spec.autoencoder_seed == first.autoencoder_seed
                     and (replicate_ is None or spec.replicate == replicate_)), None)  # fmt: skip

    return Replicate(arms, first.period, plain=shared("plain", None), sham=shared("sham", replicate))


def summarise(jobs: list[Job], records: dict, config: RunConfig) -> dict:
    """Cells (real classifiers x decoder kind), the calibration table (one entry per planted control) and the answer."""
    h = config.hypothesis
    cells = []
    classifiers = grid_classifiers(config)
    done = finished(jobs, records)
    for cell_name in dict.fromkeys(c.cell for c in classifiers):
        members = [c for c in classifiers if c.cell == cell_name]
        for u in h.upsamples:
            cells.append(_decide(done, config, members, u, role="cell", control=None) | {"cell": cell_name, "upsample": u})
    calibration = []
    bases = [c for c in classifiers if c.cell == classifiers[0].cell][: h.control_classifiers]
    for name, control, strength in control_rows(h):
        decision = _decide(done, config, bases, control.decoder, role="control", control=name)
        calibration.append({
            "control": name, "truth": control.truth, "strided_truth": control.strided, "description": control.description,
            "decoder": control.decoder, "verdict": decision["decision"]["verdict"],
            "recovered": verdict.control_recovered(control.truth, decision["decision"], control.accepts), **decision,
            **({"strength": strength} if control.scalable else {}),
        })  # fmt: skip
    primary = primary_decision(cells, h)
    measured = [row for row in calibration if row["units"].get("follow_gain")]
    rows = calibration_curve.curve(measured, h.smallest_effect) if measured else []
    return {
        **({"calibration_curve": {"delta": h.smallest_effect, "rows": rows,
                                  "detection_limits": calibration_curve.detection_limits(rows),
                                  "false_positive": calibration_curve.false_positive_rate(rows)}} if rows else {}),  # fmt: skip
        "cells": cells, "calibration": calibration,  # 0.3's gate: its controls at their own strength, not the curve's
        "answer": verdict.answer(cells, [c for c in calibration if "@" not in c["control"]] if h.controls else None),
        **({"primary": primary} if primary else {}),
        "comparisons": compare_downsamplings(cells, h.alpha),
        "min_ratio": h.min_ratio, "alpha": h.alpha, "min_amplitude": h.min_amplitude, "runs": _claims_runs(done),
    }  # fmt: skip


def _decide(done: list[tuple[JobSpec, dict]], config: RunConfig, members: list[GridClassifier], decoder: str, *,
            role: str, control: str | None) -> dict:  # fmt: skip
    h = config.hypothesis
    replicates = h.replicates if role == "cell" else h.control_replicates
    per_unit: dict[str, list[list[float]]] = {}
    probes = []
    period = 2
    for c in members:
        probes += [record for spec, record in done if spec.role == "probe" and spec.classifier == c and spec.control == control][
            :1
        ]
        for r in range(replicates):
            run = replicates_of(done, c, decoder, role, control, r)
            if run is None:
                continue
            period = run.period
            for k, v in readout_values(run, h).items():
                per_unit.setdefault(k, [[] for _ in members])[members.index(c)].append(v)
    one = len(members) == 1  # a one-classifier cell: its replicates are the units (the claim is about it alone)
    units = {k: ([v for rows in lists for v in rows] if one else [sum(rows) / len(rows) for rows in lists if rows])
             for k, lists in per_unit.items()}  # fmt: skip
    for name in READOUTS:
        units.setdefault(name, [])
    decision = verdict.cell_verdict(units, probes, min_ratio=h.min_ratio, alpha=h.alpha, power=h.power,
                                    read_ratio=h.read_ratio, band_share=h.band_share)  # fmt: skip
    return {"decision": decision, "period": period, "unit": "fine-tuning replicate" if one else "classifier",
            "classifiers": [f"{c.name}-{c.downsample}-s{c.seed}" for c in members], "probes": probes, "units": units}  # fmt: skip


def primary_decision(cells: list[dict], h) -> dict | None:
    """The registered primary endpoint's rule on the registered primary cell (None when none is registered)."""
    if h.primary_endpoint != "follow_gain" or not h.primary_cell:
        return None
    cell = next((c for c in cells if f"{c['cell']}/{c['upsample']}" == h.primary_cell), None)
    if cell is None:
        return {"cell": h.primary_cell, "endpoint": h.primary_endpoint, "verdict": "not testable here",
                "why": f"the grid has no cell {h.primary_cell}"}  # fmt: skip
    amplitudes = [a for a in cell["units"].get("induced_peak", []) if a == a]
    decision = verdict.primary_verdict(cell["units"], delta=h.smallest_effect, alpha=h.alpha,
                                       detection_limit=h.detection_limit or None,
                                       amplitude=sum(amplitudes) / len(amplitudes) if amplitudes else None)  # fmt: skip
    return {"cell": h.primary_cell, "endpoint": h.primary_endpoint, **decision}


def compare_downsamplings(cells: list[dict], alpha: float) -> list[dict]:
    """Between classifiers: each family's other downsamplings (blur_pool, ...) against its native cell, per decoder:
    the difference of the pattern (x) and of the band-stop effect (b), Welch intervals over the cells' units."""
    out = []
    for c in cells:
        family, _, down = c["cell"].partition("/")
        native = next((n for n in cells if n["cell"] == f"{family}/native" and n["upsample"] == c["upsample"]), None)
        if down in ("native", "") or native is None:
            continue
        row = {"cell": c["cell"], "against": native["cell"], "upsample": c["upsample"]}
        for name in ("pattern", "gradient"):
            row[name] = welch_difference(c["units"].get(name, []), native["units"].get(name, []), 1 - alpha)
        out.append(row)
    return out


def _claims_runs(done: list[tuple[JobSpec, dict]]) -> list[dict]:
    """The control arm of the real cells, one row per run: what the claims table reads."""
    rows = []
    for s, r in done:
        if s.role == "cell" and s.arm == "control" and s.classifier is not None:
            rows.append({"family": s.classifier.name, "downsample": s.classifier.downsample, "seed": s.classifier.seed,
                         "upsample": s.decoder, "replicate": s.replicate,
                         **{k: r[k] for k in ("original_top1", "plain_top1", "finetuned_top1", "inter_nmi", "plain_inter_nmi",
                                              "peak", "band") if k in r}})  # fmt: skip
    return rows


def mean_patterns(jobs: list[Job], records: dict) -> dict[str, Tensor]:
    """The mean constant pattern per (cell or control, decoder, arm), for the figures."""
    groups: dict[str, list[Tensor]] = {}
    for s, record in finished(jobs, records):
        if "pattern" not in record or s.role == "plain":
            continue
        who = s.control or (f"{s.classifier.name}/{s.classifier.downsample}" if s.classifier else "sham")
        groups.setdefault(f"pattern/{who}/{s.decoder}/{s.arm}", []).append(pattern_of(record))
    return {k: torch.stack(v).mean(0).float() for k, v in groups.items()}


# ----------------------------------------------------------------------------------------------- text
def _ci_text(c: dict, fmt: str = "+.2f") -> str:
    if not c or c.get("n", 0) == 0 or c.get("mean") != c.get("mean"):
        return "n/a"
    return f"{c['mean']:{fmt}} [{c['low']:{fmt}}, {c['high']:{fmt}}]"


def decision_text(decision: dict) -> str:
    cl = decision["clauses"]
    parts = [f"pattern {_ci_text(cl['pattern'])}", f"band-stop {_ci_text(cl['band-stop removes'])}",
             f"frame {_ci_text(cl['follows the classifier'])}", f"stability {_ci_text(cl['phase stable under shift_period'])}"]  # fmt: skip
    reads = cl["reads every phase"]["values"]
    if reads:
        parts.append(f"read ratio {min(reads):.2f}-{max(reads):.2f}")
    geometry = decision.get("geometry")
    if geometry:
        parts.append(f"strided layers (uncalibrated): {geometry['answer']}")
    return "; ".join(parts)


def calibration_summary(result: HypothesisResult) -> list[CalibrationSummary]:
    """The calibration table without its per-classifier numbers: what results.json keeps of it."""

    def interval(c: dict) -> dict:
        return {k: c[k] for k in ("mean", "low", "high", "n") if k in c}

    rows: list[CalibrationSummary] = []
    for row in result["calibration"]:
        cl = row["decision"]["clauses"]
        rows.append({"control": row["control"], "truth": row["truth"], "verdict": row["verdict"],
                     "recovered": row["recovered"], "n": row["decision"]["n"], "unit": row["unit"],
                     "pattern": interval(cl["pattern"]), "band_stop": interval(cl["band-stop removes"]),
                     "frame": interval(cl["follows the classifier"]),
                     "stability": interval(cl["phase stable under shift_period"])})  # fmt: skip
    return rows


def calibration_only_text(result: HypothesisResult) -> str:
    """What a run without real cells (hypothesis.upsamples = []) says in place of them."""
    recovered = sum(row["recovered"] for row in result["calibration"])
    return (f"calibration only (hypothesis.upsamples = []): no real cell was run; {recovered} of "
            f"{len(result['calibration'])} planted controls recovered")  # fmt: skip


def verdict_text(result: HypothesisResult) -> str:
    """The calibration table, the cells and the answer, as the CLI prints them."""
    if "incomplete" in result:
        i = result["incomplete"]
        return f"The checkerboard question: {i['missing']} of {i['jobs']} jobs still to run (other shards)."
    lines = [registration_text(result["registration"])] if "sha256" in result.get("registration", {}) else []
    lines.append("Calibration (planted controls, answer known by construction):")
    for row in result["calibration"]:
        mark = "recovered" if row["recovered"] else "NOT recovered"
        lines.append(f"  {row['control']:<15} truth {row['truth']:<18} verdict {row['verdict']:<18} {mark} "
                     f"(n = {row['decision']['n']} {row['unit']}s) -- {decision_text(row['decision'])}")  # fmt: skip
    if "calibration_curve" in result:
        lines.append(calibration_curve.curve_text(result["calibration_curve"]["rows"], result["calibration_curve"]["delta"]))
    lines.append("The checkerboard question (are constant patterns the classifier's gradient checkerboards?):")
    if not result["cells"]:
        lines.append(f"  {calibration_only_text(result)}")
    if "primary" in result:
        p = result["primary"]
        d = p.get("clauses", {}).get("D above delta", {})
        lines.append(f"  PRIMARY ({p['endpoint']} in {p['cell']}, n = {p.get('n', 0)} classifiers): {p['verdict']}"
                     + (f" -- D {_ci_text(d)}, delta {p['delta']}" if d else f" -- {p.get('why', '')}"))  # fmt: skip
        lines.append("  secondary (0.3's rules, per decoder; descriptive beside the primary):")
    for u, a in result["answer"].items():
        lines.append(f"  decoder {u}: {a['text']}")
    for comp in result.get("comparisons", []):
        lines.append(f"  between classifiers, {comp['cell']} - {comp['against']} ({comp['upsample']}): pattern "
                     f"{_ci_text(comp['pattern'])}, band-stop effect {_ci_text(comp['gradient'])}")  # fmt: skip
    calibrated = all(row["recovered"] for row in result["calibration"]) and result["calibration"]
    for cell in result["cells"]:
        d = cell["decision"]
        shown = d["verdict"] if calibrated else f"(withheld: {d['verdict']})"
        lines.append(f"    {cell['cell']}/{cell['upsample']} (P={cell['period']}, n = {d['n']} {cell['unit']}s): {shown} "
                     f"({d['rule']}) -- {decision_text(d)}")  # fmt: skip
        for text in d["undecided"]:
            lines.append(f"      undecided: {text}")
    return "\n".join(lines)
