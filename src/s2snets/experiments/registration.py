"""Pre-registration of the checkerboard experiment: what a run will decide, and how, fixed before its first job.

``register(config, run)`` writes ``<run>/registration.json`` before any job runs: the rules' version and the hash of
the package's code (every line from the measures to the rules) with its git commit and clean flag, the primary
endpoint and cell, the planned n, alpha, the smallest effect of interest, the power analysis that gave n (when one is
stated) and the hash of every config value the numbers depend on, with the UTC time. A resume reads it back and
refuses to go on when any of that changed: a changed rule or endpoint needs a new run (a new name), never a
re-decision of finished jobs. ``hypothesis.json``, the command's output and the report quote it.

"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from s2snets.checkpoint import atomic_write_text
from s2snets.config import RunConfig, config_hash
from s2snets.errors import ConfigError
from s2snets.metrics.stats import replicates_needed
from s2snets.rundir import RunDir

RULES_VERSION = "0.4-pilot"  # bump with every change of a rule; the code hash catches the changes nobody bumped
FILE = "registration.json"
# What does not change a number: how many processes share the work.
_NOT_REGISTERED = {"jobs"}


def rules_hash() -> str:
    """sha256 of every source file of the package (sorted by path): everything that turns records into a verdict,
    from the measures to the rules, and nothing else."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def source_commit() -> dict[str, Any] | None:
    """The git commit of the package's checkout and whether its sources had uncommitted changes; None outside git."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--", "."], cwd=root, capture_output=True, text=True,
                                timeout=10)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    if commit.returncode or status.returncode:
        return None
    return {"commit": commit.stdout.strip(), "clean": not status.stdout.strip()}


def n_for_power(*, sd: float, smallest_effect: float, alternative: float, alpha: float, power: float) -> dict[str, Any]:
    """Classifiers the primary rule needs, for a spread ``sd`` between classifiers stated beforehand (from a pilot:
    plan with its upper confidence limit, not its point value): the larger of
    superiority -- the (1 - alpha) interval of D above ``smallest_effect`` when the truth is ``alternative`` (a
    stated effect, e.g. a fully classifier-born pattern, never an observed mean) -- and equivalence -- TOST within
    +-``smallest_effect`` when the truth is 0. {"superiority", "equivalence", "n"}; None where no n up to 10,000 does.

    >>> n_for_power(sd=0.6, smallest_effect=0.5, alternative=1.2, alpha=0.05, power=0.8)
    {'superiority': 8, 'equivalence': 14, 'n': 14}
    """
    if not (sd > 0 and math.isfinite(sd)) or not smallest_effect > 0 or not alternative > smallest_effect:
        raise ConfigError(
            f"a power analysis needs sd > 0 and alternative > smallest_effect > 0, got sd = {sd}, smallest_effect = "
            f"{smallest_effect}, alternative = {alternative}"
        )
    superiority = replicates_needed(alternative, sd, smallest_effect, alpha=alpha, power=power)
    equivalence = replicates_needed(0.0, sd, smallest_effect, alpha=alpha, power=power, equivalence=True)
    both = [n for n in (superiority, equivalence) if n is not None]
    return {"superiority": superiority, "equivalence": equivalence,
            "n": max(both) if len(both) == 2 else None}  # fmt: skip


def registration(config: RunConfig) -> dict[str, Any]:
    """The registration of a run (without its time): rules, primary endpoint and cell, n, alpha, effect, config."""
    h = config.hypothesis
    registered = {k: v for k, v in dataclasses.asdict(h).items() if k not in _NOT_REGISTERED}
    out: dict[str, Any] = {
        "rules": {"version": RULES_VERSION, "sha256": rules_hash()},
        "primary": {
            "endpoint": h.primary_endpoint or None,
            "cell": h.primary_cell or None,
            "n": h.planned_n or None,
            "alpha": h.alpha,
            "smallest_effect": h.smallest_effect,
            "power": h.power,
        },  # fmt: skip
        "config_sha256": config_hash(
            "registered",
            config.seed,
            config.data,
            config.finetune,
            config.measure,
            config.autoencoder,
            config.use_zoo,
            registered,
        ),  # fmt: skip
    }
    return out


def digest(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in ("created", "sha256", "source")}  # "supersedes" is hashed: history kept
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _essence(record: dict[str, Any]) -> str:
    """What a registration fixes (rules, primary, config, power analysis), without its time and history."""
    return digest({k: v for k, v in record.items() if k != "supersedes"})


def register(config: RunConfig, run: RunDir) -> dict[str, Any]:
    """Write the run's registration before its first job, or check a resumed run against the one it has.

    Returns the registration as written (with ``created`` and ``sha256``). ConfigError when the run directory holds
    another registration with a primary endpoint: which part changed, and that a changed registration needs a new run
    name. An exploratory run (no primary endpoint, then or now) is re-registered instead, the old one listed under
    ``supersedes``: nothing was fixed in advance for it to break."""
    path = run.root / FILE
    record = registration(config)
    record["sha256"] = digest(record)
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
            raise ConfigError(f"{path} is not a readable registration ({exc}); a damaged registration cannot be resumed: "
                              "use a new run name") from None  # fmt: skip
        if not isinstance(old, dict) or old.get("sha256") != digest(old):
            raise ConfigError(f"{path} was edited after it was written (its sha256 does not match); use a new run name")
        exploratory = not old.get("primary", {}).get("endpoint") and not record["primary"]["endpoint"]
        same = _essence(old) == _essence(record)
        if not same and exploratory:  # nothing was registered to decide: record the change
            record["supersedes"] = [*old.get("supersedes", []), {"sha256": old["sha256"], "created": old.get("created")}]
            record["sha256"] = digest(record)
        elif not same:
            changed = [k for k in ("rules", "primary", "config_sha256") if old.get(k) != record.get(k)]
            raise ConfigError(
                f"this run was registered on {old.get('created', '?')} with other {', '.join(changed)}; a registered run "
                "resumes only unchanged. Restore them, or start a new registered run (another config 'name')"
            )
        else:
            return old
    record["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    record["source"] = source_commit()  # where the code came from (not hashed: the code's own hash is)
    run.root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def registration_text(record: dict[str, Any]) -> str:
    """One line for the command's output and the report."""
    p = record["primary"]
    primary = (f"primary endpoint {p['endpoint']} in {p['cell']}, n = {p['n']}, alpha = {p['alpha']}, smallest effect "
               f"{p['smallest_effect']}" if p.get("endpoint") else "no primary endpoint registered (exploratory)")  # fmt: skip
    return (f"registered {record.get('created', '?')} (sha256 {record['sha256'][:12]}): rules {record['rules']['version']} "
            f"({record['rules']['sha256'][:12]}); {primary}")  # fmt: skip
