import contextlib
import fcntl
import gzip
import io
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2snets.data import DEBIAN_FASHION_MNIST

ROOT = Path(__file__).resolve().parents[1]
HAS_FASHION = (DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz").is_file()
needs_fashion = pytest.mark.skipif(
    not HAS_FASHION, reason="Debian's dataset-fashion-mnist is not installed (make setup installs it as root)"
)

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs ``-n 2 --dist loadgroup``, which hands out one test at a time in this
    order) the slow tests go first, so the long ones do not end the run on one worker while the other idles. Each
    worker sorts the same way, so they collect the same order."""
    if hasattr(config, "workerinput"):  # an xdist worker
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order within each part


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """``s2snets ARGS`` as a user runs it: ``python -m s2snets`` in a subprocess, with its output captured. For the
    end-to-end runs (a fresh interpreter, a time limit); the quick checks use ``cli`` (same main, this process)."""
    return subprocess.run(
        [sys.executable, "-m", "s2snets", *args], capture_output=True, text=True, cwd=cwd or ROOT, timeout=timeout
    )


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``s2snets ARGS`` in this process, as click's CliRunner does: the exit code ``main`` returns (or argparse's
    SystemExit), stdout and stderr captured. The console script is ``sys.exit(main())``, so this is the command
    minus a fresh interpreter (whose torch import costs ~4 s here, for each of the suite's hundred-odd calls). The
    fuzz tests use it too."""
    from s2snets.cli import main

    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd or ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse: --help (0) and usage errors (2)
                code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    finally:
        os.chdir(previous)
    return subprocess.CompletedProcess(["s2snets", *args], code, out.getvalue(), err.getvalue())


def one_line_error(proc, *fragments):
    """A user error: exit code 2 and exactly one line on stderr, holding every fragment, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """One end-to-end `s2snets demo --quick` shared by the tests that inspect its outputs (which only read it): once
    per test run, also under pytest-xdist, whose workers share the parent of their temporary folders: the first to
    ask runs it while the other waits on the lock, then both read the same run."""
    if not HAS_FASHION:
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    runs, record = root / "quick-demo-runs", root / "quick-demo.json"
    with open(root / "quick-demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.is_file():
            proc = run_cli("demo", "--quick", "--runs", str(runs), timeout=900)
            record.write_text(json.dumps([proc.args, proc.returncode, proc.stdout, proc.stderr]))
    proc = subprocess.CompletedProcess(*json.loads(record.read_text()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return runs / "demo-quick", proc


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (gzip if the name ends in .gz). The inverse of ``read_idx``."""
    path = Path(path)
    from s2snets.data.sources import _IDX_DTYPES

    codes = {np.dtype(v).newbyteorder(">").str: k for k, v in _IDX_DTYPES.items()}
    codes[np.dtype(np.uint8).str] = 0x08
    codes[np.dtype(np.int8).str] = 0x09
    big = array.astype(array.dtype.newbyteorder(">")) if array.dtype.itemsize > 1 else array
    code = codes[big.dtype.str]
    blob = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + big.tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        blob = gzip.compress(blob)
    path.write_bytes(blob)
