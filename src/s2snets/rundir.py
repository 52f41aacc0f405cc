"""A run directory: ``runs/<name>/`` with config.toml, checkpoints/, metrics/*.json, figures/, log.txt."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from s2snets.checkpoint import atomic_write_text
from s2snets.config import RunConfig, to_toml


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

    def figure(self, name: str) -> Path:
        return self.root / "figures" / f"{name}.png"

    def log(self, message: str) -> None:
        if self.writable:
            with open(self.root / "log.txt", "a") as f:
                f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}\n")

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
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return str(value)
