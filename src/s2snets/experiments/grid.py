"""Independent, keyed jobs run once: serially, by N local worker processes, or as one shard of N machines.

A job is a JSON-able ``spec`` (everything that determines its result) and its key, the spec's hash. Its result is
one JSON record in ``<run>/grid/<key>.json`` (plus an optional safetensors file of tensors beside it), written
atomically by whichever process ran it. So a job is never run twice, a killed run (parent or worker) resumes with
the jobs it had not finished (an unfinished fine-tuning resumes from its own checkpoint), and any split of the jobs
gives the same records:

* ``workers = 1``: in this process;
* ``workers = N``: N spawned processes, each building its context once (``initializer``) and running jobs as they
  come; the parent holds the run lock and collects. N is capped by the cores (cores // threads per job) and by the
  memory available for a worker each (``worker_memory``); a log line says so when the cap lowers the request;
* ``shard = (i, N)``: only the jobs whose index in the (deterministic) job list is i mod N, for N machines sharing
  the run directory; a call that finds every record present merges. A shard with jobs to run claims them first
  (``<run>/grid/shard-<i>-of-<N>.claim``: host, pid, process start time, created with ``O_EXCL``): a second process
  given the same shard is refused (``ShardClaimed``, naming the holder) while the holder lives; the claim of a
  process that is gone (on this host) is taken over, and a finished shard removes its claim.

Each job fixes its own thread count (part of its spec), so its numbers do not depend on how the jobs were split.

Workers are tied to their parent, and what happens on each signal to the parent while workers run:

* **SIGINT** (Ctrl-C; workers ignore it, it is the parent's), **SIGTERM** (``kill``, ``timeout``) and **SIGHUP**
  (a closed terminal or ssh session): the parent cancels the jobs not started, terminates the workers, waits for
  them and raises ``Interrupted`` (exit 130, 143 or 129): the finished jobs' records are kept, a re-run resumes
  with the rest. The handlers are installed for the pool's lifetime (in the main thread only) and the previous
  ones restored afterwards; a signal that was ignored (``nohup``) stays ignored.
* **SIGKILL** (or any death the parent cannot handle): on Linux each worker asked the kernel for SIGKILL when its
  parent dies (``prctl(PR_SET_PDEATHSIG)``, then a check that the parent had not already gone); everywhere a
  watchdog thread in each worker checks once a second that its parent is still the process that started it and
  ends the worker otherwise. The multiprocessing resource tracker exits when the last worker holding its pipe is
  gone, so nothing is left and a caller reading the command's output sees it end.

A job that raises stops the run with that error (its own message and type, as in a serial run); an initializer
that raises (a bad payload) is reported as itself, not as a dead worker; a worker that dies (killed, out of memory)
stops the run with a ``TrainingError`` naming how it ended; what finished is kept.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import ctypes
import ctypes.util
import json
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from s2snets.checkpoint import atomic_write_text
from s2snets.config import config_hash
from s2snets.errors import InputError, Interrupted, S2SNetsError, TrainingError
from s2snets.rundir import RunLocked

log = logging.getLogger("s2snets")
GRID_DIR = "grid"
# A hypothesis worker's peak resident memory: 1.2-1.3 GB measured (VmHWM of `s2snets hypothesis --jobs 2` workers
# on the CPU, the tests' tiny config), with a margin. The default of ``run_jobs(worker_memory=...)``.
WORKER_MEMORY = 1_500_000_000
_STOP_SIGNALS = ("SIGTERM", "SIGHUP")  # with SIGINT (KeyboardInterrupt), what tears the pool down


class ShardClaimed(RunLocked):
    """Another live process runs this shard of the grid."""


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
    """'i/N' (0 <= i < N) -> (i, N); None (only None: '' is an error) for no sharding. InputError (a ValueError)
    with the accepted form otherwise."""
    if text is None:
        return None
    index, slash, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        raise InputError(f"--shard {text!r}: write i/N with 0 <= i < N, e.g. --shard 0/4") from None
    if not slash or n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {text!r}: write i/N with 0 <= i < N, e.g. --shard 0/4")
    return i, n


# ----------------------------------------------------------------------------------------------- shard claims
def _process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), to tell it from a later one with its pid;
    None where /proc cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces: field 3 on
    return fields[19] if len(fields) > 19 else None  # field 22, starttime


def _alive(pid: int, start: str | None) -> bool:
    """Whether process ``pid`` of this host runs, and is the one that started at ``start`` (when known)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    now = _process_start(pid)
    return start is None or now is None or now == start


class ShardClaim:
    """The claim of one shard ``(i, N)`` of the grid in ``folder``: created with ``O_EXCL``, removed when done."""

    def __init__(self, folder: Path, shard: tuple[int, int]):
        self.path = folder / f"shard-{shard[0]}-of-{shard[1]}.claim"
        self.shard = shard
        self.mine = {"host": socket.gethostname(), "pid": os.getpid(), "start": _process_start(os.getpid())}

    def _read(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None

    def _gone(self, holder: dict | None) -> bool:
        """A claim whose process is gone (on this host), or this process's own; an unreadable one after 10 s (a
        claim is written as it is created: an empty file that stays empty is a claimer killed in between)."""
        if holder is None:
            try:
                return time.time() - self.path.stat().st_mtime > 10
            except FileNotFoundError:
                return True
        if holder.get("host") != self.mine["host"]:
            return False  # another machine's process: it cannot be checked from here
        same = holder.get("pid") == self.mine["pid"] and holder.get("start") == self.mine["start"]
        return same or not _alive(holder["pid"], holder.get("start"))

    def acquire(self) -> None:
        """Claim the shard; take a gone process's claim over; ShardClaimed naming the holder otherwise."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({**self.mine, "since": time.strftime("%Y-%m-%d %H:%M:%S")}) + "\n"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                holder = self._read()
                if not self._gone(holder):
                    raise self._refusal(holder) from None
                self._take_over(holder)
                continue
            with os.fdopen(fd, "w") as file:
                file.write(text)
            return
        raise self._refusal(self._read())

    def _take_over(self, holder: dict | None) -> None:
        """Move a gone holder's claim aside (atomic: of two takers one wins); put back a live claim that another
        taker wrote in between."""
        aside = self.path.with_name(f".{self.path.name}.{os.getpid()}.stale")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = self._read_file(aside)
        if moved is not None and moved != holder and moved.get("pid") != self.mine["pid"]:
            with contextlib.suppress(FileExistsError):
                os.link(aside, self.path)  # a live claim taken aside by mistake: back (if the place is still free)
        else:
            who = f"pid {holder['pid']} on {holder.get('host')}" if holder else "an unreadable claim"
            log.info(f"shard {self.shard[0]}/{self.shard[1]}: taking over the claim of {who} (that process is gone)")
        aside.unlink(missing_ok=True)

    @staticmethod
    def _read_file(path: Path) -> dict | None:
        try:
            value = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def _refusal(self, holder: dict | None) -> ShardClaimed:
        who = (
            f"pid {holder['pid']} on {holder.get('host')} since {holder.get('since', '?')}"
            if holder
            else "another process (its claim is being written)"
        )
        return ShardClaimed(
            f"shard {self.shard[0]}/{self.shard[1]} of this grid is being run by {who}: give this machine another "
            f"--shard; if that process is gone (another host cannot check), delete {self.path} and re-run"
        )

    def release(self) -> None:
        holder = self._read()
        if holder is not None and all(holder.get(k) == v for k, v in self.mine.items()):
            self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- how many workers
def available_memory() -> int | None:
    """Bytes this process could still allocate: /proc/meminfo's MemAvailable (else free pages from sysconf), and
    within a cgroup's memory limit (v2 or v1) if one is set; None where nothing says."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    if not found:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        with contextlib.suppress(OSError, ValueError):
            cap = int(Path(limit).read_text())  # "max" (no limit) is a ValueError
            if cap < 1 << 60:  # v1 writes its "no limit" as a huge number
                found.append(max(0, cap - int(Path(usage).read_text())))
    return min(found) if found else None


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the system has one)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def worker_cap(requested: int, threads: int, worker_memory: int, jobs: int | None = None) -> int:
    """How many of ``requested`` workers of ``threads`` torch threads each to start for ``jobs`` jobs: at most the
    cores (cores // threads), the available memory over ``worker_memory`` bytes each, and the jobs; at least 1. A
    log line says so when the cores or the memory lower the request."""
    wanted = max(1, min(requested, jobs if jobs is not None else requested))
    cores = usable_cores()
    by_cores = max(1, cores // max(1, threads))
    memory = available_memory()
    by_memory = max(1, memory // worker_memory) if memory is not None and worker_memory > 0 else wanted
    workers = min(wanted, by_cores, by_memory)
    if workers < wanted:
        reasons = [f"{cores} core(s) / {threads} thread(s) per job = {by_cores}"]
        if memory is not None and worker_memory > 0:
            reasons.append(f"{memory / 1e9:.1f} GB available / {worker_memory / 1e9:.1f} GB per worker = {by_memory}")
        log.warning(f"grid: {requested} workers asked for, {workers} started ({'; '.join(reasons)})")
    return workers


# ----------------------------------------------------------------------------------------------- the worker side
# A context built once per process, then jobs by value.
_WORKER: dict[str, Any] = {}


def _die_with_parent(parent: int) -> None:
    """End this worker when ``parent`` (the process that started it) dies: the kernel's parent-death signal on
    Linux, and a watchdog thread everywhere. Either way a worker never outlives its parent for more than ~1 s."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError, TypeError):
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="s2snets-parent-watchdog", daemon=True).start()


def _init_worker(initializer: Callable[[Any], Any], payload: Any, threads: int, parent: int) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops the pool
    import torch

    torch.set_num_threads(threads)
    try:
        _WORKER["context"] = initializer(payload)
    except Exception as exc:  # a bad payload: each job reports it (as itself), instead of a pool of dead workers
        _WORKER["error"] = exc


def _work(execute: Callable[[Any, Job], dict], job: Job) -> tuple[str, dict]:
    try:
        if "error" in _WORKER:
            raise _WORKER["error"]
        return job.key, execute(_WORKER["context"], job)
    except Exception as exc:
        if _crosses_as_itself(exc):
            raise
        raise TrainingError(f"{job.label}: {type(exc).__name__}: {exc}") from None


def _crosses_as_itself(exc: Exception) -> bool:
    """Whether the parent can rebuild ``exc`` from what the pool sends: the project's own errors and Python's built-in
    ones, made from their message alone. Anything else reaches the parent as a TrainingError naming its type and
    message (nothing is unpickled here to find out)."""
    own = isinstance(exc, S2SNetsError) or type(exc).__module__ == "builtins"
    return own and len(exc.args) <= 1 and all(isinstance(a, str) for a in exc.args)


# ----------------------------------------------------------------------------------------------- running
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
    worker_memory: int = WORKER_MEMORY,
) -> dict[str, dict]:
    """Run every job of ``jobs`` (of this shard) that has no record yet; return {key: record} of all records found.

    ``execute(context, job) -> record`` and ``initializer(payload) -> context`` must be module-level functions
    (workers import them by name); ``local_context``, if given, serves the serial path instead of a new one.
    ``threads``: torch threads of each job, here and in workers. ``workers``: at most this many processes, fewer
    where the cores (cores // threads) or the available memory (``worker_memory`` bytes each) do not allow them
    (said in the log); one runs here. ``on_done(job, record, done, total)`` is called in this process as each job
    finishes. A shard with jobs to run claims them (``ShardClaimed`` when another live process has). A job's own
    exception stops the run as itself; a worker that dies (killed, out of memory) stops the run with a
    TrainingError; SIGINT, SIGTERM and SIGHUP stop it with ``Interrupted``; what finished is kept.
    """
    if shard is not None and not (
        isinstance(shard, tuple) and len(shard) == 2 and all(type(v) is int for v in shard) and 0 <= shard[0] < shard[1]
    ):
        raise InputError(f"shard={shard!r}: pass (i, N) with 0 <= i < N, or None for every job")
    jobs = list(jobs)
    records = Records(root)
    mine = [j for i, j in enumerate(jobs) if shard is None or i % shard[1] == shard[0]]
    todo = [j for j in mine if records.get(j.key) is None]
    claim = ShardClaim(records.folder, shard) if shard is not None and todo else None
    if claim is not None:
        claim.acquire()
        todo = [j for j in mine if records.get(j.key) is None]  # the previous holder may have finished some
    total, done = len(todo), 0

    def finished(job: Job, record: dict) -> None:
        nonlocal done
        records.put(job.key, record)
        done += 1
        if on_done is not None:
            on_done(job, record, done, total)

    try:
        count = worker_cap(workers, threads, worker_memory, len(todo)) if todo and workers > 1 else 1
        if todo and count <= 1:
            _run_here(todo, execute, initializer, payload, local_context, threads, finished)
        elif todo:
            _run_pool(todo, execute, initializer, payload, count, threads, finished)
    finally:
        if claim is not None:
            claim.release()
    return {j.key: r for j in jobs if (r := records.get(j.key)) is not None}


class _StopSignal(KeyboardInterrupt):
    """SIGTERM or SIGHUP received while the pool runs: stopped as Ctrl-C stops it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_stop_the_pool() -> Iterator[None]:
    """For the block, SIGTERM and SIGHUP raise ``_StopSignal`` in the main thread (once: a second one during the
    teardown is ignored); the previous handlers come back afterwards. Ignored signals (nohup) stay ignored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def stop(signum: int, frame: Any) -> None:
        if not received:
            received.append(signum)
            raise _StopSignal(signum)

    previous = {}
    for name in _STOP_SIGNALS:
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is not signal.SIG_IGN:
            previous[number] = signal.signal(number, stop)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler if handler is not None else signal.SIG_DFL)


def _run_here(todo, execute, initializer, payload, local_context, threads, finished) -> None:
    """The serial path: the jobs in this process, at their own thread count (restored afterwards)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        context = local_context if local_context is not None else initializer(payload)
        for job in todo:
            finished(job, execute(context, job))
    finally:
        torch.set_num_threads(previous)


def _run_pool(todo, execute, initializer, payload, workers, threads, finished) -> None:
    context = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    with _signals_stop_the_pool():
        pool = futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_init_worker, initargs=(initializer, payload, threads, os.getpid())
        )
        processes: list = []
        try:
            pending = {pool.submit(_work, execute, job): job for job in todo}
            processes = list((getattr(pool, "_processes", None) or {}).values())
            for future in futures.as_completed(pending):
                key, record = future.result()
                finished(pending[future], record)
            pool.shutdown(wait=True)  # every job is done: the workers exit, their queues close (no leaked semaphores)
        except futures.process.BrokenProcessPool:
            processes = processes or list((getattr(pool, "_processes", None) or {}).values())
            how = ", ".join(_ending(p) for p in processes if p.exitcode not in (None, 0)) or "a worker"  # before
            _stop(pool, processes)  # which ends the others
            raise TrainingError(
                f"a worker process died after {time.perf_counter() - started:.0f}s ({how}: killed, or out of memory; "
                "fewer --jobs need less); the finished jobs are saved: re-run the command to resume"
            ) from None
        except _StopSignal as stop:
            _stop(pool, processes)
            name = signal.Signals(stop.signum).name
            error = Interrupted(f"stopped by {name}; the finished jobs are saved, re-run the command to resume")
            error.exit_code = 128 + stop.signum
            raise error from None
        except KeyboardInterrupt:
            _stop(pool, processes)
            raise Interrupted("interrupted; the finished jobs are saved, re-run the command to resume") from None
        except BaseException:
            _stop(pool, processes)
            raise


def _ending(process: Any) -> str:
    code = process.exitcode
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"pid {process.pid} ended by {signal.Signals(-code).name}"
    return f"pid {process.pid} exited with code {code}"


def _stop(pool: futures.ProcessPoolExecutor, known: list) -> None:
    """Stop a pool now: cancel what has not started and end the workers (they would go on fine-tuning); ``known``:
    the workers seen so far (the executor forgets them at shutdown)."""
    processes = list({id(p): p for p in [*known, *(getattr(pool, "_processes", None) or {}).values()]}.values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():  # a worker stuck in native code that ignores SIGTERM
            process.kill()
            process.join(timeout=5)
