"""Bundled datasets, readers, and validation of bad input."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.db import connect
from pymatgen.io.ase import AseAtomsAdaptor

from matgl_ltc.data import (
    BUNDLED_DATASETS,
    DatasetValidationError,
    InvalidLabelError,
    InvalidStructureError,
    dataset_card,
    iter_structures,
    load_dataset,
    validate_atoms,
)

DOCUMENTED_COUNTS = {"togo15": 95, "hh143": 143, "mix": 238, "aflow_agl": 4399}


@pytest.mark.parametrize("name", list(DOCUMENTED_COUNTS))
def test_bundled_dataset_counts_and_labels(name):
    data = load_dataset(name)
    assert len(data) == DOCUMENTED_COUNTS[name]
    assert data.is_labelled and np.all(data.labels > 0)
    assert len(set(data.ids)) == len(data)
    card = dataset_card(name)
    assert "Licence" in card and "Label method" in card


def test_documented_names_match_registry():
    assert set(BUNDLED_DATASETS) == set(DOCUMENTED_COUNTS)


@pytest.mark.parametrize("name", ["togo15", "hh143", "aflow_agl"])
def test_bundled_matches_shared_original(name, shared_dir):
    """The package data keeps every id and label of the original (ids make split files portable)."""
    original = {a.info["id"]: a for a in ase.io.read(shared_dir / "data" / f"{name}.extxyz", ":")}
    bundled = load_dataset(name)
    for sid, atoms, kappa in zip(bundled.ids, bundled.atoms, bundled.labels):
        assert kappa == pytest.approx(original[sid].info["ltc"])
        assert atoms.get_chemical_formula() == original[sid].get_chemical_formula()
        np.testing.assert_allclose(atoms.positions, original[sid].positions, atol=1e-6)
    left_out = set(original) - set(bundled.ids)
    assert left_out == ({"aflow-Rb1_ICSD_426967"} if name == "aflow_agl" else set())


def test_mix_is_togo15_plus_hh143():
    mix = load_dataset("mix")
    assert mix.ids == load_dataset("togo15").ids + load_dataset("hh143").ids


def test_unknown_dataset_name_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="togo15"):
        load_dataset("togo16")


def test_reads_extxyz_cif_folder_asedb_and_structures(tmp_path, togo15):
    atoms = togo15.atoms[:4]
    ase.io.write(tmp_path / "four.extxyz", atoms)
    assert load_dataset(tmp_path / "four.extxyz").ids == togo15.ids[:4]

    folder = tmp_path / "cifs"
    folder.mkdir()
    lines = []
    for sid, a, k in zip(togo15.ids[:4], atoms, togo15.labels[:4]):
        ase.io.write(folder / f"{sid}.cif", a)
        lines.append(f"{sid},{k}")
    (folder / "id_prop.csv").write_text("\n".join(lines))
    from_cif = load_dataset(folder)
    assert sorted(from_cif.ids) == sorted(togo15.ids[:4])
    np.testing.assert_allclose(from_cif.labels[from_cif.indices(togo15.ids[:4])], togo15.labels[:4])
    (folder / "id_prop.csv").write_text(
        "\n".join(f"{sid}.cif,{k}" for sid, k in zip(togo15.ids[:4], togo15.labels[:4]))
    )
    by_file_name = load_dataset(folder)  # rows naming the files, not their stems
    np.testing.assert_allclose(by_file_name.labels, from_cif.labels)

    with connect(tmp_path / "four.db") as db:
        for sid, a, k in zip(togo15.ids[:4], atoms, togo15.labels[:4]):
            db.write(a, id_str=sid, ltc=float(k))
    from_db = load_dataset(tmp_path / "four.db")
    np.testing.assert_allclose(from_db.labels, togo15.labels[:4])

    structures = [AseAtomsAdaptor.get_structure(a) for a in atoms]
    for s, sid, k in zip(structures, togo15.ids[:4], togo15.labels[:4]):
        s.properties.update({"id": sid, "ltc": float(k)})
    assert load_dataset(structures).ids == togo15.ids[:4]


def _error_of(atoms: Atoms) -> InvalidStructureError:
    with pytest.raises(DatasetValidationError) as info:
        load_dataset([atoms])
    assert len(info.value.errors) == 1
    return info.value.errors[0]


def test_empty_structure(rocksalt):
    empty = Atoms(cell=rocksalt.cell, pbc=True, info={"id": "nothing", "ltc": 1.0})
    err = _error_of(empty)
    assert (err.reason, err.structure_id) == ("empty", "nothing")


def test_non_periodic_structure(rocksalt):
    rocksalt.pbc = [True, True, False]
    err = _error_of(rocksalt)
    assert err.reason == "not-periodic" and "NaCl-test" in str(err)


def test_infinite_cell_is_named_so(rocksalt):
    rocksalt.cell[2, 2] = np.inf  # reported before as "no edges", which sent users looking at the atoms
    err = _error_of(rocksalt)
    assert (err.reason, err.detail) == ("unreadable", "cell is not finite")


def test_element_outside_megnet(rocksalt):
    rocksalt.symbols[0] = "Po"  # polonium is not among MEGNet's 89 elements
    err = _error_of(rocksalt)
    assert err.reason == "unknown-element" and "Po" in str(err)


def test_overlapping_atoms(rocksalt):
    doubled = rocksalt + rocksalt[:1]  # a site written twice, as a bad symmetry expansion does
    doubled.info = dict(rocksalt.info)
    err = _error_of(doubled)
    assert err.reason == "overlapping" and "atom 0 (Na) and atom 2 (Na) are 0.00 Å apart" in str(err)
    shrunk = bulk("NaCl", "rocksalt", a=0.564)  # nm read as Å
    shrunk.info.update(rocksalt.info)
    assert _error_of(shrunk).reason == "overlapping"


def test_graph_without_edges(isolated_atom):
    err = _error_of(isolated_atom)
    assert err.reason == "no-edges" and "lonely-Cu" in str(err) and "4 Å" in str(err)
    # a larger cutoff gives it neighbours (its own periodic images)
    validate_atoms(isolated_atom, "lonely-Cu", cutoff=10.5)


@pytest.mark.parametrize("label", [0.0, -2.0, float("nan"), float("inf"), "n/a", None])
def test_bad_labels(rocksalt, label):
    rocksalt.info["ltc"] = label
    if label is None:
        del rocksalt.info["ltc"]
    err = _error_of(rocksalt)
    assert isinstance(err, InvalidLabelError) and err.reason == "bad-label"


def test_unlabelled_structures_allowed_for_prediction(rocksalt):
    del rocksalt.info["ltc"]
    data = load_dataset([rocksalt], require_labels=False)
    assert np.isnan(data.labels[0]) and not data.is_labelled


def test_skip_keeps_the_rest_and_names_the_bad(togo15, isolated_atom, rocksalt):
    rocksalt.info["ltc"] = -1
    batch = [*togo15.atoms[:5], isolated_atom, rocksalt]
    with pytest.raises(DatasetValidationError) as info:
        load_dataset(batch)
    assert {e.structure_id for e in info.value.errors} == {"lonely-Cu", "NaCl-test"}
    with pytest.warns(UserWarning, match="lonely-Cu"):
        kept = load_dataset(batch, on_invalid="skip")
    assert kept.ids == togo15.ids[:5]


def test_labels_under_another_key_say_so_and_load_with_label_key(tmp_path, togo15):
    renamed = [atoms.copy() for atoms in togo15.atoms[:6]]
    for atoms in renamed:
        atoms.info["kappa"] = atoms.info.pop("ltc")
    path = tmp_path / "kappa.extxyz"
    ase.io.write(path, renamed)
    with pytest.raises(DatasetValidationError) as info:
        load_dataset(path)
    assert all("info has no 'ltc'" in e.detail and "kappa" in e.detail for e in info.value.errors)
    assert "label_key='KEY'" in str(info.value) and "--label-key" in str(info.value)
    loaded = load_dataset(path, label_key="kappa")
    np.testing.assert_allclose(loaded.labels, togo15.labels[:6])
    # one structure without its label is that structure's problem, not a wrong key
    del renamed[2].info["kappa"]
    ase.io.write(path, renamed)
    with pytest.raises(DatasetValidationError) as info:
        load_dataset(path, label_key="kappa")
    assert [e.structure_id for e in info.value.errors] == [togo15.ids[2]]
    assert "--label-key" not in str(info.value) and "--skip-invalid" in str(info.value)


def test_garbage_file_is_reported_not_raised_midstream(tmp_path):
    bad = tmp_path / "garbage.extxyz"
    bad.write_text("this is not\nan extxyz file\n")
    records = list(iter_structures(bad))
    assert len(records) == 1 and records[0].error is not None and records[0].error.reason == "unreadable"


def test_duplicate_ids_rejected(togo15):
    twice = [togo15.atoms[0], togo15.atoms[0].copy()]
    with pytest.raises(ValueError, match="duplicate id"):
        load_dataset(twice)


def test_disordered_crystals_are_refused_not_silently_ordered(tmp_path, rocksalt):
    """ASE's CIF reader keeps one species of a mixed site; predicting on it would answer for NaCl."""
    from pymatgen.core import Structure

    mixed = AseAtomsAdaptor.get_structure(rocksalt)
    mixed.replace_species({"Na": {"Na": 0.5, "K": 0.5}})
    mixed.to(filename=str(tmp_path / "NaKCl.cif"))
    ordered = AseAtomsAdaptor.get_structure(rocksalt)
    ordered.to(filename=str(tmp_path / "NaCl.cif"))

    records = {r.id: r for r in iter_structures(tmp_path)}
    assert records["NaKCl"].atoms.get_chemical_formula() in {"ClNa", "ClK"}  # ASE kept one species
    with pytest.raises(InvalidStructureError, match=r"NaKCl.*K0\.5 Na0\.5") as info:
        validate_atoms(records["NaKCl"].atoms, "NaKCl")
    assert info.value.reason == "disordered"
    validate_atoms(records["NaCl"].atoms, "NaCl")  # full occupancies are fine

    (record,) = iter_structures([Structure.from_file(tmp_path / "NaKCl.cif")])
    assert record.atoms is None and record.error.reason == "disordered"
    rounded = AseAtomsAdaptor.get_structure(rocksalt)  # a full site written as 0.999 is full
    rounded.replace_species({"Na": {"Na": 0.999}})
    rounded.to(filename=str(tmp_path / "rounded.cif"))
    for source in (tmp_path / "rounded.cif", [rounded]):
        (record,) = iter_structures(source)
        validate_atoms(record.atoms, "rounded")
        assert record.atoms.get_chemical_formula() == "ClNa"


def test_vasp_folders_are_read_and_an_empty_folder_is_an_error(tmp_path, rocksalt):
    vasp = tmp_path / "relaxed"
    vasp.mkdir()
    ase.io.write(vasp / "CONTCAR", rocksalt, format="vasp")
    ase.io.write(vasp / "POSCAR_NaCl", rocksalt, format="vasp")
    (vasp / "notes.txt").write_text("not a structure")
    assert sorted(r.id for r in iter_structures(vasp)) == ["CONTCAR", "POSCAR_NaCl"]
    plain = rocksalt.copy()
    plain.info = {"ltc": 7.1}  # frames without ids are named by file and position, in a folder too
    ase.io.write(vasp / "two.extxyz", [plain, plain])
    assert sorted(r.id for r in iter_structures(vasp)) == ["CONTCAR", "POSCAR_NaCl", "two", "two:1"]

    for mp_id in ("mp-22862", "mp-1265"):
        (tmp_path / "nested" / mp_id).mkdir(parents=True)
        ase.io.write(tmp_path / "nested" / mp_id / "CONTCAR", rocksalt, format="vasp")
    files = sorted((tmp_path / "nested").glob("*/CONTCAR"))  # what the error below advises
    assert [r.id for f in files for r in iter_structures(f)] == ["mp-1265/CONTCAR", "mp-22862/CONTCAR"]
    (record,) = iter_structures(tmp_path / "nested")
    assert record.atoms is None and record.error.reason == "unreadable"
    assert "holds no structure file" in str(record.error) and "subfolders are not searched" in str(
        record.error
    )


def test_a_registered_name_is_not_shadowed_by_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "togo15").mkdir()  # say, a run folder made with --out togo15
    with pytest.warns(UserWarning, match=r"write \./togo15 for the path"):
        assert len(load_dataset("togo15")) == DOCUMENTED_COUNTS["togo15"]
    with pytest.raises(DatasetValidationError, match="holds no structure file"):
        load_dataset("./togo15")


def test_pymatgen_json_files(tmp_path, togo15):
    """``Structure.to("x.json")``, a list of them, or an {id: structure} dump, labels in properties."""
    import json

    structures = [AseAtomsAdaptor.get_structure(a) for a in togo15.atoms[:3]]
    for s, k in zip(structures, togo15.labels[:3]):
        s.properties = {"ltc": float(k)}  # no id: named by file, position or key
    structures[0].to(filename=str(tmp_path / "one.json"))
    (tmp_path / "many.json").write_text(json.dumps([s.as_dict() for s in structures]))
    by_id = {sid: s.as_dict() for sid, s in zip(togo15.ids[:3], structures)}
    by_id["broken"] = {"lattice": 1, "sites": []}
    (tmp_path / "by_id.json").write_text(json.dumps(by_id))

    assert load_dataset(tmp_path / "one.json").ids == ["one"]
    many = load_dataset(tmp_path / "many.json")
    assert many.ids == ["many:0", "many:1", "many:2"]
    np.testing.assert_allclose(many.labels, togo15.labels[:3])
    with pytest.raises(DatasetValidationError, match=r"broken.*not a pymatgen Structure"):
        load_dataset(tmp_path / "by_id.json")
    with pytest.warns(UserWarning, match="skipped 1 invalid structure"):
        kept = load_dataset(tmp_path / "by_id.json", on_invalid="skip")
    assert kept.ids == togo15.ids[:3]


def test_a_union_of_sets_reads_as_one(tmp_path, togo15):
    hh = load_dataset("hh143")
    mine = [a.copy() for a in hh.atoms[:5]]
    for atoms in mine:
        atoms.info["kappa"] = atoms.info.pop("ltc")
        atoms.info["id"] = f"my-{atoms.info['id']}"
    ase.io.write(tmp_path / "mine.extxyz", mine)

    union = load_dataset(f"togo15+{tmp_path / 'mine.extxyz'}", label_key="kappa")  # togo15 keeps 'ltc'
    assert len(union) == 100 and union.ids[95:] == [a.info["id"] for a in mine]
    np.testing.assert_allclose(union.labels, np.concatenate([togo15.labels, hh.labels[:5]]))
    assert union.file == f"togo15+{(tmp_path / 'mine.extxyz').resolve()}"  # can be read again
    assert load_dataset(union.file, label_key="kappa").ids == union.ids
    with pytest.raises(FileNotFoundError, match=r"'nope' \(in 'togo15\+nope'\) is neither"):
        load_dataset("togo15+nope")
    with pytest.raises(ValueError, match="duplicate id"):
        load_dataset("togo15+mix")
