"""Shared fixtures: real data, real matgl models, tiny sizes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from matgl_ltc import LTCModel, load_dataset


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The development data folder (``MATGL_LTC_SHARED``, ``../shared`` in CI)."""
    path = Path(os.environ.get("MATGL_LTC_SHARED", "../shared")).resolve()
    assert (path / "data").is_dir(), f"MATGL_LTC_SHARED={path} has no data/ folder"
    return path


@pytest.fixture(scope="session")
def togo15():
    return load_dataset("togo15")


@pytest.fixture(scope="session")
def eform_model() -> LTCModel:
    """A real Eform-backbone model with a small random head (weights as after from_backbone)."""
    return LTCModel.from_backbone("megnet-eform", head_hidden=(32, 16), seed=0)


@pytest.fixture()
def rocksalt() -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.info.update({"id": "NaCl-test", "ltc": 7.1})
    return atoms


@pytest.fixture()
def isolated_atom() -> Atoms:
    """One atom in a 10 Å cube: no neighbour within 4 Å, so its graph has no edges."""
    return Atoms(
        "Cu", positions=[[0, 0, 0]], cell=np.eye(3) * 10.0, pbc=True, info={"id": "lonely-Cu", "ltc": 3.0}
    )
