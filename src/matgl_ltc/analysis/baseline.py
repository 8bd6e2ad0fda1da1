"""The baseline a user tries first: gradient boosting on simple composition/structure descriptors.

Trained on log10 κ over the same splits as the deep models, so the two can be compared
split by split.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.datasets import LTCDataset
from ..data.descriptors import descriptor_matrix
from ..data.splits import Split
from ..model.boosting import DescriptorBoosting
from .metrics import regression_metrics


def baseline_cross_validation(
    dataset: LTCDataset, splits: Sequence[Split], seed: int = 42
) -> list[dict[str, float]]:
    """Validation metrics of a gradient-boosting regressor on log10 κ, one entry per split.

    The regressor is :class:`~matgl_ltc.model.boosting.DescriptorBoosting`, the same model a
    recipe's ``boosting_weight`` blends into its ensemble.
    """
    x = descriptor_matrix(dataset.atoms)  # the hybrid head's features too
    y = np.log10(dataset.labels)
    results = []
    for split in splits:
        train, val = dataset.indices(split.train), dataset.indices(split.validation)
        model = DescriptorBoosting.fit(x[train], y[train], seed=seed)
        results.append(regression_metrics(dataset.labels[val], 10 ** model.predict_log10(x[val])))
    return results
