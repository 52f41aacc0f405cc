"""The calibration curve: per planted mechanism and strength, how often the instrument recovers the planted truth,
with exact intervals, the detection limit, and the false "classifier-born" rate on the null controls.

Pure functions of ``hypothesis.json``'s calibration rows (no torch). Per planted classifier (the unit), the primary
endpoint D (``follow_gain``, the classifier's mean over its replicates) recovers a classifier-born truth when
D > delta; on a null control (truth "not classifier-born") D > delta is a false positive. The cell rule's verdict
(``verdict.primary_verdict`` over the row's classifiers) is reported beside it. Rates are k of n with the exact
(Clopper-Pearson) 95 % interval; with 12 classifiers a rate of 80 % cannot be shown with confidence (10/12 is
[0.52, 0.98]), so the detection limit is a point estimate: the smallest strength whose rate is at least 80 % and
stays so at every stronger one.

    >>> exact_interval(10, 12)
    (0.516, 0.979)
"""

from __future__ import annotations

import math
from typing import Any

from scipy import stats

DETECTION_RATE = 0.8


def exact_interval(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson interval of a rate k/n, rounded to 3 digits; (nan, nan) for n = 0."""
    if n == 0:
        return (math.nan, math.nan)
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=level, method="exact")
    return (round(float(ci.low), 3), round(float(ci.high), 3))


def curve(calibration: list[dict[str, Any]], delta: float) -> list[dict[str, Any]]:
    """One row per calibration row: control, mechanism, strength, truth, k of n recovered (or false positives for a
    null), the exact interval and the cell's verdict."""
    out = []
    for row in calibration:
        values = [v for v in row.get("units", {}).get("follow_gain", []) if v == v]
        null = row["truth"] != "classifier-born"
        k = sum(v > delta for v in values)
        out.append({"control": row["control"], "mechanism": row["control"].partition("@")[0],
                    "strength": row.get("strength", 1.0), "truth": row["truth"], "null": null, "k": k,
                    "n": len(values), "interval": exact_interval(k, len(values)), "cell_verdict": row["verdict"]})  # fmt: skip
    return out


def detection_limits(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """Per planted mechanism (classifier-born truths only): the smallest strength recovered in at least 80 % of its
    classifiers at it and at every stronger one; None when none is."""
    limits: dict[str, float | None] = {}
    for mechanism in dict.fromkeys(r["mechanism"] for r in rows if not r["null"]):
        series = sorted((r for r in rows if r["mechanism"] == mechanism and r["n"]), key=lambda r: r["strength"])
        limit = None
        for r in reversed(series):
            if r["k"] / r["n"] < DETECTION_RATE:
                break
            limit = r["strength"]
        limits[mechanism] = limit
    return limits


def false_positive_rate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the null controls' classifiers: how many had D > delta (a false "classifier-born"), with its interval."""
    k = sum(r["k"] for r in rows if r["null"])
    n = sum(r["n"] for r in rows if r["null"])
    return {"k": k, "n": n, "interval": exact_interval(k, n)}


def curve_text(rows: list[dict[str, Any]], delta: float) -> str:
    """The table as the command prints it."""
    lines = [f"Calibration curve (per planted classifier: D > {delta} recovers a classifier-born truth; on a null it is "
             "a false positive; 95 % exact intervals):"]  # fmt: skip
    for r in rows:
        what = "false positives" if r["null"] else "recovered"
        lines.append(f"  {r['control']:<22} strength x{r['strength']:<6g} {what} {r['k']}/{r['n']} "
                     f"[{r['interval'][0]:.2f}, {r['interval'][1]:.2f}]; cell rule: {r['cell_verdict']}")  # fmt: skip
    for mechanism, limit in detection_limits(rows).items():
        lines.append(f"  detection limit, {mechanism}: " + (f"x{limit:g} (point estimate)" if limit else "none recovered"))
    fp = false_positive_rate(rows)
    if fp["n"]:
        lines.append(f"  false 'classifier-born' on the null controls: {fp['k']}/{fp['n']} "
                     f"[{fp['interval'][0]:.2f}, {fp['interval'][1]:.2f}]")  # fmt: skip
    return "\n".join(lines)
