"""The verdict rules of the checkerboard experiment, as pure functions of its numbers (no torch, no I/O).

Written before the real cells were run, in docs/measures.md ("The checkerboard question"); the code generates every
verdict from them and the tests drive them with numbers built to reach each one. In short, per cell (a group of
classifiers with one decoder kind), with the classifier the unit of replication (the fine-tuning replicates are
averaged inside each classifier; a one-classifier cell uses the replicates themselves, and says so), delta = ln r:

* pattern:   x = ln A_peak(control) - ln max(q, r A_peak(sham))            per run (A regularised by its floor)
* gradient:  b = ln A_band(band_stop) - ln A_band(control)                  per run
* frame:     f = mean over shift_y, shift_x of the classifier-follow index  per run, in [-1, 1]
* stability: s = phase lock of shift_period with control                    per run (manipulation check of f)
* geometry:  g = ln A_band(stride_smooth) - ln A_band(band_stop)            per run

and per classifier its gradient's band share and lattice peak contrast (the band-stop's manipulation check) and the
read ratio of its forward pass. The first rule that holds decides:

R0 no pattern        upper(x) < 0
   (a pattern needs lower(x) > 0; otherwise R5)
R1 ignored positions the classifier's forward pass ignores some phase (read ratio < tau in every classifier)
R2 interaction       reads every phase, the band-stop acts (check), upper(b) < -delta, and the pattern's phase is
                     the decoder's: lower(s) > 0 and upper(f) < 0
R3 classifier-born   reads every phase, the band-stop acts (check), upper(b) < -delta
R4 decoder-born      reads every phase and either the classifier's gradient has no lattice (check fails in every
                     classifier) and the band-stop did not remove the pattern, or b is equivalent to 0 (TOST, +-delta)
R5 inconclusive      otherwise: each undecided clause with its interval, n and spread (no n proposed from it)

A classifier-born pattern also gets its frame ("follows the classifier": lower(s) > 0 and lower(f) > 0; otherwise
"undetermined") and, with the stride_smooth arm, a descriptive answer to whether the strided layers account for it
(``geometry_verdict``; not calibrated, used by no rule).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from s2snets.metrics.stats import equivalent, mean_ci

VERDICTS = ("no pattern", "ignored positions", "classifier-born", "decoder-born", "interaction", "inconclusive")
RULES = {"no pattern": "R0", "ignored positions": "R1", "interaction": "R2", "classifier-born": "R3", "decoder-born": "R4",
         "inconclusive": "R5"}  # fmt: skip


def log_ratio(a: float, a_floor: float, b: float, b_floor: float) -> float:
    """ln of amplitude a over amplitude b, each regularised by its noise floor: sqrt(A^2 + F^2). A value at its floor
    reads as the floor, so ratios of two unmeasurable amplitudes are near 0, never a division by zero."""
    return 0.5 * (math.log(a * a + a_floor * a_floor) - math.log(b * b + b_floor * b_floor))


def interval(values: Sequence[float], alpha: float) -> dict:
    """Mean and two-sided (1 - alpha) t interval, with the spread (sd) kept for the power analysis."""
    finite = [v for v in values if v == v]
    ci = mean_ci(finite, 1 - alpha)
    ci["sd"] = float(_sd(finite))
    return ci


def _sd(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def cell_verdict(units: dict, probes: list[dict], *, min_ratio: float, alpha: float, power: float, read_ratio: float,
                 band_share: float) -> dict:  # fmt: skip
    """The rules above. ``units``: {"pattern": [x per unit], "gradient": [b], "frame": [f], "stability": [s],
    "geometry": [g] (may be empty)}; ``probes``: per classifier {"band_share_high", "contrast", "read_ratio"}.

    Returns {"verdict", "rule", "n", "clauses": {name: {..interval.., "holds"}}, "geometry", "undecided": [text]}.
    """
    delta = math.log(min_ratio)
    ci = {name: interval(values, alpha) for name, values in units.items()}
    n = ci["pattern"]["n"]
    reads = [p["read_ratio"] for p in probes]
    ignores_all, reads_all = all(r < read_ratio for r in reads), all(r >= read_ratio for r in reads)
    acts = [p["band_share_high"] >= band_share or p["contrast"] >= 2.0 for p in probes]
    no_lattice = not any(acts)
    tost = equivalent(units["gradient"], delta, alpha)
    clauses = {
        "pattern": {**ci["pattern"], "holds": ci["pattern"]["low"] > 0},
        "no pattern": {**ci["pattern"], "holds": ci["pattern"]["high"] < 0},
        "band-stop removes": {**ci["gradient"], "holds": ci["gradient"]["high"] < -delta},
        "band-stop changes nothing (TOST)": {**tost, "holds": tost["equivalent"]},
        "phase stable under shift_period": {**ci["stability"], "holds": ci["stability"]["low"] > 0},
        "follows the classifier": {**ci["frame"], "holds": ci["frame"]["low"] > 0},
        "stays with the decoder": {**ci["frame"], "holds": ci["frame"]["high"] < 0},
        "reads every phase": {"values": reads, "holds": reads_all},
        "ignores some phase": {"values": reads, "holds": ignores_all},
        "band-stop acts (check)": {"values": acts, "holds": all(acts)},
        "gradient has no lattice": {"values": acts, "holds": no_lattice},
    }
    held = {name: c["holds"] for name, c in clauses.items()}
    removes = held["band-stop acts (check)"] and held["band-stop removes"]
    stable = held["phase stable under shift_period"]
    if held["no pattern"]:
        verdict = "no pattern"
    elif not held["pattern"]:
        verdict = "inconclusive"
    elif held["ignores some phase"]:
        verdict = "ignored positions"
    elif held["reads every phase"] and removes and stable and held["stays with the decoder"]:
        verdict = "interaction"
    elif held["reads every phase"] and removes:
        verdict = "classifier-born"
    elif held["reads every phase"] and (
        (held["gradient has no lattice"] and not held["band-stop removes"]) or held["band-stop changes nothing (TOST)"]
    ):  # a check that found no lattice contradicted by a pattern the band-stop removed is no evidence either way
        verdict = "decoder-born"
    else:
        verdict = "inconclusive"
    out = {"verdict": verdict, "rule": RULES[verdict], "n": n, "clauses": clauses}
    out["geometry"] = geometry_verdict(units.get("geometry", []), delta, alpha) if verdict in (
        "classifier-born", "ignored positions", "interaction") else None  # fmt: skip
    out["frame"] = ("follows the classifier" if stable and held["follows the classifier"] else
                    "the decoder's" if verdict == "interaction" else "undetermined") if verdict == "classifier-born" or verdict == "interaction" else None  # fmt: skip
    out["undecided"] = _undecided(verdict, ci, tost, delta, alpha, power) if verdict == "inconclusive" else []
    return out


def geometry_verdict(values: Sequence[float], delta: float, alpha: float) -> dict | None:
    """Do the strided layers account for what the band-stop removes? g = ln A(stride_smooth) - ln A(band_stop):
    equivalent to 0 -> "strided layers"; lower(g) > delta -> "not the strided layers" (smoothing them leaves the
    pattern r-fold above the band-stopped one); otherwise "undetermined". None without the stride_smooth arm."""
    if not values:
        return None
    tost = equivalent(list(values), delta, alpha)
    ci = mean_ci(list(values), 1 - alpha)
    answer = "strided layers" if tost["equivalent"] else "not the strided layers" if ci["low"] > delta else "undetermined"
    return {"answer": answer, **ci, "tost": tost}


def _undecided(verdict: str, ci: dict, tost: dict, delta: float, alpha: float, power: float) -> list[str]:
    """What an inconclusive cell could not decide: the clause, its interval, n and the spread between units. No n is
    proposed: a power analysis that plugs in the observed mean is not a plan (a registered run's n comes from a stated
    smallest effect, ``registration.n_for_power``), and adding units after a near miss is optional stopping."""
    out = []

    def say(name: str, c: dict, threshold: float, equivalence: bool = False) -> None:
        out.append(f"{name}: mean {c['mean']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}], n = {c['n']}, sd {c.get('sd', math.nan):.2f}; "
                   "a near miss stays inconclusive")  # fmt: skip

    p = ci["pattern"]
    if not (p["low"] > 0 or p["high"] < 0):
        say("pattern above the threshold", p, 0.0)
        return out
    g = ci["gradient"]
    if g["n"] and not (g["high"] < -delta or tost["equivalent"]):
        say(f"band-stop effect beyond -ln r = {-delta:.2f}" if g["mean"] < -delta else "band-stop effect inside +-ln r (TOST)", g,
            delta, equivalence=g["mean"] >= -delta)  # fmt: skip
    return out


def answer(cells: list[dict], calibration: list[dict] | None) -> dict:
    """One answer per decoder kind of the real cells, withheld unless every planted control was recovered."""
    failed = [c for c in calibration or [] if not c["recovered"]]
    out: dict = {}
    for u in dict.fromkeys(c["upsample"] for c in cells):
        verdicts = sorted({c["decision"]["verdict"] for c in cells if c["upsample"] == u})
        if calibration is None or not calibration:
            text = "not calibrated: no planted control was run, so no verdict is reported (hypothesis.controls)"
            status = "not calibrated"
        elif failed:
            names = ", ".join(f"{c['control']} (truth {c['truth']}, got {c['verdict']})" for c in failed)
            text, status = f"instrument not calibrated: {names}; no verdict is reported", "not calibrated"
        else:
            text, status = _answer_text(verdicts)
        out[u] = {"verdicts": verdicts, "text": text, "status": status}
    return out


def _answer_text(verdicts: list[str]) -> tuple[str, str]:
    v = set(verdicts)
    if v == {"classifier-born"}:
        return "holds: the pattern is the classifier's gradient lattice, pinned to its frame", "holds"
    if v <= {"classifier-born", "interaction"}:
        return (
            "holds in part: the pattern needs the classifier's gradient lattice, but its phase is (partly) the decoder's",
            "holds in part",
        )
    if v == {"ignored positions"}:
        return (
            "does not hold: the pattern fills positions the classifier ignores, not a lattice its backward pass writes",
            "does not hold",
        )
    if v == {"decoder-born"}:
        return (
            "does not hold: the pattern is the decoder's own (it stays when the gradient's lattice is removed)",
            "does not hold",
        )
    if v == {"no pattern"}:
        return "not testable here: no pattern above the threshold formed", "not testable here"
    return "inconclusive (cell verdicts: " + ", ".join(verdicts) + ")", "inconclusive"


def control_recovered(control_truth: str, decision: dict, accepts: tuple[str, ...] = ()) -> bool:
    """A planted control is recovered when the rules name its truth. (The stride_smooth arm's geometry answer is
    reported beside it, uncalibrated: no control has a positive case for it.)"""
    return decision["verdict"] in (accepts or (control_truth,))


# ----------------------------------------------------------------------------------------------- 0.4: the primary rule
PRIMARY_VERDICTS = ("classifier-born", "not predominantly classifier-born", "below the detection limit", "no pattern",
                    "not testable with this arm", "inconclusive")  # fmt: skip


def primary_verdict(units: dict, *, delta: float, alpha: float, detection_limit: float | None = None,
                    amplitude: float | None = None, top1_slack: float = 0.01, sham_margin: float = math.log(2)) -> dict:  # fmt: skip
    """The 0.4 rule on the primary endpoint D = F - F0 (``follow_gain``) of one cell, the classifier the unit.

    ``units``: per classifier {"pattern": x, "follow_gain": D, "follow": F, "follow_sham": F0, "shift_vs_sham": v,
    "top1_vs_sham": t (the classifier's top-1 on the one-pixel arms' reconstructions minus on the sham's)};
    ``delta``: the registered smallest effect of interest of D (superiority bound and equivalence margin);
    ``detection_limit``/``amplitude``: the calibration's detection limit and the cell's induced lattice amplitude
    (pixel units), for the guard below.

    In order (the first that holds decides):

    1. not testable with this arm: the lattice arms are not comparable with their sham: the classifier's top-1 on
       the one-pixel arms' reconstructions, averaged over the classifiers, more than ``top1_slack`` from the sham's, or ln A_peak(one-pixel arm / sham) not equivalent to 0 within
       ln 2 (TOST) -- the arm did more than move the lattice;
    2. no pattern: upper(x) < 0; a verdict on D needs lower(x) > 0 (otherwise inconclusive);
    3. classifier-born: lower(D) > delta (the two-sided 1 - alpha interval);
    4. not predominantly classifier-born: D equivalent to 0 within +-delta (TOST at alpha) *and* positive evidence
       that the lattice stayed: upper(F) < 0 and lower(-F0) > 0 (a reproducible pattern that did not follow);
       reported as "below the detection limit" instead when the induced amplitude is under the calibration's limit,
       and as inconclusive when no limit was measured (a "no" needs a calibrated instrument);
    5. inconclusive otherwise.
    """
    ci = {k: interval(units.get(k, []), alpha) for k in ("pattern", "follow_gain", "follow", "follow_sham", "shift_vs_sham")}
    reproducible = interval([-v for v in units.get("follow_sham", [])], alpha)
    tost = equivalent(units["follow_gain"], delta, alpha) if len(units.get("follow_gain", [])) >= 2 else {"equivalent": False}
    sham_tost = (equivalent(units["shift_vs_sham"], sham_margin, alpha) if len(units.get("shift_vs_sham", [])) >= 2
                 else {"equivalent": False})  # fmt: skip
    gaps = [v for v in units.get("top1_vs_sham", []) if v == v]  # per classifier; the check reads their mean
    costs = [abs(sum(gaps) / len(gaps))] if gaps else []
    clauses = {
        "lattice arms comparable with their sham": {"top1_gaps": costs, "amplitude": sham_tost,
                                                    "holds": bool(costs) and max(costs) <= top1_slack and sham_tost["equivalent"]},
        "pattern": {**ci["pattern"], "holds": ci["pattern"]["low"] > 0},
        "no pattern": {**ci["pattern"], "holds": ci["pattern"]["high"] < 0},
        "D above delta": {**ci["follow_gain"], "holds": ci["follow_gain"]["low"] > delta},
        "D equivalent to 0 (TOST)": {**tost, "holds": tost["equivalent"]},
        "did not follow": {**ci["follow"], "holds": ci["follow"]["high"] < 0},
        "reproducible": {**reproducible, "holds": reproducible["low"] > 0},
    }  # fmt: skip
    held = {k: c["holds"] for k, c in clauses.items()}
    if not held["lattice arms comparable with their sham"]:
        verdict = "not testable with this arm"
    elif held["no pattern"]:
        verdict = "no pattern"
    elif not held["pattern"]:
        verdict = "inconclusive"
    elif held["D above delta"]:
        verdict = "classifier-born"
    elif held["D equivalent to 0 (TOST)"] and held["did not follow"] and held["reproducible"]:
        if detection_limit is None or amplitude is None:  # a "no" needs the instrument's measured detection limit
            verdict = "inconclusive"
        else:
            verdict = "below the detection limit" if amplitude < detection_limit else "not predominantly classifier-born"
    else:
        verdict = "inconclusive"
    return {"verdict": verdict, "n": ci["follow_gain"]["n"], "delta": delta, "clauses": clauses,
            "detection_limit": detection_limit, "amplitude": amplitude}  # fmt: skip
