"""How often ``grid_diagnostic`` says "grid" when there is none, and finds a planted one, per map form.

False positives: lattice-free maps of four kinds, 128 x 128 (vgg11: 64 x 64, its cost), ``--trials`` of each:
white noise; smooth images (Gaussian-blurred noise, sigma 1 to 8 px, and 1/f^alpha noise, alpha 1 to 3, cropped, so
not periodic); input gradients of a random stride-1 CNN (three 3x3 convolutions, zero padding: border effects, no
lattice); input gradients of torchvision's vgg11 (weights=None: 2 x 2 pools at stride 2, even overlap, no lattice).
Detection: a period-4 lattice planted in white noise and in the stride-1 CNN's gradients, at several strengths:
*additive* (a random zero-mean 4 x 4 tile added everywhere, its RMS the given fraction of the map's) and
*multiplicative* (the map times 1 + m t, t a random zero-mean 4 x 4 tile of RMS 1: the power modulation a strided
backward pass writes); detected = period 4 is significant (and, in brackets, how often the diagnosis names 4 as the
dominant period: a random tile with more than half its variance at the period-2 frequencies is named 2). Each form:
one map (H, W) or (C, H, W) and 8 maps (8, H, W) or (8, C, H, W), the 8-map trials sharing one tile (a model's grid is
the same in every map). Rates are k/n with exact (Clopper-Pearson) 95 % intervals; every decision at the default
level, threshold = 0.01 (and 0.05 for the false positives).

    .venv/bin/python benchmarks/grid_diagnostic_rates.py            # about 17 minutes on 2 busy CPU cores
    .venv/bin/python benchmarks/grid_diagnostic_rates.py --seed 1   # what varies with the seed
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
import time

import torch
import torchvision
from scipy import stats
from torch import nn

import s2snets

SIZE = 128
LEVELS = {"additive": (0.005, 0.01, 0.02, 0.05, 0.1), "multiplicative": (0.005, 0.01, 0.02, 0.05, 0.1)}


def interval(k: int, n: int) -> str:
    low = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    return f"{k}/{n} [{low:.3f}, {high:.3f}]"


class Sources:
    """Lattice-free maps, each (C, H, W) float64, from one generator."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        self.cnn = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10),
        ).double().eval()  # fmt: skip
        self.vgg = torchvision.models.vgg11(weights=None, num_classes=10).eval()

    def uniform(self) -> float:
        return float(torch.rand(1, generator=self.g))

    def noise(self) -> torch.Tensor:
        return torch.randn(1, SIZE, SIZE, generator=self.g, dtype=torch.float64)

    def smooth(self) -> torch.Tensor:
        n = 2 * SIZE
        x = torch.randn(1, n, n, generator=self.g, dtype=torch.float64)
        f = torch.fft.fftfreq(n, dtype=torch.float64)
        r2 = f[:, None] ** 2 + f[None, :] ** 2
        if self.uniform() < 0.5:
            response = torch.exp(-2 * (math.pi * (1 + 7 * self.uniform())) ** 2 * r2)
        else:
            r2[0, 0] = 1.0
            response = r2 ** (-(1 + 2 * self.uniform()) / 4)
        return torch.fft.ifft2(torch.fft.fft2(x) * response).real[:, :SIZE, :SIZE]  # a crop: not periodic

    def _gradient(self, model: nn.Module, size: int, dtype: torch.dtype) -> torch.Tensor:
        x = torch.rand(1, 3, size, size, generator=self.g, dtype=torch.float64).to(dtype).requires_grad_(True)
        target = int(torch.randint(0, 10, (1,), generator=self.g))
        model(x)[0, target].backward()
        return x.grad[0].double()

    def cnn_gradient(self) -> torch.Tensor:
        return self._gradient(self.cnn, SIZE, torch.float64)

    def vgg_gradient(self) -> torch.Tensor:
        return self._gradient(self.vgg, 64, torch.float32)


def tile(g: torch.Generator) -> torch.Tensor:
    t = torch.randn(4, 4, generator=g, dtype=torch.float64)
    t = t - t.mean()
    return t / t.square().mean().sqrt()


def plant(maps: torch.Tensor, mechanism: str, level: float, t: torch.Tensor) -> torch.Tensor:
    """maps (N, C, H, W) with the period-4 tile t planted at ``level``."""
    h, w = maps.shape[-2:]
    lattice = t.repeat(h // 4, w // 4)
    if mechanism == "additive":
        rms = maps.square().mean((1, 2, 3), keepdim=True).sqrt()
        return maps + level * rms * lattice
    return maps * (1 + level * lattice)


def decide(maps: torch.Tensor) -> s2snets.GridDiagnosis:
    """One trial's maps (N, C, H, W) in the form a user passes them: one single-channel map as (H, W), one RGB map as
    (C, H, W) (layout='CHW'), 8 maps as (8, H, W) or (8, C, H, W)."""
    if len(maps) == 1:
        one = maps[0, 0] if maps.shape[1] == 1 else maps[0]
        return s2snets.grid_diagnostic(one, layout="HW" if one.ndim == 2 else "CHW")
    return s2snets.grid_diagnostic(maps[:, 0] if maps.shape[1] == 1 else maps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trials", type=int, default=50, help="per kind of null map and per form (4 kinds)")
    parser.add_argument("--planted-trials", type=int, default=40, help="per background, mechanism, level and form")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    start = time.time()
    src = Sources(args.seed)
    kinds = {"white noise": src.noise, "smooth images": src.smooth, "stride-1 CNN gradients": src.cnn_gradient,
             "vgg11 gradients (64 px)": src.vgg_gradient}  # fmt: skip
    forms = {"1 map": 1, "8 maps": 8}
    print(f"# grid_diagnostic rates, {datetime.date.today()}, seed {args.seed}, torch {torch.__version__}")
    print("`.venv/bin/python benchmarks/grid_diagnostic_rates.py" + (f" --seed {args.seed}`" if args.seed else "`"))
    print()
    print("False positives (lattice-free maps: any grid reported), k/n [exact 95 % interval]:")
    print()
    print("| maps | form | level 0.01 | level 0.05 |")
    print("|---|---|---|---|")
    totals = {f: [0, 0, 0] for f in forms}
    for kind, make in kinds.items():
        for form, n in forms.items():
            hits01 = hits05 = 0
            for _ in range(args.trials):
                d = decide(torch.stack([make() for _ in range(n)]))
                hits01 += min(d.p_value.values()) < 0.01
                hits05 += min(d.p_value.values()) < 0.05
            totals[form][0] += hits01
            totals[form][1] += hits05
            totals[form][2] += args.trials
            print(f"| {kind} | {form} | {interval(hits01, args.trials)} | {interval(hits05, args.trials)} |", flush=True)
    for form, (k01, k05, n) in totals.items():
        print(f"| **all** | {form} | **{interval(k01, n)}** | **{interval(k05, n)}** |")
    print()
    print("Detection of a planted period-4 lattice (period 4 significant at level 0.01), k/n [exact 95 % interval]")
    print("(in brackets: how many of the n diagnoses name 4 as the dominant period):")
    print()
    print("| background | lattice | strength | 1 map | 8 maps |")
    print("|---|---|---|---|---|")
    g = torch.Generator().manual_seed(10_000 + args.seed)
    for background, make in (("white noise", src.noise), ("stride-1 CNN gradients", src.cnn_gradient)):
        pools = {n: [torch.stack([make() for _ in range(n)]) for _ in range(args.planted_trials)] for n in forms.values()}
        tiles = [tile(g) for _ in range(args.planted_trials)]
        for mechanism, levels in LEVELS.items():
            for level in levels:
                cells = []
                for n in forms.values():
                    found = [decide(plant(m, mechanism, level, t)) for m, t in zip(pools[n], tiles)]
                    hits = sum(4 in d.significant_periods for d in found)
                    named = sum(d.dominant_period == 4 for d in found)
                    cells.append(f"{interval(hits, args.planted_trials)} ({named})")
                unit = "x map RMS" if mechanism == "additive" else "modulation depth"
                print(f"| {background} | {mechanism} | {level} {unit} | {cells[0]} | {cells[1]} |", flush=True)
    print()
    print(f"({time.time() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
