"""A model from the text a user types: a zoo name, ``segnet:PRESET[:UPSAMPLE]`` or ``package.module:factory``."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from s2snets.errors import ModelError
from s2snets.models.classifiers import build_classifier, default_input_size
from s2snets.models.segnet import SEGNET_PRESETS, build_segnet

SEGNET_INPUT = 32  # the small preset's side: five poolings of 32 leave 1 pixel


def model_from_spec(
    spec: str,
    *,
    in_channels: int = 3,
    num_classes: int = 10,
    downsample: str | None = None,
    weights: str | Path | None = None,
    input_size: int | None = None,
) -> tuple[nn.Module, int]:
    """(model, its input side): ``input_size`` when given, else the model's usual one.

    >>> model, size = model_from_spec("segnet:small:transposed", in_channels=1)
    >>> type(model).__name__, model.upsample_name, size
    ('SegNet', 'transposed', 32)
    """
    if spec == "segnet" or spec.startswith("segnet:"):
        preset, _, upsample = (spec.partition(":")[2] or "small").partition(":")
        if preset not in SEGNET_PRESETS:
            raise ModelError(
                f"unknown SegNet preset '{preset}'; use segnet:PRESET[:UPSAMPLE], presets {', '.join(SEGNET_PRESETS)}"
            )
        return build_segnet(preset, in_channels, upsample or "unpool"), input_size or SEGNET_INPUT
    size = input_size or default_input_size(spec)
    model = build_classifier(spec, num_classes, in_channels, downsample, weights=weights, input_size=size)
    return model, size
