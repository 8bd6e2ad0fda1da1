"""Backbones, the LTC model and its persistence."""

from .backbones import (
    BackboneSpec,
    PretrainedWeightsError,
    builtin_backbones,
    load_pretrained_megnet,
    pretrained_dir,
)
from .ensemble import EnsemblePrediction, LTCEnsemble
from .loading import list_models, load_model
from .ltc_model import LTCModel, ModelLoadError

__all__ = [
    "BackboneSpec",
    "EnsemblePrediction",
    "LTCEnsemble",
    "LTCModel",
    "ModelLoadError",
    "PretrainedWeightsError",
    "builtin_backbones",
    "list_models",
    "load_model",
    "load_pretrained_megnet",
    "pretrained_dir",
]
