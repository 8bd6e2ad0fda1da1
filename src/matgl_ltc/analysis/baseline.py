"""The baseline a user tries first: gradient boosting on simple composition/structure descriptors.

Trained on log10 κ over the same splits as the deep models, so the two can be compared
split by split. Needs scikit-learn (``pip install matgl-ltc[baseline]``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.datasets import LTCDataset
from ..data.descriptors import descriptor_matrix
from ..data.splits import Split
from .metrics import regression_metrics


def baseline_cross_validation(
    dataset: LTCDataset, splits: Sequence[Split], seed: int = 42
) -> list[dict[str, float]]:
    """Validation metrics of a gradient-boosting regressor on log10 κ, one entry per split."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = descriptor_matrix(dataset.atoms)  # the hybrid head's features too
    y = np.log10(dataset.labels)
    results = []
    for split in splits:
        train, val = dataset.indices(split.train), dataset.indices(split.validation)
        model = HistGradientBoostingRegressor(
            max_iter=300, learning_rate=0.05, min_samples_leaf=5, random_state=seed
        )
        model.fit(x[train], y[train])
        results.append(regression_metrics(dataset.labels[val], 10 ** model.predict(x[val])))
    return results
