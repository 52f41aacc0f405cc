"""The statistics and the verdict rules of the checkerboard experiment, on numbers built to reach each verdict."""

import math

import numpy as np
import pytest
from scipy import stats

from s2snets.experiments.verdict import answer, cell_verdict, control_recovered, log_ratio
from s2snets.metrics.stats import equivalent, mean_ci, paired_difference, replicates_needed


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
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def test_equivalence_is_two_one_sided_tests_and_needs_data():
    v = [0.05, -0.10, 0.02, 0.08, -0.03, 0.00, 0.06, -0.05]
    out = equivalent(v, 0.405)
    lower = stats.ttest_1samp(v, -0.405, alternative="greater").pvalue
    upper = stats.ttest_1samp(v, 0.405, alternative="less").pvalue
    assert out["equivalent"] and out["p"] == pytest.approx(max(lower, upper))
    lo, hi = stats.t.interval(0.90, len(v) - 1, loc=np.mean(v), scale=stats.sem(v))
    assert (out["low"], out["high"]) == (pytest.approx(lo), pytest.approx(hi))
    # an interval that merely holds 0 is not equivalence: three noisy values cannot show it
    assert not equivalent([0.5, -0.6, 0.2], 0.405)["equivalent"]


def test_replicates_needed_reaches_its_power_by_simulation():
    rng = np.random.default_rng(0)
    n = replicates_needed(-0.8, 0.6, 0.405)
    hits = sum(mean_ci(list(rng.normal(-0.8, 0.6, n)))["high"] < -0.405 for _ in range(1500))
    assert 0.75 < hits / 1500 < 0.9 and replicates_needed(-0.8, 0.6, 0.405) > replicates_needed(-1.2, 0.6, 0.405)
    n = replicates_needed(0.05, 0.3, 0.405, equivalence=True)
    hits = sum(equivalent(list(rng.normal(0.05, 0.3, n)), 0.405)["equivalent"] for _ in range(1500))
    assert 0.75 < hits / 1500 < 0.92
    assert replicates_needed(-0.3, 0.6, 0.405) is None  # a mean inside the margin can never show "at least r-fold"


def test_log_ratio_is_regularised_by_the_floors():
    assert log_ratio(0.02, 0.0, 0.01, 0.0) == pytest.approx(math.log(2))
    assert log_ratio(0.0, 1e-4, 0.0, 1e-4) == pytest.approx(0.0)  # two amplitudes at their floors: no effect


READS, IGNORES = (
    {"band_share_high": 0.5, "contrast": 1.0, "read_ratio": 0.6},
    {"band_share_high": 0.5, "contrast": 1.0, "read_ratio": 0.0},
)
SMOOTH = {"band_share_high": 0.01, "contrast": 0.1, "read_ratio": 0.6}


def _units(pattern, gradient=(), frame=(), stability=(), geometry=()):
    return {"pattern": list(pattern), "gradient": list(gradient), "frame": list(frame), "stability": list(stability),
            "geometry": list(geometry)}  # fmt: skip


def _verdict(units, probe=READS, n=4):
    return cell_verdict(units, [probe] * n, min_ratio=1.5, alpha=0.05, power=0.8, read_ratio=0.1, band_share=0.05)


@pytest.mark.parametrize(
    "units,probe,expected",
    [
        (_units([-1.5, -1.7, -1.4, -1.6]), READS, "no pattern"),
        (_units([2.0, 2.2, 1.9, 2.1]), IGNORES, "ignored positions"),
        (
            _units([2.0, 2.2, 1.9, 2.1], [-2.5, -2.7, -2.4, -2.6], [0.9, 0.8, 0.95, 0.9], [0.9, 0.8, 0.9, 0.95]),
            READS,
            "classifier-born",
        ),
        (
            _units([2.0, 2.2, 1.9, 2.1], [-2.5, -2.7, -2.4, -2.6], [-0.9, -0.8, -0.95, -0.9], [0.9, 0.8, 0.9, 0.95]),
            READS,
            "interaction",
        ),
        (_units([2.0, 2.2, 1.9, 2.1], [0.02, -0.05, 0.04, 0.0]), READS, "decoder-born"),  # TOST
        (_units([2.0, 2.2, 1.9, 2.1], [0.5, -0.6, 0.3, -0.2]), SMOOTH, "decoder-born"),  # the gradient has no lattice
        (_units([2.0, 2.2, 1.9, 2.1], [0.5, -0.6, 0.3, -0.2]), READS, "inconclusive"),  # neither shown
        (_units([2.0, -1.0, 1.5, -0.5]), READS, "inconclusive"),  # pattern undecided
        (_units([2.0, 2.2, 1.9, 2.1], [-2.5, -2.7, -2.4, -2.6]), {**SMOOTH, "band_share_high": 0.01}, "inconclusive"),
    ],
)
def test_the_rules_reach_each_verdict(units, probe, expected):
    assert _verdict(units, probe)["verdict"] == expected


def test_a_band_stop_that_removed_nothing_cannot_support_classifier_born():
    units = _units([2.0, 2.2, 1.9, 2.1], [-2.5, -2.7, -2.4, -2.6], [0.9, 0.8, 0.95, 0.9], [0.9] * 4)
    assert _verdict(units, SMOOTH)["verdict"] != "classifier-born"


def test_inconclusive_says_what_was_undecided_and_proposes_no_n_from_the_observed_effect():
    out = _verdict(_units([2.0, 2.2, 1.9, 2.1], [-0.9, -0.2, -1.4, -0.6]))
    assert out["verdict"] == "inconclusive" and out["n"] == 4
    (text,) = out["undecided"]
    assert "band-stop" in text and "n = 4, sd 0.51" in text and "a near miss stays inconclusive" in text
    assert "needs n" not in text


def test_geometry_and_frame_of_a_classifier_born_pattern():
    units = _units([2.0] * 4, [-2.5, -2.7, -2.4, -2.6], [0.9, 0.8, 0.95, 0.9], [0.9] * 4, [0.02, -0.03, 0.01, 0.0])
    out = _verdict(units)
    assert out["geometry"]["answer"] == "strided layers" and out["frame"] == "follows the classifier"
    units["geometry"] = [2.5, 2.7, 2.4, 2.6]
    assert _verdict(units)["geometry"]["answer"] == "not the strided layers"


def test_the_answer_is_withheld_unless_every_control_was_recovered():
    cells = [{"upsample": "unpool", "decision": {"verdict": "classifier-born"}}]
    good = [{"control": "none", "truth": "no pattern", "verdict": "no pattern", "recovered": True}]
    bad = good + [{"control": "decoder", "truth": "decoder-born", "verdict": "inconclusive", "recovered": False}]
    assert answer(cells, good)["unpool"]["status"] == "holds"
    withheld = answer(cells, bad)["unpool"]
    assert withheld["status"] == "not calibrated" and "decoder (truth decoder-born, got inconclusive)" in withheld["text"]
    assert answer(cells, None)["unpool"]["status"] == "not calibrated"
    assert control_recovered("classifier-born", {"verdict": "classifier-born", "geometry": {"answer": "undetermined"}})
    assert not control_recovered("decoder-born", {"verdict": "classifier-born"})


def test_the_forums_claim_is_not_testable_and_its_verdict_withheld_when_a_control_failed():
    from s2snets.experiments.claims import _forum

    cells = [{"upsample": "unpool", "decision": {"verdict": "classifier-born"}}]
    failed = [{"control": "decoder", "truth": "decoder-born", "verdict": "inconclusive", "recovered": False}]
    row = _forum({"answer": answer(cells, failed)})
    assert row["status"] == "not testable here: the instrument was not calibrated in this run"
    assert row["value"] == "withheld (classifier-born)" and "decoder (truth decoder-born" in row["note"]
    calibrated = _forum({"answer": answer(cells, [{**failed[0], "recovered": True}])})
    assert calibrated["status"] == "holds" and calibrated["value"] == ["classifier-born"]


# ----------------------------------------------------------------------------------------------- 0.4's primary rule
def _primary(d, f=None, f0=None, x=(2.0, 2.1, 1.9, 2.2, 2.0, 2.05), v=(0.05, -0.1, 0.0, 0.08, -0.02, 0.03), gap=0.0,
             limit=0.001, amplitude=0.01):  # fmt: skip
    from s2snets.experiments.verdict import primary_verdict

    n = len(d)
    units = {"pattern": list(x[:n]), "follow_gain": list(d), "follow": list(f if f is not None else [v_ - 1 for v_ in d]),
             "follow_sham": list(f0 if f0 is not None else [-1.0] * n), "shift_vs_sham": list(v[:n]),
             "top1_vs_sham": [gap / 2] * n}  # the mean of the two one-pixel arms, one of them off by gap  # fmt: skip
    return primary_verdict(units, delta=0.5, alpha=0.05, detection_limit=limit, amplitude=amplitude)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"d": [1.9, 1.8, 2.0, 1.7, 1.95, 1.85]}, "classifier-born"),
        (
            {"d": [0.05, -0.1, 0.0, 0.1, -0.05, 0.02], "f": [-0.95, -1.0, -0.9, -0.92, -1.0, -0.97]},
            "not predominantly classifier-born",
        ),  # fmt: skip
        (
            {"d": [0.05, -0.1, 0.0, 0.1, -0.05, 0.02], "f": [-0.95, -1.0, -0.9, -0.92, -1.0, -0.97], "amplitude": 0.0001},
            "below the detection limit",
        ),  # fmt: skip
        (
            {"d": [0.05, -0.1, 0.0, 0.1, -0.05, 0.02], "f": [-0.95, -1.0, -0.9, -0.92, -1.0, -0.97], "limit": None},
            "inconclusive",
        ),  # no calibrated limit: no "no"  # fmt: skip
        # weak patterns: F and F0 near 0, so D near 0 -- equivalence alone would say "not"; the guard says inconclusive
        (
            {
                "d": [0.05, -0.1, 0.0, 0.1, -0.05, 0.02],
                "f": [0.1, -0.2, 0.05, 0.0, -0.1, 0.1],
                "f0": [0.05, -0.1, 0.1, -0.05, 0.0, 0.02],
            },
            "inconclusive",
        ),  # fmt: skip
        ({"d": [1.9, 1.8, 2.0, 1.7, 1.95, 1.85], "x": [-2.0, -2.1, -1.9, -2.2, -2.0, -2.05]}, "no pattern"),
        ({"d": [1.9, 1.8, 2.0, 1.7, 1.95, 1.85], "gap": -0.05}, "not testable with this arm"),  # the arm costs top-1
        ({"d": [1.9, 1.8, 2.0, 1.7, 1.95, 1.85], "v": [1.5, 1.8, 1.6, 1.7, 1.9, 1.6]}, "not testable with this arm"),
        ({"d": [0.2, 1.4, 0.6, 1.1, 0.3, 0.9]}, "inconclusive"),
    ],
)
def test_the_primary_rule_reaches_each_verdict(kwargs, expected):
    out = _primary(**kwargs)
    assert out["verdict"] == expected, out["clauses"]


def test_the_primary_decision_reads_the_registered_cell_only():
    import dataclasses

    from s2snets.config import RunConfig
    from s2snets.experiments.hypothesis import primary_decision

    h = dataclasses.replace(RunConfig().hypothesis, primary_endpoint="follow_gain", primary_cell="alexnet_s/native/unpool",
                            smallest_effect=0.5, detection_limit=0.001)  # fmt: skip
    born = {"pattern": [2.0, 2.1, 1.9, 2.2], "follow_gain": [1.9, 1.8, 2.0, 1.7], "follow": [0.9, 0.8, 1.0, 0.7],
            "follow_sham": [-1.0] * 4, "shift_vs_sham": [0.05, -0.1, 0.0, 0.08], "induced_peak": [0.01] * 4,
            "top1_vs_sham": [0.002, -0.004, 0.0, 0.001]}  # fmt: skip
    probes = [{}] * 4
    cells = [{"cell": "alexnet_s/native", "upsample": "resize_conv", "units": {}, "probes": []},
             {"cell": "alexnet_s/native", "upsample": "unpool", "units": born, "probes": probes}]  # fmt: skip
    out = primary_decision(cells, h)
    assert out["verdict"] == "classifier-born" and out["cell"] == "alexnet_s/native/unpool" and out["n"] == 4
    assert primary_decision(cells, dataclasses.replace(h, primary_endpoint="")) is None  # nothing registered
    missing = primary_decision(cells[:1], h)
    assert missing["verdict"] == "not testable here" and "no cell alexnet_s/native/unpool" in missing["why"]
