"""A recipe run turned into a shareable ensemble: calibrated σ, metadata and a model card.

``load_model(run)`` already predicts with a run's models, but with the raw spread as σ. Packaging
fits the one-number σ recalibration on held-out residuals (member k on split k's validation
structures, blended with its booster where the run has them; :mod:`matgl_ltc.analysis.calibration`)
and writes an ``LTCEnsemble`` folder that ``load_model``, ``scan`` and a plugin's
``PretrainedSpec`` take as they take the shipped ones.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.calibration import calibrate_on_splits
from ..data.datasets import LTCDataset, load_dataset
from ..model.ensemble import LTCEnsemble
from .recipes import Recipe

#: metrics of the model card's table, in its order
CARD_METRICS = ("mape", "median_ape", "mae", "rmse", "r2", "log10_mae", "spearman")


def _target_set(dataset: str | None, summary: dict) -> LTCDataset:
    """The run's target set: as given, else the file the run recorded, else its registered name."""
    recorded = summary.get("dataset_source") or {}
    source = dataset or recorded.get("path") or summary["dataset"]
    try:  # structures the run left out (--skip-invalid) are left out again, with the warning
        return load_dataset(source, label_key=recorded.get("label_key", "ltc"), on_invalid="skip")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"{err}: the run's target set is needed to score its held-out residuals; pass its "
            "path (dataset=..., matgl-ltc package --dataset PATH)"
        ) from None


def package_run(
    run_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    name: str,
    dataset: str | LTCDataset | None = None,
    description: str = "",
) -> LTCEnsemble:
    """Save a run's final models as a calibrated ensemble with a model card (``README.md``).

    Parameters
    ----------
    run_dir
        A finished recipe run (``matgl-ltc train --recipe ...``).
    out_dir
        The ensemble folder to write.
    name, description
        The model's name and one-line description (``matgl-ltc models`` shows them).
    dataset
        The run's target set, to score the held-out residuals; default: the file the run was
        trained on (its recorded path and label key) or the registered set it names.
    """
    run = Path(run_dir)
    summary = json.loads((run / "summary.json").read_text())
    recipe = json.loads((run / "recipe.json").read_text())
    data = dataset if isinstance(dataset, LTCDataset) else _target_set(dataset, summary)
    ensemble = LTCEnsemble.from_run(run)
    splits = json.loads((run / "splits.json").read_text())
    per_split = len(ensemble) // len(splits)  # a split's seed members are consecutive (run_models)
    split_of = [j // per_split for j in range(len(ensemble))]
    for j, member in enumerate(ensemble.members):  # models trained before fit recorded their domain
        if "train_elements" not in member.metadata:
            member.metadata["train_elements"] = data.elements(data.indices(splits[split_of[j]]["train"]))
    graphs = data.graph_cache(ensemble.cutoff, ensemble.uses_descriptors).graphs
    members = ensemble.predict_graphs(graphs)
    boosted = None
    if ensemble.boosters:  # split k predicts its members blended with its booster
        x = np.concatenate([g.descriptors.numpy() for g in graphs])
        boosted = np.stack([10 ** b.predict_log10(x) for b in ensemble.boosters], axis=1)
    validation = [data.indices(split["validation"]) for split in splits]
    calibration = calibrate_on_splits(
        members, data.labels, validation, split_of, boosted, ensemble.boosting_weight
    )
    ensemble.sigma_scale = calibration["sigma_scale"]
    ensemble.metadata = {
        "name": name,
        "description": description,
        "recipe": recipe,
        "dataset": data.name,
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
    out = ensemble.save(out_dir)
    (out / "README.md").write_text(model_card(ensemble, recipe, summary))
    return ensemble


def model_card(ensemble: LTCEnsemble, recipe: dict[str, Any], summary: dict[str, Any]) -> str:
    """The Markdown model card of a packaged run: data, recipe, metrics on both protocols, σ."""
    meta = ensemble.metadata
    name, description, dataset, calibration = (
        meta["name"],
        meta["description"],
        meta["dataset"],
        meta["calibration"],
    )
    k = len(ensemble)

    def cell(protocol: str, metric: str) -> str:
        v = summary[protocol].get(metric)
        return f"{v['mean']:.3f} ± {v['std']:.3f}" if v else "—"

    stages = "; ".join(
        f"{s['name']}: {s['dataset']} from {s['init']}, {s['epochs']} epochs, batch {s['batch_size']}, "
        f"lr {s['lr']}" + (f", replaying {s['replay']}" if s.get("replay") else "")
        for s in recipe["stages"]
    )
    # what the final stage replayed at its own fidelity is training data of the final models too
    last = Recipe.from_dict(recipe).stages[-1]
    replayed = f" (and `{last.replay}`, replayed in every epoch)" if last.replays_alike else ""
    metrics = "\n".join(f"| {m} | {cell('best_epoch', m)} | {cell('unbiased', m)} |" for m in CARD_METRICS)
    raw, cal = calibration["raw"], calibration["calibrated"]
    first = ensemble.members[0]
    widths = "-".join(str(w) for w in (*first.head_hidden, 1))
    head = (
        f"{first.embedding_dim}-d embedding + {first.n_descriptors} composition/structure descriptors → "
        f"MLP head {widths}"
        if first.uses_descriptors
        else f"MLP head {first.embedding_dim}-{widths}"
    )
    boosters = (
        f", blended with {len(ensemble.boosters)} descriptor boosters ({ensemble.boosting_weight:g} of "
        f"the log-space estimate)"
        if ensemble.boosters
        else ""
    )
    held_out = "member k on split k's validation structures" + (
        ", blended with booster k" if ensemble.boosters else ""
    )
    n_splits = summary.get("n_splits", k)
    aflow = (
        "; AFLOW AGL for the first stage"
        if any(s["dataset"] == "aflow_agl" for s in recipe["stages"])
        else ""
    )
    starts = [s["init"].partition(":")[2] for s in recipe["stages"] if s["init"].startswith("model:")]
    start = f"; fine-tuned from `{starts[0]}`" if starts else ""
    return f"""# {name}

{description}

- **Model**: ensemble of {k} LTCModels (MEGNet backbone → {head} → log10(κ+1)), {k // n_splits} per split{boosters}.
- **Recipe**: `{recipe["name"]}`: {stages}.
- **Data**: `{dataset}`, {n_splits} random 80/20 splits (split k seeded k){aflow}{start}.
- **Date**: {date.today().isoformat()}. **Licence**: BSD-3-Clause (backbone weights from matgl, BSD-3-Clause).

## Validation metrics (mean ± std over the {n_splits} held-out validation splits)
| metric | best epoch (paper protocol) | final epoch (unbiased) |
| --- | --- | --- |
{metrics}

Each split is scored on its own validation structures; the saved weights are the kept epochs.

## Uncertainty
σ (`ltc_std`) is the ensemble spread times a recalibration factor **{calibration["sigma_scale"]:.3f}** fitted on
held-out residuals of log10 κ ({held_out}).
| | Spearman(σ, abs error) | coverage ±1σ | coverage ±2σ | NLL |
| --- | --- | --- | --- | --- |
| raw spread | {raw["spearman_std_abs_error"]:.3f} | {raw["coverage_1sigma"]:.2f} | {raw["coverage_2sigma"]:.2f} | {raw["nll"]:.3f} |
| calibrated | {cal["spearman_std_abs_error"]:.3f} | {cal["coverage_1sigma"]:.2f} | {cal["coverage_2sigma"]:.2f} | {cal["nll"]:.3f} |

## Intended use and limits
- Screening and ranking crystals by lattice thermal conductivity at 300 K; a first filter before phonon
  calculations (phono3py), not a replacement for them.
- Trained on `{dataset}`{replayed}: predictions for structures unlike it are extrapolations.
  Elements absent from the structures it was fine-tuned on are flagged (`ltc_out_of_domain`), and
  structures without an edge at 4 Å are refused.
- Typical error is a factor of 10^log10-MAE (see above) on held-out compounds of the same kind.
"""
