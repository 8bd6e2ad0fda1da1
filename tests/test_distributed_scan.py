"""The scan on 2 CPU processes through Lightning (DDP): same output as the serial scan, resumable."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
import torch
from ase.build import bulk

from matgl_ltc import LTCEnsemble, LTCModel
from matgl_ltc.analysis.screening_report import read_scan
from matgl_ltc.data.descriptors import descriptor_matrix
from matgl_ltc.screening import numeric_metadata, scan


@pytest.fixture(scope="module")
def ensemble_dir(tmp_path_factory, togo15) -> str:
    """A plain and a hybrid member, so the distributed path must build descriptors too."""
    plain = LTCModel.from_backbone("megnet-eform", head_hidden=(8,), seed=0)
    hybrid = LTCModel.from_backbone("megnet-eform", head_hidden=(8,), seed=1).with_descriptors()
    hybrid.fit_descriptor_scaler(descriptor_matrix(togo15.atoms))
    with torch.no_grad():
        hybrid.head.layers[0].weight[:, hybrid.embedding_dim :].normal_(0.0, 0.1)
    members = [plain, hybrid]
    path = tmp_path_factory.mktemp("ens") / "ens"
    LTCEnsemble(members).save(path)
    return str(path)


@pytest.fixture(scope="module")
def source(tmp_path_factory, shared_dir):
    frames = ase.io.read(shared_dir / "data" / "mp_candidates_scan.extxyz", ":130")
    polonium = bulk("Po", "sc", a=3.35)
    polonium.info["id"] = "bad-element"
    frames.insert(17, polonium)
    for i, a in enumerate(frames):
        a.info["band_gap"] = 0.01 * i
    path = tmp_path_factory.mktemp("in") / "in.extxyz"
    ase.io.write(path, frames)
    return path, [a.info["id"] for a in frames]


def _cli(source, out, model, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "matgl_ltc.cli", "scan", str(source), "-o", str(out), "--model", model,
        "--chunk-size", "10", "--no-progress", *extra,
    ]  # fmt: skip


def _two_processes(source, out, model) -> subprocess.CompletedProcess:
    cmd = _cli(source, out, model, "--accelerator", "cpu", "--devices", "2")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _assert_same_rows(got, expected) -> None:
    assert list(got["id"]) == list(expected["id"])  # every structure, in stream order, once
    for column in ("ltc_mean", "ltc_var", "ltc_1", "ltc_2", "density", "band_gap"):
        np.testing.assert_allclose(got[column], expected[column], rtol=1e-5, atol=1e-5, equal_nan=True)
    assert list(got["error"]) == list(expected["error"])


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".db"])
def test_two_cpu_processes_write_what_the_serial_scan_writes(tmp_path, source, ensemble_dir, suffix):
    path, ids = source
    serial = tmp_path / f"serial{suffix}"
    scan(path, serial, ensemble_dir, chunk_size=10, progress=False)
    out = tmp_path / f"ddp{suffix}"
    done = _two_processes(path, out, ensemble_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stderr + done.stdout
    assert f"scanned {len(ids)} structures" in done.stdout and "1 bad" in done.stdout
    assert not out.with_name(out.name + ".ddp-parts").exists()
    _assert_same_rows(read_scan(out), read_scan(serial))


def test_killed_two_process_scan_resumes_without_loss_or_duplicates(tmp_path, source, ensemble_dir):
    path, ids = source
    out = tmp_path / "ddp.csv"
    parts = out.with_name(out.name + ".ddp-parts")
    cmd = _cli(path, out, ensemble_dir, "--accelerator", "cpu", "--devices", "2", "--batch-size", "2")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("chunk-*.jsonl"))) < 3:
        time.sleep(0.05)
    import os

    os.killpg(proc.pid, signal.SIGKILL)  # both ranks
    proc.wait()
    finished = len(list(parts.glob("chunk-*.jsonl")))
    assert 3 <= finished < len(ids) / 10 and not out.exists(), "the scan should have been killed midway"

    resumed = _two_processes(path, out, ensemble_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    serial = tmp_path / "serial.csv"
    scan(path, serial, ensemble_dir, chunk_size=10, progress=False)
    _assert_same_rows(read_scan(out), read_scan(serial))

    # a merge cut short leaves part of the output written: the rerun completes it, nothing twice
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:26]))
    again = _two_processes(path, out, ensemble_dir)
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same_rows(read_scan(out), read_scan(serial))


def test_metadata_never_overwrites_the_scan_columns():
    kept = numeric_metadata(
        {"id": "x", "ltc_3": 1.0, "volume": 2.0, "ltc": 3.0, "band_gap": 0.5, "flag": True}
    )
    assert kept == {"info_ltc_3": 1.0, "info_volume": 2.0, "ltc": 3.0, "band_gap": 0.5}
