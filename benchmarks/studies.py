"""Accuracy studies: one change at a time to a recipe's target stage, paired per split.

Usage::

    python benchmarks/studies.py [--base two-stage|two-stage-hybrid] [--datasets togo15 ...]
                                 [--variants average-50 log-l1 ...] [--ensembles seeds-5 ...]

Every variant reuses the AFLOW models of ``benchmarks/reproduce.py`` (same stage cache, so
run that first) and trains the target stage over the same 9 splits; a variant that changes
the AFLOW stage trains its own. The split-to-split spread is larger than most method
differences, so each variant is compared with the base recipe's reproduce run *on the same
split*: mean paired difference and the number of splits it improves. An *ensemble* row
averages (in log space) the validation predictions of several seed variants per split.
Writes ``benchmarks/studies.md`` and ``benchmarks/out/studies.json``.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from matgl_ltc.analysis.metrics import regression_metrics
from matgl_ltc.model import point_estimate
from matgl_ltc.train.fit import PAPER_DEFAULTS
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

#: the paper's target-stage settings (300 epochs at batch 8)
PAPER_TARGET = {k: PAPER_DEFAULTS[k] for k in ("epochs", "batch_size")}

#: name → (what changes, overrides of the target stage[, overrides of the AFLOW stage])
VARIANTS: dict[str, tuple] = {
    "average-50": (
        "mean of the weights of the last 50 of 200 epochs (snapshot averaging)",
        {"average_last": 50},
    ),
    "log-l1": ("L1 loss on the standardized log target instead of MAPE", {"loss": "log_l1"}),
    "freeze-early": ("embedding, encoders and the first MEGNet block frozen", {"freeze": EARLY_LAYERS}),
    "lr-5e-4": ("half the learning rate (5e-4)", {"lr": 5e-4}),
    "epochs-30": ("30 epochs instead of 200 (cosine schedule over 30)", {"epochs": 30}),
    "epochs-60": ("60 epochs instead of 200 (cosine schedule over 60)", {"epochs": 60}),
    "epochs-300": (
        "300 epochs instead of 200 (the paper's count; cosine schedule over 300)",
        {"epochs": 300},
    ),
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
    "descriptors": (
        "composition/structure descriptors enter the head (zero-initialized columns): the "
        "`two-stage-hybrid` recipe",
        {"descriptors": True},
    ),
    "aflow-descriptors": (
        "descriptors in the head of the AFLOW stage too (3 AFLOW models retrained)",
        {"descriptors": True},
        {"descriptors": True},
    ),
    "weight-decay-1e-4": ("Adam weight decay (L2) 1e-4", {"weight_decay": 1e-4}),
    "paper-target": (
        "the paper's target-stage settings: 300 epochs at batch 8 (AFLOW stage unchanged)",
        PAPER_TARGET,
    ),
    "head-128-64": (
        "head 128-64 instead of ParAIsite's 450-350-350 (3 AFLOW models retrained)",
        {},
        {"head_hidden": (128, 64)},
    ),
    "joint-fidelity": (
        "fidelity-aware pre-training: one model per split on all of AFLOW AGL (fidelity 0) and the "
        "split's training labels (fidelity 1), 40 epochs, L1 loss on the standardized log target (MAPE "
        "on AGL's tiny labels, scaled with the phono3py statistics, collapsed the head), final epoch kept; "
        "then fine-tuned at fidelity 1",
        {"init": "stage:joint", "fidelity": 1},
        {
            "name": "joint",
            "dataset": "target",
            "fidelity": 1,
            "replay": "aflow_agl",
            "replay_size": 0,
            "replay_fidelity": 0,
            "loss": "log_l1",
            "keep": "last",
            "n_splits": None,
        },
    ),
    **{
        f"seed-{seed}": (f"the base recipe with seed {seed} (a member of a seed ensemble)", {"seed": seed})
        for seed in range(42, 53)
    },
    **{
        f"paper-target-seed-{seed}": (
            f"the paper's target-stage settings (300 epochs at batch 8) with seed {seed}",
            {**PAPER_TARGET, "seed": seed},
        )
        for seed in range(43, 47)
    },
}
MIN_MAPE = "min-MAPE estimate exp(μ − s²) (μ, s²: mean and variance of ln κ over members)"
#: name → (what it is, seed variants combined per split, point estimate of matgl_ltc.model.point_estimate)
ENSEMBLES: dict[str, tuple[str, list[str], str]] = {
    "seeds-3": (
        "geometric mean of 3 seeds (42-44) per split",
        [f"seed-{s}" for s in range(42, 45)],
        "geometric",
    ),
    "seeds-5": (
        "geometric mean of 5 seeds (42-46) per split",
        [f"seed-{s}" for s in range(42, 47)],
        "geometric",
    ),
    "paper-target-seeds-3": (
        "geometric mean of 3 seeds (42-44) per split, each with the paper's target-stage settings",
        ["paper-target", "paper-target-seed-43", "paper-target-seed-44"],
        "geometric",
    ),
    "paper-target-seeds-5": (
        "geometric mean of 5 seeds (42-46) per split, each with the paper's target-stage settings",
        ["paper-target", *(f"paper-target-seed-{s}" for s in range(43, 47))],
        "geometric",
    ),
    **{
        f"seeds-{first}-{last}-{estimate.replace('_', '-')}": (
            f"{label} of seeds {first}-{last} per split",
            [f"seed-{s}" for s in range(first, last + 1)],
            estimate,
        )
        for first, last, estimate, label in (
            (42, 44, "min_mape", MIN_MAPE),
            (42, 46, "min_mape", MIN_MAPE),
            (47, 49, "geometric", "geometric mean"),
            (47, 49, "min_mape", MIN_MAPE),
            (50, 52, "geometric", "geometric mean"),
            (50, 52, "min_mape", MIN_MAPE),
        )
    },
    "paper-target-seeds-5-min-mape": (
        f"{MIN_MAPE} of 5 seeds (42-46) per split, each with the paper's target-stage settings",
        ["paper-target", *(f"paper-target-seed-{s}" for s in range(43, 47))],
        "min_mape",
    ),
}
#: (protocol, metric, lower is better)
COMPARED = [
    ("best_epoch", "mape", True),
    ("unbiased", "mape", True),
    ("unbiased", "log10_mae", True),
    ("unbiased", "spearman", False),
]


#: (base, variant) pairs that are a reproduce run already: the variant is not trained again.
#: (The two-stage reference predates the final-epoch predictions, so its seed 42 is rerun.)
SAME_AS_RUN = {
    ("two-stage", "descriptors"): "two-stage-hybrid",
    ("two-stage-hybrid", "seed-42"): "two-stage-hybrid",
}


def variant_dir(base: str, name: str, dataset: str) -> Path:
    if (base, name) in SAME_AS_RUN:
        return REPRODUCE / SAME_AS_RUN[base, name] / dataset
    return (OUT / name if base == "two-stage" else OUT / base / name) / dataset


def run_variant(runner: RecipeRunner, base_name: str, name: str, dataset: str, n_splits: int) -> dict:
    if (base_name, name) in SAME_AS_RUN:
        return json.loads((variant_dir(base_name, name, dataset) / "summary.json").read_text())
    base = resolve_recipe(base_name)
    _, target_overrides, *aflow_overrides = VARIANTS[name]
    stages = list(base.stages)
    stages[-1] = replace(stages[-1], **target_overrides)
    if aflow_overrides:
        stages[0] = replace(stages[0], **aflow_overrides[0])
    recipe = replace(base, name=f"{base_name}/{name}", stages=tuple(stages))
    return runner.run(recipe, dataset, variant_dir(base_name, name, dataset), n_splits=n_splits).summary


def ensemble_summary(base: str, members: list[str], dataset: str, estimate: str = "geometric") -> dict:
    """Per-split metrics of the members' combined prediction (``estimate``), for both protocols."""
    per_split: dict[str, list] = {"best_epoch": [], "unbiased": []}
    for k in range(len(list((variant_dir(base, members[0], dataset)).glob("split_*")))):
        tables = [
            read_predictions(
                variant_dir(base, m, dataset) / f"split_{k}" / "target" / "validation_predictions.csv"
            )
            for m in members
        ]
        true = tables[0][0]
        for protocol, column in (("best_epoch", 1), ("unbiased", 2)):
            pred = point_estimate(np.stack([t[column] for t in tables], axis=1), estimate)
            per_split[protocol].append(regression_metrics(true, pred))
    return {
        protocol: {m: {"values": [r[m] for r in rows]} for m in rows[0]}
        for protocol, rows in per_split.items()
    }


def read_columns(path: Path, *columns: str) -> list[np.ndarray]:
    """Numeric columns of a run's CSV (``validation_predictions.csv``, ``curve.csv``)."""
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    return [np.array([float(r[c]) for r in rows]) for c in columns]


def read_predictions(path: Path) -> list[np.ndarray]:
    """(true, kept-epoch prediction, final-epoch prediction) of one validation_predictions.csv."""
    return read_columns(path, "ltc_true", "ltc_pred", "ltc_pred_final")


def paired_difference(reference: np.ndarray, variant: np.ndarray, lower: bool = True) -> dict:
    """Means, the mean per-split difference with its standard error, and the splits improved."""
    diff = variant - reference
    return {
        "reference": float(reference.mean()),
        "variant": float(variant.mean()),
        "mean_diff": float(diff.mean()),
        "sem_diff": float(diff.std(ddof=1) / np.sqrt(len(diff))),
        "wins": int(np.sum(diff < 0) if lower else np.sum(diff > 0)),
        "n": len(diff),
    }


def cell(comparison: dict) -> str:
    """A table cell: variant mean (paired difference ± its standard error; splits improved)."""
    c = comparison
    return f"{c['variant']:.3f} ({c['mean_diff']:+.3f} ± {c['sem_diff']:.3f}; {c['wins']}/{c['n']})"


def paired(reference: dict, variant: dict) -> dict:
    out = {}
    for protocol, metric, lower in COMPARED:
        var = np.array(variant[protocol][metric]["values"])
        ref = np.array(reference[protocol][metric]["values"])[: len(var)]  # a pilot on the first splits
        out[f"{protocol}/{metric}"] = paired_difference(ref, var, lower)
    return out


def markdown(results: dict) -> str:
    lines = [
        "# Accuracy studies (target stage varied, paired per split)",
        "",
        "Reference: the base recipe's run in `benchmarks/reproduce.md`. Each cell: variant mean "
        "(paired difference to the reference ± its standard error; splits improved out of 9).",
        "",
        "The `two-stage` variants (except `descriptors`, the re-run `two-stage-hybrid` recipe) and the "
        "`pre-rbf-fix two-stage-hybrid` rows were trained while `fit` let "
        "matgl's fixed Gaussian RBF centers train (a bug, fixed and tested since); the "
        "`two-stage-hybrid` rows were re-run after the fix against a reference also re-run after it. "
        "The `pre-rbf-fix` rows are kept for the record.",
        "",
        "| dataset | base recipe | variant | change | MAPE best epoch | MAPE final (unbiased) | log10-MAE final "
        "| Spearman final |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for dataset, variants in results.items():
        for name, cmp in variants.items():
            cells = [cell(c) for c in cmp.values()]
            base, _, short = name.rpartition(" + ")
            what = (VARIANTS.get(short) or ENSEMBLES[short])[0]
            lines.append(
                f"| {dataset} | {base or 'two-stage'} | {short} | {what} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def record_row(record: Path, dataset: str, name: str, row: dict) -> dict:
    """Add one row to the JSON record and rewrite the table, under a lock: runs in parallel keep all rows."""
    record.parent.mkdir(parents=True, exist_ok=True)
    with open(record.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(record.read_text()) if record.exists() else {}
        results.setdefault(dataset, {})[name] = row
        record.write_text(json.dumps(results, indent=1))
        (HERE / "studies.md").write_text(markdown(results))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--base", default="two-stage", choices=["two-stage", "two-stage-hybrid"])
    parser.add_argument("--datasets", nargs="+", default=["togo15"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--ensembles", nargs="*", default=[], choices=list(ENSEMBLES))
    parser.add_argument("--n-splits", type=int, default=9)
    args = parser.parse_args()
    runner = RecipeRunner(REPRODUCE / "stages", progress=False)
    record = HERE / "out" / "studies.json"
    results = json.loads(record.read_text()) if record.exists() else {}
    for dataset in args.datasets:
        reference = json.loads((REPRODUCE / args.base / dataset / "summary.json").read_text())
        prefix = "" if args.base == "two-stage" else f"{args.base} + "
        for name in args.variants:
            summary = run_variant(runner, args.base, name, dataset, args.n_splits)
            results = record_row(record, dataset, prefix + name, paired(reference, summary))
        for name in args.ensembles:
            _, members, estimate = ENSEMBLES[name]
            summary = ensemble_summary(args.base, members, dataset, estimate)
            results = record_row(record, dataset, prefix + name, paired(reference, summary))
    print(markdown(results))


if __name__ == "__main__":
    main()
