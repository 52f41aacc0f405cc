"""A run directory: ``runs/<name>/`` with config.toml, checkpoints/, metrics/*.json, figures/, log.txt."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from s2snets.checkpoint import TMP_SUFFIX, atomic_write_text
from s2snets.config import RunConfig, to_toml
from s2snets.errors import S2SNetsError


class RunLocked(S2SNetsError):
    """Another process holds the run directory."""


LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(root: str | Path, shared: bool = False) -> Iterator[None]:
    """Hold an advisory lock on run directory ``root`` for the whole block; RunLocked names the holder.

    ``shared``: several holders at once (the shards of one hypothesis grid), but none beside an exclusive one.

    The kernel drops a ``flock`` when its process dies, so the lock of a killed run is taken over by the next one
    without any clean-up (the file's text, the holder's pid and host, is only the message).
    """
    root = Path(root)
    if root.is_symlink():  # written there, the run would land outside --runs
        raise S2SNetsError(
            f"run directory {root} is a symbolic link (to {os.path.realpath(root)}); give a real folder or another --name"
        )
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise RunLocked(
                f"run directory {root} is in use by {holder}; wait for it to finish or choose another --name"
            ) from None
        if not shared:  # a shared holder leaves the exclusive holder's words for the next message
            os.ftruncate(fd, 0)
            remove_stale_temporaries(root)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Temporary files of atomic writes (``.<name>.<random>.tmp``) that a killed process left in the run directory.
    Called under the exclusive lock: no other process of this run can be writing them."""
    stale = [p for p in root.rglob(f".*{TMP_SUFFIX}") if p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    if stale:
        logging.getLogger("s2snets").info("removed %d temporary file(s) a killed run left in %s", len(stale), root)
    return stale


class RunDir:
    def __init__(self, root: str | Path, writable: bool = True):
        self.root = Path(root)
        self.writable = writable
        if writable:
            for sub in ("checkpoints", "metrics", "figures"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)

    def checkpoint(self, name: str) -> Path:
        return self.root / "checkpoints" / f"{name}.safetensors"

    def metrics(self, name: str) -> Path:
        return self.root / "metrics" / f"{name}.json"

    def metrics_csv(self, stage: str) -> Path:
        """Per-step training metrics of one stage (written by the training engine)."""
        return self.root / "metrics" / f"{stage}.csv"

    def figure(self, name: str) -> Path:
        return self.root / "figures" / f"{name}.png"

    @contextlib.contextmanager
    def logging(self) -> Iterator[None]:
        """Within the block, the ``s2snets`` logger's messages are also appended to the run's log.txt."""
        if not self.writable:
            yield
            return
        logger = logging.getLogger("s2snets")
        handler = logging.FileHandler(self.root / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
        handler.setLevel(logging.INFO)
        level = logger.level
        if level == logging.NOTSET or level > logging.INFO:
            logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            handler.close()

    def write_config(self, config: RunConfig) -> None:
        if self.writable:
            atomic_write_text(self.root / "config.toml", to_toml(config))

    def write_json(self, name: str, value: Any) -> Path:
        path = self.metrics(name)
        if self.writable:
            atomic_write_text(path, json.dumps(value, indent=2, default=_jsonable) + "\n")
        return path

    def read_json(self, name: str) -> Any | None:
        path = self.metrics(name)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # a partial file from an older writer: recompute


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)
