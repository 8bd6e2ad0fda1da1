"""Scoring a model, an ensemble or a run's models on a labelled dataset (the paper's cross-dataset table)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.datasets import LTCDataset
from ..model.ensemble import LTCEnsemble
from ..model.ltc_model import LTCModel
from .metrics import METRIC_NAMES, regression_metrics


def evaluate(
    model: LTCModel | LTCEnsemble, dataset: LTCDataset, batch_size: int = 64, estimate: str | None = None
) -> dict[str, Any]:
    """Metrics of every member (mean ± std over members, as the paper reports) and of the ensemble.

    ``ensemble_mean`` scores the members' mean (mTC); ``ensemble`` scores ``estimate``
    (default: the ensemble's own, :attr:`LTCEnsemble.default_estimate`), with the ensemble's
    descriptor boosters in it if it has them; ``boosting`` then scores the boosters alone.
    """
    ensemble = model if isinstance(model, LTCEnsemble) else LTCEnsemble([model])
    estimate = estimate or ensemble.default_estimate
    graphs = dataset.graph_cache(ensemble.cutoff, ensemble.uses_descriptors).graphs
    prediction = ensemble.predict_prepared(graphs, batch_size)
    members = prediction.members
    per_member = [regression_metrics(dataset.labels, members[:, k]) for k in range(members.shape[1])]
    summary = {
        m: {
            "mean": float(np.mean([p[m] for p in per_member])),
            "std": float(np.std([p[m] for p in per_member])),
        }
        for m in METRIC_NAMES
    }
    result = {
        "dataset": dataset.name,
        "n_structures": len(dataset),
        "n_members": members.shape[1],
        "members_mean": summary,
        "ensemble_mean": regression_metrics(dataset.labels, members.mean(axis=1)),
        "ensemble": {
            "estimate": estimate,
            **regression_metrics(dataset.labels, prediction.estimate(estimate)),
        },
        "per_member": per_member,
    }
    if prediction.boosted is not None:  # the boosters alone, to see what they add
        result["boosting_weight"] = prediction.boosting_weight
        result["boosting"] = regression_metrics(dataset.labels, prediction.boosted)
    return result
