"""Bring a shipped hybrid ensemble up to what a recipe run gives now, without retraining it.

Usage::

    python scripts/refresh_pretrained.py src/matgl_ltc/pretrained/LTC-MEGNet-Togo15-hybrid --dataset togo15 \\
        [--low-fidelity aflow_agl] [--weight 0.4] [--out FOLDER]

Member k was trained on split k of the dataset's seeded 9-split protocol (checked against the
elements each member records), so what a run derives from that training part can be added after
the fact, when the run itself is gone:

* the descriptors' training range, to which the head's inputs are clipped (models saved before
  matgl-ltc recorded it extrapolate linearly, e.g. to κ < 0 for large cells);
* a multi-fidelity descriptor booster per split, fitted on the training part beside the
  low-fidelity set at fidelity 0, as ``two-stage-hybrid-agl-boosted`` does, with ``--weight`` of
  the (log-space, ``geometric``) estimate.

It scores each member on its own validation split alone and blended with its booster (paired per
split), recalibrates σ on the blended held-out residuals, and writes the ensemble back
(``--out`` elsewhere to try it first).
"""

from __future__ import annotations

import argparse
from datetime import date

import numpy as np

from matgl_ltc import LTCEnsemble, load_dataset
from matgl_ltc.analysis.calibration import calibrate_on_splits
from matgl_ltc.analysis.metrics import regression_metrics
from matgl_ltc.data import random_splits
from matgl_ltc.data.descriptors import descriptor_matrix
from matgl_ltc.model import point_estimate
from matgl_ltc.model.boosting import DescriptorBoosting

METRICS = ("mape", "median_ape", "log10_mae", "spearman")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("ensemble")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--low-fidelity", default="aflow_agl")
    parser.add_argument("--weight", type=float, default=0.4)
    parser.add_argument("--out", default=None, help="default: overwrite the ensemble")
    args = parser.parse_args()

    ensemble = LTCEnsemble.load(args.ensemble)
    data = load_dataset(args.dataset)
    low = load_dataset(args.low_fidelity)
    splits = random_splits(data.ids, n_splits=len(ensemble))
    for k, (member, split) in enumerate(zip(ensemble.members, splits)):
        if member.metadata.get("train_elements") != data.elements(data.indices(split.train)):
            raise SystemExit(f"member {k} was not trained on split {k} of {args.dataset}: elements differ")

    x, y = descriptor_matrix(data.atoms), np.log10(data.labels)
    low_fidelity = (descriptor_matrix(low.atoms), np.log10(low.labels))
    boosters = []
    for member, split in zip(ensemble.members, splits):
        train = data.indices(split.train)
        member.fit_descriptor_range(x[train])
        boosters.append(
            DescriptorBoosting.fit(
                x[train], y[train], low_fidelity=low_fidelity, low_fidelity_name=args.low_fidelity
            )
        )

    members = ensemble.predict_graphs(data.graph_cache(ensemble.cutoff, True).graphs)
    boosted = np.stack([10 ** b.predict_log10(x) for b in boosters], axis=1)
    scores: dict[str, dict[str, list[float]]] = {}
    for k, split in enumerate(splits):
        val = data.indices(split.validation)
        alone = members[val, k : k + 1]
        for name, kappa in {
            "member alone": alone[:, 0],
            "blend, geometric": point_estimate(alone, "geometric", boosted[val, k], args.weight),
            "blend, mean": point_estimate(alone, "mean", boosted[val, k], args.weight),
        }.items():
            for metric, value in regression_metrics(data.labels[val], kappa).items():
                scores.setdefault(name, {}).setdefault(metric, []).append(value)
    validation = [data.indices(split.validation) for split in splits]
    calibration = calibrate_on_splits(
        members, data.labels, validation, range(len(splits)), boosted, args.weight
    )

    reference = scores["member alone"]
    print(f"{args.dataset}: each member on its own validation split, mean over {len(splits)} splits")
    print("| | " + " | ".join(METRICS) + " |\n| --- |" + " --- |" * len(METRICS))
    for name, row in scores.items():
        cells = []
        for m in METRICS:
            diff = np.subtract(row[m], reference[m])
            better = int(np.sum(diff > 0 if m == "spearman" else diff < 0))
            cells.append(
                f"{np.mean(row[m]):.3f}"
                + ("" if row is reference else f" ({np.mean(diff):+.3f}; {better}/{len(diff)})")
            )
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"sigma_scale {ensemble.sigma_scale:.3f} → {calibration['sigma_scale']:.3f}")

    metadata = {
        **ensemble.metadata,
        "estimate": "geometric",
        "calibration": calibration,
        "boosting": {
            "low_fidelity": args.low_fidelity,
            "weight": args.weight,
            "added": date.today().isoformat(),
            "best_epoch_validation": {
                name: {m: {"mean": float(np.mean(v)), "std": float(np.std(v))} for m, v in row.items()}
                for name, row in scores.items()
            },
        },
    }
    refreshed = LTCEnsemble(ensemble.members, calibration["sigma_scale"], metadata, boosters, args.weight)
    out = refreshed.save(args.out or args.ensemble)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
