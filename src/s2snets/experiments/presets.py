"""Ready-made configs: the demo on Fashion-MNIST (full and --quick), sized for a 2-core CPU."""

from __future__ import annotations

from dataclasses import replace

from s2snets.config import AutoencoderConfig, DataConfig, HypothesisConfig, MeasureConfig, RunConfig, StageConfig


def demo_config(quick: bool = False) -> RunConfig:
    """The demo: the four small families on Fashion-MNIST, from the zoo (converged, >= 90 % top-1), the zoo's small
    autoencoders (near-lossless and lossy), and the checkerboard experiment at a preview's budget: 3 alexnet_s
    classifiers x the unpool decoder x one fine-tuning per arm (the four interventions the rules read), beside the
    five planted controls on the same 3 classifiers, with batches of 32. That fits 10 minutes on 2 cores with set-up,
    but is too small to calibrate the instrument reliably (on our machine two of the five controls were not
    recovered; the decisive run calibrates on 6 classifiers with batches of 64): the demo then says so instead of
    reporting a verdict.

    ``quick`` is a smoke run of the same pipeline: less data, fewer steps, fewer classifiers.
    """
    full = RunConfig(
        name="demo",
        data=DataConfig(dataset="fashion-mnist", size=32, train_limit=12000, test_limit=2000),
        autoencoder=AutoencoderConfig(preset="small", upsample="unpool"),
        train_classifier=StageConfig(epochs=1, batch_size=128, lr=3e-3, checkpoint_every=50),
        pretrain=StageConfig(epochs=2, batch_size=64, lr=3e-3, checkpoint_every=100),
        finetune=StageConfig(epochs=1, max_steps=100, batch_size=32, lr=1e-3, checkpoint_every=50),
        measure=MeasureConfig(nmi_pairs=500, probe_images=256, figure_images=8),
        hypothesis=HypothesisConfig(
            families=["alexnet_s"],
            downsamples=["native"],
            seeds=[0, 1, 2],
            upsamples=["unpool"],
            replicates=1,
            interventions=["band_stop", "shift_y", "shift_x", "shift_period"],
            control_classifiers=3,
            odena_steps=100,
        ),
    )
    if not quick:
        return full
    return replace(
        full,
        name="demo-quick",
        data=replace(full.data, train_limit=2048, test_limit=512),
        pretrain=replace(full.pretrain, epochs=1, checkpoint_every=50),
        finetune=replace(full.finetune, max_steps=15),
        measure=replace(full.measure, nmi_pairs=200, probe_images=64, figure_images=6),
        hypothesis=replace(full.hypothesis, seeds=[0, 1], control_classifiers=2, odena_steps=20),
    )
