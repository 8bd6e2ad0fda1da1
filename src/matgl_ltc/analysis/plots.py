"""Figures of a recipe run: validation MAPE against epoch (the paper's Fig. 6) and a parity plot."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of a run's CSV (``curve.csv``, ``validation_predictions.csv``) as dicts."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def run_figures(
    run_dir: str | os.PathLike, stage: str = "target", predictions: str | None = None
) -> list[Path]:
    """Write ``learning_curve.{png,svg}`` and ``parity.{png,svg}`` into a run folder.

    The curves are ``stage``'s; the parity plot reads the ``predictions`` folder of each split
    (default ``stage``; ``ensemble`` for a run with several members per split).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = Path(run_dir)
    splits = sorted(run.glob(f"split_*/{stage}"), key=lambda p: int(p.parent.name.split("_")[1]))
    written: list[Path] = []
    if not splits:
        return written

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    curves = []
    for folder in splits:
        rows = read_csv_rows(folder / "curve.csv")
        mape = np.array([float(r["val_mape"]) for r in rows])
        curves.append(mape)
        ax.plot(mape, color="0.75", lw=0.8)
    length = min(len(c) for c in curves)
    ax.plot(
        np.mean([c[:length] for c in curves], axis=0),
        color="tab:red",
        lw=2,
        label=f"mean of {len(curves)} splits",
    )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MAPE")
    ax.set_ylim(0, min(2.0, float(np.nanmax([c.max() for c in curves])) * 1.05))
    ax.set_title(run.name)
    ax.legend()
    for ext in ("png", "svg"):
        fig.savefig(run / f"learning_curve.{ext}", dpi=150, bbox_inches="tight")
        written.append(run / f"learning_curve.{ext}")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    true, pred = [], []
    for folder in splits:
        rows = read_csv_rows(folder.parent / (predictions or stage) / "validation_predictions.csv")
        true += [float(r["ltc_true"]) for r in rows]
        pred += [float(r["ltc_pred"]) for r in rows]
    true_a, pred_a = np.array(true), np.clip(np.array(pred), 1e-3, None)
    ax.loglog(true_a, pred_a, "o", ms=3, alpha=0.6)
    lo, hi = min(true_a.min(), pred_a.min()) * 0.7, max(true_a.max(), pred_a.max()) * 1.4
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("κ_L reference (W/m/K)")
    ax.set_ylabel("κ_L predicted, held-out (W/m/K)")
    ax.set_title(f"{run.name}: validation sets of all splits")
    for ext in ("png", "svg"):
        fig.savefig(run / f"parity.{ext}", dpi=150, bbox_inches="tight")
        written.append(run / f"parity.{ext}")
    plt.close(fig)
    return written


def recipes_figure(runs: dict[str, str | os.PathLike], out: str | os.PathLike, title: str = "") -> list[Path]:
    """Mean validation MAPE per epoch of several runs on one axis (the paper's Fig. 6, all steps).

    ``runs`` maps a label (recipe name) to its run folder; writes ``out`` as ``.png`` and ``.svg``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, run_dir in runs.items():
        curves = [
            np.array([float(r["val_mape"]) for r in read_csv_rows(path)])
            for path in sorted(Path(run_dir).glob("split_*/target/curve.csv"))
        ]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        ax.plot(
            np.mean([c[:length] for c in curves], axis=0), lw=1.8, label=f"{label} ({len(curves)} splits)"
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation MAPE, mean over splits")
    ax.set_ylim(0, 1.2)
    ax.set_title(title)
    ax.legend()
    base = Path(out).with_suffix("")
    written = []
    for ext in ("png", "svg"):
        fig.savefig(base.with_suffix(f".{ext}"), dpi=150, bbox_inches="tight")
        written.append(base.with_suffix(f".{ext}"))
    plt.close(fig)
    return written
