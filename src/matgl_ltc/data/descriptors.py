"""Composition and structure descriptors: what a phonon physicist would look at first.

Lattice thermal conductivity follows mass, bond stiffness and density (Slack's model:
κ ∝ M̄ θ_D³ δ / γ² T). MEGNet's atom embedding was learned for formation energy and never
sees atomic mass, and 76 phono3py labels are too few to teach it. These few numbers carry
that physics directly: the gradient-boosting baseline is built on them, and the hybrid
head (:meth:`~matgl_ltc.model.LTCModel.with_descriptors`) reads them beside the MEGNet
embedding.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from functools import cache

import numpy as np
import torch
from ase import Atoms
from torch_geometric.data import Data

ELEMENT_PROPERTIES = ("Z", "atomic_mass", "X", "atomic_radius", "row", "group")
_STATISTICS = ("mean", "std", "min", "max")
_STRUCTURE = ("volume_per_atom", "mass_density", "n_atoms", "n_species", "nearest_neighbour_distance")

#: Names of the entries of :func:`structure_descriptors`, in order.
DESCRIPTOR_NAMES: tuple[str, ...] = (
    *(f"{stat}_{prop}" for stat in _STATISTICS for prop in ELEMENT_PROPERTIES),
    *_STRUCTURE,
)


@cache
def element_properties(symbol: str) -> np.ndarray:
    """pymatgen's values of :data:`ELEMENT_PROPERTIES`; NaN where pymatgen has none."""
    from pymatgen.core import Element

    element = Element(symbol)
    values = []
    for prop in ELEMENT_PROPERTIES:
        try:
            with warnings.catch_warnings():  # pymatgen warns before returning NaN (e.g. X of Ne)
                warnings.simplefilter("ignore", UserWarning)
                value = float(getattr(element, prop))
        except (TypeError, ValueError):
            value = np.nan
        values.append(value)
    return np.array(values)


def structure_descriptors(atoms: Atoms) -> np.ndarray:
    """Site-weighted mean, std, min and max of element properties, then density-type features.

    Entries are named by :data:`DESCRIPTOR_NAMES`; a property pymatgen lacks for every
    element present is NaN.
    """
    table = np.array([element_properties(s) for s in atoms.get_chemical_symbols()])
    volume = abs(atoms.get_volume())
    if len(atoms) > 1:
        dist = atoms.get_all_distances(mic=True)
        np.fill_diagonal(dist, np.inf)
        nearest = float(np.min(dist))
    else:
        nearest = float(np.min(atoms.cell.lengths()))
    mass = float(np.sum(table[:, 1]))
    extra = [volume / len(atoms), mass / volume, len(atoms), len(set(atoms.numbers.tolist())), nearest]
    with warnings.catch_warnings():  # a property missing for every element present: NaN is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        stats = [np.nanmean(table, 0), np.nanstd(table, 0), np.nanmin(table, 0), np.nanmax(table, 0)]
    return np.concatenate([*stats, extra])


def descriptor_matrix(structures: Iterable[Atoms]) -> np.ndarray:
    """:func:`structure_descriptors` of many structures, one row each."""
    return np.array([structure_descriptors(a) for a in structures]).reshape(-1, len(DESCRIPTOR_NAMES))


def attach_descriptors(graphs: Sequence[Data], structures: Sequence[Atoms]) -> None:
    """Store each structure's descriptors on its graph (``graph.descriptors``, shape ``(1, D)``).

    Graphs that already carry them are left alone, so a dataset's cached graphs are
    described once however many models train on them.
    """
    for graph, atoms in zip(graphs, structures):
        if getattr(graph, "descriptors", None) is None:
            graph.descriptors = torch.tensor(structure_descriptors(atoms)[None, :], dtype=torch.float32)
