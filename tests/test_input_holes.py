"""Each class of bad input the 0.2 audit found ends in one line and exit 2 (or is handled right), never "internal
error", a wrong result or a hang (docs/reliability.md)."""

import errno
import json
import os
import signal

import pytest
import torch
from conftest import cli, one_line_error
from PIL import Image

from s2snets.config import load_config
from s2snets.data import image_files, image_folder
from s2snets.errors import CheckpointError, ConfigError, DataError, ModelError


def _folder(root, per_class=2):
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(per_class):
            Image.new("L", (24, 24), 60 * i + 30 * (c == "b")).save(root / c / f"{i}.png")
    return root


def test_a_link_loop_or_a_second_link_to_a_folder_repeats_no_image(tmp_path):
    root = _folder(tmp_path / "train")
    (root / "a" / "loop").symlink_to(root / "a")
    (root / "b" / "again").symlink_to(root / "a")  # another class's folder, linked: its files once, under b
    assert len(image_files(root / "a")) == 2 and len(image_folder(root, 16, 1)) == 6  # not 168


def test_a_fifo_named_png_is_refused_at_once_not_waited_on(tmp_path):
    root = _folder(tmp_path / "train")
    os.mkfifo(root / "a" / "pipe.png")
    assert len(image_folder(root, 16, 1)) == 4  # not listed as an image
    signal.alarm(20)  # a regression would block on open(); the alarm fails the test instead of hanging the suite
    try:
        one_line_error(cli("measure", "spectrum", str(root / "a" / "pipe.png")), "not a regular file")
    finally:
        signal.alarm(0)


def test_a_header_claiming_huge_pixels_is_refused_in_a_folder_as_on_the_command_line(tmp_path):
    root = _folder(tmp_path / "train")
    from test_fuzz import _png_header

    (root / "a" / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    (root / "b" / "big.png").write_bytes(_png_header(10_500, 10_000))  # 105 Mpx: under Pillow's own limit, over ours
    with pytest.raises(DataError, match="claims"):
        image_folder(root, 16, 1)
    assert len(image_folder(root, 16, 1, on_corrupt="skip").skipped) == 2
    one_line_error(cli("measure", "spectrum", str(root / "a" / "bomb.png")), "claims more than", "refused")
    one_line_error(cli("measure", "spectrum", str(root / "b" / "big.png")), "claims 10500 x 10000 pixels")


def test_deep_toml_and_huge_values_are_config_errors(tmp_path):
    deep = tmp_path / "deep.toml"
    deep.write_text("x = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(ConfigError, match="too deeply"):
        load_config(deep)
    for text in ("[data]\nsynthetic_n = 4611686018427387904\n", "seed = 9223372036854775807\n"):
        (tmp_path / "big.toml").write_text(text)
        with pytest.raises(ConfigError, match="out of range"):
            load_config(tmp_path / "big.toml")


@pytest.mark.parametrize(
    "argv",
    [
        ["lint", "alexnet_s", "--input-size", "99999999"],
        ["measure", "overlap", "--layers", "99999999999999999999,2"],
        ["measure", "gradients", "alexnet_s", "--seed", "1000000000000000000000000"],
        ["measure", "gradients", "alexnet_s", "-n", "100000000000"],
    ],
)
def test_huge_numbers_on_the_command_line_are_one_line(argv):
    proc = cli(*argv)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "internal error" not in proc.stderr


def test_a_full_disk_while_saving_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    from s2snets import checkpoint

    path = tmp_path / "c.safetensors"
    checkpoint.save_checkpoint(path, {"w": torch.ones(3)}, {"step": 1})

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(CheckpointError, match="no space left"):
        checkpoint.save_checkpoint(path, {"w": torch.zeros(3)}, {"step": 2})
    assert checkpoint.load_checkpoint(path)[1]["step"] == 1 and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "factory,match",
    [
        (":make", "not package.module:factory"),
        (".rel:make", "not package.module:factory"),
        ("extra_logits", r"returned \(2, 13\)"),
        ("one_logit", r"returned \(2, 1\)"),
        ("tuple_output", "returned tuple"),
        ("feature_map", "returned"),
        ("identity", "no parameters"),
        ("float64", "model.float"),
        ("exits", "SystemExit"),
        ("syntax", "syntax error"),
        ("raises", "raised RuntimeError"),
    ],  # fmt: skip
)
def test_factories_that_misbehave_are_refused_before_any_work(tmp_path, monkeypatch, factory, match):
    from s2snets.models import build_classifier

    (tmp_path / "holes.py").write_text(
        "import torch\nfrom torch import nn\n"
        "def extra_logits(num_classes): return nn.Sequential(nn.Flatten(), nn.Linear(1024, num_classes + 3))\n"
        "def one_logit(num_classes): return nn.Sequential(nn.Flatten(), nn.Linear(1024, 1))\n"
        "class T(nn.Module):\n    def __init__(self): super().__init__(); self.f = nn.Linear(1024, 10)\n"
        "    def forward(self, x): return self.f(x.flatten(1)), x\n"
        "def tuple_output(num_classes): return T()\n"
        "def feature_map(num_classes): return nn.Conv2d(1, num_classes, 3)\n"
        "def identity(num_classes): return nn.Identity()\n"
        "def float64(num_classes): return nn.Sequential(nn.Flatten(), nn.Linear(1024, num_classes)).double()\n"
        "def exits(num_classes): raise SystemExit(0)\n"
    )
    (tmp_path / "holes_syntax.py").write_text("def broken(:\n")
    (tmp_path / "holes_raises.py").write_text("raise RuntimeError('at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = {"syntax": "holes_syntax:f", "raises": "holes_raises:f"}.get(
        factory, f"holes:{factory}" if ":" not in factory else factory
    )
    with pytest.raises(ModelError, match=match):
        build_classifier(spec, 10, 1, input_size=32)


def test_a_one_class_test_split_and_a_hand_edited_manifest_are_one_line(tmp_path):
    from s2snets import zoo
    from s2snets.config import DataConfig, RunConfig
    from s2snets.experiments.replicate import load_context

    root = tmp_path / "data"
    _folder(root / "train")
    (root / "test" / "a").mkdir(parents=True)
    Image.new("L", (24, 24), 9).save(root / "test" / "a" / "0.png")
    config = RunConfig(data=DataConfig(dataset="folder", root=str(root), size=16))
    with pytest.raises(DataError, match="at least two classes"):
        load_context(config, None, None, False)
    manifest = json.loads((zoo.ZOO_DIR / "manifest.json").read_text())
    name = next(iter(manifest["entries"]))
    del manifest["entries"][name]["sha256"]
    (tmp_path / "zoo").mkdir()
    (tmp_path / "zoo" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=f"entry '{name}' lacks sha256"):
        zoo.read_manifest(tmp_path / "zoo")


def test_non_finite_weights_are_refused(tmp_path):
    from safetensors.torch import save_file

    from s2snets.checkpoint import load_user_weights

    save_file({"w": torch.tensor([1.0, float("nan")])}, str(tmp_path / "nan.safetensors"))
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_user_weights(tmp_path / "nan.safetensors")


def test_run_directories_stale_temporaries_and_symlinks(tmp_path):
    from s2snets.rundir import run_lock

    real, link = tmp_path / "real", tmp_path / "runs" / "linked"
    real.mkdir()
    link.parent.mkdir()
    link.symlink_to(real)
    with pytest.raises(Exception, match="symbolic link"):
        with run_lock(link):
            pass
    run = tmp_path / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    stale = run / "checkpoints" / ".x.safetensors.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    with run_lock(run):
        assert not stale.exists()


def test_command_line_odds_and_ends():
    proc = cli()
    assert proc.returncode == 2 and proc.stdout == "" and "no command given" in proc.stderr
    one_line_error(cli("demo", "--name", ""), "is not a run name")
    one_line_error(cli("lint", "alexnet_s", "--device", ""), "names no device")
    proc = cli("measure", "spectrum", "two\nlines.png")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "\\n" in proc.stderr
