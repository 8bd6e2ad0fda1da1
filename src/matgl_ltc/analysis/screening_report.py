"""``matgl-ltc analyze``: tables and figures from a scan output (the paper's Tables 1-4, Figs. 1, 7-9)."""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..screening import PREDICTION_COLUMNS, first_names
from .correlations import correlation_table, table_markdown

_NOT_FEATURES = {*PREDICTION_COLUMNS, "out_of_domain"}


def read_scan(path: str | os.PathLike) -> dict[str, np.ndarray | list]:
    """Columns of a scan output (.csv, .parquet or ase.db) as numpy arrays / lists."""
    path = Path(path)
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path).to_pydict()
    elif path.suffix == ".db":
        from ase.db import connect

        table: dict[str, list] = {}
        with connect(str(path)) as db:
            rows = [{**r.key_value_pairs, "formula": r.formula} for r in db.select()]
        keys = sorted({k for r in rows for k in r})
        table = {k: [r.get(k) for r in rows] for k in keys}
        if "structure_id" in table:
            table["id"] = table.pop("structure_id")
    else:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        table = {k: [r[k] for r in rows] for k in (rows[0].keys() if rows else [])}
    out: dict[str, Any] = {}
    for key, values in table.items():
        try:
            out[key] = np.array([np.nan if v in (None, "") else float(v) for v in values], dtype=float)
        except (TypeError, ValueError):
            out[key] = ["" if v is None else str(v) for v in values]
    return out


def _figures(out: Path, name: str, fig: Any) -> list[str]:
    paths = []
    for ext in ("png", "svg"):
        target = out / f"{name}.{ext}"
        fig.savefig(target, dpi=150, bbox_inches="tight")
        paths.append(target.name)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths


def analyze(
    scan_output: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    training_sets: Sequence[str] = ("togo15", "hh143", "aflow_agl"),
    top: int = 50,
) -> dict[str, Any]:
    """Correlation tables, heatmap, distributions and the lowest-κ candidates of one or more scans."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = [scan_output] if isinstance(scan_output, (str, os.PathLike)) else list(scan_output)
    parts = [read_scan(s) for s in sources]
    keys = set.intersection(*(set(p) for p in parts))
    data = {
        k: (
            np.concatenate([p[k] for p in parts])
            if isinstance(parts[0][k], np.ndarray)
            else list(itertools.chain.from_iterable(p[k] for p in parts))
        )
        for k in keys
    }
    # a structure in several scans (e.g. a stable set and a candidate set) counts once
    ids = data.get("id")
    ids = [str(i) for i in (range(len(data["ltc_mean"])) if ids is None else ids)]
    first_row = {sid: i for i, sid in reversed(list(enumerate(ids)))}
    first = np.zeros(len(ids), dtype=bool)
    first[list(first_row.values())] = True
    ok = np.isfinite(data["ltc_mean"]) & first
    data = {
        k: (v[ok] if isinstance(v, np.ndarray) else [x for x, keep in zip(v, ok) if keep])
        for k, v in data.items()
    }
    member_cols = sorted(
        (k for k in data if k.startswith("ltc_") and k[4:].isdigit()), key=lambda k: int(k[4:])
    )
    features = {
        k: v
        for k, v in data.items()
        if isinstance(v, np.ndarray)
        and k not in _NOT_FEATURES
        and k not in member_cols
        and np.isfinite(v).sum() > 2
        and np.nanstd(v) > 0
    }

    mtc = correlation_table(data["ltc_mean"], features)
    var = correlation_table(data["ltc_var"], features)
    report: dict[str, Any] = {
        "n_structures": int(ok.sum()),
        "n_bad_or_missing": int((first & ~ok).sum()),
        "n_repeated": int((~first).sum()),
        "mTC": mtc,
        "var_pTC": var,
        "figures": [],
    }
    md = [
        f"# Screening analysis ({report['n_structures']} structures; {report['n_bad_or_missing']} without prediction"
        + (f"; {report['n_repeated']} repeated ids counted once" if report["n_repeated"] else "")
        + ")",
        "",
        table_markdown("mTC (ensemble mean κ_L) vs features", mtc),
        table_markdown("var(pTC) (variance over members) vs features", var),
    ]
    for name, rows in (("correlations_mTC", mtc), ("correlations_var_pTC", var)):
        with open(out / f"{name}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["feature"])
            writer.writeheader()
            writer.writerows(rows)

    # Fig. 7: correlation heatmap
    names = ["ltc_mean", "ltc_var", *features]
    matrix = np.array([data[n] for n in names])
    finite = np.all(np.isfinite(matrix), axis=0)
    corr = np.corrcoef(matrix[:, finite])
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(names), 0.8 + 0.5 * len(names)))
    im = ax.imshow(corr, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(names)), ["mTC", "var pTC", *features], rotation=60, ha="right")
    ax.set_yticks(range(len(names)), ["mTC", "var pTC", *features])
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{corr[i, j]:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="Pearson r")
    ax.set_title("Correlations (Pearson)")
    report["figures"] += _figures(out, "correlation_heatmap", fig)

    # Fig. 8: distribution of var(pTC); Fig. 9: distribution of predictions
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(np.log10(np.clip(data["ltc_var"], 1e-8, None)), bins=60, color="tab:orange")
    ax.set_xlabel("log10 var(pTC) [(W/m/K)²]")
    ax.set_ylabel("structures")
    report["figures"] += _figures(out, "var_pTC_distribution", fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(np.log10(np.clip(data["ltc_mean"], 1e-3, None)), bins=60, color="tab:blue")
    ax.set_xlabel("log10 mTC [W/m/K]")
    ax.set_ylabel("structures")
    report["figures"] += _figures(out, "mTC_distribution", fig)

    # Fig. 1: LTC distributions of the training sets
    if training_sets:
        from ..data.datasets import load_dataset

        fig, ax = plt.subplots(figsize=(5, 3.5))
        bins = np.linspace(-2.5, 3.5, 60)
        for name in training_sets:
            ax.hist(np.log10(load_dataset(name).labels), bins=bins, alpha=0.5, density=True, label=name)
        ax.set_xlabel("log10 κ_L [W/m/K]")
        ax.set_ylabel("density")
        ax.legend()
        report["figures"] += _figures(out, "training_sets_ltc_distribution", fig)

    # the lowest-κ candidates
    order = np.argsort(data["ltc_mean"])[:top]
    n = len(data["ltc_mean"])
    ids, formulas = data.get("id", [""] * n), data.get("formula", [""] * n)
    ood = data.get("out_of_domain", np.zeros(len(data["ltc_mean"])))
    outside = data.get("extrapolated", [""] * n)  # absent from scans made before it was written
    candidates = [
        {
            "rank": r + 1,
            "id": ids[i],
            "formula": formulas[i],
            "ltc_mean": float(data["ltc_mean"][i]),
            "ltc_std": float(data["ltc_std"][i]),
            "out_of_domain": bool(ood[i] == 1),
            "extrapolated": outside[i] if isinstance(outside[i], str) else "",  # an empty column reads as NaN
        }
        for r, i in enumerate(order)
    ]
    report["candidates"] = candidates
    with open(out / "lowest_ltc_candidates.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(candidates[0]) if candidates else ["rank"])
        writer.writeheader()
        writer.writerows(candidates)
    md += [
        "### Lowest-κ candidates",
        "",
        "| rank | id | formula | κ_L (W/m/K) | ± σ | out of domain | outside the training range |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    md += [
        f"| {c['rank']} | {c['id']} | {c['formula']} | {c['ltc_mean']:.3g} | {c['ltc_std']:.2g} | "
        f"{'yes' if c['out_of_domain'] else ''} | {first_names(c['extrapolated'])} |"
        for c in candidates
    ]
    md += ["", "Figures: " + ", ".join(f"[{f}]({f})" for f in report["figures"] if f.endswith(".png"))]
    (out / "analysis.md").write_text("\n".join(md) + "\n")
    (out / "analysis.json").write_text(json.dumps(report, indent=1))
    return report
