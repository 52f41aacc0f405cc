"""The command line: parses, calls the library, prints. Every S2SNetsError becomes one line and exit code 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from s2snets.config import one_line
from s2snets.errors import ConfigError, DataError, S2SNetsError
from s2snets.version import __version__

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


log = logging.getLogger("s2snets")


def _progress(args: argparse.Namespace) -> bool:
    return not args.quiet and sys.stderr.isatty() or os.environ.get("S2SNETS_PROGRESS") == "1"


def _setup_logging(args: argparse.Namespace) -> None:
    """The console shows the ``s2snets`` logger's messages (unless --quiet); warnings of torch and others go to the
    log only with --debug, so a user error stays one line."""
    logger = logging.getLogger("s2snets")
    if not any(getattr(h, "_s2snets_console", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._s2snets_console = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    for h in logger.handlers:
        if getattr(h, "_s2snets_console", False):
            h.setLevel(logging.WARNING if args.quiet else logging.INFO)
            h.stream = sys.stdout  # type: ignore[attr-defined]  # a test harness may have swapped stdout since the handler was made
    logger.setLevel(logging.DEBUG if args.debug else logging.INFO)
    logger.propagate = False
    logging.captureWarnings(True)
    warned = logging.getLogger("py.warnings")
    warned.handlers = [logging.StreamHandler(sys.stderr) if args.debug else logging.NullHandler()]
    warned.propagate = False


def _runtime(args: argparse.Namespace, config=None):
    from s2snets.runtime import init_runtime

    if args.device is not None and not args.device.strip():
        raise ConfigError("--device '' names no device; use auto, cpu, cuda, cuda:N or mps")
    device = args.device or (config.device if config else "auto")
    amp = args.amp or (config.amp if config else "auto")
    return init_runtime(device, amp, bool(args.compile or (config.compile if config else False)))


def _run_config(args: argparse.Namespace, config):
    """Apply --name, --retrain and every --set to ``config``, then validate the whole of it (before any work)."""
    from s2snets.config import check_run_name, set_key, validate

    for assignment in getattr(args, "set", None) or []:
        config = set_key(config, assignment)
    if args.name is not None:
        config.name = check_run_name(args.name, "--name")
    if args.retrain:
        config.use_zoo = False
    return validate(config)


@contextlib.contextmanager
def _locked_run(args: argparse.Namespace, config, runtime, shared: bool = False):
    """The run directory, locked for this command (rank 0 holds the lock for every rank of a torchrun job; shards
    of one hypothesis grid share it, so they run together but no other command runs beside them)."""
    from s2snets.rundir import RunDir, run_lock

    root = Path(args.runs) / config.name
    with run_lock(root, shared=shared) if runtime.is_main else contextlib.nullcontext():
        yield RunDir(root, writable=runtime.is_main)


# ----------------------------------------------------------------------------------------------- commands
def cmd_demo(args: argparse.Namespace) -> int:
    from s2snets.experiments.presets import demo_config

    return _pipeline(args, _run_config(args, demo_config(quick=args.quick)), hypothesis=not args.no_hypothesis)


def cmd_replicate(args: argparse.Namespace) -> int:
    from s2snets.config import load_config

    return _pipeline(args, _run_config(args, load_config(args.config, validate=False)), hypothesis=False)


def cmd_hypothesis(args: argparse.Namespace) -> int:
    from s2snets.config import load_config

    config = _run_config(args, load_config(args.config, validate=False))  # before torch is imported: errors are instant
    from s2snets.experiments.grid import parse_shard
    from s2snets.experiments.hypothesis import hypothesis, verdict_text

    try:
        shard = parse_shard(args.shard)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    runtime = _runtime(args, config)
    with _locked_run(args, config, runtime, shared=shard is not None) as run:
        result = hypothesis(config, run, runtime, progress=_progress(args), jobs=args.jobs, shard=shard)
        if "incomplete" in result:  # this shard's share is done; another shard's call (or one without --shard) merges
            left = result["incomplete"]
            print(f"this shard's jobs are done; {left['missing']} of {left['jobs']} are left to other shards")
        elif runtime.is_main:
            print(verdict_text(result))
            _write_report(args, run)
    return 0


def _pipeline(args: argparse.Namespace, config, hypothesis: bool) -> int:
    from s2snets.experiments.claims import claims_text
    from s2snets.experiments.hypothesis import verdict_text
    from s2snets.experiments.pipeline import run_pipeline
    from s2snets.experiments.replicate import accuracy_table

    runtime = _runtime(args, config)
    with _locked_run(args, config, runtime) as run:
        done = run_pipeline(
            config, run, runtime, progress=_progress(args), hypothesis=hypothesis, jobs=getattr(args, "jobs", None)
        )
        if runtime.is_main:
            print("\nTop-1 accuracy (eval split):")
            print(accuracy_table(done.results))
            if done.hypothesis is not None:
                print("\n" + verdict_text(done.hypothesis))
            print("\n" + claims_text(done.results["claims"]))
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
    from s2snets.rundir import run_lock

    root = Path(args.run_dir)
    if not root.is_dir():
        raise DataError(f"run directory not found: {root}")
    with run_lock(root):
        print(write_report(root))
    return 0


def cmd_zoo_list(args: argparse.Namespace) -> int:
    from s2snets import zoo

    built, entries = zoo.read_manifest()["entries"], zoo.zoo_entries()
    width = max(len(e.name) for e in entries) + 2  # the longest name sets the first column
    print(f"{'entry':<{width}}{'kind':<13}{'test score':>26}  {'sha256':<14}re-create with")
    for entry in entries:
        record = built.get(entry.name)
        if record is None:
            score, digest = "not built", ""
        else:
            score = f"{record['test_top1']:.2%} top-1" if "test_top1" in record else f"{record['test_psnr_db']:.2f} dB"
            score += "" if record.get("meets_bar", True) else " (below bar)"
            digest = record["sha256"][:12]
        print(f"{entry.name:<{width}}{entry.kind:<13}{score:>26}  {digest:<14}{entry.command}")
    return 0


def cmd_zoo_verify(args: argparse.Namespace) -> int:
    from s2snets.zoo import build

    failures = 0
    for record in build.verify_zoo(args.only):
        ok = record["ok"]
        failures += not ok
        print(
            f"{'ok ' if ok else 'BAD'} {record['name']:<28} manifest {record['manifest']:.4f}  measured {record['measured']:.4f}"
        )
    if failures:
        raise S2SNetsError(f"{failures} zoo entr{'y' if failures == 1 else 'ies'} did not reproduce the manifest")
    return 0


def cmd_zoo_train(args: argparse.Namespace) -> int:
    from s2snets.zoo import build

    runtime = _runtime(args)
    kwargs = {"zoo_dir": Path(args.out)} if args.out else {}
    records = build.train_zoo(
        args.only,
        build_dir=args.build_dir,
        retrain=args.retrain,
        runtime=runtime,
        progress=_progress(args),
        log=log.info,
        **kwargs,
    )
    print(f"{len(records)} zoo entr{'y' if len(records) == 1 else 'ies'} trained")
    return 0


def cmd_lint(args: argparse.Namespace) -> int:
    import torch

    from s2snets.metrics.lint import lint_model
    from s2snets.models.spec import model_from_spec

    runtime = _runtime(args)
    model, size = model_from_spec(args.model, in_channels=args.channels, downsample=args.downsample, input_size=args.input_size)
    model = model.to(runtime.device)
    report = lint_model(model, torch.zeros(1, args.channels, size, size, device=runtime.device), args.model)
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def _read_image(path: str):
    """An image file as a tensor (H, W) grey or (H, W, 3) colour, read with the checks of every reader
    (``data.open_image``): 8-bit images as uint8; 16-bit ones as floats v / 65535 (all their levels kept, not clipped
    to 255); float images as they are, which must be pixels in [0, 1]; palette, alpha and other colour modes as RGB,
    1-bit and grey-with-alpha as grey."""
    import numpy as np
    import torch

    from s2snets.data import open_image

    with open_image(path) as img:
        try:
            pixels = _pixels_of(img, path)
        except (OSError, SyntaxError, ValueError) as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(np.ascontiguousarray(pixels))


def _pixels_of(img, path: str):
    import numpy as np

    from s2snets.data import eight_bit, wide_grey

    grey = wide_grey(img, path)  # 16-bit and float images with all their levels, not rounded to 8 bits
    return grey if grey is not None else np.array(eight_bit(img, path))


def cmd_measure_nmi(args: argparse.Namespace) -> int:
    from s2snets.metrics.nmi import nmi

    a, b = _read_image(args.image_a), _read_image(args.image_b)
    if a.shape != b.shape:
        raise DataError(
            f"the images differ: {_described(a)} and {_described(b)}; nMI pairs pixel with pixel, give two images of one "
            "size and the same channels"
        )
    print(f"{float(nmi(a.reshape(-1), b.reshape(-1), args.levels, args.average)):.6f}")
    return 0


def _described(x) -> str:
    return f"{x.shape[1]} x {x.shape[0]} " + ("colour (RGB)" if x.ndim == 3 else "grey")


def cmd_measure_spectrum(args: argparse.Namespace) -> int:
    from s2snets.metrics.spectrum import lattice_energy, noise_lattice_share

    x = _read_image(args.image).float()
    x = x.mean(-1) if x.ndim == 3 else x
    too_large = [p for p in args.period if p > min(x.shape)]
    if too_large:
        raise ConfigError(f"--period {too_large[0]} is larger than the image ({x.shape[0]}x{x.shape[1]})")
    for p in args.period:
        share = noise_lattice_share(x.shape[-2], x.shape[-1], p)
        print(f"period {p}: lattice energy {float(lattice_energy(x, p)):.4f} (white noise: {share:.4f})")
    return 0


def cmd_measure_overlap(args: argparse.Namespace) -> int:
    from s2snets.metrics import overlap

    try:
        layers = overlap.parse_layers(args.layers, args.pass_)
    except ValueError as exc:
        raise ConfigError(f"--layers: {exc}") from None
    count = overlap.transposed_overlap_1d if args.pass_ == "forward" else overlap.gradient_overlap_1d
    try:
        counts = count(layers, args.length)
    except (ValueError, RuntimeError) as exc:
        raise ConfigError(f"--layers {args.layers!r} with --length {args.length}: {exc}") from None
    r = overlap.overlap_ratio(counts)
    print(" ".join(f"{int(c)}" for c in counts.tolist()))
    print(f"1-D max/min {r:.3f} (2-D {r * r:.3f}), period {overlap.overlap_period(counts)}")
    return 0


def cmd_measure_gradients(args: argparse.Namespace) -> int:
    import torch

    from s2snets.data import load_images
    from s2snets.metrics.gradients import gradient_probe, noise_probe
    from s2snets.models.spec import model_from_spec

    runtime = _runtime(args)
    torch.manual_seed(args.seed)
    model, size = model_from_spec(args.model, in_channels=args.channels, num_classes=args.classes,
                                  downsample=args.downsample, weights=args.weights, input_size=args.input_size)  # fmt: skip
    model = model.to(runtime.device)
    if args.images:
        data = load_images(args.images, "test", size=size, channels=args.channels).head(args.n, seed=args.seed)
        probe = gradient_probe(model, data.normalize(data.images).to(runtime.device), data.labels.to(runtime.device))
        what = f"{len(data)} images of {data.name}, cross-entropy"
    else:
        probe = noise_probe(model, args.channels, size, n=args.n, seed=args.seed)
        what = f"{args.n} noise inputs, logit sum"
    print(f"{args.model}: input gradients on {what} (seed {args.seed})")
    for p, v in probe.lattice.items():
        print(f"period {p}: gradient lattice energy {v:.4f}, lattice contrast {probe.contrast[p]:.2f}")
    return 0


def cmd_measure_transfer(args: argparse.Namespace) -> int:
    from s2snets.experiments.replicate import transfer_table
    from s2snets.rundir import RunDir

    results = RunDir(args.run_dir, writable=False).read_json("results")
    if not isinstance(results, dict):
        raise DataError(f"{args.run_dir} has no readable metrics/results.json; run 'replicate' or 'demo' first")
    try:
        print(transfer_table(results))
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{args.run_dir}/metrics/results.json has no transfer table of this version's shape ({exc!r})") from None
    return 0


# ----------------------------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """Usage errors as one line on stderr and exit 2, like every other user error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


GLOBAL_DEFAULTS = {"quiet": False, "debug": False, "device": None, "amp": None, "compile": False}


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written, and an option's default in its help where it says something: not for a flag (off
    unless given), an unset value (None, []) or a help that already says what the default is."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        silent = action.default is None or action.default is False or action.default == [] or not action.option_strings
        if silent or action.default is argparse.SUPPRESS or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def _int_in(low: int, high: int):
    """An argparse type: an integer in [low, high] (every numeric option has a bound the machine can honour)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range; use {low} to {high}")
        return value

    parse.__name__ = f"integer in {low}..{high}"
    return parse


FACTORY_NOTE = (
    "A model named 'package.module:factory' is imported and called: it runs that code, as a config naming one does. "
    "The factory is called once, with those of num_classes= and in_channels= that its signature names."
)


def _common_options() -> argparse.ArgumentParser:
    """The global options, shared by every (sub)command: `s2snets --quiet demo` and `s2snets demo --quiet`."""
    from s2snets.names import AMP_MODES

    common = _Parser(add_help=False)
    common.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars or stage messages")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks and warnings")
    common.add_argument(
        "--device",
        default=argparse.SUPPRESS,
        help="auto (CUDA, MPS, then CPU), cpu, cuda, cuda:N, mps; default: the config's, else auto",
    )
    common.add_argument(
        "--amp",
        default=argparse.SUPPRESS,
        choices=AMP_MODES,
        help="mixed precision (auto: bf16 on CUDA, off on CPU); default: the config's, else auto",
    )
    common.add_argument(
        "--compile",
        action="store_true",
        default=argparse.SUPPRESS,
        help="torch.compile each training step's model (worth it on CUDA for long stages; the first steps compile)",
    )
    return common


def _adder(common: argparse.ArgumentParser):
    """add(subparsers, name, help, description): a subcommand with the global options and a help-formatted text."""

    def add(subparsers, name: str, help: str, description: str = "") -> argparse.ArgumentParser:
        return subparsers.add_parser(
            name, parents=[common], help=help, description=f"{help}.\n\n{description}".strip(), formatter_class=_Formatter
        )

    return add


def _run_options(p: argparse.ArgumentParser, default_name: str) -> None:
    p.add_argument("--runs", default="runs", help="folder that holds run directories")
    p.add_argument("--name", default=None, help=f"run name, one folder name under --runs (default: {default_name})")
    p.add_argument("--retrain", action="store_true", help="train classifiers and autoencoders instead of loading the zoo's")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, TOML value (repeatable): --set finetune.lr=3e-4 --set hypothesis.seeds=[0,1,2,3,4]",
    )


def _jobs_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--jobs",
        type=_int_in(1, 256),
        default=None,
        metavar="N",
        help="checkerboard fine-tunings at once, in N worker processes (default: hypothesis.jobs; 0 there = cores / job_threads)",
    )


def _pipeline_commands(sub, add) -> None:
    p = add(
        sub,
        "demo",
        "the whole pipeline on Fashion-MNIST, ending in runs/demo/report.html",
        "Loads the zoo's converged classifiers and autoencoders, fine-tunes the decoder per classifier, measures "
        "accuracy, nMI, constant patterns and transfer, runs the checkerboard experiment's paired interventions "
        "beside its planted controls and writes the claims table and the report. Stages and fine-tunings resume "
        "after a kill.",
    )
    p.add_argument("--quick", action="store_true", help="a smoke run of the same pipeline (less data, fewer steps)")
    p.add_argument("--no-hypothesis", action="store_true", help="skip the checkerboard experiment's grid")
    _jobs_option(p)
    _run_options(p, "demo, or demo-quick")
    p.set_defaults(func=cmd_demo)

    p = add(
        sub,
        "replicate",
        "the S2SNets pipeline from a TOML config (stages resume)",
        "Trains or loads classifiers, pretrains the SegNet autoencoder, fine-tunes its decoder through each frozen "
        "classifier, and measures everything the paper reports. 's2snets config' prints every key. " + FACTORY_NOTE,
    )
    p.add_argument("--config", required=True, help="TOML file; every key is optional ('s2snets config' lists them)")
    _run_options(p, "the config's name")
    p.set_defaults(func=cmd_replicate)

    p = add(
        sub,
        "hypothesis",
        "are constant patterns gradient checkerboards? paired interventions on the same classifier and seed",
        "Fine-tunes the same decoder through the same classifier once per arm (control, sham, band_stop, "
        "stride_smooth, shift_y, shift_x, shift_period) and replicate, beside planted controls whose answer is known "
        "by construction, and applies the verdict rules of docs/measures.md; a real cell's verdict is reported only "
        "when every control was recovered. Every fine-tuning is a keyed job: a re-run resumes, --jobs runs several "
        "at once, --shard splits them between machines sharing the run directory.",
    )
    p.add_argument("--config", required=True, help="TOML file with a [hypothesis] table ('s2snets config' lists its keys)")
    _jobs_option(p)
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="run only this machine's share of the jobs (0 <= I < N); a call that finds every job done merges",
    )
    _run_options(p, "the config's name")
    p.set_defaults(func=cmd_hypothesis)


def _zoo_commands(sub, add) -> None:
    p = add(sub, "zoo", "the shipped converged classifiers and autoencoders: list, verify, (re)train")
    zsub = p.add_subparsers(dest="zoo_command", metavar="ACTION", required=True)
    z = add(zsub, "list", "every zoo entry with its test accuracy or PSNR and the command that re-creates it")
    z.set_defaults(func=cmd_zoo_list)
    z = add(zsub, "verify", "check each weights file's sha256 and re-measure it on the full test split")
    z.add_argument("--only", nargs="+", default=None, metavar="NAME", help="entries to verify (default: all built)")
    z.set_defaults(func=cmd_zoo_verify)
    z = add(
        zsub,
        "train",
        "train the zoo entries it does not hold yet (resumable; run again to continue)",
        "Each entry trains with the recipe in s2snets/zoo on the full 60,000-image split and enters the zoo only "
        "when it meets the bar (classifiers >= 90 % top-1 on the test split).",
    )
    z.add_argument("--only", nargs="+", default=None, metavar="NAME", help="entries to train (default: every missing one)")
    z.add_argument("--retrain", action="store_true", help="train the entries again even if the zoo holds them")
    z.add_argument("--build-dir", default="runs/zoo-build", help="checkpoints while training")
    z.add_argument("--out", default=None, help="zoo folder to write (default: the package's own)")
    z.set_defaults(func=cmd_zoo_train)


def _tool_commands(sub, add) -> None:
    from s2snets.names import DOWNSAMPLINGS

    p = add(sub, "config", "print a complete TOML config (every key with its default and meaning) to edit and pass to --config")
    p.add_argument("--preset", choices=["default", "demo", "demo-quick"], default="default", help="which values to print")
    p.set_defaults(func=cmd_config)

    p = add(sub, "report", "write RUN_DIR/report.html (self-contained, opens offline)")
    p.add_argument("run_dir", help="a run directory, e.g. runs/demo")
    p.set_defaults(func=cmd_report)

    p = add(
        sub,
        "lint",
        "find uneven overlap in a model (forward and gradient pass)",
        "MODEL is a zoo name (alexnet_s, resnet50, ...), segnet:PRESET[:UPSAMPLE] or package.module:factory. " + FACTORY_NOTE,
    )
    p.add_argument("model", help="zoo name, segnet:PRESET[:UPSAMPLE] or package.module:factory")
    p.add_argument(
        "--input-size",
        type=_int_in(1, 8192),
        default=None,
        help="input side in pixels, at most 8192 (default: the model's usual size)",
    )
    p.add_argument("--channels", type=_int_in(1, 64), default=3, help="input channels (1 to 64)")
    p.add_argument("--downsample", default=None, choices=DOWNSAMPLINGS, help="rewrite the classifier's downsampling first")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_lint)


def _measure_commands(sub, add) -> None:
    from s2snets.names import DOWNSAMPLINGS, NMI_AVERAGES

    p = add(sub, "measure", "single measures on image files and models")
    msub = p.add_subparsers(dest="measure", metavar="MEASURE", required=True)
    m = add(
        msub,
        "nmi",
        "normalised mutual information between two images of the same size and channels (8- or 16-bit, "
        "or float TIFFs in [0, 1]; alpha dropped)",
    )
    m.add_argument("image_a", help="image file")
    m.add_argument("image_b", help="image file")
    m.add_argument("--levels", type=_int_in(2, 65536), default=256, help="quantisation levels of the pixel values (2 to 65536)")
    m.add_argument("--average", default="arithmetic", choices=NMI_AVERAGES, help="normaliser of the mutual information")
    m.set_defaults(func=cmd_measure_nmi)
    m = add(msub, "spectrum", "lattice energy (checkerboard score) of an image, against white noise's")
    m.add_argument("image", help="image file")
    m.add_argument("--period", type=_int_in(2, 4096), nargs="+", default=[2, 4, 8], help="lattice periods in pixels (2 to 4096)")
    m.set_defaults(func=cmd_measure_spectrum)
    m = add(msub, "overlap", "1-D overlap counts of a layer stack, e.g. --layers '3,2;3,2'")
    m.add_argument("--layers", required=True, help="k,s[,p[,d]] per layer, separated by ';'")
    m.add_argument(
        "--pass",
        dest="pass_",
        choices=["forward", "gradient"],
        default="forward",
        help="forward: transposed convolutions; gradient: strided convolutions seen from the input",
    )
    m.add_argument("--length", type=_int_in(1, 100_000), default=16, help="input positions (at most 100000)")
    m.set_defaults(func=cmd_measure_overlap)
    m = add(
        msub,
        "gradients",
        "lattice energy and contrast of a classifier's input gradients",
        "On noise (the architecture's own pattern, logit sum) or, with --images, on real test images (cross-entropy). "
        + FACTORY_NOTE,
    )
    m.add_argument("model", help="zoo name or package.module:factory")
    m.add_argument("--channels", type=_int_in(1, 64), default=1, help="input channels (1 to 64)")
    m.add_argument(
        "--input-size", type=_int_in(1, 8192), default=None, help="input side, at most 8192 (default: the model's usual size)"
    )
    m.add_argument("--downsample", default=None, choices=DOWNSAMPLINGS, help="rewrite the classifier's downsampling first")
    m.add_argument("-n", type=_int_in(1, 100_000), default=32, help="inputs to average over (at most 100000)")
    m.add_argument("--classes", type=_int_in(1, 100_000), default=10, help="classifier outputs (at most 100000)")
    m.add_argument("--seed", type=_int_in(0, 2**32 - 1), default=0, help="seeds the model's initialisation and the inputs")
    m.add_argument(
        "--weights",
        default=None,
        help="a safetensors state_dict, a classifier checkpoint of a run (runs/NAME/checkpoints/*.safetensors) or a "
        "torchvision .pth (read with weights_only=True)",
    )
    m.add_argument("--images", default=None, help="'fashion-mnist' or a folder of class subfolders: probe real test images")
    m.set_defaults(func=cmd_measure_gradients)
    m = add(msub, "transfer", "RRC matrix and total order of a finished run")
    m.add_argument("run_dir", help="a run directory with metrics/results.json")
    m.set_defaults(func=cmd_measure_transfer)


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = _Parser(prog="s2snets", description=DESCRIPTION, parents=[common], formatter_class=_Formatter)
    parser.add_argument("--version", action="version", version=f"s2snets {__version__}")
    # No parser.set_defaults for the global options: it would set the default of the option objects every
    # subcommand shares, and a subcommand's default would then overwrite `s2snets --device X COMMAND`. See main().
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add = _adder(common)
    _pipeline_commands(sub, add)
    _zoo_commands(sub, add)
    _tool_commands(sub, add)
    _measure_commands(sub, add)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for key, value in GLOBAL_DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    if not getattr(args, "func", None):  # as argparse does for a usage error: usage on stderr, exit 2
        parser.print_usage(sys.stderr)
        print("s2snets: error: no command given (see 's2snets --help')", file=sys.stderr)
        return 2
    _setup_logging(args)
    try:
        return args.func(args)
    except BrokenPipeError:  # `s2snets lint ... | head`: the reader left; stop quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except S2SNetsError as exc:
        if args.debug:
            raise
        print(f"s2snets: error: {one_line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("s2snets: interrupted; finished stages are saved, re-run the command to resume", file=sys.stderr)
        return 130
    except OSError as exc:  # a read-only or full disk, a missing folder: the user's environment, not a bug
        if args.debug:
            raise
        where = f": {one_line(exc.filename)}" if exc.filename else ""
        print(f"s2snets: error: {one_line(exc.strerror or exc)}{where}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug, not a user error: say so in one line, traceback on --debug
        if args.debug:
            raise
        print(
            f"s2snets: internal error: {type(exc).__name__}: {one_line(exc)} (re-run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
