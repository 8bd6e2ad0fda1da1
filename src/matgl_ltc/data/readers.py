"""Streaming readers: every structure source the package accepts, one record at a time.

Screening reads hundreds of thousands of structures, so nothing here loads a whole source
into memory; a frame that cannot be read becomes a record carrying its error instead of
stopping the stream.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms

from .validation import InvalidStructureError, disorder_error, is_partial

#: File suffixes read as single structures inside a folder (CIF folders, POSCAR collections).
STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar", ".xyz", ".extxyz", ".json", ".cssr", ".res")
#: Label file of CGCNN-style CIF folders (``id,value`` per line, no header), as ParAIsite used.
ID_PROP_FILE = "id_prop.csv"


@dataclass
class StructureRecord:
    """One entry of a structure source: the structure, its id, its metadata, or why it failed."""

    id: str
    atoms: Atoms | None
    info: dict[str, Any] = field(default_factory=dict)
    error: InvalidStructureError | None = None


def to_atoms(structure: Any, fallback_id: str | None = None) -> Atoms:
    """Convert an ASE ``Atoms`` or a pymatgen ``Structure`` to ``Atoms`` (without copying Atoms).

    A disordered ``Structure`` raises :class:`InvalidStructureError` (``disordered``) naming it by
    its ``properties["id"]``, else ``fallback_id``, else its formula.
    """
    if isinstance(structure, Atoms):
        return structure
    try:
        from pymatgen.core import IStructure, Structure
        from pymatgen.io.ase import AseAtomsAdaptor
    except ImportError:  # pragma: no cover - pymatgen is a dependency
        raise TypeError(f"cannot convert {type(structure).__name__} to ase.Atoms") from None
    if isinstance(structure, (Structure, IStructure)):
        props = getattr(structure, "properties", None) or {}
        if not structure.is_ordered:
            occupancies = [site.species.as_dict() for site in structure]
            partial = [o for o in occupancies if is_partial(o)]
            if partial:
                sid = str(props.get("id", fallback_id or structure.composition.reduced_formula))
                raise disorder_error(sid, partial)
            structure = structure.copy()  # sites at 0.99-1: full, as ASE's CIF reader has them
            for i, occupancy in enumerate(occupancies):
                structure.replace(i, next(iter(occupancy)))
        atoms = AseAtomsAdaptor.get_atoms(structure)
        atoms.info.update({k: v for k, v in props.items() if np.isscalar(v)})
        return atoms
    raise TypeError(f"expected ase.Atoms or pymatgen Structure, got {type(structure).__name__}")


def _record_from_atoms(atoms: Atoms, fallback_id: str) -> StructureRecord:
    sid = str(atoms.info.get("id", fallback_id))
    return StructureRecord(id=sid, atoms=atoms, info=dict(atoms.info))


def _file_id(path: Path, in_folder: bool) -> str:
    """A file's id: its stem, but ``mp-1/CONTCAR`` for VASP's fixed names given one by one, so
    ``DIR/*/CONTCAR`` does not give every structure the same id."""
    if not in_folder and path.name in ("POSCAR", "CONTCAR") and path.parent.name:
        return f"{path.parent.name}/{path.name}"
    return path.stem


def _pymatgen_json(path: Path) -> list[tuple[str, dict[str, Any]]] | None:
    """(id, structure dict) pairs of a pymatgen JSON file (``Structure.to("x.json")``, a list of
    them, or an ``{id: structure}`` mapping as Materials Project dumps hold); None for any other JSON."""
    import json

    def is_structure(obj: Any) -> bool:
        return isinstance(obj, dict) and "lattice" in obj and "sites" in obj

    try:
        data = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return None
    if is_structure(data):
        return [(path.stem, data)]
    if isinstance(data, list) and data and all(is_structure(d) for d in data):
        return [(f"{path.stem}:{i}", d) for i, d in enumerate(data)]
    if isinstance(data, dict) and data and all(is_structure(d) for d in data.values()):
        return [(str(key), d) for key, d in data.items()]
    return None


def _iter_pymatgen_json(entries: list[tuple[str, dict[str, Any]]]) -> Iterator[StructureRecord]:
    from pymatgen.core import Structure

    for sid, entry in entries:
        try:
            atoms = to_atoms(Structure.from_dict(entry), sid)
        except InvalidStructureError as exc:
            yield StructureRecord(exc.structure_id, None, error=exc)
            continue
        except Exception as exc:  # pymatgen raises many types for a malformed dict
            if isinstance(exc, MemoryError):
                raise
            detail = f"not a pymatgen Structure: {type(exc).__name__}: {exc}"
            yield StructureRecord(sid, None, error=InvalidStructureError(sid, "unreadable", detail))
            continue
        atoms.info.setdefault("id", sid)
        yield _record_from_atoms(atoms, sid)


def _iter_file(path: Path, in_folder: bool = False) -> Iterator[StructureRecord]:
    stem = _file_id(path, in_folder)
    entries = _pymatgen_json(path) if path.suffix.lower() == ".json" else None
    if entries is not None:
        yield from _iter_pymatgen_json(entries)
        return
    try:
        frames = ase.io.iread(str(path), index=":")
        for i, atoms in enumerate(frames):
            fallback = stem if i == 0 else f"{stem}:{i}"
            yield _record_from_atoms(atoms, fallback)
    except Exception as exc:  # ase raises many types for malformed files
        if isinstance(exc, (KeyboardInterrupt, MemoryError)):
            raise
        sid = stem if in_folder else path.name
        err = InvalidStructureError(sid, "unreadable", f"cannot read {path}: {type(exc).__name__}: {exc}")
        yield StructureRecord(id=sid, atoms=None, error=err)


def _read_id_prop(folder: Path) -> dict[str, float]:
    labels: dict[str, float] = {}
    with open(folder / ID_PROP_FILE, newline="") as handle:
        for row in csv.reader(handle):
            if len(row) >= 2 and row[0].strip():
                try:
                    labels[row[0].strip()] = float(row[1])
                except ValueError:
                    continue  # a header line
    return labels


def is_structure_file(path: Path) -> bool:
    """A file a structure folder is read from: a known suffix, or VASP's POSCAR*/CONTCAR* names."""
    return path.is_file() and (
        path.suffix.lower() in STRUCTURE_SUFFIXES or "POSCAR" in path.name or "CONTCAR" in path.name
    )


def _iter_folder(folder: Path, label_key: str) -> Iterator[StructureRecord]:
    labels = _read_id_prop(folder) if (folder / ID_PROP_FILE).exists() else {}
    files = sorted(p for p in folder.iterdir() if is_structure_file(p))
    if not files:  # a typo'd or wrong folder must not pass as an empty, successful batch
        looked_for = ", ".join(f"*{suffix}" for suffix in STRUCTURE_SUFFIXES)
        detail = f"{folder} holds no structure file ({looked_for}, POSCAR*, CONTCAR*)"
        if any(p.is_dir() for p in folder.iterdir()):
            detail += "; its subfolders are not searched: pass them, e.g. DIR/*/CONTCAR"
        yield StructureRecord(
            folder.name, None, error=InvalidStructureError(folder.name, "unreadable", detail)
        )
    for path in files:
        for record in _iter_file(path, in_folder=True):
            # CGCNN's ids are file stems; a row naming the file (mp-1.cif) means the same structure
            label = labels.get(record.id, labels.get(path.name))
            if record.atoms is not None and label is not None:
                record.atoms.info.setdefault(label_key, label)
                record.info.setdefault(label_key, label)
            yield record


def _iter_ase_db(path: str) -> Iterator[StructureRecord]:
    from ase.db import connect

    with connect(path) as db:
        for row in db.select():
            try:
                atoms = row.toatoms()
            except Exception as exc:  # a row without positions, say
                sid = str(row.get("id_str", row.id))
                yield StructureRecord(sid, None, error=InvalidStructureError(sid, "unreadable", str(exc)))
                continue
            info = dict(row.key_value_pairs)
            info.update(row.data or {})
            sid = str(info.get("id", info.get("material_id", f"{Path(path).name}:{row.id}")))
            info.setdefault("id", sid)
            atoms.info.update(info)
            yield StructureRecord(id=sid, atoms=atoms, info=info)


def is_ase_db(path: str | os.PathLike) -> bool:
    """True for an ase.db address: a ``.db``/``.json`` database file or a PostgreSQL URL."""
    text = str(path)
    return text.startswith(("postgresql://", "postgres://", "mysql://")) or text.endswith(".db")


def iter_structures(source: Any, label_key: str = "ltc") -> Iterator[StructureRecord]:
    """Yield :class:`StructureRecord` from any supported source, lazily.

    Parameters
    ----------
    source
        A path to an extxyz (or any file ``ase.io.read`` understands), a folder of CIF/POSCAR
        files (with an optional CGCNN-style ``id_prop.csv`` of labels), an ase.db file or
        PostgreSQL URL, or an iterable of ``ase.Atoms`` / pymatgen ``Structure``.
    label_key
        Where a folder's ``id_prop.csv`` labels are stored in ``atoms.info``.
    """
    if isinstance(source, (str, os.PathLike)):
        if is_ase_db(source):
            yield from _iter_ase_db(str(source))
            return
        path = Path(source)
        if path.is_dir():
            yield from _iter_folder(path, label_key)
        elif path.exists():
            yield from _iter_file(path)
        else:
            raise FileNotFoundError(f"no such structure file or folder: {path}")
        return
    if isinstance(source, Iterable):
        for i, item in enumerate(source):
            try:
                atoms = to_atoms(item, f"item {i}")
            except InvalidStructureError as exc:
                yield StructureRecord(exc.structure_id, None, error=exc)
                continue
            except TypeError as exc:
                sid = f"item {i}"
                yield StructureRecord(sid, None, error=InvalidStructureError(sid, "unreadable", str(exc)))
                continue
            yield _record_from_atoms(atoms, str(i))
        return
    raise TypeError(f"cannot read structures from {type(source).__name__}")


def reduced_formula(atoms: Atoms) -> str:
    """pymatgen's reduced formula (NaCl, AlN, Bi2Te3), the name materials scientists expect."""
    from pymatgen.core import Composition

    return Composition(atoms.get_chemical_formula()).reduced_formula
