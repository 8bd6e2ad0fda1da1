"""Regression metrics for κ_L, on the original scale and on log10 κ.

MAPE alone flatters: a constant prediction scores about 0.80 on Togo15 because MAPE caps
under-prediction at 100 %. So every report carries log10-MAE, RMSE of log10 κ and the
Spearman rank correlation beside it.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

METRIC_NAMES = ("mape", "median_ape", "mae", "rmse", "r2", "log10_mae", "log10_rmse", "spearman")


def regression_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MAPE, median APE, MAE, RMSE, R² (W m⁻¹ K⁻¹), MAE/RMSE of log10 κ and Spearman ρ.

    APE is a fraction (0.28 = 28 %). Non-positive predictions are clipped to 1e-6 for the
    log metrics only.
    """
    true = np.asarray(true, dtype=float)
    pred = np.asarray(pred, dtype=float)
    if true.shape != pred.shape or true.size == 0:
        raise ValueError(f"need equal, non-empty arrays; got {true.shape} and {pred.shape}")
    ape = np.abs(pred - true) / np.abs(true)
    err = pred - true
    ss_tot = float(np.sum((true - true.mean()) ** 2))
    log_err = np.log10(np.clip(pred, 1e-6, None)) - np.log10(true)
    spearman = float(stats.spearmanr(true, pred).statistic) if true.size > 2 else float("nan")
    return {
        "mape": float(ape.mean()),
        "median_ape": float(np.median(ape)),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "r2": float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
        "log10_mae": float(np.abs(log_err).mean()),
        "log10_rmse": float(np.sqrt(np.mean(log_err**2))),
        "spearman": spearman,
    }
