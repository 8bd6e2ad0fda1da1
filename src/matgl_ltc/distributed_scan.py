"""The scan on several processes, GPUs or nodes, through Lightning's distributed prediction.

The input stream is cut into chunks on a fixed grid (chunk ``k`` holds records
``k·chunk_size … (k+1)·chunk_size - 1``); rank ``r`` of ``W`` predicts the chunks with
``k mod W == r`` and writes each one as a part file (JSON lines, written to a temporary
name and renamed, so a part exists only once it is complete). When every rank is done,
rank 0 merges the parts in stream order into the output with the same writers as the
single-process scan, so the result is the same file. Killing the run and starting it again
skips the finished parts; the merge skips rows already in the output.

Every rank reads the input stream (cheap next to prediction) so no coordinator is needed;
Lightning starts the processes (``strategy="ddp"``), places the members on each rank's
device and, on CPU, shares the cores between the processes.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from ase import Atoms
from ase.io.jsonio import decode, encode
from lightning.pytorch.callbacks import BasePredictionWriter
from matgl.ext.ase import Atoms2Graph
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from tqdm.auto import tqdm

from .data.validation import MEGNET_ELEMENTS
from .model.ensemble import LTCEnsemble
from .screening import (
    PreparedChunk,
    ScanSummary,
    _all_records,
    _chunks,
    _fill_predictions,
    _prepare_chunk,
    _remove_output,
    _writer,
    metadata_keys_of,
    output_columns,
)


def _parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".ddp-parts")


class _ChunkStream(IterableDataset):
    """The chunks this rank owns and has not finished, prepared (validated, graphs built)."""

    def __init__(
        self,
        inputs: Sequence[Any] | Any,
        chunk_size: int,
        parts: Path,
        cutoff: float,
        seen: set[str] | None,
        keep_atoms: bool,
        descriptors: bool = False,
    ) -> None:
        self.inputs, self.chunk_size, self.descriptors = inputs, chunk_size, descriptors
        self.parts, self.cutoff, self.seen, self.keep_atoms = parts, cutoff, seen, keep_atoms
        self.rank, self.world, self.done_rows = 0, 1, 0  # set in _EnsemblePredictor.setup

    def __iter__(self) -> Iterator[tuple[int, int, PreparedChunk]]:
        converter = Atoms2Graph(element_types=MEGNET_ELEMENTS, cutoff=self.cutoff)
        first = self.done_rows // self.chunk_size
        records = itertools.islice(_all_records(self.inputs), first * self.chunk_size, None)
        for k, chunk in enumerate(_chunks(records, self.chunk_size), start=first):
            if k % self.world != self.rank or (self.parts / f"chunk-{k:08d}.jsonl").exists():
                continue
            start = k * self.chunk_size
            skip = max(0, self.done_rows - start)  # records already in the output
            prepared = _prepare_chunk(chunk[skip:], self.cutoff, converter, self.seen, self.descriptors)
            if not self.keep_atoms:
                prepared.atoms = [None] * len(prepared.rows)
            yield k, start + skip, prepared


def _rows_done(output: Path, n_members: int) -> int:
    """Rows already in the output, from this or a serial scan (a Parquet output may exist only as parts)."""
    if output.suffix.lower() == ".db" and not output.exists():
        return 0  # connecting would create the database
    return _writer(output, output_columns(n_members, [])).done()


def _as_is(item: Any) -> Any:
    return item


class _EnsemblePredictor(pl.LightningModule):
    """Holds the members (so Lightning places them on the rank's device) and predicts a chunk."""

    def __init__(
        self, ensemble: LTCEnsemble, batch_size: int, stream: _ChunkStream, output: Path, resume: bool
    ) -> None:
        super().__init__()
        self.members = nn.ModuleList(ensemble.members)
        self.ensemble, self.batch_size = ensemble, batch_size
        self.stream, self.output, self.resume = stream, output, resume

    def setup(self, stage: str) -> None:
        """Runs once the processes are connected: rank 0 readies the output, then all learn their share."""
        trainer = self.trainer
        parts = self.stream.parts
        if trainer.is_global_zero:
            if not self.resume:
                _remove_output(self.output)
                shutil.rmtree(parts, ignore_errors=True)
            parts.mkdir(parents=True, exist_ok=True)
            _rows_done(self.output, len(self.ensemble))  # truncates a row cut by a kill, before anyone counts
        trainer.strategy.barrier("matgl_ltc scan output ready")
        self.stream.rank, self.stream.world = trainer.global_rank, trainer.world_size
        self.stream.done_rows = _rows_done(self.output, len(self.ensemble))

    def predict_step(self, item: tuple[int, int, PreparedChunk]) -> tuple[int, int, PreparedChunk]:
        k, start, prepared = item
        _fill_predictions(prepared, self.ensemble, self.batch_size)
        return k, start, prepared


class _PartWriter(BasePredictionWriter):
    """Writes each predicted chunk as ``chunk-<k>.jsonl``: a header line, then one row per line."""

    def __init__(self, parts: Path, progress: bool) -> None:
        super().__init__(write_interval="batch")
        self.parts, self.progress = parts, progress
        self.n_ok = self.n_bad = 0
        self.bar: tqdm | None = None

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.bar = tqdm(
            desc=f"scan, rank 0 of {trainer.world_size}",
            unit=" structures",
            disable=not (self.progress and trainer.is_global_zero),
            dynamic_ncols=True,
        )

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0
    ):
        k, start, prepared = prediction
        lines = [json.dumps({"start": start, "n": len(prepared.rows)})]
        for row, atoms in zip(prepared.rows, prepared.atoms):
            lines.append(json.dumps({"row": row, "atoms": None if atoms is None else encode(atoms)}))
        tmp = self.parts / f".chunk-{k:08d}.tmp"
        tmp.write_text("\n".join(lines) + "\n")
        tmp.rename(self.parts / f"chunk-{k:08d}.jsonl")
        bad = sum(1 for row in prepared.rows if row["error"])
        self.n_bad += bad
        self.n_ok += len(prepared.rows) - bad
        if self.bar is not None:
            self.bar.update(len(prepared.rows))

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()


def _read_part(path: Path) -> tuple[int, list[dict[str, Any]], list[Atoms | None]]:
    with open(path) as handle:
        header = json.loads(handle.readline())
        rows, atoms = [], []
        for line in handle:
            item = json.loads(line)
            rows.append(item["row"])
            atoms.append(None if item["atoms"] is None else decode(item["atoms"]))
    return int(header["start"]), rows, atoms


def _merge(parts: Path, output: Path, n_members: int, metadata_keys: Iterable[str] | None) -> ScanSummary:
    """Append the parts, in stream order, to the output; rows already there are skipped."""
    writer = _writer(output, output_columns(n_members, []))
    done = writer.done()
    summary = ScanSummary(output, n_skipped_resume=done)
    for path in sorted(parts.glob("chunk-*.jsonl")):
        start, rows, atoms = _read_part(path)
        skip = max(0, done - start)
        rows, atoms = rows[skip:], atoms[skip:]
        if rows and done == 0:  # the first rows fix the metadata columns, as in the serial scan
            keys = list(metadata_keys) if metadata_keys is not None else metadata_keys_of(rows)
            writer.columns = output_columns(n_members, keys)
        if rows:
            writer.write(rows, atoms)
            done += len(rows)
        summary.count(rows)
        path.unlink()
    writer.close()
    shutil.rmtree(parts, ignore_errors=True)
    summary.n_total = done
    return summary


def distributed_scan(
    inputs: Sequence[Any] | Any,
    output: str | os.PathLike,
    ensemble: LTCEnsemble,
    batch_size: int = 64,
    chunk_size: int = 512,
    resume: bool = True,
    progress: bool = True,
    metadata_keys: Iterable[str] | None = None,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    strategy: str = "ddp",
    num_nodes: int = 1,
) -> ScanSummary:
    """:func:`matgl_ltc.screening.scan` over several processes; see the module docstring.

    Lightning relaunches the calling command once per extra process (``strategy="ddp"``),
    so call it from a script or the ``matgl-ltc scan`` command, not from an interactive
    session. Every rank returns; only global rank 0's summary describes the whole output.
    """
    out = Path(output)
    parts = _parts_dir(out)
    writer = _PartWriter(parts, progress)
    trainer = pl.Trainer(
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        num_nodes=num_nodes,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        callbacks=[writer],
    )
    stream = _ChunkStream(
        inputs,
        chunk_size,
        parts,
        ensemble.cutoff,
        ensemble.train_elements,
        out.suffix == ".db",
        ensemble.uses_descriptors,
    )
    module = _EnsemblePredictor(ensemble, batch_size, stream, out, resume)
    loader = DataLoader(stream, batch_size=None, collate_fn=_as_is)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infer the batch indices.*")
        trainer.predict(module, dataloaders=loader, return_predictions=False)
    trainer.strategy.barrier("matgl_ltc scan parts written")
    if not trainer.is_global_zero:
        summary = ScanSummary(out, n_ok=writer.n_ok, n_bad=writer.n_bad)
    else:
        summary = _merge(parts, out, len(ensemble), metadata_keys)
    summary.seconds = time.perf_counter() - started
    summary.rank, summary.world_size = trainer.global_rank, trainer.world_size
    return summary
