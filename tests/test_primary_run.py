"""0.4's experiment end to end at a tiny budget: the lattice arms, a control curve and a null control, a registered
primary cell -- from the command to the printed primary verdict, the curve and the registration."""

import json
from pathlib import Path

import pytest
from conftest import cli, needs_fashion
from test_grid import TINY_BUDGET

CONFIG = (
    'name = "tiny4"\n'
    + TINY_BUDGET
    + """interventions = ["band_stop", "shift_y", "shift_x", "shift_period", "lattice_shift_y", "lattice_shift_x",
                 "lattice_shift_period", "sham_band_stop"]
controls = ["additive", "null_unpool"]
control_strengths = [0.3, 1.0]
control_classifiers = 2
odena_probe = false
primary_endpoint = "follow_gain"
primary_cell = "alexnet_s/native/unpool"
planned_n = 2
"""
)


@needs_fashion
@pytest.mark.slow
def test_a_registered_primary_cell_with_a_control_curve(tmp_path: Path):
    (tmp_path / "c.toml").write_text(CONFIG)
    proc = cli("hypothesis", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path), "--jobs", "1", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    hyp = json.loads((tmp_path / "tiny4" / "metrics" / "hypothesis.json").read_text())
    assert hyp["registration"]["primary"]["endpoint"] == "follow_gain" and hyp["primary"]["n"] == 2
    assert hyp["primary"]["verdict"] in ("classifier-born", "not predominantly classifier-born", "below the detection limit",
                                         "no pattern", "not testable with this arm", "inconclusive")  # fmt: skip
    rows = {r["control"]: r for r in hyp["calibration_curve"]["rows"]}
    assert set(rows) == {"additive@0.3", "additive", "null_unpool"} and rows["null_unpool"]["null"]
    assert all(r["n"] == 2 for r in rows.values())  # two planted classifiers, each with its D
    assert "PRIMARY (follow_gain in alexnet_s/native/unpool, n = 2 classifiers)" in proc.stdout
    assert "Calibration curve" in proc.stdout and "detection limit, additive" in proc.stdout
    assert len(hyp["cells"][0]["units"]["top1_vs_sham"]) == 2  # the arms' top-1 check, one value per classifier
