"""What a lent GPU machine measures for docs/benchmarks.md, prepared as one run (it is lent for minutes, not hours).

It times the hypothesis grid the way docs/benchmarks.md times it on the 2-core machine (`benchmarks/grid-speed.toml`,
57 jobs): on the GPU with one job at a time and with several jobs sharing the GPU, and on the machine's CPU cores
with one worker per core; then a sixteenth of the whole experiment (`examples/checkerboard-question.toml`, one shard
of 16) on the GPU, for the whole run's cost. Each step has a time cap; a step cut by its cap keeps what it finished
(every job is a record, so jobs done per second is still a rate) and says so. Records of the same grid run in two
ways are compared: on the CPU they must be equal; on the GPU (cuDNN picks its kernels by timing) they may differ in
late digits, and the largest relative difference is what is reported.

Here, once (the development machine: the GPU image lacks three small packages and the dataset):
    make device-pack
There (the device tool: carry [".devpack"], timeout_s 570):
    bash benchmarks/device_check.sh
It prints one line per step and writes $OUT/device-check.json after each. A dry run of the plumbing on any machine (DEVICE_CHECK_GRID and DEVICE_CHECK_EXPERIMENT name other configs):
    DEVICE_CHECK_DEVICE=cpu DEVICE_CHECK_BUDGET=120 PYTHON=.venv/bin/python bash benchmarks/device_check.sh
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GRID = Path(os.environ.get("DEVICE_CHECK_GRID") or ROOT / "benchmarks" / "grid-speed.toml")
EXPERIMENT = Path(os.environ.get("DEVICE_CHECK_EXPERIMENT") or ROOT / "examples" / "checkerboard-question.toml")
OUT = Path(os.environ.get("OUT") or "/tmp/device-check")
RUNS = Path(os.environ.get("DEVICE_CHECK_RUNS") or "/tmp/device-check-runs")
GPU = os.environ.get("DEVICE_CHECK_DEVICE", "cuda")
BUDGET = float(os.environ.get("DEVICE_CHECK_BUDGET", "480"))  # seconds for every step together
STARTED = time.monotonic()


def environment() -> dict:
    import torch

    env = {"torch": torch.__version__, "python": platform.python_version(), "cores": os.cpu_count()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    return env


def hypothesis(name: str, config: Path, device: str, jobs: int, threads: int, cap: float, shard: str = "") -> dict:
    """`s2snets hypothesis` in a fresh run directory, cut after ``cap`` seconds: wall, jobs finished, jobs/s."""
    from s2snets.experiments.grid import Records

    runs = RUNS / name
    grid = Records(runs / "run").folder
    shutil.rmtree(runs, ignore_errors=True)
    command = [sys.executable, "-m", "s2snets", "hypothesis", "--config", str(config), "--runs", str(runs),
               "--name", "run", "--device", device, "--jobs", str(jobs), "--set", f"hypothesis.job_threads={threads}",
               "--quiet", *(["--shard", shard] if shard else [])]  # fmt: skip
    cap = max(1.0, min(cap, BUDGET - (time.monotonic() - STARTED)))
    started = time.perf_counter()
    # Its own process group, so that a cut ends the worker processes too (they would go on fine-tuning and slow
    # the next step): Ctrl-C first, which the CLI answers by stopping its pool, then a kill of the whole group.
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
                            start_new_session=True)  # fmt: skip
    try:
        output, _ = proc.communicate(timeout=cap)
        rc, tail = proc.returncode, output[-400:]
    except subprocess.TimeoutExpired:
        wall, finished = time.perf_counter() - started, len(list(grid.glob("*.json")))  # at the cut
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        rc, tail = None, f"cut at its cap of {cap:.0f} s"
    else:
        wall, finished = time.perf_counter() - started, len(list(grid.glob("*.json")))
    return {"step": name, "device": device, "jobs": jobs, "job_threads": threads, "shard": shard or None,
            "wall_s": round(wall, 1), "finished_jobs": finished, "complete": rc == 0,
            "jobs_per_s": round(finished / wall, 3), "rc": rc, "tail": tail if rc != 0 else ""}  # fmt: skip


def records(step: str) -> dict[str, dict]:
    """{key: record without its seconds} of a step's run, read as the grid reads them."""
    from s2snets.experiments.grid import Records

    found = Records(RUNS / step / "run")
    out = {}
    for path in found.folder.glob("*.json"):
        if (record := found.get(path.stem)) is not None:
            out[path.stem] = {k: v for k, v in record.items() if k != "seconds"}
    return out


def _numbers(value, prefix=""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, f"{prefix}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _numbers(v, f"{prefix}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield prefix, float(value)


def compare(a: str, b: str) -> dict:
    """Records two steps share: how many, how many equal, the largest relative difference of any number."""
    ra, rb = records(a), records(b)
    shared = sorted(set(ra) & set(rb))
    worst = 0.0
    for key in shared:
        na, nb = dict(_numbers(ra[key])), dict(_numbers(rb[key]))
        for field in na.keys() & nb.keys():
            x, y = na[field], nb[field]
            if math.isfinite(x) and math.isfinite(y) and x != y:
                worst = max(worst, abs(x - y) / max(abs(x), abs(y), 1e-12))
    equal = sum(ra[k] == rb[k] for k in shared)
    return {"step": f"compare {a} {b}", "shared": len(shared), "equal": equal, "max_rel_diff": worst}


def main() -> int:
    OUT.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    report: dict = {"environment": environment(), "steps": []}
    plan = [
        lambda: hypothesis("gpu_serial", GRID, GPU, 1, 1, 120),
        lambda: hypothesis("gpu_jobs4", GRID, GPU, 4, 1, 90),
        lambda: compare("gpu_serial", "gpu_jobs4"),
        lambda: hypothesis("cpu_all_cores", GRID, "cpu", cores, 1, 90),
        lambda: hypothesis("cpu_serial_eighth", GRID, "cpu", 1, 1, 60, shard="0/8"),
        lambda: compare("cpu_serial_eighth", "cpu_all_cores"),
        lambda: hypothesis("gpu_experiment_sixteenth", EXPERIMENT, GPU, 4, 1, 150, shard="0/16"),
    ]
    print(json.dumps(report["environment"]), flush=True)
    for step in plan:
        if time.monotonic() - STARTED > BUDGET:
            skipped = {"step": "the rest", "skipped": f"the budget of {BUDGET:.0f} s is spent"}
            report["steps"].append(skipped)
            print(json.dumps(skipped), flush=True)
            break
        result = step()
        report["steps"].append(result)
        print(json.dumps(result), flush=True)
        (OUT / "device-check.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
