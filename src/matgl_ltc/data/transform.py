"""The target transform: κ → log10(κ + 1) → standardized, fitted on the training split only.

κ_L spans four decades (0.5 to 2000 W m⁻¹ K⁻¹); regressing on the raw value lets the few
diamond-like materials dominate. ParAIsite fitted the scaler before splitting, leaking the
validation set's statistics into training; here ``fit`` only ever sees training labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class LogStandardScaler:
    """``z = (log10(κ + 1) - mean) / std`` with the population std of the training labels."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, kappa: np.ndarray) -> LogStandardScaler:
        y = np.log10(np.asarray(kappa, dtype=float) + 1.0)
        if y.size == 0 or not np.all(np.isfinite(y)):
            raise ValueError("the transform needs at least one finite label greater than -1")
        std = float(y.std())
        return cls(mean=float(y.mean()), std=std if std > 0 else 1.0)

    def transform(self, kappa: np.ndarray) -> np.ndarray:
        return (np.log10(np.asarray(kappa, dtype=float) + 1.0) - self.mean) / self.std

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        return np.power(10.0, np.asarray(z, dtype=float) * self.std + self.mean) - 1.0

    def inverse_transform_torch(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable inverse, for a loss on the original W m⁻¹ K⁻¹ scale."""
        return torch.pow(10.0, z * self.std + self.mean) - 1.0

    def to_dict(self) -> dict[str, float | str]:
        return {"kind": "log10(k+1)-standardize", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> LogStandardScaler:
        return cls(mean=float(data["mean"]), std=float(data["std"]))
