"""A booster that also learns from AFLOW AGL (multi-fidelity trees), on runs trained from nothing.

Usage::

    python benchmarks/fidelity_boosting.py [--dataset togo15] [--seeds 54 55 56 57 58]
                                           [--dev-seeds 54 55 56] [--weights 0.25 0.33 0.4 0.5]

The descriptor booster of ``two-stage-hybrid-3rotated-boosted`` learns from the split's 76
training structures only. A multi-fidelity booster (``DescriptorBoosting.fit(low_fidelity=...)``)
fits the same trees on the 4399 AFLOW AGL structures beside them, with the fidelity as a 30th
input (0 for AGL, 1 for the target set, each target row weighing 30 AGL rows), and predicts at
fidelity 1: the issue's multi-fidelity idea, applied where it is cheap.

For each seed, this script trains ``two-stage-hybrid-3rotated-boosted`` from nothing with that
seed in every stage (``matgl-ltc train --recipe ... --seed S``; runs in
``benchmarks/out/fidelity_boosting/seed-S/<dataset>``, resumable; about 12 minutes each on 2 cores;
the AFLOW models, in ``seed-S/stages``, serve every dataset of the seed), then
rescores each run's members, per split, with

* the recipe's own booster at w = 0.25 (what the run reports),
* no booster (the members alone: ``two-stage-hybrid-3rotated``), and
* the multi-fidelity booster at each weight w,

and pairs them per draw. The weight of ``two-stage-hybrid-3rotated-agl-boosted`` (0.4) was chosen
on the ``--dev-seeds`` draws; the other draws were trained after that choice and are pooled on
their own as the held-out check. Writes ``benchmarks/fidelity_boosting.md`` and
``benchmarks/out/fidelity_boosting.json`` (one section per dataset; the others are kept).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from boosting import PROTOCOLS, mean_and_error, member_folders, split_predictions

from matgl_ltc.analysis.metrics import regression_metrics
from matgl_ltc.data import load_dataset, load_splits
from matgl_ltc.data.descriptors import descriptor_matrix
from matgl_ltc.model import point_estimate
from matgl_ltc.model.boosting import DescriptorBoosting
from matgl_ltc.train import RecipeRunner, resolve_recipe

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "fidelity_boosting"
RECIPE = "two-stage-hybrid-3rotated-boosted"
RECIPE_WEIGHT = 0.25
KEYS = ("best_epoch/mape", "unbiased/mape", "unbiased/log10_mae")
REFERENCE = f"target-set trees only, w = {RECIPE_WEIGHT} (the recipe)"
MEMBERS_ONLY = "no booster (two-stage-hybrid-3rotated)"


def train_run(dataset: str, seed: int) -> Path:
    """The seed's run of the recipe, trained unless finished (``matgl-ltc train --seed S --stage-cache``)."""
    run = OUT / f"seed-{seed}" / dataset
    if not (run / "summary.json").is_file():
        recipe = resolve_recipe(RECIPE).with_overrides(seed=seed)
        RecipeRunner(OUT / f"seed-{seed}" / "stages", progress=False, log=print).run(recipe, dataset, run)
    return run


def boosters(dataset: str):
    """Functions (split, ids) → κ of the split's Togo15-only and multi-fidelity boosters."""
    data, agl = load_dataset(dataset), load_dataset("aflow_agl")
    x, y = descriptor_matrix(data.atoms), np.log10(data.labels)
    low = (descriptor_matrix(agl.atoms), np.log10(agl.labels))
    fitted: dict[tuple, DescriptorBoosting] = {}

    def make(multi_fidelity: bool):
        def boosted(split, ids: list[str]) -> np.ndarray:
            key = (multi_fidelity, tuple(sorted(split.train)))
            if key not in fitted:
                train = data.indices(split.train)
                fitted[key] = DescriptorBoosting.fit(
                    x[train], y[train], low_fidelity=low if multi_fidelity else None
                )
            return 10 ** fitted[key].predict_log10(x[data.indices(ids)])

        return boosted

    return make(False), make(True)


def run_scores(run: Path, variants: dict[str, tuple]) -> dict[str, dict[str, float]]:
    """9-split means of each (booster, weight) variant's blend of the run's members."""
    folders, estimate = member_folders(run)
    scores: dict[str, dict[str, list[float]]] = {name: {} for name in variants}
    for k, split in enumerate(load_splits(run / "splits.json")):
        ids, true, predictions = split_predictions(run, k, folders)
        for name, (boosted_of, weight) in variants.items():
            boosted = boosted_of(split, ids)
            for protocol, column in PROTOCOLS.items():
                metrics = regression_metrics(
                    true, point_estimate(predictions[column], estimate, boosted, weight)
                )
                for metric in ("mape", "log10_mae"):
                    scores[name].setdefault(f"{protocol}/{metric}", []).append(metrics[metric])
    return {name: {key: float(np.mean(v)) for key, v in s.items()} for name, s in scores.items()}


def pooled(per_draw: dict[str, dict], draws: list[str]) -> dict[str, dict]:
    """Mean ± standard error over draws, and the paired difference to the recipe's own booster."""
    rows = {}
    for name in per_draw[draws[0]]:
        row = {}
        for key in KEYS:
            values = np.array([per_draw[d][name][key] for d in draws])
            paired = mean_and_error(values - np.array([per_draw[d][REFERENCE][key] for d in draws]))
            row[key] = {
                **mean_and_error(values),
                "paired": paired["mean"],
                "paired_error": paired["error"],
                "draws_better": int(sum(per_draw[d][name][key] < per_draw[d][REFERENCE][key] for d in draws)),
            }
        rows[name] = row
    return rows


def markdown(records: dict[str, dict]) -> str:
    lines = [
        "# A booster that also learns from AFLOW AGL",
        "",
        f"Generated by `python benchmarks/fidelity_boosting.py`. Each draw is one `matgl-ltc train --recipe {RECIPE} "
        "--dataset D --seed S` from nothing; its members are rescored per split with the recipe's booster and "
        "with a multi-fidelity booster (the same trees fitted on AFLOW AGL's 4399 structures at fidelity 0 "
        "beside the split's training part at fidelity 1, each target row weighing 30 AGL rows). Cells: mean ± "
        "standard error over draws of the 9-split mean; in brackets the paired difference to the recipe's "
        "booster ± its standard error, and the draws it improves.",
        "",
    ]
    for dataset, record in records.items():
        lines += [f"## {dataset}", ""]
        lines += dataset_section(record)
    return "\n".join(lines) + "\n"


def dataset_section(record: dict) -> list[str]:
    lines = []
    groups = [("held-out draws (trained after the weight was chosen)", record["held_out"])]
    if record["dev_seeds"]:  # else every draw is a held-out one
        groups += [
            ("every draw", record["seeds"]),
            ("development draws (the weight was chosen on these)", record["dev_seeds"]),
        ]
    for title, seeds in groups:
        draws = [f"seed {s}" for s in seeds if f"seed {s}" in record["per_draw"]]
        if not draws:
            continue
        rows = pooled(record["per_draw"], draws)
        lines += [f"### {title}: {', '.join(map(str, seeds))}", ""]
        lines += ["| booster | " + " | ".join(k.replace("/", " ") for k in KEYS) + " |"]
        lines += ["| --- |" + " --- |" * len(KEYS)]
        for name, row in rows.items():
            cells = []
            for key in KEYS:
                c = row[key]
                cell = f"{c['mean']:.3f} ± {c['error']:.3f}"
                if name != REFERENCE:
                    cell += (
                        f" ({c['paired']:+.3f} ± {c['paired_error']:.3f}; {c['draws_better']}/{len(draws)})"
                    )
                cells.append(cell)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["### per draw: best-epoch MAPE / unbiased MAPE / log10-MAE", ""]
    names = list(next(iter(record["per_draw"].values())))
    lines += ["| draw | " + " | ".join(names) + " |", "| --- |" + " --- |" * len(names)]
    for draw, scores in record["per_draw"].items():
        lines.append(
            f"| {draw} | " + " | ".join(" / ".join(f"{scores[n][k]:.3f}" for k in KEYS) for n in names) + " |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="togo15")
    parser.add_argument("--seeds", nargs="+", type=int, default=[54, 55, 56, 57, 58])
    parser.add_argument(
        "--dev-seeds", nargs="*", type=int, default=None, help="default: 54 55 56 on togo15, none elsewhere"
    )
    parser.add_argument("--weights", nargs="+", type=float, default=[0.25, 0.33, 0.4, 0.5])
    args = parser.parse_args()
    if args.dev_seeds is None:
        args.dev_seeds = [54, 55, 56] if args.dataset == "togo15" else []
    plain, multi = boosters(args.dataset)
    variants = {REFERENCE: (plain, RECIPE_WEIGHT), MEMBERS_ONLY: (plain, 0.0)}
    variants.update({f"AGL + {args.dataset} trees, w = {w:g}": (multi, w) for w in args.weights})
    per_draw = {f"seed {s}": run_scores(train_run(args.dataset, s), variants) for s in args.seeds}
    record = {
        "dataset": args.dataset,
        "recipe": RECIPE,
        "seeds": args.seeds,
        "dev_seeds": args.dev_seeds,
        "held_out": [s for s in args.seeds if s not in args.dev_seeds],
        "per_draw": per_draw,
    }
    record["pooled"] = {
        group: pooled(per_draw, [f"seed {s}" for s in record[group]])
        for group in ("seeds", "dev_seeds", "held_out")
        if record[group]
    }
    path = HERE / "out" / "fidelity_boosting.json"
    records = json.loads(path.read_text()) if path.is_file() else {}
    records[args.dataset] = record  # other datasets' sections stay
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(records, indent=1))
    md = markdown(records)
    (HERE / "fidelity_boosting.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
