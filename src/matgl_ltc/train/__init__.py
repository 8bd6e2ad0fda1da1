"""Training: the Lightning module and ``fit`` for one model on one split."""

from .fit import PAPER_DEFAULTS, FitResult, fit, resolve_split
from .lightning_module import LOSSES, LTCLightningModule

__all__ = ["LOSSES", "PAPER_DEFAULTS", "FitResult", "LTCLightningModule", "fit", "resolve_split"]
