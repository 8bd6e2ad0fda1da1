"""DescriptorBoosting: gradient-boosted trees on the hybrid head's descriptors, predicting log10 κ.

The package's baseline, and a companion of an ensemble: on Togo15 the trees and the deep members
err on different structures, so a log-space blend of the two (``Recipe.boosting_weight``) is more
accurate than either (``docs/accuracy.md``). Fitting uses scikit-learn's
``HistGradientBoostingRegressor``; the fitted trees are stored as plain arrays (``boosting.npz``,
read with ``allow_pickle=False``) and walked here with numpy, so a saved booster loads without
unpickling anything and predicts without importing scikit-learn.

Fitted with ``low_fidelity`` (e.g. AFLOW AGL's descriptors and labels), the trees read a 30th
column, the fidelity (0 for the low-fidelity labels, 1 for the target's), and predict at fidelity
1: the multi-fidelity idea of matgl's band-gap model, where the trees learn from thousands of AGL
structures how κ follows the descriptors and from the target set the offset to its labels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from ..data.descriptors import DESCRIPTOR_NAMES, descriptor_matrix
from .ltc_model import ModelLoadError

BOOSTING_JSON = "boosting.json"
BOOSTING_ARRAYS = "boosting.npz"
#: The baseline's settings (``benchmarks/baseline.md``): 76 training structures need small leaves.
DEFAULT_SETTINGS: dict[str, Any] = {"max_iter": 300, "learning_rate": 0.05, "min_samples_leaf": 5}
#: How much one target structure weighs against one low-fidelity structure in a multi-fidelity
#: fit: chosen on Togo15's splits from 3, 30, 58 (the two fidelities weighing the same), 100 and
#: 300, by the trees alone (log10-MAE 0.197, 0.168, 0.174, 0.188, 0.193; ``docs/accuracy.md``).
FIDELITY_WEIGHT = 30.0
_NODE_FIELDS = ("feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf", "value")


def _as_descriptors(x: np.ndarray, fidelity: float | None = None) -> np.ndarray:
    """A checked descriptor matrix, rounded through float32 as graphs store descriptors.

    Fitted and evaluated on the same rounding, a booster gives identical predictions from
    :func:`descriptor_matrix` rows and from ``graph.descriptors``. ``fidelity`` appends the
    fidelity column of a multi-fidelity booster.
    """
    x = np.asarray(x, dtype=np.float32).astype(float)
    if x.ndim != 2 or x.shape[1] != len(DESCRIPTOR_NAMES):
        raise ValueError(
            f"expected a (structures × {len(DESCRIPTOR_NAMES)}) descriptor matrix, got {x.shape}"
        )
    return x if fidelity is None else np.column_stack([x, np.full(len(x), float(fidelity))])


class DescriptorBoosting:
    """Fitted trees mapping :data:`~matgl_ltc.data.descriptors.DESCRIPTOR_NAMES` to log10 κ.

    Parameters
    ----------
    baseline
        The constant the trees' sum starts from (log10 κ).
    nodes
        One array per node field (``feature_idx``, ``num_threshold``, ``missing_go_to_left``,
        ``left``, ``right``, ``is_leaf``, ``value``), the trees' nodes concatenated.
    roots
        Index of each tree's root node in ``nodes``; a tree's child indices are relative to it.
    metadata
        Provenance (settings, training structures, scikit-learn version); ``low_fidelity``, where
        present, marks trees that read the fidelity column.
    """

    def __init__(
        self,
        baseline: float,
        nodes: dict[str, np.ndarray],
        roots: np.ndarray,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        missing = set(_NODE_FIELDS) - set(nodes)
        if missing:
            raise ValueError(f"tree nodes lack the field(s) {sorted(missing)}")
        self.baseline = float(baseline)
        self.nodes = {name: np.asarray(nodes[name]) for name in _NODE_FIELDS}
        for flag in ("is_leaf", "missing_go_to_left"):  # scikit-learn stores them as uint8
            self.nodes[flag] = self.nodes[flag].astype(bool)
        self.roots = np.asarray(roots, dtype=np.int64)
        self.metadata = dict(metadata or {})
        # children as indices into the concatenated nodes (scikit-learn's are per tree)
        sizes = np.diff(np.append(self.roots, len(self.nodes["value"])))
        if len(self.roots) == 0 or self.roots[0] != 0 or (sizes < 1).any():
            raise ValueError("tree roots must start at 0 and increase")
        tree_start = np.repeat(self.roots, sizes)
        self._left = tree_start + self.nodes["left"].astype(np.int64)
        self._right = tree_start + self.nodes["right"].astype(np.int64)
        # every split leads further down its own tree to a valid feature: a walk always ends
        inner = np.flatnonzero(~self.nodes["is_leaf"])
        tree_end = (tree_start + np.repeat(sizes, sizes))[inner]
        children = np.concatenate([self._left[inner], self._right[inner]])
        features = self.nodes["feature_idx"][inner]
        if (
            (children <= np.tile(inner, 2)).any()
            or (children >= np.tile(tree_end, 2)).any()
            or (features < 0).any()
            or (features >= len(DESCRIPTOR_NAMES) + self.multi_fidelity).any()
        ):
            raise ValueError("tree nodes point outside their tree or to an unknown descriptor")

    def __repr__(self) -> str:
        return f"DescriptorBoosting(trees={len(self.roots)}, trained_on={self.metadata.get('n_train')})"

    @property
    def multi_fidelity(self) -> bool:
        """Whether the trees read a fidelity column (fitted with ``low_fidelity``)."""
        return "low_fidelity" in self.metadata

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        log10_kappa: np.ndarray,
        seed: int = 42,
        low_fidelity: tuple[np.ndarray, np.ndarray] | None = None,
        fidelity_weight: float = FIDELITY_WEIGHT,
        low_fidelity_name: str = "",
        **settings: Any,
    ) -> DescriptorBoosting:
        """Fit on a descriptor matrix (rows from :func:`descriptor_matrix`) and log10 κ labels.

        ``low_fidelity`` = (descriptors, log10 κ) of a larger, cheaper set fitted beside the target
        rows at fidelity 0, each target row weighing ``fidelity_weight`` of them; predictions are
        then made at the target's fidelity. ``low_fidelity_name`` (e.g. ``aflow_agl``) is recorded
        with them.
        """
        import sklearn  # only fitting needs it; predicting walks the stored trees
        from sklearn.ensemble import HistGradientBoostingRegressor

        y, weights = np.asarray(log10_kappa, dtype=float), None
        if low_fidelity is None:
            x = _as_descriptors(x)
        else:
            x_low, y_low = low_fidelity
            x = np.vstack([_as_descriptors(x_low, 0.0), _as_descriptors(x, 1.0)])
            weights = np.concatenate([np.ones(len(y_low)), np.full(len(y), float(fidelity_weight))])
            y = np.concatenate([np.asarray(y_low, dtype=float), y])
        options = {**DEFAULT_SETTINGS, **settings}
        model = HistGradientBoostingRegressor(random_state=seed, **options).fit(x, y, sample_weight=weights)
        trees = [predictors[0].nodes for predictors in model._predictors]  # one tree per iteration
        if any(t["is_categorical"].any() for t in trees):
            raise ValueError("categorical splits are not supported: descriptors are numeric")
        roots = np.cumsum([0] + [len(t) for t in trees[:-1]])
        nodes = {name: np.concatenate([t[name] for t in trees]) for name in _NODE_FIELDS}
        metadata = {
            "settings": {**options, "random_state": seed},
            "n_train": len(log10_kappa),
            "descriptors": list(DESCRIPTOR_NAMES),
            "sklearn_version": sklearn.__version__,
        }
        if low_fidelity is not None:
            metadata["low_fidelity"] = {"n_train": len(low_fidelity[1]), "weight": float(fidelity_weight)}
            if low_fidelity_name:  # lets a run tell whether a saved booster is the one it asks for
                metadata["low_fidelity"]["dataset"] = low_fidelity_name
        return cls(float(np.ravel(model._baseline_prediction)[0]), nodes, roots, metadata)

    def predict_log10(self, x: np.ndarray, block: int = 1024) -> np.ndarray:
        """log10 κ per descriptor row, as scikit-learn's ``predict`` gives it.

        Every tree descends one level per step for a block of rows at once, so a prediction takes
        as many numpy steps as the deepest tree is deep, not trees × depth.
        """
        x = _as_descriptors(x, 1.0 if self.multi_fidelity else None)
        n = self.nodes
        out = np.empty(len(x))
        for start in range(0, len(x), block):
            rows = x[start : start + block]
            node = np.repeat(self.roots[:, None], len(rows), axis=1)  # (trees × rows)
            columns = np.broadcast_to(np.arange(len(rows)), node.shape)
            while True:
                inner = ~n["is_leaf"][node]
                if not inner.any():
                    break
                at = node[inner]
                values = rows[columns[inner], n["feature_idx"][at]]
                left = np.where(
                    np.isnan(values), n["missing_go_to_left"][at], values <= n["num_threshold"][at]
                )
                node[inner] = np.where(left, self._left[at], self._right[at])
            out[start : start + len(rows)] = self.baseline + n["value"][node].sum(axis=0)
        return out

    def predict(self, structures: Iterable[Atoms]) -> np.ndarray:
        """κ (W m⁻¹ K⁻¹) of ASE structures."""
        return 10 ** self.predict_log10(descriptor_matrix(structures))

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(folder / BOOSTING_ARRAYS, roots=self.roots, **self.nodes)
        description = {
            "@class": "DescriptorBoosting",
            "@version": 1,
            "baseline": self.baseline,
            **self.metadata,
        }
        (folder / BOOSTING_JSON).write_text(json.dumps(description, indent=1))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> DescriptorBoosting:
        """Load a saved booster: plain arrays and JSON, nothing unpickled."""
        folder = Path(path)
        try:
            description = json.loads((folder / BOOSTING_JSON).read_text())
            with np.load(folder / BOOSTING_ARRAYS, allow_pickle=False) as arrays:
                nodes = {name: arrays[name] for name in _NODE_FIELDS}
                roots = arrays["roots"]
        except FileNotFoundError as exc:
            raise ModelLoadError(
                f"{folder} is not a DescriptorBoosting folder ({exc.filename} missing)"
            ) from None
        except (ValueError, KeyError, OSError) as exc:
            raise ModelLoadError(f"{folder}: unreadable DescriptorBoosting ({exc})") from None
        if description.get("@class") != "DescriptorBoosting":
            raise ModelLoadError(f"{folder / BOOSTING_JSON} does not describe a DescriptorBoosting")
        if description.get("descriptors", list(DESCRIPTOR_NAMES)) != list(DESCRIPTOR_NAMES):
            raise ModelLoadError(
                f"{folder} was fitted on other descriptors than this version of matgl-ltc computes"
            )
        baseline = description.pop("baseline")
        for key in ("@class", "@version"):
            description.pop(key)
        try:
            return cls(baseline, nodes, roots, description)
        except ValueError as exc:
            raise ModelLoadError(f"{folder}: corrupted DescriptorBoosting ({exc})") from None
