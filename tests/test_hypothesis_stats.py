import math

import pytest
from scipy import stats

from s2snets.experiments.hypothesis import decide, difference_ci, mean_ci, spearman_permutation


def test_mean_ci_matches_scipy():
    v = [0.1, 0.4, 0.35, 0.2, 0.3]
    ci = mean_ci(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=sum(v) / len(v), scale=stats.sem(v))
    assert ci["low"] == pytest.approx(lo) and ci["high"] == pytest.approx(hi)
    assert math.isinf(mean_ci([1.0])["high"])


def test_difference_ci_matches_welch():
    a, b = [1.0, 1.2, 0.9, 1.1], [0.5, 0.7, 0.4]
    d = difference_ci(a, b)
    t = stats.ttest_ind(a, b, equal_var=False)
    lo, hi = t.confidence_interval(0.95)
    assert d["low"] == pytest.approx(lo) and d["high"] == pytest.approx(hi)


def test_spearman_rho_matches_scipy_and_p_is_sane():
    x = [0.1, 0.5, 0.3, 0.9, 0.7, 0.2, 0.6, 0.8]
    y = [0.2, 0.4, 0.35, 0.8, 0.9, 0.1, 0.5, 0.7]
    r = spearman_permutation(x, y, permutations=2000)
    assert r["rho"] == pytest.approx(stats.spearmanr(x, y).statistic)
    assert r["p"] < 0.05
    exact = spearman_permutation([1, 2, 3, 4], [1, 2, 3, 4], permutations=100)
    assert exact["exact"] and exact["p"] == pytest.approx(2 / 24)  # only the order and its reverse are as extreme
    noise = spearman_permutation([1, 2, 3, 4, 5, 6, 7, 8], [3, 8, 1, 6, 2, 7, 4, 5], permutations=2000)
    assert noise["p"] > 0.2


def test_verdict_for_each_outcome():
    strong = {"rho": 0.9, "p": 0.001}
    weak = {"rho": 0.1, "p": 0.7}
    assert decide(strong, {"mean": 0.1, "low": 0.05, "high": 0.15}, 0.5, 0.05)["verdict"] == "supported"
    assert decide(weak, {"mean": 0.0, "low": -0.01, "high": 0.01}, 0.5, 0.05)["verdict"] == "not supported"
    assert decide(strong, {"mean": 0.0, "low": -0.01, "high": 0.01}, 0.5, 0.05)["verdict"] == "inconclusive"
    assert decide(weak, {"mean": 0.1, "low": -0.05, "high": 0.25}, 0.5, 0.05)["verdict"] == "inconclusive"
    assert decide(weak, None, 0.5, 0.05)["verdict"] == "inconclusive"
    assert decide({"rho": 0.9, "p": 0.2}, {"mean": 0.1, "low": 0.05, "high": 0.15}, 0.5, 0.05)["verdict"] == "inconclusive"
    no_pattern = decide(weak, {"mean": 0.0, "low": -0.01, "high": 0.01}, 0.5, 0.05, pattern_excess=0.001)
    assert no_pattern["verdict"] == "inconclusive" and "no pattern formed" in no_pattern["reason"]
    assert decide(strong, {"mean": 0.1, "low": 0.05, "high": 0.15}, 0.5, 0.05, pattern_excess=0.05)["verdict"] == "supported"
