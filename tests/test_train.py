import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from s2snets.checkpoint import load_checkpoint, read_meta
from s2snets.config import StageConfig
from s2snets.data import synthetic
from s2snets.models import build_classifier, build_segnet
from s2snets.runtime import init_runtime
from s2snets.train import autoencoder_stage, classifier_stage, finetune_stage, lr_at, train_stage

WORKER = str(Path(__file__).with_name("train_worker.py"))
RT = init_runtime("cpu")


def fit(stage, tmp_path, steps=30, lr=3e-3, data=None):
    data = data or synthetic(256, 16, 4, seed=0)
    cfg = StageConfig(epochs=100, max_steps=steps, batch_size=32, lr=lr, checkpoint_every=10)
    return train_stage(
        stage, data, cfg, seed=0, checkpoint=tmp_path / f"{stage.name}.safetensors", key="k", runtime=RT, progress=False
    )


def test_each_stage_lowers_its_loss(tmp_path):
    torch.manual_seed(0)
    clf = build_classifier("vgg_s", 4, 1)
    r = fit(classifier_stage("clf", clf), tmp_path, 40)
    assert r.history[-1][1] < 0.7 * r.history[0][1]
    ae = build_segnet("tiny", 1)
    r = fit(autoencoder_stage("ae", ae), tmp_path, 40)
    assert r.history[-1][1] < 0.7 * r.history[0][1]
    r = fit(finetune_stage("ft", ae, clf), tmp_path, 30, lr=1e-3)
    assert min(h[1] for h in r.history[-2:]) < r.history[0][1]


def test_finetuning_changes_only_the_decoder(tmp_path):
    torch.manual_seed(0)
    clf, ae = build_classifier("resnet_s", 4, 1), build_segnet("tiny", 1)
    enc = {k: v.clone() for k, v in ae.encoder.state_dict().items()}
    dec = {k: v.clone() for k, v in ae.decoder.state_dict().items()}
    cls = {k: v.clone() for k, v in clf.state_dict().items()}
    fit(finetune_stage("ft", ae, clf), tmp_path, 8)
    assert all(torch.equal(enc[k], v) for k, v in ae.encoder.state_dict().items())  # BN statistics too
    assert all(torch.equal(cls[k], v) for k, v in clf.state_dict().items())
    assert any(not torch.equal(dec[k], v) for k, v in ae.decoder.state_dict().items())
    # the frozen classifier is placed like the trained models (device, memory format): on CUDA it was left on the CPU
    conv = next(m for m in clf.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1 and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and RT.channels_last


def test_finished_stage_is_skipped_and_loaded(tmp_path):
    torch.manual_seed(0)
    clf = build_classifier("vgg_s", 4, 1)
    fit(classifier_stage("clf", clf), tmp_path, 6)
    fresh = build_classifier("vgg_s", 4, 1)
    again = fit(classifier_stage("clf", fresh), tmp_path, 6)
    assert again.skipped and torch.equal(fresh.classifier.weight, clf.classifier.weight)


def test_bf16_autocast_on_cpu_and_amp_validation(tmp_path):
    from s2snets.errors import ConfigError
    from s2snets.runtime import Runtime

    torch.manual_seed(0)
    ae = build_segnet("tiny", 1)
    rt = Runtime(torch.device("cpu"), amp_dtype=torch.bfloat16)
    cfg = StageConfig(max_steps=6, batch_size=32, lr=3e-3, checkpoint_every=3)
    r = train_stage(
        autoencoder_stage("bf16", ae),
        synthetic(128, 16, 4),
        cfg,
        seed=0,
        checkpoint=tmp_path / "b.safetensors",
        key="k",
        runtime=rt,
        progress=False,
    )
    assert r.steps == 6 and all(torch.isfinite(torch.tensor(h[1])) for h in r.history)
    assert all(p.dtype == torch.float32 for p in ae.parameters())  # autocast keeps fp32 master weights
    with pytest.raises(ConfigError, match="fp16' needs CUDA"):
        init_runtime("cpu", "fp16")
    assert init_runtime("cpu", "auto").amp_dtype is None and init_runtime("cpu", "bf16").amp_dtype == torch.bfloat16


def test_lr_schedule():
    cfg = StageConfig(lr=1.0, warmup_steps=2, schedule="cosine")
    assert lr_at(0, 10, cfg) == 0.5 and lr_at(1, 10, cfg) == 1.0 and lr_at(2, 10, cfg) == pytest.approx(1.0)
    assert lr_at(10, 10, cfg) == pytest.approx(0.0, abs=1e-12)


def worker(tmp_path, ckpt, steps, out, kind="ae", lr="0.003", delay="0"):
    return subprocess.run(
        [sys.executable, WORKER, str(ckpt), str(steps), str(out), kind, lr, delay], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("kind", ["ae", "clf"])
def test_killed_and_resumed_equals_uninterrupted(tmp_path, kind):
    ref = worker(tmp_path, tmp_path / "ref.safetensors", 14, tmp_path / "ref.json", kind)
    assert ref.returncode == 0, ref.stderr
    ckpt = tmp_path / "run.safetensors"
    proc = subprocess.Popen(
        [sys.executable, WORKER, str(ckpt), "14", str(tmp_path / "x.json"), kind, "0.003", "0.15"],
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:  # kill it mid-way, after the checkpoint at step 6 and before the end
        if line.strip() == "step 8":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    meta = read_meta(ckpt)
    assert meta is not None and 0 < meta["step"] < 14 and not meta["done"]
    resumed = worker(tmp_path, ckpt, 14, tmp_path / "res.json", kind)
    assert resumed.returncode == 0, resumed.stderr
    a, b = json.loads((tmp_path / "ref.json").read_text()), json.loads((tmp_path / "res.json").read_text())
    assert b["resumed_from"] == meta["step"] and a["weights"] == b["weights"]  # bit-exact


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    ckpt = tmp_path / "nan.safetensors"
    proc = worker(tmp_path, ckpt, 40, tmp_path / "n.json", "clf", lr="1e30")
    assert proc.returncode == 2
    assert "ERROR TrainingError" in proc.stdout and "Lower the learning rate" in proc.stdout
    if ckpt.exists():  # whatever was saved before the divergence is finite
        tensors, _ = load_checkpoint(ckpt)
        assert all(torch.isfinite(v).all() for k, v in tensors.items() if k.startswith("model/") and v.is_floating_point())


def test_ctrl_c_saves_and_exits_cleanly(tmp_path):
    ckpt = tmp_path / "int.safetensors"
    proc = subprocess.Popen(
        [sys.executable, WORKER, str(ckpt), "200", str(tmp_path / "i.json"), "ae", "0.003", "0.05"],
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in proc.stdout:
        if line.strip() == "step 5":
            proc.send_signal(signal.SIGINT)
            break
    out = proc.stdout.read()
    assert proc.wait(timeout=60) == 130
    assert "Interrupted" in out and "re-run to resume" in out
    meta = read_meta(ckpt)
    assert meta is not None and meta["step"] >= 5 and not meta["done"]
    # resumed to the end, its loss history is the uninterrupted run's: the interrupt logs nothing of its own
    run = lambda path, out: subprocess.run([sys.executable, WORKER, str(path), "200", str(out), "ae", "0.003"], check=True)  # noqa: E731
    run(ckpt, tmp_path / "resumed.json")
    run(tmp_path / "straight.safetensors", tmp_path / "straight.json")
    resumed, straight = (json.loads((tmp_path / f).read_text())["loss"] for f in ("resumed.json", "straight.json"))
    assert resumed == straight


def test_two_process_ddp_trains_checkpoints_and_resumes(tmp_path):
    def torchrun(out, *extra):
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node=2",
                "--master_port=29517",
                WORKER,
                str(tmp_path / "ddp.safetensors"),
                "12",
                str(out),
                "clf",
                "0.003",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )

    first = torchrun(tmp_path / "d1.json", "0", "7")  # both ranks are interrupted at step 7
    assert first.returncode != 0 and "Interrupted" in first.stdout, first.stderr[-2000:]
    meta = read_meta(tmp_path / "ddp.safetensors")
    assert meta["step"] == 7 and not meta["done"] and meta["runtime"]["world_size"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".safetensors"] == ["ddp.safetensors"]  # only rank 0 wrote
    second = torchrun(tmp_path / "d2.json")
    assert second.returncode == 0, second.stderr[-2000:]
    r2 = json.loads((tmp_path / "d2.json").read_text())
    assert r2["world"] == 2 and r2["resumed_from"] == 7 and r2["steps"] == 12
    assert (tmp_path / "d2.json.sync").read_text() == "True"  # the ranks hold identical weights
    assert r2["loss"][-1][1] < r2["loss"][0][1]  # the history spans both runs, and it trained


@pytest.mark.parametrize("bad", [{"epochs": 0}, {"max_steps": -1}, {"batch_size": 0}, {"lr": 0.0}])
def test_a_stage_without_steps_is_a_config_error_not_a_finished_checkpoint(tmp_path, bad):
    from dataclasses import replace

    from s2snets.errors import ConfigError

    cfg = replace(StageConfig(epochs=1, batch_size=16), **bad)
    stage = classifier_stage("clf", build_classifier("vgg_s", 4, 1))
    with pytest.raises(ConfigError):
        train_stage(
            stage, synthetic(64), cfg, seed=0, checkpoint=tmp_path / "c.safetensors", key="k", runtime=init_runtime("cpu", "off")
        )
    assert not (tmp_path / "c.safetensors").exists()


def test_tensorboard_scalars_are_written_per_logged_step(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    torch.manual_seed(0)
    stage = classifier_stage("clf", build_classifier("vgg_s", 4, 1))
    cfg = StageConfig(epochs=1, max_steps=20, batch_size=32, lr=1e-3, checkpoint_every=10)
    result = train_stage(
        stage, synthetic(128, 16, 4, seed=0), cfg, seed=0, checkpoint=tmp_path / "c.safetensors", key="k", runtime=RT,
        progress=False, tensorboard=tmp_path / "tb",
    )  # fmt: skip
    events = EventAccumulator(str(tmp_path / "tb")).Reload()
    losses = [(e.step, e.value) for e in events.Scalars("clf/loss")]
    assert [s for s, _ in losses] == [s for s, _ in result.history]
    assert all(abs(v - h) < 1e-5 for (_, v), (_, h) in zip(losses, result.history))


def test_without_a_bar_progress_lines_come_with_rate_and_eta(tmp_path):
    torch.manual_seed(0)
    stage = classifier_stage("clf", build_classifier("vgg_s", 4, 1))
    cfg = StageConfig(epochs=1, max_steps=20, batch_size=32, lr=1e-3, checkpoint_every=10)
    lines: list[str] = []
    result = train_stage(
        stage, synthetic(128, 16, 4, seed=0), cfg, seed=0, checkpoint=tmp_path / "c.safetensors", key="k", runtime=RT,
        progress=False, log=lines.append, heartbeat=0.0,  # a line per logged step here; every 30 s in the pipeline
    )  # fmt: skip
    beats = [ln for ln in lines if "ETA" in ln]
    assert [int(ln.split()[2].split("/")[0]) for ln in beats] == [s for s, _ in result.history]
    assert beats[0].startswith("clf: step 4/20 (20%), loss ") and "steps/s, ETA" in beats[0]


def test_compile_runs_the_same_steps_and_keeps_checkpoint_names(tmp_path, monkeypatch):
    """runtime.compile traces the training step with torch.compile (dynamo). Here the traced graph runs with the
    'aot_eager' backend (inductor would spend half a minute compiling C++ on this CPU; the GPU benchmark uses it):
    the fine-tuning step through max-unpool indices and a frozen classifier is captured, gives the uncompiled
    run's weights, and the checkpoint has the same tensor names, so compiled and uncompiled runs resume each other."""
    import dataclasses

    calls = []
    original = torch.nn.Module.compile

    def traced(self, *args, **kwargs):
        calls.append(type(self).__name__)
        return original(self, backend="aot_eager")

    monkeypatch.setattr(torch.nn.Module, "compile", traced)
    weights = {}
    for compile in (False, True):
        torch.manual_seed(0)
        clf, ae = build_classifier("vgg_s", 4, 1), build_segnet("tiny", 1)
        data = synthetic(64, 16, 4, seed=0)
        cfg = StageConfig(epochs=1, max_steps=3, batch_size=16, lr=1e-3)
        path = tmp_path / f"ft-{compile}.safetensors"
        runtime = dataclasses.replace(RT, compile=compile)
        train_stage(finetune_stage("ft", ae, clf), data, cfg, seed=0, checkpoint=path, key="k", runtime=runtime, progress=False)
        weights[compile] = load_checkpoint(path)[0]
    assert calls == ["FinetuneLoss"]
    assert weights[True].keys() == weights[False].keys()
    for k, v in weights[False].items():
        if k.startswith("model/"):
            torch.testing.assert_close(weights[True][k], v, rtol=1e-4, atol=1e-5)


def test_inference_batches_are_cache_sized_on_cpu_and_do_not_change_outputs():
    from s2snets.train import autoencode, predict_logits

    cpu = init_runtime("cpu", "off")
    assert cpu.inference_batch((1, 32, 32)) == 64  # 64 K pixel values
    assert cpu.inference_batch((3, 224, 224)) == 1  # one large image at a time, never 0
    assert cpu.inference_batch((1, 4, 4)) == 512  # capped
    data = synthetic(n=150, size=16, classes=3, seed=1)
    ae, clf = build_segnet("tiny", in_channels=1).eval(), build_classifier("alexnet_s", num_classes=3, in_channels=1)
    raw = autoencode(ae, data, cpu)  # batches of 256 cut at 150: one; then in batches of 7
    torch.testing.assert_close(autoencode(ae, data, cpu, batch_size=7), raw, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(predict_logits(clf, data, cpu, batch_size=7), predict_logits(clf, data, cpu), rtol=1e-6, atol=1e-6)
