"""Scanning: bad structures, the three output formats, resume after a kill, and the analysis tables."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.db import connect
from scipy import stats

from matgl_ltc import LTCEnsemble, LTCModel
from matgl_ltc.analysis.correlations import correlation_table
from matgl_ltc.analysis.screening_report import analyze, read_scan
from matgl_ltc.cli import main
from matgl_ltc.model import point_estimate
from matgl_ltc.screening import scan


@pytest.fixture(scope="module")
def tiny_ensemble(tmp_path_factory) -> tuple[LTCEnsemble, str]:
    members = [LTCModel.from_backbone("megnet-eform", head_hidden=(8,), seed=s) for s in range(3)]
    for m in members:
        m.metadata["train_elements"] = ["Na", "Cl", "Si", "O"]
    ensemble = LTCEnsemble(members)
    path = tmp_path_factory.mktemp("ens") / "ens"
    ensemble.save(path)
    return ensemble, str(path)


@pytest.fixture(scope="module")
def mixed_input(tmp_path_factory, shared_dir):
    """40 screening structures with bad ones mixed in and per-structure metadata."""
    frames = ase.io.read(shared_dir / "data" / "mp_stable_scan.extxyz", ":40")
    for i, a in enumerate(frames):
        a.info["energy_per_atom"] = -3.0 - 0.01 * i
    lonely = Atoms("Cu", cell=np.eye(3) * 12, pbc=True, info={"id": "bad-no-edges"})
    molecule = Atoms("CO", positions=[[0, 0, 0], [0, 0, 1.1]], info={"id": "bad-molecule"})
    polonium = bulk("Po", "sc", a=3.35)
    polonium.info["id"] = "bad-element"
    frames[5:5] = [lonely, molecule, polonium]
    path = tmp_path_factory.mktemp("in") / "mixed.extxyz"
    ase.io.write(path, frames)
    return path, frames


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".db"])
def test_formats_and_bad_structures(tmp_path, tiny_ensemble, mixed_input, suffix):
    ensemble, _ = tiny_ensemble
    path, frames = mixed_input
    out = tmp_path / "new folder" / f"out{suffix}"  # a missing folder is created
    summary = scan([path], out, ensemble, chunk_size=16, progress=False)
    reasons = dict(summary.bad)
    assert summary.n_ok + summary.n_bad == len(frames)
    assert set(reasons) == {"bad-no-edges", "bad-molecule", "bad-element", "mp-862690"}  # Ac: no edge at 4 Å
    assert reasons["bad-no-edges"].startswith("no-edges")
    assert reasons["bad-molecule"].startswith("not-periodic")
    assert reasons["bad-element"].startswith("unknown-element")
    table = read_scan(out)
    ids = list(table["id"])
    assert ids == [a.info["id"] for a in frames]  # every structure, in order, once
    good = np.isfinite(table["ltc_mean"])
    assert good.sum() == summary.n_ok
    members = np.stack([table[f"ltc_{k}"] for k in (1, 2, 3)], axis=1)[good]
    np.testing.assert_allclose(table["ltc_mean"][good], members.mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(table["ltc_var"][good], members.var(axis=1), rtol=1e-5)
    for estimate in ("geometric", "min_mape"):
        np.testing.assert_allclose(
            table[f"ltc_{estimate}"][good], point_estimate(members, estimate), rtol=1e-5
        )
    expected = ensemble.predict([a for a in frames if a.info["id"] in set(np.array(ids)[good])]).mean
    np.testing.assert_allclose(table["ltc_mean"][good], expected, rtol=1e-5)
    assert np.all(table["nsites"][good] >= 1) and "energy_per_atom" in table
    assert np.all(np.isfinite(table["density"][good]))
    if suffix == ".db":
        with connect(out) as db:
            low = list(db.select("ltc_mean<1e9"))
            assert len(low) == summary.n_ok and all("ltc_std" in r.key_value_pairs for r in low)


def test_garbage_file_is_reported_and_the_rest_scanned(tmp_path, tiny_ensemble, mixed_input):
    ensemble, _ = tiny_ensemble
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("12\nnot an extxyz header\nX 0 0\n")
    summary = scan([garbage, mixed_input[0]], tmp_path / "o.csv", ensemble, progress=False)
    assert summary.bad[0][0] == "garbage.extxyz" and summary.bad[0][1].startswith("unreadable")
    assert summary.n_ok == len(mixed_input[1]) - 4


def test_a_list_of_structures_is_one_source(tmp_path, tiny_ensemble, mixed_input, rocksalt):
    """scan(list_of_atoms): each Atoms is a structure (not a source to iterate), ids from atoms.info."""
    from pymatgen.io.ase import AseAtomsAdaptor

    ensemble, _ = tiny_ensemble
    frames = mixed_input[1][:12]
    summary = scan(frames, tmp_path / "atoms.csv", ensemble, progress=False)
    assert summary.n_total == len(frames) and summary.n_bad == 4  # 3 planted, 1 from MP (no edges)
    bad = {sid for sid, _ in summary.bad}
    good = [a for a in frames if a.info["id"] not in bad]
    predicted = read_scan(tmp_path / "atoms.csv")["ltc_mean"]
    np.testing.assert_allclose(predicted[np.isfinite(predicted)], ensemble.predict(good).mean, rtol=1e-5)
    structure = AseAtomsAdaptor.get_structure(rocksalt)
    summary = scan([structure, mixed_input[0]], tmp_path / "mixed.csv", ensemble, progress=False)
    assert summary.n_total == 1 + len(mixed_input[1]) and summary.n_bad == 4  # the file's 4 bad


def test_resume_after_kill(tmp_path, tiny_ensemble, shared_dir):
    _, model_dir = tiny_ensemble
    frames = ase.io.read(shared_dir / "data" / "mp_candidates_scan.extxyz", ":600")
    source = tmp_path / "in.extxyz"
    ase.io.write(source, frames)
    out = tmp_path / "scan.csv"
    cmd = [
        sys.executable,
        "-m",
        "matgl_ltc.cli",
        "scan",
        str(source),
        "-o",
        str(out),
        "--model",
        model_dir,
        "--chunk-size",
        "25",
        "--no-progress",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline:
        if out.exists() and out.read_text().count("\n") > 60:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = out.read_text().count("\n") - 1
    assert 0 < partial < len(frames), "the scan should have been killed midway"

    assert (
        main(
            ["scan", str(source), "-o", str(out), "--model", model_dir, "--chunk-size", "25", "--no-progress"]
        )
        == 0
    )
    with open(out, newline="") as handle:
        resumed = list(csv.DictReader(handle))
    assert [r["id"] for r in resumed] == [a.info["id"] for a in frames]  # nothing lost, nothing duplicated

    fresh = tmp_path / "fresh.csv"
    scan(source, fresh, model_dir, chunk_size=25, progress=False)
    with open(fresh, newline="") as handle:
        reference = list(csv.DictReader(handle))
    np.testing.assert_allclose(
        [float(r["ltc_mean"] or "nan") for r in resumed],
        [float(r["ltc_mean"] or "nan") for r in reference],
        rtol=1e-6,
        equal_nan=True,
    )


def test_correlation_table_matches_scipy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200)
    features = {"x": x, "noise": rng.normal(size=200), "with_nan": np.where(x > 1.5, np.nan, x * 2)}
    target = 0.5 * x + rng.normal(scale=0.5, size=200)
    rows = {r["feature"]: r for r in correlation_table(target, features)}
    ref = stats.pearsonr(x, target)
    assert rows["x"]["pearson_r"] == pytest.approx(ref.statistic) and rows["x"]["pearson_p"] == pytest.approx(
        ref.pvalue
    )
    assert rows["x"]["spearman_rho"] == pytest.approx(stats.spearmanr(x, target).statistic)
    keep = x <= 1.5
    assert rows["with_nan"]["n"] == keep.sum()
    assert rows["with_nan"]["pearson_r"] == pytest.approx(stats.pearsonr(2 * x[keep], target[keep]).statistic)
    assert (rows["x"]["above_threshold"] and not rows["noise"]["above_threshold"]) or abs(
        rows["noise"]["pearson_r"]
    ) > 0.1


def test_analyze_writes_tables_and_figures(tmp_path, tiny_ensemble, mixed_input):
    ensemble, _ = tiny_ensemble
    scan(mixed_input[0], tmp_path / "s.csv", ensemble, progress=False)
    report = analyze(tmp_path / "s.csv", tmp_path / "an", training_sets=["togo15"], top=5)
    table = read_scan(tmp_path / "s.csv")
    ok = np.isfinite(table["ltc_mean"])
    volume = next(r for r in report["mTC"] if r["feature"] == "volume")
    assert volume["pearson_r"] == pytest.approx(
        stats.pearsonr(table["volume"][ok], table["ltc_mean"][ok]).statistic
    )
    for name in (
        "analysis.md",
        "correlations_mTC.csv",
        "correlations_var_pTC.csv",
        "lowest_ltc_candidates.csv",
        "correlation_heatmap.png",
        "correlation_heatmap.svg",
        "var_pTC_distribution.png",
        "mTC_distribution.png",
        "training_sets_ltc_distribution.png",
    ):
        assert (tmp_path / "an" / name).stat().st_size > 0
    lows = [c["ltc_mean"] for c in report["candidates"]]
    assert lows == sorted(lows) and lows[0] == pytest.approx(np.nanmin(table["ltc_mean"]))
    # each candidate carries where it extrapolates, a flag, not a feature to correlate
    outside = {i: e if isinstance(e, str) else "" for i, e in zip(table["id"], table["extrapolated"])}
    assert [c["extrapolated"] for c in report["candidates"]] == [
        outside[c["id"]] for c in report["candidates"]
    ]
    assert "extrapolated" not in {r["feature"] for r in report["mTC"]}
    assert "| outside the training range |" in (tmp_path / "an" / "analysis.md").read_text()
    # the same scan given twice: every structure counted and listed once
    twice = analyze([tmp_path / "s.csv"] * 2, tmp_path / "an2", training_sets=["togo15"], top=5)
    assert twice["n_structures"] == report["n_structures"] and twice["n_repeated"] == len(table["id"])
    assert twice["mTC"] == report["mTC"] and twice["candidates"] == report["candidates"]
