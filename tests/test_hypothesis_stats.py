import math

import numpy as np
import pytest
from scipy import stats

from s2snets.experiments.hypothesis import answer, cell_verdict
from s2snets.metrics.stats import mean_ci, paired_difference


def test_mean_ci_matches_scipy():
    v = [0.1, 0.4, 0.35, 0.2, 0.3]
    ci = mean_ci(v)
    lo, hi = stats.t.interval(0.95, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert ci["low"] == pytest.approx(lo) and ci["high"] == pytest.approx(hi) and ci["n"] == 5
    assert math.isinf(mean_ci([1.0])["high"])
    assert mean_ci([0.2, float("nan"), 0.4])["n"] == 2  # undefined scores are left out


def test_paired_difference_matches_scipy_ttest_rel():
    a, b = [0.30, 0.21, 0.45, 0.12, 0.33], [0.10, 0.15, 0.20, 0.05, 0.30]
    d = paired_difference(a, b)
    ref = stats.ttest_rel(a, b)
    lo, hi = ref.confidence_interval(0.95)
    assert d["low"] == pytest.approx(lo) and d["high"] == pytest.approx(hi) and d["p"] == pytest.approx(ref.pvalue)
    # pairing matters: the same numbers unpaired (Welch) give a wider interval
    welch = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (hi - lo) < (welch.high - welch.low)
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def _ci(mean, half):
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": 3}


def _cell(excess, notch, shift, lock):
    """Effects as natural-log ratios (as the hypothesis computes them)."""
    return {
        "excess": excess,
        "paired": {"gradient_notch": {"log_amplitude": notch}, "grid_shift": {"log_amplitude": shift, "lock_shift": lock}},
    }


@pytest.mark.parametrize(
    "cell,verdict",
    [
        (_cell(_ci(0.2, 0.1), _ci(-1.0, 0.2), _ci(0, 0.1), _ci(0.5, 0.1)), "no pattern"),  # below ln 1.5
        (_cell(_ci(2.0, 3.0), _ci(-1.0, 0.2), _ci(0, 0.1), _ci(0.5, 0.1)), "no pattern"),  # excess CI holds 0
        (_cell(_ci(2.0, 0.5), _ci(-1.0, 0.2), _ci(0.05, 0.1), _ci(0.5, 0.1)), "classifier-born"),
        (_cell(_ci(2.0, 0.5), _ci(0.0, 0.1), _ci(0.0, 0.1), _ci(-0.5, 0.1)), "decoder-born"),
        (_cell(_ci(2.0, 0.5), _ci(-1.0, 0.2), _ci(-1.5, 0.3), _ci(0.0, 0.3)), "interaction"),
        (_cell(_ci(2.0, 0.5), _ci(-1.0, 0.2), _ci(0.0, 0.1), _ci(-0.4, 0.1)), "interaction"),
        (_cell(_ci(2.0, 0.5), _ci(-0.5, 2.0), _ci(0.0, 0.1), _ci(0.0, 0.5)), "inconclusive"),
    ],
)
def test_verdict_rules(cell, verdict):
    assert cell_verdict(cell, 1.5)["verdict"] == verdict


def test_answer_per_decoder():
    cells = [
        {"upsample": "unpool", "decision": {"verdict": "interaction"}},
        {"upsample": "resize_conv", "decision": {"verdict": "no pattern"}},
    ]
    out = answer(cells)
    assert out["unpool"]["text"].startswith("holds in part") and out["resize_conv"]["text"].startswith("not testable")
    assert cell_verdict({"excess": _ci(2.0, 0.5), "paired": {}}, 1.5)["verdict"] == "not testable"
