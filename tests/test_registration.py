"""Pre-registration: written before the first job, quoted, and a resume that changed any registered part refused."""

import dataclasses
import json

import numpy as np
import pytest
from conftest import cli, needs_fashion

from s2snets.config import RunConfig
from s2snets.errors import ConfigError
from s2snets.experiments.registration import FILE, n_for_power, register, registration_text
from s2snets.rundir import RunDir


def _config(**hypothesis) -> RunConfig:
    config = RunConfig(name="reg")
    return dataclasses.replace(config, hypothesis=dataclasses.replace(config.hypothesis, **hypothesis))


def test_a_registration_is_written_once_and_a_changed_one_is_refused(tmp_path):
    run = RunDir(tmp_path / "reg")
    config = _config(primary_endpoint="follow_gain", primary_cell="alexnet_s/native/unpool", planned_n=12)
    first = register(config, run)
    assert first["primary"] == {"endpoint": "follow_gain", "cell": "alexnet_s/native/unpool", "n": 12, "alpha": 0.05,
                                "smallest_effect": 0.5, "power": 0.8}  # fmt: skip
    assert "created" in first and len(first["rules"]["sha256"]) == 64
    assert register(config, run) == first  # a resume: the same registration, its first time kept
    assert register(dataclasses.replace(config, hypothesis=dataclasses.replace(config.hypothesis, jobs=4)), run) == first
    with pytest.raises(ConfigError, match="registered on .* with other primary"):
        register(_config(primary_endpoint="share", primary_cell="alexnet_s/native/unpool", planned_n=12), run)
    with pytest.raises(ConfigError, match="with other config_sha256"):
        register(dataclasses.replace(config, finetune=dataclasses.replace(config.finetune, lr=0.5)), run)
    record = json.loads((run.root / FILE).read_text())
    record["primary"]["n"] = 30  # n raised by hand after a near miss
    (run.root / FILE).write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="edited after it was written"):
        register(config, run)
    assert "primary endpoint follow_gain in alexnet_s/native/unpool, n = 12" in registration_text(first)


def test_the_power_analysis_matches_simulated_tests_of_the_rule_as_written():
    """Superiority (lower bound of D above delta at the stated alternative) and equivalence (TOST within +-delta at
    0), each against 20,000 simulated cells at the n it gives and one fewer."""
    from scipy import stats

    sd, delta, alternative = 0.6, 0.5, 1.2
    plan = n_for_power(sd=sd, smallest_effect=delta, alternative=alternative, alpha=0.05, power=0.8)
    rng = np.random.default_rng(0)

    def power(k: int, mean: float, equivalence: bool) -> float:
        x = rng.normal(mean, sd, size=(20_000, k))
        m, se = x.mean(1), x.std(1, ddof=1) / np.sqrt(k)
        if equivalence:
            t = stats.t.ppf(0.95, k - 1)
            return float(((m - t * se > -delta) & (m + t * se < delta)).mean())
        return float((m - stats.t.ppf(0.975, k - 1) * se > delta).mean())

    n1, n2 = plan["superiority"], plan["equivalence"]
    assert power(n1, alternative, False) >= 0.79 and power(n1 - 1, alternative, False) < 0.81
    assert power(n2, 0.0, True) >= 0.79 and power(n2 - 1, 0.0, True) < 0.81
    assert plan["n"] == max(n1, n2)
    with pytest.raises(ConfigError, match="sd > 0"):
        n_for_power(sd=0.0, smallest_effect=0.5, alternative=1.2, alpha=0.05, power=0.8)


def test_an_unknown_primary_endpoint_is_a_config_error_with_a_suggestion(tmp_path):
    (tmp_path / "c.toml").write_text('[hypothesis]\nprimary_endpoint = "folow_gain"\n')
    proc = cli("hypothesis", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path))
    assert proc.returncode == 2 and "did you mean 'follow_gain'" in proc.stderr and proc.stderr.count("\n") == 1


@needs_fashion
def test_a_grid_classifier_the_zoo_lacks_is_refused_before_any_work(tmp_path):
    """hypothesis.seeds = [0, 999]: seed 999 is not in the zoo; it used to be trained for the config's few steps and
    pooled with converged classifiers. Now one line names it and what to do, and nothing was trained."""
    (tmp_path / "c.toml").write_text('name = "z"\n[data]\ntrain_limit = 64\ntest_limit = 32\n[hypothesis]\nseeds = [0, 999]\n'
                                     'upsamples = ["unpool"]\ncontrols = []\nodena_probe = false\n')  # fmt: skip
    proc = cli("hypothesis", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path), "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "the zoo has no alexnet_s-native-s999" in proc.stderr and "s2snets zoo train --only" in proc.stderr
    assert not list((tmp_path / "z").rglob("*.safetensors"))  # nothing trained


def test_an_exploratory_run_is_re_registered_and_keeps_its_history(tmp_path):
    run = RunDir(tmp_path / "explore")
    first = register(_config(), run)
    changed = register(_config(min_ratio=2.0), run)  # no primary endpoint then or now: nothing to break
    assert changed["sha256"] != first["sha256"] and changed["supersedes"] == [
        {"sha256": first["sha256"], "created": first["created"]}
    ]
    assert register(_config(min_ratio=2.0), run) == changed
    with pytest.raises(ConfigError, match="with other primary"):  # registering an endpoint on an explored run
        register(_config(min_ratio=2.0, primary_endpoint="follow_gain", primary_cell="alexnet_s/native/unpool"), run)
