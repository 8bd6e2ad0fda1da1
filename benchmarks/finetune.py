"""Fine-tuning the shipped model on a small new set: what n labelled structures buy.

Usage::

    python benchmarks/finetune.py [--dataset hh143] [--sizes 15 30 60 0] [--seeds 42 ...]
                                  [--stage-cache DIR] [--starts shipped-finetuned aflow ...]

The question of a user with n phono3py κ_L for a new family of crystals: predict with the shipped
default as it is, fine-tune it on the n (``init = "model:LTC-MEGNet-Togo15-hybrid"``), train
``two-stage-hybrid``'s target stage from AFLOW models, or fit trees? Over the dataset's 9 seeded
80/20 splits, the first n structures of a seeded shuffle of each split's training part train (the
subsets are nested; n = 0 is the whole training part) and the split's validation part scores.

Starts (each a recipe run through :class:`matgl_ltc.train.RecipeRunner`, 200 epochs at batch 16):

- ``shipped``: ``LTC-MEGNet-Togo15-hybrid`` as shipped, its default estimate; nothing trained.
- ``shipped-finetuned``: split k fine-tunes member k of the shipped ensemble (Togo15-trained;
  AFLOW AGL before that).
- ``aflow``: ``two-stage-hybrid``'s target stage from AFLOW model k mod 3 (the AFLOW stage is
  trained once per seed into the stage cache, or reused from ``--stage-cache`` when its settings
  and seed match; ``{seed}`` in the path stands for each seed).
- ``eform``: the formation-energy MEGNet with a fresh hybrid head (no AFLOW stage).
- ``agl-trees``: the gradient-boosted trees of the shipped default's blend, on the n structures
  beside AFLOW AGL's 4399 at fidelity 0.
- ``shipped-finetuned+trees``: ``shipped-finetuned`` blended with those trees as the shipped
  default is (0.4 of the log-space estimate): what the fine-tuning recipe with
  ``boosting_weight = 0.4`` and ``boosting_low_fidelity = "aflow_agl"`` gives, scored from the
  ``shipped-finetuned`` runs without training again.

Each seed is a whole draw: the target stages' seed and the AFLOW models'. The tables pool the
9 splits of every seed. Runs are resumable: each (start, n, seed) is a run folder under
``benchmarks/out/finetune/``. Writes
``benchmarks/finetune.md``, ``benchmarks/out/finetune.json`` and ``docs/figures/finetune.png``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from boosting import booster_predictions

from matgl_ltc import load_dataset, load_model
from matgl_ltc.analysis.metrics import regression_metrics
from matgl_ltc.analysis.plots import read_csv_rows
from matgl_ltc.data import Split, random_splits
from matgl_ltc.data.descriptors import descriptor_matrix
from matgl_ltc.model import point_estimate
from matgl_ltc.pretrained import DEFAULT_MODEL
from matgl_ltc.train import Recipe, RecipeRunner, Stage, resolve_recipe
from matgl_ltc.train.recipes import FAST_TARGET

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "finetune"
FIGURE = HERE.parent / "docs" / "figures" / "finetune.png"
STARTS = ("shipped", "shipped-finetuned", "aflow", "eform", "agl-trees", "shipped-finetuned+trees")
#: starts that no seed changes (nothing trained, or deterministic trees)
SEEDLESS = ("shipped", "agl-trees")
#: the trees' share of the blended estimate, as in the shipped default
TREES_WEIGHT = 0.4
#: (protocol, metric) columns of the table
COLUMNS = (("best_epoch", "mape"), ("unbiased", "mape"), ("unbiased", "log10_mae"), ("unbiased", "spearman"))


def subsampled_splits(ids: list[str], n: int, n_splits: int = 9) -> list[Split]:
    """The seeded 80/20 splits with each training part cut to its first n of a seeded shuffle."""
    splits = []
    for split in random_splits(ids, n_splits=n_splits):
        order = np.random.default_rng(1000 + split.index).permutation(len(split.train))
        train = [split.train[i] for i in order[: n or len(order)]]
        splits.append(Split(tuple(train), split.validation, split.index, split.seed))
    return splits


def recipe_for(start: str, seed: int) -> Recipe:
    if start == "shipped-finetuned":
        stage = Stage("target", init=f"model:{DEFAULT_MODEL}", seed=seed, **FAST_TARGET)
        return Recipe("finetune-shipped", (stage,))
    if start == "aflow":
        return resolve_recipe("two-stage-hybrid").with_overrides(seed=seed)
    if start == "eform":
        return Recipe("eform-hybrid", (Stage("target", descriptors=True, seed=seed, **FAST_TARGET),))
    raise ValueError(start)


def scores_of_predictions(dataset, splits: list[Split], predict) -> dict[str, list[float]]:
    """Per-split metrics of ``predict(split, validation indices) → (kept-epoch κ, final-epoch κ)``."""
    table: dict[str, list[float]] = {}
    for split in splits:
        val = dataset.indices(split.validation)
        kappa = dict(zip(("best_epoch", "unbiased"), predict(split, val)))
        for protocol, metric in COLUMNS:
            metrics = regression_metrics(dataset.labels[val], kappa[protocol])
            table.setdefault(f"{protocol}/{metric}", []).append(metrics[metric])
    return table


def agl_trees(dataset):
    """``(split, validation indices) → κ`` of trees fitted on the split's training part beside AGL
    (:func:`boosting.booster_predictions`, the boosted benchmarks' trees)."""
    agl = load_dataset("aflow_agl")
    boosted_of = booster_predictions(dataset.name, (descriptor_matrix(agl.atoms), np.log10(agl.labels)))
    return lambda split, val: boosted_of(split, [dataset.ids[i] for i in val])


def run_folder(start: str, n: int, dataset: str, seed: int) -> Path:
    return OUT / dataset / f"{start}-n{n}-seed{seed}"


def run_start(start: str, n: int, dataset, seed: int, runner: RecipeRunner) -> dict[str, list[float]]:
    """Per-split scores of one start trained on n structures per split (read back when done)."""
    record = run_folder(start, n, dataset.name, seed).with_suffix(".json")
    if record.is_file():
        return json.loads(record.read_text())
    splits = subsampled_splits(dataset.ids, n)
    t0 = time.perf_counter()
    if start == "shipped":
        model = load_model(DEFAULT_MODEL)
        kappa = model.predict(dataset.atoms).estimate(model.default_estimate)
        table = scores_of_predictions(dataset, splits, lambda s, val: (kappa[val], kappa[val]))
    elif start == "agl-trees":
        trees = agl_trees(dataset)
        table = scores_of_predictions(dataset, splits, lambda s, val: (trees(s, val),) * 2)
    elif start == "shipped-finetuned+trees":
        trees, run = agl_trees(dataset), run_folder("shipped-finetuned", n, dataset.name, seed)
        t0 -= run_start("shipped-finetuned", n, dataset, seed, runner)["seconds"]  # its training counts

        def blended(split: Split, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            rows = read_csv_rows(run / f"split_{split.index}" / "target" / "validation_predictions.csv")
            assert [r["id"] for r in rows] == [dataset.ids[i] for i in val]
            boosted = trees(split, val)
            return tuple(
                point_estimate(np.array([[float(r[c])] for r in rows]), "geometric", boosted, TREES_WEIGHT)
                for c in ("ltc_pred", "ltc_pred_final")
            )

        table = scores_of_predictions(dataset, splits, blended)
    else:
        result = runner.run(
            recipe_for(start, seed), dataset, run_folder(start, n, dataset.name, seed), splits=splits
        )
        table = {
            f"{protocol}/{metric}": result.summary[protocol][metric]["values"] for protocol, metric in COLUMNS
        }
        # what the start costs from nothing, the stage models it reused included (AFLOW's)
        t0 = time.perf_counter() - result.summary["training_time_s"]
    table["seconds"] = time.perf_counter() - t0
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(table, indent=1))
    return table


def mean_error(values: list[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(len(v)))


def markdown(results: dict, dataset: str, sizes: list[int], n_train: int, command: str, n_seeds: int) -> str:
    lines = [
        f"# Fine-tuning on a small new set: {dataset}",
        "",
        f"Generated by `{command}`. The 9 seeded 80/20 "
        f"splits; each split's training part cut to its first n structures (n = {n_train} is all of it), "
        "its validation part unchanged. Cells: mean ± standard error over the 9 splits "
        f"of each of {n_seeds} seed(s) (each a draw of the target stages and of the AFLOW models); in brackets, "
        "the paired difference to `aflow` (`two-stage-hybrid`'s target stage, same seed and split) and on "
        "how many seed × split pairs the start is better. The shipped model is not trained, so its row "
        "is the same for every n; it and the trees, which no seed changes, count each split once. "
        "Seconds: what the start costs from nothing at that n, on one core (for `aflow`, its 3 AFLOW "
        "models included; for `shipped-finetuned+trees`, the fine-tuning included).",
        "",
        "| n | start | " + " | ".join(f"{p.replace('_', '-')} {m}" for p, m in COLUMNS) + " | seconds |",
        "| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " | --- |",
    ]
    for n in sizes:
        for start in STARTS:
            table = results.get(start, {}).get(n)
            if table is None:
                continue
            reference = results.get("aflow", {}).get(n)
            cells = []
            for protocol, metric in COLUMNS:
                key = f"{protocol}/{metric}"
                m, e = mean_error(table[key])
                cell = f"{m:.3f} ± {e:.3f}"
                if reference is not None and start != "aflow":
                    mine, theirs = np.asarray(table[key]), np.asarray(reference[key])
                    diff = np.tile(mine, len(theirs) // len(mine)) - theirs  # a seedless row: once per seed
                    better = int((diff > 0).sum() if metric == "spearman" else (diff < 0).sum())
                    cell += f" ({diff.mean():+.3f}; {better}/{len(diff)})"
                cells.append(cell)
            lines.append(
                f"| {n or n_train} | `{start}` | " + " | ".join(cells) + f" | {table['seconds']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def figure(results: dict, sizes: list[int], n_train: int, dataset: str, n_seeds: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (protocol, metric) in zip(axes, (("unbiased", "log10_mae"), ("unbiased", "mape"))):
        for start in STARTS:
            points = [(n or n_train, results[start][n]) for n in sizes if n in results.get(start, {})]
            if not points:
                continue
            x = [p[0] for p in points]
            stats = [mean_error(p[1][f"{protocol}/{metric}"]) for p in points]
            ax.errorbar(
                x,
                [s[0] for s in stats],
                yerr=[s[1] for s in stats],
                marker="o",
                capsize=3,
                label="shipped, not fine-tuned" if start == "shipped" else start,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks([n or n_train for n in sizes], [str(n or n_train) for n in sizes])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(matplotlib.ticker.FormatStrFormatter("%.2g"))
        ax.set_xlabel(f"{dataset} training structures per split")
        ax.set_ylabel(f"validation {metric.replace('_', '-')} (final epoch)")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="center right")
    fig.suptitle(
        f"{dataset}: fine-tuning the shipped model against the other starts (9 splits × {n_seeds} seeds)"
    )
    fig.tight_layout()
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURE, dpi=130)
    plt.close(fig)


def pooled(tables: list[dict]) -> dict:
    """One table of several seeds' runs: their per-split values together, their mean seconds."""
    keys = [k for k in tables[0] if k != "seconds"]
    table = {k: [v for t in tables for v in t[k]] for k in keys}
    table["seconds"] = float(np.mean([t["seconds"] for t in tables]))
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="hh143")
    parser.add_argument(
        "--sizes", type=int, nargs="+", default=[15, 30, 60, 0], help="0: the whole training part"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument("--starts", nargs="+", default=list(STARTS), choices=STARTS)
    parser.add_argument(
        "--stage-cache",
        default=str(OUT / "stages"),
        help="AFLOW models (reused if they match); {seed} stands for each seed",
    )
    args = parser.parse_args()

    dataset = load_dataset(args.dataset)
    n_train = len(random_splits(dataset.ids, n_splits=1)[0].train)
    per_seed: dict[str, dict[int, list[dict]]] = {}
    for seed in args.seeds:
        runner = RecipeRunner(args.stage_cache.format(seed=seed), progress=False)
        for n in args.sizes:
            for start in args.starts:
                print(f"== {start}, n = {n or n_train}, seed {seed}", flush=True)
                table = run_start(start, n, dataset, seed, runner)
                per_seed.setdefault(start, {}).setdefault(n, []).append(table)
    # neither the shipped model nor the trees depend on the seed: they count once
    results = {
        s: {n: t[0] if s in SEEDLESS else pooled(t) for n, t in r.items()} for s, r in per_seed.items()
    }
    command = (
        f"python benchmarks/finetune.py --dataset {args.dataset} --seeds {' '.join(map(str, args.seeds))}"
    )
    if args.stage_cache != str(OUT / "stages"):
        cache = Path(args.stage_cache).resolve()
        command += (
            f" --stage-cache {cache.relative_to(HERE.parent) if cache.is_relative_to(HERE.parent) else cache}"
        )
    md = markdown(results, args.dataset, args.sizes, n_train, command, len(args.seeds))
    (HERE / "finetune.md").write_text(md)
    (HERE / "out" / "finetune.json").write_text(
        json.dumps(
            {
                "settings": vars(args),
                "results": {s: {str(n): t for n, t in r.items()} for s, r in results.items()},
            },
            indent=1,
        )
    )
    figure(results, args.sizes, n_train, args.dataset, len(args.seeds))
    print(md)


if __name__ == "__main__":
    main()
