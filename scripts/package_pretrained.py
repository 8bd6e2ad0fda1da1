"""Turn a recipe run into a shipped, calibrated ensemble with a model card.

Usage::

    python scripts/package_pretrained.py runs/shipped/two-stage-togo15 LTC-MEGNet-Togo15-2stage \\
        --dataset togo15 --description "..."

The ensemble is written to ``src/matgl_ltc/pretrained/<name>/`` (one member folder per split,
``ensemble.json``, ``README.md``). σ is recalibrated on held-out validation residuals.
"""

from __future__ import annotations

import argparse
import json
from datetime import date
from pathlib import Path

import numpy as np

from matgl_ltc import LTCEnsemble, load_dataset
from matgl_ltc.analysis.calibration import blended_held_out, calibrate

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "matgl_ltc" / "pretrained"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run")
    parser.add_argument("name")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--description", default="")
    args = parser.parse_args()

    run = Path(args.run)
    data = load_dataset(args.dataset)
    ensemble = LTCEnsemble.from_run(run)
    splits = json.loads((run / "splits.json").read_text())
    per_split = len(ensemble) // len(splits)  # a split's seed members are consecutive (run_models)
    split_of = [j // per_split for j in range(len(ensemble))]
    masks = np.zeros((len(data), len(ensemble)), dtype=bool)
    for j, member in enumerate(ensemble.members):
        split = splits[split_of[j]]
        masks[data.indices(split["validation"]), j] = True
        member.metadata["train_elements"] = data.elements(data.indices(split["train"]))
    graphs = data.graph_cache(ensemble.cutoff, ensemble.uses_descriptors).graphs
    members = ensemble.predict_graphs(graphs)
    held_out = None
    if ensemble.boosters:  # split k predicts its members blended with its booster
        x = np.concatenate([g.descriptors.numpy() for g in graphs])
        boosted = np.stack([10 ** b.predict_log10(x) for b in ensemble.boosters], axis=1)
        held_out = blended_held_out(members, boosted, split_of, ensemble.boosting_weight)
    calibration = calibrate(members, data.labels, masks, held_out)
    ensemble.sigma_scale = calibration["sigma_scale"]
    summary = json.loads((run / "summary.json").read_text())
    recipe = json.loads((run / "recipe.json").read_text())
    ensemble.metadata = {
        "name": args.name,
        "description": args.description,
        "recipe": recipe,
        "dataset": args.dataset,
        "n_members": len(ensemble),
        **({"estimate": ensemble.default_estimate} if "estimate" in ensemble.metadata else {}),
        "validation_metrics": {
            p: {m: {"mean": v["mean"], "std": v["std"]} for m, v in summary[p].items()}
            for p in ("best_epoch", "unbiased")
        },
        "calibration": calibration,
        "date": date.today().isoformat(),
        "units": "W m^-1 K^-1 at 300 K",
    }
    out = PACKAGE / args.name
    ensemble.save(out)
    (out / "README.md").write_text(
        model_card(args.name, args.description, args.dataset, recipe, summary, calibration, len(ensemble))
    )
    print(f"wrote {out} (sigma_scale {calibration['sigma_scale']:.3f})")


def model_card(
    name: str, description: str, dataset: str, recipe: dict, summary: dict, calibration: dict, k: int
) -> str:
    def cell(protocol: str, metric: str) -> str:
        v = summary[protocol].get(metric)
        return f"{v['mean']:.3f} ± {v['std']:.3f}" if v else "—"

    stages = "; ".join(
        f"{s['name']}: {s['dataset']} from {s['init']}, {s['epochs']} epochs, batch {s['batch_size']}, "
        f"lr {s['lr']}"
        for s in recipe["stages"]
    )
    metrics = "\n".join(
        f"| {m} | {cell('best_epoch', m)} | {cell('unbiased', m)} |"
        for m in ("mape", "median_ape", "mae", "rmse", "r2", "log10_mae", "spearman")
    )
    raw, cal = calibration["raw"], calibration["calibrated"]
    hybrid = any(s.get("descriptors") for s in recipe["stages"])
    head = (
        "16-d embedding + 29 composition/structure descriptors → MLP head 450-350-350-1"
        if hybrid
        else "MLP head 16-450-350-350-1"
    )
    return f"""# {name}

{description}

- **Model**: ensemble of {k} LTCModels (MEGNet backbone → {head} → log10(κ+1)), one per split.
- **Recipe**: `{recipe["name"]}`: {stages}.
- **Data**: `{dataset}` (see its data card), 9 random 80/20 splits (split k seeded k); AFLOW AGL for the first stage.
- **Date**: {date.today().isoformat()}. **Licence**: BSD-3-Clause (backbone weights from matgl, BSD-3-Clause).

## Validation metrics (mean ± std over the {k} held-out validation splits)
| metric | best epoch (paper protocol) | final epoch (unbiased) |
| --- | --- | --- |
{metrics}

Each member is scored on its own validation split; the shipped weights are the kept epochs.

## Uncertainty
σ (`ltc_std`) is the ensemble spread times a recalibration factor **{calibration["sigma_scale"]:.3f}** fitted on
held-out residuals of log10 κ (member k on split k's validation structures).
| | Spearman(σ, abs error) | coverage ±1σ | coverage ±2σ | NLL |
| --- | --- | --- | --- | --- |
| raw spread | {raw["spearman_std_abs_error"]:.3f} | {raw["coverage_1sigma"]:.2f} | {raw["coverage_2sigma"]:.2f} | {raw["nll"]:.3f} |
| calibrated | {cal["spearman_std_abs_error"]:.3f} | {cal["coverage_1sigma"]:.2f} | {cal["coverage_2sigma"]:.2f} | {cal["nll"]:.3f} |

## Intended use and limits
- Screening and ranking crystals by lattice thermal conductivity at 300 K; a first filter before phonon
  calculations (phono3py), not a replacement for them.
- Trained on a few hundred simple (mostly binary, high-symmetry) compounds: predictions for complex,
  many-element or low-symmetry structures are extrapolations. Elements absent from the fine-tuning set are
  flagged (`ltc_out_of_domain`), and structures without an edge at 4 Å are refused.
- Typical error is a factor of 10^log10-MAE (see above) on held-out compounds of the same kind.
"""


if __name__ == "__main__":
    main()
