"""Figures of a run, drawn from metrics/results.json, metrics/hypothesis.json and metrics/arrays.safetensors.

Each function takes the loaded numbers and returns a matplotlib Figure; ``draw_all`` saves every figure the run's
files allow as figures/<name>.png and returns the paths.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from s2snets.checkpoint import load_checkpoint
from s2snets.experiments.schema import HypothesisResult, Results
from s2snets.metrics.lattice import lattice_neighbourhoods, neighbourhood_radius
from s2snets.names import ARMS

COLORS = {"original": "#4c72b0", "plain": "#dd8452", "finetuned": "#55a868"}


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float] | None = None, squeeze: bool = True, **kwargs):
    """pyplot.subplots without pyplot: a ``Figure`` of its own, no global backend or figure registry touched."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, **kwargs)


def reconstructions(arrays: dict, names: list[str]) -> Figure:
    rows = [("original", arrays["originals"]), ("plain AE", arrays["recon/plain"])]
    rows += [(f"fine-tuned: {n}", arrays[f"recon/{n}"]) for n in names if f"recon/{n}" in arrays]
    n = rows[0][1].shape[0]
    fig, axes = _subplots(len(rows), n, figsize=(1.2 * n + 1.6, 1.25 * len(rows)), squeeze=False)
    for r, (label, imgs) in enumerate(rows):
        for c in range(n):
            ax = axes[r, c]
            img = imgs[c].permute(1, 2, 0).numpy()
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("The same test images: originals, plain autoencoder, decoder fine-tuned per classifier", fontsize=9)
    fig.tight_layout()
    return fig


def patterns(arrays: dict, names: list[str], results: Results) -> Figure:
    keys = ["plain", *names]
    fig, axes = _subplots(2, len(keys), figsize=(2.1 * len(keys), 4.4), squeeze=False)
    diffs = [arrays[f"pattern/{k}/mean_difference"].mean(0).numpy() for k in keys]
    lim = max(float(np.abs(d).max()) for d in diffs) or 1.0
    for i, k in enumerate(keys):
        im = axes[0, i].imshow(diffs[i], cmap="RdBu_r", vmin=-lim, vmax=lim)
        s = results["pattern"][k]
        axes[0, i].set_title(f"{k}\nconstancy {s['mean_constancy']:.2f}", fontsize=8)
        const = np.ma.masked_invalid(arrays[f"pattern/{k}/constancy"].mean(0).numpy())
        im2 = axes[1, i].imshow(const, cmap="magma", vmin=0, vmax=1)
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("mean(recon - orig)", fontsize=8)
    axes[1, 0].set_ylabel("constancy", fontsize=8)
    fig.colorbar(im, ax=axes[0, :].tolist(), shrink=0.8)
    fig.colorbar(im2, ax=axes[1, :].tolist(), shrink=0.8)
    fig.suptitle("Constant patterns: what each decoder writes into every reconstruction", fontsize=9)
    return fig


def accuracy_bars(results: Results) -> Figure:
    names = results["classifiers"]
    fig, ax = _subplots(figsize=(1.6 * len(names) + 2, 3.2))
    width = 0.26
    for i, kind in enumerate(("original", "plain", "finetuned")):
        vals = [cast(dict[str, Any], results["accuracy"][n])[kind]["top1"] * 100 for n in names]
        bars = ax.bar(np.arange(len(names)) + (i - 1) * width, vals, width, label=kind, color=COLORS[kind])
        ax.bar_label(bars, fmt="%.1f", fontsize=6)
    lo = min(results["accuracy"][n][k]["top1"] for n in names for k in ("original", "plain", "finetuned")) * 100
    ax.set_ylim(max(0, lo - 10), 100)
    ax.set_xticks(np.arange(len(names)), names)
    ax.set_ylabel("top-1 accuracy (%)")
    ax.legend(fontsize=8, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.set_title("Accuracy on originals, plain and fine-tuned reconstructions", fontsize=9)
    fig.tight_layout()
    return fig


def nmi_bars(results: Results) -> Figure:
    keys = ["original", "plain", *results["classifiers"]]
    fig, ax = _subplots(figsize=(1.2 * len(keys) + 2, 3.0))
    same = [results["nmi"][k]["inter_same_class"] for k in keys]
    cross = [results["nmi"][k]["inter_cross_class"] for k in keys]
    intra = [results["nmi"][k].get("intra", np.nan) for k in keys]
    x = np.arange(len(keys))
    ax.bar(x - 0.27, intra, 0.27, label="intra (original vs reconstruction)")
    ax.bar(x, same, 0.27, label="inter, same class")
    ax.bar(x + 0.27, cross, 0.27, label="inter, different classes")
    ax.set_xticks(x, keys, fontsize=8)
    ax.set_ylabel("nMI")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.12), frameon=False)
    ax.set_title("nMI: a pattern shared by all reconstructions raises inter-image nMI", fontsize=9)
    fig.tight_layout()
    return fig


def gradient_spectra(arrays: dict, names: list[str], results: Results) -> Figure:
    fig, axes = _subplots(2, len(names), figsize=(2.2 * len(names), 4.4), squeeze=False)
    for i, n in enumerate(names):
        power = torch.fft.fftshift(arrays[f"probe/{n}/mean_power"]).numpy()
        axes[0, i].imshow(np.log10(power + 1e-12), cmap="viridis")
        le = results["gradient_probe"][n]["lattice_energy"]
        axes[0, i].set_title(f"{n}\nLE " + ", ".join(f"p{k}={v:.3f}" for k, v in le.items()), fontsize=7)
        axes[1, i].imshow(arrays[f"probe/{n}/mean_abs_gradient"].numpy(), cmap="magma")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("log power of dL/dx\n(centred)", fontsize=8)
    axes[1, 0].set_ylabel("mean |dL/dx|", fontsize=8)
    fig.suptitle("Where each classifier's backward pass puts its gradient", fontsize=9)
    fig.tight_layout()
    return fig


def overlap_maps(arrays: dict, results: Results) -> Figure:
    keys = [k for k in results["lint"] if f"lint/{k}/input_gradient" in arrays]
    extra = "lint/autoencoder/forward_output" in arrays
    fig, axes = _subplots(1, len(keys) + extra, figsize=(2.2 * (len(keys) + extra), 2.6), squeeze=False)
    for i, k in enumerate(keys):
        m = arrays[f"lint/{k}/input_gradient"].numpy()
        axes[0, i].imshow(m, cmap="cividis")
        info = results["lint"][k]["input_gradient"]
        ratio = info["ratio"] if isinstance(info["ratio"], str) else round(info["ratio"], 3)
        axes[0, i].set_title(f"{k}: gradient period {period_text(info.get('dominant_period'))}\nmax/min {ratio}", fontsize=7)
    if extra:
        m = arrays["lint/autoencoder/forward_output"].numpy()
        axes[0, -1].imshow(m, cmap="cividis")
        axes[0, -1].set_title("autoencoder output overlap", fontsize=7)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Exact overlap maps from the lint (input gradient of each classifier)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.88))  # room for the suptitle above the two-line panel titles
    return fig


def period_text(period: list | None) -> str:
    """A lint's dominant period as the CLI and the report's table print it: "2×2", or "even" when no axis has one.

    >>> period_text([2, 2]), period_text([0, 1]), period_text(None)
    ('2×2', 'even', 'even')
    """
    return "×".join(map(str, period)) if period and any(p and p > 1 for p in period) else "even"


def transfer_heatmap(results: Results) -> Figure:
    t = results["transfer"]
    names, m = t["names"], np.array(t["RRC"])
    fig, ax = _subplots(figsize=(1.1 * len(names) + 2.4, 1.0 * len(names) + 1.6))
    im = ax.imshow(m, cmap="RdYlGn", vmin=min(0.5, m.min()), vmax=max(1.05, m.max()))
    for i in range(len(names)):
        for j in range(len(names)):
            mark = "*" if t["relation"][i][j] else ""
            ax.text(j, i, f"{m[i, j]:.2f}{mark}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set_xlabel("classifier B (consumer)")
    ax.set_ylabel("signal of A (decoder fine-tuned for A)")
    fig.colorbar(im, ax=ax, shrink=0.8, label="RRC[A, B]")
    ax.set_title(f"RRC; * = A's signal suffices for B (RRC >= {t['threshold']})", fontsize=9)
    fig.tight_layout()
    return fig


def lattice_diagram(results: Results) -> Figure:
    concepts = results["transfer"]["lattice"]
    levels: dict[int, list[int]] = {}
    for i, c in enumerate(concepts):
        levels.setdefault(len(c["extent"]), []).append(i)
    pos: dict[int, tuple[float, float]] = {}
    for level, size in enumerate(sorted(levels)):
        row = levels[size]
        for slot, i in enumerate(row):
            pos[i] = ((slot + 1) / (len(row) + 1), float(level))
    fig, ax = _subplots(figsize=(6, 1.1 * len(levels) + 1))
    for i, c in enumerate(concepts):
        for u in c["upper"]:
            ax.plot([pos[i][0], pos[u][0]], [pos[i][1], pos[u][1]], color="#888", zorder=1)
    for i, c in enumerate(concepts):
        x, y = pos[i]
        ax.scatter([x], [y], s=60, color="#4c72b0", zorder=2)
        label = f"signals: {', '.join(c['extent']) or '-'}\nsuffice for: {', '.join(c['intent']) or '-'}"
        ax.text(x, y + 0.12, label, ha="center", va="bottom", fontsize=6)
    ax.set_ylim(-0.5, len(levels))
    ax.axis("off")
    ax.set_title("Formal concept lattice of 'A's signal suffices for B'", fontsize=9)
    fig.tight_layout()
    return fig


def training_curves(results: Results) -> Figure:
    fig, ax = _subplots(figsize=(6.5, 3))
    for name, s in results["stages"].items():
        h = np.array(s["history"]) if s["history"] else None
        if h is not None and len(h):
            ax.plot(h[:, 0], h[:, 1], label=name, lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Training losses per stage", fontsize=9)
    fig.tight_layout()
    return fig


def s2snet_figure(result) -> Figure:
    """An ``S2SNetResult``: originals, plain and fine-tuned reconstructions (rows), then each autoencoder's constant
    pattern (mean reconstruction - original) with its lattice amplitude."""
    ex = result.examples
    n = min(len(ex["original"]), 6)
    fig, axes = _subplots(3, n + 1, figsize=(1.3 * (n + 1) + 0.8, 4.4), squeeze=False)
    lim = max(float(p.mean_difference.abs().max()) for p in result.patterns.values()) or 1.0
    for r, name in enumerate(("original", "plain", "finetuned")):
        for c in range(n):
            img = ex[name][c]
            axes[r, c].imshow(img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel({"original": "originals", "plain": "plain AE", "finetuned": "fine-tuned"}[name], fontsize=8)
        ax = axes[r, n]
        ax.set_xticks([])
        ax.set_yticks([])
        if name == "original":
            ax.axis("off")
            continue
        im = ax.imshow(result.patterns[name].mean_difference.mean(0).numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"pattern, lattice\n{result.lattice[name]['peak'] * 255:.2f} grey levels", fontsize=7)
    fig.colorbar(im, ax=axes[1:, n].tolist(), shrink=0.8, label="mean recon - original")
    a = result.accuracy
    fig.suptitle(f"top-1: originals {a['original']:.1%}, plain {a['plain']:.1%}, fine-tuned {a['finetuned']:.1%}", fontsize=9)
    return fig


def grid_diagnosis_figure(diagnosis, maps: Tensor, fixed: Tensor | None, index: int) -> Figure:
    """A map with a grid (and the same map fixed) and the phase profile of its dominant period."""
    p = diagnosis.dominant_period or min(diagnosis.strength)
    panels = [("attribution", maps)] + ([("fixed", fixed)] if fixed is not None else [])
    fig, axes = _subplots(1, len(panels) + 1, figsize=(3.1 * (len(panels) + 1), 3.0), squeeze=False)
    lim = float(maps[index].abs().mean(0).max()) or 1.0
    for ax, (title, m) in zip(axes[0], panels):
        shown = m[index].abs().mean(0).numpy()
        im = ax.imshow(shown, cmap="magma", vmin=0, vmax=lim)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[0, : len(panels)].tolist(), shrink=0.8, label="|attribution|")
    profile = np.array(diagnosis.profile[p])
    ax = axes[0, -1]
    im2 = ax.imshow(profile, cmap="viridis")
    for (i, j), v in np.ndenumerate(profile):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="w" if v < profile.max() * 0.7 else "k", fontsize=8)
    ax.set_xticks(range(p), [f"x mod {p} = {j}" for j in range(p)], fontsize=6)
    ax.set_yticks(range(p), [f"y mod {p} = {i}" for i in range(p)], fontsize=6)
    ax.set_title(f"power per phase, P={p}\n(strength x{diagnosis.strength[p]:.1f})", fontsize=8)
    fig.colorbar(im2, ax=ax, shrink=0.8, label="relative power")
    return fig


ARM_ORDER = ARMS  # the arms' registry order: a new arm gets its column without an edit here


def _groups(hyp: HypothesisResult) -> list[tuple[str, str, str, Any]]:
    """(title, array prefix, decoder, decision) for the real cells and the planted controls."""
    out: list[tuple[str, str, str, Any]] = [(f"{c['cell']} ({c['upsample']})", c["cell"], c["upsample"], c) for c in hyp["cells"]]
    out += [(f"control: {c['control']} ({c['decoder']})", c["control"], c["decoder"], c) for c in hyp.get("calibration", [])]
    return out


def intervention_patterns(hyp: HypothesisResult, arrays: dict) -> Figure:
    """Per real cell and planted control (rows), per arm (columns): the lattice part of the mean constant pattern
    (what ``band_amplitude`` measures), each row on one colour scale, so the arms' checkerboards compare directly."""
    groups = _groups(hyp)
    ran = [a for a in ARM_ORDER if any(k.endswith(f"/{a}") for k in arrays if k.startswith("pattern/"))]  # no empty columns
    arms = ran or list(ARM_ORDER)
    fig, axes = _subplots(len(groups), len(arms), figsize=(1.55 * len(arms) + 1.6, 1.75 * len(groups) + 0.9), squeeze=False)
    for row, (title, prefix, decoder, group) in enumerate(groups):
        period = group["period"]
        maps: list[np.ndarray | None] = []
        for arm in arms:
            key = f"pattern/{'sham' if arm == 'sham' else prefix}/{decoder}/{arm}"
            pattern = arrays.get(key)
            if pattern is None:
                maps.append(None)
                continue
            h, w = pattern.shape
            mask = lattice_neighbourhoods(h, w, period, neighbourhood_radius(min(h, w), period))
            maps.append(torch.fft.ifft2(torch.fft.fft2(pattern.double()) * mask).real.float().numpy())
        lim = max((float(np.abs(m).max()) for m in maps if m is not None), default=1.0) or 1.0
        for col, (arm, m) in enumerate(zip(arms, maps)):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if m is None:
                ax.axis("off")
                continue
            im = ax.imshow(m, cmap="PuOr_r", vmin=-lim, vmax=lim)
            rms = float(np.sqrt(np.mean(m**2)))
            ax.set_title(f"{arm.replace('_', ' ')}\nRMS {rms * 255:.2f} grey", fontsize=7)
        axes[row, 0].set_ylabel(title.replace(" (", "\n("), fontsize=7)
        fig.colorbar(im, ax=axes[row, :].tolist(), shrink=0.85, pad=0.01, label="pixel value (0-1)")
    fig.suptitle("The lattice part of the constant pattern (mean reconstruction - original), per arm;\n"
                 "rows: the real cells, then the planted controls (answer known by construction)", fontsize=9)  # fmt: skip
    return fig


RULE_QUANTITIES = (("pattern", "pattern\nx"), ("band-stop removes", "band-stop\nb"),
                   ("follows the classifier", "frame\nf"), ("phase stable under shift_period", "stability\ns"))  # fmt: skip


def intervention_effects(hyp: HypothesisResult) -> Figure:
    """Per real cell and planted control: the numbers the rules read, with their 95 % intervals; shaded: the
    margins of the rules (+- ln r for b, 0 for x, f and s)."""
    groups = _groups(hyp)
    delta = float(np.log(hyp["min_ratio"]))
    fig, axes = _subplots(1, len(groups), figsize=(2.3 * len(groups) + 0.8, 3.4), squeeze=False, sharey=True)
    for ax, (title, _, _, group) in zip(axes[0], groups):
        clauses = group["decision"]["clauses"]
        for x, (name, _label) in enumerate(RULE_QUANTITIES):
            c = clauses[name]
            if not c.get("n"):
                continue
            mean = c["mean"]
            low, high = (np.clip(v, -6, 6) for v in (c["low"], c["high"]))
            ax.errorbar([x], [np.clip(mean, -6, 6)], yerr=[[mean - low], [high - mean]], fmt="o", color="#c44e52", capsize=3)
        ax.axhline(0, color="#333", lw=0.7)
        ax.axhspan(-delta, delta, xmin=0.2, xmax=0.45, color="#ddd", lw=0)
        ax.set_xticks(range(len(RULE_QUANTITIES)), [label for _, label in RULE_QUANTITIES], fontsize=7)
        ax.set_xlim(-0.5, len(RULE_QUANTITIES) - 0.5)
        verdict = group["decision"]["verdict"]
        truth = group.get("truth")
        ax.set_title(f"{title}\n{verdict}" + (f"\n(truth: {truth})" if truth else ""), fontsize=7)
    axes[0, 0].set_ylabel("value (log ratios: x, b;\nindices in [-1, 1]: f, s)", fontsize=8)
    fig.suptitle(f"What the rules read, mean and 95% CI over units; grey: b within +-ln {hyp['min_ratio']:g}", fontsize=9, y=1.02)
    fig.tight_layout()
    return fig


def odena_plot(hyp: HypothesisResult) -> Figure:
    o = hyp["odena"]
    ns = sorted(o, key=int)
    fig, ax = _subplots(figsize=(5.5, 3))
    x = np.arange(len(ns))
    for j, (when, period) in enumerate([("init", "2"), ("init", "4"), ("trained", "2"), ("trained", "4")]):
        ax.bar(x + (j - 1.5) * 0.2, [o[n][when][period] for n in ns], 0.2, label=f"{when}, period {period}")
    ax.set_xticks(x, [f"{n} transposed\nlast layer(s)" for n in ns], fontsize=8)
    ax.set_ylabel("lattice energy (init: output;\ntrained: output - input)", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    ax.set_title("Odena's probe: transposed convs in the last 0/1/2 upsampling layers", fontsize=9)
    fig.tight_layout()
    return fig


def draw_all(run_root: Path) -> dict[str, Path]:
    """Draw every figure the run's metrics allow into figures/*.png. Returns {name: path}."""
    import json

    run_root = Path(run_root)
    out: dict[str, Path] = {}
    (run_root / "figures").mkdir(exist_ok=True)

    def save(name: str, fig: Figure) -> None:
        path = run_root / "figures" / f"{name}.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")  # legends outside the axes stay in the picture
        out[name] = path

    results_path, arrays_path = run_root / "metrics" / "results.json", run_root / "metrics" / "arrays.safetensors"
    if results_path.is_file() and arrays_path.is_file():
        results = json.loads(results_path.read_text())
        arrays, _ = load_checkpoint(arrays_path)
        names = results["classifiers"]
        save("reconstructions", reconstructions(arrays, names))
        save("accuracy", accuracy_bars(results))
        save("patterns", patterns(arrays, names, results))
        save("nmi", nmi_bars(results))
        save("gradient_spectra", gradient_spectra(arrays, names, results))
        save("overlap", overlap_maps(arrays, results))
        save("transfer", transfer_heatmap(results))
        save("lattice", lattice_diagram(results))
        save("training", training_curves(results))
    hyp_path = run_root / "metrics" / "hypothesis.json"
    if hyp_path.is_file():
        hyp = json.loads(hyp_path.read_text())
        hyp_arrays_path = run_root / "metrics" / "hypothesis-arrays.safetensors"
        if hyp.get("cells") and hyp_arrays_path.is_file():
            save("interventions", intervention_patterns(hyp, load_checkpoint(hyp_arrays_path)[0]))
            save("hypothesis", intervention_effects(hyp))
        if "odena" in hyp:
            save("odena", odena_plot(hyp))
    return out
