"""Accuracy studies: one change at a time to the two-stage recipe's target stage, paired per split.

Usage::

    python benchmarks/studies.py [--datasets togo15 ...] [--variants average-50 log-l1 ...]

Every variant reuses the AFLOW models of ``benchmarks/reproduce.py`` (same stage cache, so
run that first) and trains the target stage over the same 9 splits. The split-to-split
spread is larger than most method differences, so each variant is compared with the
reference *on the same split*: mean paired difference and the number of splits it improves.
Writes ``benchmarks/studies.md`` and ``benchmarks/out/studies.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from matgl_ltc.train.recipes import resolve_recipe
from matgl_ltc.train.runner import RecipeRunner

HERE = Path(__file__).resolve().parent
REPRODUCE = HERE / "out" / "reproduce"
OUT = HERE / "out" / "studies"

EARLY_LAYERS = (
    "backbone.embedding",
    "backbone.edge_encoder",
    "backbone.node_encoder",
    "backbone.state_encoder",
    "backbone.blocks.0",
)

#: name → (what changes, overrides of the target stage)
VARIANTS: dict[str, tuple[str, dict]] = {
    "average-50": (
        "mean of the weights of the last 50 of 200 epochs (snapshot averaging)",
        {"average_last": 50},
    ),
    "log-l1": ("L1 loss on the standardized log target instead of MAPE", {"loss": "log_l1"}),
    "freeze-early": ("embedding, encoders and the first MEGNet block frozen", {"freeze": EARLY_LAYERS}),
    "lr-5e-4": ("half the learning rate (5e-4)", {"lr": 5e-4}),
    "epochs-30": ("30 epochs instead of 200 (cosine schedule over 30)", {"epochs": 30}),
    "epochs-60": ("60 epochs instead of 200 (cosine schedule over 60)", {"epochs": 60}),
    "fidelity": ("phono3py labels fed as fidelity 1 in MEGNet's state (AGL stage: 0)", {"fidelity": 1}),
    "replay-300": (
        "300 AGL structures (fixed per split) mixed into every fine-tuning epoch",
        {"replay": "aflow_agl", "replay_size": 300},
    ),
    "fidelity-replay-300": (
        "both: AGL replay at fidelity 0, phono3py at fidelity 1 (fidelity-aware fine-tuning)",
        {"fidelity": 1, "replay": "aflow_agl", "replay_size": 300, "replay_fidelity": 0},
    ),
    "hh143-replay": (
        "all 143 HH143 structures (DFT/BTE, same fidelity) mixed into every fine-tuning epoch",
        {"replay": "hh143", "replay_size": 0},
    ),
    **{
        f"seed-{seed}": (f"the reference with seed {seed} (a member of a seed ensemble)", {"seed": seed})
        for seed in range(42, 47)
    },
}
#: (protocol, metric, lower is better)
COMPARED = [
    ("best_epoch", "mape", True),
    ("unbiased", "mape", True),
    ("unbiased", "log10_mae", True),
    ("unbiased", "spearman", False),
]


def run_variant(runner: RecipeRunner, name: str, dataset: str, n_splits: int) -> dict:
    base = resolve_recipe("two-stage")
    target = replace(base.stages[-1], **VARIANTS[name][1])
    recipe = replace(base, name=f"two-stage/{name}", stages=(*base.stages[:-1], target))
    return runner.run(recipe, dataset, OUT / name / dataset, n_splits=n_splits).summary


def paired(reference: dict, variant: dict) -> dict:
    out = {}
    for protocol, metric, lower in COMPARED:
        ref = np.array(reference[protocol][metric]["values"])
        var = np.array(variant[protocol][metric]["values"])
        diff = var - ref
        wins = int(np.sum(diff < 0) if lower else np.sum(diff > 0))
        out[f"{protocol}/{metric}"] = {
            "reference": float(ref.mean()),
            "variant": float(var.mean()),
            "mean_diff": float(diff.mean()),
            "sem_diff": float(diff.std(ddof=1) / np.sqrt(len(diff))),
            "wins": wins,
            "n": len(diff),
        }
    return out


def markdown(results: dict) -> str:
    lines = [
        "# Accuracy studies (two-stage, target stage varied, paired per split)",
        "",
        "Reference: the default `two-stage` recipe (`benchmarks/reproduce.md`). Each cell: variant mean "
        "(paired difference to the reference ± its standard error; splits improved out of 9).",
        "",
        "| dataset | variant | change | MAPE best epoch | MAPE final (unbiased) | log10-MAE final | Spearman final |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for dataset, variants in results.items():
        for name, cmp in variants.items():
            cells = [
                f"{c['variant']:.3f} ({c['mean_diff']:+.3f} ± {c['sem_diff']:.3f}; {c['wins']}/{c['n']})"
                for c in cmp.values()
            ]
            lines.append(f"| {dataset} | {name} | {VARIANTS[name][0]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["togo15"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--n-splits", type=int, default=9)
    args = parser.parse_args()
    runner = RecipeRunner(REPRODUCE / "stages", progress=False)
    record = HERE / "out" / "studies.json"
    results = json.loads(record.read_text()) if record.exists() else {}
    for dataset in args.datasets:
        reference = json.loads((REPRODUCE / "two-stage" / dataset / "summary.json").read_text())
        for name in args.variants:
            summary = run_variant(runner, name, dataset, args.n_splits)
            results.setdefault(dataset, {})[name] = paired(reference, summary)
            record.write_text(json.dumps(results, indent=1))
            (HERE / "studies.md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
