"""Checkpoints: safetensors for tensors, JSON for everything else, written atomically, loaded with checks.

One checkpoint is one ``.safetensors`` file whose header metadata carries the JSON (config, step, epoch,
architecture names): a single ``os.replace`` commits both, so a kill at any moment leaves the old or the new
checkpoint, never a mix. A human-readable copy of the JSON is written beside it (``.json``). No pickle anywhere:
optimizer state is flattened into tensors plus JSON.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from s2snets.errors import CheckpointError

META_KEY = "s2snets"
HASH_KEY = "s2snets.sha256"  # header entry: the content hash of every tensor (name, dtype, shape, bytes)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _user_mode(fd: int) -> None:
    """mkstemp creates 0600 files; a finished file gets the mode any other file of the user would (0666 & ~umask)."""
    os.fchmod(fd, 0o666 & ~_umask())


def tensors_sha256(tensors: dict[str, Tensor]) -> str:
    """A content hash of a state: every tensor's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def first_non_finite(tensors: dict[str, Tensor]) -> str | None:
    """The name of the first floating tensor holding a NaN or an infinity, or None."""
    for name in sorted(tensors):
        t = tensors[name]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            return name
    return None


TMP_SUFFIX = ".tmp"  # temporary files are .<name>.<random>.tmp beside their target: stale ones are removed at start


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Write ``path`` through ``write(temporary path)`` in the same folder, fsync, rename: a kill leaves the old file
    or the new one, never a mix. A full disk is a CheckpointError that says so (the old file stays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            _user_mode(f.fileno())
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "No space left" in str(exc):
            raise CheckpointError(
                f"no space left on the device while writing {path}; free some and re-run (the previous file is intact)"
            ) from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (``atomic_write``)."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Atomically write ``tensors`` and JSON-able ``meta`` to ``path`` (.safetensors) and a ``.json`` copy.

    The header carries the tensors' content hash; ``load_checkpoint`` checks it, so a file changed after it was
    written is never used silently.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    meta_text = json.dumps(meta, sort_keys=True, default=str)
    header = {META_KEY: meta_text, HASH_KEY: tensors_sha256(blob)}
    atomic_write(path, lambda tmp: save_file(blob, tmp, metadata=header))
    atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")


class CorruptCheckpoint(CheckpointError):
    """A checkpoint that reads but cannot be trusted: its content hash does not match, or a tensor is not finite."""


def load_checkpoint(path: str | Path, *, finite: bool = False) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a checkpoint written by ``save_checkpoint``: (tensors on CPU, meta).

    CheckpointError if unreadable; CorruptCheckpoint if the tensors do not match the header's content hash, or, with
    ``finite`` (model states), if a floating tensor holds a NaN or an infinity.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            meta_text = header.get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors checkpoint ({exc})") from None
    expected = header.get(HASH_KEY)
    if expected is not None and tensors_sha256(tensors) != expected:
        raise CorruptCheckpoint(f"{path}: its tensors do not match the content hash written with them (changed or damaged)")
    bad = first_non_finite(tensors) if finite else None
    if bad is not None:
        raise CorruptCheckpoint(f"{path}: tensor '{bad}' holds NaN or infinite values")
    if meta_text is None:
        return tensors, {}
    try:
        return tensors, json.loads(meta_text)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: its metadata is not valid JSON") from None


def read_meta(path: str | Path) -> dict[str, Any] | None:
    """The JSON metadata of a checkpoint, or None if there is no readable checkpoint at ``path``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            text = (f.metadata() or {}).get(META_KEY)
        return json.loads(text) if text else {}
    except (SafetensorError, OSError, ValueError, FileNotFoundError):
        return None


# ----------------------------------------------------------------------------------------------- modules
def load_module(module: nn.Module, tensors: dict[str, Tensor], prefix: str, source: str = "checkpoint") -> None:
    """Load ``prefix/*`` tensors into ``module`` strictly; CheckpointError names the first mismatched key."""
    own = module.state_dict()
    found = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")}
    check_state_fits(own, found, source)
    module.load_state_dict(found, strict=True)


def check_state_fits(expected: dict[str, Tensor], found: dict[str, Tensor], source: str) -> None:
    """Raise CheckpointError naming the first key that is missing, unexpected or of another shape."""
    for key, value in expected.items():
        if key not in found:
            raise CheckpointError(f"{source} does not fit this model: key '{key}' is missing (another architecture?)")
        if tuple(found[key].shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source} does not fit this model: key '{key}' has shape {tuple(found[key].shape)} in the file "
                f"but {tuple(value.shape)} in the model (another architecture?)"
            )
    for key in found:
        if key not in expected:
            raise CheckpointError(f"{source} does not fit this model: unexpected key '{key}' (another architecture?)")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Flatten an optimizer's state without pickle: tensors under ``optim/<param>/<name>``, the rest as JSON."""
    state = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, pstate in state["state"].items():
        for name, value in pstate.items():
            if isinstance(value, Tensor):
                tensors[f"optim/{pid}/{name}"] = value
            else:
                scalars.setdefault(str(pid), {})[name] = value
    groups = [{k: (v.item() if isinstance(v, Tensor) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Inverse of ``optimizer_tensors``."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, pid, name = key.split("/", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"the optimizer state in the checkpoint does not fit: {exc}") from None


def rng_tensors() -> dict[str, Tensor]:
    out = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng/cuda"] = torch.cuda.get_rng_state()
    return out


def restore_rng(tensors: dict[str, Tensor]) -> None:
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])


def load_user_weights(path: str | Path) -> dict[str, Tensor]:
    """A state_dict from a file the user supplies: safetensors, or a torchvision ``.pth`` read without pickle code
    execution (``torch.load(..., weights_only=True)``)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        tensors = load_checkpoint(path)[0]
        # A checkpoint of this project's classifier stage: its model tensors, without optimizer and RNG state.
        own = {k[len("model/classifier/") :]: v for k, v in tensors.items() if k.startswith("model/classifier/")}
        return _finite_weights(own or tensors, path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path} is not a readable weights file ({type(exc).__name__}: {str(exc)[:200]})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state_dict of tensors")
    return _finite_weights(state, path)


def _finite_weights(state: dict[str, Tensor], path: Path) -> dict[str, Tensor]:
    bad = first_non_finite(state)
    if bad is not None:
        raise CheckpointError(f"{path}: '{bad}' holds NaN or infinite values; these weights cannot be used")
    return state
