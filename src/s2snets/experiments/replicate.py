"""The paper, end to end: classifiers, autoencoder, decoder fine-tuning per classifier, then every measure.

Writes ``metrics/results.json`` (all numbers), ``metrics/arrays.safetensors`` (the tensors figures are drawn from)
and ``figures/*.png`` into the run directory.
"""

from __future__ import annotations

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
from s2snets.metrics.nmi import inter_nmi, intra_nmi
from s2snets.metrics.pattern import constant_pattern
from s2snets.metrics.transfer import check_total_order, concept_lattice, rrc, suffices
from s2snets.rundir import RunDir
from s2snets.runtime import Runtime
from s2snets.train import autoencode, predict_logits, to_pixels


def accuracy(logits: Tensor, labels: Tensor, num_classes: int) -> dict:
    """Top-1, top-5 (top-k with k = min(5, K)) and per-class top-1 accuracy. (N, K), (N,) -> dict of floats."""
    top = logits.topk(min(5, logits.shape[1]), dim=1).indices
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


def nmi_summary(ctx: Context, images: Tensor, labels: Tensor, originals: Tensor | None) -> dict:
    m = ctx.config.measure
    out = {
        "inter_same_class": float(
            inter_nmi(images, labels, m.nmi_pairs, ctx.config.seed, True, m.nmi_levels, m.nmi_average).mean()
        ),
        "inter_cross_class": float(
            inter_nmi(images, labels, m.nmi_pairs, ctx.config.seed, False, m.nmi_levels, m.nmi_average).mean()
        ),
    }
    if originals is not None:
        out["intra"] = float(intra_nmi(originals, images, m.nmi_levels, m.nmi_average).mean())
    return out


def load_context(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool) -> Context:
    train = load_split(config.data, "train", config.seed)
    test = load_split(config.data, "test", config.seed)
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
    cfg, rt = ctx.config, ctx.runtime
    data = ctx.test.head(cfg.measure.eval_limit, seed=cfg.seed)
    names = list(classifiers)
    labels = data.labels
    originals = data.images.float() / 255.0
    k = data.num_classes
    ctx.say(f"evaluation on {len(data)} test images")

    raw_plain = autoencode(plain.model, data, rt)
    raw_ft = {a: autoencode(finetuned[a].model, data, rt) for a in names}
    recon_plain = to_pixels(data, raw_plain)
    recon_ft = {a: to_pixels(data, raw_ft[a]) for a in names}
    acc: dict = {}
    transfer = torch.zeros(len(names), len(names), dtype=torch.float64)
    # One unit per classifier: its accuracy on originals, plain and every fine-tuned decoder's reconstructions.
    bar = tqdm(names, desc="evaluation", unit="classifier", disable=not ctx.progress or not rt.is_main, leave=False)
    for j, b in enumerate(bar):
        clf = classifiers[b].model
        acc[b] = {
            "original": accuracy(predict_logits(clf, data, rt), labels, k),
            "plain": accuracy(predict_logits(clf, data, rt, inputs=raw_plain), labels, k),
        }
        for i, a in enumerate(names):
            a_acc = accuracy(predict_logits(clf, data, rt, inputs=raw_ft[a]), labels, k)
            transfer[i, j] = a_acc["top1"]
            if a == b:
                acc[b]["finetuned"] = a_acc
    original_acc = torch.tensor([acc[b]["original"]["top1"] for b in names], dtype=torch.float64)
    rrc_matrix = rrc(transfer, original_acc)
    relation = suffices(rrc_matrix, cfg.measure.rrc_threshold)
    order = check_total_order(relation, names)
    lattice = concept_lattice(relation, names)

    periods = tuple(p for p in cfg.measure.periods if p <= data.size)
    patterns = {"plain": constant_pattern(originals, recon_plain, periods)}
    patterns.update({a: constant_pattern(originals, recon_ft[a], periods) for a in names})
    nmi = {"original": nmi_summary(ctx, data.images, labels, None), "plain": nmi_summary(ctx, recon_plain, labels, originals)}
    nmi.update({a: nmi_summary(ctx, recon_ft[a], labels, originals) for a in names})

    probe_set = data.head(cfg.measure.probe_images, seed=cfg.seed)
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
        "reconstruction": {
            "plain": reconstruction_error(originals, recon_plain),
            "finetuned": {a: reconstruction_error(originals, recon_ft[a]) for a in names},
        },
        "nmi": nmi,
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
    shown = figure_indices(labels, cfg.measure.figure_images)
    arrays = {
        "originals": originals[shown],
        "recon/plain": recon_plain[shown],
        "pattern/plain/mean_difference": patterns["plain"].mean_difference,
        "pattern/plain/constancy": patterns["plain"].constancy,
    }
    for a in names:
        arrays[f"recon/{a}"] = recon_ft[a][shown]
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
