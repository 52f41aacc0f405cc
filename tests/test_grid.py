"""The job grid: any split of the jobs (serial, N workers, N shards) gives the same records, and a killed run resumes.

The unit tests use a cheap job (a seeded torch computation); the end-to-end test runs the real checkerboard grid at
a tiny budget, serially, with ``--jobs 2`` and as two shards, and compares every per-run number.
"""

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import cli, needs_fashion

from s2snets.errors import TrainingError
from s2snets.experiments.grid import Job, Records, run_jobs


def _context(payload: dict) -> dict:  # module level: workers import it by name
    return {"scale": payload["scale"], "die": payload.get("die")}


def _execute(context: dict, job: Job) -> dict:
    """A deterministic job with real floating-point work; kills its own worker once when asked to."""
    die = context["die"]
    if die and job.spec["i"] == die["job"] and not Path(die["marker"]).exists():
        Path(die["marker"]).write_text("died once")
        os._exit(1)  # as a worker killed by the OOM killer: no exception, no cleanup
    g = torch.Generator().manual_seed(job.spec["i"])
    a = torch.randn(64, 64, generator=g, dtype=torch.float64)
    return {"value": float((a @ a.T).trace()) * context["scale"], "i": job.spec["i"]}


JOBS = [Job({"i": i}, f"job {i}") for i in range(6)]


def test_serial_workers_and_shards_give_the_same_records(tmp_path):
    common = {"execute": _execute, "initializer": _context, "payload": {"scale": 2.0}}
    serial = run_jobs(JOBS, root=tmp_path / "serial", **common)
    pooled = run_jobs(JOBS, root=tmp_path / "pooled", workers=2, **common)
    first = run_jobs(JOBS, root=tmp_path / "sharded", shard=(0, 2), **common)
    assert len(first) == 3  # its share only: jobs 0, 2, 4
    merged = run_jobs(JOBS, root=tmp_path / "sharded", shard=(1, 2), **common)
    assert len(serial) == len(pooled) == len(merged) == 6
    assert serial == pooled == merged
    assert [serial[j.key]["i"] for j in JOBS] == list(range(6))


def test_a_killed_worker_stops_the_run_and_a_re_run_finishes_it(tmp_path):
    marker = tmp_path / "died"
    payload = {"scale": 2.0, "die": {"job": 3, "marker": str(marker)}}
    common = {"execute": _execute, "initializer": _context, "payload": payload, "root": tmp_path / "run"}
    with pytest.raises(TrainingError, match="worker process died.*re-run the command to resume"):
        run_jobs(JOBS, workers=2, **common)
    kept = {p.stem for p in Records(tmp_path / "run").folder.glob("*.json")}
    assert marker.exists() and JOBS[3].key not in kept  # the killed job left no record
    done = []
    resumed = run_jobs(JOBS, workers=2, on_done=lambda job, *_: done.append(job.spec["i"]), **common)
    assert sorted(done) == sorted(j.spec["i"] for j in JOBS if j.key not in kept)  # only what was missing ran
    assert resumed == run_jobs(JOBS, root=tmp_path / "serial", execute=_execute, initializer=_context, payload=payload)


# The smallest real grid: two zoo classifiers, 2 fine-tuning steps, 64 test images (test_primary_run.py builds on it).
TINY_BUDGET = """[data]
dataset = "fashion-mnist"
size = 32
train_limit = 256
test_limit = 64
[finetune]
epochs = 1
max_steps = 2
batch_size = 32
[measure]
probe_images = 16
[hypothesis]
families = ["alexnet_s"]
seeds = [0, 1]
upsamples = ["unpool"]
replicates = 1
"""
TINY = (
    'name = "tiny"\n'
    + TINY_BUDGET
    + """controls = ["additive"]
control_classifiers = 2
odena_probe = false
"""
)


def _grid(run: Path) -> dict:
    """Every job's record without its wall-clock seconds."""
    out = {}
    for path in sorted((run / "grid").glob("*.json")):
        record = json.loads(path.read_text())
        out[path.stem] = {k: v for k, v in record.items() if k != "seconds"}
    return out


@needs_fashion
@pytest.mark.slow
def test_the_real_grid_gives_the_same_numbers_serially_with_jobs_and_in_shards(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    args = ["hypothesis", "--config", str(tmp_path / "tiny.toml"), "--quiet"]
    runs = {}
    for name, extra in (("serial", ["--jobs", "1"]), ("jobs", ["--jobs", "2"])):
        proc = cli(*args, "--runs", str(tmp_path / name), *extra)
        assert proc.returncode == 0, proc.stderr
        runs[name] = _grid(tmp_path / name / "tiny")
    merged_file = tmp_path / "shards" / "tiny" / "metrics" / "hypothesis.json"
    proc = cli(*args, "--runs", str(tmp_path / "shards"), "--jobs", "1", "--shard", "0/2")
    assert proc.returncode == 0 and not merged_file.exists(), proc.stderr  # half the jobs: nothing to merge yet
    proc = cli(*args, "--runs", str(tmp_path / "shards"), "--jobs", "1", "--shard", "1/2")
    assert proc.returncode == 0 and merged_file.exists(), proc.stderr  # the last shard finds every job done: merges
    runs["shards"] = _grid(tmp_path / "shards" / "tiny")
    assert len(runs["serial"]) > 20 and runs["serial"] == runs["jobs"] == runs["shards"]
    merged = [
        json.loads((tmp_path / n / "tiny" / "metrics" / "hypothesis.json").read_text()) for n in ("serial", "jobs", "shards")
    ]
    assert merged[0]["cells"] == merged[1]["cells"] == merged[2]["cells"]
    assert merged[0]["calibration"] == merged[1]["calibration"] == merged[2]["calibration"]
