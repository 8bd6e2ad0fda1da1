"""Is the ensemble spread worth anything? Held-out checks and a one-number recalibration of σ.

Each structure of split k's validation set is scored with the residual of member k (the
model that never saw it) on log10 κ, against the ensemble's spread σ of log10 κ. A single
factor s with mean((r / sσ)²) = 1 recalibrates σ; coverage of ±1σ/±2σ and the Gaussian
negative log-likelihood are reported before and after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from ..model.ensemble import point_estimate


def uncertainty_report(residual: np.ndarray, sigma: np.ndarray) -> dict[str, float]:
    """Spearman(σ, |r|), coverage of ±1σ/±2σ, NLL, for residuals and σ on log10 κ."""
    residual, sigma = np.asarray(residual, float), np.clip(np.asarray(sigma, float), 1e-6, None)
    z = np.abs(residual) / sigma
    nll = 0.5 * np.mean(np.log(2 * np.pi * sigma**2) + z**2)
    return {
        "spearman_std_abs_error": float(stats.spearmanr(sigma, np.abs(residual)).statistic),
        "coverage_1sigma": float(np.mean(z <= 1)),
        "coverage_2sigma": float(np.mean(z <= 2)),
        "nll": float(nll),
        "n": int(residual.size),
    }


def fit_sigma_scale(residual: np.ndarray, sigma: np.ndarray) -> float:
    """The factor s making the held-out residuals unit-variance in units of sσ."""
    sigma = np.clip(np.asarray(sigma, float), 1e-6, None)
    return float(np.sqrt(np.mean((np.asarray(residual, float) / sigma) ** 2)))


def held_out_residuals(
    members: np.ndarray,
    true: np.ndarray,
    validation_masks: np.ndarray,
    held_out: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Residuals of the held-out member and the ensemble σ, on log10 κ.

    ``members`` is (structures × k) in W m⁻¹ K⁻¹; ``validation_masks`` (structures × k) is
    True where structure i is in member k's validation split. ``held_out`` (same shape; default
    ``members``) is what split k predicts, e.g. member k blended with its descriptor booster, when
    that is not the member alone; σ stays the members' spread, as at prediction time.
    """
    log_members = np.log10(np.clip(members, 1e-6, None))
    log_held_out = log_members if held_out is None else np.log10(np.clip(held_out, 1e-6, None))
    sigma = log_members.std(axis=1)
    rows, cols = np.nonzero(validation_masks)
    residual = log_held_out[rows, cols] - np.log10(true[rows])
    return residual, sigma[rows]


def blended_held_out(
    members: np.ndarray, boosted: np.ndarray, split_of: Sequence[int], weight: float
) -> np.ndarray:
    """Each member blended, in log space, with its own split's descriptor booster.

    ``boosted`` is (structures × splits) booster κ, ``split_of[j]`` member j's split: column j is
    what split ``split_of[j]`` predicts, the ``held_out`` of :func:`calibrate` for a boosted ensemble.
    """
    return np.stack(
        [
            point_estimate(members[:, j : j + 1], "geometric", boosted[:, k], weight)
            for j, k in enumerate(split_of)
        ],
        axis=1,
    )


def calibrate(
    members: np.ndarray,
    true: np.ndarray,
    validation_masks: np.ndarray,
    held_out: np.ndarray | None = None,
) -> dict[str, Any]:
    residual, sigma = held_out_residuals(members, true, validation_masks, held_out)
    scale = fit_sigma_scale(residual, sigma)
    return {
        "sigma_scale": scale,
        "raw": uncertainty_report(residual, sigma),
        "calibrated": uncertainty_report(residual, sigma * scale),
    }


def calibrate_on_splits(
    members: np.ndarray,
    true: np.ndarray,
    validation: Sequence[np.ndarray],
    split_of: Sequence[int],
    boosted: np.ndarray | None = None,
    weight: float = 0.0,
) -> dict[str, Any]:
    """:func:`calibrate` for an ensemble whose member j was trained on split ``split_of[j]``.

    ``validation[k]`` holds split k's validation indices; ``boosted`` (structures × splits), if
    given, is each split's booster κ, blended into what split k predicts with ``weight``.
    """
    masks = np.zeros(np.shape(members), dtype=bool)
    for j, k in enumerate(split_of):
        masks[validation[k], j] = True
    held_out = None if boosted is None else blended_held_out(members, boosted, split_of, weight)
    return calibrate(members, true, masks, held_out)
