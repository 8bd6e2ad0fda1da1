"""Gradient boosting on composition/structure descriptors, over the same 9 splits as the deep recipes.

Usage: python benchmarks/baseline.py  →  benchmarks/baseline.md and benchmarks/out/baseline.json
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from matgl_ltc import load_dataset
from matgl_ltc.analysis.baseline import baseline_cross_validation
from matgl_ltc.analysis.metrics import METRIC_NAMES
from matgl_ltc.data import random_splits

HERE = Path(__file__).resolve().parent


def main() -> None:
    results = {}
    lines = [
        "# Baseline: gradient boosting on descriptors (9 splits, mean ± std)",
        "",
        "| dataset | " + " | ".join(METRIC_NAMES) + " | seconds |",
        "|---" * (len(METRIC_NAMES) + 2) + "|",
    ]
    for name in ("togo15", "hh143", "mix"):
        data = load_dataset(name)
        start = time.perf_counter()
        per_split = baseline_cross_validation(data, random_splits(data.ids, 9))
        seconds = time.perf_counter() - start
        summary = {
            m: {
                "mean": float(np.mean([s[m] for s in per_split])),
                "std": float(np.std([s[m] for s in per_split])),
            }
            for m in METRIC_NAMES
        }
        results[name] = {"summary": summary, "per_split": per_split, "seconds": seconds}
        cells = " | ".join(f"{summary[m]['mean']:.3f} ± {summary[m]['std']:.3f}" for m in METRIC_NAMES)
        lines.append(f"| {name} | {cells} | {seconds:.1f} |")
    (HERE / "out").mkdir(exist_ok=True)
    (HERE / "out" / "baseline.json").write_text(json.dumps(results, indent=1))
    (HERE / "baseline.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
