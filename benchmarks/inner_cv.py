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
from matgl_ltc.data.datasets import LTCDataset, load_dataset
from matgl_ltc.data.splits import Split, load_splits
from matgl_ltc.model.ensemble import log_spread
from matgl_ltc.model.ltc_model import LTCModel
from matgl_ltc.train.fit import fit
from matgl_ltc.train.recipes import Recipe, Stage

HERE = Path(__file__).resolve().parent


def relative(path: Path) -> Path:
    """``path`` relative to the repository, for the commands quoted in the tables."""
    return path.relative_to(HERE.parent) if path.is_relative_to(HERE.parent) else path


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


def inner_folds(
    run: Path,
    stage: Stage,
    settings: dict,
    dataset: LTCDataset,
    split: Split,
    k: int,
    n_folds: int,
    work: Path,
    seed: int,
) -> list[Path]:
    """The target stage retrained on each inner fold of split k with ``seed`` (trained once, then reused)."""
    start = json.loads((run / f"split_{k}" / stage.name / "model" / "model.json").read_text())["metadata"][
        "initialised_from"
    ]
    folders = []
    for inner in inner_splits(split, n_folds):
        # the run's own seed keeps the folder names of the first version of this script
        folder = (
            work / f"split_{k}" / (f"fold_{inner.index}" + ("" if seed == stage.seed else f"_seed{seed}"))
        )
        if not (folder / "metrics.json").exists():
            model = (
                LTCModel.from_backbone(stage.init_ref, head_hidden=stage.head_hidden, seed=seed)
                if stage.init_kind == "backbone"
                else LTCModel.load(start)
            )
            fit(model, dataset, inner, out_dir=folder, progress=False, **{**settings, "seed": seed})
        folders.append(folder)
    return folders


def min_mape_with_factor(members: np.ndarray, factor: float) -> np.ndarray:
    """exp(μ − factor · s²) over the members' ln κ: the min-MAPE estimate with its spread scaled."""
    mu, var = log_spread(members)
    return np.exp(mu - factor * var)


def fit_variance_factor(true: np.ndarray, members: np.ndarray) -> float:
    """The factor on s² that minimises the MAPE of :func:`min_mape_with_factor` (grid 0 to 10)."""
    grid = np.round(np.arange(0.0, 10.01, 0.1), 2)
    mape = [np.mean(np.abs(min_mape_with_factor(members, f) - true) / true) for f in grid]
    return float(grid[int(np.argmin(mape))])


def min_mape_variance_factor(
    run: Path, stage: Stage, settings: dict, dataset: LTCDataset, splits: list, work: Path, args
) -> None:
    """Does the seed spread s² understate the spread the min-MAPE estimate should use?

    The estimate exp(μ − s²) is MAPE-optimal when s² is the whole predictive variance; the
    spread of a few seeds is only part of it. Per split, a factor f on s² is fitted on the
    out-of-fold predictions of the ``--min-mape-seeds`` inner-fold ensembles (the training part
    only), then applied to the outer seed triples of ``--outer-triples`` (each a list of run
    folders, one per seed), scored on their final-epoch predictions against f = 1.
    """
    triples = [[Path(p) for p in t.split(",")] for t in args.outer_triples]
    rows = []
    for k, split in enumerate(splits):
        seeds = [
            inner_folds(run, stage, settings, dataset, split, k, args.folds, work, seed)
            for seed in args.min_mape_seeds
        ]
        true = np.concatenate(
            [read_columns(f / "validation_predictions.csv", "ltc_true")[0] for f in seeds[0]]
        )
        members = np.stack(
            [
                np.concatenate(
                    [read_columns(f / "validation_predictions.csv", "ltc_pred_final")[0] for f in folds]
                )
                for folds in seeds
            ],
            axis=1,
        )
        factor = fit_variance_factor(true, members)
        row = {"split": k, "factor": factor, "outer": []}
        for triple in triples:
            tables = [
                read_columns(
                    r / f"split_{k}" / stage.name / "validation_predictions.csv", "ltc_true", "ltc_pred_final"
                )
                for r in triple
            ]
            outer_true = tables[0][0]
            outer = np.stack([t[1] for t in tables], axis=1)
            row["outer"].append(
                {
                    "runs": [str(r) for r in triple],
                    "f=1": regression_metrics(outer_true, min_mape_with_factor(outer, 1.0)),
                    "fitted": regression_metrics(outer_true, min_mape_with_factor(outer, factor)),
                }
            )
        rows.append(row)
        print(f"split {k}: factor {factor}", flush=True)

    lines = [
        f"# The min-MAPE estimate's variance factor, fitted on inner folds: {stage.name} of {run.name}",
        "",
        f"`python benchmarks/inner_cv.py --run {relative(run)} --folds {args.folds} --min-mape-seeds "
        f"{' '.join(map(str, args.min_mape_seeds))} --outer-triples {' '.join(args.outer_triples)}`. Per split, a factor f on the "
        "members' variance of ln κ in exp(μ − f·s²) is fitted on the out-of-fold predictions of "
        f"{len(args.min_mape_seeds)}-seed inner-fold ensembles (training part only), then applied to "
        "outer seed triples. Cells: mean over the splits (paired difference to f = 1 ± its standard "
        "error; splits improved).",
        "",
        "| outer seed triple | unbiased MAPE, f = 1 | unbiased MAPE, fitted f | log10-MAE, f = 1 | log10-MAE, fitted f |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t, triple in enumerate(triples):
        cells = []
        for metric in ("mape", "log10_mae"):
            ref = np.array([r["outer"][t]["f=1"][metric] for r in rows])
            var = np.array([r["outer"][t]["fitted"][metric] for r in rows])
            cells += [f"{ref.mean():.3f}", cell(paired_difference(ref, var))]
        seeds = [
            json.loads((r / "split_0" / stage.name / "metrics.json").read_text())["settings"]["seed"]
            for r in triple
        ]
        lines.append(
            f"| seeds {', '.join(map(str, seeds))} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |"
        )
    lines += ["", f"Factors fitted per split: {[r['factor'] for r in rows]}.", ""]
    (HERE / "inner_cv_min_mape.md").write_text("\n".join(lines))
    out = HERE / "out" / "inner_cv_min_mape.json"
    record = {"run": str(relative(run)), "folds": args.folds, "seeds": args.min_mape_seeds, "splits": rows}
    out.write_text(json.dumps(record, indent=1))
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", default=str(HERE / "out" / "reproduce" / "two-stage-hybrid" / "togo15"))
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--train-seed", type=int, help="only train the inner folds with this seed")
    parser.add_argument("--min-mape-seeds", type=int, nargs="*", help="fit the min-MAPE variance factor")
    parser.add_argument("--outer-triples", nargs="*", default=[], help="comma-separated run folders")
    args = parser.parse_args()
    run = Path(args.run)
    recipe = Recipe.from_dict(json.loads((run / "recipe.json").read_text()))
    stage = recipe.stages[-1]
    settings = {**stage.fit_kwargs(), "keep": "last"}
    splits = load_splits(run / "splits.json")
    dataset = load_dataset(json.loads((run / "summary.json").read_text())["dataset"])
    work = HERE / "out" / "inner_cv" / recipe.name / dataset.name

    if args.train_seed is not None:  # only train (another process may train another seed)
        for k, split in enumerate(splits):
            inner_folds(run, stage, settings, dataset, split, k, args.folds, work, args.train_seed)
        return
    if args.min_mape_seeds:
        min_mape_variance_factor(run, stage, settings, dataset, splits, work, args)
        return

    rows = []
    for k, split in enumerate(splits):
        outer = run / f"split_{k}" / stage.name
        folds = inner_folds(run, stage, settings, dataset, split, k, args.folds, work, stage.seed)
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
        f"`python benchmarks/inner_cv.py --run {relative(run)}"
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
