"""The baseline a user tries first: gradient boosting on simple composition/structure descriptors.

Trained on log10 κ over the same splits as the deep models, so the two can be compared
split by split. Needs scikit-learn (``pip install matgl-ltc[baseline]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

import numpy as np
from ase import Atoms

from ..data.datasets import LTCDataset
from ..data.splits import Split
from .metrics import regression_metrics

_ELEMENT_PROPS = ("Z", "atomic_mass", "X", "atomic_radius", "row", "group")


@cache
def _element_vector(symbol: str) -> np.ndarray:
    from pymatgen.core import Element

    el = Element(symbol)
    values = []
    for prop in _ELEMENT_PROPS:
        try:
            value = float(getattr(el, prop))
        except (TypeError, ValueError):
            value = np.nan
        values.append(value)
    return np.array(values)


def descriptors(atoms: Atoms) -> np.ndarray:
    """Fraction-weighted mean, std, min and max of element properties, plus density-type features."""
    table = np.array([_element_vector(s) for s in atoms.get_chemical_symbols()])
    volume = abs(atoms.get_volume())
    dist = atoms.get_all_distances(mic=True)
    np.fill_diagonal(dist, np.inf)
    nn = float(np.min(dist)) if len(atoms) > 1 else float(np.min(atoms.cell.lengths()))
    mass = float(np.sum(table[:, 1]))
    extra = [volume / len(atoms), mass / volume, len(atoms), len(set(atoms.numbers.tolist())), nn]
    return np.concatenate(
        [np.nanmean(table, 0), np.nanstd(table, 0), np.nanmin(table, 0), np.nanmax(table, 0), extra]
    )


def baseline_cross_validation(
    dataset: LTCDataset, splits: Sequence[Split], seed: int = 42
) -> list[dict[str, float]]:
    """Validation metrics of a gradient-boosting regressor on log10 κ, one entry per split."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = np.array([descriptors(a) for a in dataset.atoms])
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
