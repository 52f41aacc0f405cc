"""S2SNets on your own objects: fine-tune an autoencoder's decoder through *your* frozen classifier, in a notebook.

    >>> import torch, s2snets
    >>> from torch.utils.data import TensorDataset
    >>> from s2snets.models import build_segnet
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> autoencoder = build_segnet("tiny", in_channels=1)
    >>> classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 3))
    >>> data = TensorDataset(torch.randn(32, 1, 16, 16), torch.randint(0, 3, (32,)))
    >>> result = s2snets.finetune_decoder(autoencoder, classifier, data, steps=4, batch_size=8, progress=False)
    >>> result.steps
    4

The engine behind ``s2snets replicate`` (``train.train_stage``) adds what a long run needs (checkpoints, exact
resume, DDP); this function is the same objective for data you already hold: a ``Dataset`` or a ``DataLoader`` of
``(image, label)`` with images already in the space the classifier expects.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from s2snets.config import StageConfig
from s2snets.train import FinetuneLoss, lr_at, make_optimizer

log = logging.getLogger("s2snets")


@dataclass
class FinetuneResult:
    """What ``finetune_decoder`` did: steps, seconds and the loss history [(step, mean loss since the last entry)]."""

    steps: int
    seconds: float
    history: list[tuple[int, float]] = field(default_factory=list)

    @property
    def final_loss(self) -> float:
        return self.history[-1][1] if self.history else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "seconds": self.seconds, "final_loss": self.final_loss, "history": self.history}

    def __repr__(self) -> str:
        first = f"{self.history[0][1]:.4f} -> " if len(self.history) > 1 else ""
        return f"FinetuneResult(steps={self.steps}, loss {first}{self.final_loss:.4f}, {self.seconds:.1f}s)"

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><td>{s}</td><td>{v:.4f}</td></tr>" for s, v in self.history[-10:])
        return (
            f"<b>decoder fine-tuned</b>: {self.steps} steps in {self.seconds:.1f}s"
            f"<table><tr><th>step</th><th>classifier loss</th></tr>{rows}</table>"
        )


def _batches(data: Dataset | DataLoader, batch_size: int, seed: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless (image, label) batches: a DataLoader as given, a Dataset shuffled with a seeded generator."""
    if isinstance(data, DataLoader):
        loader = data
    else:
        if not hasattr(data, "__getitem__") or not hasattr(data, "__len__"):
            raise TypeError(f"data must be a torch Dataset or DataLoader of (image, label), got {type(data).__name__}")
        if len(data) == 0:  # type: ignore[arg-type]
            raise ValueError("data is empty")
        loader = DataLoader(data, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
    while True:
        empty = True
        for batch in loader:
            if not isinstance(batch, list | tuple) or len(batch) < 2:
                raise TypeError("each item of data must be (image, label); got a single tensor")
            empty = False
            yield batch[0], batch[1]
        if empty:
            raise ValueError("data yielded no batch")


def finetune_decoder(
    autoencoder: nn.Module,
    classifier: nn.Module,
    data: Dataset | DataLoader,
    *,
    steps: int = 500,
    lr: float = 1e-3,
    batch_size: int = 64,
    optimizer: str = "adam",
    seed: int = 0,
    progress: bool = True,
    log_every: int = 10,
) -> FinetuneResult:
    """Train only ``autoencoder.decoder`` so that the frozen ``classifier`` classifies its reconstructions well.

    ``autoencoder``: a module with a ``decoder`` submodule, ``forward(x) -> reconstruction`` (a SegNet from
    ``s2snets.models.build_segnet`` or ``s2snets.zoo.load_autoencoder``); its encoder is frozen (eval mode, no
    gradients). ``classifier``: any ``nn.Module`` mapping images (B, C, H, W) to logits (B, K); it is frozen and
    kept in eval mode. ``data``: a ``Dataset`` or ``DataLoader`` of ``(image (C, H, W), label)``. Everything runs
    on the device of the autoencoder's parameters. Returns the loss history; the autoencoder is changed in place.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"lr must be a positive number, got {lr}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    decoder = getattr(autoencoder, "decoder", None)
    if not isinstance(decoder, nn.Module):
        raise TypeError("autoencoder needs a 'decoder' submodule (the part fine-tuning trains), e.g. a SegNet")
    if not hasattr(autoencoder, "freeze_encoder"):  # a user's autoencoder: freeze everything but the decoder
        decoder_params = {id(p) for p in decoder.parameters()}
        for p in autoencoder.parameters():
            p.requires_grad_(id(p) in decoder_params)
    device = next(autoencoder.parameters()).device
    classifier.to(device)
    objective = FinetuneLoss(autoencoder, classifier)
    params = [p for p in decoder.parameters() if p.requires_grad]
    cfg = StageConfig(epochs=0, max_steps=steps, batch_size=batch_size, lr=lr, optimizer=optimizer, warmup_steps=0)
    opt = make_optimizer(params, cfg)
    torch.manual_seed(seed)
    objective.train()
    decoder_modules = set(decoder.modules())
    for m in autoencoder.modules():  # the frozen part keeps its batch-norm statistics
        if m is not autoencoder and m not in decoder_modules and not any(c in decoder_modules for c in m.modules()):
            m.eval()
    history: list[tuple[int, float]] = []
    running, count, started = 0.0, 0, time.perf_counter()
    source = _batches(data, batch_size, seed)
    with tqdm(total=steps, desc="finetune decoder", disable=not progress, unit="step") as bar:
        for step in range(steps):
            x, y = next(source)
            for group in opt.param_groups:
                group["lr"] = lr_at(step, steps, cfg)
            loss = objective(x.to(device).float(), y.to(device).long())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the loss became {float(loss.detach())} at step {step}; lower lr (now {lr})")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            running, count = running + float(loss.detach()), count + 1
            bar.update(1)
            if (step + 1) % log_every == 0 or step + 1 == steps:
                history.append((step + 1, running / count))
                bar.set_postfix(loss=f"{history[-1][1]:.4f}")
                running, count = 0.0, 0
    autoencoder.eval()
    result = FinetuneResult(steps, time.perf_counter() - started, history)
    log.info("%r", result)
    return result
