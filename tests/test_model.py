"""Backbones with strict pretrained loading, LTCModel predictions and persistence."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from matgl_ltc import InvalidStructureError, LTCModel, ModelLoadError
from matgl_ltc.model import PretrainedWeightsError, load_pretrained_megnet, pretrained_dir
from matgl_ltc.plugins import available_backbones


def test_eform_weights_arrive_cscl_formation_energy():
    """matgl's tutorial value: CsCl (Pm-3m, a = 4.1437 Å) → -1.924 eV/atom."""
    megnet, info = load_pretrained_megnet("MEGNet-MP-2018.6.1-Eform")
    megnet.eval()
    cscl = Structure(Lattice.cubic(4.1437), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    mean, std = info["normalizer"]
    energy = float(megnet.predict_structure(cscl)) * std + mean
    assert energy == pytest.approx(-1.924, abs=2e-3)


def test_ltc_model_carries_the_pretrained_backbone(eform_model):
    megnet, _ = load_pretrained_megnet("MEGNet-MP-2018.6.1-Eform")
    ours = eform_model.backbone.state_dict()
    for key, value in megnet.state_dict().items():
        if key.startswith("output_proj.layers.4."):
            assert key not in ours  # the 16→1 formation-energy layer is dropped
        else:
            torch.testing.assert_close(ours[key], value)
    assert eform_model.embedding_dim == 16


def test_random_backbone_differs_from_pretrained(eform_model):
    rand = LTCModel.from_backbone("megnet-random", head_hidden=(32, 16), seed=0)
    key = "embedding.layer_node_embedding.weight"
    assert not torch.allclose(rand.backbone.state_dict()[key], eform_model.backbone.state_dict()[key])


def test_bandgap_backbone_loads_strictly_and_predicts(togo15):
    model = LTCModel.from_backbone("megnet-bandgap", head_hidden=(16,), seed=0)
    assert model.cutoff == 5.0 and model.backbone_config["ntypes_state"] == 4
    assert np.all(np.isfinite(model.predict(togo15.atoms[:3])))


def test_tampered_weights_fail_loudly(tmp_path, monkeypatch):
    name = "MEGNet-MP-2018.6.1-Eform"
    copy = tmp_path / name
    shutil.copytree(pretrained_dir(name), copy)
    state = torch.load(copy / "state.pt", weights_only=True)
    state.pop("model.embedding.layer_node_embedding.weight")
    torch.save(state, copy / "state.pt")
    monkeypatch.setenv("MATGL_LTC_PRETRAINED", str(tmp_path))
    with pytest.raises(PretrainedWeightsError, match="layer_node_embedding"):
        load_pretrained_megnet(name)


def test_builtin_backbones_registered():
    assert {"megnet-random", "megnet-eform", "megnet-bandgap"} <= set(available_backbones())
    with pytest.raises(KeyError, match="megnet-eform"):
        LTCModel.from_backbone("megnet-nope")


def test_batched_and_single_predictions_agree(eform_model, togo15):
    structures = togo15.atoms[:12]
    batched = eform_model.predict(structures, batch_size=5)
    single = np.array([eform_model.predict_structure(a) for a in structures])
    np.testing.assert_allclose(batched, single, rtol=1e-5, atol=1e-5)
    pmg = [
        Structure.from_ase_atoms(a) if hasattr(Structure, "from_ase_atoms") else None for a in structures[:2]
    ]
    if pmg[0] is not None:
        np.testing.assert_allclose(eform_model.predict(pmg), batched[:2], rtol=1e-5)


def test_prediction_names_a_structure_without_edges(eform_model, togo15, isolated_atom):
    with pytest.raises(InvalidStructureError, match="lonely-Cu") as info:
        eform_model.predict([togo15.atoms[0], isolated_atom])
    assert info.value.reason == "no-edges"


def test_save_load_identical_predictions(tmp_path, eform_model, togo15):
    eform_model.transform = type(eform_model.transform)(mean=1.1, std=0.6)
    before = eform_model.predict(togo15.atoms[:8])
    eform_model.save(tmp_path / "m", metadata={"dataset": "togo15", "recipe": "test"})
    loaded = LTCModel.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.predict(togo15.atoms[:8]), before)
    assert loaded.transform == eform_model.transform
    assert loaded.metadata["dataset"] == "togo15" and loaded.metadata["backbone"] == "megnet-eform"
    assert {p.name for p in (tmp_path / "m").iterdir()} == {"model.json", "model.pt", "state.pt"}
    # model.pt holds only plain data: it loads under weights_only
    assert torch.load(tmp_path / "m" / "model.pt", weights_only=True)["@class"] == "LTCModel"


def test_corrupted_and_foreign_directories(tmp_path, eform_model):
    with pytest.raises(ModelLoadError, match=r"no model\.json"):
        LTCModel.load(tmp_path)
    with pytest.raises(ModelLoadError, match="TransformedTargetModel"):
        LTCModel.load(pretrained_dir("MEGNet-MP-2018.6.1-Eform"))
    eform_model.save(tmp_path / "m")
    (tmp_path / "m" / "state.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelLoadError, match="corrupted"):
        LTCModel.load(tmp_path / "m")
    eform_model.save(tmp_path / "m2")
    description = json.loads((tmp_path / "m2" / "model.json").read_text())
    description["kwargs"]["head_hidden"] = [64]
    (tmp_path / "m2" / "model.json").write_text(json.dumps(description))
    with pytest.raises(ModelLoadError, match="do not match"):
        LTCModel.load(tmp_path / "m2")
    (tmp_path / "m2" / "model.json").write_text("{ truncated")
    with pytest.raises(ModelLoadError, match="corrupted"):
        LTCModel.load(tmp_path / "m2")


def test_pickled_payload_is_refused(tmp_path, eform_model):
    """A state.pt smuggling a Python object is rejected by weights_only loading."""
    eform_model.save(tmp_path / "m")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "m" / "state.pt")
    with pytest.raises(ModelLoadError):
        LTCModel.load(tmp_path / "m")
