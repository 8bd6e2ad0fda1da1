"""Screening: stream a structure source through an ensemble into a table or an ase.db, resumably.

Records are processed in chunks; a chunk's rows (good and bad alike, in stream order) are
written and flushed before the next chunk starts. The output therefore always holds a
prefix of the stream, and a rerun skips exactly that many records: nothing lost, nothing
duplicated. Bad structures get a row with ``error`` set and never stop the scan.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_masses
from matgl.ext.ase import Atoms2Graph
from tqdm.auto import tqdm

from .data.graphs import atoms_to_graph
from .data.readers import StructureRecord, iter_structures, reduced_formula
from .data.validation import MEGNET_ELEMENTS, InvalidStructureError, validate_atoms
from .model.ensemble import LTCEnsemble
from .model.ltc_model import LTCModel

_AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660
FEATURES = ("volume", "nsites", "density", "atomic_density", "nelements")
#: per-structure ensemble columns; the point estimates are those of :func:`matgl_ltc.model.point_estimate`
PREDICTION_COLUMNS = ("ltc_mean", "ltc_geometric", "ltc_min_mape", "ltc_std", "ltc_std_raw", "ltc_var")
FLAG_COLUMNS = ("out_of_domain", "unseen_elements", "extrapolated")
_RESERVED = {"id", "formula", "error", *PREDICTION_COLUMNS, *FLAG_COLUMNS, *FEATURES}


def structure_features(atoms: Atoms) -> dict[str, float]:
    """The paper's structural features: cell volume (Å³), sites, density (g/cm³), atoms per Å³, elements."""
    volume = float(abs(atoms.get_volume()))
    mass = float(atomic_masses[atoms.numbers].sum())
    return {
        "volume": volume,
        "nsites": len(atoms),
        "density": mass / volume * _AMU_PER_A3_TO_G_PER_CM3,
        "atomic_density": len(atoms) / volume,
        "nelements": len(set(atoms.numbers.tolist())),
    }


_MEMBER_COLUMN = re.compile(r"ltc_\d+")


def _is_scan_column(key: str) -> bool:
    """Whether ``key`` names a column the scan itself writes (a member's ``ltc_<n>`` included)."""
    return key in _RESERVED or bool(_MEMBER_COLUMN.fullmatch(key))


def first_names(names: str, shown: int = 3) -> str:
    """The first few of a comma-separated column (``unseen_elements``, ``extrapolated``), and how
    many more."""
    parts = [name for name in names.split(",") if name]
    more = f" (+{len(parts) - shown})" if len(parts) > shown else ""
    return ", ".join(parts[:shown]) + more


def numeric_metadata(info: dict[str, Any]) -> dict[str, float]:
    """Numeric per-structure metadata the input carries (energy_per_atom, band_gap, ...).

    A key that names one of the scan's own columns (``volume``, ``ltc_mean``, a member's
    ``ltc_3``...) is kept as ``info_<key>`` so it never overwrites the scan's value.
    """
    out = {}
    for key, value in info.items():
        key = str(key)
        if key == "id" or isinstance(value, bool):
            continue
        if isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(float(value)):
            if _is_scan_column(key):
                key = f"info_{key}"
            out[key] = float(value)
    return out


@dataclass
class ScanSummary:
    output: Path
    n_total: int = 0
    n_ok: int = 0
    n_bad: int = 0
    n_skipped_resume: int = 0
    seconds: float = 0.0
    bad: list[tuple[str, str]] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1

    def count(self, rows: list[dict[str, Any]]) -> None:
        """Tally written rows: predicted ones, and bad ones with their reason."""
        for row in rows:
            if row["error"]:
                self.n_bad += 1
                self.bad.append((row["id"], row["error"]))
            else:
                self.n_ok += 1

    @property
    def rate(self) -> float:
        return (self.n_ok + self.n_bad) / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        resumed = f", {self.n_skipped_resume} already done" if self.n_skipped_resume else ""
        return (
            f"scanned {self.n_ok + self.n_bad} structures in {self.seconds:.1f} s ({self.rate:.0f}/s): "
            f"{self.n_ok} predicted, {self.n_bad} bad{resumed} → {self.output}"
        )


def output_columns(n_members: int, metadata_keys: Sequence[str]) -> list[str]:
    """The output's columns: id, formula, predictions, one per member, flags, features, error, metadata."""
    members = [f"ltc_{i + 1}" for i in range(n_members)]
    base = ["id", "formula", *PREDICTION_COLUMNS, *members, *FLAG_COLUMNS, *FEATURES, "error"]
    return base + [key for key in metadata_keys if key not in base]


# -- writers ---------------------------------------------------------------------------------------
class _Writer:
    def done(self) -> int:
        raise NotImplementedError

    def write(self, rows: list[dict[str, Any]], atoms: list[Atoms | None]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _CSVWriter(_Writer):
    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns

    def done(self) -> int:
        if not self.path.exists():
            return 0
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # killed mid-line: drop the partial row
            data = data[: data.rfind(b"\n") + 1]
            self.path.write_bytes(data)
        with open(self.path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header:
                self.columns = header
            return sum(1 for _ in reader)

    def write(self, rows: list[dict[str, Any]], atoms: list[Atoms | None]) -> None:
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())


class _ParquetWriter(_Writer):
    """One part file per chunk (atomic rename), merged into the final file at the end."""

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns
        self.parts = path.with_name(path.name + ".parts")

    def _part_files(self) -> list[Path]:
        return sorted(self.parts.glob("part-*.parquet")) if self.parts.exists() else []

    def done(self) -> int:
        import pyarrow.parquet as pq

        if self.path.exists() and not self.parts.exists():
            return pq.ParquetFile(self.path).metadata.num_rows
        return sum(pq.ParquetFile(p).metadata.num_rows for p in self._part_files())

    def write(self, rows: list[dict[str, Any]], atoms: list[Atoms | None]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.path.exists() and not self.parts.exists():  # resuming a finished scan with more input
            self.parts.mkdir()
            self.path.rename(self.parts / "part-00000.parquet")
        self.parts.mkdir(exist_ok=True)
        n = len(self._part_files())
        table = pa.Table.from_pylist([{c: r.get(c) for c in self.columns} for r in rows])
        tmp = self.parts / f".part-{n:05d}.tmp"
        pq.write_table(table, tmp)
        tmp.rename(self.parts / f"part-{n:05d}.parquet")

    def close(self) -> None:
        import pyarrow.parquet as pq

        files = self._part_files()
        if not files:
            return
        tables = [pq.read_table(p) for p in files]
        import pyarrow as pa

        merged = pa.concat_tables(tables, promote_options="default")
        tmp = self.path.with_name(self.path.name + ".tmp")
        pq.write_table(merged, tmp)
        tmp.rename(self.path)
        for p in files:
            p.unlink()
        self.parts.rmdir()


class _AseDBWriter(_Writer):
    def __init__(self, path: Path, columns: list[str]) -> None:
        from ase.db import connect

        self.db = connect(str(path))
        self.columns = columns

    def done(self) -> int:
        return self.db.count()

    def write(self, rows: list[dict[str, Any]], atoms: list[Atoms | None]) -> None:
        with self.db:
            for row, at in zip(rows, atoms):
                pairs = {}
                for key, value in row.items():
                    if value is None or (isinstance(value, float) and math.isnan(value)):
                        continue
                    name = "structure_id" if key == "id" else key
                    pairs[name] = value if not isinstance(value, (list, tuple)) else ",".join(map(str, value))
                pairs.pop("formula", None)
                self.db.write(at if at is not None else Atoms(), key_value_pairs=pairs)


def _writer(path: Path, columns: list[str]) -> _Writer:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return _CSVWriter(path, columns)
    if suffix == ".parquet":
        return _ParquetWriter(path, columns)
    if suffix == ".db":
        return _AseDBWriter(path, columns)
    raise ValueError(f"output {path} must end in .csv, .parquet or .db")


# -- the scan --------------------------------------------------------------------------------------
def _chunks(records: Iterator[StructureRecord], size: int) -> Iterator[list[StructureRecord]]:
    chunk: list[StructureRecord] = []
    for record in records:
        chunk.append(record)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _is_structure(item: Any) -> bool:
    from pymatgen.core import Structure

    return isinstance(item, (Atoms, Structure))


def _all_records(inputs: Sequence[Any] | Any) -> Iterator[StructureRecord]:
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    elif not isinstance(inputs, (list, tuple)) or (inputs and all(_is_structure(i) for i in inputs)):
        inputs = [inputs]  # one iterable of Atoms/Structures, not a list of sources
    for source in inputs:
        if _is_structure(source):  # a lone structure among file sources
            source = [source]
        try:
            yield from iter_structures(source)
        except FileNotFoundError as exc:
            sid = str(source)
            yield StructureRecord(sid, None, error=InvalidStructureError(sid, "unreadable", str(exc)))


def scan(
    inputs: Sequence[Any] | Any,
    output: str | os.PathLike,
    model: LTCEnsemble | LTCModel | str | None = None,
    batch_size: int = 64,
    chunk_size: int = 512,
    resume: bool = True,
    progress: bool = True,
    metadata_keys: Iterable[str] | None = None,
    accelerator: str | None = None,
    devices: int | str | list[int] | None = None,
    strategy: str | None = None,
    num_nodes: int = 1,
) -> ScanSummary:
    """Predict κ_L for every structure of ``inputs`` and write one row per structure to ``output``.

    Parameters
    ----------
    inputs
        Paths (extxyz, CIF folders, ase.db files or URLs), a list or iterable of Atoms/Structures, or
        a list mixing paths and structures.
    output
        ``.csv``, ``.parquet`` or ``.db`` (ase.db with key-value pairs ``ltc_mean``, ``ltc_std`` ...).
    model
        Ensemble, model, name or path (default: the shipped default ensemble).
    batch_size
        Most graphs per forward pass; a batch also stops at 16k edges, which keeps the tensors in
        the CPU caches.
    chunk_size
        Structures per write; the unit of resumption.
    resume
        Skip the structures already in ``output`` (default); ``False`` starts afresh.
    metadata_keys
        Numeric ``atoms.info`` keys to keep as columns; by default those of the first chunk.
    accelerator, devices, strategy, num_nodes
        Given any of them, the scan runs through Lightning on those devices or processes
        (``devices=4, accelerator="gpu"``; ``devices=2, accelerator="cpu"`` for two CPU
        processes); see :func:`matgl_ltc.distributed_scan.distributed_scan`. The output
        is the same file.
    """
    from .model.loading import load_model

    if not isinstance(model, (LTCEnsemble, LTCModel)):
        model = load_model(model)
    ensemble = model if isinstance(model, LTCEnsemble) else LTCEnsemble([model])
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    if accelerator is not None or devices is not None or strategy is not None or num_nodes > 1:
        from .distributed_scan import distributed_scan

        return distributed_scan(
            inputs,
            output,
            ensemble,
            batch_size=batch_size,
            chunk_size=chunk_size,
            resume=resume,
            progress=progress,
            metadata_keys=metadata_keys,
            accelerator=accelerator or "auto",
            devices=devices if devices is not None else "auto",
            strategy=strategy or "ddp",
            num_nodes=num_nodes,
        )
    out = Path(output)
    if not resume:
        _remove_output(out)
    base = output_columns(len(ensemble), [])
    writer = _writer(out, list(base))
    done = writer.done()
    existing_columns = list(writer.columns) if done and isinstance(writer, _CSVWriter) else None
    summary = ScanSummary(out, n_skipped_resume=done)
    converter = Atoms2Graph(element_types=MEGNET_ELEMENTS, cutoff=ensemble.cutoff)
    seen = ensemble.train_elements
    bar = tqdm(desc=f"scan → {out.name}", unit=" structures", disable=not progress, dynamic_ncols=True)
    if done:
        bar.write(f"resuming: {done} structures already in {out}")
    started = time.perf_counter()
    try:
        chunks = _chunks(itertools.islice(_all_records(inputs), done, None), chunk_size)
        for prepared in (
            _prepare_chunk(chunk, ensemble.cutoff, converter, seen, ensemble.uses_descriptors)
            for chunk in chunks
        ):
            if writer.columns == base and existing_columns is None:
                keys = list(metadata_keys) if metadata_keys is not None else metadata_keys_of(prepared.rows)
                writer.columns = output_columns(len(ensemble), keys)
                existing_columns = writer.columns
            _fill_predictions(prepared, ensemble, batch_size)
            writer.write(prepared.rows, prepared.atoms)
            summary.count(prepared.rows)
            bar.update(len(prepared.rows))
        writer.close()
    finally:
        bar.close()
    summary.seconds = time.perf_counter() - started
    summary.n_total = done + summary.n_ok + summary.n_bad
    return summary


def predict_rows(
    inputs: Sequence[Any] | Any, ensemble: LTCEnsemble, batch_size: int = 64, chunk_size: int = 256
) -> Iterator[dict[str, Any]]:
    """The rows :func:`scan` would write, in input order, yielded instead of written.

    Structures are predicted a chunk at a time (each batch collated once for every member), so
    printing a file's predictions costs what scanning it does; a bad structure gets its row with
    ``error`` set, and an unreadable path one row of its own.
    """
    converter = Atoms2Graph(element_types=MEGNET_ELEMENTS, cutoff=ensemble.cutoff)
    for chunk in _chunks(_all_records(inputs), chunk_size):
        prepared = _prepare_chunk(
            chunk, ensemble.cutoff, converter, ensemble.train_elements, ensemble.uses_descriptors
        )
        _fill_predictions(prepared, ensemble, batch_size)
        yield from prepared.rows


def _remove_output(out: Path) -> None:
    import shutil

    parts = out.with_name(out.name + ".parts")
    if parts.is_dir():
        shutil.rmtree(parts)
    if out.exists():
        out.unlink()


@dataclass
class PreparedChunk:
    """One chunk's rows in stream order, with the graphs of its good structures (ready to predict)."""

    rows: list[dict[str, Any]]
    atoms: list[Atoms | None]
    graphs: list[Any]
    good: list[int]


def _prepare_chunk(
    chunk: list[StructureRecord],
    cutoff: float,
    converter: Atoms2Graph,
    seen: set[str] | None,
    descriptors: bool = False,
) -> PreparedChunk:
    """Validate, featurize and build graphs (with descriptors for hybrid-head models); bad
    structures get their row with ``error`` set."""
    rows: list[dict[str, Any]] = []
    graphs, good = [], []
    for record in chunk:
        atoms = record.atoms
        row: dict[str, Any] = {"id": record.id, "error": ""}
        try:
            if record.error is not None:
                raise record.error
            assert atoms is not None
            validate_atoms(atoms, record.id, cutoff, check_edges=False)
            graphs.append(
                atoms_to_graph(
                    atoms, cutoff, structure_id=record.id, converter=converter, descriptors=descriptors
                )
            )
            good.append(len(rows))
            row["formula"] = reduced_formula(atoms)
            row.update(structure_features(atoms))
            row.update(numeric_metadata(atoms.info))
            symbols = set(atoms.get_chemical_symbols())
            unseen = sorted(symbols - seen) if seen is not None else []
            row["out_of_domain"] = bool(unseen)
            row["unseen_elements"] = ",".join(unseen)
        except InvalidStructureError as err:
            row["error"] = f"{err.reason}: {err.detail}"
            if atoms is not None and len(atoms):
                row["formula"] = reduced_formula(atoms)
        rows.append(row)
    return PreparedChunk(rows, [r.atoms for r in chunk], graphs, good)


def _fill_predictions(prepared: PreparedChunk, ensemble: LTCEnsemble, batch_size: int) -> None:
    if not prepared.graphs:
        return
    pred = ensemble.predict_prepared(prepared.graphs, batch_size)
    members = pred.members
    geometric, min_mape = pred.geometric_mean, pred.min_mape
    for j, i in enumerate(prepared.good):
        prepared.rows[i].update(
            {
                "ltc_mean": float(pred.mean[j]),
                "ltc_geometric": float(geometric[j]),
                "ltc_min_mape": float(min_mape[j]),
                "ltc_std": float(pred.std[j]),
                "ltc_std_raw": float(pred.std_raw[j]),
                "ltc_var": float(pred.var[j]),
                "extrapolated": ",".join(pred.extrapolated[j]) if pred.extrapolated else "",
            }
        )
        prepared.rows[i].update({f"ltc_{m + 1}": float(v) for m, v in enumerate(members[j])})


def metadata_keys_of(rows: list[dict[str, Any]]) -> list[str]:
    """The input-metadata columns present in some rows (everything that is not a scan column)."""
    return sorted({key for row in rows for key in row if not _is_scan_column(key)})
