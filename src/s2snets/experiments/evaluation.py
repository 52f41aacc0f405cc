"""One streamed pass over the test images: what every classifier says about every decoder's reconstructions.

The pass keeps, batch by batch, so that its memory does not grow with the test split (50,000 ImageNet images at
224 px are 7.5 GB as uint8): the classifiers' top-5 classes on originals and on the reconstructions they judge,
running pixel statistics (squared error, constant patterns), per-image nMI, and only the images that the
inter-image nMI pairs and the figures use. Summaries are computed from what it kept (``replicate``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm import tqdm

from s2snets.data import in_order
from s2snets.metrics.nmi import nmi, quantize, sample_pairs
from s2snets.metrics.pattern import ConstantPattern, PatternAccumulator
from s2snets.metrics.reconstruction import figure_indices, top_classes
from s2snets.train import to_pixels


@dataclass
class Kept:
    """Whole images kept for later measures: the nMI pairs' (as 256 levels when exact) and the figure's (floats)."""

    pairs: dict[bool, Tensor]  # same class -> (P, 2) indices into the evaluation set
    slot: Tensor  # (N,): index into the kept nMI images, -1 if not kept
    shown_slot: Tensor  # (N,): index into the figure images, -1 if not shown
    as_levels: bool
    images: dict[str, Tensor] = field(default_factory=dict)
    shown: dict[str, Tensor] = field(default_factory=dict)

    def add(self, name: str, index: Tensor, images: Tensor) -> None:
        """Copy the batch's needed images (pixels in [0, 1], or uint8 originals) into the kept sets."""
        rows = self.slot[index] >= 0
        if rows.any():
            store = images if images.dtype == torch.uint8 or not self.as_levels else quantize(images, 256).to(torch.uint8)
            if name not in self.images:
                self.images[name] = torch.empty(int((self.slot >= 0).sum()), *store.shape[1:], dtype=store.dtype)
            self.images[name][self.slot[index[rows]]] = store[rows]
        rows = self.shown_slot[index] >= 0
        if rows.any():
            if name not in self.shown:
                self.shown[name] = torch.empty(int((self.shown_slot >= 0).sum()), *images.shape[1:])
            scale = 255.0 if images.dtype == torch.uint8 else 1.0
            self.shown[name][self.shown_slot[index[rows]]] = images[rows].float() / scale


@dataclass
class Evaluation:
    """What the pass kept. ``top[(classifier, decoder)]``: (N, k) classes; decoder "original" = the originals."""

    labels: Tensor
    top: dict[tuple[str, str], Tensor]
    squared: dict[str, float]
    patterns: dict[str, ConstantPattern]
    intra_nmi: dict[str, Tensor]
    kept: Kept


def evaluation_pass(ctx, data, classifiers: dict[str, nn.Module], decoders: dict[str, nn.Module],
                    judges: dict[str, list[str]], measured: set[str]) -> Evaluation:  # fmt: skip
    """One pass over ``data``. ``judges[d]``: the classifiers whose top classes on decoder d's reconstructions are
    kept (every classifier judges the originals); ``measured``: the decoders whose patterns, nMI and kept images the
    summaries need (every decoder's squared error is kept)."""
    cfg, rt, m = ctx.config, ctx.runtime, ctx.config.measure
    labels = data.labels
    pairs = {same: sample_pairs(labels, m.nmi_pairs, cfg.seed, same) for same in (True, False)}
    needed = torch.cat([pairs[True].flatten(), pairs[False].flatten()]).unique()
    slot = torch.full((len(data),), -1, dtype=torch.long)
    slot[needed] = torch.arange(len(needed))
    shown = figure_indices(labels, m.figure_images)
    shown_slot = torch.full((len(data),), -1, dtype=torch.long)
    shown_slot[shown] = torch.arange(len(shown))
    kept = Kept(pairs, slot, shown_slot, m.nmi_levels == 256)
    periods = tuple(p for p in m.periods if p <= data.size)
    top: dict[tuple[str, str], list[Tensor]] = {}
    squared = dict.fromkeys(decoders, 0.0)
    accumulators = {d: PatternAccumulator(periods) for d in measured}
    intra: dict[str, list[Tensor]] = {d: [] for d in measured}
    for model in [*decoders.values(), *classifiers.values()]:
        model.eval()
    seen = 0
    bar = tqdm(total=len(data), desc="evaluation", unit="image", disable=not ctx.progress or not rt.is_main, leave=False)
    with torch.no_grad():
        for images, _ in in_order(data, 512, cfg.data.workers, rt.device.type == "cuda"):
            index = torch.arange(seen, seen + len(images))
            seen += len(images)
            x = data.normalize(rt.to_device(images))
            originals = images.float() / 255.0
            kept.add("original", index, images)
            _judge(rt, classifiers, list(classifiers), x, "original", top)
            for d, decoder in decoders.items():
                with rt.autocast():
                    raw = rt.to_device(decoder(x).float())  # the classifiers' input, as in the pipeline
                _judge(rt, classifiers, judges[d], raw, d, top)
                recon = to_pixels(data, raw.cpu())
                squared[d] += float((originals.double() - recon.double()).square().sum())
                if d in measured:
                    accumulators[d].update(originals, recon)
                    intra[d].append(nmi(originals, recon, m.nmi_levels, m.nmi_average))
                    kept.add(d, index, recon)
            bar.update(len(images))
    bar.close()
    return Evaluation(
        labels,
        {k: torch.cat(v) for k, v in top.items()},
        squared,
        {d: acc.result() for d, acc in accumulators.items()},
        {d: torch.cat(v) for d, v in intra.items()},
        kept,
    )


def _judge(rt, classifiers: dict[str, nn.Module], names: list[str], x: Tensor, decoder: str, top: dict) -> None:
    for b in names:
        with rt.autocast():
            top.setdefault((b, decoder), []).append(top_classes(classifiers[b](x).float()).cpu())


def inter_nmi_of(evaluation: Evaluation, name: str, same: bool, levels: int, average: str) -> float:
    """Mean nMI of the kept pairs of images of ``name`` (same class, or different classes)."""
    kept = evaluation.kept
    idx = kept.slot[kept.pairs[same]]
    return float(nmi(kept.images[name][idx[:, 0]], kept.images[name][idx[:, 1]], levels, average).mean())
