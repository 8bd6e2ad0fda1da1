"""Graph conversion with matgl's converter, done once per structure and shared by every model.

Graphs are stored ready for MEGNet: Cartesian positions and periodic-image shifts are
precomputed, so a forward pass needs no per-structure Python work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from matgl.ext.ase import Atoms2Graph
from torch_geometric.data import Batch, Data

from .descriptors import attach_descriptors
from .validation import MEGNET_ELEMENTS, InvalidStructureError, validate_atoms


def atoms_to_graph(
    atoms: Atoms,
    cutoff: float = 4.0,
    element_types: Sequence[str] = MEGNET_ELEMENTS,
    structure_id: str | None = None,
    converter: Atoms2Graph | None = None,
    descriptors: bool = False,
) -> Data:
    """Build the MEGNet graph of one periodic structure.

    ``descriptors=True`` also stores the structure's composition/structure descriptors
    (``graph.descriptors``), which a hybrid-head model reads beside the MEGNet embedding.

    Raises
    ------
    InvalidStructureError
        If an element is outside ``element_types`` or the graph has no edges at ``cutoff``
        (matgl would return NaN for it without a word).
    """
    sid = (
        structure_id if structure_id is not None else str(atoms.info.get("id", atoms.get_chemical_formula()))
    )
    converter = converter or Atoms2Graph(element_types=tuple(element_types), cutoff=cutoff)
    try:
        graph, lattice, _ = converter.get_graph(atoms)
    except KeyError as exc:
        raise InvalidStructureError(
            sid, "unknown-element", f"element {exc.args[0]} is outside MEGNet's element list"
        ) from None
    if graph.edge_index.shape[1] == 0:
        raise InvalidStructureError(
            sid,
            "no-edges",
            f"no two atoms are within the {cutoff:g} Å cutoff, so its graph has no edges "
            "(matgl would silently return NaN)",
        )
    lat = lattice.reshape(3, 3)
    graph.pos = graph.frac_coords @ lat
    graph.pbc_offshift = graph.pbc_offset @ lat
    graph.edge_index = graph.edge_index.long()
    del graph.frac_coords, graph.pbc_offset
    if descriptors:
        attach_descriptors([graph], [atoms])
    return graph


def structure_graph(
    structure: object, index: int, cutoff: float, descriptors: bool = False
) -> tuple[Atoms, str, Data]:
    """Atoms, id and graph of one input structure (Atoms or Structure) for prediction.

    The id is ``info["id"]`` or ``#<index> <formula>``; a structure MEGNet cannot handle raises
    :class:`InvalidStructureError` naming it.
    """
    from .readers import to_atoms

    atoms = to_atoms(structure, f"#{index} {getattr(structure, 'formula', '')}".rstrip())
    sid = str(atoms.info.get("id", f"#{index} {atoms.get_chemical_formula()}"))
    validate_atoms(atoms, sid, cutoff, check_edges=False)
    return (
        atoms,
        sid,
        atoms_to_graph(atoms, cutoff, MEGNET_ELEMENTS, structure_id=sid, descriptors=descriptors),
    )


@dataclass
class GraphCache:
    """Graphs of a list of structures at one cutoff, in the structures' order."""

    graphs: list[Data]
    ids: list[str]
    cutoff: float

    @classmethod
    def from_atoms(cls, atoms: Sequence[Atoms], ids: Sequence[str], cutoff: float = 4.0) -> GraphCache:
        converter = Atoms2Graph(element_types=MEGNET_ELEMENTS, cutoff=cutoff)
        graphs = [atoms_to_graph(a, cutoff, structure_id=i, converter=converter) for a, i in zip(atoms, ids)]
        return cls(graphs, list(ids), float(cutoff))

    def __len__(self) -> int:
        return len(self.graphs)

    def subset(self, indices: Sequence[int] | np.ndarray) -> GraphCache:
        return GraphCache([self.graphs[i] for i in indices], [self.ids[i] for i in indices], self.cutoff)

    def batch(self, indices: Sequence[int] | np.ndarray | None = None) -> Batch:
        chosen = self.graphs if indices is None else [self.graphs[i] for i in indices]
        return collate_graphs(chosen)


def collate_graphs(graphs: Sequence[Data]) -> Batch:
    """Merge graphs into one disjoint batch graph (PyG's ``Batch``)."""
    return Batch.from_data_list(list(graphs))


def batch_indices(
    n: int, batch_size: int, sizes: Sequence[int] | None = None, max_size: int | None = None
) -> list[np.ndarray]:
    """Contiguous index chunks of at most ``batch_size`` items and, given per-item ``sizes``
    (edges per graph), at most ``max_size`` in total, so one batch of large crystals does not
    outgrow the CPU caches (an item larger than ``max_size`` gets a batch of its own)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if sizes is None or max_size is None:
        return [np.arange(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]
    batches, start, total = [], 0, 0
    for i in range(n):
        if i > start and (i - start >= batch_size or total + sizes[i] > max_size):
            batches.append(np.arange(start, i))
            start, total = i, 0
        total += int(sizes[i])
    if n > start:
        batches.append(np.arange(start, n))
    return batches
