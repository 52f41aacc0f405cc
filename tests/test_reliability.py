"""Nothing lost, nothing wrong, nothing outside its folder: locks, verified checkpoints, confined names, exit codes."""

import os
import signal
import stat
import subprocess
import sys
import time

import pytest
import torch
from conftest import cli, one_line_error
from safetensors import safe_open
from safetensors.torch import save_file

from s2snets.checkpoint import HASH_KEY, CorruptCheckpoint, load_checkpoint, save_checkpoint, tensors_sha256
from s2snets.config import StageConfig, check_run_name
from s2snets.data import synthetic
from s2snets.errors import ConfigError, ModelError, TrainingError
from s2snets.models import build_classifier
from s2snets.rundir import RunLocked, run_lock
from s2snets.runtime import init_runtime
from s2snets.train import classifier_stage, train_stage

RT = init_runtime("cpu")


# ----------------------------------------------------------------------------------------------- locks
def test_a_second_process_on_a_locked_run_directory_exits_2_naming_the_holder(tmp_path):
    (tmp_path / "c.toml").write_text('[data]\ndataset = "synthetic"\n')
    with run_lock(tmp_path / "runs" / "run"):
        proc = cli("replicate", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path / "runs"))
        one_line_error(proc, "in use by", f"pid {os.getpid()}")
        with pytest.raises(RunLocked), run_lock(tmp_path / "runs" / "run"):
            pass
    assert not (tmp_path / "runs" / "run" / "checkpoints").exists()  # refused before any work


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path):
    code = f"from s2snets.rundir import run_lock\nwith run_lock({str(tmp_path)!r}):\n    print('held', flush=True)\n    input()\n"
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked, match=f"pid {holder.pid}"), run_lock(tmp_path):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with run_lock(tmp_path):  # the kernel released the dead holder's lock; its pid file is just text
        assert f"pid {os.getpid()}" in (tmp_path / ".lock").read_text()


# ----------------------------------------------------------------------------------------------- checkpoints
def _rewrite_tensor(path, name, value):
    """Change one tensor in place while keeping the header (and its content hash) as written: silent corruption."""
    with safe_open(str(path), framework="pt") as f:
        header = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors[name] = value
    save_file(tensors, str(path), metadata=header)


def test_a_changed_tensor_is_caught_by_the_content_hash(tmp_path):
    path = tmp_path / "c.safetensors"
    save_checkpoint(path, {"w": torch.ones(3)}, {"step": 1})
    tensors, meta = load_checkpoint(path)
    assert meta == {"step": 1} and torch.equal(tensors["w"], torch.ones(3))
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()[HASH_KEY] == tensors_sha256({"w": torch.ones(3)})
    _rewrite_tensor(path, "w", torch.tensor([1.0, 2.0, 1.0]))
    with pytest.raises(CorruptCheckpoint, match="content hash"):
        load_checkpoint(path)


def test_files_get_the_users_umask_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.safetensors", {"w": torch.ones(1)}, {})
    finally:
        os.umask(old)
    for name in ("c.safetensors", "c.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def _stage_and_data():
    torch.manual_seed(0)
    return classifier_stage("clf", build_classifier("vgg_s", 4, 1)), synthetic(128, 16, 4, seed=0)


@pytest.mark.parametrize("damage", ["hash", "nan"])
def test_a_corrupt_stage_checkpoint_is_quarantined_and_the_stage_runs_again(tmp_path, damage):
    stage, data = _stage_and_data()
    cfg = StageConfig(epochs=1, max_steps=8, batch_size=32, lr=1e-3, checkpoint_every=4)
    ckpt = tmp_path / "clf.safetensors"
    train_stage(stage, data, cfg, seed=0, checkpoint=ckpt, key="k", runtime=RT, progress=False)
    name = next(k for k in load_checkpoint(ckpt)[0] if k.endswith("weight"))
    if damage == "hash":
        _rewrite_tensor(ckpt, name, torch.zeros_like(load_checkpoint(ckpt)[0][name]))
    else:  # NaN written with a matching hash: only the finiteness check can catch it
        tensors, meta = load_checkpoint(ckpt)
        tensors[name] = torch.full_like(tensors[name], float("nan"))
        save_checkpoint(ckpt, tensors, meta)
    messages = []
    stage, _ = _stage_and_data()
    result = train_stage(stage, data, cfg, seed=0, checkpoint=ckpt, key="k", runtime=RT, progress=False, log=messages.append)
    assert not result.skipped and result.steps == 8  # trained again, not "finished earlier"
    assert any("quarantine" in m for m in messages), messages
    assert len(list((tmp_path / "quarantine").glob("clf.*.safetensors"))) == 1
    load_checkpoint(ckpt, finite=True)  # the new one is sound


def test_diverged_weights_never_replace_the_last_good_checkpoint(tmp_path):
    stage, data = _stage_and_data()
    cfg = StageConfig(epochs=1, max_steps=8, batch_size=32, lr=1e-3, checkpoint_every=4)
    ckpt = tmp_path / "clf.safetensors"
    weight = next(p for p in stage.params if p.ndim == 4)

    def blow_up(step):  # every loss was finite; the weights after the last update are not
        if step == 8:
            with torch.no_grad():
                weight.fill_(float("inf"))

    with pytest.raises(TrainingError, match="NaN or infinite"):
        train_stage(stage, data, cfg, seed=0, checkpoint=ckpt, key="k", runtime=RT, progress=False, on_step=blow_up)
    tensors, meta = load_checkpoint(ckpt, finite=True)
    assert meta["step"] == 4 and not meta["done"]


def test_metrics_csv_has_one_row_per_logged_step_and_is_trimmed_on_resume(tmp_path):
    stage, data = _stage_and_data()
    cfg = StageConfig(epochs=1, max_steps=12, batch_size=32, lr=1e-3, checkpoint_every=4)
    csv = tmp_path / "clf.csv"
    train_stage(stage, data, cfg, seed=0, checkpoint=tmp_path / "c.safetensors", key="k", runtime=RT, progress=False,
                log_every=2, metrics_csv=csv)  # fmt: skip
    rows = csv.read_text().splitlines()
    assert rows[0] == "step,epoch,loss,lr,seconds"
    assert [int(r.split(",")[0]) for r in rows[1:]] == [2, 4, 6, 8, 10, 12]
    csv.write_text("\n".join(rows[:4]) + "\n9,0,1,1,1\n")  # as if killed after step 9 with a checkpoint at 4
    from s2snets.train import _MetricsCSV

    _MetricsCSV(csv, 4)
    assert [int(r.split(",")[0]) for r in csv.read_text().splitlines()[1:]] == [2, 4]


# ----------------------------------------------------------------------------------------------- names, factories
@pytest.mark.parametrize("name", ["../x", "/tmp/x", "a/b", "..", ".", ".hidden", "a\x00b", "tab\there", "", "x" * 101])
def test_run_names_are_one_path_component(name):
    with pytest.raises(ConfigError, match="not a run name"):
        check_run_name(name)


def test_run_names_never_escape_the_runs_folder(tmp_path):
    runs = tmp_path / "runs"
    (tmp_path / "c.toml").write_text('name = "../../escaped"\n')
    one_line_error(cli("replicate", "--config", str(tmp_path / "c.toml"), "--runs", str(runs)), "not a run name")
    one_line_error(cli("demo", "--name", "../escaped", "--runs", str(runs)), "--name", "not a run name")
    one_line_error(cli("demo", "--name", str(tmp_path / "abs"), "--runs", str(runs)), "not a run name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


def test_a_factory_is_called_once_and_its_errors_are_its_own(tmp_path, monkeypatch):
    (tmp_path / "userfactories.py").write_text(
        "import torch\ncalls = []\n"
        "def make(num_classes, in_channels):\n    calls.append(1)\n    raise TypeError('my own bug')\n"
        "def good(num_classes):\n    calls.append(num_classes)\n    return torch.nn.Linear(4, num_classes)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import userfactories

    with pytest.raises(ModelError, match="raised TypeError: my own bug"):
        build_classifier("userfactories:make", 10, 1)
    assert userfactories.calls == [1]
    assert build_classifier("userfactories:good", 7, 1).out_features == 7 and userfactories.calls[-1] == 7
    with pytest.raises(ModelError, match="does not take num_classes"):
        build_classifier("os:abort")  # refused before it is called: this process is still alive


# ----------------------------------------------------------------------------------------------- exit codes
@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["measure", "spectrum", "IMG", "--period", "1"], "--period"),
        (["measure", "nmi", "IMG", "IMG", "--levels", "1"], "--levels"),
        (["lint", "alexnet_s", "--channels", "0"], "--channels"),
        (["lint", "alexnet", "--input-size", "8"], "cannot run on an input"),
        (["lint", "resnet_s", "--device", "cuda:7"], "cuda:7"),
        (["--device", "cuda:3", "lint", "resnet_s"], "cuda:3"),
        (["measure", "overlap", "--layers", "3,0"], "--layers"),
        (["measure", "overlap", "--layers", "a,b"], "--layers"),
        (["measure", "transfer", "NOWHERE"], "results.json"),
        (["report", "NOWHERE"], "not found"),
        (["replicate", "--config", "CFG", "--set", "finetune.lr=0"], "finetune.lr"),
        (["replicate", "--config", "CFG", "--set", "pretrain.optimizer=adamm"], "did you mean 'adam'"),
        (["replicate", "--config", "CFG", "--set", "nokey=1"], "unknown config key"),
        (["replicate", "--config", "CFG", "--set", "novalue"], "key=value"),
        (["measure", "gradients", "os:abort"], "num_classes"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, argv, fragment):
    from PIL import Image

    Image.new("L", (16, 16)).save(tmp_path / "a.png")
    (tmp_path / "c.toml").write_text('[data]\ndataset = "synthetic"\n')
    subst = {"IMG": str(tmp_path / "a.png"), "CFG": str(tmp_path / "c.toml"), "NOWHERE": str(tmp_path / "none")}
    proc = (
        cli(*[subst.get(a, a) for a in argv], "--runs", str(tmp_path / "runs"))
        if argv[0] == "replicate"
        else (cli(*[subst.get(a, a) for a in argv]))
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment in proc.stderr, proc.stderr


def test_an_unwritable_runs_folder_is_one_line_not_an_internal_error(tmp_path):
    (tmp_path / "c.toml").write_text('[data]\ndataset = "synthetic"\n')
    (tmp_path / "afile").write_text("")
    proc = cli("replicate", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path / "afile" / "runs"))
    one_line_error(proc, "afile")


def test_a_results_file_of_the_wrong_shape_is_a_data_error(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "results.json").write_text('{"transfer": [1, 2]}')
    one_line_error(cli("measure", "transfer", str(tmp_path)), "results.json")
    one_line_error(cli("report", str(tmp_path)), "results.json")


def test_a_decompression_bomb_is_a_data_error(tmp_path):
    from PIL import Image

    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")  # 144 Mpx: above PIL's safety limit, tiny on disk
    one_line_error(cli("measure", "spectrum", str(tmp_path / "bomb.png")), "refused")


def test_ctrl_c_during_a_command_exits_130(tmp_path):
    # SIGINT back to its default in the child: a shell without job control starts background jobs (`make test &`)
    # with SIGINT ignored, the child inherits that, and Python then installs no KeyboardInterrupt handler.
    proc = subprocess.Popen(
        [sys.executable, "-m", "s2snets", "zoo", "verify"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    time.sleep(4)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert len(err.strip().splitlines()) == 1 and "interrupted" in err
