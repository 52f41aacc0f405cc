"""The open question as an experiment: are S2SNets' constant patterns gradient checkerboards of the classifier's
strided layers, seen through the backward pass?

Design. One pretrained autoencoder per decoder upsampling; for each classifier family, downsampling variant and
seed a classifier is trained and the decoder fine-tuned through it. Per run:

* ``pattern_energy``: lattice energy, at the analysis period P of the family, of the constant pattern (mean of
  reconstruction - original over the evaluation images);
* ``gradient_energy``: lattice energy at P of the classifier's mean input-gradient power spectrum (gradient probe);
* ``inter_nmi``: mean same-class inter-image nMI of the fine-tuned reconstructions;
* ``restored``: fine-tuned minus plain-autoencoder top-1 accuracy.

P is the largest artifact period the lint predicts for the family's variants (2 if it predicts none), so every cell
of a family is measured on the same lattice. If the hypothesis holds, classifiers whose gradients carry more lattice
energy leave more lattice energy in the constant pattern (positive rank correlation), and replacing strided
downsampling by blur pooling lowers the pattern's lattice energy.

Verdict rules (thresholds from the config): *supported* when Spearman rho >= rho_threshold with permutation
p < alpha AND the blur-pool effect (native - blur_pool pattern energy) has a 95% CI above 0; *not supported* when
neither holds and the effect's CI upper bound is below ``min_effect``; *inconclusive* otherwise, and also whenever
no cell's pattern energy exceeds the plain autoencoder's by ``min_effect`` (no pattern formed to explain). The correlation is
computed over runs (cells x seeds); the cell-level correlation is reported beside it (with few cells its
permutation p-value cannot go below 1/n!).
"""

from __future__ import annotations

import itertools
import math
import time

import torch
from scipy import stats

from s2snets import __version__
from s2snets.config import RunConfig, StageConfig, config_hash
from s2snets.experiments.replicate import accuracy, load_context
from s2snets.experiments.stages import Context, finetune_decoder, pretrain_autoencoder, train_classifier
from s2snets.metrics.gradients import gradient_probe
from s2snets.metrics.lint import lint_model
from s2snets.metrics.nmi import inter_nmi
from s2snets.metrics.pattern import constant_pattern
from s2snets.metrics.spectrum import lattice_energy
from s2snets.models.classifiers import build_classifier
from s2snets.models.generator import ProbeAutoencoder
from s2snets.rundir import RunDir
from s2snets.runtime import Runtime
from s2snets.train import autoencode, autoencoder_stage, predict_logits, to_pixels, train_stage

MIN_EFFECT = 0.02  # lattice-energy difference below which a blur-pool effect is called negligible


# ----------------------------------------------------------------------------------------------- statistics
def mean_ci(values: list[float], level: float = 0.95) -> dict:
    """Mean and two-sided t confidence interval. n = 1 gives an infinite interval."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "low": -math.inf, "high": math.inf, "n": n}
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.5 + level / 2, n - 1) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def difference_ci(a: list[float], b: list[float], level: float = 0.95) -> dict:
    """mean(a) - mean(b) with a Welch t interval."""
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return {"mean": ma - mb, "low": -math.inf, "high": math.inf}
    va = sum((v - ma) ** 2 for v in a) / (len(a) - 1) / len(a)
    vb = sum((v - mb) ** 2 for v in b) / (len(b) - 1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"mean": ma - mb, "low": ma - mb, "high": ma - mb}
    dof = (va + vb) ** 2 / ((va**2) / (len(a) - 1) + (vb**2) / (len(b) - 1))
    half = stats.t.ppf(0.5 + level / 2, dof) * se
    return {"mean": ma - mb, "low": ma - mb - half, "high": ma - mb + half}


def spearman_permutation(x: list[float], y: list[float], permutations: int = 10000, seed: int = 0) -> dict:
    """Spearman rho and a two-sided permutation p-value (exact over all n! orders when n! <= permutations)."""
    n = len(x)
    if n < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return {"rho": float("nan"), "p": float("nan"), "n": n, "exact": False}
    rx, ry = stats.rankdata(x), stats.rankdata(y)

    def rho_of(order) -> float:
        return float(stats.pearsonr(rx, [ry[i] for i in order])[0])

    rho = rho_of(range(n))
    if math.factorial(n) <= permutations:
        orders: list = list(itertools.permutations(range(n)))
        exact = True
    else:
        g = torch.Generator().manual_seed(seed)
        orders = [torch.randperm(n, generator=g).tolist() for _ in range(permutations)]
        exact = False
    extreme = sum(abs(rho_of(o)) >= abs(rho) - 1e-12 for o in orders)
    p = extreme / len(orders) if exact else (extreme + 1) / (len(orders) + 1)
    return {"rho": rho, "p": p, "n": n, "exact": exact}


def decide(
    correlation: dict,
    blur_effect: dict | None,
    rho_threshold: float,
    alpha: float,
    min_effect: float = MIN_EFFECT,
    pattern_excess: float | None = None,
) -> dict:
    """The verdict from the numbers: supported / not supported / inconclusive, with the rule that fired.

    ``pattern_excess``: the largest cell-mean pattern energy above the plain autoencoder's. Below ``min_effect`` no
    pattern formed that the experiment could attribute, and the verdict is inconclusive whatever the tests say.
    """
    rho, p = correlation.get("rho", float("nan")), correlation.get("p", float("nan"))
    if pattern_excess is not None and pattern_excess < min_effect:
        return {
            "verdict": "inconclusive",
            "rho_threshold": rho_threshold,
            "alpha": alpha,
            "min_effect": min_effect,
            "reason": (
                f"no pattern formed: the fine-tuned reconstructions' pattern lattice energy exceeds the plain "
                f"autoencoder's by at most {pattern_excess:.4f} (< {min_effect}); fine-tune longer"
            ),
        }
    corr_ok = not math.isnan(rho) and rho >= rho_threshold and p < alpha
    blur_ok = blur_effect is not None and blur_effect["low"] > 0
    blur_negligible = blur_effect is not None and blur_effect["high"] < min_effect
    if corr_ok and blur_ok:
        verdict, why = (
            "supported",
            (
                f"rho = {rho:.2f} >= {rho_threshold} with p = {p:.3g} < {alpha}, and blur pooling lowers the "
                f"pattern's lattice energy (95% CI {blur_effect['low']:.3f} to {blur_effect['high']:.3f}, above 0)"
            ),
        )
    elif not corr_ok and not blur_ok and blur_negligible:
        verdict, why = (
            "not supported",
            (
                f"no rank correlation (rho = {rho:.2f}, p = {p:.3g}; needs rho >= {rho_threshold}, p < {alpha}) and the "
                f"blur-pool effect's 95% CI ({blur_effect['low']:.3f} to {blur_effect['high']:.3f}) lies below "
                f"the smallest effect that matters ({min_effect})"
            ),
        )
    else:
        parts = [f"correlation test {'passed' if corr_ok else 'failed'} (rho = {rho:.2f}, p = {p:.3g})"]
        if blur_effect is None:
            parts.append("no blur-pool comparison in the grid")
        else:
            parts.append(f"blur-pool effect 95% CI {blur_effect['low']:.3f} to {blur_effect['high']:.3f}")
        verdict, why = (
            "inconclusive",
            "; ".join(parts) + f" (supported needs both tests; not supported needs both to fail with the CI below {min_effect})",
        )
    return {"verdict": verdict, "reason": why, "rho_threshold": rho_threshold, "alpha": alpha, "min_effect": min_effect}


# ----------------------------------------------------------------------------------------------- the grid
def hypothesis(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool = True, echo=print) -> dict:
    """Run (or resume) the grid and its statistics; writes metrics/hypothesis.json. Returns the results dict."""
    started = time.perf_counter()
    h = config.hypothesis
    ctx = load_context(config, run, runtime, progress, echo)
    data = ctx.test.head(config.measure.eval_limit, seed=config.seed)
    key = config_hash(
        "hypothesis",
        __version__,  # measures may change between versions: recompute, but reuse the trained stages
        h,
        config.train_classifier,
        config.finetune,
        config.pretrain,
        config.measure,
        config.autoencoder.preset,
        ctx.data_key,
        config.seed,
    )
    previous = run.read_json("hypothesis")
    if previous and previous.get("key") == key:
        ctx.say("hypothesis: finished earlier with the same inputs, skipped")
        return previous
    ctx.say(
        f"hypothesis grid: {len(h.families)} families x {len(h.downsamples)} downsamplings x "
        f"{len(h.upsamples)} upsamplings x {len(h.seeds)} seeds"
    )
    originals = data.images.float() / 255.0
    plains = {u: pretrain_autoencoder(ctx, u) for u in h.upsamples}
    plain_pattern: dict = {}
    example = torch.zeros(1, data.channels, data.size, data.size)
    runs, lints, periods = [], {}, {}
    for family in h.families:
        for d in h.downsamples:
            lints[f"{family}/{d}"] = lint_model(
                build_classifier(family, data.num_classes, data.channels, d, input_size=data.size), example, f"{family}/{d}"
            ).as_dict()
        predicted = [p for d in h.downsamples for p in lints[f"{family}/{d}"]["predicted_periods"] if p <= data.size]
        periods[family] = max(predicted) if predicted else 2
    plain_raw = {u: autoencode(plain.model, data, runtime) for u, plain in plains.items()}  # once, for every classifier
    for u in plains:
        recon = to_pixels(data, plain_raw[u])
        plain_difference = constant_pattern(originals, recon, ()).mean_difference.mean(0)
        plain_pattern[u] = {f: float(lattice_energy(plain_difference, periods[f])) for f in h.families}
        plain_pattern[u]["inter_nmi"] = float(inter_nmi(recon, data.labels, config.measure.nmi_pairs, config.seed).mean())
    probe_set = data.head(config.measure.probe_images, seed=config.seed)
    probe_x, probe_y = runtime.to_device(probe_set.normalize(probe_set.images)), probe_set.labels.to(runtime.device)
    for family, d, seed in itertools.product(h.families, h.downsamples, h.seeds):
        reuse = d == config.classifier_downsample and seed == config.seed
        clf = train_classifier(ctx, family, d, seed=seed, tag="" if reuse else f"-{d}-s{seed}")
        p = periods[family]
        probe = gradient_probe(clf.model, probe_x, probe_y, (p,))
        plain_top1 = {
            u: accuracy(predict_logits(clf.model, data, runtime, inputs=plain_raw[u]), data.labels, data.num_classes)["top1"]
            for u in h.upsamples
        }
        for u in h.upsamples:
            ft = finetune_decoder(ctx, plains[u], clf, u, seed=seed, tag=None if reuse else f"{family}-{d}-s{seed}")
            ft_raw = autoencode(ft.model, data, runtime)
            recon = to_pixels(data, ft_raw)
            pattern = constant_pattern(originals, recon, ())
            ft_top1 = accuracy(predict_logits(clf.model, data, runtime, inputs=ft_raw), data.labels, data.num_classes)["top1"]
            runs.append(
                {
                    "family": family,
                    "downsample": d,
                    "upsample": u,
                    "seed": seed,
                    "period": p,
                    "pattern_energy": float(lattice_energy(pattern.mean_difference.mean(0), p)),
                    "gradient_energy": probe.lattice[p],
                    "inter_nmi": float(inter_nmi(recon, data.labels, config.measure.nmi_pairs, config.seed).mean()),
                    "plain_top1": plain_top1[u],
                    "finetuned_top1": ft_top1,
                    "restored": ft_top1 - plain_top1[u],
                    "mean_constancy": pattern.mean_constancy,
                }
            )
            ctx.say(
                f"  {family}/{d}/{u}/seed {seed}: pattern LE {runs[-1]['pattern_energy']:.4f}, "
                f"gradient LE {runs[-1]['gradient_energy']:.4f}, accuracy {plain_top1[u]:.3f} -> {ft_top1:.3f}"
            )
    result = summarise(runs, h, plain_pattern)
    result.update({"key": key, "lint": lints, "periods": periods, "plain": plain_pattern})
    if h.odena_probe:
        result["odena"] = odena_probe(ctx, config)
    result["seconds_total"] = time.perf_counter() - started
    if runtime.is_main:
        run.write_json("hypothesis", result)
    return result


def summarise(runs: list[dict], h, plain_pattern: dict) -> dict:
    """Cell means with CIs, the correlation tests, the blur-pool effect and the verdict."""
    cells: dict[tuple, list[dict]] = {}
    for r in runs:
        cells.setdefault((r["family"], r["downsample"], r["upsample"]), []).append(r)
    measures = ("pattern_energy", "gradient_energy", "inter_nmi", "restored", "finetuned_top1")
    cell_rows = [
        {"family": f, "downsample": d, "upsample": u, **{m: mean_ci([r[m] for r in rs]) for m in measures}}
        for (f, d, u), rs in cells.items()
    ]
    run_corr = spearman_permutation([r["gradient_energy"] for r in runs], [r["pattern_energy"] for r in runs], h.permutations)
    cell_corr = spearman_permutation(
        [c["gradient_energy"]["mean"] for c in cell_rows], [c["pattern_energy"]["mean"] for c in cell_rows], h.permutations
    )
    native = [r["pattern_energy"] for r in runs if r["downsample"] == "native"]
    blurred = [r["pattern_energy"] for r in runs if r["downsample"] == "blur_pool"]
    blur_effect = difference_ci(native, blurred) if native and blurred else None
    excess = max(c["pattern_energy"]["mean"] - plain_pattern[c["upsample"]][c["family"]] for c in cell_rows)
    return {
        "runs": runs,
        "cells": cell_rows,
        "correlation_runs": run_corr,
        "correlation_cells": cell_corr,
        "blur_effect": blur_effect,
        "pattern_excess": excess,
        "decision": decide(run_corr, blur_effect, h.rho_threshold, h.alpha, pattern_excess=excess),
    }


def odena_probe(ctx: Context, config: RunConfig) -> dict:
    """Generators with transposed convolutions in their last 0, 1, 2 upsampling stages: lattice energy of the mean
    output power spectrum at periods 2 and 4, at initialisation and after a short training as a decoder."""
    out = {}
    steps = config.hypothesis.odena_steps
    data = ctx.test.head(256, seed=config.seed)
    for n in (0, 1, 2):
        torch.manual_seed(config.seed)
        model = ProbeAutoencoder(ctx.train.channels, n)
        before = _output_energy(model, data, ctx)
        stage_cfg = StageConfig(epochs=1, max_steps=steps, batch_size=64, lr=2e-3, checkpoint_every=max(steps, 1))
        key = config_hash("odena", n, stage_cfg, config.seed, ctx.data_key)
        train_stage(
            autoencoder_stage(f"odena-{n}", model),
            ctx.train,
            stage_cfg,
            seed=config.seed,
            checkpoint=ctx.run.checkpoint(f"odena-transposed{n}"),
            key=key,
            runtime=ctx.runtime,
            progress=ctx.progress,
            log=ctx.say,
        )
        out[str(n)] = {"init": before, "trained": _output_energy(model, data, ctx), "steps": steps}
    return out


@torch.no_grad()
def _output_energy(model: torch.nn.Module, data, ctx: Context) -> dict:
    from s2snets.metrics.gradients import spectrum_lattice_energy
    from s2snets.metrics.spectrum import power_spectrum

    model = model.to(ctx.runtime.device).eval()
    x = ctx.runtime.to_device(data.normalize(data.images))
    y = model(x).float()
    y = y - y.mean((-2, -1), keepdim=True)
    mean_power = power_spectrum(y).mean((0, 1)).cpu()
    return {str(p): spectrum_lattice_energy(mean_power, p) for p in (2, 4)}


def verdict_text(result: dict) -> str:
    d = result["decision"]
    c = result["correlation_runs"]
    lines = [
        f"Hypothesis (constant patterns are gradient checkerboards): {d['verdict'].upper()}",
        f"  {d['reason']}",
        f"  runs: {c['n']}, Spearman rho {c['rho']:.3f}, permutation p {c['p']:.3g}",
    ]
    if result.get("blur_effect"):
        b = result["blur_effect"]
        lines.append(
            f"  blur-pool effect on pattern lattice energy: {b['mean']:+.4f} (95% CI {b['low']:+.4f} to {b['high']:+.4f})"
        )
    return "\n".join(lines)
