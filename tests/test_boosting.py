"""DescriptorBoosting: scikit-learn's trees stored as arrays, walked with numpy, loaded without pickle."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matgl_ltc.data import random_splits
from matgl_ltc.data.descriptors import DESCRIPTOR_NAMES, descriptor_matrix
from matgl_ltc.model import ModelLoadError
from matgl_ltc.model.boosting import BOOSTING_ARRAYS, BOOSTING_JSON, DEFAULT_SETTINGS, DescriptorBoosting


@pytest.fixture(scope="module")
def togo15_split(togo15):
    split = random_splits(togo15.ids, n_splits=1)[0]
    x = descriptor_matrix(togo15.atoms)
    return x, np.log10(togo15.labels), togo15.indices(split.train), togo15.indices(split.validation)


def test_booster_predicts_what_scikit_learn_predicts(togo15_split):
    from sklearn.ensemble import HistGradientBoostingRegressor

    x, y, train, val = togo15_split
    booster = DescriptorBoosting.fit(x[train], y[train])
    rounded = x.astype(np.float32).astype(float)  # what graphs carry, and what the booster fits on
    reference = HistGradientBoostingRegressor(random_state=42, **DEFAULT_SETTINGS).fit(
        rounded[train], y[train]
    )
    with_missing = rounded.copy()
    with_missing[val[:3], :5] = np.nan  # missing values follow each node's learnt direction
    for rows in (x, with_missing):
        np.testing.assert_allclose(booster.predict_log10(rows), reference.predict(rows), rtol=0, atol=1e-12)
    assert len(booster.roots) == DEFAULT_SETTINGS["max_iter"] and booster.metadata["n_train"] == len(train)
    # it learnt something: on the validation part it beats predicting the training mean
    error = np.abs(booster.predict_log10(x[val]) - y[val]).mean()
    assert error < 0.7 * np.abs(y[train].mean() - y[val]).mean()
    with pytest.raises(ValueError, match="descriptor matrix"):
        booster.predict_log10(x[:, :5])


def test_saved_booster_loads_from_plain_arrays(tmp_path, togo15_split, togo15):
    x, y, train, val = togo15_split
    booster = DescriptorBoosting.fit(x[train], y[train])
    booster.save(tmp_path / "b")
    with np.load(tmp_path / "b" / BOOSTING_ARRAYS, allow_pickle=False) as arrays:
        assert all(arrays[name].dtype != object for name in arrays.files)
    loaded = DescriptorBoosting.load(tmp_path / "b")
    np.testing.assert_array_equal(loaded.predict_log10(x), booster.predict_log10(x))
    structures = [togo15.atoms[i] for i in val[:4]]
    np.testing.assert_allclose(loaded.predict(structures), 10 ** booster.predict_log10(x[val[:4]]))
    assert loaded.metadata["descriptors"] == list(DESCRIPTOR_NAMES)

    # a corrupted tree that would send the walk back up (an endless loop) is refused at load
    with np.load(tmp_path / "b" / BOOSTING_ARRAYS) as arrays:
        tampered = {name: arrays[name].copy() for name in arrays.files}
    inner = np.flatnonzero(~tampered["is_leaf"].astype(bool))[0]
    tampered["left"][inner] = 0
    (tmp_path / "bad").mkdir()
    np.savez(tmp_path / "bad" / BOOSTING_ARRAYS, **tampered)
    (tmp_path / "bad" / BOOSTING_JSON).write_text((tmp_path / "b" / BOOSTING_JSON).read_text())
    with pytest.raises(ModelLoadError, match="corrupted"):
        DescriptorBoosting.load(tmp_path / "bad")

    description = json.loads((tmp_path / "b" / BOOSTING_JSON).read_text())
    description["descriptors"] = description["descriptors"][:-1]
    (tmp_path / "b" / BOOSTING_JSON).write_text(json.dumps(description))
    with pytest.raises(ModelLoadError, match="other descriptors"):
        DescriptorBoosting.load(tmp_path / "b")
    (tmp_path / "b" / BOOSTING_ARRAYS).unlink()
    with pytest.raises(ModelLoadError, match="not a DescriptorBoosting folder"):
        DescriptorBoosting.load(tmp_path / "b")


def test_a_multi_fidelity_booster_learns_the_offset_to_the_target_labels(tmp_path, togo15_split):
    """AGL labels sit about 9x below phono3py: with the fidelity as an input the trees learn that."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    from matgl_ltc.data import load_dataset

    x, y, train, val = togo15_split
    agl = load_dataset("aflow_agl")
    x_low, y_low = descriptor_matrix(agl.atoms[:1500]), np.log10(agl.labels[:1500])
    booster = DescriptorBoosting.fit(x[train], y[train], low_fidelity=(x_low, y_low))
    assert booster.multi_fidelity and booster.metadata["low_fidelity"] == {"n_train": 1500, "weight": 30.0}

    # the same trees as scikit-learn's on the stacked, weighted rows, predicting at fidelity 1
    def rounded(a: np.ndarray, fidelity: float) -> np.ndarray:
        return np.column_stack([a.astype(np.float32).astype(float), np.full(len(a), fidelity)])

    reference = HistGradientBoostingRegressor(random_state=42, **DEFAULT_SETTINGS).fit(
        np.vstack([rounded(x_low, 0.0), rounded(x[train], 1.0)]),
        np.concatenate([y_low, y[train]]),
        sample_weight=np.concatenate([np.ones(1500), np.full(len(train), 30.0)]),
    )
    np.testing.assert_allclose(
        booster.predict_log10(x), reference.predict(rounded(x, 1.0)), rtol=0, atol=1e-12
    )
    offset = reference.predict(rounded(x[val], 1.0)) - reference.predict(rounded(x[val], 0.0))
    assert offset.mean() > 0.3  # phono3py-level κ above AGL's, in log10
    booster.save(tmp_path / "mf")
    loaded = DescriptorBoosting.load(tmp_path / "mf")
    assert loaded.multi_fidelity
    np.testing.assert_array_equal(loaded.predict_log10(x), booster.predict_log10(x))
