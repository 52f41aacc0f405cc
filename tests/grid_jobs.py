"""Tiny grid jobs for the worker tests (module level, so spawned workers import them by name), and a parent
process to kill: ``python -c "import grid_jobs; grid_jobs.parent()" ROOT SLEEP [SHARD]`` with tests/ on the path."""

import os
import sys
import time
from pathlib import Path

import torch

from s2snets.experiments.grid import Job, run_jobs

JOBS = [Job({"i": i}, f"job {i}") for i in range(16)]


def context(payload: dict) -> dict:
    if payload.get("fail_init"):
        from s2snets.errors import ConfigError

        raise ConfigError(payload["fail_init"])
    return dict(payload)


def execute(context: dict, job: Job) -> dict:
    """A deterministic job (a seeded float64 product); marks which process runs it and sleeps ``sleep`` seconds."""
    if context.get("running"):
        Path(context["running"], str(os.getpid())).touch()
    if job.spec["i"] == context.get("fail_job"):
        raise ValueError(f"job {job.spec['i']} cannot run: its spec is wrong")
    time.sleep(context.get("sleep", 0.0))
    g = torch.Generator().manual_seed(job.spec["i"])
    a = torch.randn(32, 32, generator=g, dtype=torch.float64)
    return {"value": float((a @ a.T).trace()), "i": job.spec["i"]}


def runtime_context(payload: dict):
    from s2snets.runtime import init_runtime

    return init_runtime(**payload)


def runtime_execute(runtime, job: Job) -> dict:
    """What a worker's runtime computes in: its amp mode and an autocast matmul's dtype."""
    with runtime.autocast():
        out = torch.ones(4, 4, device=runtime.device) @ torch.ones(4, 4, device=runtime.device)
    return {"amp": runtime.amp_mode, "dtype": str(out.dtype), "i": job.spec["i"]}


def parent() -> None:
    """Run JOBS with 2 workers as the CLI would; an S2SNetsError is one line on stderr and its exit code."""
    from s2snets.errors import S2SNetsError
    from s2snets.experiments import grid

    grid.usable_cores = lambda: 2  # two workers even on a one-core machine: the tests kill a pool
    root, sleep = sys.argv[1], float(sys.argv[2])
    shard = tuple(int(v) for v in sys.argv[3].split("/")) if len(sys.argv) > 3 else None
    running = Path(root, "running")
    running.mkdir(parents=True, exist_ok=True)
    payload = {"sleep": sleep, "running": str(running)}
    try:
        run_jobs(JOBS, root=root, execute=execute, initializer=context, payload=payload, workers=2, shard=shard,
                 worker_memory=1)  # fmt: skip
    except S2SNetsError as exc:
        print(f"s2snets: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
