"""The target transform and the train/validation splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from matgl_ltc.data import LogStandardScaler, Split, load_splits, random_splits, save_splits


def test_transform_round_trips_and_uses_population_std(togo15):
    kappa = togo15.labels
    scaler = LogStandardScaler.fit(kappa[:70])
    y = np.log10(kappa[:70] + 1)
    assert scaler.mean == pytest.approx(y.mean()) and scaler.std == pytest.approx(y.std(ddof=0))
    z = scaler.transform(kappa)
    np.testing.assert_allclose(scaler.inverse_transform(z), kappa, rtol=1e-10)
    assert abs(z[:70].mean()) < 1e-10 and z[:70].std() == pytest.approx(1.0)
    assert LogStandardScaler.from_dict(scaler.to_dict()) == scaler


def test_transform_is_fitted_on_what_it_is_given_only(togo15):
    a = LogStandardScaler.fit(togo15.labels[:50])
    b = LogStandardScaler.fit(togo15.labels)
    assert a != b


def test_random_splits_are_seeded_by_index_and_stable(togo15):
    splits = random_splits(togo15.ids, n_splits=9)
    again = random_splits(togo15.ids, n_splits=9)
    assert splits == again
    for k, split in enumerate(splits):
        assert split.index == k and split.seed == k
        order = np.random.default_rng(k).permutation(len(togo15))
        assert list(split.validation) == [togo15.ids[i] for i in order[:19]]
        assert len(split.train) == 76 and len(split.validation) == 19
        assert set(split.train) | set(split.validation) == set(togo15.ids)
    assert len({s.validation for s in splits}) == 9
    # a longer list of splits starts with the same ones
    assert random_splits(togo15.ids, n_splits=3) == splits[:3]


def test_explicit_split_file(tmp_path, togo15):
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": togo15.ids[:80], "validation": togo15.ids[80:]}))
    (split,) = load_splits(path)
    assert list(split.validation) == togo15.ids[80:]
    save_splits([split, split], tmp_path / "two.json")
    assert load_splits(tmp_path / "two.json") == [split, split]


def test_bad_split_files(tmp_path, togo15):
    with pytest.raises(ValueError, match="both train and validation"):
        Split(("a", "b"), ("b",))
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"train": ["x"]}))
    with pytest.raises(ValueError, match="validation"):
        load_splits(path)
    with pytest.raises(KeyError, match="not-an-id"):
        togo15.indices(["not-an-id"])


def test_descriptor_baseline_runs_on_the_same_splits(togo15):
    from matgl_ltc.analysis.baseline import baseline_cross_validation
    from matgl_ltc.data.descriptors import structure_descriptors

    assert np.all(np.isfinite(structure_descriptors(togo15.atoms[0])))
    splits = random_splits(togo15.ids, n_splits=2)
    results = baseline_cross_validation(togo15, splits)
    assert len(results) == 2 and all(r["spearman"] > 0.5 for r in results)
