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
from collections.abc import Callable, Iterable, Sequence
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


def nearest_neighbour_distance(atoms: Atoms, cutoff: float = 4.0) -> float:
    """Shortest distance between two atoms, periodic images (of itself too) included.

    A neighbour list, so memory grows with the atoms, not with their square (ASE's
    ``get_all_distances(mic=True)`` takes hundreds of MB for a 300-atom cell).
    """
    from ase.neighborlist import neighbor_list

    while cutoff <= 64.0:
        distances = neighbor_list("d", atoms, cutoff)
        if len(distances):
            return float(distances.min())
        cutoff *= 2
    return float("nan")


def translation_images(
    atoms: Atoms, tolerance: float = 0.01
) -> tuple[np.ndarray, Callable[..., np.ndarray | None]] | None:
    """The fractional positions of the rarest species, and a check of candidate translations.

    ``image(shift, first=None)`` tells where a pure translation by ``shift`` sends each rare atom
    (their indices), or None if ``shift`` is not one: every atom must land on one of its species
    within ``tolerance`` Å (a periodic k-d tree); ``first`` checks only that many atoms of each
    species. None for a cell that cannot hold more than one lattice point (species counts with
    no common divisor).
    """
    from scipy.spatial import cKDTree

    numbers = atoms.numbers
    species, counts = np.unique(numbers, return_counts=True)
    if len(atoms) < 2 or np.gcd.reduce(counts) == 1:
        return None

    def wrapped(positions: np.ndarray) -> np.ndarray:
        """Into [0, 1) as the periodic tree needs: a hair below 0 would wrap to exactly 1.0."""
        positions = np.mod(positions, 1.0)
        positions[positions >= 1.0] = 0.0
        return positions

    frac = wrapped(atoms.get_scaled_positions(wrap=True))
    cell = np.asarray(atoms.cell)
    # every offset under tolerance in Å is under tolerance / (the cell's smallest stretch) in
    # fractional coordinates: the tree finds each candidate, then the distance is checked in Å
    radius = tolerance / np.linalg.svd(cell, compute_uv=False).min()
    groups = [frac[numbers == z] for z in species]
    trees = [cKDTree(group, boxsize=1.0) for group in groups]
    rare = groups[int(np.argmin(counts))]

    def image(shift: np.ndarray, first: int | None = None) -> np.ndarray | None:
        found_image = None
        for group, tree in zip(groups, trees):
            moved = wrapped(group[:first] + shift)
            found, nearest = tree.query(moved, distance_upper_bound=radius)
            if not np.isfinite(found).all():
                return None
            offset = moved - group[nearest]
            offset -= np.round(offset)
            if not (np.linalg.norm(offset @ cell, axis=1) < tolerance).all():
                return None
            if group is rare:
                found_image = nearest
        return found_image

    return rare, image


def primitive_atom_count(atoms: Atoms, tolerance: float = 0.01) -> int:
    """Atoms in the primitive cell, so a supercell or conventional cell describes as its crystal.

    Slack's model counts the atoms of the primitive cell; ``len(atoms)`` would make a conventional
    8-atom NaCl cell look like a more complex crystal than its 2-atom primitive one. Counts the
    cell's pure translations: those taking an atom of the rarest species onto another one and every
    atom onto one of its species (:func:`translation_images`). Only a cell whose species counts
    share a divisor can hold more than one lattice point, so most cells return at once; spglib
    finds the same count but takes about 20 ms even for a 2-atom cell.
    """
    found = translation_images(atoms, tolerance)
    if found is None:
        return len(atoms)
    rare, rare_image = found

    # The translations form a group acting freely on the rare atoms, so the lattice points are
    # the orbit of rare[0]: a candidate already in the orbit of the translations found so far
    # needs no check, which keeps a large supercell linear instead of quadratic in its atoms.
    images: list[np.ndarray] = []
    orbit = np.zeros(len(rare), dtype=bool)
    orbit[0] = True
    for j in range(1, len(rare)):
        if orbit[j]:
            continue
        shift = rare[j] - rare[0]
        if rare_image(shift, first=8) is None:
            continue
        image = rare_image(shift)
        if image is None:
            continue
        images.append(image)
        frontier = np.flatnonzero(orbit)
        while len(frontier):
            reached = np.unique(np.concatenate([img[frontier] for img in images]))
            frontier = reached[~orbit[reached]]
            orbit[frontier] = True
    points = int(orbit.sum())
    return len(atoms) // points


def structure_descriptors(atoms: Atoms, nearest: float | None = None) -> np.ndarray:
    """Site-weighted mean, std, min and max of element properties, then density-type features.

    Entries are named by :data:`DESCRIPTOR_NAMES`; a property pymatgen lacks for every
    element present is NaN. ``nearest``, the nearest-neighbour distance when the caller
    already has it (the shortest edge of the structure's graph), saves a neighbour search.
    """
    elements, counts = np.unique(atoms.get_chemical_symbols(), return_counts=True)
    table = np.array([element_properties(s) for s in elements])
    volume = abs(atoms.get_volume())
    if nearest is None:
        nearest = nearest_neighbour_distance(atoms)
    mass = float(counts @ table[:, 1])
    extra = [
        volume / len(atoms),
        mass / volume,
        primitive_atom_count(atoms),
        len(elements),
        nearest,
    ]
    # Statistics over the composition's fractions, not a sum over sites: a supercell then gives
    # bit for bit the same numbers, and an element crystal a spread of exactly 0 (a sum over
    # sites left ~1e-16 depending on the cell, and trees fitted on such values split on it).
    known = np.isfinite(table)
    weights = np.where(known, counts[:, None] / len(atoms), 0.0)
    values = np.where(known, table, 0.0)
    with warnings.catch_warnings():  # a property missing for every element present: NaN is the answer
        warnings.simplefilter("ignore", RuntimeWarning)
        weights = weights / weights.sum(0)
        mean = np.sum(weights * values, 0)
        std = np.sqrt(np.sum(weights * (values - mean) ** 2, 0))
        stats = [mean, std, np.nanmin(table, 0), np.nanmax(table, 0)]
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
            values = structure_descriptors(atoms, shortest_edge(graph))
            graph.descriptors = torch.tensor(values[None, :], dtype=torch.float32)


def shortest_edge(graph: Data) -> float | None:
    """Length of the shortest bond of a MEGNet graph (positions and image shifts precomputed)."""
    if getattr(graph, "pos", None) is None or graph.edge_index.shape[1] == 0:
        return None
    src, dst = graph.edge_index
    vectors = graph.pos[dst] + graph.pbc_offshift - graph.pos[src]
    return float(torch.linalg.vector_norm(vectors, dim=1).min())
