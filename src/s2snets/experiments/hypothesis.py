"""The open question as a causal experiment: are S2SNets' constant patterns gradient checkerboards of the
classifier's strided layers, seen through the backward pass?

Design: interventions that change one thing. For the same frozen classifier (one per family, downsampling and
seed; from the zoo where it has them) and the same pretrained autoencoder (one per decoder upsampling), the decoder
is fine-tuned once per intervention (``s2snets.layers.interventions``: control, grid_shift, gradient_notch,
phase_average), with the same seed, so every comparison is paired. Per run, with P the dominant lattice period the
lint predicts for the classifier's input gradient:

* ``amplitude``: the checkerboard amplitude of the constant pattern (mean reconstruction - original): RMS of its
  period-P lattice component, in pixel units; ``log_amplitude`` its natural log, so paired differences are log
  ratios, and ``excess`` = ln(amplitude / the plain autoencoder's); ``pattern_energy``: the lattice energy (share);
* ``lock_decoder`` / ``lock_classifier``: phase-lock of the pattern's period-P component with the control's,
  without and with undoing the grid shift (``metrics.pattern.phase_lock``);
* ``restored`` (fine-tuned - plain top-1, through the same wrapped classifier) and ``inter_nmi``.

The verdict rules are written in docs/measures.md ("The checkerboard question: verdict rules") and coded in
``cell_verdict``; the verdict is generated from the numbers, never typed in.
"""

from __future__ import annotations

import itertools
import math
import time

import torch

from s2snets import __version__
from s2snets.checkpoint import save_checkpoint
from s2snets.config import RunConfig, StageConfig, config_hash, validate
from s2snets.experiments.replicate import accuracy, load_context
from s2snets.experiments.stages import (
    Context,
    Countdown,
    Trained,
    finetune_decoder,
    pretrain_autoencoder,
    train_classifier,
)
from s2snets.layers.interventions import INTERVENTIONS, Intervened
from s2snets.metrics.gradients import gradient_probe
from s2snets.metrics.lint import lint_model
from s2snets.metrics.nmi import inter_nmi
from s2snets.metrics.pattern import constant_pattern, lattice_amplitude, phase_lock
from s2snets.metrics.spectrum import lattice_energy
from s2snets.metrics.stats import above, below, mean_ci, negligible, paired_difference
from s2snets.models.generator import ProbeAutoencoder
from s2snets.rundir import RunDir
from s2snets.runtime import Runtime
from s2snets.train import autoencode, autoencoder_stage, predict_logits, to_pixels, train_stage
from s2snets.zoo import zoo_fingerprint

ODENA_INIT_SEEDS = 5
VERDICTS = ("classifier-born", "decoder-born", "interaction", "no pattern", "inconclusive", "not testable")


def analysis_period(model: torch.nn.Module, channels: int, size: int) -> int:
    """The lint's dominant input-gradient period for the classifier (the largest over the axes); 2 if it predicts none."""
    import copy

    cpu = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format)
    report = lint_model(cpu, torch.zeros(1, channels, size, size))
    return max(report.predicted_periods, default=2)


# ----------------------------------------------------------------------------------------------- the grid
def hypothesis(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool = True) -> dict:
    """Run (or resume) the intervention grid and its statistics; writes metrics/hypothesis.json."""
    validate(config)
    with run.logging():
        return _hypothesis(config, run, runtime, progress)


def _hypothesis(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool) -> dict:
    started = time.perf_counter()
    h = config.hypothesis
    unknown = [i for i in h.interventions if i not in INTERVENTIONS]
    if unknown:
        from s2snets.errors import ConfigError

        raise ConfigError(f"unknown hypothesis.interventions {unknown}; choose from {', '.join(INTERVENTIONS)}")
    interventions = ["control", *[i for i in h.interventions if i != "control"]]  # control is the pairing base
    ctx = load_context(config, run, runtime, progress)
    data = ctx.test.head(config.measure.eval_limit, seed=config.seed).load()  # a streamed split: decoded here
    key = config_hash(
        "hypothesis-interventions",
        __version__,
        h,
        config.finetune,
        config.pretrain,
        config.train_classifier,
        config.measure,
        config.autoencoder.preset,
        config.use_zoo,
        zoo_fingerprint() if config.use_zoo else "",
        ctx.data_key,
        config.seed,
    )  # fmt: skip  (the zoo's manifest: new weights recompute the grid)
    previous = run.read_json("hypothesis")
    if previous and previous.get("key") == key:
        ctx.say("hypothesis: finished earlier with the same inputs, skipped")
        return previous
    n_runs = len(h.families) * len(h.downsamples) * len(h.upsamples) * len(h.seeds) * len(interventions)
    ctx.say(
        f"hypothesis: {n_runs} fine-tunings = {len(h.families)} families x {len(h.downsamples)} downsamplings x "
        f"{len(h.upsamples)} upsamplings x {len(h.seeds)} seeds x {len(interventions)} interventions"
    )
    originals = data.images.float() / 255.0
    plains = {u: pretrain_autoencoder(ctx, u) for u in h.upsamples}
    plain_raw = {u: autoencode(plain.model, data, runtime) for u, plain in plains.items()}
    plain_pattern = {
        u: constant_pattern(originals, to_pixels(data, raw), ()).mean_difference.mean(0) for u, raw in plain_raw.items()
    }
    plain_nmi = {
        u: float(inter_nmi(to_pixels(data, raw), data.labels, config.measure.nmi_pairs, config.seed).mean())
        for u, raw in plain_raw.items()
    }
    probe_set = data.head(config.measure.probe_images, seed=config.seed)
    probe_x, probe_y = runtime.to_device(probe_set.normalize(probe_set.images)), probe_set.labels.to(runtime.device)
    runs: list[dict] = []
    countdown = Countdown(n_runs)
    patterns: dict[tuple, torch.Tensor] = {}
    periods: dict[str, int] = {}
    for family, d, seed in itertools.product(h.families, h.downsamples, h.seeds):
        clf = train_classifier(ctx, family, d, seed=seed, tag=f"-{d}-s{seed}")
        period = periods.setdefault(f"{family}/{d}", analysis_period(clf.model, data.channels, data.size))
        probe = gradient_probe(clf.model, probe_x, probe_y, (period,))
        gradient_energy, gradient_contrast = probe.lattice[period], probe.contrast[period]
        for u, kind in itertools.product(h.upsamples, interventions):
            wrapped = Intervened(clf.model, kind, period, h.shift)
            arm = Trained(wrapped, config_hash(clf.key, kind, period, h.shift), clf.result)
            original_top1 = accuracy(predict_logits(wrapped, data, runtime), data.labels, data.num_classes)["top1"]
            plain_top1 = _top1(wrapped, data, runtime, plain_raw[u])
            ft = finetune_decoder(ctx, plains[u], arm, u, seed=seed, tag=f"{family}-{d}-s{seed}-{kind}")
            ft_raw = autoencode(ft.model, data, runtime)
            recon = to_pixels(data, ft_raw)
            pattern = constant_pattern(originals, recon, ()).mean_difference.mean(0)
            patterns[(family, d, u, seed, kind)] = pattern
            energy = float(lattice_energy(pattern, period))
            amplitude = lattice_amplitude(pattern, period)
            plain_amplitude = lattice_amplitude(plain_pattern[u], period)
            ft_top1 = _top1(wrapped, data, runtime, ft_raw)
            runs.append(
                {
                    "family": family, "downsample": d, "upsample": u, "seed": seed, "intervention": kind,
                    "period": period, "pattern_energy": energy, "amplitude": amplitude,
                    "log_amplitude": math.log(max(amplitude, 1e-12)),
                    "excess": math.log(max(amplitude, 1e-12) / max(plain_amplitude, 1e-12)),
                    "original_top1": original_top1, "plain_top1": plain_top1, "finetuned_top1": ft_top1,
                    "restored": ft_top1 - plain_top1, "gradient_energy": gradient_energy,
                    "gradient_contrast": gradient_contrast,
                    "inter_nmi": float(inter_nmi(recon, data.labels, config.measure.nmi_pairs, config.seed).mean()),
                    "plain_inter_nmi": plain_nmi[u],
                }
            )  # fmt: skip
            ctx.say(
                f"  {countdown.tick()} {family}/{d}/{u}/seed {seed}/{kind}: checkerboard amplitude (P={period}) {amplitude:.5f}, "
                f"lattice energy {energy:.4f}, "
                f"top-1 {plain_top1:.3f} -> {ft_top1:.3f}"
            )
    _add_phase_locks(runs, patterns, h.shift)
    result = summarise(runs, h, interventions)
    result.update(
        {"key": key, "periods": periods, "version": __version__, "config": config.hypothesis.__dict__, "image_size": data.size}
    )
    result["plain_energy"] = {
        u: {f: float(lattice_energy(p, per)) for f, per in periods.items()} for u, p in plain_pattern.items()
    }
    result["plain_amplitude"] = {
        u: {f: lattice_amplitude(p, per) for f, per in periods.items()} for u, p in plain_pattern.items()
    }
    if h.odena_probe:
        result["odena"] = odena_probe(ctx, config)
    result["seconds_total"] = time.perf_counter() - started
    if runtime.is_main:
        run.write_json("hypothesis", result)
        arrays = {f"plain/{u}": p for u, p in plain_pattern.items()}
        for (f, d, u, kind), group in itertools.groupby(
            sorted(patterns.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][4])),
            key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][4]),
        ):
            arrays[f"pattern/{f}/{d}/{u}/{kind}"] = torch.stack([p for _, p in group]).mean(0).float()
        save_checkpoint(run.metrics("hypothesis-arrays").with_suffix(".safetensors"), arrays, {"kind": "hypothesis-arrays"})
    return result


def _top1(model: torch.nn.Module, data, runtime: Runtime, raw: torch.Tensor) -> float:
    return accuracy(predict_logits(model, data, runtime, inputs=raw), data.labels, data.num_classes)["top1"]


def _add_phase_locks(runs: list[dict], patterns: dict[tuple, torch.Tensor], shift: int) -> None:
    """Phase-lock of every run's pattern with its paired control's: kept in place (decoder) and shift undone
    (classifier; equal to the former for interventions that do not shift)."""
    for r in runs:
        base = (r["family"], r["downsample"], r["upsample"], r["seed"])
        own, control = patterns[(*base, r["intervention"])], patterns[(*base, "control")]
        r["lock_decoder"] = phase_lock(own, control, r["period"])
        undo = (shift, shift) if r["intervention"] == "grid_shift" else (0, 0)
        r["lock_classifier"] = phase_lock(own, control, r["period"], undo_shift=undo)


# ----------------------------------------------------------------------------------------------- statistics
def summarise(runs: list[dict], h, interventions: list[str]) -> dict:
    """Per cell (family, downsampling, upsampling): each arm's means with intervals, the paired differences against
    control, the verdict of the rules; then one answer per decoder upsampling."""
    measures = (
        "amplitude",
        "pattern_energy",
        "excess",
        "restored",
        "finetuned_top1",
        "inter_nmi",
        "lock_decoder",
        "lock_classifier",
    )
    cells = []
    keys = sorted({(r["family"], r["downsample"], r["upsample"]) for r in runs}, key=lambda k: (k[2] != "unpool", k))
    for f, d, u in keys:
        arm = {
            kind: sorted((r for r in runs if (r["family"], r["downsample"], r["upsample"], r["intervention"]) == (f, d, u, kind)), key=lambda r: r["seed"])
            for kind in interventions
        }  # fmt: skip
        control = arm["control"]
        cell: dict = {
            "family": f,
            "downsample": d,
            "upsample": u,
            "period": control[0]["period"],
            "seeds": [r["seed"] for r in control],
        }
        cell["arms"] = {kind: {m: mean_ci([r[m] for r in rs]) for m in measures} for kind, rs in arm.items()}
        cell["paired"] = {}
        for kind, rs in arm.items():
            if kind == "control":
                continue
            cell["paired"][kind] = {
                m: paired_difference([r[m] for r in rs], [r[m] for r in control], 1 - h.alpha)
                for m in ("log_amplitude", "pattern_energy", "restored", "inter_nmi")
            }
            if kind == "grid_shift":
                cell["paired"][kind]["lock_shift"] = paired_difference(
                    [r["lock_classifier"] for r in rs], [r["lock_decoder"] for r in rs], 1 - h.alpha
                )
        cell["excess"] = mean_ci([r["excess"] for r in control], 1 - h.alpha)
        cell["decision"] = cell_verdict(cell, h.min_ratio)
        cells.append(cell)
    return {"runs": runs, "cells": cells, "answer": answer(cells), "min_ratio": h.min_ratio, "alpha": h.alpha}


def cell_verdict(cell: dict, min_ratio: float) -> dict:
    """The rules of docs/measures.md, in order; the first that holds decides. Returns {"verdict", "rule", "reason"}.

    Effects are natural-log ratios of the checkerboard amplitude; ``min_ratio`` (1.5) is the smallest that matters.
    """
    delta = math.log(min_ratio)
    x = cell["excess"]
    paired = cell["paired"]
    if "gradient_notch" not in paired or "grid_shift" not in paired:
        return {"verdict": "not testable", "rule": "R-", "reason": "the grid needs both gradient_notch and grid_shift"}
    n, s, lock = (
        paired["gradient_notch"]["log_amplitude"],
        paired["grid_shift"]["log_amplitude"],
        paired["grid_shift"]["lock_shift"],
    )
    ratio = lambda ci: f"x{math.exp(ci['mean']):.2f} [x{math.exp(ci['low']):.2f}, x{math.exp(ci['high']):.2f}]"  # noqa: E731
    lock_text = f"{lock['mean']:+.2f} [{lock['low']:+.2f}, {lock['high']:+.2f}]"
    numbers = f"amplitude vs plain {ratio(x)}, notch {ratio(n)}, shift {ratio(s)}, lock(classifier - decoder) {lock_text}"
    notch_removes = below(n, 0) and n["mean"] <= -delta
    shift_weakens = below(s, 0) and s["mean"] <= -delta
    if not above(x, 0) or x["mean"] < delta:
        verdict, rule = "no pattern", "R0"
    elif notch_removes and negligible(s, delta) and above(lock, 0):
        verdict, rule = "classifier-born", "R1"
    elif negligible(n, delta) and negligible(s, delta) and below(lock, 0):
        verdict, rule = "decoder-born", "R2"
    elif notch_removes and (shift_weakens or below(lock, 0)):
        verdict, rule = "interaction", "R3"
    else:
        verdict, rule = "inconclusive", "R4"
    return {"verdict": verdict, "rule": rule, "reason": numbers}


def answer(cells: list[dict]) -> dict:
    """One answer to the forum's question per decoder upsampling, from its cells' verdicts."""
    out = {}
    for u in dict.fromkeys(c["upsample"] for c in cells):
        verdicts = {c["decision"]["verdict"] for c in cells if c["upsample"] == u}
        if verdicts == {"classifier-born"}:
            text = "holds: the pattern is the classifier's gradient checkerboard"
        elif verdicts <= {"classifier-born", "interaction"}:
            text = "holds in part: the pattern needs the classifier's gradient lattice and the decoder's grid together"
        elif verdicts == {"decoder-born"}:
            text = "does not hold: the pattern is the decoder's own"
        elif verdicts == {"no pattern"}:
            text = "not testable here: no pattern formed beyond the plain autoencoder's"
        else:
            text = "inconclusive (cell verdicts: " + ", ".join(sorted(verdicts)) + "): more seeds or steps are needed to decide"
        out[u] = {"verdicts": sorted(verdicts), "text": text}
    return out


# ----------------------------------------------------------------------------------------------- Odena's probe
def odena_probe(ctx: Context, config: RunConfig) -> dict:
    """Generators with transposed convolutions in their last 0, 1, 2 upsampling stages: lattice energy of the mean
    output power spectrum at periods 2 and 4 at initialisation, and after a short training as a decoder measured
    on the reconstruction *error* (output - input), so the image content does not swamp the artifact."""
    out = {}
    steps = config.hypothesis.odena_steps
    data = ctx.test.head(256, seed=config.seed).load()
    for n in (0, 1, 2):
        init_seeds = []
        for s in range(ODENA_INIT_SEEDS):  # initialisation is cheap: measure it over seeds for an interval
            torch.manual_seed(config.seed + s)
            init_seeds.append(_output_energy(ProbeAutoencoder(ctx.train.channels, n), data, ctx, error=False))
        torch.manual_seed(config.seed)
        model = ProbeAutoencoder(ctx.train.channels, n)
        before = _output_energy(model, data, ctx, error=False)
        stage_cfg = StageConfig(epochs=1, max_steps=steps, batch_size=64, lr=2e-3, checkpoint_every=max(steps, 1))
        key = config_hash("odena", n, stage_cfg, config.seed, ctx.data_key)
        train_stage(
            autoencoder_stage(f"odena-{n}", model), ctx.train, stage_cfg, seed=config.seed,
            checkpoint=ctx.run.checkpoint(f"odena-transposed{n}"), key=key, runtime=ctx.runtime,
            progress=ctx.progress, log=ctx.say,
        )  # fmt: skip
        out[str(n)] = {
            "init": before,
            "init_seeds": {p: mean_ci([e[p] for e in init_seeds]) for p in ("2", "4")},
            "trained": _output_energy(model, data, ctx, error=True),
            "steps": steps,
        }
    return out


@torch.no_grad()
def _output_energy(model: torch.nn.Module, data, ctx: Context, error: bool) -> dict:
    """Lattice energy (P = 2, 4) of the mean power spectrum of the outputs, or of the outputs' error (output -
    input) when ``error``: the artifact a trained generator adds, without the image it reconstructs."""
    from s2snets.metrics.gradients import spectrum_lattice_energy
    from s2snets.metrics.spectrum import lattice_contrast, power_spectrum

    model = model.to(ctx.runtime.device).eval()
    x = ctx.runtime.to_device(data.normalize(data.images))
    y = model(x).float()
    if error:
        y = y - x.float()
    y = y - y.mean((-2, -1), keepdim=True)
    mean_power = power_spectrum(y).mean((0, 1)).cpu()
    out: dict = {str(p): spectrum_lattice_energy(mean_power, p) for p in (2, 4)}
    out["contrast"] = {str(p): lattice_contrast(mean_power, p) for p in (2, 4)}  # a peak, whatever the broadband error
    return out


def verdict_text(result: dict) -> str:
    """The experiment's answer in a few lines, as the CLI prints it."""
    lines = ["The checkerboard question (are constant patterns the classifier's gradient checkerboards?):"]
    for u, a in result["answer"].items():
        lines.append(f"  decoder {u}: {a['text']}")
    for c in result["cells"]:
        d = c["decision"]
        lines.append(
            f"    {c['family']}/{c['downsample']}/{c['upsample']} (P={c['period']}, n={len(c['seeds'])}): {d['verdict']} ({d['rule']}) -- {d['reason']}"
        )
    return "\n".join(lines)
