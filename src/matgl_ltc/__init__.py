"""matgl-ltc: lattice thermal conductivity of crystals with transfer-learned MEGNet models."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__: str = version("matgl-ltc")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0+unknown"

from .data import InvalidStructureError, LTCDataset, load_dataset
from .model import LTCModel, ModelLoadError

__all__ = [
    "InvalidStructureError",
    "LTCDataset",
    "LTCModel",
    "ModelLoadError",
    "__version__",
    "load_dataset",
]
