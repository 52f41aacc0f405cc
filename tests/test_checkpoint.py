import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from s2snets.checkpoint import (
    load_checkpoint,
    load_module,
    load_optimizer,
    load_user_weights,
    optimizer_tensors,
    save_checkpoint,
)
from s2snets.errors import CheckpointError
from s2snets.models import build_classifier


def _under(module, prefix):
    """A module's state_dict under ``prefix/``, as a stage's checkpoint holds it."""
    return {f"{prefix}/{k}": v for k, v in module.state_dict().items()}


def test_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(0)
    tensors = {"a": torch.randn(3, 4), "b/c": torch.randint(0, 9, (5,)), "d": torch.randn(2, dtype=torch.float64)}
    meta = {"step": 7, "nested": {"x": [1, 2.5, "s"]}}
    save_checkpoint(tmp_path / "c.safetensors", tensors, meta)
    loaded, meta2 = load_checkpoint(tmp_path / "c.safetensors")
    assert meta2 == meta
    for k, v in tensors.items():
        assert loaded[k].dtype == v.dtype and torch.equal(loaded[k], v)
    assert (tmp_path / "c.json").is_file()


def test_optimizer_state_round_trip_without_pickle(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 4)).square().sum().backward()
        opt.step()
    t, m = optimizer_tensors(opt)
    save_checkpoint(tmp_path / "o.safetensors", {**t, **_under(model, "model")}, {"optimizer": m})
    tensors, meta = load_checkpoint(tmp_path / "o.safetensors")
    model2 = nn.Linear(4, 3)
    load_module(model2, tensors, "model")
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    load_optimizer(opt2, tensors, meta["optimizer"])
    x = torch.randn(8, 4)
    for o, mdl in ((opt, model), (opt2, model2)):
        o.zero_grad()
        mdl(x).square().sum().backward()
        o.step()
    assert torch.equal(model.weight, model2.weight)


def test_checkpoint_of_another_architecture_names_the_key(tmp_path):
    a, b = build_classifier("vgg_s", 10, 1), build_classifier("resnet_s", 10, 1)
    save_checkpoint(tmp_path / "a.safetensors", _under(a, "model/classifier"), {})
    tensors, _ = load_checkpoint(tmp_path / "a.safetensors")
    with pytest.raises(CheckpointError, match="key '.*' is missing"):
        load_module(b, tensors, "model/classifier", "a.safetensors")
    wide = build_classifier("alexnet_s", 10, 3)
    save_checkpoint(tmp_path / "w.safetensors", _under(wide, "m"), {})
    with pytest.raises(CheckpointError, match=r"key 'features.0.weight' has shape \(32, 3, 7, 7\) in the file"):
        load_module(build_classifier("alexnet_s", 10, 1), load_checkpoint(tmp_path / "w.safetensors")[0], "m")


def test_unreadable_checkpoint(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_user_pth_weights_are_read_safely(tmp_path):
    model = build_classifier("vgg_s", 10, 1)
    torch.save(model.state_dict(), tmp_path / "w.pth")
    state = load_user_weights(tmp_path / "w.pth")
    assert set(state) == set(model.state_dict())
    built = build_classifier("vgg_s", 10, 1, weights=tmp_path / "w.pth")
    assert torch.equal(built.classifier.weight, model.classifier.weight)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth", _use_new_zipfile_serialization=True)
    with pytest.raises(CheckpointError, match="not a readable weights file"):
        load_user_weights(tmp_path / "evil.pth")


WRITER = """
import sys, torch
from s2snets.checkpoint import save_checkpoint
path = sys.argv[1]
i = 0
while True:
    i += 1
    save_checkpoint(path, {"w": torch.full((256, 1024), float(i))}, {"step": i})
    print(i, flush=True)
"""


def test_kill_during_repeated_saves_never_breaks_the_latest(tmp_path):
    path = tmp_path / "latest.safetensors"
    for delay in (0.35, 0.6, 0.9):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "1" or path.exists()
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        tensors, meta = load_checkpoint(path)  # must be readable, old or new, never a mix
        assert torch.all(tensors["w"] == float(meta["step"]))
