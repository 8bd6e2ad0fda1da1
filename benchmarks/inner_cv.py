"""Choices made on an inner split of each training part, never on the validation split.

Usage::

    python benchmarks/inner_cv.py [--run benchmarks/out/reproduce/two-stage-hybrid/togo15] [--folds 4]

For each of a recipe run's 9 splits, the training part is cut into ``--folds`` inner folds and
the run's target stage is retrained on each (same start model, same settings, final epoch kept).
The out-of-fold predictions and curves then decide, without looking at the outer validation split:

- **inner early stopping**: the epoch with the lowest mean inner-validation MAPE; the outer model
  stopped there is scored from the outer run's curve (the schedule is the same, so this is exactly
  the model that early stopping would have kept);
- **MAPE-optimal output scale**: the factor ``c`` minimising the out-of-fold MAPE of ``c · κ̂``
  (a weighted median of κ/κ̂), the Bayes point estimate for MAPE, applied to the outer run's
  final-epoch predictions.

Both are compared with the outer run's unbiased (final-epoch) predictions, paired per split.
Writes ``benchmarks/inner_cv.md`` and ``benchmarks/out/inner_cv.json``; resumes from the inner
models already trained under ``benchmarks/out/inner_cv/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from studies import cell, paired_difference, read_columns  # benchmarks/, beside this script

from matgl_ltc.analysis.metrics import regression_metrics
from matgl_ltc.data.datasets import load_dataset
from matgl_ltc.data.splits import Split, load_splits
from matgl_ltc.model.ltc_model import LTCModel
from matgl_ltc.train.fit import fit
from matgl_ltc.train.recipes import Recipe

HERE = Path(__file__).resolve().parent


def inner_splits(split: Split, n_folds: int) -> list[Split]:
    """``n_folds`` folds of the training part, shuffled with a seed of their own (1000 + split index)."""
    train = np.array(split.train)
    order = np.random.default_rng(1000 + split.index).permutation(len(train))
    return [
        Split(tuple(np.delete(train, fold)), tuple(train[fold]), index=j)
        for j, fold in enumerate(np.array_split(order, n_folds))
    ]


def mape_optimal_scale(true: np.ndarray, pred: np.ndarray) -> float:
    """argmin_c Σ |c·p − t| / t = the median of t/p weighted by p/t."""
    ratio = true / pred
    order = np.argsort(ratio)
    weights = np.cumsum((1.0 / ratio)[order])
    return float(ratio[order][np.searchsorted(weights, 0.5 * weights[-1])])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", default=str(HERE / "out" / "reproduce" / "two-stage-hybrid" / "togo15"))
    parser.add_argument("--folds", type=int, default=4)
    args = parser.parse_args()
    run = Path(args.run)
    recipe = Recipe.from_dict(json.loads((run / "recipe.json").read_text()))
    stage = recipe.stages[-1]
    settings = {**stage.fit_kwargs(), "keep": "last"}
    splits = load_splits(run / "splits.json")
    dataset = load_dataset(json.loads((run / "summary.json").read_text())["dataset"])
    work = HERE / "out" / "inner_cv" / recipe.name / dataset.name

    rows = []
    for k, split in enumerate(splits):
        outer = run / f"split_{k}" / stage.name
        start = json.loads((outer / "model" / "model.json").read_text())["metadata"]["initialised_from"]
        folds = []
        for inner in inner_splits(split, args.folds):
            folder = work / f"split_{k}" / f"fold_{inner.index}"
            if not (folder / "metrics.json").exists():
                model = (
                    LTCModel.from_backbone(stage.init_ref, head_hidden=stage.head_hidden, seed=stage.seed)
                    if stage.init_kind == "backbone"
                    else LTCModel.load(start)
                )
                fit(model, dataset, inner, out_dir=folder, progress=False, **settings)
            folds.append(folder)
        true, pred = (
            np.concatenate(c)
            for c in zip(
                *(read_columns(f / "validation_predictions.csv", "ltc_true", "ltc_pred_final") for f in folds)
            )
        )
        inner_curve = np.mean([read_columns(f / "curve.csv", "val_mape")[0] for f in folds], axis=0)
        epoch = int(np.argmin(inner_curve))
        scale = mape_optimal_scale(true, pred)
        outer_true, outer_final = read_columns(
            outer / "validation_predictions.csv", "ltc_true", "ltc_pred_final"
        )
        outer_mape, outer_log10 = read_columns(outer / "curve.csv", "val_mape", "val_log10_mae")
        final = regression_metrics(outer_true, outer_final)
        scaled = regression_metrics(outer_true, scale * outer_final)
        rows.append(
            {
                "split": k,
                "inner_epoch": epoch,
                "scale": scale,
                "inner_oof_mape": regression_metrics(true, pred)["mape"],
                "final": final,
                "inner_early_stopping": {
                    "mape": float(outer_mape[epoch]),
                    "log10_mae": float(outer_log10[epoch]),
                },
                "mape_optimal_scale": scaled,
            }
        )
        print(
            f"split {k}: epoch {epoch}, scale {scale:.3f}, MAPE {final['mape']:.3f} → "
            f"early stop {outer_mape[epoch]:.3f}, scaled {scaled['mape']:.3f}",
            flush=True,
        )

    def paired(rows: list[dict], variant: str, metric: str) -> str:
        ref = np.array([r["final"][metric] for r in rows])
        return cell(paired_difference(ref, np.array([r[variant][metric] for r in rows])))

    mean = {m: float(np.mean([r["final"][m] for r in rows])) for m in ("mape", "log10_mae")}
    lines = [
        f"# Inner-split choices: {recipe.name} on {dataset.name}",
        "",
        f"`python benchmarks/inner_cv.py --run {run.relative_to(HERE.parent) if run.is_relative_to(HERE.parent) else run}"
        f" --folds {args.folds}`. {args.folds} inner folds of each split's training part, the target stage "
        "retrained on each; the outer validation split is never looked at. Cells: mean over the 9 splits "
        "(paired difference to the final-epoch reference ± its standard error; splits improved).",
        "",
        "| choice | MAPE (unbiased) | log10-MAE |",
        "| --- | --- | --- |",
        f"| reference: final epoch of the fixed schedule | {mean['mape']:.3f} | {mean['log10_mae']:.3f} |",
        f"| inner early stopping (epoch of the lowest mean inner MAPE) | {paired(rows, 'inner_early_stopping', 'mape')} "
        f"| {paired(rows, 'inner_early_stopping', 'log10_mae')} |",
        f"| MAPE-optimal output scale c · κ̂ (c fitted out of fold) | {paired(rows, 'mape_optimal_scale', 'mape')} "
        f"| {paired(rows, 'mape_optimal_scale', 'log10_mae')} |",
        "",
        f"Inner epochs chosen: {[r['inner_epoch'] for r in rows]}; scales: "
        f"{[round(r['scale'], 3) for r in rows]}; inner out-of-fold MAPE "
        f"{np.mean([r['inner_oof_mape'] for r in rows]):.3f} (models trained on {args.folds - 1}/{args.folds} "
        "of the training part).",
        "",
    ]
    (HERE / "inner_cv.md").write_text("\n".join(lines))
    out = HERE / "out" / "inner_cv.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"run": str(run), "folds": args.folds, "splits": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
