"""Backbones, the LTC model and its persistence."""

from .backbones import (
    BackboneSpec,
    PretrainedWeightsError,
    builtin_backbones,
    load_pretrained_megnet,
    pretrained_dir,
)
from .ensemble import ESTIMATES, EnsemblePrediction, LTCEnsemble, point_estimate
from .loading import list_models, load_model, model_folders
from .ltc_model import LTCModel, ModelLoadError, UnboundedDescriptorsWarning

__all__ = [
    "ESTIMATES",
    "BackboneSpec",
    "EnsemblePrediction",
    "LTCEnsemble",
    "LTCModel",
    "ModelLoadError",
    "PretrainedWeightsError",
    "UnboundedDescriptorsWarning",
    "builtin_backbones",
    "list_models",
    "load_model",
    "load_pretrained_megnet",
    "model_folders",
    "point_estimate",
    "pretrained_dir",
]
