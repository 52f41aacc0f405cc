"""One self-contained report.html per run: every figure embedded as a PNG data URI, opens offline.

Everything in it is read from the run's metrics files; nothing is typed in. Missing parts (no hypothesis run yet)
are left out with a line saying how to produce them.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any, cast

from s2snets.checkpoint import atomic_write_text
from s2snets.errors import DataError
from s2snets.experiments.claims import format_value
from s2snets.experiments.hypothesis import calibration_only_text, decision_text
from s2snets.experiments.schema import HypothesisResult, Results, problems
from s2snets.report.figures import draw_all, period_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
dt{font-weight:600;margin-top:.4em}h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.verdict{font-size:1.15em;padding:.6em 1em;border-left:5px solid #4c72b0;background:#f3f6fb}
.muted{color:#777;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
table.claims td,table.claims th{text-align:left;vertical-align:top}tr.holds td:nth-child(5){color:#2a7d2a}
tr.does-not-hold td:nth-child(5){color:#b03030}tr.inconclusive td:nth-child(5){color:#a06000}
"""


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _fmt(v, pct: bool = False) -> str:
    if isinstance(v, str):
        return html.escape(v)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v * 100:.2f}%" if pct else (f"{v:.4g}" if isinstance(v, float) else html.escape(str(v)))


def _table(header: list[str], rows: list[list], pct_cols: frozenset[int] | set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v, i in pct_cols)}</td>" for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _replicate_section(results: Results, figs: dict[str, Path]) -> str:
    parts = [_accuracy_part(results, figs), _pattern_part(results, figs), _transfer_part(results, figs)]
    return "\n".join(parts + [_checkerboard_part(results, figs)])


def _figures(figs: dict[str, Path], *keys: str) -> list[str]:
    return [_img(figs[k], k) for k in keys if k in figs]


def _gates_text(results: Results) -> str:
    """Every model a finding rests on against its bar, as one line; the ones below their bar first and in bold."""
    quality = cast(dict[str, list[Any]], results.get("quality", {}))
    gates = [g for kind in ("classifiers", "autoencoder") for g in quality.get(kind, [])]
    if not gates:
        return ""
    below = [g for g in gates if not g["meets"]]
    items = [f"<b>{html.escape(g['text'])}: below its bar</b>" for g in below]
    items += [html.escape(g["text"]) for g in gates if g["meets"]]
    head = (
        f"{len(below)} of {len(gates)} models below their bar; claims resting on them are not testable here"
        if below
        else "every model meets its bar"
    )
    return f"<p class='muted'>Quality gates: {head}. " + "; ".join(items) + ".</p>"


def _accuracy_part(results: Results, figs: dict[str, Path]) -> str:
    names, acc = results["classifiers"], results["accuracy"]
    lossy = all("lossy_plain" in acc[n] for n in names)
    parts = ["<h2>Accuracy: does the autoencoder cost accuracy, does fine-tuning restore it?</h2>"]
    head = ["classifier", "original", "plain AE", "fine-tuned", "plain − original", "fine-tuned − original", "fine-tuned top-5"]
    head += ["lossy AE", "lossy fine-tuned", "lossy − original", "restored"] if lossy else []
    rows = []
    for n in names:
        o, p, f = (acc[n][k]["top1"] for k in ("original", "plain", "finetuned"))
        row = [n, o, p, f, f"{(p - o) * 100:+.2f} pt", f"{(f - o) * 100:+.2f} pt", acc[n]["finetuned"]["top5"]]
        if lossy:
            lp, lf = acc[n]["lossy_plain"]["top1"], acc[n]["lossy_finetuned"]["top1"]
            row += [lp, lf, f"{(lp - o) * 100:+.2f} pt", f"{(lf - lp) * 100:+.2f} pt"]
        rows.append(row)
    parts.append(_table(head, rows, {1, 2, 3, 6} | ({7, 8} if lossy else set())))
    d = results["dataset"]
    parts.append(
        f'<p class="muted">Evaluated on {d["eval_images"]} images of {html.escape(d["test"])}; trained on '
        f"{d['train_images']} images of {html.escape(d['train'])}. Accuracy of the pipeline autoencoder → classifier"
        + (
            "; the lossy autoencoder (trained briefly, as far from lossless as the paper's) is the paper's condition"
            if lossy
            else ""
        )
        + ".</p>"  # fmt: skip
    )
    parts.append(_gates_text(results))
    parts += _figures(figs, "accuracy", "reconstructions")
    classes = d.get("classes") or [str(c) for c in range(len(acc[names[0]]["original"]["per_class"]))]
    kinds = ("original", "plain", "finetuned")
    per_class = {n: {kind: cast(dict[str, Any], acc[n])[kind]["per_class"] for kind in kinds} for n in names}
    rows = [[cls, *[per_class[n][kind][c] for n in names for kind in kinds]] for c, cls in enumerate(classes)]
    head = ["class", *[f"{n}: {k}" for n in names for k in ("orig", "plain", "ft")]]
    parts.append(
        "<details><summary>Per-class top-1 accuracy (original, plain AE, fine-tuned)</summary>"
        + _table(head, rows, set(range(1, len(head))))
        + "</details>"
    )
    rec = results["reconstruction"]
    rows = [["plain", rec["plain"]["mse"], rec["plain"]["psnr"]]]
    rows += [[f"fine-tuned: {n}", rec["finetuned"][n]["mse"], rec["finetuned"][n]["psnr"]] for n in names]
    parts.append("<h3>Reconstruction error (pixels in [0, 1])</h3>" + _table(["autoencoder", "MSE", "PSNR (dB)"], rows))
    return "\n".join(p for p in parts if p)


def _pattern_part(results: Results, figs: dict[str, Path]) -> str:
    periods = results["config"]["measure"]["periods"]
    rows = []
    for k in ["original", "plain", *results["classifiers"]]:
        nm, pat = results["nmi"][k], results["pattern"].get(k, {})
        energy = pat.get("lattice_energy", {})
        rows.append([k, nm.get("intra"), nm["inter_same_class"], nm["inter_cross_class"], pat.get("mean_constancy"),
                     pat.get("constant_share"), *[energy.get(str(p)) for p in periods]])  # fmt: skip
    head = ["images", "intra nMI", "inter nMI (same class)", "inter nMI (cross class)", "mean constancy",
            "share constant (>0.5)", *[f"pattern LE p{p}" for p in periods]]  # fmt: skip
    parts = [f"<h2>Constant patterns and nMI {TERMS}</h2>", _table(head, rows)]
    return "\n".join(parts + _figures(figs, "patterns", "nmi"))


def _transfer_part(results: Results, figs: dict[str, Path]) -> str:
    t = results["transfer"]
    o = t["order"]
    verdict = "a total order" if o["total_order"] else ("a total preorder (ties)" if o["total_preorder"] else "not a total order")
    parts = [f"<h2>Cross-classifier transfer, order and concept lattice {TERMS}</h2>"]
    parts.append(
        f"<p>The relation “A’s signal suffices for B” (RRC ≥ {t['threshold']}) is <b>{verdict}</b>. "
        f"Ranking by how many classifiers each signal suffices for (<a href='#glossary'>RRC</a>; '=' is a tie): "
        f"{html.escape(o.get('ranking_text') or ' > '.join(o['ranking']))}.</p>"
    )
    viol = (
        [f"incomparable: {a} / {b}" for a, b in o["incomparable"]]
        + [f"mutual: {a} ↔ {b}" for a, b in o["mutual"]]
        + [f"intransitive: {a} → {b} → {c}" for a, b, c in o["intransitive"]]
    )
    if viol:
        parts.append("<p class='muted'>Violations: " + html.escape("; ".join(viol)) + "</p>")
    rows = [[a] + row for a, row in zip(t["names"], t["T"])]
    parts.append(
        "<h3>T[A, B]: accuracy of B on the reconstructions of the decoder fine-tuned for A</h3>"
        + _table(["signal of A \\ classifier B", *t["names"]], rows, set(range(1, len(t["names"]) + 1)))
    )
    parts += _figures(figs, "transfer")
    if len(t.get("lattice", [])) <= 1:
        parts.append(
            "<p>The formal concept lattice has a single concept: every signal suffices for every classifier at this "
            "threshold (the relation is complete), so there is no hierarchy to draw. A higher "
            "<code>measure.rrc_threshold</code> separates them.</p>"
        )
    else:
        parts += _figures(figs, "lattice")
    return "\n".join(parts)


def _checkerboard_part(results: Results, figs: dict[str, Path]) -> str:
    periods = results["config"]["measure"]["periods"]
    rows = []
    for n, lint in results["lint"].items():
        g, found = lint["input_gradient"] or {}, lint["findings"]
        rows.append([n, len(found), ", ".join(found[:6]) + ("…" if len(found) > 6 else ""),
                     period_text(g.get("dominant_period")),  # what `s2snets lint` prints
                     g.get("ratio"), ", ".join(map(str, lint["predicted_periods"])) or "none"])  # fmt: skip
    parts = [f"<h2>Checkerboards: lint, overlap maps and gradient probes {TERMS}</h2>"]
    parts.append(_table(["model", "findings", "layers", "input-gradient period", "max/min", "predicted periods"], rows))
    probe = results["gradient_probe"]
    rows = [[n, *[probe[n]["lattice_energy"].get(str(p)) for p in periods]] for n in results["classifiers"]]
    parts.append(
        "<h3>Gradient probe: lattice energy of dL/dx on test images</h3>"
        + _table(["classifier", *[f"period {p}" for p in periods]], rows)
    )
    return "\n".join(parts + _figures(figs, "overlap", "gradient_spectra", "training"))


TERMS = "<a class='muted' style='font-size:.6em' href='#glossary'>(terms)</a>"
GLOSSARY = """<h2 id='glossary'>Glossary</h2><dl>
<dt>constant pattern</dt><dd>The per-pixel mean of (reconstruction − original) over the evaluated images: what a decoder
writes into every reconstruction, whatever the input.</dd>
<dt>constancy</dt><dd>Per pixel, 1 − var(reconstruction − original) / var(original): 1 where the decoder writes the same
value for every input, 0 where it follows the input; negative where the reconstruction varies more than the original
(noise added). NaN (blank) where the originals themselves are constant (a black border).</dd>
<dt>period P, lattice</dt><dd>A checkerboard of period P repeats every P pixels; its power lies on the frequencies
(k/P, l/P). "Period 2×2" means period 2 on both axes. The lint predicts P from the strides (the dominant period of
its input-gradient map, as <code>s2snets lint</code> prints it); "even" or "none" means no periodic pattern was
predicted.</dd>
<dt>lattice energy (LE)</dt><dd>The share of an image's non-constant spectral power on the period-P lattice, in [0, 1];
white noise puts (P²−1)/(H·W−1) of its power there (the lattice's share of frequencies). A share, so it falls when
anything else is added to the image.</dd>
<dt>checkerboard amplitude</dt><dd>RMS over pixels of the pattern's period-P lattice component, in pixel units: the
absolute strength of the checkerboard, the hypothesis experiment's primary measure.</dd>
<dt>lattice contrast</dt><dd>Power on the lattice peaks / power of the neighbouring frequencies: ~1 means no peak.</dd>
<dt>phase lock</dt><dd>Correlation of a pattern's lattice component with the control's, with or without undoing a grid
shift: which lattice (classifier's or decoder's) the checkerboard follows.</dd>
<dt>nMI</dt><dd>Normalised mutual information of two images' pixel values (scikit-learn's definition, exact):
intra = original vs its reconstruction; inter = between reconstructions of different images (a shared pattern
raises it).</dd>
<dt>RRC</dt><dd>RRC[A, B] = accuracy of classifier B on the reconstructions fine-tuned for A / B's accuracy on
originals. "A's signal suffices for B" when RRC ≥ the threshold.</dd>
<dt>holds / does not hold / inconclusive</dt><dd>The 95 % interval over seeds lies on the claimed side of the
threshold / on the other side / straddles it. Rules in docs/measures.md.</dd>
</dl>"""


def _ci(ci: dict) -> str:
    return f"{_fmt(ci['mean'])} [{_fmt(ci['low'])}, {_fmt(ci['high'])}]"


def _claims_section(claims: list[dict]) -> str:
    head = "".join(f"<th>{h}</th>" for h in ("source", "claim", "our measure", "value [95% CI over seeds]", "status", "note"))
    body = "".join(
        f"<tr class='{html.escape(c['status'].replace(' ', '-'))}'><td>{html.escape(c['source'])}</td>"
        f"<td>{html.escape(c['claim'])}</td><td>{html.escape(c['measure'])}</td><td>{html.escape(format_value(c['value']))}</td>"
        f"<td><b>{html.escape(c['status'])}</b></td><td>{html.escape(c['note'])}</td></tr>"
        for c in claims
    )
    return (
        "<h2 id='claims'>Claims of the sources, checked by this run</h2>"
        "<p class='muted'>Holds / does not hold: the 95% interval over seeds lies on the claimed / the other side of the "
        "threshold; inconclusive: it straddles it; not testable here: the run lacks the data for an interval. "
        "Rules in s2snets/experiments/claims.py and docs/measures.md.</p>"
        f"<table class='claims'><tr>{head}</tr>{body}</table>"
    )


def _hyp_numbers(decision: dict) -> str:
    return decision_text(decision)


def _hypothesis_section(hyp: HypothesisResult, figs: dict[str, Path]) -> str:
    parts = ["<h2 id='question'>The open question: are the constant patterns the classifier’s gradient checkerboards?</h2>"]
    calibrated = bool(hyp.get("calibration")) and all(c["recovered"] for c in hyp["calibration"])
    for u, a in hyp["answer"].items():
        parts.append(f'<p class="verdict"><b>Decoder {html.escape(u)}: {html.escape(a["text"])}.</b></p>')
    parts.append(
        "<p class='muted'>The instrument first proves it can tell the answers apart: planted controls, classifiers whose "
        "answer is known by construction, run through the same arms, measures and rules as the real cells, and a real "
        "cell’s verdict is reported only when every control was recovered. Arms: <i>control</i> (the paper’s "
        "fine-tuning), <i>sham</i> (the decoder’s own reconstruction loss), <i>band_stop</i> (the classifier’s input "
        "gradient loses its lattice band; forward pass identical), <i>stride_smooth</i> (every strided layer sends back "
        "a smoothed gradient), <i>shift_y / shift_x / shift_period</i> (the autoencoder’s grid moves 1 px down / right / P "
        "px against the image and the classifier). The rules (docs/measures.md) read x = ln(peak lattice amplitude / "
        f"max(q, r × sham)), q = half an 8-bit grey level; b = ln(band amplitude of band_stop / control), at least ×{_fmt(hyp['min_ratio'])} "
        "or equivalent (TOST); f, the frame index (+1: pinned by the classifier); s, the phase lock under shift_period; "
        "the classifier’s read ratio (forward pass: does it ignore positions?) and the band-stop’s manipulation check.</p>"
    )
    parts.append("<h3>Calibration</h3>")
    parts.append(_table(
        ["control", "what is planted", "decoder", "truth", "verdict", "recovered", "n", "numbers (mean [95% CI])"],
        [[c["control"], c["description"], c["decoder"], c["truth"], c["verdict"], "yes" if c["recovered"] else "NO",
          f"{c['decision']['n']} {c['unit']}s", _hyp_numbers(c["decision"])] for c in hyp.get("calibration", [])],
    ))  # fmt: skip
    parts.append("<h3>The real cells</h3>")
    if not hyp["cells"]:
        parts.append(f"<p>{html.escape(calibration_only_text(hyp))}.</p>")
    rows = []
    for c in hyp["cells"]:
        d = c["decision"]
        shown = d["verdict"] if calibrated else f"withheld ({d['verdict']})"
        rows.append([f"{c['cell']} / {c['upsample']}", c["period"], shown, d["rule"], f"{d['n']} {c['unit']}s",
                     _hyp_numbers(d), "; ".join(d["undecided"]) or "–"])  # fmt: skip
    if rows:
        parts.append(_table(["cell", "P", "verdict", "rule", "n", "numbers (mean [95% CI])", "undecided (n needed)"], rows))
    for key in ("interventions", "hypothesis"):
        if key in figs:
            parts.append(_img(figs[key], key))
    if "odena" in hyp:
        rows = [
            [f"{n} transposed", v["init"]["2"], v["init"]["4"], v["trained"]["2"], v["trained"]["4"],
             v["trained"].get("contrast", {}).get("2"), v["trained"].get("contrast", {}).get("4")]
            for n, v in sorted(hyp["odena"].items())
        ]  # fmt: skip
        parts.append(
            "<h3>Odena’s probe</h3>"
            "<p class='muted'>The article reports frequency-2 and -4 artifacts with deconvolutions in the last two layers, "
            "frequency-2 with one, none with resize-convolution only. At initialisation the output’s spectrum is measured; "
            "after training, the spectrum of the error (output − input), so the reconstructed image does not hide the "
            "artifact.</p>"
            + _table(
                [
                    "generator",
                    "init, LE P=2",
                    "init, LE P=4",
                    "trained error, LE P=2",
                    "trained error, LE P=4",
                    "trained error, contrast P=2",
                    "trained error, contrast P=4",
                ],
                rows,
            )  # fmt: skip
        )
        if "odena" in figs:
            parts.append(_img(figs["odena"], "odena"))
    return "\n".join(parts)


def write_report(run_root: str | Path) -> Path:
    """Draw the figures and write run_root/report.html. DataError if the folder holds no results, or results of a
    shape this version does not write."""
    try:
        return _write_report(Path(run_root))
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
        raise DataError(
            f"{run_root}: metrics/results.json or metrics/hypothesis.json does not have the shape this version writes "
            f"({type(exc).__name__}: {str(exc)[:120]}); re-run the command that made them"
        ) from None


def _check_shape(path: Path, value: dict | None, schema) -> None:
    """DataError naming the first keys where a metrics file departs from the schema this version writes."""
    found = problems(value, schema) if value is not None else []
    if found:
        more = f" and {len(found) - 3} more" if len(found) > 3 else ""
        raise DataError(f"{path} does not have the shape this version writes ({'; '.join(found[:3])}{more}); "
                        "re-run the command that made it")  # fmt: skip


def _write_report(run_root: Path) -> Path:
    root = Path(run_root)
    results_path, hyp_path = root / "metrics" / "results.json", root / "metrics" / "hypothesis.json"
    if not results_path.is_file() and not hyp_path.is_file():
        raise DataError(f"{root} holds no metrics/results.json or metrics/hypothesis.json; run 'replicate' or 'demo' first")
    try:
        results = json.loads(results_path.read_text()) if results_path.is_file() else None
        hyp = json.loads(hyp_path.read_text()) if hyp_path.is_file() else None
    except json.JSONDecodeError as exc:
        raise DataError(f"a metrics file in {root} is not valid JSON ({exc}); re-run the stage") from None
    _check_shape(results_path, results, Results)
    _check_shape(hyp_path, hyp if hyp and "cells" in hyp else None, HypothesisResult)
    figs = draw_all(root)
    name = (results or {}).get("config", {}).get("name", root.name)
    body = [
        f"<h1>s2snets report: {html.escape(name)}</h1>",
        "<p class='muted'>What do deep networks like to see (Palacio et al., CVPR 2018), replicated end to end, "
        "with checkerboard artifacts (Odena et al., 2016) made measurable. Every number below was computed by this run; "
        "intervals are 95 % t intervals over seeds, and every term is explained in the <a href='#glossary'>glossary</a> "
        "at the end.</p>",
    ]
    if results is not None and results.get("claims"):
        body.append(_claims_section(results["claims"]))
    if hyp is not None and (hyp.get("cells") or hyp.get("calibration")):
        body.append(_hypothesis_section(hyp, figs))
    if results is not None:
        body.append(_replicate_section(results, figs))
        rt = results["runtime"]
        body.append(
            f"<p class='muted'>s2snets {html.escape(results['version'])}, torch {html.escape(rt['torch'])}, "
            f"device {html.escape(rt['device'])}, AMP {html.escape(rt['amp'])}, "
            f"total time {results.get('seconds_total', 0):.0f} s for the replication stages.</p>"
        )
    else:
        body.append(
            "<p class='muted'>No replication results: run <code>s2snets replicate</code> for the accuracy, nMI and transfer sections.</p>"
        )
    body.append(GLOSSARY)
    config_path = root / "config.toml"
    if config_path.is_file():
        body.append(
            "<details><summary>The run's configuration (config.toml)</summary><pre>"
            f"{html.escape(config_path.read_text(errors='replace'))}</pre></details>"
        )
    page = (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>s2snets report: {html.escape(name)}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
    path = root / "report.html"
    atomic_write_text(path, page)
    return path
