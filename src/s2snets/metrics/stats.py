"""Statistics over replicates, from scipy: t intervals of a mean and of paired differences, a paired t-test, the
equivalence test (TOST) that "no effect" needs, and the number of replicates a power analysis asks for.

Conventions: intervals are two-sided at ``level`` (95 % by default); p-values are two-sided. One value gives an
infinite interval and a NaN p-value: one run is never a finding. A directional claim ("lowers it at least r-fold")
holds when the two-sided (1 - alpha) interval lies beyond the margin; "unchanged" holds when the two-sided
(1 - 2 alpha) interval lies inside (-margin, +margin): both one-sided tests of TOST reject at alpha.
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


def welch_difference(a: list[float], b: list[float], level: float = 0.95) -> dict:
    """mean(a) - mean(b) with Welch's t interval (unequal variances, unpaired): {"mean", "low", "high", "n"}."""
    a_, b_ = [x for x in a if x == x], [x for x in b if x == x]
    mean = float(np.mean(a_) - np.mean(b_)) if a_ and b_ else math.nan
    if len(a_) < 2 or len(b_) < 2:
        return {"mean": mean, "low": -math.inf, "high": math.inf, "n": min(len(a_), len(b_))}
    ci = stats.ttest_ind(a_, b_, equal_var=False).confidence_interval(level)
    return {"mean": mean, "low": float(ci.low), "high": float(ci.high), "n": min(len(a_), len(b_))}


def below(ci: dict, threshold: float = 0.0) -> bool:
    """The whole interval lies below ``threshold``."""
    return ci["high"] < threshold


def above(ci: dict, threshold: float = 0.0) -> bool:
    return ci["low"] > threshold


def equivalent(values: list[float], margin: float, alpha: float = 0.05) -> dict:
    """TOST: is the mean of ``values`` inside (-margin, +margin)? {"mean", "low", "high", "n", "equivalent", "p"}.

    The interval is the two-sided (1 - 2 alpha) t interval; ``equivalent`` when it lies inside the margins, i.e.
    both one-sided tests reject at ``alpha``; ``p`` is the larger of their p-values. An interval that merely holds 0
    proves nothing: with too few replicates it holds everything.
    """
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be > 0, got {margin}")
    ci = mean_ci(values, 1 - 2 * alpha)
    out = {**ci, "margin": margin, "equivalent": bool(ci["n"] >= 2 and -margin < ci["low"] and ci["high"] < margin)}
    v = np.asarray([x for x in values if x == x], dtype=np.float64)
    if len(v) < 2:
        out["p"] = math.nan
    elif float(stats.sem(v)) == 0:
        out["p"] = 0.0 if abs(float(v.mean())) < margin else 1.0
    else:
        lower = stats.ttest_1samp(v, -margin, alternative="greater").pvalue
        upper = stats.ttest_1samp(v, margin, alternative="less").pvalue
        out["p"] = float(max(lower, upper))
    return out


def replicates_needed(
    mean: float,
    sd: float,
    threshold: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    equivalence: bool = False,
    most: int = 10_000,
) -> int | None:
    """How many replicates a decision needs, if the true mean and spread are the observed ``mean`` and ``sd``.

    Directional (``equivalence`` False): the two-sided (1 - alpha) interval must end beyond ``threshold`` on the
    side the mean lies (e.g. below -ln r). Equivalence: the (1 - 2 alpha) interval inside (-threshold, threshold).
    Returns the smallest n >= 2 whose power (noncentral t) reaches ``power``, or None when no n can (the mean is on
    the wrong side of the threshold, or more than ``most`` would be needed).
    """
    if not (sd == sd and mean == mean) or sd < 0:
        return None
    gap = (threshold - abs(mean)) if equivalence else (abs(mean) - abs(threshold))
    if gap <= 0:
        return None
    if sd == 0:
        return 2
    for n in range(2, most + 1):
        df, shift = n - 1, gap * math.sqrt(n) / sd
        if equivalence:
            # both one-sided tests at alpha must reject: P(T > t_crit) for each bound, their intersection bounded below
            crit = stats.t.ppf(1 - alpha, df)
            p_near = stats.nct.sf(crit, df, shift)
            p_far = stats.nct.sf(crit, df, (threshold + abs(mean)) * math.sqrt(n) / sd)
            achieved = p_near + p_far - 1
        else:
            achieved = stats.nct.sf(stats.t.ppf(1 - alpha / 2, df), df, shift)
        if achieved >= power:
            return n
    return None
