"""Scoring a model, an ensemble or a run's models on a labelled dataset (the paper's cross-dataset table)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from ..data.datasets import LTCDataset
from ..model.ensemble import LTCEnsemble
from ..model.ltc_model import LTCModel, training_sets
from .metrics import METRIC_NAMES, regression_metrics


def evaluate(
    model: LTCModel | LTCEnsemble, dataset: LTCDataset, batch_size: int = 64, estimate: str | None = None
) -> dict[str, Any]:
    """Metrics of every member (mean ± std over members, as the paper reports) and of the ensemble.

    ``ensemble_mean`` scores the members' mean (mTC); ``ensemble`` scores ``estimate``
    (default: the ensemble's own, :attr:`LTCEnsemble.default_estimate`), with the ensemble's
    descriptor boosters in it if it has them; ``boosting`` then scores the boosters alone.
    ``seen`` counts, per set the members were trained on (or replayed), the structures
    of ``dataset`` whose formula it holds; there is a warning when any are, since scores on them
    are not held out (a run's held-out scores are in its summary).
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
    result["seen"] = seen_in_training(ensemble, dataset)
    for name, shared in result["seen"].items():
        warnings.warn(
            f"the models were trained on {name}, which holds the formula of {shared} of "
            f"{dataset.name}'s {len(dataset)} structures: their scores here are not held out",
            UserWarning,
            stacklevel=2,
        )
    if prediction.boosted is not None:  # the boosters alone, to see what they add
        result["boosting_weight"] = prediction.boosting_weight
        result["boosting"] = regression_metrics(dataset.labels, prediction.boosted)
    return result


def seen_in_training(ensemble: LTCEnsemble, dataset: LTCDataset) -> dict[str, int]:
    """Per set the members trained on or replayed (at their own fidelity: AGL's κ is another
    quantity) that can be read here, registered or a file: how many of ``dataset``'s structures
    have a formula it holds."""
    from ..data.datasets import can_load, load_dataset

    sources = {
        name: key for member in ensemble.members for name, key in training_sets(member.metadata).items()
    }
    shared = {
        name: dataset.count_shared_formulas(load_dataset(name, label_key=sources[name]))
        for name in sorted(sources)
        if can_load(name)
    }
    return {name: n for name, n in shared.items() if n}
