"""Fuzzing the command line and the config (hypothesis): whatever a user types ends in exit 0, 2 or 130, with one
line on stderr when it is not 0, and nothing written outside the folders the command was given.

The in-suite profile runs in well under a minute; ``S2SNETS_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz.py`` runs a
longer one.
"""

import dataclasses
import os
import typing

import pytest
from conftest import cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from s2snets.config import RunConfig, load_config
from s2snets.errors import ConfigError

EXAMPLES = int(os.environ.get("S2SNETS_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _keys(cls, prefix=""):
    """Every config key as (dotted path, annotation), from the dataclasses themselves."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hints[f.name]


KEYS = sorted(_keys(RunConfig))
WORDS = st.sampled_from(["adam", "adamm", "cosine", "unpool", "bogus", "fashion-mnist", "folder", "../x", "", "cuda:7", "auto"])
VALUES = st.one_of(
    st.integers(-3, 300),
    st.sampled_from([2**31, 2**62, 2**63 - 1, 10**12]),  # numbers no machine can honour: bounds, not allocations
    st.floats(allow_nan=True, allow_infinity=True),
    WORDS,
    st.booleans(),
    st.lists(st.one_of(st.integers(-2, 9), WORDS), max_size=4),
)


def _toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, float):
        return "nan" if v != v else ("inf" if v == float("inf") else "-inf" if v == float("-inf") else repr(v))
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]" if len({type(x) for x in v}) <= 1 else "[]"
    return repr(v)


@st.composite
def toml_documents(draw):
    """A TOML config built from the real keys, each with a value that is often of the wrong type or range."""
    chosen = draw(st.lists(st.sampled_from(KEYS), max_size=6, unique_by=lambda k: k[0]))
    tables: dict[str, list[str]] = {}
    for path, _ in chosen:
        table, _, key = path.rpartition(".")
        tables.setdefault(table, []).append(f"{key} = {_toml_value(draw(VALUES))}")
    lines = tables.pop("", [])
    for table, body in tables.items():
        lines += [f"[{table}]", *body]
    return "\n".join(lines) + "\n"


def _run(argv, cwd):
    """cli.main in this process, from ``cwd``: (exit code, stdout, stderr)."""
    proc = cli(*argv, cwd=cwd)
    return proc.returncode, proc.stdout, proc.stderr


def _check(code, stderr, argv):
    assert code in (0, 2, 130), (argv, code, stderr)
    if code != 0:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in stderr, (argv, stderr)
        assert "internal error" not in stderr, (argv, stderr)


@pytest.fixture(scope="module")
def playground(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("fuzz")
    Image.new("L", (24, 24), 7).save(root / "a.png")
    Image.new("RGB", (24, 24), (1, 2, 3)).save(root / "rgb.png")
    (root / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n junk")
    (root / "run" / "metrics").mkdir(parents=True)
    (root / "run" / "metrics" / "results.json").write_text('{"transfer": {"names": 3}}')
    (root / "cwd").mkdir()
    os.mkfifo(root / "fifo.png")  # a reader that opened it would wait forever
    (root / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    folder = root / "folder" / "test"
    for c in ("a", "b"):
        (folder / c).mkdir(parents=True)
        for i in range(2):
            Image.new("L", (24, 24), 40 * i + (c == "b") * 100).save(folder / c / f"{i}.png")
    (folder / "a" / "loop").symlink_to(folder / "a")
    (root / "fuzzfactories.py").write_text(FACTORIES)
    import sys

    sys.path.insert(0, str(root))
    return root


FACTORIES = """
import torch
from torch import nn

def extra_logits(num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes + 3))

def one_logit(num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(1))

class _Tuple(nn.Module):
    def __init__(self, k):
        super().__init__()
        self.fc = nn.LazyLinear(k)
    def forward(self, x):
        return self.fc(x.flatten(1)), x

def tuple_output(num_classes):
    return _Tuple(num_classes)

def feature_map(num_classes):
    return nn.Conv2d(1, num_classes, 3)

def identity(num_classes):
    return nn.Identity()

def float64(num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes)).double()

def exits(num_classes):
    raise SystemExit(0)
"""


def _png_header(width, height):
    """A PNG whose header claims width x height pixels (its pixel data is a few bytes): a decompression bomb's header."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _files_outside(root):
    found = []
    for top, dirs, files in os.walk(root, followlinks=False):  # the playground holds a link loop
        rel = os.path.relpath(top, root)
        found += [os.path.normpath(os.path.join(rel, f)) for f in files + dirs]
    return sorted(f for f in found if not f.startswith(("runs", "run")) and "__pycache__" not in f)


NUMBERS = st.sampled_from(
    ["-1", "0", "1", "2", "3", "8", "17", "64", "1e9", "nan", "x", "", "99999999", "100000000000", "99999999999999999999"]
)


@st.composite
def command_lines(draw):
    cmd = draw(
        st.sampled_from(["lint", "nmi", "spectrum", "overlap", "transfer", "report", "config", "help", "zoo", "gradients"])
    )
    n = lambda: draw(NUMBERS)  # noqa: E731
    img = lambda: draw(st.sampled_from(["a.png", "rgb.png", "junk.png", "missing.png", "run", "fifo.png", "bomb.png"]))  # noqa: E731
    if cmd == "lint":
        argv = [
            "lint",
            draw(st.sampled_from(["segnet:tiny", "segnet:tiny:transposed", "segnet:nope", "alexnet_s", "nope", "os:abort"])),
        ]
        for opt in draw(
            st.lists(st.sampled_from(["--input-size", "--channels", "--json", "--downsample"]), max_size=3, unique=True)
        ):
            argv += (
                [opt]
                if opt == "--json"
                else [opt, draw(st.sampled_from(["blur_pool", "wavelet"])) if opt == "--downsample" else n()]
            )
    elif cmd == "nmi":
        argv = ["measure", "nmi", img(), img(), "--levels", n(), "--average", draw(st.sampled_from(["min", "median"]))]
    elif cmd == "spectrum":
        argv = ["measure", "spectrum", img(), "--period", n()]
    elif cmd == "overlap":
        spec = draw(st.sampled_from(["3,2", "4,2;4,2", "3,0", "a", "1,1,1,1,1", "5,2,-1", "3,2,1,0"]))
        argv = ["measure", "overlap", "--layers", spec, "--length", n(), "--pass", draw(st.sampled_from(["forward", "gradient"]))]
    elif cmd == "transfer":
        argv = ["measure", "transfer", draw(st.sampled_from(["run", "missing", "a.png"]))]
    elif cmd == "report":
        argv = ["report", draw(st.sampled_from(["run", "missing", "a.png"]))]
    elif cmd == "config":
        argv = ["config", "--preset", draw(st.sampled_from(["default", "demo", "nope"]))]
    elif cmd == "zoo":
        argv = ["zoo", draw(st.sampled_from(["list", "verify --only nope", "train --only nope", "bogus"]))]
        argv = argv[:1] + argv[1].split()
    elif cmd == "gradients":
        model = draw(st.sampled_from(["alexnet_s", ":make", ".rel:make", "fuzzfactories:nothing", "fuzzfactories:extra_logits",
                                      "fuzzfactories:one_logit", "fuzzfactories:tuple_output", "fuzzfactories:feature_map",
                                      "fuzzfactories:identity", "fuzzfactories:float64", "fuzzfactories:exits", "os:abort"]))  # fmt: skip
        argv = ["measure", "gradients", model, "-n", draw(st.sampled_from(["2", "0", "100000000000"])), "--seed", n()]
        if draw(st.booleans()):
            argv += ["--images", draw(st.sampled_from(["folder", "missing"]))]
    else:
        argv = [draw(st.sampled_from(["--help", "--version", "--bogus", "nocommand"]))]
    if draw(st.booleans()):
        argv = [draw(st.sampled_from(["--quiet", "--device", "--amp"]))] + argv
        if argv[0] in ("--device", "--amp"):
            argv.insert(1, draw(st.sampled_from(["cpu", "cuda:5", "fp16", "bogus"])))
    return argv


@FUZZ
@given(argv=command_lines())
def test_fuzzed_command_lines_end_in_0_2_or_130_with_one_line(playground, argv):
    argv = [str(playground / a) if os.path.lexists(playground / a) or a.endswith(".png") or a == "missing" else a for a in argv]
    before = _files_outside(playground)
    code, _, err = _run(argv, playground / "cwd")
    _check(code, err, argv)
    assert _files_outside(playground) == before, argv


@FUZZ
@given(doc=toml_documents())
def test_fuzzed_configs_load_or_fail_with_a_config_error(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_text(doc)
    try:
        config = load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)
        return
    assert isinstance(config, RunConfig)
    assert load_config(path) == config  # deterministic


@FUZZ
@given(doc=toml_documents(), bad=st.sampled_from(["pretrain.optimizer=adamm", "finetune.lr=0", "name=../x", "data.size=0"]))
def test_a_fuzzed_config_with_one_bad_value_fails_before_any_work(playground, doc, bad):
    path = playground / "cwd" / "fuzz.toml"
    path.write_text(doc)
    runs = playground / "runs"
    code, _, err = _run(["replicate", "--config", str(path), "--runs", str(runs), "--set", bad], playground / "cwd")
    path.unlink()
    assert code == 2, err
    _check(code, err, bad)
    assert not list(runs.rglob("*.safetensors")) if runs.exists() else True
