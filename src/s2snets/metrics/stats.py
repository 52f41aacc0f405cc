"""Statistics over seeds, from scipy: t intervals of a mean and of paired differences, with a paired t-test.

Conventions: intervals are two-sided at ``level`` (95 % by default); p-values are two-sided. One value gives an
infinite interval and a NaN p-value: one run is never a finding.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def mean_ci(values: list[float], level: float = 0.95) -> dict:
    """Mean with its two-sided t interval over n values: {"mean", "low", "high", "n"}."""
    v = np.asarray([x for x in values if x == x], dtype=np.float64)  # NaNs (undefined scores) left out
    n = len(v)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = float(v.mean())
    if n < 2:
        return {"mean": mean, "low": -math.inf, "high": math.inf, "n": n}
    sem = float(stats.sem(v))
    if sem == 0:
        return {"mean": mean, "low": mean, "high": mean, "n": n}
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    return {"mean": mean, "low": float(low), "high": float(high), "n": n}


def paired_difference(treated: list[float], control: list[float], level: float = 0.95) -> dict:
    """treated - control, paired by position (same classifier and seed): mean, t interval, two-sided paired t-test p.

    {"mean", "low", "high", "n", "p"}; p is NaN for fewer than two pairs, 1.0 or 0.0 when all differences are equal.
    """
    if len(treated) != len(control):
        raise ValueError(f"paired samples differ in length: {len(treated)} vs {len(control)}")
    pairs = [(a, b) for a, b in zip(treated, control) if a == a and b == b]
    diffs = [a - b for a, b in pairs]
    out = mean_ci(diffs, level)
    if len(pairs) < 2:
        out["p"] = math.nan
    elif out["low"] == out["high"]:
        out["p"] = 1.0 if out["mean"] == 0 else 0.0
    else:
        out["p"] = float(stats.ttest_rel([a for a, _ in pairs], [b for _, b in pairs]).pvalue)
    return out


def below(ci: dict, threshold: float = 0.0) -> bool:
    """The whole interval lies below ``threshold``."""
    return ci["high"] < threshold


def above(ci: dict, threshold: float = 0.0) -> bool:
    return ci["low"] > threshold


def negligible(ci: dict, min_effect: float) -> bool:
    """The interval holds 0 or the mean is smaller than ``min_effect`` in size: no effect that matters."""
    return (ci["low"] <= 0 <= ci["high"]) or abs(ci["mean"]) < min_effect
