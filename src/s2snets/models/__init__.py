"""Models: the SegNet autoencoder and the classifier zoo."""

from s2snets.models.classifiers import CLASSIFIERS, build_classifier, downsampling_sites, replace_downsampling
from s2snets.models.segnet import SEGNET_PRESETS, SegNet, build_segnet
from s2snets.models.spec import model_from_spec

__all__ = [
    "CLASSIFIERS",
    "SEGNET_PRESETS",
    "SegNet",
    "build_classifier",
    "build_segnet",
    "downsampling_sites",
    "model_from_spec",
    "replace_downsampling",
]
