"""One training engine for the three stages: classifier (CE), autoencoder (MSE), decoder fine-tuning (frozen CE).

A stage is a ``LossModule`` (``forward(x, y) -> scalar loss``), the parameters to optimise and the modules to
save. The engine owns the rest: data order, learning-rate schedule, mixed precision, DDP, progress, NaN checks,
checkpoints every N steps and at each epoch end, resume, Ctrl-C.

Resume is exact: the data order of epoch e is a permutation seeded by (seed, e), the schedule is a function of the
step, and model, optimizer and RNG states are restored, so a resumed run ends with the same weights as an
uninterrupted one (bit-exact on CPU with deterministic algorithms).
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from s2snets.checkpoint import (
    CorruptCheckpoint,
    atomic_write_text,
    first_non_finite,
    load_checkpoint,
    load_module,
    load_optimizer,
    optimizer_tensors,
    read_meta,
    restore_rng,
    rng_tensors,
    save_checkpoint,
)
from s2snets.config import StageConfig
from s2snets.data import ImageSet, in_order, planned_batches
from s2snets.errors import ConfigError, DataError, Interrupted, TrainingError
from s2snets.names import OPTIMIZERS, SCHEDULES
from s2snets.runtime import Runtime, barrier


# ----------------------------------------------------------------------------------------------- objectives
class ClassifierLoss(nn.Module):
    """Cross-entropy of a classifier on the images."""

    def __init__(self, classifier: nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self.classifier(x), y)


class AutoencoderLoss(nn.Module):
    """Mean squared reconstruction error, in the normalised image space."""

    def __init__(self, autoencoder: nn.Module):
        super().__init__()
        self.autoencoder = autoencoder

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return F.mse_loss(self.autoencoder(x).float(), x.float())


class FinetuneLoss(nn.Module):
    """The frozen classifier's cross-entropy on the reconstructions: gradients flow through it into the decoder.

    Wiring as in the original: encoder in eval mode with detached outputs and indices, classifier in eval mode with
    ``requires_grad=False``; only the decoder is trainable.
    """

    def __init__(self, autoencoder: nn.Module, classifier: nn.Module):
        super().__init__()
        # A SegNet freezes its encoder itself; for any other autoencoder everything but its decoder is frozen here.
        self.autoencoder = autoencoder.freeze_encoder() if hasattr(autoencoder, "freeze_encoder") else autoencoder
        decoder = set(autoencoder.decoder.modules())
        self._frozen = [m for m in autoencoder.modules() if m not in decoder and not any(c in decoder for c in m.modules())]
        if not hasattr(autoencoder, "freeze_encoder"):
            trainable = {id(p) for p in autoencoder.decoder.parameters()}
            for p in autoencoder.parameters():
                p.requires_grad_(id(p) in trainable)
        self.classifier = classifier
        for p in self.classifier.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> FinetuneLoss:
        super().train(mode)
        self.classifier.eval()
        self.autoencoder.train(mode)
        for m in self._frozen:  # the frozen part keeps its batch-norm statistics
            m.eval()
        return self

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(self.classifier(self.autoencoder(x)), y)


@dataclass
class Stage:
    """What the engine trains: the loss, the parameters it optimises, the modules a checkpoint holds."""

    name: str
    loss: nn.Module
    params: list[nn.Parameter]
    modules: dict[str, nn.Module]
    arch: dict[str, str] = field(default_factory=dict)


def classifier_stage(name: str, classifier: nn.Module) -> Stage:
    return Stage(
        name,
        ClassifierLoss(classifier),
        list(classifier.parameters()),
        {"classifier": classifier},
        {"classifier": getattr(classifier, "arch", type(classifier).__name__)},
    )


def autoencoder_stage(name: str, autoencoder: nn.Module, decoder_only: bool = False) -> Stage:
    """The reconstruction (MSE) stage; ``decoder_only``: the encoder frozen as in fine-tuning, only the decoder
    trained (the checkerboard experiment's sham: the fine-tuning with the decoder's own loss instead of a classifier's)."""
    if decoder_only:
        autoencoder.freeze_encoder()
    return Stage(
        name,
        AutoencoderLoss(autoencoder),
        list(autoencoder.decoder.parameters() if decoder_only else autoencoder.parameters()),
        {"autoencoder": autoencoder},
        {"autoencoder": getattr(autoencoder, "arch", type(autoencoder).__name__)},
    )


def finetune_stage(name: str, autoencoder: nn.Module, classifier: nn.Module) -> Stage:
    loss = FinetuneLoss(autoencoder, classifier)
    return Stage(
        name,
        loss,
        list(autoencoder.decoder.parameters()),
        {"autoencoder": autoencoder},
        {"autoencoder": getattr(autoencoder, "arch", type(autoencoder).__name__)},
    )


# ----------------------------------------------------------------------------------------------- pieces
def make_optimizer(params: list[nn.Parameter], cfg: StageConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=cfg.momentum > 0)
    raise ConfigError(f"unknown optimizer '{cfg.optimizer}'; use one of {', '.join(OPTIMIZERS)}")


def lr_at(step: int, total: int, cfg: StageConfig) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up, then constant or cosine decay to 0."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        span = max(total - cfg.warmup_steps, 1)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step - cfg.warmup_steps, span) / span))
    raise ConfigError(f"unknown schedule '{cfg.schedule}'; use one of {', '.join(SCHEDULES)}")


def epoch_order(seed: int, epoch: int, n: int) -> Tensor:
    """The data order of one epoch: a permutation of range(n) that depends only on (seed, epoch)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def _model_ready(data: ImageSet, batch_size: int, runtime: Runtime, limit: int | None) -> Iterator[Tensor]:
    """``data``'s images in order (the first ``limit``), as normalised float (B, C, H, W) batches on the device."""
    for images, _ in in_order(data, batch_size, limit=limit):
        yield data.normalize(runtime.to_device(images))


@dataclass
class StageResult:
    name: str
    steps: int
    history: list[tuple[int, float]]
    seconds: float
    skipped: bool = False
    resumed_from: int = 0

    @property
    def final_loss(self) -> float:
        return self.history[-1][1] if self.history else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "steps": self.steps, "seconds": self.seconds, "final_loss": self.final_loss,
                "skipped": self.skipped, "resumed_from": self.resumed_from, "history": self.history}  # fmt: skip

    def __repr__(self) -> str:
        how = "skipped (done before)" if self.skipped else f"final loss {self.final_loss:.4f}, {self.seconds:.1f}s"
        return f"StageResult({self.name}: steps={self.steps}, {how})"


class _StopFlag:
    """Turns SIGINT into a flag checked between steps, so Ctrl-C never interrupts an optimizer step half-way."""

    def __init__(self) -> None:
        self.raised = False
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.raised:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        self.raised = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class _MetricsCSV:
    """Per-step metrics of a stage as CSV (step, epoch, loss, lr, seconds), to plot or watch with ``tail -f``.

    On resume, rows past the checkpoint's step (written after it, before a kill) are dropped, so the file matches
    the run that continues.
    """

    HEADER = "step,epoch,loss,lr,seconds\n"

    def __init__(self, path: str | Path, resumed_step: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [self.HEADER]
        if resumed_step > 0 and self.path.is_file():
            for line in self.path.read_text().splitlines()[1:]:
                head = line.split(",", 1)[0]
                if head.isdigit() and int(head) <= resumed_step:
                    kept.append(line + "\n")
        atomic_write_text(self.path, "".join(kept))

    def write(self, step: int, epoch: float, loss: float, lr: float, seconds: float) -> None:
        with open(self.path, "a") as f:
            f.write(f"{step},{epoch:.4f},{loss:.6g},{lr:.6g},{seconds:.2f}\n")


def quarantine(path: Path) -> Path:
    """Move a checkpoint (and its .json copy) into ``quarantine/`` beside it; returns the new path."""
    folder = path.parent / "quarantine"
    folder.mkdir(exist_ok=True)
    target = folder / f"{path.stem}.{time.strftime('%Y%m%d-%H%M%S')}{path.suffix}"
    path.replace(target)
    if path.with_suffix(".json").exists():
        path.with_suffix(".json").replace(target.with_suffix(".json"))
    return target


# ----------------------------------------------------------------------------------------------- the engine
def stage_plan(stage: Stage, data, cfg: StageConfig, runtime: Runtime) -> tuple[int, int]:
    """(steps per epoch, total steps) of ``cfg`` on ``data``; ConfigError or DataError when they give no training."""
    world, batch = runtime.world_size, cfg.batch_size
    if batch < 1 or cfg.epochs < 0 or cfg.max_steps < 0 or not cfg.lr > 0 or cfg.checkpoint_every < 1:
        raise ConfigError(
            f"{stage.name}: needs batch_size >= 1, epochs >= 0, max_steps >= 0, lr > 0 and checkpoint_every >= 1; got "
            f"batch_size={cfg.batch_size}, epochs={cfg.epochs}, max_steps={cfg.max_steps}, lr={cfg.lr}, "
            f"checkpoint_every={cfg.checkpoint_every}"
        )
    if batch % world:
        raise ConfigError(f"batch_size {batch} must be divisible by the number of processes ({world})")
    steps_per_epoch = len(data) // batch
    if steps_per_epoch == 0:
        raise DataError(f"{data.name} has {len(data)} images, fewer than one batch of {batch}; lower batch_size")
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    if total < 1:  # never write an untrained model as a finished checkpoint
        raise ConfigError(
            f"{stage.name}: epochs = {cfg.epochs} and max_steps = {cfg.max_steps} give no training step; set one of them >= 1"
        )
    return steps_per_epoch, total


@dataclass
class Progress:
    """Where a stage stands: its step, its loss history, its seconds, and the loss summed since the last logged step
    (carried through an interrupt, so that a resumed stage logs the history of an uninterrupted one)."""

    step: int = 0
    history: list = field(default_factory=list)
    elapsed: float = 0.0
    resumed_from: int = 0
    running: float = 0.0
    running_n: int = 0
    last_checked: int = 0

    def carried(self) -> list:
        return [float(self.running), self.running_n, self.last_checked]

    def log(self, stage: str, checkpoint: str, lr: float) -> float | None:
        """Close the running mean into the history; TrainingError when it is not finite. Returns it (None: empty)."""
        if self.running_n == 0:
            return None
        value = float(self.running) / self.running_n
        if not math.isfinite(value):
            raise TrainingError(
                f"{stage}: the loss became {value} between steps {self.last_checked} and {self.step}; the last good "
                f"checkpoint ({checkpoint}) is kept. Lower the learning rate (now {lr}) and re-run"
            )
        self.history.append((self.step, value))
        self.running, self.running_n, self.last_checked = 0.0, 0, self.step
        return value


class Checkpointer:
    """One stage's checkpoint: resume from it (a damaged one is quarantined and said), save to it (never weights
    that are not finite; rank 0 writes, every rank checks its replica)."""

    def __init__(self, path: Path, key: str, stage: Stage, cfg: StageConfig, seed: int, runtime: Runtime, log):
        self.path, self.key, self.stage, self.cfg, self.seed, self.runtime, self.log = path, key, stage, cfg, seed, runtime, log

    def resume(self, optimizer: torch.optim.Optimizer, total: int) -> tuple[Progress, bool]:
        """(the progress to start from, whether the stage is already done); loads modules, optimizer and RNG."""
        name, meta = self.stage.name, read_meta(self.path)
        if meta is None and self.path.exists() and self.runtime.is_main:  # one rule for every damaged file
            self.log(
                f"{name}: {self.path.name} is unreadable (truncated?); moved to {quarantine(self.path)} and the stage runs again"
            )
        tensors: dict[str, Tensor] = {}
        if meta and meta.get("key") == self.key:
            try:
                tensors, meta = load_checkpoint(self.path, finite=True)
            except CorruptCheckpoint as exc:  # recomputable: set it aside for inspection and train the stage again
                moved = quarantine(self.path) if self.runtime.is_main else self.path  # every rank starts over
                self.log(f"{name}: {exc}; moved to {moved} and the stage runs again")
                meta = None
        if not (meta and meta.get("key") == self.key):
            if meta is not None:
                self.log(f"{name}: the checkpoint holds another config; starting over")
            return Progress(), False
        for module_name, module in self.stage.modules.items():
            load_module(module, tensors, f"model/{module_name}", str(self.path))
        progress = Progress(history=[tuple(h) for h in meta.get("history", [])], elapsed=float(meta.get("seconds", 0.0)))
        progress.step = progress.resumed_from = int(meta["step"])
        if meta.get("done"):
            self.log(f"{name}: finished earlier with the same config, skipped")
            return progress, True
        load_optimizer(optimizer, tensors, meta["optimizer"])
        restore_rng(tensors)
        progress.running, progress.running_n, progress.last_checked = meta.get("running") or [0.0, 0, progress.step]
        self.log(f"{name}: resuming at step {progress.step} of {total}")
        return progress, False

    def save(
        self, optimizer: torch.optim.Optimizer, progress: Progress, done: bool, epoch: float, total: int, seconds: float
    ) -> None:
        # The loss is measured before an update, the weights saved after it: a finite loss does not prove the
        # weights are. Diverged weights never replace the last good checkpoint (every rank checks its replica).
        weights = {f"{name}/{k}": v for name, m in self.stage.modules.items() for k, v in m.state_dict().items()}
        bad = first_non_finite(weights)
        if bad is not None:
            raise TrainingError(
                f"{self.stage.name}: '{bad}' became NaN or infinite by step {progress.step}; the last good checkpoint "
                f"({self.path.name}) is kept. Lower the learning rate (now {self.cfg.lr}) and re-run"
            )
        if self.runtime.is_main:
            tensors = {f"model/{k}": v for k, v in weights.items()}
            opt_tensors, opt_meta = optimizer_tensors(optimizer)
            tensors.update(opt_tensors)
            tensors.update(rng_tensors())
            meta = {"key": self.key, "stage": self.stage.name, "step": progress.step, "epoch": epoch, "done": done,
                    "total_steps": total, "history": progress.history, "seconds": seconds, "optimizer": opt_meta,
                    "arch": self.stage.arch, "config": self.cfg.__dict__, "seed": self.seed,
                    "runtime": self.runtime.to_dict(), "running": progress.carried()}  # fmt: skip
            save_checkpoint(self.path, tensors, meta)
        barrier(self.runtime)


class Telemetry:
    """What a person watching a stage sees (rank 0): a progress bar, or a line with rate and ETA every ``heartbeat``
    seconds when there is none; per logged step a CSV row and optionally TensorBoard scalars."""

    def __init__(self, name: str, total: int, step: int, *, show: bool, runtime: Runtime, metrics_csv, tensorboard,
                 heartbeat: float, log, steps_per_epoch: int):  # fmt: skip
        self.name, self.total, self.heartbeat, self.log, self.steps_per_epoch = name, total, heartbeat, log, steps_per_epoch
        self.main = runtime.is_main
        self.bar = tqdm(total=total, initial=step, desc=name, disable=not show or not self.main, unit="step", leave=False)
        self.csv = _MetricsCSV(metrics_csv, step) if metrics_csv is not None and self.main else None
        self.board = None
        if tensorboard is not None and self.main:
            from torch.utils.tensorboard import SummaryWriter  # the optional extra; the config checks it is installed

            self.board = SummaryWriter(str(tensorboard), purge_step=step + 1 if step else None)
        self.last_line, self.line_step = time.perf_counter(), step

    def record(self, step: int, value: float, lr: float, seconds: float) -> None:
        self.bar.set_postfix(loss=f"{value:.4f}")
        if self.csv is not None:
            self.csv.write(step, step / self.steps_per_epoch, value, lr, seconds)
        if self.board is not None:
            self.board.add_scalar(f"{self.name}/loss", value, step)
            self.board.add_scalar(f"{self.name}/lr", lr, step)
        now = time.perf_counter()
        if self.bar.disable and self.main and now - self.last_line >= self.heartbeat:
            rate = (step - self.line_step) / (now - self.last_line)
            eta = (self.total - step) / rate if rate > 0 else float("inf")
            self.log(
                f"{self.name}: step {step}/{self.total} ({step / self.total:.0%}), loss {value:.4f}, {rate:.1f} steps/s, ETA {eta / 60:.1f} min"
            )
            self.last_line, self.line_step = now, step

    def close(self) -> None:
        self.bar.close()
        if self.board is not None:
            self.board.close()


def _to_device(stage: Stage, runtime: Runtime) -> None:
    for m in (stage.loss, *stage.modules.values()):  # a fine-tuning stage's frozen classifier must be there too
        m.to(runtime.device)
        if runtime.channels_last:
            m.to(memory_format=torch.channels_last)


def _step_module(stage: Stage, runtime: Runtime) -> nn.Module:
    """The loss module every step runs, wrapped after the checkpoint is loaded: DDP (which broadcasts rank 0's
    parameters when it is built) and torch.compile."""
    module: nn.Module = stage.loss
    if runtime.distributed:
        module = nn.parallel.DistributedDataParallel(
            stage.loss, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
        )
    if runtime.compile:  # in place: the state dict keeps its names, so checkpoints do not depend on it
        module.compile()
    return module


class _EpochBatches:
    """The batches of the epoch a step falls in, from that step on: a resumed run continues mid-epoch in order."""

    def __init__(self, data: ImageSet, seed: int, steps_per_epoch: int, batch_size: int, runtime: Runtime, workers: int):
        self.data, self.seed, self.steps_per_epoch, self.batch_size = data, seed, steps_per_epoch, batch_size
        self.runtime, self.workers, self.epoch = runtime, workers, -1
        self.source: Iterator[tuple[Tensor, Tensor]] = iter(())

    def at(self, step: int) -> tuple[Tensor, Tensor]:
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self.epoch:
            rt = self.runtime
            self.source = planned_batches(self.data, epoch_order(self.seed, epoch, len(self.data)), within, self.steps_per_epoch,
                                          self.batch_size, rt.rank, rt.world_size, workers=self.workers,
                                          pin_memory=rt.device.type == "cuda")  # fmt: skip
            self.epoch = epoch
        return next(self.source)


def _optimise(module: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, runtime: Runtime,
              x: Tensor, y: Tensor, lr: float) -> Tensor:  # fmt: skip
    """One optimiser step at learning rate ``lr``; returns the detached float32 loss (left on the device)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with runtime.autocast():
        loss = module(x, y)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return loss.detach().float()


def train_stage(
    stage: Stage,
    data: ImageSet,
    cfg: StageConfig,
    *,
    seed: int,
    checkpoint: str | Path,
    key: str,
    runtime: Runtime,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: None,
    log_every: int = 10,
    on_step: Callable[[int], None] | None = None,
    metrics_csv: str | Path | None = None,
    heartbeat: float = 30.0,
    tensorboard: str | Path | None = None,
    workers: int = 2,
) -> StageResult:
    """Train ``stage`` on ``data`` as ``cfg`` says, resuming from ``checkpoint`` when it holds the same ``key``.

    A finished checkpoint with the same key makes this a no-op (the modules are loaded). A NaN or infinite loss
    raises TrainingError and leaves the last good checkpoint in place; Ctrl-C saves and raises Interrupted.
    ``metrics_csv`` receives one row per logged step (step, epoch, loss, lr, seconds); without a progress bar (output
    sent to a file) a progress line goes to ``log`` every ``heartbeat`` seconds. ``tensorboard``: a folder for
    TensorBoard scalars (loss, lr per logged step; tag = the stage's name). ``data`` is an ``ImageSet`` in memory or
    a ``data.FolderStream`` read by a DataLoader with ``workers`` processes, in the same order.
    """
    steps_per_epoch, total = stage_plan(stage, data, cfg, runtime)
    _to_device(stage, runtime)
    optimizer = make_optimizer(stage.params, cfg)
    saver = Checkpointer(Path(checkpoint), key, stage, cfg, seed, runtime, log)
    state, done = saver.resume(optimizer, total)
    if done:
        return StageResult(stage.name, state.step, state.history, state.elapsed, skipped=True)
    module = _step_module(stage, runtime)
    scaler = torch.amp.GradScaler("cuda", enabled=runtime.amp_dtype == torch.float16)
    stage.loss.train()
    started = time.perf_counter()
    running = torch.tensor(float(state.running), device=runtime.device)  # summed on the device, read when logged
    watch = Telemetry(stage.name, total, state.step, show=progress, runtime=runtime, metrics_csv=metrics_csv,
                      tensorboard=tensorboard, heartbeat=heartbeat, log=log, steps_per_epoch=steps_per_epoch)  # fmt: skip
    batches, lr = _EpochBatches(data, seed, steps_per_epoch, cfg.batch_size, runtime, workers), cfg.lr

    def log_loss() -> None:
        nonlocal running
        state.running = float(running)
        value = state.log(stage.name, saver.path.name, cfg.lr)
        running = torch.zeros((), device=runtime.device) if value is not None else running
        if value is not None:
            watch.record(state.step, value, lr, state.elapsed + time.perf_counter() - started)

    def save(done: bool) -> None:
        state.running = float(running)
        try:
            saver.save(optimizer, state, done, state.step / steps_per_epoch, total, state.elapsed + time.perf_counter() - started)
        except TrainingError:
            watch.close()
            raise

    with _StopFlag() as stop:
        while state.step < total:
            images, labels = batches.at(state.step)
            x = data.normalize(runtime.to_device(images))  # uint8 travels (4x fewer bytes), normalised there
            y = labels.to(runtime.device, non_blocking=True)
            lr = lr_at(state.step, total, cfg)
            loss = _optimise(module, optimizer, scaler, runtime, x, y, lr)
            state.step += 1
            running += loss
            state.running_n += 1
            watch.bar.update(1)
            if on_step is not None:
                on_step(state.step)
            boundary = state.step % cfg.checkpoint_every == 0 or state.step % steps_per_epoch == 0 or state.step == total
            if state.step % log_every == 0 or boundary:
                log_loss()
            if boundary and state.step < total:
                save(done=False)
            if stop.raised:
                if not math.isfinite(float(running)):
                    log_loss()  # raises: a diverged loss is not saved as progress
                save(done=False)
                watch.close()
                raise Interrupted(f"{stage.name}: interrupted at step {state.step} of {total}; progress saved, re-run to resume")
    log_loss()
    watch.bar.close()
    save(done=True)
    watch.close()
    seconds = state.elapsed + time.perf_counter() - started
    log(
        f"{stage.name}: {total - state.resumed_from} steps in {time.perf_counter() - started:.1f}s, final loss {state.history[-1][1]:.4f}"
    )
    return StageResult(stage.name, state.step, state.history, seconds, resumed_from=state.resumed_from)


# ----------------------------------------------------------------------------------------------- inference
@torch.no_grad()
def predict_logits(
    model: nn.Module,
    data: ImageSet,
    runtime: Runtime,
    batch_size: int | None = None,
    inputs: Tensor | None = None,
    limit: int | None = None,
) -> Tensor:
    """Logits (N, K) of ``model``, float32 on CPU, on ``data``'s images, or on ``inputs``: model-ready (normalised)
    tensors (N, C, H, W) such as ``autoencode``'s outputs, computed once and fed to every classifier.
    ``batch_size``: None picks ``runtime.inference_batch`` (per-image outputs do not depend on it)."""
    model.eval()
    shape = tuple(inputs.shape[1:]) if inputs is not None else (data.channels, data.size, data.size)
    batch_size = batch_size or runtime.inference_batch(shape)
    if inputs is None:
        source = _model_ready(data, batch_size, runtime, limit)
    else:
        source = (runtime.to_device(inputs[s : s + batch_size]) for s in range(0, len(inputs), batch_size))
    out = []
    for x in source:
        with runtime.autocast():
            out.append(model(x).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def autoencode(
    autoencoder: nn.Module, data: ImageSet, runtime: Runtime, batch_size: int | None = None, limit: int | None = None
) -> Tensor:
    """The autoencoder's raw outputs: normalised image space, not clipped, float32 (N, C, H, W) on CPU. This is what
    a classifier sees in the pipeline autoencoder -> classifier. ``batch_size`` as in ``predict_logits``."""
    autoencoder.eval()
    batch_size = batch_size or runtime.inference_batch((data.channels, data.size, data.size))
    out = []
    for x in _model_ready(data, batch_size, runtime, limit):
        with runtime.autocast():
            out.append(autoencoder(x).float().cpu())
    return torch.cat(out)


def to_pixels(data: ImageSet, raw: Tensor) -> Tensor:
    """Raw autoencoder outputs -> reconstructions in [0, 1] pixel units, clipped. (N, C, H, W) -> (N, C, H, W)."""
    return data.denormalize(raw).clamp(0, 1).contiguous()
