"""The paper, end to end: classifiers, autoencoder, decoder fine-tuning per classifier, then every measure.

Writes ``metrics/results.json`` (all numbers), ``metrics/arrays.safetensors`` (the tensors figures are drawn from)
and ``figures/*.png`` into the run directory.
"""

from __future__ import annotations

import dataclasses
import math
import time

import torch
from torch import Tensor
from tqdm import tqdm

from s2snets import __version__
from s2snets.checkpoint import save_checkpoint
from s2snets.config import RunConfig, config_hash, to_dict, validate
from s2snets.data import load_split
from s2snets.experiments.stages import (
    Context,
    Countdown,
    Trained,
    finetune_decoder,
    plan_text,
    pretrain_autoencoder,
    train_classifier,
)
from s2snets.metrics.gradients import gradient_probe
from s2snets.metrics.lint import lint_model
from s2snets.metrics.nmi import nmi, quantize, sample_pairs
from s2snets.metrics.pattern import PatternAccumulator
from s2snets.metrics.transfer import check_total_order, concept_lattice, rrc, suffices
from s2snets.rundir import RunDir
from s2snets.runtime import Runtime
from s2snets.stream import in_order
from s2snets.train import to_pixels


def accuracy(logits: Tensor, labels: Tensor, num_classes: int) -> dict:
    """Top-1, top-5 (top-k with k = min(5, K)) and per-class top-1 accuracy. (N, K), (N,) -> dict of floats."""
    return accuracy_of_top(top_classes(logits), labels, num_classes)


def top_classes(logits: Tensor) -> Tensor:
    """The min(5, K) highest-scoring classes per row, best first. (N, K) -> int64 (N, min(5, K))."""
    return logits.topk(min(5, logits.shape[1]), dim=1).indices


def accuracy_of_top(top: Tensor, labels: Tensor, num_classes: int) -> dict:
    """``accuracy`` from ``top_classes`` (what a streamed evaluation keeps instead of N x K logits)."""
    hit1 = top[:, 0] == labels
    per_class = [float(hit1[labels == c].float().mean()) if (labels == c).any() else float("nan") for c in range(num_classes)]
    return {
        "top1": float(hit1.float().mean()),
        "top5": float((top == labels[:, None]).any(1).float().mean()),
        "per_class": per_class,
    }


def figure_indices(labels: Tensor, n: int) -> Tensor:
    """``n`` image indices spread across the classes: the first image of each class, then the second, ... (N,) -> (n,)."""
    per_class = [torch.nonzero(labels == c).flatten().tolist() for c in sorted(set(labels.tolist()))]
    picked: list[int] = []
    for rank in range(max((len(p) for p in per_class), default=0)):
        picked += [p[rank] for p in per_class if rank < len(p)]
        if len(picked) >= n:
            break
    return torch.tensor(picked[:n], dtype=torch.long)


def reconstruction_error(originals: Tensor, reconstructions: Tensor) -> dict:
    """MSE and PSNR (dB, peak 1) in [0, 1] pixel units."""
    mse = float((originals.float() - reconstructions.float()).square().mean())
    return {"mse": mse, "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")}


def load_context(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool) -> Context:
    train = load_split(config.data, "train", config.seed)
    # The models see test images standardised as they saw training images (not with the test split's own statistics).
    test = dataclasses.replace(load_split(config.data, "test", config.seed), mean=train.mean, std=train.std)
    return Context(config, run, runtime, train, test, progress)


def replicate(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool = True) -> dict:
    """Run (or resume) every stage of the paper's pipeline and measure it. Returns the results dict."""
    validate(config)  # a config built in Python gets the same checks as one read from TOML, before any work
    with run.logging():
        return _replicate(config, run, runtime, progress)


def _replicate(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool) -> dict:
    started = time.perf_counter()
    run.write_config(config)
    ctx = load_context(config, run, runtime, progress)
    ctx.say(
        f"data: {ctx.train.name} {len(ctx.train)} train / {ctx.test.name} {len(ctx.test)} test images, "
        f"{ctx.train.channels}x{ctx.train.size}x{ctx.train.size}"
    )
    ctx.say(plan_text(ctx))
    classifiers = {name: train_classifier(ctx, name, config.classifier_downsample) for name in config.classifiers}
    plain = pretrain_autoencoder(ctx)
    finetuned, countdown = {}, Countdown(len(classifiers))
    for name, clf in classifiers.items():
        finetuned[name] = finetune_decoder(ctx, plain, clf, config.autoencoder.upsample)
        ctx.say(f"fine-tuned the decoder through {name} {countdown.tick()}")
    key = config_hash(
        "evaluate",
        __version__,
        config.measure,
        [c.key for c in classifiers.values()],
        plain.key,
        [f.key for f in finetuned.values()],
        ctx.data_key,
    )
    previous = run.read_json("results")
    if previous and previous.get("key") == key and run.metrics("arrays").with_suffix(".safetensors").is_file():
        ctx.say("evaluation: finished earlier with the same inputs, skipped")
        return previous
    results = evaluate(ctx, classifiers, plain, finetuned)
    results["key"] = key
    results["seconds_total"] = time.perf_counter() - started
    if runtime.is_main:
        run.write_json("results", results)
    return results


def evaluate(ctx: Context, classifiers: dict[str, Trained], plain: Trained, finetuned: dict[str, Trained]) -> dict:
    """Every measure of the paper in one pass over the test images, batch by batch, so memory does not grow with the
    test split (50,000 ImageNet images at 224 px are 7.5 GB as uint8): the classifiers' top-5 classes, running
    pixel statistics (PSNR, constant patterns), per-image nMI, and only the images that the inter-image nMI pairs
    and the figures use."""
    cfg, rt, m = ctx.config, ctx.runtime, ctx.config.measure
    data = ctx.test.head(m.eval_limit, seed=cfg.seed)
    names = list(classifiers)
    labels = data.labels
    k = data.num_classes
    ctx.say(f"evaluation on {len(data)} test images")
    decoders = {"plain": plain.model, **{a: finetuned[a].model for a in names}}
    for model in [*decoders.values(), *(c.model for c in classifiers.values())]:
        model.eval()
    periods = tuple(p for p in m.periods if p <= data.size)

    # The images that are needed whole: the inter-image nMI pairs (sampled from the labels alone, as before) and
    # the figure's. Reconstructions are kept as their nMI levels where that is exact (256 levels), else as floats.
    pairs = {same: sample_pairs(labels, m.nmi_pairs, cfg.seed, same) for same in (True, False)}
    shown = figure_indices(labels, m.figure_images)
    needed = torch.cat([pairs[True].flatten(), pairs[False].flatten()]).unique()
    slot = torch.full((len(data),), -1, dtype=torch.long)
    slot[needed] = torch.arange(len(needed))
    shown_slot = torch.full((len(data),), -1, dtype=torch.long)
    shown_slot[shown] = torch.arange(len(shown))
    as_levels = m.nmi_levels == 256
    kept: dict[str, Tensor] = {}
    kept_shown: dict[str, Tensor] = {}
    top: dict[tuple[str, str], list[Tensor]] = {}
    intra: dict[str, list[Tensor]] = {d: [] for d in decoders}
    squared: dict[str, float] = dict.fromkeys(decoders, 0.0)
    accumulators = {d: PatternAccumulator(periods) for d in decoders}

    def keep(name: str, index: Tensor, images: Tensor) -> None:
        """Copy the batch's needed images (pixels in [0, 1], or uint8 originals) into the kept sets."""
        rows = slot[index] >= 0
        if rows.any():
            store = images if images.dtype == torch.uint8 or not as_levels else quantize(images, 256).to(torch.uint8)
            if name not in kept:
                kept[name] = torch.empty(len(needed), *store.shape[1:], dtype=store.dtype)
            kept[name][slot[index[rows]]] = store[rows]
        rows = shown_slot[index] >= 0
        if rows.any():
            if name not in kept_shown:
                kept_shown[name] = torch.empty(len(shown), *images.shape[1:])
            kept_shown[name][shown_slot[index[rows]]] = images[rows].float() / (255.0 if images.dtype == torch.uint8 else 1.0)

    batch_size, seen = 512, 0
    bar = tqdm(total=len(data), desc="evaluation", unit="image", disable=not ctx.progress or not rt.is_main, leave=False)
    with torch.no_grad():
        for images, _ in in_order(data, batch_size, cfg.data.workers, rt.device.type == "cuda"):
            index = torch.arange(seen, seen + len(images))
            seen += len(images)
            x = data.normalize(rt.to_device(images))
            originals = images.float() / 255.0
            keep("original", index, images)
            for b in names:
                with rt.autocast():
                    top.setdefault((b, "original"), []).append(top_classes(classifiers[b].model(x).float()).cpu())
            for d, decoder in decoders.items():
                with rt.autocast():
                    raw = rt.to_device(decoder(x).float())  # the classifiers' input, as in the pipeline
                    for b in names:
                        top.setdefault((b, d), []).append(top_classes(classifiers[b].model(raw).float()).cpu())
                recon = to_pixels(data, raw.cpu())
                squared[d] += float((originals.double() - recon.double()).square().sum())
                accumulators[d].update(originals, recon)
                intra[d].append(nmi(originals, recon, m.nmi_levels, m.nmi_average))
                keep(d, index, recon)
            bar.update(len(images))
    bar.close()

    acc: dict = {}
    transfer = torch.zeros(len(names), len(names), dtype=torch.float64)
    for j, b in enumerate(names):
        acc[b] = {
            "original": accuracy_of_top(torch.cat(top[(b, "original")]), labels, k),
            "plain": accuracy_of_top(torch.cat(top[(b, "plain")]), labels, k),
        }
        for i, a in enumerate(names):
            a_acc = accuracy_of_top(torch.cat(top[(b, a)]), labels, k)
            transfer[i, j] = a_acc["top1"]
            if a == b:
                acc[b]["finetuned"] = a_acc
    original_acc = torch.tensor([acc[b]["original"]["top1"] for b in names], dtype=torch.float64)
    rrc_matrix = rrc(transfer, original_acc)
    relation = suffices(rrc_matrix, m.rrc_threshold)
    order = check_total_order(relation, names)
    lattice = concept_lattice(relation, names)

    def inter(name: str, same: bool) -> float:
        idx = slot[pairs[same]]
        return float(nmi(kept[name][idx[:, 0]], kept[name][idx[:, 1]], m.nmi_levels, m.nmi_average).mean())

    def nmi_of(name: str) -> dict:
        out = {"inter_same_class": inter(name, True), "inter_cross_class": inter(name, False)}
        if name != "original":
            out["intra"] = float(torch.cat(intra[name]).mean())
        return out

    nmi_values = {name: nmi_of(name) for name in ["original", *decoders]}
    pixels = len(data) * data.channels * data.size * data.size

    def psnr(d: str) -> dict:
        mse = squared[d] / pixels
        return {"mse": mse, "psnr": 10 * math.log10(1.0 / mse) if mse > 0 else float("inf")}

    patterns = {d: acc.result() for d, acc in accumulators.items()}
    probe_set = data.head(m.probe_images, seed=cfg.seed).load()
    probe_x = rt.to_device(probe_set.normalize(probe_set.images))
    probes = {b: gradient_probe(classifiers[b].model, probe_x, probe_set.labels.to(rt.device), periods) for b in names}
    example = torch.zeros(1, data.channels, data.size, data.size)
    lints = {b: lint_model(_cpu_copy(classifiers[b].model), example, b) for b in names}
    lints["autoencoder"] = lint_model(_cpu_copy(plain.model), example, f"segnet-{cfg.autoencoder.upsample}")

    stages = {
        t.result.name: {
            "steps": t.result.steps,
            "seconds": t.result.seconds,
            "final_loss": t.result.final_loss,
            "skipped": t.result.skipped,
            "history": t.result.history,
        }
        for t in [*classifiers.values(), plain, *finetuned.values()]
    }
    results = {
        "version": __version__,
        "config": to_dict(cfg),
        "runtime": rt.describe(),
        "dataset": {
            "train": ctx.train.name,
            "test": data.name,
            "train_images": len(ctx.train),
            "eval_images": len(data),
            "classes": list(data.class_names),
            "channels": data.channels,
            "size": data.size,
        },
        "classifiers": names,
        "stages": stages,
        "accuracy": acc,
        "reconstruction": {"plain": psnr("plain"), "finetuned": {a: psnr(a) for a in names}},
        "nmi": nmi_values,
        "pattern": {n: p.summary() for n, p in patterns.items()},
        "gradient_probe": {b: p.summary() for b, p in probes.items()},
        "lint": {n: r.as_dict() for n, r in lints.items()},
        "transfer": {
            "names": names,
            "T": transfer.tolist(),
            "RRC": rrc_matrix.tolist(),
            "relation": relation.tolist(),
            "threshold": cfg.measure.rrc_threshold,
            "order": order.as_dict(),
            "lattice": [{"extent": list(c.extent), "intent": list(c.intent), "upper": c.upper} for c in lattice],
        },
    }
    arrays = {
        "originals": kept_shown["original"],
        "recon/plain": kept_shown["plain"],
        "pattern/plain/mean_difference": patterns["plain"].mean_difference,
        "pattern/plain/constancy": patterns["plain"].constancy,
    }
    for a in names:
        arrays[f"recon/{a}"] = kept_shown[a]
        arrays[f"pattern/{a}/mean_difference"] = patterns[a].mean_difference
        arrays[f"pattern/{a}/constancy"] = patterns[a].constancy
        arrays[f"probe/{a}/mean_power"] = probes[a].mean_power
        arrays[f"probe/{a}/mean_abs_gradient"] = probes[a].mean_abs_gradient
        arrays[f"probe/{a}/radial"] = probes[a].radial
    for n, r in lints.items():
        if r.input_gradient is not None:
            arrays[f"lint/{n}/input_gradient"] = r.input_gradient.map2d.float()
        if r.forward_output is not None and n == "autoencoder":
            arrays[f"lint/{n}/forward_output"] = r.forward_output.map2d.float()
    if rt.is_main:
        save_checkpoint(ctx.run.metrics("arrays").with_suffix(".safetensors"), arrays, {"kind": "replicate-arrays"})
    return results


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()


def accuracy_table(results: dict) -> str:
    """The paper's table as text: top-1 on originals, plain and fine-tuned reconstructions, per classifier."""
    lines = [f"{'classifier':<14}{'original':>10}{'plain AE':>10}{'fine-tuned':>12}{'plain-orig':>12}{'ft-orig':>10}"]
    for name in results["classifiers"]:
        a = results["accuracy"][name]
        o, p, f = a["original"]["top1"], a["plain"]["top1"], a["finetuned"]["top1"]
        lines.append(f"{name:<14}{o:>10.2%}{p:>10.2%}{f:>12.2%}{(p - o) * 100:>+11.2f}p{(f - o) * 100:>+9.2f}p")
    return "\n".join(lines)
