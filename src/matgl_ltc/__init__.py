"""matgl-ltc: lattice thermal conductivity of crystals with transfer-learned MEGNet models."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("matgl-ltc")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from .calculator import LTCCalculator
from .data import InvalidStructureError, LTCDataset, load_dataset
from .model import LTCEnsemble, LTCModel, ModelLoadError, list_models, load_model

__all__ = [
    "InvalidStructureError",
    "LTCCalculator",
    "LTCDataset",
    "LTCEnsemble",
    "LTCModel",
    "ModelLoadError",
    "__version__",
    "list_models",
    "load_dataset",
    "load_model",
]
