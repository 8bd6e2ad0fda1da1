"""Labelled datasets: the bundled sets and anything a user points at, validated on load."""

from __future__ import annotations

import gzip
import io
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import ase.io
import numpy as np
from ase import Atoms

from .descriptors import attach_descriptors
from .graphs import GraphCache
from .readers import iter_structures, reduced_formula
from .validation import (
    DatasetValidationError,
    InvalidLabelError,
    InvalidStructureError,
    check_label,
    validate_atoms,
)

#: Names of the datasets shipped with the package; ``mix`` is ``togo15`` + ``hh143`` as in the paper.
BUNDLED_DATASETS: dict[str, str] = {
    "togo15": "Togo15 (L96): 95 rocksalt/zincblende/wurtzite compounds, phono3py-RTA κ_L at 300 K",
    "hh143": "HH143: 143 half-Heusler compounds, DFT/BTE κ_L at 300 K",
    "mix": "MIX: togo15 + hh143 (238 compounds), the paper's mixed set",
    "aflow_agl": "AFLOW AGL: 4399 ICSD structures, quasi-harmonic Debye-Grüneisen κ_L at 300 K (low fidelity)",
}
_COMPOSITES = {"mix": ("togo15", "hh143")}


@dataclass
class LTCDataset:
    """Structures with their ids and κ_L labels (W m⁻¹ K⁻¹; NaN where unlabelled).

    Graphs are built lazily, once per cutoff, and cached on the dataset so that every
    model (every split, every recipe stage) reading this dataset shares them.
    """

    atoms: list[Atoms]
    ids: list[str]
    labels: np.ndarray
    name: str = "dataset"
    card: str = ""
    #: how to read the set again (a registered name, or a file's absolute path with its label key);
    #: empty for structures given in memory, and for subsets
    source: str = ""
    label_key: str = "ltc"
    _graph_caches: dict[float, GraphCache] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=float)
        if not (len(self.atoms) == len(self.ids) == len(self.labels)):
            raise ValueError("atoms, ids and labels must have the same length")
        if len(set(self.ids)) != len(self.ids):
            seen: set[str] = set()
            dup = next(i for i in self.ids if i in seen or seen.add(i))  # type: ignore[func-returns-value]
            raise ValueError(f"dataset {self.name!r} has duplicate id {dup!r}; ids must be unique")
        self._index = {sid: i for i, sid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.atoms)

    def __getitem__(self, index: int) -> Atoms:
        return self.atoms[index]

    def __repr__(self) -> str:
        return f"LTCDataset(name={self.name!r}, n={len(self)}, labelled={self.is_labelled})"

    @property
    def file(self) -> str:
        """The file (absolute path) the set was read from, or a union holding one
        (``togo15+/data/my.extxyz``); empty for a registered set or for structures given in memory."""
        parts = self.source.split(UNION) if self.source else []
        return self.source if any(Path(part).is_absolute() for part in parts) else ""

    @property
    def is_labelled(self) -> bool:
        return bool(len(self)) and bool(np.all(np.isfinite(self.labels)))

    @property
    def formulas(self) -> list[str]:
        return [reduced_formula(a) for a in self.atoms]

    def count_shared_formulas(self, other: LTCDataset) -> int:
        """How many of these structures have a formula ``other`` holds: a model trained on ``other``
        has seen them (or a polymorph of them), so its scores on them are not held out."""
        seen = set(other.formulas)
        return sum(f in seen for f in self.formulas)

    def indices(self, ids: Sequence[str]) -> np.ndarray:
        """Positions of ``ids``; an unknown id is an error naming it."""
        missing = [i for i in ids if i not in self._index]
        if missing:
            raise KeyError(f"{len(missing)} id(s) not in dataset {self.name!r}, e.g. {missing[:5]}")
        return np.array([self._index[i] for i in ids], dtype=int)

    def elements(self, indices: Iterable[int]) -> list[str]:
        """The elements of the structures at ``indices``, sorted: a model's domain is its training split's."""
        return sorted({s for i in indices for s in self.atoms[i].get_chemical_symbols()})

    def subset(self, ids: Sequence[str], name: str | None = None) -> LTCDataset:
        idx = self.indices(ids)
        sub = LTCDataset(
            [self.atoms[i] for i in idx],
            [self.ids[i] for i in idx],
            self.labels[idx],
            name or self.name,
            self.card,
        )
        for cutoff, cache in self._graph_caches.items():  # share already-built graphs
            sub._graph_caches[cutoff] = cache.subset(idx)
        return sub

    def graph_cache(self, cutoff: float = 4.0, descriptors: bool = False) -> GraphCache:
        """The graphs of every structure at ``cutoff``, built on first use and then shared.

        ``descriptors=True`` (for a hybrid-head model) also stores each structure's descriptors
        on its graph, once.
        """
        key = float(cutoff)
        if key not in self._graph_caches:
            self._graph_caches[key] = GraphCache.from_atoms(self.atoms, self.ids, cutoff=key)
        cache = self._graph_caches[key]
        if descriptors:
            attach_descriptors(cache.graphs, self.atoms)
        return cache

    def __add__(self, other: LTCDataset) -> LTCDataset:
        return LTCDataset(
            self.atoms + other.atoms,
            self.ids + other.ids,
            np.concatenate([self.labels, other.labels]),
            f"{self.name}+{other.name}",
            "\n\n".join(c for c in (self.card, other.card) if c),
        )


def _load_union(
    parts: list[str], name: str | None, label_key: str, require_labels: bool, cutoff: float, on_invalid: str
) -> LTCDataset:
    """One set of several: registered parts keep their own labels, files read theirs at ``label_key``;
    the union's ``source`` joins the parts' so that it can be read again."""
    from ..plugins import available_datasets

    registry = available_datasets()
    sets = [
        load_dataset(
            part,
            label_key="ltc" if part in registry else label_key,
            require_labels=require_labels,
            cutoff=cutoff,
            on_invalid=on_invalid,
        )
        for part in parts
    ]
    union = sets[0]
    for other in sets[1:]:
        union = union + other
    union.name = name or union.name
    union.source = UNION.join(part.source or reference for part, reference in zip(sets, parts))
    union.label_key = label_key
    return union


def _names_registered_set(source: str) -> bool:
    """Whether a bare name (no folder part) is a registered dataset: it then means that set even
    where a file or folder of that name exists (a run folder made with ``--out togo15``, say),
    which ``./NAME`` still reads."""
    from ..plugins import available_datasets

    if Path(source).name != source or source not in available_datasets():
        return False
    if Path(source).exists():
        warnings.warn(
            f"{source!r} is a registered dataset and also a path here; reading the registered set "
            f"(write ./{source} for the path)",
            UserWarning,
            stacklevel=3,
        )
    return True


def can_load(reference: str) -> bool:
    """Whether ``load_dataset(reference)`` can read it here: a registered name, an existing path,
    or a union of those (``togo15+my.extxyz``)."""
    from ..plugins import available_datasets

    return reference in available_datasets() or Path(reference).exists() or bool(_union_parts(reference))


#: Joins the sets of a union: ``load_dataset("togo15+my.extxyz")`` reads both as one set.
UNION = "+"


def _union_parts(source: object) -> list[str]:
    """The parts of a union reference, when it is not itself a path and every part can be read."""
    if not isinstance(source, str) or UNION not in source or Path(source).exists():
        return []
    parts = source.split(UNION)
    return parts if all(part and can_load(part) for part in parts) else []


def dataset_parts(reference: str) -> list[str]:
    """The sets a reference reads: a union's parts, else the reference itself."""
    return _union_parts(reference) or [reference]


def bundled_path(name: str) -> Path:
    """Where the compressed extxyz of a bundled dataset lives (``MATGL_LTC_DATA`` overrides)."""
    override = os.environ.get("MATGL_LTC_DATA")
    if override:
        for candidate in (Path(override) / f"{name}.extxyz", Path(override) / f"{name}.extxyz.gz"):
            if candidate.exists():
                return candidate
    return Path(str(resources.files("matgl_ltc.data") / "bundled" / f"{name}.extxyz.gz"))


def dataset_card(name: str) -> str:
    """The data card (source, size, label method, licence) of a bundled dataset."""
    if name in _COMPOSITES:
        return "\n\n".join(dataset_card(part) for part in _COMPOSITES[name])
    card = Path(str(resources.files("matgl_ltc.data") / "bundled" / f"{name}.md"))
    return card.read_text() if card.exists() else ""


def load_bundled(name: str) -> list[Atoms]:
    """The frames of a bundled dataset (``mix`` concatenates its parts)."""
    if name in _COMPOSITES:
        return [a for part in _COMPOSITES[name] for a in load_bundled(part)]
    path = bundled_path(name)
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as handle:
            return ase.io.read(io.StringIO(handle.read()), index=":", format="extxyz")
    return ase.io.read(str(path), index=":")


_NO_LABEL = "no label"


def _missing_label(info: dict, label_key: str) -> str:
    others = sorted(str(k) for k in info if k != "id")
    return f"{_NO_LABEL}: info has no {label_key!r}" + (f" (it has {', '.join(others)})" if others else "")


def _label_key_hint(errors: list[InvalidStructureError], loaded: list[Atoms], label_key: str) -> str:
    """When no structure carries ``label_key``, the labels are most likely under another name."""
    if loaded or not all(e.detail.startswith(_NO_LABEL) for e in errors):
        return ""
    return (
        f"None of them has the label {label_key!r}. If κ_L is stored under another key, pass "
        "label_key='KEY' (matgl-ltc: --label-key KEY)."
    )


def load_dataset(
    source: str | os.PathLike | Sequence[Any] | LTCDataset,
    *,
    name: str | None = None,
    label_key: str = "ltc",
    require_labels: bool = True,
    cutoff: float = 4.0,
    on_invalid: str = "raise",
) -> LTCDataset:
    """Load and validate a dataset of structures with κ_L labels.

    Parameters
    ----------
    source
        A bundled name (``togo15``, ``hh143``, ``mix``, ``aflow_agl``), a path (extxyz or any
        ``ase.io`` format, a folder of CIF/POSCAR files with a CGCNN ``id_prop.csv``, an
        ase.db), or a list of ``ase.Atoms`` / pymatgen ``Structure`` with ``info[label_key]``.
    label_key
        The ``atoms.info`` / ase.db key holding κ_L in W m⁻¹ K⁻¹.
    require_labels
        Demand a finite, positive label on every structure (training); ``False`` keeps
        unlabelled structures with NaN (prediction).
    cutoff
        Graph cutoff (Å) at which every structure must have at least one edge.
    on_invalid
        ``"raise"`` (default): a :class:`DatasetValidationError` listing every bad structure;
        ``"skip"``: drop them with a warning that names them.
    """
    if isinstance(source, LTCDataset):
        return source
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}")
    parts = _union_parts(source)
    if parts:
        return _load_union(parts, name, label_key, require_labels, cutoff, on_invalid)
    is_path = isinstance(source, os.PathLike) or (
        isinstance(source, str) and Path(source).exists() and not _names_registered_set(source)
    )
    if isinstance(source, str) and not is_path:
        from ..plugins import available_datasets

        registry = available_datasets()
        if source not in registry:
            known = ", ".join(sorted(registry))
            missing = [part for part in source.split(UNION) if not can_load(part)] if UNION in source else []
            what = f"{', '.join(map(repr, missing))} (in {source!r})" if missing else repr(source)
            raise FileNotFoundError(f"{what} is neither a registered dataset ({known}) nor an existing path")
        spec = registry[source]
        loaded = spec.load()
        if isinstance(loaded, LTCDataset):
            loaded.source = loaded.source or source
            return loaded
        records = iter_structures(loaded, label_key=label_key)
        label = name or source
        card = getattr(spec, "card", "") or (dataset_card(source) if source in BUNDLED_DATASETS else "")
        origin = source
    else:
        records = iter_structures(source, label_key=label_key)
        label = name or (Path(source).stem if isinstance(source, (str, os.PathLike)) else "structures")
        card = ""
        origin = str(Path(source).resolve()) if is_path else ""

    atoms_list: list[Atoms] = []
    ids: list[str] = []
    labels: list[float] = []
    errors: list[InvalidStructureError] = []
    for record in records:
        try:
            if record.error is not None:
                raise record.error
            assert record.atoms is not None
            validate_atoms(record.atoms, record.id, cutoff=cutoff)
            raw = record.atoms.info.get(label_key)
            if not require_labels:
                kappa = float(raw) if raw is not None else float("nan")
            elif raw is None:
                raise InvalidLabelError(record.id, "bad-label", _missing_label(record.atoms.info, label_key))
            else:
                kappa = check_label(raw, record.id)
        except InvalidStructureError as err:
            errors.append(err)
            continue
        record.atoms.info.setdefault("id", record.id)
        atoms_list.append(record.atoms)
        ids.append(record.id)
        labels.append(kappa)

    if errors:
        where = str(source) if isinstance(source, (str, os.PathLike)) else label
        problem = DatasetValidationError(where, errors, _label_key_hint(errors, atoms_list, label_key))
        if on_invalid == "raise":
            raise problem
        warnings.warn(f"skipped {problem.listing()}", stacklevel=2)
    if not atoms_list:
        raise ValueError(f"dataset {label!r} holds no valid structure")
    return LTCDataset(atoms_list, ids, np.array(labels), label, card, origin, label_key)
