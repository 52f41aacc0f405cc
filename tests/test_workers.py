"""Grid workers tied to their parent: a kill of the parent (SIGKILL, SIGTERM, SIGHUP) leaves no process behind and
the resumed run equals a serial one; the worker count is capped by cores and memory; a shard is claimed; the
runtime (amp included) reaches the workers intact; a job's or initializer's own error is reported as itself.

The jobs are tiny (``grid_jobs``): a seeded float64 product, slowed by a sleep where a test must catch them running.
"""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grid_jobs
import pytest
import torch
from conftest import ROOT, cli, one_line_error

from s2snets.errors import ConfigError, InputError
from s2snets.experiments import grid
from s2snets.experiments.grid import Records, ShardClaimed, parse_shard, run_jobs
from s2snets.runtime import Runtime, init_runtime, select_amp

SERIAL: dict[str, dict] = {}


def _serial(tmp_path_factory) -> dict:
    if not SERIAL:
        root = tmp_path_factory.mktemp("serial")
        SERIAL.update(run_jobs(grid_jobs.JOBS, root=root, execute=grid_jobs.execute, initializer=grid_jobs.context, payload={}))
    return SERIAL


def _group(pgid: int) -> list[str]:
    """The live (not zombie) processes of process group ``pgid``, as 'pid cmdline'."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(f"{entry.name} {cmdline[:100]}")
    return found


def _wait_for(condition, seconds: float, what: str) -> None:
    end = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"not within {seconds} s: {what}")
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_killed_parent_leaves_no_worker_and_the_resumed_run_equals_a_serial_one(tmp_path, tmp_path_factory, signum):
    root = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen(
        [sys.executable, "-c", "import grid_jobs; grid_jobs.parent()", str(root), "0.25", "0/1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        running, records = root / "running", Records(root)

        def both_running_and_one_done() -> bool:
            return len(list(running.glob("*"))) >= 2 and any(records.get(j.key) for j in grid_jobs.JOBS)

        _wait_for(both_running_and_one_done, 60, "two workers running jobs and one record")
        workers = [p for p in _group(parent.pid) if "spawn_main" in p]
        assert len(workers) == 2, _group(parent.pid)
        with pytest.raises(ShardClaimed, match=f"shard 0/1 of this grid is being run by pid {parent.pid} on "):
            run_jobs(grid_jobs.JOBS, root=root, execute=grid_jobs.execute, initializer=grid_jobs.context, payload={},
                     shard=(0, 1))  # fmt: skip  # a second machine given the same shard
        os.kill(parent.pid, signum)
        _, stderr = parent.communicate(timeout=15)  # returns: nothing is left holding the parent's stderr open
        _wait_for(lambda: not _group(parent.pid), 10, f"every process of the group gone: {_group(parent.pid)}")
    finally:
        if parent.poll() is None:
            parent.kill()
        if _group(parent.pid):
            os.killpg(parent.pid, signal.SIGKILL)  # only the group this test started
    if signum == signal.SIGKILL:
        assert parent.returncode == -signal.SIGKILL
    else:  # torn down as on Ctrl-C: one line, exit 128 + the signal
        assert parent.returncode == 128 + signum, stderr
        assert (
            stderr.strip()
            == f"s2snets: error: stopped by {signum.name}; the finished jobs are saved, re-run the command to resume"
        )
    kept = [j for j in grid_jobs.JOBS if records.get(j.key)]
    assert 0 < len(kept) < len(grid_jobs.JOBS)  # killed mid-run
    done: list[int] = []  # resumed by 2 workers after SIGKILL, here after the others (any split gives the same)
    workers = 2 if signum == signal.SIGKILL else 1
    resumed = run_jobs(grid_jobs.JOBS, root=root, execute=grid_jobs.execute, initializer=grid_jobs.context,
                       payload={}, workers=workers, shard=(0, 1), on_done=lambda job, *_: done.append(job.spec["i"]))  # fmt: skip
    assert sorted(done) == [j.spec["i"] for j in grid_jobs.JOBS if j not in kept]  # the dead claim was taken over
    assert resumed == _serial(tmp_path_factory)
    assert not list(records.folder.glob("*.claim"))  # a finished shard leaves no claim


def test_the_workers_are_capped_by_cores_and_memory_and_the_log_says_so(monkeypatch, caplog, tmp_path):
    monkeypatch.setattr(grid, "usable_cores", lambda: 2)
    monkeypatch.setattr(grid, "available_memory", lambda: 5_000_000_000)
    caplog.set_level(logging.INFO, logger="s2snets")
    assert grid.worker_cap(256, 1, 1_500_000_000) == 2
    assert "grid: 256 workers asked for, 2 started (2 core(s) / 1 thread(s) per job = 2; 5.0 GB available / 1.5 GB" in caplog.text
    assert grid.worker_cap(256, 2, 1_500_000_000) == 1  # 2 cores, 2 threads a job
    assert grid.worker_cap(8, 1, 3_000_000_000) == 1  # room for one worker only
    caplog.clear()
    assert grid.worker_cap(2, 1, 1_500_000_000) == 2 and not caplog.text  # a request within the cap: no line
    assert grid.worker_cap(256, 1, 1_500_000_000, jobs=1) == 1 and not caplog.text  # one job: one worker, no line
    pools = []
    monkeypatch.setattr(grid, "_run_pool", lambda todo, execute, init, payload, workers, *rest: pools.append(workers))
    run_jobs(grid_jobs.JOBS, root=tmp_path, execute=grid_jobs.execute, initializer=grid_jobs.context, payload={}, workers=256)
    assert pools == [2]  # --jobs 256 on 2 cores: 2 workers, not 16 (one a job) nor 256
    done = run_jobs(grid_jobs.JOBS, root=tmp_path, execute=grid_jobs.execute, initializer=grid_jobs.context,
                    payload={}, workers=256, worker_memory=4_000_000_000)  # fmt: skip
    assert pools == [2] and len(done) == len(grid_jobs.JOBS)  # memory for one: run here, serially
    assert 1 <= grid.worker_cap(10**6, 1, grid.WORKER_MEMORY) <= grid.usable_cores()  # this machine, real numbers


def test_a_live_claim_is_refused_and_a_dead_one_taken_over(tmp_path):
    common = {"root": tmp_path, "execute": grid_jobs.execute, "initializer": grid_jobs.context, "payload": {}}
    claim = grid.ShardClaim(Records(tmp_path).folder, (1, 2))
    claim.path.parent.mkdir(parents=True)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        live = {"host": socket.gethostname(), "pid": sleeper.pid, "start": grid._process_start(sleeper.pid), "since": "x"}
        claim.path.write_text(json.dumps(live))
        with pytest.raises(ShardClaimed, match=f"shard 1/2 of this grid is being run by pid {sleeper.pid} on "):
            run_jobs(grid_jobs.JOBS, shard=(1, 2), **common)
        claim.path.write_text(json.dumps({**live, "host": "elsewhere"}))  # another machine's: never guessed dead
        with pytest.raises(ShardClaimed, match=f"pid {sleeper.pid} on elsewhere .*delete .*shard-1-of-2.claim"):
            run_jobs(grid_jobs.JOBS, shard=(1, 2), **common)
        claim.path.write_text(json.dumps({**live, "start": "1"}))  # the pid now belongs to a later process
        assert len(run_jobs(grid_jobs.JOBS, shard=(1, 2), **common)) == 8
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not claim.path.exists()
    claim.path.write_text(json.dumps(live))  # its process is gone now
    Records(tmp_path).path(grid_jobs.JOBS[1].key).unlink()
    assert len(run_jobs(grid_jobs.JOBS, shard=(1, 2), **common)) == 8 and not claim.path.exists()
    assert len(run_jobs(grid_jobs.JOBS, shard=(0, 2), **common)) == 16  # the other shard: its own claim


def test_an_empty_shard_is_an_error_not_no_sharding(tmp_path):
    assert parse_shard(None) is None and parse_shard("1/4") == (1, 4)
    for text in ("", " ", "/", "0", "2/2", "-1/2", "a/b"):
        with pytest.raises(InputError, match="write i/N"):
            parse_shard(text)
    with pytest.raises(InputError, match="shard"):
        run_jobs(grid_jobs.JOBS, root=tmp_path, execute=grid_jobs.execute, initializer=grid_jobs.context, payload={},
                 shard=(2, 2))  # fmt: skip
    (tmp_path / "c.toml").write_text('name = "c"\n[hypothesis]\nfamilies = ["alexnet_s"]\n')
    proc = cli("hypothesis", "--config", str(tmp_path / "c.toml"), "--runs", str(tmp_path), "--shard", "")
    one_line_error(proc, "--shard ''", "write i/N")


def test_every_amp_mode_reaches_the_workers_and_their_own_errors_are_reported_as_theirs(tmp_path):
    for amp in ("auto", "off", "bf16"):  # the payload run_experiment builds, read back as a worker reads it
        runtime = init_runtime("cpu", amp)
        payload = {"device": str(runtime.device), "amp": runtime.amp_mode, "compile": runtime.compile}
        assert init_runtime(**payload).amp_dtype == runtime.amp_dtype
    assert Runtime(torch.device("cuda"), torch.float16).amp_mode == "fp16"  # CUDA's: its mode selects it again
    assert select_amp(torch.device("cuda"), "fp16") == torch.float16
    jobs = grid_jobs.JOBS[:2]
    common = {"execute": grid_jobs.runtime_execute, "initializer": grid_jobs.runtime_context, "workers": 2}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    records = run_jobs(jobs, root=tmp_path / "bf16", payload={"device": "cpu", "amp": "bf16"}, **common)
    assert {s: signal.getsignal(s) for s in handlers} == handlers  # the pool's handlers are gone with it
    assert [r["amp"] for r in records.values()] == ["bf16", "bf16"]
    assert [r["dtype"] for r in records.values()] == ["torch.bfloat16", "torch.bfloat16"]
    with pytest.raises(ConfigError, match="unknown amp mode 'bfloat16'") as error:  # the old payload: its own error
        run_jobs(jobs, root=tmp_path / "old", payload={"device": "cpu", "amp": "bfloat16"}, **common)
    assert "re-run" not in str(error.value)
    with pytest.raises(ValueError, match="job 3 cannot run: its spec is wrong"):  # a job's own exception, as itself
        run_jobs(grid_jobs.JOBS[:6], root=tmp_path / "job", execute=grid_jobs.execute, initializer=grid_jobs.context,
                 payload={"fail_job": 3}, workers=2)  # fmt: skip


def test_sigterm_and_sighup_stop_the_pool_as_ctrl_c_does_and_the_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    for signum in (signal.SIGTERM, signal.SIGHUP):
        with grid._signals_stop_the_pool(), pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signum)
            time.sleep(5)
        assert {s: signal.getsignal(s) for s in before} == before
    ignored = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # nohup's: stays ignored
    try:
        with grid._signals_stop_the_pool():
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
    finally:
        signal.signal(signal.SIGHUP, ignored)
