"""Every claim of the sources, checked by the run: our number, its interval, and a status its data supports.

The sources: the S2SNets paper and its author's blog, Odena et al.'s article, and the forum's hypothesis
(``shared/references``). Each claim is one measurement with a rule written here before any number:

* **holds** / **does not hold**: the 95 % interval (t over classifiers, the unit the claim is about) lies on the
  claimed side of the threshold / on the other side;
* **holds in part**: a claim of two parts, one shown and the other not (e.g. "restores 3.2 of 6.3 points");
* **inconclusive**: the interval straddles the threshold;
* **not testable here: <reason>**: the run lacks what the claim needs, or a model it rests on misses its bar
  (the reason names it, and the command or key that would make it testable).

Accuracies are in points (percentage points of top-1) everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from s2snets.experiments.schema import Claim, HypothesisResult, QualityGates, Results
from s2snets.metrics.overlap import Geometry, overlap_2d, overlap_ratio, transposed_overlap_1d
from s2snets.metrics.stats import mean_ci

HYPOTHESIS_COMMAND = "s2snets hypothesis --config examples/checkerboard-question.toml"


def _status(ci: dict, threshold: float = 0.0, claimed: str = "above") -> str:
    if ci.get("n", 0) < 2 or not math.isfinite(ci.get("low", math.nan)):
        return f"not testable here: {ci.get('n', 0)} value(s), an interval needs at least 2"
    low, high = ci["low"] - threshold, ci["high"] - threshold
    if claimed == "below":
        low, high = -high, -low
    return "holds" if low > 0 else "does not hold" if high < 0 else "inconclusive"


def _claim(source: str, claim: str, measure: str, value, status: str, note: str = "") -> Claim:
    return {"source": source, "claim": claim, "measure": measure, "value": value, "status": status, "note": note}


def _points(values: list[float]) -> dict:
    return mean_ci([100 * v for v in values if v == v])


def check_claims(results: Results | None, hyp: HypothesisResult | None) -> list[Claim]:
    """The table of claims: a list of {source, claim, measure, value, status, note}."""
    gates = (results or {}).get("quality", {})
    out = [*_accuracy_claims(results, gates), _pattern_claim(hyp, gates), _strided_claim(results, gates),
           _nmi_claim(hyp, gates), _order_claim(results, gates)]  # fmt: skip
    c = transposed_overlap_1d([Geometry("transposed", 3, 2)], 16)
    one_d, two_d = overlap_ratio(c), float(overlap_2d(c, c)[4:-4, 4:-4].max() / overlap_2d(c, c)[4:-4, 4:-4].min())
    out.append(_claim("odena", "A 3x3 transposed convolution at stride 2 overlaps unevenly: 2:1 in 1-D, 4:1 in 2-D",
                      "exact overlap count (s2snets.metrics.overlap)", {"1-D": one_d, "2-D": two_d},
                      "holds" if (one_d, two_d) == (2.0, 4.0) else "does not hold", "exact, no interval needed"))  # fmt: skip
    out += [_odena_init(hyp), _gradient_claim(hyp), _forum(hyp)]
    return out


def _gated(gates: dict, rests_on: str) -> str | None:
    """The reason a claim is not testable because a model it rests on misses its bar, or None."""
    failed = [g for g in gates.get(rests_on, []) if not g["meets"]]
    return f"not testable here: {failed[0]['text']}" if failed else None


# ----------------------------------------------------------------------------------------------- the paper
def _accuracy_claims(results: Results | None, gates: QualityGates) -> list[Claim]:
    cost_claim = "The plain autoencoder's reconstructions cost the classifier accuracy"
    back_claim = "Fine-tuning only the decoder through the classifier restores its accuracy"
    acc = (results or {}).get("accuracy")
    if not acc:
        why = "not testable here: needs a replication run (s2snets replicate)"
        return [_claim("paper", cost_claim, "top-1 plain - original", None, why), _claim("paper", back_claim, "", None, why)]
    names = results["classifiers"]
    lossy = all("lossy_plain" in acc[n] for n in names)
    key = "lossy_" if lossy else ""
    where = f"{len(names)} classifiers, " + ("the lossy autoencoder (the paper's condition)" if lossy else "the zoo autoencoder")
    top1 = {n: {condition: a["top1"] for condition, a in acc[n].items()} for n in names}  # condition -> top-1
    cost = _points([top1[n][f"{key}plain"] - top1[n]["original"] for n in names])
    back = _points([top1[n][f"{key}finetuned"] - top1[n][f"{key}plain"] for n in names])
    gap = _points([top1[n][f"{key}finetuned"] - top1[n]["original"] for n in names])
    side = ""
    if lossy:
        near = _points([top1[n]["plain"] - top1[n]["original"] for n in names])
        near_back = _points([top1[n]["finetuned"] - top1[n]["plain"] for n in names])
        side = f"; the near-lossless autoencoder: costs {_fmt(near)}, fine-tuning changes it by {_fmt(near_back)}"
    gate = _gated(gates, "autoencoder") or _gated(gates, "classifiers")
    cost_status = gate or _status(cost, 0, "below")
    if lossy:  # the row says what its "holds" rests on: an autoencoder made lossy on purpose
        side = "on the lossy autoencoder (pretrained briefly on purpose: the paper's condition, not a converged one)" + side
    out = [_claim("paper", cost_claim, f"top-1 plain - original, points, {where}", cost, cost_status, side.lstrip("; "))]
    if gate:
        status = gate
    elif cost_status != "holds":
        status = f"not testable here: the autoencoder costs nothing shown to restore (plain - original {_fmt(cost)})"
    else:
        status = _restore_status(back, gap, cost)
    out.append(_claim("paper", back_claim, f"top-1 fine-tuned - plain, points, {where}", back, status,
                      f"fine-tuned - original: {_fmt(gap)}"))  # fmt: skip
    return out


def _restore_status(back: dict, gap: dict, cost: dict) -> str:
    """Restored when fine-tuning raises accuracy and ends no lower than the originals'; in part when it raises it
    but stays below them."""
    raised = _status(back, 0, "above")
    if raised != "holds":
        return raised
    if gap["high"] >= 0:
        return "holds"
    return f"holds in part: restores {back['mean']:.1f} of {-cost['mean']:.1f} points"


def _pattern_claim(hyp: HypothesisResult | None, gates: QualityGates) -> Claim:
    claim = "Fine-tuned reconstructions carry a checkerboard pattern constant across inputs"
    cells = (hyp or {}).get("cells")
    if not cells:
        return _claim("paper", claim, "lattice amplitude of the constant pattern", None,
                      f"not testable here: needs the hypothesis grid ({HYPOTHESIS_COMMAND})")  # fmt: skip
    cell = next((c for c in cells if c["upsample"] == "unpool"), cells[0])
    x = cell["decision"]["clauses"]["pattern"]
    q = hyp.get("min_amplitude", 0.5 / 255)
    status = _gated(gates, "autoencoder") or ("holds" if x["low"] > 0 else "does not hold" if x["high"] < 0 else "inconclusive")
    return _claim("paper", claim, f"ln(peak lattice amplitude / max(q, r x the sham's)), q = {q:.4f}, {cell['cell']}, decoder "
                  f"{cell['upsample']}, n = {x['n']} {cell['unit']}s", x, status,
                  "holds when the lattice is above half an 8-bit grey level and r-fold the sham fine-tuning's")  # fmt: skip


def _strided_claim(results: Results | None, gates: QualityGates) -> Claim:
    claim = "The pattern is strongest for networks with strided layers (AlexNet, ResNet) and mild for VGG"
    families = (results or {}).get("pattern_by_family")
    if not families:
        return _claim("paper", claim, "pattern amplitude per family", None, "not testable here: needs a replication run")
    strided = [f for f in ("alexnet_s", "resnet_s") if f in families]
    if "vgg_s" not in families or not strided:
        return _claim("paper", claim, "pattern amplitude per family", families,
                      "not testable here: needs vgg_s and alexnet_s or resnet_s among the classifiers")  # fmt: skip
    if any(families[f]["n"] < 2 for f in [*strided, "vgg_s"]):
        return _claim("paper", claim, "pattern amplitude per family", families,
                      "not testable here: one classifier per family; set classifier_seeds = [0, 1, 2] for intervals")  # fmt: skip
    diffs = {f: families[f]["vs_vgg"] for f in strided}
    statuses = {f: _status(d, 0, "above") for f, d in diffs.items()}
    held = [f for f, s in statuses.items() if s == "holds"]
    status = _gated(gates, "classifiers") or (
        "holds" if len(held) == len(strided) else f"holds in part: {', '.join(held)} only" if held
        else "does not hold" if all(s == "does not hold" for s in statuses.values()) else "inconclusive")  # fmt: skip
    return _claim("paper", claim, "ln(peak lattice amplitude) of the pattern, family - vgg_s (Welch, over seeds)", diffs, status,
                  "; ".join(f"{f}: {statuses[f]}" for f in strided))  # fmt: skip


def _nmi_claim(hyp: HypothesisResult | None, gates: QualityGates) -> Claim:
    claim = "Inter-image nMI (same class) of fine-tuned reconstructions rises over the plain autoencoder's"
    runs = [r for r in (hyp or {}).get("runs", []) if "inter_nmi" in r]
    if not runs:
        return _claim(
            "paper",
            claim,
            "inter nMI fine-tuned - plain",
            None,
            f"not testable here: needs the hypothesis grid ({HYPOTHESIS_COMMAND})",
        )
    u = "unpool" if any(r["upsample"] == "unpool" for r in runs) else runs[0]["upsample"]
    per = _per_classifier([r for r in runs if r["upsample"] == u], lambda r: r["inter_nmi"] - r["plain_inter_nmi"])
    ci = mean_ci(per)
    return _claim("paper", claim, f"inter nMI fine-tuned - plain, decoder {u}, {ci['n']} classifiers", ci,
                  _gated(gates, "autoencoder") or _status(ci, 0, "above"))  # fmt: skip


def _per_classifier(runs: list[dict], value: Callable[[dict], float]) -> list[float]:
    groups: dict[tuple, list[float]] = {}
    for r in runs:
        groups.setdefault((r["family"], r["downsample"], r["seed"]), []).append(value(r))
    return [sum(v) / len(v) for v in groups.values()]


def _order_claim(results: Results | None, gates: QualityGates) -> Claim:
    claim = "Transfer between classifiers yields a total order, not explained by accuracy or size"
    transfer = (results or {}).get("transfer")
    if not transfer:
        return _claim("paper", claim, "RRC relation", None, "not testable here: needs a replication run")
    boot = transfer.get("bootstrap") or {}
    families = boot.get("families", [])
    if len(families) < 3:
        return _claim("paper", claim, "RRC relation", transfer.get("order"),
                      f"not testable here: an order needs at least 3 classifiers ({len(families)} in this run)")  # fmt: skip
    share = boot["total_order_share"]
    acc = results.get("accuracy", {})
    names = [n for n in results.get("classifiers", []) if n in acc]
    cost = _points([acc[n]["plain"]["top1"] - acc[n]["original"]["top1"] for n in names])
    if _status(cost, 0, "below") != "holds":  # reconstructions that cost nothing serve every classifier alike
        return _claim("paper", claim, "RRC relation on the fine-tuned decoders of the near-lossless autoencoder",
                      {"share": share, "ranking": transfer["order"].get("ranking")},
                      f"not testable here: the reconstructions the transfer matrix is built on cost no accuracy shown "
                      f"(plain - original {_fmt(cost)} points), so every reconstruction serves every classifier and no "
                      "strict order can appear; it needs a transfer matrix on reconstructions that cost accuracy",
                      f"total order in {share:.0%} of bootstrap draws (descriptive)")  # fmt: skip
    status = _gated(gates, "classifiers") or ("holds" if share >= 0.95 else "does not hold" if share <= 0.05 else "inconclusive")
    measure = (f"share of {boot['draws']} bootstrap draws (test images resampled, one seed per family drawn) in which "
               f"RRC >= {transfer['threshold']} is a total order of {len(families)} families")  # fmt: skip
    return _claim("paper", claim, measure, {"share": share, "ranking": transfer["order"].get("ranking")}, status,
                  "holds when >= 95 % of draws give a total order, does not hold when <= 5 %; the RRC threshold is ours")  # fmt: skip


# ----------------------------------------------------------------------------------------------- Odena and the forum
def _odena_init(hyp: HypothesisResult | None) -> Claim:
    claim = "Transposed convolutions in the last layers put period-2/4 artifacts into a generator's output at initialisation; resize-convolution none"
    odena = (hyp or {}).get("odena")
    if not odena or "init_seeds" not in odena.get("0", {}):
        return _claim(
            "odena", claim, "lattice energy of the output spectrum", None, "not testable here: Odena's probe was not run"
        )
    with_t, without = odena["2"]["init_seeds"]["4"], odena["0"]["init_seeds"]["4"]
    ok = with_t["n"] >= 2 and with_t["low"] > without["high"]
    bad = with_t["n"] >= 2 and with_t["high"] < without["low"]
    value = {"two transposed layers, P=4": with_t, "resize-conv only, P=4": without}
    return _claim("odena", claim, "lattice energy (P=4) of the output spectrum at init, over seeds", value,
                  "holds" if ok else "does not hold" if bad else "inconclusive", "intervals do not overlap" if ok else "")  # fmt: skip


def _gradient_claim(hyp: HypothesisResult | None) -> Claim:
    claim = "Strided convolutions put checkerboards into the input gradient"
    cells = (hyp or {}).get("cells")
    if not cells:
        return _claim(
            "odena", claim, "gradient lattice", None, f"not testable here: needs the hypothesis grid ({HYPOTHESIS_COMMAND})"
        )
    cell = cells[0]
    excess = mean_ci([math.log(p["modulation"] / p["modulation_floor"]) for p in cell["probes"]])
    planted = {c["control"]: c for c in hyp.get("calibration", [])}.get("multiplicative")
    note = "ln(modulation / its phase-scrambled floor); > 0: some positions get more gradient than others"
    if planted:
        m = mean_ci([math.log(p["modulation"] / p["modulation_floor"]) for p in planted["probes"]])
        note += (
            f"; on the planted multiplicative control: {_fmt(m)} ({'detected' if m['n'] and m['low'] > 0 else 'not detected'})"
        )
    return _claim("odena", claim, f"phase modulation of the input gradient's power (max/min over the P x P phases), {cell['cell']}, "
                  f"{excess['n']} classifiers", excess, _status(excess, 0, "above"), note)  # fmt: skip


def _forum(hyp: HypothesisResult | None) -> Claim:
    claim = "The constant patterns are checkerboard artifacts of the classifier's strided layers, seen through the backward pass"
    if not hyp or not hyp.get("answer"):  # no grid, or a calibration-only one (hypothesis.upsamples = [])
        why = "a calibration-only run has no real cell" if hyp and hyp.get("calibration") else "needs the hypothesis grid"
        return _claim("forum", claim, "calibrated intervention grid", None, f"not testable here: {why} ({HYPOTHESIS_COMMAND})")
    answers = hyp["answer"]
    u = "unpool" if "unpool" in answers else next(iter(answers))
    a = answers[u]
    calibrated = a["status"] != "not calibrated"
    status = a["status"] if calibrated else "not testable here: the instrument was not calibrated in this run"
    value = a["verdicts"] if calibrated else f"withheld ({', '.join(a['verdicts'])})"  # the cells' verdicts are not the answer
    others = "; ".join(f"{k}: {v['text']}" for k, v in answers.items() if k != u)
    return _claim("forum", claim, f"verdict rules on the calibrated intervention grid, decoder {u}", value, status,
                  a["text"] + (f" (other decoders: {others})" if others else ""))  # fmt: skip


# ----------------------------------------------------------------------------------------------- text
def _fmt(ci: dict) -> str:
    if not ci or ci.get("n", 0) == 0:
        return "n/a"
    if ci["n"] < 2 or not (math.isfinite(ci["low"]) and math.isfinite(ci["high"])):
        return f"{ci['mean']:+.2f} (n = {ci['n']}: no interval)"  # one value has no spread to give an interval
    return f"{ci['mean']:+.2f} [{ci['low']:+.2f}, {ci['high']:+.2f}] (n = {ci['n']})"


def format_value(v) -> str:
    """A claim's value as plain text: intervals as mean [low, high] (n), tables as key: value."""
    if isinstance(v, dict) and "mean" in v:
        return _fmt(v)
    if isinstance(v, dict):
        return "; ".join(f"{k}: {format_value(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return ", ".join(format_value(x) for x in v)
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.3g}"
    return "-" if v is None else str(v)


def claims_text(claims: list[dict]) -> str:
    """The table as the CLI prints it."""
    lines = ["Claims of the sources, checked by this run:"]
    for c in claims:
        lines.append(f"  [{c['status']}] ({c['source']}) {c['claim']}")
        lines.append(f"      {c['measure']}: {format_value(c['value'])}" + (f" -- {c['note']}" if c["note"] else ""))
    return "\n".join(lines)
