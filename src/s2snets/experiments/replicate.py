"""The paper, end to end: classifiers, autoencoder, decoder fine-tuning per classifier, then every measure.

Writes ``metrics/results.json`` (all numbers), ``metrics/arrays.safetensors`` (the tensors figures are drawn from)
and ``figures/*.png`` into the run directory.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import time
from typing import cast

import torch
from torch import Tensor

from s2snets.checkpoint import save_checkpoint
from s2snets.config import RunConfig, config_hash, to_dict, validate
from s2snets.data import load_split
from s2snets.errors import DataError
from s2snets.experiments.evaluation import Evaluation, evaluation_pass, inter_nmi_of
from s2snets.experiments.schema import QualityGates, Results
from s2snets.experiments.stages import (
    Context,
    Countdown,
    Trained,
    finetune_through,
    plan_text,
    pretrain_autoencoder,
    train_classifier,
    zoo_entry_for,
)
from s2snets.metrics.gradients import gradient_probe
from s2snets.metrics.lattice import peak_amplitude
from s2snets.metrics.lint import lint_model
from s2snets.metrics.reconstruction import accuracy_of_top, psnr
from s2snets.metrics.stats import mean_ci, welch_difference
from s2snets.metrics.transfer import check_total_order, concept_lattice, rrc, suffices
from s2snets.rundir import RunDir
from s2snets.runtime import Runtime
from s2snets.version import __version__


def load_context(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool) -> Context:
    train = load_split(config.data, "train", config.seed)
    # The models see test images standardised as they saw training images (not with the test split's own statistics).
    test = dataclasses.replace(load_split(config.data, "test", config.seed), mean=train.mean, std=train.std)
    classes = len(set(test.labels.tolist())) if isinstance(test.labels, torch.Tensor) else 2
    if classes < 2:  # checked before any work: the nMI of different-class pairs and per-class accuracy need two
        raise DataError(f"{test.name} holds images of {classes} class; the measures need at least two classes in the test split")
    return Context(config, run, runtime, train, test, progress)


log = logging.getLogger("s2snets")


def classifier_labels(config: RunConfig) -> list[tuple[str, str, int]]:
    """(label, classifier name, seed) of the replication's classifiers: the name alone for one seed, else name-sN."""
    seeds = config.classifier_seeds
    return [(name if len(seeds) == 1 else f"{name}-s{s}", name, s) for name in config.classifiers for s in seeds]


def _lossy_wanted(ctx: Context, upsample: str) -> bool:
    """The lossy condition runs when the config asks for it, or the zoo has a lossy autoencoder for this run."""
    return bool(ctx.config.autoencoder.lossy_steps) or zoo_entry_for(ctx, "autoencoder", upsample, variant="lossy") is not None


def replicate(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool = True) -> Results:
    """Run (or resume) every stage of the paper's pipeline and measure it. Returns the results dict (without the
    claims; ``pipeline.run_pipeline`` adds them and writes ``results.json``). The evaluation is skipped when the
    run's ``results.json`` holds one of the same inputs."""
    validate(config)  # a config built in Python gets the same checks as one read from TOML, before any work
    with run.logging():
        return run_stages(config, run, runtime, progress)


def run_stages(config: RunConfig, run: RunDir, runtime: Runtime, progress: bool) -> Results:
    """``replicate``'s work on a config already validated, inside the run's logging."""
    started = time.perf_counter()
    run.write_config(config)
    ctx = load_context(config, run, runtime, progress)
    ctx.say(
        f"data: {ctx.train.name} {len(ctx.train)} train / {ctx.test.name} {len(ctx.test)} test images, "
        f"{ctx.train.channels}x{ctx.train.size}x{ctx.train.size}"
    )
    ctx.say(plan_text(ctx))
    classifiers = {
        label: train_classifier(
            ctx, name, config.classifier_downsample, seed=seed, tag=f"-s{seed}" if seed != config.seed else ""
        )
        for label, name, seed in classifier_labels(config)
    }
    upsample = config.autoencoder.upsample  # read once, passed down
    plain = pretrain_autoencoder(ctx, upsample)
    lossy = pretrain_autoencoder(ctx, upsample, lossy=True) if _lossy_wanted(ctx, upsample) else None
    decoders = [("", plain)] + ([("lossy/", lossy)] if lossy else [])
    finetuned, countdown = {}, Countdown(len(classifiers) * len(decoders))
    for (prefix, ae), (name, clf) in itertools.product(decoders, classifiers.items()):
        finetuned[prefix + name] = finetune_through(ctx, ae, clf, upsample, tag=f"{prefix.replace('/', '-')}{name}")
        ctx.say(f"fine-tuned the {'lossy ' if prefix else ''}decoder through {name} {countdown.tick()}")
    key = config_hash(
        "evaluate",
        __version__,
        config.measure,
        [c.key for c in classifiers.values()],
        plain.key,
        lossy.key if lossy else "",
        [f.key for f in finetuned.values()],
        ctx.data_key,
    )
    previous = run.read_json("results")
    if previous and previous.get("key") == key and run.metrics("arrays").with_suffix(".safetensors").is_file():
        ctx.say("evaluation: finished earlier with the same inputs, skipped")
        return previous
    results = evaluate(ctx, classifiers, plain, finetuned, lossy)
    results["key"] = key
    results["seconds_total"] = time.perf_counter() - started
    return results


def evaluate(ctx: Context, classifiers: dict[str, Trained], plain: Trained, finetuned: dict[str, Trained],
             lossy: Trained | None = None) -> Results:  # fmt: skip
    """Every measure of the paper from one streamed pass over the test images (``evaluation.evaluation_pass``)."""
    cfg, rt, m = ctx.config, ctx.runtime, ctx.config.measure
    data = ctx.test.head(m.eval_limit, seed=cfg.seed)
    names = list(classifiers)
    ctx.say(f"evaluation on {len(data)} test images")
    decoders = {"plain": plain.model, **{a: finetuned[a].model for a in names}}
    judges = {d: names for d in decoders}
    if lossy is not None:  # the paper's condition: judged by every classifier (plain) and by its own (fine-tuned)
        decoders["lossy/plain"] = lossy.model
        judges["lossy/plain"] = names
        for a in names:
            decoders[f"lossy/{a}"], judges[f"lossy/{a}"] = finetuned[f"lossy/{a}"].model, [a]
    measured = {"plain", *names}
    ev = evaluation_pass(ctx, data, {b: c.model for b, c in classifiers.items()}, decoders, judges, measured)
    acc = accuracy_summary(ev, names, data.num_classes, lossy is not None)
    pixels = len(data) * data.channels * data.size * data.size
    errors = {d: {"mse": sq / pixels, "psnr": psnr(sq / pixels)} for d, sq in ev.squared.items()}
    periods = tuple(p for p in m.periods if p <= data.size)
    probe_set = data.head(m.probe_images, seed=cfg.seed).load()
    probe_x = rt.to_device(probe_set.normalize(probe_set.images))
    probes = {b: gradient_probe(classifiers[b].model, probe_x, probe_set.labels.to(rt.device), periods) for b in names}
    example = torch.zeros(1, data.channels, data.size, data.size)
    lints = {b: lint_model(_cpu_copy(classifiers[b].model), example, b) for b in names}
    lints["autoencoder"] = lint_model(_cpu_copy(plain.model), example, f"segnet-{cfg.autoencoder.upsample}")
    results = {
        "version": __version__,
        "config": to_dict(cfg),
        "runtime": rt.to_dict(),
        "dataset": {"train": ctx.train.name, "test": data.name, "train_images": len(ctx.train), "eval_images": len(data),
                    "classes": list(data.class_names), "channels": data.channels, "size": data.size,
                    "skipped_files": list(getattr(ctx.train, "skipped", ())) + list(getattr(ctx.test, "skipped", ()))},
        "classifiers": names,
        "stages": {t.result.name: _stage_summary(t) for t in [*classifiers.values(), plain, *([lossy] if lossy else []), *finetuned.values()]},
        "accuracy": acc,
        "reconstruction": {"plain": errors["plain"], "finetuned": {a: errors[a] for a in names},
                           **({"lossy_plain": errors["lossy/plain"]} if lossy else {})},
        "nmi": {name: nmi_summary(ev, name, m) for name in ["original", "plain", *names]},
        "pattern": {n: p.to_dict(maps=False) for n, p in ev.patterns.items()},
        "pattern_by_family": pattern_by_family(ev.patterns, classifier_labels(cfg), min(periods, default=2)),
        "gradient_probe": {b: p.to_dict(maps=False) for b, p in probes.items()},
        "lint": {n: r.to_dict() for n, r in lints.items()},
        "transfer": transfer_summary(ev, names, classifier_labels(cfg), acc, m, cfg.seed),
    }  # fmt: skip
    results["quality"] = quality_gates(ctx, results)
    for gate in [*results["quality"]["classifiers"], *results["quality"]["autoencoder"]]:
        if not gate["meets"]:
            log.warning("quality: %s; the claims that rest on it are not testable here", gate["text"])
    if rt.is_main:
        save_checkpoint(
            ctx.run.metrics("arrays").with_suffix(".safetensors"), _arrays(ev, names, probes, lints), {"kind": "replicate-arrays"}
        )
    return cast(Results, results)  # the keys of schema.Results (readers check files with schema.problems)


def _stage_summary(t: Trained) -> dict:
    r = t.result
    return {"steps": r.steps, "seconds": r.seconds, "final_loss": r.final_loss, "skipped": r.skipped, "history": r.history}


def accuracy_summary(ev: Evaluation, names: list[str], k: int, lossy: bool) -> dict:
    """Per classifier: top-1/top-5/per-class on originals, plain and own fine-tuned reconstructions (and the lossy
    condition's plain and fine-tuned)."""
    acc: dict = {}
    for b in names:
        acc[b] = {d: accuracy_of_top(ev.top[(b, src)], ev.labels, k) for d, src in
                  (("original", "original"), ("plain", "plain"), ("finetuned", b))}  # fmt: skip
        if lossy:
            acc[b]["lossy_plain"] = accuracy_of_top(ev.top[(b, "lossy/plain")], ev.labels, k)
            acc[b]["lossy_finetuned"] = accuracy_of_top(ev.top[(b, f"lossy/{b}")], ev.labels, k)
    return acc


def nmi_summary(ev: Evaluation, name: str, m) -> dict:
    out = {"inter_same_class": inter_nmi_of(ev, name, True, m.nmi_levels, m.nmi_average),
           "inter_cross_class": inter_nmi_of(ev, name, False, m.nmi_levels, m.nmi_average)}  # fmt: skip
    if name != "original":
        out["intra"] = float(ev.intra_nmi[name].mean())
    return out


def transfer_summary(ev: Evaluation, names: list[str], labels: list[tuple[str, str, int]], acc: dict, m, seed: int) -> dict:
    """T[A, B] = top-1 of B on A's reconstructions, RRC, the relation, its order and concept lattice; and a bootstrap
    over test images and classifier seeds: how often the relation between families is a total order."""
    transfer = torch.tensor([[acc_top1(ev, b, a) for b in names] for a in names], dtype=torch.float64)
    original = torch.tensor([acc[b]["original"]["top1"] for b in names], dtype=torch.float64)
    rrc_matrix = rrc(transfer, original)
    relation = suffices(rrc_matrix, m.rrc_threshold)
    order = check_total_order(relation, names)
    lattice = concept_lattice(relation, names)
    return {
        "names": names, "T": transfer.tolist(), "RRC": rrc_matrix.tolist(), "relation": relation.tolist(),
        "threshold": m.rrc_threshold, "order": order.to_dict(),
        "lattice": [{"extent": list(c.extent), "intent": list(c.intent), "upper": c.upper} for c in lattice],
        "bootstrap": order_bootstrap(ev, names, labels, m.rrc_threshold, m.bootstrap, seed),
    }  # fmt: skip


def acc_top1(ev: Evaluation, classifier: str, decoder: str) -> float:
    return float((ev.top[(classifier, decoder)][:, 0] == ev.labels).float().mean())


def order_bootstrap(ev: Evaluation, names: list[str], labels: list[tuple[str, str, int]], threshold: float, draws: int,
                    seed: int) -> dict:  # fmt: skip
    """Resample the test images (with replacement) and draw one seed per family, ``draws`` times: the share of draws
    whose RRC relation between families is a total order, and how often each family's signal suffices for each other's."""
    families = list(dict.fromkeys(name for _, name, _ in labels))
    if draws == 0 or len(families) < 2:
        return {"draws": 0, "families": families}
    hits = torch.stack([torch.stack([ev.top[(b, d)][:, 0] == ev.labels for b in names]) for d in ["original", *names]])
    by_family = {f: [i for i, (_, name, _) in enumerate(labels) if name == f] for f in families}
    g = torch.Generator().manual_seed(seed)
    n, total, suffice = len(ev.labels), 0, torch.zeros(len(families), len(families))
    for _ in range(draws):
        rows = torch.randint(0, n, (n,), generator=g)
        pick = [members[int(torch.randint(0, len(members), (1,), generator=g))] for members in by_family.values()]
        rates = hits[:, :, rows].double().mean(-1)  # (decoders + 1, classifiers)
        t = rates[1:][pick][:, pick]
        relation = suffices(rrc(t, rates[0][pick]), threshold)
        suffice += relation.float()
        total += check_total_order(relation, families).is_total_order
    return {"draws": draws, "families": families, "total_order_share": total / draws,
            "suffices_share": (suffice / draws).tolist()}  # fmt: skip


def pattern_by_family(patterns: dict, labels: list[tuple[str, str, int]], period: int) -> dict:
    """ln(peak lattice amplitude) of each classifier's constant pattern, per family over its seeds, and each family
    against vgg_s (Welch t interval of the difference of means)."""
    values: dict[str, list[float]] = {}
    for label, name, _ in labels:
        amplitude = float(peak_amplitude(patterns[label].mean_difference.mean(0).double(), period))
        values.setdefault(name, []).append(math.log(max(amplitude, 1e-6)))
    out = {f: {**mean_ci(v), "values": v} for f, v in values.items()}
    for f, v in values.items():
        if f != "vgg_s" and "vgg_s" in values:
            out[f]["vs_vgg"] = welch_difference(v, values["vgg_s"])
    return out


def quality_gates(ctx: Context, results: dict) -> QualityGates:
    """Every model a finding rests on against its bar: classifiers on the originals, the plain autoencoder's PSNR."""
    m, k = ctx.config.measure, len(results["dataset"]["classes"])
    chance = 1 / k
    gates: dict[str, list[dict]] = {"classifiers": [], "autoencoder": []}
    for label, name, _ in classifier_labels(ctx.config):
        top1 = results["accuracy"][label]["original"]["top1"]
        bar = m.min_top1 or (
            ZOO_CLASSIFIER_BAR if zoo_entry_for(ctx, "classifier", name) is not None else chance + (1 - chance) / 2
        )
        gates["classifiers"].append({"name": label, "top1": top1, "bar": bar, "meets": top1 >= bar,
                                     "text": f"classifier {label} reaches {100 * top1:.1f} % top-1 (bar {100 * bar:.0f} %)"})  # fmt: skip
    value = results["reconstruction"]["plain"]["psnr"]
    gates["autoencoder"].append({"name": "plain", "psnr": value, "bar": m.min_psnr, "meets": value >= m.min_psnr,
                                 "text": f"the plain autoencoder reaches {value:.1f} dB (bar {m.min_psnr:g} dB)"})  # fmt: skip
    return cast(QualityGates, gates)


ZOO_CLASSIFIER_BAR = 0.88  # the zoo's 90 % on the full test split, less the spread of a 2,000-image subset


def _arrays(ev: Evaluation, names: list[str], probes: dict, lints: dict) -> dict[str, Tensor]:
    kept = ev.kept.shown
    arrays = {"originals": kept["original"], "recon/plain": kept["plain"]}
    for d in ["plain", *names]:
        arrays[f"pattern/{d}/mean_difference"] = ev.patterns[d].mean_difference
        arrays[f"pattern/{d}/constancy"] = ev.patterns[d].constancy
    for a in names:
        arrays[f"recon/{a}"] = kept[a]
        arrays[f"probe/{a}/mean_power"] = probes[a].mean_power
        arrays[f"probe/{a}/mean_abs_gradient"] = probes[a].mean_abs_gradient
        arrays[f"probe/{a}/radial"] = probes[a].radial
    for n, r in lints.items():
        if r.input_gradient is not None:
            arrays[f"lint/{n}/input_gradient"] = r.input_gradient.map2d.float()
        if r.forward_output is not None and n == "autoencoder":
            arrays[f"lint/{n}/forward_output"] = r.forward_output.map2d.float()
    return arrays


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()


def accuracy_table(results: Results) -> str:
    """The paper's table as text: top-1 (%) on originals, plain and fine-tuned reconstructions per classifier, and
    the lossy autoencoder's (the paper's condition) when the run has it; differences in points."""
    lossy = all("lossy_plain" in results["accuracy"][n] for n in results["classifiers"])
    head = f"{'classifier':<16}{'original':>9}{'plain AE':>10}{'fine-tuned':>12}{'plain-orig':>12}{'ft-plain':>10}"
    lines = [head + (f"{'lossy AE':>10}{'lossy ft':>10}{'cost':>8}{'restored':>10}" if lossy else "")]
    for name in results["classifiers"]:
        a = results["accuracy"][name]
        o, p, f = (100 * a[k]["top1"] for k in ("original", "plain", "finetuned"))
        line = f"{name:<16}{o:>8.2f}%{p:>9.2f}%{f:>11.2f}%{p - o:>+11.2f}p{f - p:>+9.2f}p"
        if lossy:
            lp, lf = 100 * a["lossy_plain"]["top1"], 100 * a["lossy_finetuned"]["top1"]
            line += f"{lp:>9.2f}%{lf:>9.2f}%{lp - o:>+7.2f}p{lf - lp:>+9.2f}p"
        lines.append(line)
    return "\n".join(lines)


def transfer_table(results: Results) -> str:
    """The RRC matrix and its order as text, from a results dict (``measure transfer`` prints it)."""
    t = results["transfer"]
    names, o = t["names"], t["order"]
    lines = ["RRC[A, B] = acc of B on A's reconstructions / acc of B on originals"]
    lines.append(" " * 14 + "".join(f"{n[:11]:>12}" for n in names))
    lines += [f"{n[:13]:<14}" + "".join(f"{v:>12.3f}" for v in row) for n, row in zip(names, t["RRC"])]
    lines.append(f"total order: {o['total_order']} (preorder: {o['total_preorder']}); ranking: {' > '.join(o['ranking'])}")
    return "\n".join(lines)
