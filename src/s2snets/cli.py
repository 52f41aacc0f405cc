"""The command line: parses, calls the library, prints. Every S2SNetsError becomes one line and exit code 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from s2snets.errors import DataError, S2SNetsError

DESCRIPTION = """\
s2snets: what image classifiers like to see (S2SNets, CVPR 2018), and where checkerboard artifacts come from
(Odena et al. 2016).

  s2snets demo                  the whole pipeline on Fashion-MNIST, ending in runs/demo/report.html
  s2snets replicate --config F  the paper's pipeline on your data and classifiers
  s2snets hypothesis --config F are constant patterns gradient checkerboards? a controlled experiment
  s2snets report RUN_DIR        one self-contained HTML report for a run
  s2snets lint MODEL            uneven overlap in any model (forward and gradient pass)
  s2snets measure ...           nMI, spectra, overlap maps, gradient probes, transfer order
  s2snets config                a complete config file with every key and its default, to start from
"""


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty() or os.environ.get("S2SNETS_PROGRESS") == "1"


def _echo(args: argparse.Namespace):
    return (lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True))


def _runtime(args: argparse.Namespace, config=None):
    from s2snets.runtime import init_runtime

    device = args.device or (config.device if config else "auto")
    amp = args.amp or (config.amp if config else "auto")
    return init_runtime(device, amp)


# ----------------------------------------------------------------------------------------------- commands
def cmd_demo(args: argparse.Namespace) -> int:
    from s2snets.experiments.presets import demo_config

    config = demo_config(quick=args.quick)
    if args.name:
        config.name = args.name
    config.use_zoo = not args.retrain
    return _pipeline(args, config, hypothesis=not args.no_hypothesis)


def cmd_replicate(args: argparse.Namespace) -> int:
    from s2snets.config import load_config

    config = load_config(args.config)
    if args.name:
        config.name = args.name
    if args.retrain:
        config.use_zoo = False
    return _pipeline(args, config, hypothesis=False)


def cmd_hypothesis(args: argparse.Namespace) -> int:
    from s2snets.config import load_config
    from s2snets.experiments.hypothesis import hypothesis, verdict_text
    from s2snets.rundir import RunDir

    config = load_config(args.config)
    if args.name:
        config.name = args.name
    if args.retrain:
        config.use_zoo = False
    runtime = _runtime(args, config)
    run = RunDir(Path(args.runs) / config.name, writable=runtime.is_main)
    result = hypothesis(config, run, runtime, progress=_progress(args), echo=_echo(args))
    if runtime.is_main:
        print(verdict_text(result))
        _write_report(args, run)
    return 0


def _pipeline(args: argparse.Namespace, config, hypothesis: bool) -> int:
    from s2snets.experiments.claims import check_claims, claims_text
    from s2snets.experiments.replicate import accuracy_table, replicate
    from s2snets.rundir import RunDir

    runtime = _runtime(args, config)
    run = RunDir(Path(args.runs) / config.name, writable=runtime.is_main)
    echo = _echo(args)
    results = replicate(config, run, runtime, progress=_progress(args), echo=echo)
    outcome = None
    if hypothesis:
        from s2snets.experiments.hypothesis import hypothesis as run_hypothesis
        from s2snets.experiments.hypothesis import verdict_text

        outcome = run_hypothesis(config, run, runtime, progress=_progress(args), echo=echo)
    if runtime.is_main:
        results["claims"] = check_claims(results, outcome)
        run.write_json("results", results)
        print("\nTop-1 accuracy (eval split):")
        print(accuracy_table(results))
        if outcome is not None:
            print("\n" + verdict_text(outcome))
        print("\n" + claims_text(results["claims"]))
        _write_report(args, run)
    return 0


def _write_report(args: argparse.Namespace, run) -> None:
    from s2snets.report.html import write_report

    path = write_report(run.root)
    print(f"\nreport: {path}")


def cmd_config(args: argparse.Namespace) -> int:
    from s2snets.config import RunConfig, to_toml
    from s2snets.experiments.presets import demo_config

    config = demo_config(quick=args.preset == "demo-quick") if args.preset.startswith("demo") else RunConfig()
    print(to_toml(config), end="")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from s2snets.report.html import write_report

    print(write_report(Path(args.run_dir)))
    return 0


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from s2snets import zoo

    built = zoo.read_manifest()["entries"]
    print(f"{'entry':<28}{'kind':<13}{'test score':>26}  {'sha256':<14}re-create with")
    for entry in zoo.zoo_entries():
        record = built.get(entry.name)
        if record is None:
            score, digest = "not built", ""
        else:
            score = f"{record['test_top1']:.2%} top-1" if "test_top1" in record else f"{record['test_psnr_db']:.2f} dB"
            score += "" if record.get("meets_bar", True) else " (below bar)"
            digest = record["sha256"][:12]
        print(f"{entry.name:<28}{entry.kind:<13}{score:>26}  {digest:<14}{entry.command}")
    return 0


def cmd_zoo_verify(args: argparse.Namespace) -> int:
    from s2snets import zoo

    failures = 0
    for record in zoo.verify_zoo(args.only):
        ok = record["ok"]
        failures += not ok
        print(
            f"{'ok ' if ok else 'BAD'} {record['name']:<28} manifest {record['manifest']:.4f}  measured {record['measured']:.4f}"
        )
    if failures:
        raise S2SNetsError(f"{failures} zoo entr{'y' if failures == 1 else 'ies'} did not reproduce the manifest")
    return 0


def cmd_zoo_train(args: argparse.Namespace) -> int:
    from s2snets import zoo

    runtime = _runtime(args)
    kwargs = {"zoo_dir": Path(args.out)} if args.out else {}
    records = zoo.train_zoo(
        args.only,
        build_dir=args.build_dir,
        retrain=args.retrain,
        runtime=runtime,
        progress=_progress(args),
        log=_echo(args),
        **kwargs,
    )
    print(f"{len(records)} zoo entr{'y' if len(records) == 1 else 'ies'} trained")
    return 0


def cmd_lint(args: argparse.Namespace) -> int:
    import torch

    from s2snets.metrics.lint import lint_model
    from s2snets.models.classifiers import build_classifier, default_input_size
    from s2snets.models.segnet import SEGNET_PRESETS, build_segnet

    if args.model.startswith("segnet"):
        _, _, rest = args.model.partition(":")
        preset, _, upsample = (rest or "small").partition(":")
        if preset not in SEGNET_PRESETS:
            raise S2SNetsError(
                f"unknown SegNet preset '{preset}'; use segnet:PRESET[:UPSAMPLE], presets {', '.join(SEGNET_PRESETS)}"
            )
        model: torch.nn.Module = build_segnet(preset, args.channels, upsample or "unpool")
        size = args.input_size or 32
    else:
        model = build_classifier(args.model, 10, args.channels, args.downsample)
        size = args.input_size or default_input_size(args.model)
    report = lint_model(model, torch.zeros(1, args.channels, size, size), args.model)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print(report.table())
    return 0


def _read_image(path: str):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("L") if img.mode not in ("L", "RGB") else img)
    except FileNotFoundError:
        raise DataError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def cmd_measure(args: argparse.Namespace) -> int:
    import torch

    if args.measure == "nmi":
        from s2snets.metrics.nmi import nmi

        a, b = (torch.from_numpy(_read_image(p).copy()) for p in (args.image_a, args.image_b))
        if a.shape != b.shape:
            raise DataError(f"images differ in size: {tuple(a.shape)} vs {tuple(b.shape)}")
        print(f"{float(nmi(a[None], b[None], args.levels, args.average)[0]):.6f}")
    elif args.measure == "spectrum":
        from s2snets.metrics.spectrum import lattice_energy, noise_lattice_share

        x = torch.from_numpy(_read_image(args.image).copy()).float()
        x = x.mean(-1) if x.ndim == 3 else x
        for p in args.period:
            print(
                f"period {p}: lattice energy {float(lattice_energy(x, p)):.4f} "
                f"(white noise: {noise_lattice_share(x.shape[-2], x.shape[-1], p):.4f})"
            )
    elif args.measure == "overlap":
        from s2snets.metrics.overlap import (
            Geometry,
            gradient_overlap_1d,
            overlap_period,
            overlap_ratio,
            transposed_overlap_1d,
        )

        layers = []
        for spec in args.layers.split(";"):
            parts = [int(v) for v in spec.split(",")]
            if not 2 <= len(parts) <= 4:
                raise S2SNetsError(f"layer '{spec}' must be k,s[,p[,d]]")
            k, s, p, d = (parts + [None, None])[:4]
            pad = p if p is not None else (max(k - s, 0) + 1) // 2 if args.pass_ == "forward" else (k - 1) // 2
            layers.append(Geometry("transposed" if args.pass_ == "forward" else "conv", k, s, pad, d or 1))
        counts = (
            transposed_overlap_1d(layers, args.length) if args.pass_ == "forward" else gradient_overlap_1d(layers, args.length)
        )
        r = overlap_ratio(counts)
        print(" ".join(f"{int(c)}" for c in counts.tolist()))
        print(f"1-D max/min {r:.3f} (2-D {r * r:.3f}), period {overlap_period(counts)}")
    elif args.measure == "gradients":
        from s2snets.metrics.gradients import noise_probe
        from s2snets.models.classifiers import build_classifier, default_input_size

        model = build_classifier(args.model, args.classes, args.channels, args.downsample, weights=args.weights)
        size = args.input_size or default_input_size(args.model)
        probe = noise_probe(model, args.channels, size, n=args.n)
        for p, v in probe.lattice.items():
            print(f"period {p}: gradient lattice energy {v:.4f}")
    elif args.measure == "transfer":
        from s2snets.rundir import RunDir

        results = RunDir(args.run_dir, writable=False).read_json("results")
        if results is None:
            raise DataError(f"{args.run_dir} has no metrics/results.json; run 'replicate' first")
        t = results["transfer"]
        names = t["names"]
        print("RRC[A, B] = acc of B on A's reconstructions / acc of B on originals")
        print(" " * 14 + "".join(f"{n[:11]:>12}" for n in names))
        for n, row in zip(names, t["RRC"]):
            print(f"{n[:13]:<14}" + "".join(f"{v:>12.3f}" for v in row))
        o = t["order"]
        print(f"total order: {o['total_order']} (preorder: {o['total_preorder']}); ranking: {' > '.join(o['ranking'])}")
    return 0


# ----------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    # Global options work before or after the subcommand: `s2snets --quiet demo` and `s2snets demo --quiet`.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars or stage messages")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors")
    common.add_argument("--device", default=argparse.SUPPRESS, help="auto (default: CUDA, MPS, then CPU), cpu, cuda, cuda:N, mps")
    common.add_argument(
        "--amp",
        default=argparse.SUPPRESS,
        choices=["auto", "off", "bf16", "fp16"],
        help="mixed precision (auto: bf16 on CUDA, off on CPU)",
    )
    parser = argparse.ArgumentParser(
        prog="s2snets", description=DESCRIPTION, parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.set_defaults(quiet=False, debug=False, device=None, amp=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(subparsers, name: str, **kwargs) -> argparse.ArgumentParser:
        return subparsers.add_parser(name, parents=[common], **kwargs)

    p = add(sub, "demo", help="whole pipeline on Fashion-MNIST with the four small families, ending in a report")
    p.add_argument("--quick", action="store_true", help="a smoke run (small data, few steps) in about two minutes")
    p.add_argument("--no-hypothesis", action="store_true", help="skip the hypothesis grid")
    p.add_argument("--runs", default="runs", help="folder that holds run directories (default: runs)")
    p.add_argument("--name", default=None, help="run name (default: demo / demo-quick)")
    p.add_argument("--retrain", action="store_true", help="train classifiers and autoencoders instead of loading the zoo's")
    p.set_defaults(func=cmd_demo)

    p = add(sub, "replicate", help="the S2SNets pipeline from a TOML config (stages resume)")
    p.add_argument("--config", required=True, help="TOML file; see docs/architecture.md for the keys")
    p.add_argument("--runs", default="runs")
    p.add_argument("--name", default=None, help="override the config's name")
    p.add_argument("--retrain", action="store_true", help="train classifiers and autoencoders instead of loading the zoo's")
    p.set_defaults(func=cmd_replicate)

    p = add(
        sub, "hypothesis", help="the checkerboard question as paired interventions (control, grid_shift, gradient_notch, ...)"
    )
    p.add_argument("--config", required=True)
    p.add_argument("--runs", default="runs")
    p.add_argument("--name", default=None)
    p.add_argument("--retrain", action="store_true", help="train classifiers and autoencoders instead of loading the zoo's")
    p.set_defaults(func=cmd_hypothesis)

    p = add(sub, "zoo", help="the shipped converged classifiers and autoencoders: list, verify, (re)train")
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    z = add(zsub, "list", help="every zoo entry with its test accuracy or PSNR and the command that re-creates it")
    z.set_defaults(func=cmd_zoo_list)
    z = add(zsub, "verify", help="check each weights file's sha256 and re-measure it on the full test split")
    z.add_argument("--only", nargs="+", default=None, metavar="NAME", help="entries to verify (default: all built)")
    z.set_defaults(func=cmd_zoo_verify)
    z = add(zsub, "train", help="train the zoo entries it does not hold yet (resumable; run again to continue)")
    z.add_argument("--only", nargs="+", default=None, metavar="NAME", help="entries to train (default: every missing one)")
    z.add_argument("--retrain", action="store_true", help="train the entries again even if the zoo holds them")
    z.add_argument("--build-dir", default="runs/zoo-build", help="checkpoints while training (default: runs/zoo-build)")
    z.add_argument("--out", default=None, help="zoo folder to write (default: the package's own)")
    z.set_defaults(func=cmd_zoo_train)

    p = add(sub, "config", help="print a complete TOML config (every key, defaults or a preset) to edit and pass to --config")
    p.add_argument("--preset", choices=["default", "demo", "demo-quick"], default="default")
    p.set_defaults(func=cmd_config)

    p = add(sub, "report", help="write RUN_DIR/report.html (self-contained, opens offline)")
    p.add_argument("run_dir")
    p.set_defaults(func=cmd_report)

    p = add(sub, "lint", help="find uneven overlap in a model: zoo name, segnet:PRESET[:UPSAMPLE] or package.module:factory")
    p.add_argument("model")
    p.add_argument("--input-size", type=int, default=None, help="input side in pixels (default: the model's smallest usual size)")
    p.add_argument("--channels", type=int, default=3)
    p.add_argument("--downsample", default=None, help="rewrite downsampling first: strided_conv, max_pool, avg_pool, blur_pool")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_lint)

    p = add(sub, "measure", help="single measures on files and models")
    msub = p.add_subparsers(dest="measure", metavar="MEASURE", required=True)
    m = add(msub, "nmi", help="normalised mutual information between two images")
    m.add_argument("image_a")
    m.add_argument("image_b")
    m.add_argument("--levels", type=int, default=256)
    m.add_argument("--average", default="arithmetic", choices=["arithmetic", "geometric", "min", "max"])
    m = add(msub, "spectrum", help="lattice energy (checkerboard score) of an image")
    m.add_argument("image")
    m.add_argument("--period", type=int, nargs="+", default=[2, 4, 8])
    m = add(msub, "overlap", help="1-D overlap counts of a layer stack, e.g. --layers '3,2;3,2'")
    m.add_argument("--layers", required=True, help="k,s[,p[,d]] per layer, separated by ';'")
    m.add_argument(
        "--pass",
        dest="pass_",
        choices=["forward", "gradient"],
        default="forward",
        help="forward: transposed convolutions; gradient: strided convolutions seen from the input",
    )
    m.add_argument("--length", type=int, default=16, help="input positions")
    m = add(msub, "gradients", help="gradient lattice energy of a classifier on noise inputs at initialisation")
    m.add_argument("model")
    m.add_argument("--channels", type=int, default=1)
    m.add_argument("--input-size", type=int, default=None)
    m.add_argument("--downsample", default=None)
    m.add_argument("-n", type=int, default=32, help="noise inputs")
    m.add_argument("--classes", type=int, default=10)
    m.add_argument("--weights", default=None, help="a safetensors or torchvision .pth state_dict (read with weights_only=True)")
    m = add(msub, "transfer", help="RRC matrix and total order of a finished run")
    m.add_argument("run_dir")
    p.set_defaults(func=cmd_measure)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except S2SNetsError as exc:
        if args.debug:
            raise
        print(f"s2snets: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("s2snets: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not a user error: say so in one line, traceback on --debug
        if args.debug:
            raise
        print(f"s2snets: internal error: {type(exc).__name__}: {exc} (re-run with --debug for the traceback)", file=sys.stderr)
        return 1
