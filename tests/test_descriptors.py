"""Descriptors and the hybrid head: physical values, an exact start, training, saving and scanning."""

from __future__ import annotations

import copy
import shutil
import warnings

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

from matgl_ltc import LTCEnsemble, LTCModel
from matgl_ltc.analysis.screening_report import analyze, read_scan
from matgl_ltc.data import random_splits
from matgl_ltc.data.descriptors import (
    DESCRIPTOR_NAMES,
    ELEMENT_PROPERTIES,
    descriptor_matrix,
    primitive_atom_count,
    structure_descriptors,
)
from matgl_ltc.data.graphs import collate_graphs
from matgl_ltc.model import UnboundedDescriptorsWarning
from matgl_ltc.screening import scan
from matgl_ltc.train import fit


def test_descriptors_are_named_and_physical(rocksalt):
    values = dict(zip(DESCRIPTOR_NAMES, structure_descriptors(rocksalt), strict=True))
    assert values["mean_atomic_mass"] == pytest.approx((22.98977 + 35.453) / 2, rel=1e-4)
    assert values["max_Z"] == 17 and values["min_Z"] == 11 and values["n_species"] == 2
    assert values["volume_per_atom"] == pytest.approx(5.64**3 / 8)  # 2-atom primitive cell of a³/4
    assert values["nearest_neighbour_distance"] == pytest.approx(5.64 / 2)
    assert values["mass_density"] == pytest.approx((22.98977 + 35.453) / (5.64**3 / 4), rel=1e-4)


def test_descriptors_describe_the_crystal_not_the_cell(togo15):
    # Togo15's cells are primitive; their supercells and conventional cells describe the same
    for atoms in togo15.atoms[::10]:
        assert primitive_atom_count(atoms) == len(atoms)
        supercell = atoms.repeat((2, 1, 3))
        assert primitive_atom_count(supercell) == len(atoms)
        np.testing.assert_allclose(structure_descriptors(supercell), structure_descriptors(atoms), rtol=1e-9)
        statistics = slice(0, 4 * len(ELEMENT_PROPERTIES))  # bit for bit: trees split anywhere
        np.testing.assert_array_equal(
            structure_descriptors(supercell)[statistics], structure_descriptors(atoms)[statistics]
        )
    assert primitive_atom_count(bulk("NaCl", "rocksalt", a=5.64, cubic=True)) == 2
    assert primitive_atom_count(bulk("NaCl", "rocksalt", a=5.64, cubic=True).repeat((3, 4, 2))) == 2
    wurtzite = bulk("ZnO", "wurtzite", a=3.25, c=5.2)  # its counts share 2, yet it is primitive
    assert primitive_atom_count(wurtzite) == 4
    assert primitive_atom_count(bulk("Cu", "fcc", a=3.6, cubic=True)) == 1
    rattled = bulk("Si", "diamond", a=5.43).repeat(2)
    rattled.positions += np.random.default_rng(0).normal(0.0, 0.05, rattled.positions.shape)
    assert primitive_atom_count(rattled) == 16  # no translation symmetry left: counted as given
    big = bulk("Si", "diamond", a=5.43, cubic=True).repeat(10)  # 8000 atoms: found in linear time
    assert primitive_atom_count(big) == 2


def test_an_element_crystal_has_no_spread_in_any_cell():
    """A sum over sites left ~1e-16 that depended on the cell, and the shipped trees split on it."""
    spreads = [name.startswith("std_") for name in DESCRIPTOR_NAMES]
    for atoms in (bulk("Si"), bulk("Si", cubic=True), bulk("Si", cubic=True).repeat(3)):
        assert (structure_descriptors(atoms)[spreads] == 0).all()


def test_hybrid_head_starts_where_the_model_was(eform_model, togo15):
    model = copy.deepcopy(eform_model)
    before = model.predict(togo15.atoms[:8])
    assert model.with_descriptors() is model and model.n_descriptors == len(DESCRIPTOR_NAMES)
    np.testing.assert_allclose(model.predict(togo15.atoms[:8]), before, rtol=1e-6)
    assert model.with_descriptors().n_descriptors == len(DESCRIPTOR_NAMES)  # idempotent
    # a property pymatgen lacks (Ne has no electronegativity) is NaN, and the head reads it as the mean
    neon = bulk("Ne", "fcc", a=4.4)
    assert np.isnan(dict(zip(DESCRIPTOR_NAMES, structure_descriptors(neon)))["mean_X"])
    assert np.isfinite(model.predict([neon])).all()
    plain_graphs = eform_model.graphs_for(togo15.atoms[:2])  # built without descriptors
    with pytest.raises(ValueError, match="descriptors=True"):
        model(collate_graphs(plain_graphs))


def test_hybrid_fit_save_load_and_scan(tmp_path, togo15, shared_dir, eform_model):
    model = LTCModel.from_backbone("megnet-eform", head_hidden=(32, 16), seed=0)
    split = random_splits(togo15.ids, n_splits=2)[0]
    result = fit(
        model,
        togo15,
        split,
        epochs=3,
        batch_size=16,
        descriptors=True,
        progress=False,
        out_dir=tmp_path / "fit",
    )
    assert result.metrics["settings"]["descriptors"] is True
    # standardized with the training split's statistics only
    train = descriptor_matrix(togo15.atoms[i] for i in togo15.indices(split.train))
    np.testing.assert_allclose(result.model.descriptor_mean.numpy(), train.mean(0), rtol=1e-4)
    spread = np.where(train.std(0) > 0, train.std(0), 1.0)  # a constant column (n_species: 2) is left as is
    np.testing.assert_allclose(result.model.descriptor_std.numpy(), spread, rtol=1e-4)
    # and clipped to the training split's range: the head is linear in them and must not extrapolate
    np.testing.assert_allclose(result.model.descriptor_min.numpy(), train.min(0), rtol=1e-6)
    np.testing.assert_allclose(result.model.descriptor_max.numpy(), train.max(0), rtol=1e-6)
    graphs = result.model.graphs_for(togo15.atoms[:2])
    edge = collate_graphs(graphs)
    far = collate_graphs(graphs)
    column = DESCRIPTOR_NAMES.index("n_atoms")
    edge.descriptors[:, column] = float(train[:, column].max())
    far.descriptors[:, column] = 500.0  # a 500-atom primitive cell, far outside Togo15's 2-4
    inside = collate_graphs(graphs)
    inside.descriptors[:, column] = float(train[:, column].min())
    with torch.no_grad():
        np.testing.assert_allclose(result.model(far).numpy(), result.model(edge).numpy(), rtol=1e-6)
        # the column does move the prediction inside the range, so the clip is what holds it
        assert not np.allclose(result.model(inside).numpy(), result.model(edge).numpy(), rtol=1e-6)
    # training moved the descriptor columns away from their zero start
    first = result.model.head.layers[0].weight.detach()
    assert float(first[:, result.model.embedding_dim :].abs().sum()) > 0

    loaded = LTCModel.load(tmp_path / "fit" / "model")
    np.testing.assert_array_equal(loaded.descriptor_max.numpy(), result.model.descriptor_max.numpy())
    # a hybrid model saved before the range was recorded still loads, unclipped, and says so
    state = torch.load(tmp_path / "fit" / "model" / "state.pt", weights_only=True)
    old = tmp_path / "old-model"
    shutil.copytree(tmp_path / "fit" / "model", old)
    torch.save(
        {k: v for k, v in state.items() if k not in ("descriptor_min", "descriptor_max")}, old / "state.pt"
    )
    with pytest.warns(UserWarning, match="training range"):
        unbounded = LTCModel.load(old)
    assert torch.isinf(unbounded.descriptor_max).all() and torch.isinf(unbounded.descriptor_min).all()
    assert loaded.clips_descriptors and not unbounded.clips_descriptors
    # an ensemble of such models says so once, with how many, not once per member
    old_ensemble = tmp_path / "old-ensemble"
    LTCEnsemble([loaded, loaded, eform_model]).save(old_ensemble)
    for name in ("member_0", "member_1"):
        shutil.copy(old / "state.pt", old_ensemble / name / "state.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LTCEnsemble.load(old_ensemble)
    said = [str(w.message) for w in caught if issubclass(w.category, UnboundedDescriptorsWarning)]
    assert len(said) == 1 and "2 of its 3 models" in said[0] and str(old_ensemble) in said[0]
    frames = ase.io.read(shared_dir / "data" / "mp_stable_scan.extxyz", ":24")
    frames = [a for a in frames if a.info["id"] != "mp-862690"]  # no edge at 4 Å
    np.testing.assert_allclose(loaded.predict(frames), result.model.predict(frames), rtol=1e-5)

    # an ensemble of a hybrid and a plain member scans exactly as it predicts
    ensemble = LTCEnsemble([loaded, eform_model])
    assert ensemble.uses_descriptors
    out = tmp_path / "scan.csv"
    ase.io.write(tmp_path / "in.extxyz", frames)
    summary = scan([tmp_path / "in.extxyz"], out, ensemble, chunk_size=10, progress=False)
    assert summary.n_bad == 0
    table = read_scan(out)
    np.testing.assert_allclose(table["ltc_mean"], ensemble.predict(frames).mean, rtol=1e-5)
    np.testing.assert_allclose(table["ltc_1"], loaded.predict(frames), rtol=1e-5)
    # ... and says, per structure, which descriptors left the hybrid member's training range
    expected = [",".join(names) for names in ensemble.predict(frames).extrapolated]
    assert list(table["extrapolated"]) == expected and all("n_species" in e for e in expected[1:15])
    report = analyze(out, tmp_path / "an", training_sets=["togo15"], top=5)
    by_id = dict(zip(table["id"], table["extrapolated"]))
    assert all(c["extrapolated"] == by_id[c["id"]] != "" for c in report["candidates"])
