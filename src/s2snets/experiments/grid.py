"""Independent, keyed jobs run once: serially, by N local worker processes, or as one shard of N machines.

A job is a JSON-able ``spec`` (everything that determines its result) and its key, the spec's hash. Its result is
one JSON record in ``<run>/grid/<key>.json`` (plus an optional safetensors file of tensors beside it), written
atomically by whichever process ran it. So a job is never run twice, a killed run (parent or worker) resumes with
the jobs it had not finished (an unfinished fine-tuning resumes from its own checkpoint), and any split of the jobs
gives the same records:

* ``workers = 1``: in this process;
* ``workers = N``: N spawned processes, each building its context once (``initializer``) and running jobs as they
  come; the parent holds the run lock and collects;
* ``shard = (i, N)``: only the jobs whose index in the (deterministic) job list is i mod N, for N machines sharing
  the run directory; a call that finds every record present merges.

Each job fixes its own thread count (part of its spec), so its numbers do not depend on how the jobs were split.
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import logging
import multiprocessing
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2snets.checkpoint import atomic_write_text
from s2snets.config import config_hash
from s2snets.errors import Interrupted, TrainingError

log = logging.getLogger("s2snets")
GRID_DIR = "grid"


@dataclass(frozen=True)
class Job:
    """One unit of work: ``spec`` determines its result; ``label`` is what a person reads in the log."""

    spec: dict
    label: str

    @property
    def key(self) -> str:
        return config_hash("job", self.spec)


class Records:
    """The finished jobs of a run: ``<root>/grid/<key>.json``."""

    def __init__(self, root: str | Path):
        self.folder = Path(root) / GRID_DIR

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            record = json.loads(self.path(key).read_text())
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None  # missing, or torn by an older writer: the job runs (again)
        return record if isinstance(record, dict) and record.get("key") == key else None

    def put(self, key: str, record: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path(key), json.dumps({**record, "key": key}, indent=1) + "\n")


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """'i/N' (0 <= i < N) -> (i, N); None for no sharding. ValueError with the accepted form otherwise."""
    if not text:
        return None
    index, slash, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard {text!r}: write i/N with 0 <= i < N, e.g. --shard 0/4") from None
    if not slash or n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: write i/N with 0 <= i < N, e.g. --shard 0/4")
    return i, n


# The worker side: a context built once per process, then jobs by value.
_WORKER: dict[str, Any] = {}


def _init_worker(initializer: Callable[[Any], Any], payload: Any, threads: int) -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool
    torch.set_num_threads(threads)
    _WORKER["context"] = initializer(payload)


def _work(execute: Callable[[Any, Job], dict], job: Job) -> tuple[str, dict]:
    return job.key, execute(_WORKER["context"], job)


def run_jobs(
    jobs: Iterable[Job],
    *,
    root: str | Path,
    execute: Callable[[Any, Job], dict],
    initializer: Callable[[Any], Any],
    payload: Any,
    local_context: Any = None,
    workers: int = 1,
    threads: int = 1,
    shard: tuple[int, int] | None = None,
    on_done: Callable[[Job, dict, int, int], None] | None = None,
) -> dict[str, dict]:
    """Run every job of ``jobs`` (of this shard) that has no record yet; return {key: record} of all records found.

    ``execute(context, job) -> record`` and ``initializer(payload) -> context`` must be module-level functions
    (workers import them by name); ``local_context``, if given, serves the serial path instead of a new one. ``threads``: torch threads of each job, here and in workers. ``on_done(job,
    record, done, total)`` is called in this process as each job finishes. A worker that dies (killed, out of
    memory) stops the run with a TrainingError; what finished is kept.
    """
    import torch

    jobs = list(jobs)
    records = Records(root)
    mine = [j for i, j in enumerate(jobs) if shard is None or i % shard[1] == shard[0]]
    todo = [j for j in mine if records.get(j.key) is None]
    total, done = len(todo), 0

    def finished(job: Job, record: dict) -> None:
        nonlocal done
        records.put(job.key, record)
        done += 1
        if on_done is not None:
            on_done(job, record, done, total)

    if todo and workers <= 1:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            context = local_context if local_context is not None else initializer(payload)
            for job in todo:
                finished(job, execute(context, job))
        finally:
            torch.set_num_threads(previous)
    elif todo:
        _run_pool(todo, execute, initializer, payload, min(workers, len(todo)), threads, finished)
    return {j.key: r for j in jobs if (r := records.get(j.key)) is not None}


def _run_pool(todo, execute, initializer, payload, workers, threads, finished) -> None:
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    pool = futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=(initializer, payload, threads)
    )
    try:
        pending = {pool.submit(_work, execute, job): job for job in todo}
        for future in futures.as_completed(pending):
            key, record = future.result()
            finished(pending[future], record)
    except futures.process.BrokenProcessPool:
        _stop(pool)
        raise TrainingError(
            f"a worker process died after {time.perf_counter() - started:.0f}s (killed, or out of memory); the "
            "finished jobs are saved: re-run the command to resume"
        ) from None
    except KeyboardInterrupt:
        _stop(pool)
        raise Interrupted("interrupted; the finished jobs are saved, re-run the command to resume") from None
    except BaseException:
        _stop(pool)
        raise
    pool.shutdown(wait=True)  # every job is done: the workers exit and their queues close (no leaked semaphores)


def _stop(pool: futures.ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel what has not started and end the workers (they would go on fine-tuning)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # the executor forgets them at shutdown
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)
