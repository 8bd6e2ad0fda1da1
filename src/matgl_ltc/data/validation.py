"""Checks that keep bad structures and labels out of MEGNet, with errors that name the culprit.

matgl returns NaN, silently, for a structure whose graph has no edges; a dataset with one
such structure poisons a whole training run. Everything that enters a model passes here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from ase import Atoms
from matgl.config import DEFAULT_ELEMENTS
from pymatgen.optimization.neighbors import find_points_in_spheres

#: Elements MEGNet embeds (matgl's ``DEFAULT_ELEMENTS``: Z < 95 without Po, At, Rn, Fr, Ra).
MEGNET_ELEMENTS: tuple[str, ...] = tuple(DEFAULT_ELEMENTS)
_NUMERICAL_TOL = 1.0e-8
#: Closest two atoms may be (Å); the shortest bonds in crystals, O-H and H-H, are 0.7-1 Å.
MIN_DISTANCE = 0.5


class InvalidStructureError(ValueError):
    """A structure (or its label) that a model cannot use.

    Attributes
    ----------
    structure_id
        The id of the structure (``atoms.info["id"]`` or its position).
    reason
        Short machine-friendly class of the problem: ``empty``, ``not-periodic``,
        ``disordered``, ``unknown-element``, ``overlapping``, ``no-edges``, ``bad-label``,
        ``unreadable``.
    """

    def __init__(self, structure_id: str, reason: str, detail: str) -> None:
        self.structure_id = structure_id
        self.reason = reason
        self.detail = detail
        super().__init__(f"structure {structure_id!r}: {detail} [{reason}]")


class InvalidLabelError(InvalidStructureError):
    """A missing, non-finite or non-positive thermal conductivity label."""


@dataclass
class DatasetValidationError(ValueError):
    """Several structures of one dataset failed validation; all of them are listed."""

    source: str
    errors: list[InvalidStructureError] = field(default_factory=list)
    #: what most likely went wrong, when the errors share one cause (a label under another key)
    hint: str = ""

    def listing(self) -> str:
        """The bad structures, one per line (the first 20), each with its problem."""
        shown = "\n  ".join(str(e) for e in self.errors[:20])
        more = f"\n  ... and {len(self.errors) - 20} more" if len(self.errors) > 20 else ""
        return f"{len(self.errors)} invalid structure(s) in {self.source}:\n  {shown}{more}"

    def __str__(self) -> str:
        advice = self.hint or (
            "Fix or drop them, or pass on_invalid='skip' (matgl-ltc: --skip-invalid) to leave them "
            "out with a warning."
        )
        return f"{self.listing()}\n{advice}"


def _pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directed pairs (source, target, distance) within ``cutoff``, periodic images included, as
    matgl finds them; an atom's zero distance to itself is left out."""
    positions = np.ascontiguousarray(atoms.positions, dtype=float)
    src, dst, _, dist = find_points_in_spheres(
        positions,
        positions,
        r=float(cutoff),
        pbc=np.array([1, 1, 1], dtype=np.int64),
        lattice=np.ascontiguousarray(atoms.cell.array, dtype=float),
        tol=_NUMERICAL_TOL,
    )
    keep = (src != dst) | (dist > _NUMERICAL_TOL)
    return src[keep], dst[keep], dist[keep]


def count_edges(atoms: Atoms, cutoff: float) -> int:
    """Number of directed edges of the periodic graph at ``cutoff``, as matgl builds it."""
    return len(_pairs(atoms, cutoff)[0])


def check_overlaps(atoms: Atoms, structure_id: str, min_distance: float = MIN_DISTANCE) -> None:
    """Raise for atoms closer than ``min_distance`` Å: a site doubled by a symmetry expansion or a
    unit slip, which MEGNet would read as a real, impossibly short bond."""
    src, dst, dist = _pairs(atoms, min_distance)
    if len(dist):
        k = int(np.argmin(dist))
        i, j = int(src[k]), int(dst[k])
        symbols = atoms.get_chemical_symbols()
        other = "its periodic image" if i == j else f"atom {j} ({symbols[j]})"
        raise InvalidStructureError(
            structure_id,
            "overlapping",
            f"atom {i} ({symbols[i]}) and {other} are {dist[k]:.2f} Å apart, under "
            f"{min_distance:g} Å: a duplicated site or coordinates in the wrong unit",
        )


def check_label(value: object, structure_id: str) -> float:
    """Return the label as a float, or raise :class:`InvalidLabelError`.

    κ_L is strictly positive: the log transform and the MAPE loss both need it.
    """
    try:
        kappa = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidLabelError(structure_id, "bad-label", f"label {value!r} is not a number") from None
    if not math.isfinite(kappa):
        raise InvalidLabelError(structure_id, "bad-label", f"label {kappa} is not finite")
    if kappa <= 0:
        raise InvalidLabelError(structure_id, "bad-label", f"label {kappa} W/m/K is not positive")
    return kappa


def disorder_error(structure_id: str, occupancies: Iterable[dict[str, float]]) -> InvalidStructureError:
    """The error for a crystal with partially occupied sites (their ``{element: fraction}``), which a
    graph of whole atoms cannot hold."""
    sites = sorted({" ".join(f"{el}{frac:g}" for el, frac in sorted(o.items())) for o in occupancies})
    shown = "; ".join(sites[:3]) + (f"; ... {len(sites)} kinds in all" if len(sites) > 3 else "")
    return InvalidStructureError(
        structure_id,
        "disordered",
        f"partial occupancy ({shown}); MEGNet needs an ordered crystal: order it first, e.g. with "
        "pymatgen's OrderDisorderedStructureTransformation on a supercell",
    )


def is_partial(occupancy: dict[str, float]) -> bool:
    """Whether a site's ``{element: fraction}`` is disordered: mixed, or under 99 % occupied (a
    CIF's 0.999 is a full site written with rounding)."""
    return len(occupancy) > 1 or sum(occupancy.values()) < 0.99


def check_ordered(atoms: Atoms, structure_id: str) -> None:
    """Raise for a crystal ASE read with partial occupancies.

    ASE's CIF reader keeps one species per disordered site and records the occupancies in
    ``info["occupancy"]``; predicting on what it kept would silently answer for another compound.
    """
    occupancy = atoms.info.get("occupancy")
    if not isinstance(occupancy, dict):
        return
    partial = [species for species in occupancy.values() if isinstance(species, dict) and is_partial(species)]
    if partial:
        raise disorder_error(structure_id, partial)


def validate_atoms(
    atoms: Atoms,
    structure_id: str,
    cutoff: float = 4.0,
    element_types: Sequence[str] = MEGNET_ELEMENTS,
    check_edges: bool = True,
) -> None:
    """Raise :class:`InvalidStructureError` if MEGNet cannot give a meaningful output for ``atoms``."""
    if len(atoms) == 0:
        raise InvalidStructureError(structure_id, "empty", "structure has no atoms")
    if not all(atoms.pbc):
        raise InvalidStructureError(
            structure_id,
            "not-periodic",
            f"structure is not periodic in all three directions (pbc={atoms.pbc.tolist()}); "
            "lattice thermal conductivity needs a crystal",
        )
    if not np.isfinite(atoms.cell.array).all():
        raise InvalidStructureError(structure_id, "unreadable", "cell is not finite")
    volume = abs(float(np.linalg.det(atoms.cell.array)))
    if volume < 1e-6:
        raise InvalidStructureError(structure_id, "not-periodic", "cell has zero volume")
    check_ordered(atoms, structure_id)
    allowed = set(element_types)
    unknown = sorted(set(atoms.get_chemical_symbols()) - allowed)
    if unknown:
        raise InvalidStructureError(
            structure_id,
            "unknown-element",
            f"element(s) {', '.join(unknown)} are outside MEGNet's {len(allowed)} elements",
        )
    if not np.all(np.isfinite(atoms.positions)):
        raise InvalidStructureError(structure_id, "unreadable", "positions are not finite")
    check_overlaps(atoms, structure_id)
    if check_edges and count_edges(atoms, cutoff) == 0:
        raise InvalidStructureError(
            structure_id,
            "no-edges",
            f"no two atoms are within the {cutoff:g} Å cutoff, so its graph has no edges "
            "(matgl would silently return NaN)",
        )
