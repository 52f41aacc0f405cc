"""Odena et al.'s probe: generators with transposed convolutions in their last 0, 1 or 2 upsampling stages
(resize-convolution elsewhere), measured at initialisation over seeds and after a short training as a decoder."""

from __future__ import annotations

import torch

from s2snets.config import RunConfig, StageConfig, config_hash
from s2snets.experiments.stages import Context
from s2snets.metrics.gradients import spectrum_lattice_energy
from s2snets.metrics.spectrum import lattice_contrast, power_spectrum
from s2snets.metrics.stats import mean_ci
from s2snets.models.generator import ProbeAutoencoder
from s2snets.train import autoencoder_stage, train_stage

ODENA_INIT_SEEDS = 5


def odena_probe(ctx: Context, config: RunConfig) -> dict:
    """Generators with transposed convolutions in their last 0, 1, 2 upsampling stages: lattice energy of the mean
    output power spectrum at periods 2 and 4 at initialisation, and after a short training as a decoder measured
    on the reconstruction *error* (output - input), so the image content does not swamp the artifact."""
    out = {}
    steps = config.hypothesis.odena_steps
    data = ctx.test.head(256, seed=config.seed).load()
    for n in (0, 1, 2):
        init_seeds = []
        for s in range(ODENA_INIT_SEEDS):  # initialisation is cheap: measure it over seeds for an interval
            torch.manual_seed(config.seed + s)
            init_seeds.append(_output_energy(ProbeAutoencoder(ctx.train.channels, n), data, ctx, error=False))
        torch.manual_seed(config.seed)
        model = ProbeAutoencoder(ctx.train.channels, n)
        before = _output_energy(model, data, ctx, error=False)
        stage_cfg = StageConfig(epochs=1, max_steps=steps, batch_size=64, lr=2e-3, checkpoint_every=max(steps, 1))
        key = config_hash("odena", n, stage_cfg, config.seed, ctx.data_key)
        train_stage(
            autoencoder_stage(f"odena-{n}", model), ctx.train, stage_cfg, seed=config.seed,
            checkpoint=ctx.run.checkpoint(f"odena-transposed{n}"), key=key, runtime=ctx.runtime,
            progress=ctx.progress, log=ctx.say,
        )  # fmt: skip
        out[str(n)] = {
            "init": before,
            "init_seeds": {p: mean_ci([e[p] for e in init_seeds]) for p in ("2", "4")},
            "trained": _output_energy(model, data, ctx, error=True),
            "steps": steps,
        }
    return out


@torch.no_grad()
def _output_energy(model: torch.nn.Module, data, ctx: Context, error: bool) -> dict:
    """Lattice energy (P = 2, 4) of the mean power spectrum of the outputs, or of the outputs' error (output -
    input) when ``error``: the artifact a trained generator adds, without the image it reconstructs."""
    model = model.to(ctx.runtime.device).eval()
    x = ctx.runtime.to_device(data.normalize(data.images))
    y = model(x).float()
    if error:
        y = y - x.float()
    y = y - y.mean((-2, -1), keepdim=True)
    mean_power = power_spectrum(y).mean((0, 1)).cpu()
    out: dict = {str(p): spectrum_lattice_energy(mean_power, p) for p in (2, 4)}
    out["contrast"] = {str(p): lattice_contrast(mean_power, p) for p in (2, 4)}  # a peak, whatever the broadband error
    return out
