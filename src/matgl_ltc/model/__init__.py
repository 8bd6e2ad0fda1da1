"""Backbones, the LTC model and its persistence."""

from .backbones import (
    BackboneSpec,
    PretrainedWeightsError,
    builtin_backbones,
    load_pretrained_megnet,
    pretrained_dir,
)
from .ltc_model import LTCModel, ModelLoadError

__all__ = [
    "BackboneSpec",
    "LTCModel",
    "ModelLoadError",
    "PretrainedWeightsError",
    "builtin_backbones",
    "load_pretrained_megnet",
    "pretrained_dir",
]
