"""The descriptor booster blended into finished runs: how much of the estimate it should get.

Usage::

    python benchmarks/boosting.py [--datasets togo15 hh143 mix] [--weights 0 0.1 0.2 0.25 0.3 0.4]
                                  [--variant target.epochs=300,target.batch_size=8]

Rescores, without training anything, every finished ``two-stage-hybrid-3rotated`` run of
``benchmarks/aflow_draws.py`` (one per AFLOW draw; the first-session draw and the draws
retrained from nothing) and the one-member ``two-stage-hybrid`` of ``benchmarks/reproduce.py``:
per split it fits :class:`~matgl_ltc.model.boosting.DescriptorBoosting` on the training part, as
a recipe with ``boosting_weight`` does, and blends it into the run's min-MAPE (one member:
geometric) estimate with each weight. The weight 0.25 of ``two-stage-hybrid-3rotated-boosted``
is what a check on the first-session draw's ``two-stage-hybrid`` (weights 0, 0.25, 0.5) had
picked; the table shows how little the exact value matters. ``--variant`` rescores the 3rotated runs of a stage variant of
``benchmarks/aflow_draws.py`` instead, in a section of its own. Writes ``benchmarks/boosting.md``
and ``benchmarks/out/boosting.json`` (sections of datasets and variants not rescored are kept).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from matgl_ltc.analysis.metrics import regression_metrics
from matgl_ltc.analysis.plots import read_csv_rows
from matgl_ltc.data import load_dataset, load_splits
from matgl_ltc.data.descriptors import descriptor_matrix
from matgl_ltc.model import point_estimate
from matgl_ltc.model.boosting import DescriptorBoosting

HERE = Path(__file__).resolve().parent
DRAWS = HERE / "out" / "aflow_draws"
#: the kept epoch's prediction (paper protocol) and the final epoch's (unbiased)
PROTOCOLS = {"best_epoch": "ltc_pred", "unbiased": "ltc_pred_final"}
METRICS = ("mape", "log10_mae")
GOALS = {"togo15": {"unbiased/mape": 0.35, "unbiased/log10_mae": 0.15, "best_epoch/mape": 0.25}}


def rotated_runs(dataset: str, variant: str = "") -> dict[str, Path]:
    """The finished 3rotated run of each AFLOW draw, by draw label (of a stage variant, if named)."""
    root = DRAWS / variant if variant else DRAWS
    found = {}
    for run in sorted(root.glob(f"two-stage-hybrid-3seeds-rotated-*/{dataset}")) + sorted(
        root.glob(f"two-stage-hybrid-3rotated-aflow*/{dataset}")
    ):
        if (run / "summary.json").is_file():
            slug = run.parent.name.rsplit("-", 1)[-1]
            found["first session" if slug == "session" else slug.replace("aflow", "AFLOW seed ")] = run
    return found


def member_folders(run: Path) -> tuple[list[str], str]:
    """A run's member folders and the estimate it is scored with."""
    recipe = json.loads((run / "recipe.json").read_text())
    last, members = recipe["stages"][-1]["name"], int(recipe.get("members", 1))
    return [last] + [f"{last}_member{i}" for i in range(1, members)], recipe.get("estimate", "geometric")


def split_predictions(
    run: Path, k: int, folders: list[str]
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    """Split k's validation ids, true κ, and its members' (structures × members) κ per protocol column."""
    tables = [read_csv_rows(run / f"split_{k}" / f / "validation_predictions.csv") for f in folders]
    ids = [row["id"] for row in tables[0]]
    true = np.array([float(row["ltc_true"]) for row in tables[0]])
    columns = {c: np.array([[float(row[c]) for row in t] for t in tables]).T for c in PROTOCOLS.values()}
    return ids, true, columns


def run_scores(run: Path, weights: list[float], boosted_of) -> dict[float, dict[str, np.ndarray]]:
    """Per-split metrics of a run's estimate blended with its split boosters, for each weight."""
    folders, estimate = member_folders(run)
    scores: dict[float, dict[str, list[float]]] = {w: {} for w in weights}
    for k, split in enumerate(load_splits(run / "splits.json")):
        ids, true, predictions = split_predictions(run, k, folders)
        boosted = boosted_of(split, ids)
        for protocol, column in PROTOCOLS.items():
            members = predictions[column]
            for w in weights:
                metrics = regression_metrics(true, point_estimate(members, estimate, boosted, w))
                for name in METRICS:
                    scores[w].setdefault(f"{protocol}/{name}", []).append(metrics[name])
    return {w: {key: np.array(v) for key, v in s.items()} for w, s in scores.items()}


def booster_predictions(dataset: str, low_fidelity: tuple[np.ndarray, np.ndarray] | None = None):
    """A function (split, ids) → the split booster's κ on those ids, each split's booster fitted once.

    ``low_fidelity`` = (descriptors, log10 κ) makes them multi-fidelity boosters
    (:meth:`DescriptorBoosting.fit`).
    """
    data = load_dataset(dataset)
    x, y = descriptor_matrix(data.atoms), np.log10(data.labels)
    fitted: dict[tuple[str, ...], DescriptorBoosting] = {}

    def boosted_of(split, ids: list[str]) -> np.ndarray:
        key = tuple(sorted(split.train))
        if key not in fitted:
            train = data.indices(split.train)
            fitted[key] = DescriptorBoosting.fit(x[train], y[train], low_fidelity=low_fidelity)
        return 10 ** fitted[key].predict_log10(x[data.indices(ids)])

    return boosted_of


def mean_and_error(values: list[float]) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    error = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0
    return {"mean": float(values.mean()), "error": error}


def analyse(dataset: str, weights: list[float], variant: str = "") -> dict:
    boosted_of = booster_predictions(dataset)
    runs = rotated_runs(dataset, variant)
    per_draw = {draw: run_scores(run, weights, boosted_of) for draw, run in runs.items()}
    groups = {"every draw": list(per_draw), "retrained draws": [d for d in per_draw if d != "first session"]}
    record: dict = {"draws": {}, "pooled": {}, "hybrid": {}}
    for draw, scores in per_draw.items():
        record["draws"][draw] = {
            str(w): {k: float(v.mean()) for k, v in s.items()} for w, s in scores.items()
        }
    for group, draws in groups.items():
        if not draws:
            continue
        rows = {}
        for w in weights:
            row = {}
            for key in per_draw[draws[0]][w]:
                row[key] = mean_and_error([per_draw[d][w][key].mean() for d in draws])
                difference = [per_draw[d][w][key].mean() - per_draw[d][0.0][key].mean() for d in draws]
                row[key]["paired"] = mean_and_error(difference)
                row[key]["draws_better"] = int(sum(x < 0 for x in difference))
            rows[str(w)] = row
        record["pooled"][group] = {"n_draws": len(draws), "weights": rows}
    hybrid = HERE / "out" / "reproduce" / "two-stage-hybrid" / dataset
    if not variant and (hybrid / "summary.json").is_file():
        scores = run_scores(hybrid, weights, boosted_of)
        record["hybrid"] = {str(w): {k: float(v.mean()) for k, v in s.items()} for w, s in scores.items()}
    return record


def markdown(results: dict[str, dict], weights: list[float]) -> str:
    keys = [f"{p}/{m}" for p in PROTOCOLS for m in METRICS]
    lines = [
        "# The descriptor booster blended into finished runs",
        "",
        "Generated by `python benchmarks/boosting.py`. Each split's booster (gradient-boosted trees on the "
        "29 descriptors, fitted on the split's training part) takes the share *w* of the run's estimate "
        "in log space: μ = (1 − w)·mean ln κ(members) + w·ln κ(booster), then the run's min-MAPE "
        "correction −s² over its members. Cells: mean ± standard error over AFLOW draws of the 9-split "
        "mean; in brackets the paired difference to w = 0 on the same draw, and on how many draws w "
        "beats w = 0.",
        "",
    ]
    for dataset, record in results.items():
        lines += [f"## {dataset}", ""]
        for group, pooled in record["pooled"].items():
            lines += [
                f"### `two-stage-hybrid-3rotated`, {group} ({pooled['n_draws']})",
                "",
                "| w | " + " | ".join(k.replace("/", " ") for k in keys) + " |",
                "| --- | " + " | ".join("---" for _ in keys) + " |",
            ]
            for w, row in pooled["weights"].items():
                cells = []
                for key in keys:
                    c = row[key]
                    cell = f"{c['mean']:.3f} ± {c['error']:.3f}"
                    if float(w):
                        p = c["paired"]
                        cell += (
                            f" ({p['mean']:+.3f} ± {p['error']:.3f}; {c['draws_better']}/{pooled['n_draws']})"
                        )
                    cells.append(cell)
                lines.append(f"| {w} | " + " | ".join(cells) + " |")
            lines.append("")
        lines += [
            "### per draw: unbiased MAPE / log10-MAE",
            "",
            "| draw | " + " | ".join(map(str, weights)) + " |",
        ]
        lines.append("| --- | " + " | ".join("---" for _ in weights) + " |")
        for draw, by_weight in record["draws"].items():
            cells = [
                f"{by_weight[str(w)]['unbiased/mape']:.3f} / {by_weight[str(w)]['unbiased/log10_mae']:.3f}"
                for w in weights
            ]
            lines.append(f"| {draw} | " + " | ".join(cells) + " |")
        if record["hybrid"]:
            lines += [
                "",
                "One-member `two-stage-hybrid` (first-session draw, seed 42), best-epoch / unbiased MAPE / log10-MAE:",
                "",
            ]
            for w, s in record["hybrid"].items():
                lines.append(
                    f"- w = {w}: {s['best_epoch/mape']:.3f} / {s['unbiased/mape']:.3f} / {s['unbiased/log10_mae']:.3f}"
                )
        goals = GOALS.get(dataset.split(",")[0])
        if goals:
            lines += [
                "",
                "Goals: " + ", ".join(f"{k.replace('/', ' ')} ≤ {v}" for k, v in goals.items()) + ".",
            ]
        lines.append("")
    return "\n".join(lines)


def variant_label(variant: str) -> str:
    """``target stage target.epochs=300,...`` or ``AFLOW stage epochs=80``: the stage a variant changes."""
    target = all(part.startswith("target.") for part in variant.split(","))
    return f"{'target' if target else 'AFLOW'} stage {variant}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["togo15", "hh143", "mix"])
    parser.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.25, 0.3, 0.4])
    parser.add_argument(
        "--variant",
        default="",
        help="a stage variant's folder under benchmarks/out/aflow_draws "
        "(e.g. target.epochs=300,target.batch_size=8): rescore its 3rotated runs instead",
    )
    args = parser.parse_args()
    weights = sorted(set([0.0, *args.weights]))
    record_path = HERE / "out" / "boosting.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    results = record.get("results", {})  # sections of other datasets and variants stay
    for dataset in args.datasets:
        key = f"{dataset}, {variant_label(args.variant)}" if args.variant else dataset
        results[key] = analyse(dataset, weights, args.variant)
    record_path.parent.mkdir(exist_ok=True)
    record_path.write_text(json.dumps({"weights": weights, "results": results}, indent=1))
    md = markdown(results, weights)
    (HERE / "boosting.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
