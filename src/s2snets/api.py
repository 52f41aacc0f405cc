"""S2SNets on your own classifier and data, in a notebook: pretrain, fine-tune, reconstruct, measure, plot, save.

    >>> import torch, s2snets
    >>> from torch.utils.data import TensorDataset
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16 * 16, 3))
    >>> data = TensorDataset(torch.rand(64, 1, 16, 16), torch.randint(0, 3, (64,)))
    >>> net = s2snets.S2SNet(classifier, preset="tiny")
    >>> net.pretrain(data, steps=4, batch_size=16, progress=False).steps
    4
    >>> net.finetune(data, steps=4, batch_size=16, progress=False).steps
    4
    >>> result = net.evaluate(data)
    >>> sorted(result.accuracy)
    ['finetuned', 'original', 'plain']

Every step runs on the pipeline's one training engine (``train.train_stage``): checkpoints in ``run_dir`` (a
temporary folder by default), exact resume, mixed precision on CUDA. The classifier is frozen and never changed; the
plain autoencoder is kept apart from the fine-tuned one, so the two can be compared.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from s2snets.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from s2snets.config import StageConfig, config_hash
from s2snets.data import TensorSet, as_tensor_set
from s2snets.errors import DataError, InputError, ModelError, is_count
from s2snets.metrics.lattice import band_amplitude, peak_amplitude, random_sign_floor
from s2snets.metrics.nmi import inter_nmi, nmi
from s2snets.metrics.pattern import ConstantPattern, constant_pattern
from s2snets.metrics.reconstruction import accuracy, reconstruction_error
from s2snets.models import build_segnet
from s2snets.runtime import Runtime, init_runtime
from s2snets.train import StageResult, autoencode, autoencoder_stage, finetune_stage, predict_logits, to_pixels, train_stage
from s2snets.zoo import input_space

log = logging.getLogger("s2snets")


@dataclass
class S2SNetResult:
    """The paper's measures for one classifier: accuracy (fractions) on originals, plain and fine-tuned
    reconstructions; nMI; the constant patterns of both autoencoders and their lattice amplitudes (pixel units)."""

    accuracy: dict[str, float]
    psnr: dict[str, float]
    nmi: dict[str, dict[str, float]]
    lattice: dict[str, dict[str, float]]
    period: int
    patterns: dict[str, ConstantPattern] = field(repr=False)
    examples: dict[str, Tensor] = field(repr=False)  # a few originals and reconstructions, pixels in [0, 1]

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "psnr": self.psnr, "nmi": self.nmi, "lattice": self.lattice, "period": self.period,
                "patterns": {k: p.to_dict() for k, p in self.patterns.items()}}  # fmt: skip

    def __repr__(self) -> str:
        a = self.accuracy
        return (
            f"S2SNetResult(top-1 original {a['original']:.1%}, plain {a['plain']:.1%}, fine-tuned {a['finetuned']:.1%}; "
            f"lattice amplitude (P={self.period}) plain {self.lattice['plain']['peak'] * 255:.2f}, fine-tuned "
            f"{self.lattice['finetuned']['peak'] * 255:.2f} grey levels)"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{k}</td><td>{100 * self.accuracy[k]:.2f} %</td><td>{self.psnr.get(k, math.nan):.2f}</td>"
            f"<td>{self.nmi.get(k, {}).get('inter_same_class', math.nan):.4f}</td>"
            f"<td>{self.lattice.get(k, {}).get('peak', math.nan) * 255:.2f}</td></tr>"
            for k in ("original", "plain", "finetuned")
        )
        return ("<table><tr><th></th><th>top-1</th><th>PSNR (dB)</th><th>inter nMI (same class)</th>"
                f"<th>lattice amplitude (grey levels)</th></tr>{rows}</table>")  # fmt: skip

    def plot(self):
        """Originals, plain and fine-tuned reconstructions, and the two constant patterns (a matplotlib Figure)."""
        from s2snets.report.figures import s2snet_figure

        return s2snet_figure(self)

    def save(self, folder: str | Path) -> Path:
        """``folder``/summary.json (the numbers) and result.safetensors (patterns and examples, content-hashed);
        ``S2SNetResult.load`` reads them."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {k: v for k, v in self.to_dict().items() if k != "patterns"}
        meta["pattern_summaries"] = {k: p.to_dict(maps=False) for k, p in self.patterns.items()}
        atomic_write_text(folder / "summary.json", json.dumps(meta, indent=1) + "\n")
        tensors = {f"example/{k}": v.contiguous() for k, v in self.examples.items()}
        for k, p in self.patterns.items():
            tensors[f"pattern/{k}/mean_difference"], tensors[f"pattern/{k}/constancy"] = p.mean_difference, p.constancy
        save_checkpoint(folder / "result.safetensors", tensors, {"kind": "s2snet-result"})
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> S2SNetResult:
        folder = Path(folder)
        meta = json.loads((folder / "summary.json").read_text())
        tensors, _ = load_checkpoint(folder / "result.safetensors")
        patterns = {}
        for k, summary in meta["pattern_summaries"].items():
            patterns[k] = ConstantPattern(tensors[f"pattern/{k}/mean_difference"], tensors[f"pattern/{k}/constancy"],
                                          summary["mean_constancy"], summary["constant_share"],
                                          {int(p): v for p, v in summary["lattice_energy"].items()})  # fmt: skip
        examples = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("example/")}
        return cls(meta["accuracy"], meta["psnr"], meta["nmi"], meta["lattice"], meta["period"], patterns, examples)


class S2SNet:
    """The S2SNets method on ``classifier`` (any ``nn.Module`` mapping (B, C, H, W) to logits (B, K); frozen).

    ``autoencoder``: a module with a ``decoder`` (a SegNet from ``s2snets.models``, ``s2snets.zoo.load_autoencoder()``,
    or the user's own: everything but its decoder is frozen while fine-tuning), or None to build a SegNet (``preset``: "small" for up to 64 px, "paper"
    above) when ``pretrain`` is called. Data everywhere: a ``Dataset``/``DataLoader`` of (image, label), or a pair
    (images, labels) of tensors or numpy arrays, in the classifier's input space; ``mean``/``std``: the
    standardisation those images carry (None: they are pixels in [0, 1]), for the measures in pixel units.
    """

    def __init__(self, classifier: nn.Module, autoencoder: nn.Module | None = None, *, mean=None, std=None,
                 preset: str | None = None, upsample: str = "unpool", device: str = "auto", run_dir: str | Path | None = None,
                 seed: int = 0):  # fmt: skip
        if not isinstance(classifier, nn.Module):
            raise InputError(f"classifier must be an nn.Module, got {type(classifier).__name__}")
        if autoencoder is not None and not isinstance(getattr(autoencoder, "decoder", None), nn.Module):
            raise InputError(
                "autoencoder needs a 'decoder' submodule (the part fine-tuning trains), e.g. a SegNet from s2snets.models"
            )
        self.classifier = classifier  # used frozen (``frozen``) and left as the user had it: mode and requires_grad
        self.plain = autoencoder
        self.finetuned: nn.Module | None = None
        self.mean, self.std, self.preset, self.upsample, self.seed = mean, std, preset, upsample, seed
        self.runtime: Runtime = init_runtime(device, "auto")
        self._tmp = None if run_dir else tempfile.TemporaryDirectory(prefix="s2snet-")
        self.run_dir = Path(run_dir or self._tmp.name)  # type: ignore[union-attr]

    # ------------------------------------------------------------------ the steps
    def pretrain(self, data, *, steps: int = 2000, batch_size: int = 64, lr: float = 3e-3, progress: bool = True) -> StageResult:
        """Train the autoencoder (MSE) on ``data``; builds a SegNet if there is none. Returns the stage's result."""
        _check_steps(steps)
        data = self._data(data)
        _not_bytes(data, "pretrain")  # 0...255 floats: refused before any step
        if self.plain is None:
            self.plain = self._build_autoencoder(data)
        self._check_shapes(data)
        cfg = StageConfig(
            epochs=1, max_steps=steps, batch_size=min(batch_size, len(data)), lr=lr, warmup_steps=min(200, steps // 4)
        )
        key = config_hash("api-pretrain", cfg, self.seed, fingerprint(self.plain, data.images, data.labels))
        return self._train(autoencoder_stage("pretrain", self.plain), data, cfg, "pretrain", key, progress)

    def finetune(self, data, *, steps: int = 500, batch_size: int = 64, lr: float = 1e-3, progress: bool = True) -> StageResult:
        """Fine-tune a copy of the autoencoder's decoder through the frozen classifier (cross-entropy on ``data``)."""
        _check_steps(steps)
        data = self._data(data)
        if self.plain is None:
            raise InputError(
                "there is no autoencoder: call pretrain(data) first or pass autoencoder= (e.g. s2snets.zoo.load_autoencoder())"
            )
        _not_bytes(data, "finetune")
        self.check_input_space(data)
        self._check_shapes(data)
        self.finetuned = copy.deepcopy(self.plain)
        cfg = StageConfig(epochs=1, max_steps=steps, batch_size=min(batch_size, len(data)), lr=lr)
        key = config_hash("api-finetune", cfg, self.seed, fingerprint(self.plain, self.classifier, data.images, data.labels))
        with frozen(self.classifier):
            return self._train(finetune_stage("finetune", self.finetuned, self.classifier), data, cfg, "finetune", key, progress)

    @torch.no_grad()
    def reconstruct(self, images, which: str = "finetuned") -> Tensor:
        """Reconstructions (N, C, H, W) in the classifier's input space by the ``which`` ("finetuned" | "plain")
        autoencoder, for images in that space: a tensor or array (N, C, H, W) or (N, H, W), read as the data of
        ``pretrain`` is (uint8 divided by 255, the same checks)."""
        model = self._autoencoder(which)
        if not hasattr(images, "shape") or len(images.shape) < 3:
            raise InputError(f"images must be a tensor or array (N, C, H, W) or (N, H, W), got {_shape_of(images)}")
        x = as_tensor_set(
            (images, torch.zeros(len(images), dtype=torch.long)), mean=self.mean, std=self.std, name="images"
        ).images
        return torch.cat([model(self.runtime.to_device(x[s : s + 256].float())).float().cpu() for s in range(0, len(x), 256)])

    def evaluate(self, data, *, period: int = 2, nmi_pairs: int = 500, examples: int = 8) -> S2SNetResult:
        """Accuracy on originals, plain and fine-tuned reconstructions; PSNR, nMI, constant patterns and their lattice
        amplitudes with noise floors (``metrics.lattice``), in pixel units."""
        data = self._data(data)
        originals = _original_pixels(data)
        models = {"plain": self._autoencoder("plain"), "finetuned": self._autoencoder("finetuned")}
        self._check_shapes(data)
        with frozen(self.classifier):
            return self._evaluate(data, originals, models, period, nmi_pairs, examples)

    def _evaluate(
        self, data: TensorSet, originals: Tensor, models: dict, period: int, nmi_pairs: int, examples: int
    ) -> S2SNetResult:
        top1 = {"original": accuracy(predict_logits(self.classifier, data, self.runtime), data.labels, data.num_classes)["top1"]}
        out: dict[str, Any] = {"psnr": {}, "nmi": {"original": {"inter_same_class": float(inter_nmi(originals, data.labels, nmi_pairs).mean())}},
                               "lattice": {}, "patterns": {}, "examples": {"original": originals[:examples]}}  # fmt: skip
        for name, model in models.items():
            raw = autoencode(model, data, self.runtime)
            recon = to_pixels(data, raw)
            top1[name] = accuracy(predict_logits(self.classifier, data, self.runtime, inputs=raw), data.labels, data.num_classes)[
                "top1"
            ]
            out["psnr"][name] = reconstruction_error(originals, recon)["psnr"]
            out["nmi"][name] = {
                "intra": float(nmi(originals, recon).mean()),
                "inter_same_class": float(inter_nmi(recon, data.labels, nmi_pairs).mean()),
            }
            out["patterns"][name] = constant_pattern(originals, recon, (period,))
            errors = (recon - originals).double().mean(1)
            out["lattice"][name] = {
                "peak": float(peak_amplitude(errors.mean(0), period)), "peak_floor": random_sign_floor(errors, lambda m: peak_amplitude(m, period)),
                "band": float(band_amplitude(errors.mean(0), period)), "band_floor": random_sign_floor(errors, lambda m: band_amplitude(m, period)),
            }  # fmt: skip
            out["examples"][name] = recon[:examples]
        return S2SNetResult(top1, out["psnr"], out["nmi"], out["lattice"], period, out["patterns"], out["examples"])

    # ------------------------------------------------------------------ checks
    def check_input_space(self, data: TensorSet) -> None:
        """Warn when the data does not look like what the autoencoder was trained on: a zoo autoencoder expects
        Fashion-MNIST standardised with the zoo's mean and std (``zoo.input_space()``); fed [0, 1] pixels it
        reconstructs at about 10 dB. The warning says what to pass instead."""
        x = data.images
        low, high = float(x.min()), float(x.max())
        standardised = low < -0.05 or high > 1.05
        zoo_like = getattr(self.plain, "zoo_entry", None) is not None  # recorded by the zoo's loader, not guessed
        if zoo_like and not standardised:
            space = input_space()
            log.warning(
                "the data lie in [%.2f, %.2f], like [0, 1] pixels, but the zoo autoencoder expects them standardised: "
                "pass (x - %.4f) / %.4f and mean=%.4f, std=%.4f to S2SNet", low, high, space["mean"][0], space["std"][0],
                space["mean"][0], space["std"][0],
            )  # fmt: skip

    def _check_shapes(self, data: TensorSet) -> None:
        """One batch through the autoencoder and the classifier before any training: shapes and outputs that fit."""
        x = self.runtime.to_device(data.images[:2])
        with torch.no_grad(), frozen(self.classifier), _mode(self.plain, False):
            try:
                recon = self.plain.to(self.runtime.device)(x)  # type: ignore[union-attr]
            except RuntimeError as exc:
                raise ModelError(
                    f"the autoencoder cannot take images of shape {tuple(x.shape[1:])}: {str(exc).splitlines()[0]}"
                ) from None
            if not isinstance(recon, Tensor) or recon.shape != x.shape:
                got = tuple(recon.shape) if isinstance(recon, Tensor) else type(recon).__name__
                raise ModelError(f"the autoencoder maps {tuple(x.shape)} to {got}; it must reconstruct the same shape")
            try:
                logits = self.classifier.to(self.runtime.device)(recon)
            except RuntimeError as exc:
                raise ModelError(
                    f"the classifier cannot take images of shape {tuple(x.shape[1:])}: {str(exc).splitlines()[0]}"
                ) from None
        if not isinstance(logits, Tensor) or logits.ndim != 2 or logits.shape[1] < data.num_classes:
            got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
            raise ModelError(
                f"the classifier returned {got} for a batch of 2; it must return logits (2, K) with K >= {data.num_classes} "
                f"classes (the labels run from {int(data.labels.min())} to {int(data.labels.max())})"
            )

    # ------------------------------------------------------------------ helpers
    def _data(self, data) -> TensorSet:
        return as_tensor_set(data, mean=self.mean, std=self.std)

    def _build_autoencoder(self, data: TensorSet) -> nn.Module:
        preset = self.preset or ("small" if data.size <= 64 else "paper")
        torch.manual_seed(self.seed)
        model = build_segnet(preset, data.channels, self.upsample)
        if data.size % model.min_input_size():
            raise InputError(
                f"a '{preset}' SegNet needs image sides divisible by {model.min_input_size()}, got {data.size}; pad or resize the images"
            )
        return model

    def _autoencoder(self, which: str) -> nn.Module:
        model = {"plain": self.plain, "finetuned": self.finetuned}.get(which, "?")
        if model == "?":
            raise InputError(f"which must be 'plain' or 'finetuned', got {which!r}")
        if model is None:
            raise InputError(
                f"there is no {which} autoencoder yet: call {'pretrain' if which == 'plain' else 'finetune'}(data) first"
            )
        return model.to(self.runtime.device).eval()  # type: ignore[union-attr]

    def _train(self, stage, data: TensorSet, cfg: StageConfig, name: str, key: str, progress: bool) -> StageResult:
        return train_stage(stage, data, cfg, seed=self.seed, checkpoint=self.run_dir / f"{name}.safetensors", key=key,
                           runtime=self.runtime, progress=progress, log=log.info, workers=0)  # fmt: skip


FinetuneResult = StageResult  # 0.3's name for what ``finetune_decoder`` returns: one result type for one fine-tuning


def fingerprint(*parts: Any) -> str:
    """sha256 of what a stage's result depends on: tensors by their bytes, modules by their class and state (names,
    shapes, dtypes, values), anything else by its JSON form. Reusing a run_dir with other data or another model of
    the same shape then trains again instead of returning the old result."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, nn.Module):
            h.update(type(part).__qualname__.encode())
            for name, value in part.state_dict().items():
                h.update(name.encode())
                _update_tensor(h, value)
        elif isinstance(part, Tensor):
            _update_tensor(h, part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def _update_tensor(h, value: Tensor) -> None:
    value = value.detach().cpu().contiguous().reshape(-1)  # 1-D: a 0-d tensor has no byte view
    h.update(f"{tuple(value.shape)}{value.dtype}".encode())
    h.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """``model`` in eval mode with every parameter's requires_grad off for the duration, then as it was: the
    user's classifier is used, never left changed."""
    mode = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield model
    finally:
        model.train(mode)
        for p, flag in flags:
            p.requires_grad_(flag)


def _shape_of(x) -> str:
    return f"shape {tuple(x.shape)}" if hasattr(x, "shape") else f"a {type(x).__name__}"


def _check_steps(steps) -> None:
    # The engine reads max_steps = 0 as "no limit: one epoch"; a user who asks for 0 steps means none.
    if not is_count(steps):
        raise InputError(f"steps must be an int >= 1, got {steps!r}")


@contextlib.contextmanager
def _mode(model: nn.Module | None, training: bool) -> Iterator[None]:
    """``model`` in train (or eval) mode for the duration, then as it was."""
    before = model.training if model is not None else None
    if model is not None:
        model.train(training)
    try:
        yield
    finally:
        if model is not None and before is not None:
            model.train(before)


def _not_bytes(data: TensorSet, step: str) -> None:
    """Training refuses images that are 0...255 numbers as floats (no standardisation reaches 20): the engine would
    train on them for minutes before ``evaluate`` refused them. (Standardised images without mean/std train as
    given; ``evaluate`` asks for their mean/std.)"""
    high = float(data.denormalize(data.images[:1024]).abs().max())
    if high > 20:
        raise DataError(
            f"{step}: the images reach {high:.4g}, like 0...255 pixels stored as floats; divide them by 255 (or pass "
            "uint8 tensors, which are read as 0...255) before training"
        )


def _original_pixels(data: TensorSet, step: str = "evaluate") -> Tensor:
    """The images in pixel units, (N, C, H, W) in [0, 1]. DataError when they lie well outside (a mean/std missing or
    wrong): the measures would clip them to [0, 1] and report numbers about other images. (Within 0.05: the
    overshoot of a bicubic resize, clipped as the reconstructions are.)"""
    pixels = data.denormalize(data.images)
    low, high = (float(v) for v in torch.aminmax(pixels))
    if not (low >= -0.05 and high <= 1.05):
        channels = data.images.shape[1]
        given = (
            "no mean/std was given, so they must be pixels in [0, 1] (divide 0...255 images by 255)"
            if data.mean == (0.0,) * channels and data.std == (1.0,) * channels
            else f"un-standardised with mean={data.mean}, std={data.std}"
        )
        raise DataError(
            f"{step}: the images lie in [{low:.3g}, {high:.3g}] in pixel units, not [0, 1]; {given}. Pass S2SNet the "
            "mean= and std= they were standardised with"
        )
    return pixels.clamp(0, 1).contiguous()


def finetune_decoder(classifier: nn.Module, autoencoder: nn.Module, data, *, steps: int = 500, lr: float = 1e-3,
                     batch_size: int = 64, seed: int = 0, progress: bool = True, mean=None, std=None) -> StageResult:  # fmt: skip
    """Fine-tune ``autoencoder``'s decoder in place through the frozen ``classifier`` (the engine's fine-tuning stage):
    ``S2SNet(classifier, autoencoder).finetune(...)`` without keeping the plain autoencoder apart, and returning the
    same ``StageResult``. The order is S2SNet's, (classifier, autoencoder); 0.3's (autoencoder, classifier) is refused
    with what to swap, never run the wrong way round."""
    if isinstance(getattr(classifier, "decoder", None), nn.Module) and not isinstance(
        getattr(autoencoder, "decoder", None), nn.Module
    ):
        raise InputError(
            "finetune_decoder takes (classifier, autoencoder, data) since 0.4, the order of S2SNet; the first argument "
            "has a decoder and the second has none: swap them"
        )
    net = S2SNet(classifier, autoencoder, mean=mean, std=std, seed=seed)
    result = net.finetune(data, steps=steps, batch_size=batch_size, lr=lr, progress=progress)
    autoencoder.load_state_dict(net.finetuned.state_dict())  # type: ignore[union-attr]
    return result
