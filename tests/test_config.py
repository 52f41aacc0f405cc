import pytest

from s2snets.config import RunConfig, from_dict, load_config, to_toml
from s2snets.errors import ConfigError


def test_empty_config_is_all_defaults(tmp_path):
    (tmp_path / "c.toml").write_text("")
    assert load_config(tmp_path / "c.toml") == RunConfig()


def test_unknown_key_names_the_closest(tmp_path):
    (tmp_path / "c.toml").write_text("[finetune]\nlearning_rate = 0.1\nlrr = 2\n")
    with pytest.raises(ConfigError, match="unknown config key 'finetune.learning_rate'"):
        load_config(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="did you mean 'data.train_limit'"):
        from_dict(RunConfig, {"data": {"train_limt": 3}})
    with pytest.raises(ConfigError, match="did you mean 'classifiers'"):
        from_dict(RunConfig, {"clasifiers": ["vgg_s"]})


def test_wrong_types_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="'pretrain.epochs' must be of type int"):
        from_dict(RunConfig, {"pretrain": {"epochs": "two"}})
    with pytest.raises(ConfigError, match="must be a table"):
        from_dict(RunConfig, {"pretrain": 3})
    (tmp_path / "b.toml").write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "b.toml")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_toml_round_trip(tmp_path):
    cfg = from_dict(
        RunConfig, {"name": "x", "seed": 3, "classifiers": ["vgg_s"], "finetune": {"lr": 0.5}, "hypothesis": {"seeds": [4, 5]}}
    )
    (tmp_path / "c.toml").write_text(to_toml(cfg))
    assert load_config(tmp_path / "c.toml") == cfg
