"""The paper's screening analysis: correlations of mTC and var(pTC) with material features."""

from __future__ import annotations

import numpy as np
from scipy import stats

#: |r| above which the paper reports a correlation.
THRESHOLD = 0.10


def correlation_table(
    target: np.ndarray, features: dict[str, np.ndarray]
) -> list[dict[str, float | str | bool]]:
    """Pearson r and p, Spearman ρ and p of ``target`` against each feature (rows with NaN dropped)."""
    rows = []
    for name, values in features.items():
        x, y = np.asarray(values, float), np.asarray(target, float)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < 3 or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
            continue
        pearson = stats.pearsonr(x[ok], y[ok])
        spearman = stats.spearmanr(x[ok], y[ok])
        rows.append(
            {
                "feature": name,
                "pearson_r": float(pearson.statistic),
                "pearson_p": float(pearson.pvalue),
                "spearman_rho": float(spearman.statistic),
                "spearman_p": float(spearman.pvalue),
                "n": int(ok.sum()),
                "above_threshold": bool(abs(pearson.statistic) > THRESHOLD),
            }
        )
    return sorted(rows, key=lambda r: -abs(float(r["pearson_r"])))


def table_markdown(title: str, rows: list[dict]) -> str:
    lines = [
        f"### {title}",
        "",
        f"|r| > {THRESHOLD} marked **bold**.",
        "",
        "| feature | Pearson r | p-value | Spearman ρ | p-value | n |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        name = f"**{r['feature']}**" if r["above_threshold"] else r["feature"]
        lines.append(
            f"| {name} | {r['pearson_r']:.3f} | {r['pearson_p']:.2e} | {r['spearman_rho']:.3f} | "
            f"{r['spearman_p']:.2e} | {r['n']} |"
        )
    return "\n".join(lines) + "\n"
