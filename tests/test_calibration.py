"""The calibration curve's arithmetic against hand counts and scipy's exact interval."""

from s2snets.experiments.calibration import curve, curve_text, detection_limits, exact_interval, false_positive_rate


def _row(control, truth, values, strength=None, verdict="inconclusive"):
    row = {"control": control, "truth": truth, "verdict": verdict, "units": {"follow_gain": values}}
    if strength is not None:
        row["strength"] = strength
    return row


def test_rates_limits_and_false_positives():
    rows = curve(
        [
            _row("additive@0.1", "classifier-born", [0.1, 0.6, 0.2, 0.0, 0.3], 0.1),
            _row("additive@0.3", "classifier-born", [0.9, 0.6, 0.2, 1.0, 0.8], 0.3),
            _row("additive", "classifier-born", [1.9, 1.6, 1.2, 1.0, 0.8], 1.0, "classifier-born"),
            _row("zero_insertion@0.3", "classifier-born", [0.9, 0.6, 0.7, 1.0, 0.8], 0.3),
            _row("zero_insertion", "classifier-born", [0.9, 0.1, 0.2, 0.3, 0.8], 1.0),
            _row("null_unpool", "not classifier-born", [0.1, -0.2, 0.7, 0.0, float("nan")], None, "no pattern"),
        ],
        delta=0.5,
    )
    assert [(r["k"], r["n"]) for r in rows] == [(1, 5), (4, 5), (5, 5), (5, 5), (2, 5), (1, 4)]
    assert rows[0]["interval"] == exact_interval(1, 5) and rows[0]["mechanism"] == "additive"
    # additive: 4/5 at x0.3 and 5/5 at x1 -> x0.3; zero insertion fails at x1 above a pass: no limit
    assert detection_limits(rows) == {"additive": 0.3, "zero_insertion": None}
    assert false_positive_rate(rows) == {"k": 1, "n": 4, "interval": exact_interval(1, 4)}
    text = curve_text(rows, 0.5)
    assert "detection limit, additive: x0.3" in text and "null_unpool" in text and "false positives 1/4" in text


def test_the_exact_interval_is_clopper_pearson():
    from scipy import stats

    lo, hi = exact_interval(3, 12)
    assert (lo, hi) == (round(float(stats.beta.ppf(0.025, 3, 10)), 3), round(float(stats.beta.ppf(0.975, 4, 9)), 3))
    assert exact_interval(0, 12)[0] == 0.0 and exact_interval(12, 12)[1] == 1.0
