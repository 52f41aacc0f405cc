"""Speed targets, measured as ratios against a reference run in the same process (`make bench`).

1. nMI: s2snets' batched exact nMI vs scikit-learn and a numpy.bincount reference, pair by pair, on realistic pairs
   (an image and its noisy reconstruction, two different images, a constant image) and on uniform noise, at 32x32
   and 224x224x3, one and two threads (target: <= 250 us per 224x224x3 pair on one thread, exact to 1e-9).
2. Training step: achieved FLOP/s (torch.utils.flop_counter) vs this machine's fp32 GEMM rate (target >= 80%).
3. Engine overhead: train_stage throughput vs a bare hand-written loop doing the same steps (target >= 0.95x).
4. With --paper: the paper's scale at 224 px, `paper` SegNet pretraining and decoder fine-tuning through ResNet-50,
   images per second, engine vs bare loop (target >= 0.95x).
5. With --demo: `s2snets demo` from scratch (target <= 15 min with the hypothesis grid).

Timings are the minimum over repeats (this VM is noisy); every ratio compares runs made in this process.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from s2snets.config import StageConfig
from s2snets.data import synthetic
from s2snets.metrics.nmi import nmi
from s2snets.models import build_classifier, build_segnet
from s2snets.models.segnet import SegNet
from s2snets.runtime import init_runtime
from s2snets.train import autoencoder_stage, train_stage


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def natural_images(n: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Natural-looking uint8 images: smooth structure at several scales (1/f-like), full 0...255 range."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, c, h, w)
    for s in (4, 8, 16, 32):
        coarse = torch.rand(n, c, max(h // s, 1) + 1, max(w // s, 1) + 1, generator=g)
        x += F.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False) / s
    lo, hi = x.amin((1, 2, 3), keepdim=True), x.amax((1, 2, 3), keepdim=True)
    return ((x - lo) / (hi - lo) * 255).round().to(torch.uint8)


def nmi_cases(n: int, c: int, h: int, w: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """The pairs the method meets (an image and its noisy reconstruction, two different images, a constant image)
    and uniform noise, which flatters every histogram (its joint counts spread evenly)."""
    a = natural_images(n, c, h, w, 0)
    g = torch.Generator().manual_seed(1)
    noisy = (a.float() + 8 * torch.randn(a.shape, generator=g)).clamp(0, 255).round().to(torch.uint8)
    return {
        "image vs noisy reconstruction": (a, noisy),
        "two different images": (a, natural_images(n, c, h, w, 2)),
        "image vs constant image": (a, torch.full_like(a, 128)),
        "uniform noise (flattering)": tuple(torch.randint(0, 256, a.shape, generator=g, dtype=torch.uint8) for _ in range(2)),
    }


def numpy_bincount_nmi(a, b) -> float:
    """The straightforward reference: a joint histogram with numpy.bincount, entropies with numpy (arithmetic nMI)."""
    import numpy as np

    a, b = a.astype(np.int64), b.astype(np.int64)
    n = a.size
    joint = np.bincount(a * 256 + b, minlength=65536).astype(np.float64)
    pa, pb = joint.reshape(256, 256).sum(1), joint.reshape(256, 256).sum(0)

    def h(counts):
        c = counts[counts > 0]
        return float(np.log(n) - (c * np.log(c)).sum() / n)

    ha, hb, hab = h(pa), h(pb), h(joint)
    mi = max(ha + hb - hab, 0.0)
    if ha == 0 or hb == 0:
        return 1.0 if ha == hb == 0 else 0.0
    return mi / ((ha + hb) / 2)


def fast_histogram_nmi(a, b) -> float:
    """The fastest histogram library we know (fast-histogram's C loop), with the entropies of ``numpy_bincount_nmi``."""
    import numpy as np
    from fast_histogram import histogram2d

    n = a.size
    joint = histogram2d(a.astype(np.float64), b.astype(np.float64), 256, [[0, 256], [0, 256]])
    pa, pb = joint.sum(1), joint.sum(0)

    def h(counts):
        c = counts[counts > 0]
        return float(np.log(n) - (c * np.log(c)).sum() / n)

    ha, hb, hab = h(pa), h(pb), h(joint.ravel())
    if ha == 0 or hb == 0:
        return 1.0 if ha == hb == 0 else 0.0
    return max(ha + hb - hab, 0.0) / ((ha + hb) / 2)


FLOAT_FORMS = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def bench_nmi() -> dict:
    """Per case and size: microseconds per pair for s2snets per batch (uint8, and the float forms the API asks for:
    pixels in [0, 1]) and per call (one pair per call, as scikit-learn users call it), beside scikit-learn, a
    numpy.bincount reference and fast-histogram (all per call: they take one pair), on one and two threads; the
    ratios the targets name; the largest difference from scikit-learn. With CUDA also the tensor operations there."""
    threads_before = torch.get_num_threads()
    out: dict = {}
    for label, shape, pairs, ref_pairs in (("32x32", (1, 32, 32), 2000, 40), ("224x224x3", (3, 224, 224), 32, 4)):
        for case, (a, b) in nmi_cases(pairs, *shape).items():
            out.setdefault(label, {})[case] = _nmi_row(a, b, ref_pairs)
    torch.set_num_threads(threads_before)
    return out


def _nmi_row(a: torch.Tensor, b: torch.Tensor, ref_pairs: int) -> dict:
    from sklearn.metrics import normalized_mutual_info_score as sk

    pairs = len(a)
    an = [x.flatten().numpy() for x in a[:ref_pairs]]
    bn = [x.flatten().numpy() for x in b[:ref_pairs]]
    row = {}
    for name, fn in (("sklearn", sk), ("numpy_bincount", numpy_bincount_nmi), ("fast_histogram", fast_histogram_nmi)):
        row[f"{name}_us"] = best_of(lambda fn=fn: [fn(x, y) for x, y in zip(an, bn)], 3) / ref_pairs * 1e6
    reference = [sk(an[i], bn[i]) for i in range(ref_pairs)]
    floats = {f: (a.to(d) / 255, b.to(d) / 255) for f, d in FLOAT_FORMS.items()}
    row["max_abs_diff_vs_sklearn"] = max(abs(float(nmi(x, y, backend=backend)[i]) - reference[i])
                                         for backend in ("numba", "torch") for x, y in [(a, b), floats["float64"]]
                                         for i in range(ref_pairs))  # fmt: skip
    one = min(pairs, 200)
    flat_a, flat_b = [x.reshape(-1) for x in a[:one]], [x.reshape(-1) for x in b[:one]]  # one pair, as sklearn takes it
    for threads in (1, 2):
        torch.set_num_threads(threads)
        t = f"{threads}t"
        batch = best_of(lambda: nmi(a, b)) / pairs * 1e6
        row[f"s2snets_us_{t}"] = batch
        row[f"per_call_us_{t}"] = best_of(lambda: [nmi(x, y) for x, y in zip(flat_a, flat_b)], 3) / one * 1e6
        row[f"per_call_ratio_{t}"] = row[f"per_call_us_{t}"] / batch
        for form, (fa, fb) in floats.items():
            row[f"{form}_us_{t}"] = best_of(lambda fa=fa, fb=fb: nmi(fa, fb)) / pairs * 1e6
            row[f"{form}_ratio_{t}"] = row[f"{form}_us_{t}"] / batch
            if threads == 1:  # one pair per call in this form too, against its own batched time
                xs, ys = [x.reshape(-1) for x in fa[:one]], [y.reshape(-1) for y in fb[:one]]
                per_call = best_of(lambda xs=xs, ys=ys: [nmi(x, y) for x, y in zip(xs, ys)], 3) / one * 1e6
                row[f"{form}_per_call_ratio_{t}"] = per_call / row[f"{form}_us_{t}"]
        for name in ("sklearn", "numpy_bincount", "fast_histogram"):
            row[f"speedup_vs_{name}_{t}"] = row[f"{name}_us"] / batch
            row[f"per_call_speedup_vs_{name}_{t}"] = row[f"{name}_us"] / row[f"per_call_us_{t}"]
        row[f"tensor_ops_us_{t}"] = best_of(lambda: nmi(a, b, backend="torch"), 3) / pairs * 1e6
    if torch.cuda.is_available():
        ga, gb = a.cuda(), b.cuda()
        err_gpu = max(abs(float(v) - r) for v, r in zip(nmi(ga, gb)[:ref_pairs].tolist(), reference))
        row["max_abs_diff_vs_sklearn"] = max(row["max_abs_diff_vs_sklearn"], err_gpu)

        def on_gpu():
            nmi(ga, gb)
            torch.cuda.synchronize()

        row["cuda_us"] = best_of(on_gpu) / pairs * 1e6
    return row


def nmi_peak_memory(pairs: int = 50_000, images: int = 1000) -> dict:
    """Peak memory of a dataset-wide inter-image nMI: ``pairs`` pairs of 224x224x3 images drawn from ``images``
    images held in memory, in a fresh process. Linux's peak resident set (VmHWM) is reset after the images are made
    (``/proc/self/clear_refs``), so the peak is the images plus what the measure itself holds. A fixed malloc mmap
    threshold returns freed blocks to the system, so memory freed before the reset cannot hide new allocations."""
    import os
    import subprocess

    code = f"""
import json, sys, time, torch
sys.path.insert(0, "benchmarks")
from run_all import natural_images
from s2snets.metrics.nmi import inter_nmi
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key)) / 1024
x = torch.cat([natural_images(50, 3, 224, 224, s) for s in range({images} // 50)])
labels = torch.arange(len(x)) % 10
inter_nmi(x[:20], labels[:20], 10)  # compile once
open("/proc/self/clear_refs", "w").write("5")
base = status("VmRSS:")
t = time.perf_counter()
v = inter_nmi(x, labels, {pairs}, same_class=False)
seconds = time.perf_counter() - t
print(json.dumps({{"pairs": {pairs}, "images_mb": x.numel() / 2**20, "rss_before_mb": base,
                  "peak_above_rss_before_mb": status("VmHWM:") - base, "seconds": seconds,
                  "us_per_pair": seconds / {pairs} * 1e6, "threads": torch.get_num_threads(), "mean_nmi": float(v.mean())}}))
"""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gemm_rate(n: int = 2048) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    return 2 * n**3 / best_of(lambda: a @ b, 10)


def step_flops(model: torch.nn.Module, x: torch.Tensor, loss_fn) -> tuple[float, float]:
    """(FLOP per training step, best seconds per step), channels-last, Adam."""
    model = model.to(memory_format=torch.channels_last)
    x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters())

    def step():
        loss = loss_fn(model, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as counter:
        loss_fn(model, x).backward()
    for _ in range(3):
        step()
    return counter.get_total_flops(), best_of(step, 5)


def bench_flops() -> dict:
    peak = gemm_rate()
    out = {"gemm_gflops": peak / 1e9}
    ae_loss = lambda m, x: F.mse_loss(m(x), x)  # noqa: E731
    cases = {
        "segnet small (16,32,64), batch 64": (build_segnet("small", 1), torch.randn(64, 1, 32, 32), ae_loss),
        "segnet (32,64,128), batch 64": (SegNet(1, (32, 64, 128), (2, 2, 2)), torch.randn(64, 1, 32, 32), ae_loss),
        "segnet (64,128,256), batch 64": (SegNet(1, (64, 128, 256), (2, 2, 2)), torch.randn(64, 1, 32, 32), ae_loss),
        "resnet_s classifier, batch 128": (
            build_classifier("resnet_s", 10, 1),
            torch.randn(128, 1, 32, 32),
            lambda m, x: F.cross_entropy(m(x), torch.zeros(len(x), dtype=torch.long)),
        ),
    }
    for name, (model, x, fn) in cases.items():
        flops, seconds = step_flops(model, x, fn)
        out[name] = {
            "gflop_per_step": flops / 1e9,
            "ms_per_step": seconds * 1e3,
            "achieved_gflops": flops / seconds / 1e9,
            "share_of_gemm": flops / seconds / peak,
        }
    return out


def bench_engine(steps: int = 100) -> dict:
    """Same model, data, optimizer and batches: the engine vs a bare loop (min of 3 interleaved runs each)."""
    runtime = init_runtime("cpu")
    data = synthetic(64 * steps, 32, 4, seed=0)
    cfg = StageConfig(epochs=1, max_steps=steps, batch_size=64, lr=1e-3, schedule="constant", checkpoint_every=10**9)

    def engine() -> float:
        torch.manual_seed(0)
        model = build_segnet("small", 1)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            train_stage(
                autoencoder_stage("bench", model),
                data,
                cfg,
                seed=0,
                checkpoint=Path(tmp) / "c.safetensors",
                key="k",
                runtime=runtime,
                progress=sys.stderr.isatty(),
            )
            return time.perf_counter() - t

    def bare() -> float:
        torch.manual_seed(0)
        model = build_segnet("small", 1).to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
        t = time.perf_counter()
        model.train()
        for i in range(steps):
            x = data.normalize(data.images[order[i * 64 : (i + 1) * 64]]).contiguous(memory_format=torch.channels_last)
            loss = F.mse_loss(model(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return time.perf_counter() - t

    e, b = [], []
    for _ in range(3):
        e.append(engine())
        b.append(bare())
    return {"steps": steps, "engine_s": min(e), "bare_s": min(b), "throughput_ratio": min(b) / min(e)}


STARTUP_SCRIPT = r"""
import sys, tempfile, time
from pathlib import Path
import torch
import torch.nn.functional as F
from s2snets.config import StageConfig
from s2snets.data import synthetic
from s2snets.models import build_segnet
from s2snets.runtime import init_runtime
from s2snets.train import autoencoder_stage, train_stage
steps = 40
data = synthetic(64 * steps, 32, 4, seed=0)
runtime = init_runtime("cpu")
torch.manual_seed(0)
started = time.perf_counter()  # from here: model, optimizer (its first use imports torch._dynamo), 40 steps
model = build_segnet("small", 1)
if sys.argv[1] == "engine":
    cfg = StageConfig(epochs=1, max_steps=steps, batch_size=64, lr=1e-3, schedule="constant", checkpoint_every=10**9)
    with tempfile.TemporaryDirectory() as tmp:
        train_stage(autoencoder_stage("bench", model), data, cfg, seed=0, checkpoint=Path(tmp) / "c.safetensors",
                    key="k", runtime=runtime, progress=False)
else:
    model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
    model.train()
    for i in range(steps):
        x = data.normalize(data.images[order[i * 64 : (i + 1) * 64]]).contiguous(memory_format=torch.channels_last)
        loss = F.mse_loss(model(x), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
print(time.perf_counter() - started)
"""


def bench_inference_batch() -> dict:
    """``autoencode`` on 2,048 Fashion-MNIST-sized images (1 x 32 x 32) on one thread: the batch
    ``Runtime.inference_batch`` picks against the former fixed 512, outputs compared; and the read bandwidth of one
    core (numpy sum over 200 MB), the floor under nMI on float64 images."""
    import numpy as np

    from s2snets.data import synthetic
    from s2snets.runtime import init_runtime
    from s2snets.train import autoencode
    from s2snets.zoo import load_autoencoder

    torch.set_num_threads(1)
    runtime, data = init_runtime("cpu", "off"), synthetic(2048, 32, 10, seed=0)
    model = load_autoencoder("unpool", 0).to(memory_format=torch.channels_last)
    picked = runtime.inference_batch((1, 32, 32))
    fixed_s = best_of(lambda: autoencode(model, data, runtime, batch_size=512), 3)
    picked_s = best_of(lambda: autoencode(model, data, runtime), 3)
    equal = torch.equal(autoencode(model, data, runtime, batch_size=512), autoencode(model, data, runtime))
    x = np.random.default_rng(0).random(25_000_000)  # 200 MB
    read_gb_s = x.nbytes / best_of(x.sum, 3) / 1e9
    torch.set_num_threads(2)
    return {"images": 2048, "batch_picked": picked, "seconds_batch_512": fixed_s, "seconds_picked": picked_s,
            "speedup": fixed_s / picked_s, "outputs_equal": equal, "read_gb_per_s_one_core": read_gb_s}  # fmt: skip


def bench_engine_startup(repeats: int = 6) -> dict:
    """The engine's first call in a fresh process against a bare loop's, 40 steps each, both timed from before the
    model is built (so both include the optimizer's first-use import of torch._dynamo, which any torch.optim user
    pays); interleaved fresh processes, each side first in every other pair (so that a drift of this VM during the
    run does not fall on one side), min of ``repeats``, and the ratio of medians beside it."""
    import statistics
    import subprocess

    times: dict[str, list[float]] = {"engine": [], "bare": []}
    for i in range(repeats):
        for kind in ("engine", "bare") if i % 2 else ("bare", "engine"):
            proc = subprocess.run([sys.executable, "-c", STARTUP_SCRIPT, kind], capture_output=True, text=True, check=True)
            times[kind].append(float(proc.stdout.split()[-1]))
    e, b = min(times["engine"]), min(times["bare"])
    median = statistics.median(times["bare"]) / statistics.median(times["engine"])
    return {"steps": 40, "engine_s": e, "bare_s": b, "ratio_with_startup": b / e, "median_ratio": median, "runs": times}


def bench_paper(device: str = "cpu", steps: int = 4, batch: int = 4, repeats: int = 2, compiled: bool = False) -> dict:
    """The paper's scale: images per second at 224 px for pretraining the `paper` SegNet (VGG16 encoder) and for
    fine-tuning its decoder through a frozen ResNet-50, the engine vs a bare hand-written loop doing the same work
    (same model, data, optimizer, batches, autocast and memory format: bf16 and channels-last on CUDA, fp32 and
    channels-last on CPU). ``compiled``: also both with torch.compile (the engine's ``compile = true``), and the bare
    loop in channels-first, to show what each choice is worth. Timed from the end of step ``warm`` to the end of the
    last step (the first steps allocate, tune cuDNN and compile), synchronised on CUDA."""
    import dataclasses

    import torchvision

    from s2snets.train import finetune_stage

    runtime = init_runtime(device)
    dev = runtime.device
    warm = 3 if compiled else 1
    data = synthetic(batch * steps, 224, 4, seed=0, channels=3)
    cfg = StageConfig(epochs=1, max_steps=steps, batch_size=batch, lr=1e-4, schedule="constant", checkpoint_every=10**9)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def models():
        torch.manual_seed(0)
        return build_segnet("paper", 3), torchvision.models.resnet50(num_classes=4).eval()

    def engine(kind: str, compile: bool) -> tuple[float, float]:
        """(steady seconds, seconds of the whole call incl. the final checkpoint of 29.5 M parameters + Adam state)."""
        ae, clf = models()
        stage = autoencoder_stage("bench", ae) if kind == "pretrain" else finetune_stage("bench", ae, clf)
        stamps: dict[int, float] = {}

        def on_step(step: int) -> None:
            if step in (warm, steps):
                sync()
                stamps[step] = time.perf_counter()

        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            train_stage(
                stage, data, cfg, seed=0, checkpoint=Path(tmp) / "c.safetensors", key="k",
                runtime=dataclasses.replace(runtime, compile=compile), progress=False, on_step=on_step,
            )  # fmt: skip
            return stamps[steps] - stamps[warm], time.perf_counter() - t

    def bare(kind: str, compile: bool, channels_last: bool = True) -> float:
        ae, clf = models()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        ae, clf = ae.to(dev, memory_format=fmt), clf.to(dev, memory_format=fmt)
        if kind == "finetune":
            ae.freeze_encoder()
            for p in clf.parameters():
                p.requires_grad_(False)
        params = ae.parameters() if kind == "pretrain" else ae.decoder.parameters()
        opt = torch.optim.Adam(params, lr=1e-4)

        def loss_of(x, y):
            with runtime.autocast():
                out = ae(x)
                return F.mse_loss(out.float(), x) if kind == "pretrain" else F.cross_entropy(clf(out).float(), y)

        step_loss = torch.compile(loss_of) if compile else loss_of
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))
        ae.train()
        stamps = {}
        for i in range(steps):
            idx = order[i * batch : (i + 1) * batch]
            x = data.normalize(data.images[idx].to(dev, non_blocking=True).contiguous(memory_format=fmt))
            loss = step_loss(x, data.labels[idx].to(dev, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i + 1 in (warm, steps):
                sync()
                stamps[i + 1] = time.perf_counter()
        return stamps[steps] - stamps[warm]

    out: dict = {"device": str(dev), "amp": runtime.to_dict()["amp"], "steps": steps, "batch": batch, "size": 224}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(dev)
    images = (steps - warm) * batch  # steady state: the first steps (allocation, tuning, compiling) left out of both
    for compile in (False, True) if compiled else (False,):
        for kind in ("pretrain", "finetune"):
            e, whole, b = [], [], []
            for _ in range(repeats):
                steady, total = engine(kind, compile)
                e.append(steady)
                whole.append(total)
                b.append(bare(kind, compile))
            row = {
                "engine_images_per_s": images / min(e),
                "bare_images_per_s": images / min(b),
                "throughput_ratio": min(b) / min(e),
                "engine_call_s_incl_checkpoint": min(whole),
            }
            if compiled and not compile:
                row["bare_channels_first_images_per_s"] = images / min(
                    bare(kind, False, channels_last=False) for _ in range(repeats)
                )
            out[f"{kind}{'_compiled' if compile else ''}"] = row
    return out


def demo_wall_time() -> dict:
    """`s2snets demo` from scratch in a temporary runs folder (about 10 minutes here; only with --demo)."""
    import subprocess

    with tempfile.TemporaryDirectory() as runs:
        t = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "s2snets", "--quiet", "demo", "--runs", runs], capture_output=True, text=True
        )
        seconds = time.perf_counter() - t
    return {"seconds": seconds, "exit_code": proc.returncode}


def main() -> int:
    torch.manual_seed(0)
    report = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    if "--no-nmi" not in sys.argv:
        print("nMI vs scikit-learn ...", flush=True)
        report["nmi"] = bench_nmi()
        print("nMI over 5,000 and 50,000 pairs of 224x224x3 images: peak memory ...", flush=True)
        report["nmi_memory"] = [nmi_peak_memory(5_000), nmi_peak_memory(50_000)]
    if "--nmi-only" not in sys.argv and "--no-cpu" not in sys.argv:
        print("training-step FLOP/s vs GEMM ...", flush=True)
        report["flops"] = bench_flops()
        print("engine vs bare loop ...", flush=True)
        report["engine"] = bench_engine()
        print("engine vs bare loop, first call in a fresh process ...", flush=True)
        report["engine_startup"] = bench_engine_startup()
        print("inference batch size and one core's read bandwidth ...", flush=True)
        report["inference"] = bench_inference_batch()
    if "--paper" in sys.argv:
        print("paper scale: 224 px, paper SegNet, ResNet-50 ...", flush=True)
        report["paper"] = bench_paper()
    if "--paper-cuda" in sys.argv:  # on a machine with a GPU: bigger batches, torch.compile and channels-first too
        print("paper scale on CUDA: 224 px, batch 32, eager and compiled ...", flush=True)
        report["paper_cuda"] = bench_paper("cuda", steps=40, batch=32, repeats=3, compiled=True)
    if "--demo" in sys.argv:
        print("make demo's pipeline from scratch ...", flush=True)
        report["demo"] = demo_wall_time()
    out = "benchmarks/results-nmi.json" if "--nmi-only" in sys.argv else "benchmarks/results.json"
    if "--out" in sys.argv:  # e.g. a GPU machine's results, kept apart from this machine's
        out = sys.argv[sys.argv.index("--out") + 1]
    Path(out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    for size, per_case in report.get("nmi", {}).items():
        for case, r in per_case.items():
            print(
                f"nMI {size:>9} {case:<30} batch {r['s2snets_us_1t']:7.1f} us/pair (1 thread), {r['s2snets_us_2t']:7.1f} (2); "
                f"per call {r['per_call_us_1t']:7.1f} (x{r['per_call_ratio_1t']:.2f} of batch); "
                + ", ".join(f"{form} x{r[f'{form}_ratio_1t']:.2f}" for form in FLOAT_FORMS if f"{form}_ratio_1t" in r)
                + " of uint8 (per call x"
                + ", ".join(f"{r[f'{form}_per_call_ratio_1t']:.2f}" for form in FLOAT_FORMS if f"{form}_per_call_ratio_1t" in r)
                + " of their batch); per call vs "
                f"scikit-learn x{r['per_call_speedup_vs_sklearn_1t']:.0f}, numpy.bincount x{r['per_call_speedup_vs_numpy_bincount_1t']:.1f}, "
                f"fast-histogram x{r['per_call_speedup_vs_fast_histogram_1t']:.1f}; max diff {r['max_abs_diff_vs_sklearn']:.1e}"
            )
    print("nMI targets: floats <= 1.2x uint8; one pair per call <= 2x its batched time at 32x32, <= 1.2x at 224x224x3; "
          "<= 130 us per 224x224x3 pair on one thread; exact to 1e-9")  # fmt: skip
    for m in report.get("nmi_memory", []):
        print(
            f"nMI over {m['pairs']:,} pairs of 224x224x3 images ({m['images_mb']:.0f} MB of images): peak memory "
            f"{m['peak_above_rss_before_mb']:.0f} MB above the process before it, {m['seconds']:.1f} s ({m['threads']} threads)"
        )
    for k, v in report.get("flops", {}).items():
        if isinstance(v, dict):
            print(
                f"{k}: {v['share_of_gemm']:.0%} of fp32 GEMM ({v['achieved_gflops']:.0f} of {report['flops']['gemm_gflops']:.0f} GFLOP/s)"
            )
    if "engine" in report:
        print(f"engine throughput vs bare loop: {report['engine']['throughput_ratio']:.3f}x (target >= 0.95)")
    if "engine_startup" in report:
        r = report["engine_startup"]
        print(f"engine vs bare loop, 40 steps including start-up in a fresh process: {r['ratio_with_startup']:.3f}x "
              f"({r['engine_s']:.2f} s vs {r['bare_s']:.2f} s; medians {r['median_ratio']:.3f}x; target >= 0.97)")  # fmt: skip
    if "inference" in report:
        r = report["inference"]
        print(f"autoencode, 2,048 images of 32x32, one thread: batch {r['batch_picked']} {r['seconds_picked']:.2f} s vs batch 512 "
              f"{r['seconds_batch_512']:.2f} s (x{r['speedup']:.2f}; outputs equal: {r['outputs_equal']}); one core reads "
              f"{r['read_gb_per_s_one_core']:.1f} GB/s")  # fmt: skip
    for section in ("paper", "paper_cuda"):
        for kind, r in report.get(section, {}).items():
            if isinstance(r, dict):
                print(
                    f"{section} {kind}: {r['engine_images_per_s']:.2f} images/s (bare loop {r['bare_images_per_s']:.2f}), "
                    f"ratio {r['throughput_ratio']:.3f} (target >= 0.95)"
                )
    if "demo" in report:
        print(
            f"demo from scratch: {report['demo']['seconds'] / 60:.1f} min (target: set-up, about 2.7 min on a fresh machine, plus the demo <= 10)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
