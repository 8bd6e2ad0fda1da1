"""Per-split seed ensembles: a recipe's last stage trained several times per split, scored as one.

Seeds move a 19-structure validation score by as much as most method changes, so a recipe can
train its last stage ``members`` times per split (seeds ``seed``, ``seed + 1``, ...) and be scored
on the members' combined prediction; with ``reseed="all"`` each member also trains its own
earlier stages (its own AFLOW models), whose draw moves the score as much as the last stage's.
Member 0 keeps the stage's own folder (``split_k/target``), so a one-member run and its first
member are the same model; member ``i`` lives in ``split_k/target_member<i>``, the combined
scores in ``split_k/ensemble``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.metrics import regression_metrics
from ..analysis.plots import read_csv_rows
from ..model.ensemble import point_estimate
from .recipes import Recipe, Stage

ENSEMBLE_FOLDER = "ensemble"
#: validation_predictions.csv columns: the kept epoch's prediction and the final epoch's
PROTOCOL_COLUMNS = {"validation": "ltc_pred", "final_validation": "ltc_pred_final"}


def member_folders(stage_name: str, members: int) -> list[str]:
    """Folder names of a split's members of the last stage, member 0 first."""
    return [stage_name] + [f"{stage_name}_member{i}" for i in range(1, members)]


def member_stages(recipe: Recipe) -> list[tuple[str, Stage]]:
    """(folder name, stage) of each member of the last stage, member 0 first."""
    last = recipe.stages[-1]
    names = member_folders(last.name, recipe.members)
    return [(name, replace(last, seed=last.seed + i)) for i, name in enumerate(names)]


def member_chain(recipe: Recipe, member: int) -> Recipe:
    """The stage chain member ``member`` trains: with ``reseed="all"`` every stage's seed + member.

    Member 0 is the recipe itself, so its earlier stages are the one-member recipe's (and their
    cached models are shared with it); a re-seeded stage has its own fingerprint, so its models
    get their own folder in the stage cache.
    """
    if recipe.reseed != "all" or member == 0:
        return recipe
    return replace(recipe, stages=tuple(replace(s, seed=s.seed + member) for s in recipe.stages))


def score_members(
    split_dir: Path, recipe: Recipe, boosted: Mapping[str, float] | None = None
) -> dict[str, Any]:
    """Combine the members' validation predictions with ``recipe.estimate``; write ``ensemble/``.

    ``boosted`` maps each validation id to the split's booster κ, which takes the share
    ``recipe.boosting_weight`` of the estimate. Returns a metrics record shaped like a stage's
    ``metrics.json`` (``validation`` on the kept epochs, ``final_validation`` on the final ones),
    plus each member's own metrics.
    """
    folders = [split_dir / name for name, _ in member_stages(recipe)]
    tables = [read_csv_rows(f / "validation_predictions.csv") for f in folders]
    ids = [row["id"] for row in tables[0]]
    for folder, table in zip(folders[1:], tables[1:]):
        if [row["id"] for row in table] != ids:
            raise ValueError(f"{folder} was validated on other structures than {folders[0]}")
    true = np.array([float(row["ltc_true"]) for row in tables[0]])
    boosted_kappa = None if boosted is None else np.array([boosted[i] for i in ids])
    combined = {
        key: point_estimate(
            np.array([[float(row[column]) for row in t] for t in tables]).T,
            recipe.estimate,
            boosted_kappa,
            recipe.boosting_weight,
        )
        for key, column in PROTOCOL_COLUMNS.items()
    }
    member_metrics = [json.loads((f / "metrics.json").read_text()) for f in folders]
    record: dict[str, Any] = {
        "estimate": recipe.estimate,
        "members": [str(f.name) for f in folders],
        "seeds": [m.get("settings", {}).get("seed") for m in member_metrics],
        **{key: regression_metrics(true, pred) for key, pred in combined.items()},
        "member_metrics": [{k: m.get(k) for k in PROTOCOL_COLUMNS} for m in member_metrics],
        "wall_time_s": float(sum(m.get("wall_time_s", 0.0) for m in member_metrics)),
    }
    if boosted_kappa is not None:
        record["boosting_weight"] = recipe.boosting_weight
        record["boosting_validation"] = regression_metrics(true, boosted_kappa)
    out = split_dir / ENSEMBLE_FOLDER
    out.mkdir(exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(record, indent=2))
    with open(out / "validation_predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        extra = [] if boosted_kappa is None else ["ltc_boosting"]
        writer.writerow(["id", "formula", "ltc_true", *PROTOCOL_COLUMNS.values(), *extra])
        for i, row in enumerate(tables[0]):
            writer.writerow(
                [
                    row["id"],
                    row["formula"],
                    row["ltc_true"],
                    *(f"{combined[k][i]:.6g}" for k in PROTOCOL_COLUMNS),
                    *([] if boosted_kappa is None else [f"{boosted_kappa[i]:.6g}"]),
                ]
            )
    return record
