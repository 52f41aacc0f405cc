"""Validate the lint against measurement: predicted lattice periods vs where measured input-gradient power peaks.

For every zoo classifier (trained weights, gradients on 512 Fashion-MNIST test images, and the same architecture
at random initialisation on noise) and the torchvision five (random initialisation, noise inputs at 224 px; 299 for
Inception v3), the lint's composed input-gradient map is compared with the measured mean |gradient| map (what the
overlap map models: how much gradient each input position receives), on the lint's dominant period P (2 where it
predicts none): the phase profile (mean over positions i = r mod P, interior) of both, their max/min depth and
their correlation. Agreement: both depths below 1.05 (flat), or both at least 1.05 with the same strong phases
(correlation >= 0.5). The last column is a different question:
the lattice peak contrast of the mean gradient *power spectrum* (``spectrum.lattice_contrast``; ~1 = no
checkerboard shared across inputs). Writes the table between the markers in docs/measures.md.

    .venv/bin/python benchmarks/lint_validation.py          # about 3 minutes on 2 CPU cores
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from s2snets import zoo
from s2snets.data import fashion_mnist
from s2snets.metrics.gradients import gradient_probe, noise_probe
from s2snets.metrics.lint import lint
from s2snets.metrics.overlap import phase_profile
from s2snets.models import build_classifier
from s2snets.models.classifiers import default_input_size

DEPTH = 1.05  # measured phase max/min at which a period counts as present
DOC = Path(__file__).resolve().parents[1] / "docs" / "measures.md"
BEGIN, END = "<!-- lint-validation:begin -->", "<!-- lint-validation:end -->"


def depth(profile: torch.Tensor) -> float:
    return float(profile.max() / profile.min()) if float(profile.min()) > 0 else float("inf")


def row(name: str, weights: str, model: torch.nn.Module, channels: int, size: int, probe_fn) -> str:
    report = lint(model, size, channels)
    (ph, sh), (pw, sw) = report.input_gradient.dominant
    period = max(ph, pw, 2)
    predicted = phase_profile(report.input_gradient.rows, period)
    probe = probe_fn((period,))
    measured = phase_profile(probe.mean_abs_gradient.double().mean(1), period)
    corr = (
        float(torch.corrcoef(torch.stack([predicted, measured]))[0, 1])
        if predicted.std() > 0 and measured.std() > 0
        else float("nan")
    )
    even = report.input_gradient.even
    predicted_flat, measured_flat = depth(predicted) < DEPTH, depth(measured) < DEPTH
    agree = predicted_flat == measured_flat and (measured_flat or corr >= 0.5)
    claim = "even" if even else f"{max(ph, pw)} ({min(sh, sw):.0%})"
    return (
        f"| {name} | {weights} | {size} | {claim} | {depth(predicted):.2f} | {depth(measured):.2f} | "
        f"{'–' if corr != corr else f'{corr:+.2f}'} | {'yes' if agree and report.complete else '**no**'} | {probe.contrast[period]:.2f} |"
    )


def main() -> int:
    torch.manual_seed(0)
    torch.set_num_threads(2)
    lines = [
        "| model | weights, inputs | px | lint: dominant period P (share) | predicted phase max/min | measured max/min | "
        "phase correlation | agree | spectrum contrast at P |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    test = fashion_mnist("test").head(512)
    x, y = test.normalize(test.images), test.labels
    built = zoo.read_manifest()["entries"]
    for entry in zoo.zoo_entries():
        if entry.kind != "classifier" or entry.name not in built:
            continue
        model = zoo.load_zoo_model(entry)
        lines.append(row(entry.name, "zoo (trained), test images", model, 1, 32, lambda ps, m=model: gradient_probe(m, x, y, ps)))
        if entry.seed == 0:
            fresh = entry.build().eval()
            lines.append(
                row(entry.name, "random init, noise", fresh, 1, 32, lambda ps, m=fresh: noise_probe(m, 1, 32, 256, periods=ps))
            )
        print(lines[-1], flush=True)
    for name in ("alexnet", "vgg16", "vgg16_bn", "resnet50", "inception_v3"):
        model = build_classifier(name, 1000, 3).eval()
        size = default_input_size(name)
        lines.append(
            row(name, "random init, noise", model, 3, size, lambda ps, m=model, n=size: noise_probe(m, 3, n, 16, periods=ps))
        )
        print(lines[-1], flush=True)
    text = DOC.read_text()
    table = "\n".join(lines)
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), f"{BEGIN}\n{table}\n{END}", text, flags=re.S)
    else:
        text += f"\n{BEGIN}\n{table}\n{END}\n"
    DOC.write_text(text)
    print(f"written to {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
