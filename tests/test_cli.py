import json

import numpy as np
import pytest
import torch
from conftest import cli, one_line_error, run_cli, write_idx
from PIL import Image
from safetensors.torch import save_file
from test_data import make_fashion_folder

from s2snets.models import build_classifier


def test_help_lists_the_subcommands():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for cmd in ("demo", "replicate", "hypothesis", "report", "lint", "measure"):
        assert cmd in proc.stdout
    assert cli("measure", "--help").returncode == 0


def _every_command(parser, path=()):
    """(command path, parser) of every command and subcommand under ``parser``."""
    import argparse

    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _every_command(sub, (*path, name))


def test_every_help_states_only_defaults_that_say_something():
    """An option's help names its default once, and never as 'None', 'False' or '[]' (an unset value, a flag)."""
    import argparse

    from s2snets.cli import build_parser

    commands = list(_every_command(build_parser()))
    assert len(commands) > 12  # the top level, every command and the measure / zoo subcommands
    for path, parser in commands:
        text = " ".join(parser.format_help().split())
        for empty in ("(default: None)", "(default: False)", "(default: [])"):
            assert empty not in text, (path, empty)
        for option in parser._actions:
            shown = parser._get_formatter()._get_help_string(option)  # the help as printed, before %(default)s
            assert shown.count("default:") <= 1, (path, option.option_strings)
            if option.option_strings and option.default not in (None, False, [], argparse.SUPPRESS):
                assert "default" in shown, (path, option.option_strings)


def test_a_user_error_through_the_console_entry_point_is_one_line_and_exit_2(tmp_path):
    """The in-process ``cli`` checks skip the interpreter; this one goes through ``python -m s2snets`` itself."""
    one_line_error(run_cli("hypothesis", "--config", str(tmp_path / "nope.toml")), "config file not found", "nope.toml")


def test_truncated_idx_file(tmp_path):
    make_fashion_folder(tmp_path / "fm")
    raw = tmp_path / "fm" / "train-images-idx3-ubyte"
    write_idx(raw, np.zeros((20, 28, 28), dtype=np.uint8))
    (tmp_path / "fm" / "train-images-idx3-ubyte.gz").unlink()
    raw.write_bytes(raw.read_bytes()[:-1])
    (tmp_path / "c.toml").write_text(f'[data]\nroot = "{tmp_path / "fm"}"\n')
    one_line_error(
        cli("replicate", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path / "runs")), "truncated", "train-images"
    )


def test_missing_dataset(tmp_path):
    (tmp_path / "c.toml").write_text(f'[data]\nroot = "{tmp_path / "none"}"\n')
    one_line_error(
        cli("replicate", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path / "runs")),
        "Fashion-MNIST not found",
        "apt-get install dataset-fashion-mnist",
    )


def test_unknown_config_key(tmp_path):
    (tmp_path / "c.toml").write_text("[pretrain]\nepoch = 3\n")
    one_line_error(
        cli("replicate", "--config", str(tmp_path / "c.toml")),
        "unknown config key 'pretrain.epoch'",
        "did you mean 'pretrain.epochs'",
    )


def test_corrupt_image(tmp_path):
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    one_line_error(cli("measure", "nmi", str(tmp_path / "bad.png"), str(tmp_path / "ok.png")), "cannot read image", "bad.png")
    proc = cli("measure", "nmi", str(tmp_path / "ok.png"), str(tmp_path / "ok.png"))
    assert proc.returncode == 0 and proc.stdout.strip() == "1.000000"


def test_measure_nmi_reads_16_bit_float_and_alpha_images_as_their_pixels(tmp_path):
    """16-bit images keep their levels (they were clipped to 255 by a conversion to 8-bit grey), float images must
    hold [0, 1], an alpha channel is dropped, and two images of different channels are one line that says so."""
    from sklearn.metrics import normalized_mutual_info_score as sk

    rng = np.random.default_rng(0)
    a16 = (rng.random((24, 24)) * 65535).astype(np.uint16)
    b16 = (a16 // 3 + rng.integers(0, 2000, a16.shape)).astype(np.uint16)
    Image.fromarray(a16).save(tmp_path / "a.png")
    Image.fromarray(b16).save(tmp_path / "b.png")
    levels = [np.round(x.astype(np.float64) / 65535 * 255).ravel() for x in (a16, b16)]  # pixels in [0, 1], 256 levels
    out = cli("measure", "nmi", str(tmp_path / "a.png"), str(tmp_path / "b.png"))
    assert out.returncode == 0 and float(out.stdout) == pytest.approx(sk(*levels), abs=1e-6)
    out = cli("measure", "nmi", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--levels", "65536")
    assert out.returncode == 0 and float(out.stdout) == pytest.approx(sk(a16.ravel(), b16.ravel()), abs=1e-6)

    rgba = rng.integers(0, 256, (24, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    Image.fromarray(np.ascontiguousarray(rgba[..., :3]), "RGB").save(tmp_path / "rgb.png")
    assert cli("measure", "nmi", str(tmp_path / "rgba.png"), str(tmp_path / "rgb.png")).stdout.strip() == "1.000000"
    one_line_error(cli("measure", "nmi", str(tmp_path / "a.png"), str(tmp_path / "rgb.png")),
                   "24 x 24 grey and 24 x 24 colour (RGB)", "the same channels")  # fmt: skip
    Image.fromarray((rng.random((24, 24)) * 3).astype(np.float32), "F").save(tmp_path / "f.tiff")
    one_line_error(cli("measure", "nmi", str(tmp_path / "f.tiff"), str(tmp_path / "f.tiff")), "f.tiff: float pixels in [")


def test_checkpoint_of_another_architecture(tmp_path):
    save_file(build_classifier("resnet_s", 10, 1).state_dict(), tmp_path / "resnet.safetensors")
    one_line_error(
        cli("measure", "gradients", "vgg_s", "--weights", str(tmp_path / "resnet.safetensors")),
        "does not fit this model",
        "key 'features.0.weight'",
    )
    save_file(build_classifier("vgg_s", 10, 1).state_dict(), tmp_path / "vgg.safetensors")
    proc = cli("measure", "gradients", "vgg_s", "--weights", str(tmp_path / "vgg.safetensors"), "-n", "4")
    assert proc.returncode == 0 and "period 2: gradient lattice energy" in proc.stdout


def test_nan_loss_stops_with_one_line(tmp_path):
    (tmp_path / "c.toml").write_text(
        'classifiers = ["vgg_s"]\n[data]\ndataset = "synthetic"\nsynthetic_n = 256\nsize = 16\n'
        '[train_classifier]\nlr = 1e6\noptimizer = "sgd"\nbatch_size = 32\nepochs = 4\n'
    )
    proc = cli("replicate", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path / "runs"), "--quiet")
    one_line_error(
        proc, "became", "NaN or infinite" if "running_var" in proc.stderr else "the loss", "last good", "Lower the learning rate"
    )


def test_missing_results_and_bad_device(tmp_path):
    one_line_error(cli("report", str(tmp_path)), "holds no metrics")
    (tmp_path / "c.toml").write_text("")
    if not torch.cuda.is_available():
        one_line_error(cli("replicate", "--config", str(tmp_path / "c.toml"), "--device", "cuda:0"), "CUDA is not available")
    one_line_error(cli("replicate", "--config", str(tmp_path / "c.toml"), "--device", "tpu"), "unknown device 'tpu'")


def test_lint_resnet50_prints_its_findings():
    proc = cli("lint", "resnet50")
    assert proc.returncode == 0, proc.stderr
    assert "layer2.0.downsample.0" in proc.stdout and "skips inputs: 75% never read" in proc.stdout
    assert "uneven overlap" in proc.stdout and "input gradient: dominant period 2x2" in proc.stdout
    data = json.loads(cli("lint", "segnet:small:transposed", "--channels", "1", "--json").stdout)
    assert data["forward_output"]["period"][0] > 1 and len(data["findings"]) == 3


def test_measure_overlap_and_spectrum(tmp_path):
    proc = cli("measure", "overlap", "--layers", "3,2,0", "--length", "6")
    assert proc.returncode == 0 and "1-D max/min 2.000 (2-D 4.000), period 2" in proc.stdout
    idx = np.arange(32)
    Image.fromarray((((idx[:, None] + idx[None, :]) % 2) * 255).astype(np.uint8)).save(tmp_path / "cb.png")
    proc = cli("measure", "spectrum", str(tmp_path / "cb.png"), "--period", "2")
    assert proc.returncode == 0 and "period 2: lattice energy 1.0000" in proc.stdout


@pytest.mark.slow
def test_demo_quick_end_to_end(quick_demo):
    run, proc = quick_demo
    assert (
        "Top-1 accuracy" in proc.stdout and "The checkerboard question" in proc.stdout and "Claims of the sources" in proc.stdout
    )
    results = json.loads((run / "metrics" / "results.json").read_text())
    assert set(results["classifiers"]) == {"alexnet_s", "vgg_s", "resnet_s", "inception_s"}
    for name in results["classifiers"]:
        for kind in ("original", "plain", "finetuned"):
            assert 0 <= results["accuracy"][name][kind]["top1"] <= 1
    hyp = json.loads((run / "metrics" / "hypothesis.json").read_text())
    from s2snets.experiments.schema import HypothesisResult, Results, problems
    from s2snets.experiments.verdict import VERDICTS

    assert problems(results, Results) == [] and problems(hyp, HypothesisResult) == []  # what the readers rely on

    assert {c["upsample"] for c in hyp["cells"]} == {"unpool"} and hyp["cells"][0]["unit"] == "classifier"
    for cell in hyp["cells"]:
        assert cell["decision"]["verdict"] in VERDICTS and cell["decision"]["n"] == 2  # the quick demo's 2 classifiers
    assert [c["control"] for c in hyp["calibration"]] == ["additive", "multiplicative", "ignored", "none", "decoder"]
    for c in hyp["calibration"]:
        assert isinstance(c["recovered"], bool) and c["truth"] and c["decision"]["n"] == 2
    kept = [{k: c[k] for k in ("control", "truth", "verdict", "recovered")} for c in results["calibration"]]
    assert kept == [{k: c[k] for k in ("control", "truth", "verdict", "recovered")} for c in hyp["calibration"]]
    assert results["calibration"][0]["pattern"] == {k: hyp["calibration"][0]["decision"]["clauses"]["pattern"][k]
                                                    for k in ("mean", "low", "high", "n")}  # fmt: skip
    assert results["checkerboard_answer"] == hyp["answer"]  # the calibration table and answer in results.json too
    if not all(c["recovered"] for c in hyp["calibration"]):  # 15 steps: a smoke test, the verdicts are withheld
        assert all(a["status"] == "not calibrated" for a in hyp["answer"].values()) and "withheld" in proc.stdout
    assert set(hyp["odena"]) == {"0", "1", "2"}
    statuses = ("holds", "does not hold", "inconclusive", "holds in part", "not testable here")
    assert len(results["claims"]) >= 10 and all(c["status"].startswith(statuses) for c in results["claims"])
    assert all(not c["status"].startswith("not testable here") or ": " in c["status"] for c in results["claims"])  # a reason
    assert (run / "report.html").is_file() and (run / "config.toml").is_file() and (run / "log.txt").is_file()
    # a re-run skips every stage and recomputes nothing
    again = cli("demo", "--quick", "--runs", str(run.parent))
    assert again.returncode == 0 and "finished earlier with the same config, skipped" in again.stdout
    assert "steps in" not in again.stdout


def test_config_command_prints_a_valid_complete_config(tmp_path):
    from s2snets.config import RunConfig, load_config
    from s2snets.experiments.presets import demo_config

    for preset, expected in (("default", RunConfig()), ("demo", demo_config())):
        proc = cli("config", "--preset", preset)
        assert proc.returncode == 0
        (tmp_path / f"{preset}.toml").write_text(proc.stdout)
        assert load_config(tmp_path / f"{preset}.toml") == expected


def test_lint_blur_pool_is_even_and_alexnet_s_predicts_period_2():
    proc = cli("lint", "resnet_s", "--channels", "1", "--downsample", "blur_pool")
    assert proc.returncode == 0, proc.stderr
    assert "even (fixed filter)" in proc.stdout and "predicted artifact periods: none" in proc.stdout
    assert "uneven overlap (" not in proc.stdout
    proc = cli("lint", "alexnet_s", "--channels", "1")
    assert "dominant period 2x2 (power share 82% / 82%)" in proc.stdout and "predicted artifact periods: [2]" in proc.stdout


def test_zoo_list_names_entries_and_commands():
    proc = cli("zoo", "list")
    assert proc.returncode == 0, proc.stderr
    assert "alexnet_s-native-s0" in proc.stdout and "s2snets zoo train --only alexnet_s-native-s0" in proc.stdout
    one_line_error(cli("zoo", "train", "--only", "alexnet_s-native-s99"), "not a zoo entry")


def test_lint_finds_a_factory_in_the_current_folder_as_python_m_does(tmp_path):
    """`s2snets lint mymodels:make` run beside mymodels.py (issue 35): the folder is searched after the packages."""
    (tmp_path / "mymodels_s2s_test.py").write_text(
        "from torch import nn\n\ndef make(num_classes=10):\n"
        "    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))\n"
    )
    proc = cli("lint", "mymodels_s2s_test:make", "--input-size", "32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "uneven overlap" in proc.stdout
    proc = cli("lint", "not_a_module_anywhere:make", cwd=tmp_path)
    assert proc.returncode == 2 and "cannot import model factory" in proc.stderr
