"""Run a recipe over all splits: one folder per split and stage, resumable, with a summary.

Layout of a run folder::

    OUT/recipe.json  splits.json  summary.json  summary.md
    OUT/split_<k>/<stage>/{model/, metrics.json, curve.csv, ...}   (target stages)
    STAGES/<dataset>-<stage>-<hash>/split_<j>/...                  (stages on other datasets)

A stage folder appears only once its training finished (it is written under a
``.partial`` name and renamed), so an interrupted run resumes by skipping finished stages.
Stages that do not train on the target (the AFLOW stage) live in a stage cache keyed by a
hash of the stage chain, so ``reproduce`` trains each AFLOW model once for all target sets.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.metrics import METRIC_NAMES, regression_metrics
from ..data.datasets import UNION, LTCDataset, can_load, load_dataset
from ..data.descriptors import descriptor_matrix
from ..data.splits import Split, load_splits, random_splits, save_splits, warn_if_few_validation
from ..model.boosting import BOOSTING_JSON, DescriptorBoosting
from ..model.loading import model_folders
from ..model.ltc_model import LTCModel, saved_metadata, training_sets
from .fit import fit, replay_indices
from .members import ENSEMBLE_FOLDER, member_chain, member_folders, member_stages, score_members
from .recipes import REPLAY_START, Recipe, Stage, resolve_recipe, stage_fingerprint

PROTOCOLS = {"best_epoch": "validation", "unbiased": "final_validation"}
#: a split's descriptor booster (recipes with ``boosting_weight``), beside its stage folders
BOOSTING_FOLDER = "boosting"


@dataclass
class _RunPlaces:
    """Where one run writes: its folder, the stage cache, and every stage folder it used."""

    out: Path
    cache: Path
    n_target_splits: int
    used: set[Path]


@dataclass
class RunResult:
    out_dir: Path
    recipe: Recipe
    dataset: str
    per_split: list[dict[str, Any]]
    summary: dict[str, Any]


def _stage_done(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() and (folder / "model" / "state.pt").is_file()


def summarize(per_split: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over splits of every metric, for both protocols."""
    out: dict[str, Any] = {"n_splits": len(per_split)}
    for protocol, key in PROTOCOLS.items():
        table = {}
        for metric in METRIC_NAMES:
            values = np.array([m[key].get(metric, np.nan) for m in per_split if m.get(key)], dtype=float)
            if values.size:
                defined = values[np.isfinite(values)]  # Spearman needs 3 validation structures
                table[metric] = {
                    "mean": float(defined.mean()) if defined.size else float("nan"),
                    "std": float(defined.std()) if defined.size else float("nan"),
                    "values": values.tolist(),
                }
        out[protocol] = table
    out["wall_time_s"] = float(sum(m.get("stages_wall_time_s", 0.0) for m in per_split))
    return out


def summary_markdown(name: str, dataset: str, summary: dict[str, Any]) -> str:
    lines = [
        f"# {name} on {dataset} ({summary['n_splits']} splits)",
        "",
        "| metric | best-epoch (paper protocol) | unbiased (final epoch) |",
        "| --- | --- | --- |",
    ]
    for metric in METRIC_NAMES:
        cells = []
        for protocol in PROTOCOLS:
            v = summary[protocol].get(metric)
            cells.append(f"{v['mean']:.3f} ± {v['std']:.3f}" if v and np.isfinite(v["mean"]) else "—")
        lines.append(f"| {metric} | {cells[0]} | {cells[1]} |")
    if summary.get("members", 1) > 1:
        own = ""
        if summary.get("reseed") == "all":
            own = ", each fine-tuned from its own earlier-stage models"
        elif summary.get("rotate"):
            own = ", member i fine-tuned from the earlier-stage models of split k + i"
        lines.append(
            f"\nEach split is scored on the {summary['estimate']} estimate of its {summary['members']} seed "
            f"members{own}."
        )
    if summary.get("boosting_weight"):
        lines.append(
            f"\nThe split's descriptor booster (gradient-boosted trees) takes {summary['boosting_weight']:g} "
            f"of the {summary['estimate']} estimate, in log space"
            + (
                f"; it also learns from {summary['boosting_low_fidelity']}, with the fidelity as an input."
                if summary.get("boosting_low_fidelity")
                else "."
            )
        )
    lines.append(f"\nTraining wall time (stages run in this call): {summary['wall_time_s']:.0f} s")
    return "\n".join(lines) + "\n"


#: recipe-level settings that decide which models a run's members are (``estimate`` only rescores)
RESUME_KEYS = ("reseed", "rotate")


def _check_resumable(out: Path, recipe: Recipe, splits: Sequence[Split]) -> None:
    """Refuse to resume into a run folder whose finished stages another recipe or split trained.

    Stages are reused because their folder exists, so a changed stage setting, ``reseed``,
    ``rotate`` or split would silently mix old and new models. What only rescoring changes
    (``estimate``, more ``members``, fewer or more splits) is allowed.
    """
    if (out / "recipe.json").is_file():
        old = Recipe.from_dict(json.loads((out / "recipe.json").read_text()))
        differs = [
            f"{key}={getattr(recipe, key)!r} (the run: {getattr(old, key)!r})"
            for key in RESUME_KEYS
            if getattr(old, key) != getattr(recipe, key)
        ]
        if old.stages != recipe.stages:
            differs.insert(0, "other stage settings")
        if differs:
            raise ValueError(
                f"{out} holds a run of recipe {old.name!r} trained with other settings than "
                f"{recipe.name!r} ({'; '.join(differs)}), so its stages cannot be reused: choose another "
                "output folder or delete this one"
            )
    if (out / "splits.json").is_file():
        for k, (old_split, new_split) in enumerate(zip(load_splits(out / "splits.json"), splits)):
            if (old_split.train, old_split.validation) != (new_split.train, new_split.validation):
                raise ValueError(
                    f"{out} was trained on other splits (split {k} differs); choose another output "
                    "folder or delete this one"
                )


class RecipeRunner:
    """Executes recipes; holds loaded datasets so their graphs are built once for all stages."""

    def __init__(
        self,
        stage_cache: str | os.PathLike | None = None,
        progress: bool = True,
        log: Callable[[str], None] = print,
        **trainer_options: Any,
    ) -> None:
        self.stage_cache = Path(stage_cache) if stage_cache else None
        self.progress = progress
        self.log = log
        self.trainer_options = trainer_options
        self._datasets: dict[str, LTCDataset] = {}
        self._descriptors: dict[str, np.ndarray] = {}
        self._model_starts: dict[str, list[Path]] = {}

    def dataset(self, source: str | LTCDataset) -> LTCDataset:
        if isinstance(source, LTCDataset):
            return source
        if source not in self._datasets:
            self._datasets[source] = load_dataset(source)
        return self._datasets[source]

    def _train_stage(
        self, stage: Stage, data: LTCDataset, split: Split, folder: Path, start: Path | None, recipe: Recipe
    ) -> float:
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        if start is None:
            model = LTCModel.from_backbone(stage.init_ref, head_hidden=stage.head_hidden, seed=stage.seed)
        else:
            model = LTCModel.load(start)
        self.log(f"  stage {stage.name}: {data.name} split {split.index} ({stage.epochs} epochs) → {folder}")
        result = fit(
            model,
            data,
            split,
            out_dir=partial,
            progress=self.progress,
            metadata={
                "recipe": recipe.name,
                "stage": stage.name,
                "initialised_from": str(start or stage.init),
            },
            **stage.fit_kwargs(),
            **self.trainer_options,
        )
        partial.rename(folder)
        return float(result.metrics["wall_time_s"])

    def _ensure_stage(
        self,
        stage: Stage,
        data: LTCDataset,
        split: Split,
        folder: Path,
        models: dict[str, Path],
        recipe: Recipe,
        offset: int = 0,
    ) -> float:
        """Train ``stage`` into ``folder`` unless a finished one is there; the seconds spent.

        A ``model:`` start is model ``split.index + offset`` (mod their number) of that name.
        """
        if _stage_done(folder):
            self.log(f"  stage {stage.name}: {folder} already trained, reusing it")
            return 0.0
        folder.parent.mkdir(parents=True, exist_ok=True)
        start = None
        if stage.init_kind == "stage":
            start = models[stage.init_ref]
        elif stage.init_kind == "model":
            starts = self._starting_models(stage.init_ref)
            start = starts[(split.index + offset) % len(starts)]
        return self._train_stage(stage, data, split, folder, start, recipe)

    def _starting_models(self, reference: str) -> list[Path]:
        if reference not in self._model_starts:
            self._model_starts[reference] = model_folders(reference)
        return self._model_starts[reference]

    def _with_start_replay(self, stage: Stage) -> Stage:
        """``replay = "start"`` made concrete, so the run's record, fingerprints and trees name the set."""
        if stage.replay != REPLAY_START:
            return stage
        return replace(stage, replay=start_replay(self._starting_models(stage.init_ref), stage.init_ref))

    def _descriptor_matrix(self, data: LTCDataset) -> np.ndarray:
        x = self._descriptors.get(data.name)
        if x is None:
            x = self._descriptors[data.name] = descriptor_matrix(data.atoms)
        return x

    def _ensure_boosting(
        self,
        data: LTCDataset,
        split: Split,
        folder: Path,
        low_fidelity: str = "",
        replay: Stage | None = None,
    ) -> dict[str, float]:
        """Fit the split's descriptor booster into ``folder`` unless it is there; its validation κ by id.

        ``low_fidelity`` names a dataset the booster also learns from, at fidelity 0. ``replay``, a
        target stage that replays a set at its own fidelity, makes the booster learn from the
        structures that stage replays too, beside the split's training part: the blend then keeps
        what the members keep.
        """
        x = self._descriptor_matrix(data)
        val = data.indices(split.validation)
        replayed = replay.replay if replay is not None and replay.replay else ""
        if (folder / BOOSTING_JSON).is_file():
            booster = DescriptorBoosting.load(folder)
            fitted_with = booster.metadata.get("low_fidelity", {}).get("dataset", "")
            replayed_with = booster.metadata.get("replay", {}).get("dataset", "")
            if (booster.multi_fidelity, fitted_with, replayed_with) == (
                bool(low_fidelity),
                low_fidelity,
                replayed,
            ):
                return dict(zip([data.ids[i] for i in val], 10 ** booster.predict_log10(x[val])))
            shutil.rmtree(folder)  # fitted for another recipe setting: fit again
        self.log(f"  boosting: {data.name} split {split.index} → {folder}")
        start = time.perf_counter()
        train = data.indices(split.train)
        rows, log10_kappa = x[train], np.log10(data.labels[train])
        if replayed:
            other = self.dataset(replayed)
            pick = replay_indices(len(other), replay.replay_size, replay.seed, split.index)
            rows = np.vstack([rows, self._descriptor_matrix(other)[pick]])
            log10_kappa = np.r_[log10_kappa, np.log10(other.labels[pick])]
        low = None
        if low_fidelity:
            low_data = self.dataset(low_fidelity)
            low = (self._descriptor_matrix(low_data), np.log10(low_data.labels))
        booster = DescriptorBoosting.fit(rows, log10_kappa, low_fidelity=low, low_fidelity_name=low_fidelity)
        if replayed:
            booster.metadata["replay"] = {"dataset": replayed, "n_train": len(pick)}
        kappa = 10 ** booster.predict_log10(x[val])
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        booster.save(partial)
        metrics = {
            "validation": regression_metrics(data.labels[val], kappa),
            "wall_time_s": time.perf_counter() - start,
        }
        (partial / "metrics.json").write_text(json.dumps(metrics, indent=1))
        partial.rename(folder)
        return dict(zip([data.ids[i] for i in val], kappa))

    def _earlier_stages(
        self, chain: Recipe, target: LTCDataset, split: Split, k: int, member: int, places: _RunPlaces
    ) -> tuple[dict[str, Path], float]:
        """Ensure every stage of ``chain`` before the last for target split ``k``.

        Returns the stage models by name and the seconds spent. A non-target stage's models live in
        the stage cache, keyed by the chain's fingerprint, and model j serves target splits
        k ≡ j (mod its ``n_splits``), or with ``rotate`` member i of the splits k ≡ j − i; a
        target-set stage lives in the split's folder (member i's in ``<stage>_member<i>``).
        """
        models: dict[str, Path] = {}
        wall = 0.0
        for stage in chain.stages[:-1]:
            if stage.is_target:
                data, stage_split = target, split
                folder = places.out / f"split_{k}" / member_folders(stage.name, member + 1)[-1]
            else:
                data = self.dataset(stage.dataset)
                j = (k + (member if chain.rotate else 0)) % (stage.n_splits or places.n_target_splits)
                stage_split = random_splits(data.ids, n_splits=j + 1)[j]
                name = f"{data.name}-{stage.name}-{stage_fingerprint(chain, stage)}"
                folder = places.cache / name / f"split_{j}"
            offset = member if stage.is_target and chain.rotate else 0
            wall += self._ensure_stage(stage, data, stage_split, folder, models, chain, offset)
            models[stage.name] = folder / "model"
            places.used.add(folder)
        return models, wall

    def run(
        self,
        recipe: Recipe | str,
        dataset: str | LTCDataset,
        out_dir: str | os.PathLike,
        n_splits: int = 9,
        splits: Sequence[Split] | None = None,
    ) -> RunResult:
        recipe = resolve_recipe(recipe)
        recipe = replace(recipe, stages=tuple(self._with_start_replay(s) for s in recipe.stages))
        target = self.dataset(dataset)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        cache = self.stage_cache or out / "stages"
        target_splits = list(splits) if splits else random_splits(target.ids, n_splits=n_splits)
        _check_resumable(out, recipe, target_splits)
        warn_if_few_validation(target_splits, target.name)
        (out / "recipe.json").write_text(json.dumps(recipe.to_dict(), indent=1))
        save_splits(target_splits, out / "splits.json")
        self.log(f"recipe {recipe.name} on {target.name}: {len(target_splits)} splits → {out}")
        for stage in recipe.stages:
            # a replay at another fidelity is another quantity (AGL's κ), as an AFLOW stage is
            replayed = stage.replays_alike
            if stage.init_kind != "model" and not replayed:
                continue  # nothing to check (and a cached stage's dataset is not loaded for nothing)
            data = target if stage.is_target else self.dataset(stage.dataset)
            if stage.init_kind == "model":
                warn_if_seen(self._starting_models(stage.init_ref)[0], data, stage.init_ref, self.dataset)
            if replayed:
                warn_if_replayed(self.dataset(stage.replay), data)

        per_split = []
        places = _RunPlaces(out, cache, len(target_splits), set())
        for k, split in enumerate(target_splits):
            wall = 0.0
            for i, (name, stage) in enumerate(member_stages(recipe)):
                if i == 0 or recipe.reseed == "all" or recipe.rotate:
                    models, spent = self._earlier_stages(member_chain(recipe, i), target, split, k, i, places)
                    wall += spent
                folder = out / f"split_{k}" / name
                wall += self._ensure_stage(
                    stage, target, split, folder, models, recipe, i if recipe.rotate else 0
                )
                places.used.add(folder)
            if recipe.combined:
                boosted = None
                if recipe.boosting_weight:
                    folder = out / f"split_{k}" / BOOSTING_FOLDER
                    boosted = self._ensure_boosting(
                        target,
                        split,
                        folder,
                        recipe.boosting_low_fidelity,
                        recipe.stages[-1] if recipe.stages[-1].replays_alike else None,
                    )
                    places.used.add(folder)
                final = score_members(out / f"split_{k}", recipe, boosted)
            else:
                final = json.loads((out / f"split_{k}" / recipe.stages[-1].name / "metrics.json").read_text())
            final["stages_wall_time_s"] = wall
            per_split.append(final)

        summary = summarize(per_split)
        summary.update({"recipe": recipe.name, "dataset": target.name})
        if target.file:  # where package finds it again
            summary["dataset_source"] = {"path": target.file, "label_key": target.label_key}
        if recipe.combined:
            summary.update(
                {
                    "members": recipe.members,
                    "estimate": recipe.estimate,
                    "reseed": recipe.reseed,
                    "rotate": recipe.rotate,
                    "boosting_weight": recipe.boosting_weight,
                    "boosting_low_fidelity": recipe.boosting_low_fidelity,
                }
            )
        # What the recipe costs from nothing: every stage model it uses, each counted once
        # (an AFLOW model shared by several splits or target sets is counted once here).
        summary["training_time_s"] = float(
            sum(
                json.loads((f / "metrics.json").read_text()).get("wall_time_s", 0.0)
                for f in sorted(places.used)
            )
        )
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        (out / "summary.md").write_text(summary_markdown(recipe.name, target.name, summary))
        from ..analysis.plots import run_figures

        run_figures(out, recipe.stages[-1].name, ENSEMBLE_FOLDER if recipe.combined else None)
        return RunResult(out, recipe, target.name, per_split, summary)


def run_recipe(
    recipe: Recipe | str,
    dataset: str | LTCDataset,
    out_dir: str | os.PathLike,
    n_splits: int = 9,
    splits: Sequence[Split] | None = None,
    stage_cache: str | os.PathLike | None = None,
    progress: bool = True,
    **trainer_options: Any,
) -> RunResult:
    """Run ``recipe`` on ``dataset`` over ``n_splits`` seeded splits (or explicit ``splits``)."""
    runner = RecipeRunner(stage_cache, progress, **trainer_options)
    return runner.run(recipe, dataset, out_dir, n_splits, splits)


def split_folders(run: Path) -> list[Path]:
    """A run's ``split_<k>`` folders in split order."""
    return sorted(run.glob("split_*"), key=lambda p: int(p.name.split("_")[1]))


def run_models(run_dir: str | os.PathLike, recipe: dict[str, Any] | None = None) -> list[Path]:
    """Model folders of a run's final stage, in split order (a split's seed members together).

    ``recipe`` is the run's ``recipe.json``, for a caller that has read it already.
    """
    run = Path(run_dir)
    recipe = recipe or json.loads((run / "recipe.json").read_text())
    names = member_folders(recipe["stages"][-1]["name"], int(recipe.get("members", 1)))
    found = [
        p / name / "model" for p in split_folders(run) for name in names if (p / name / "model").is_dir()
    ]
    if not found:
        raise FileNotFoundError(f"{run} holds no trained model (no split_*/{names[0]}/model)")
    return found


def run_boosters(run_dir: str | os.PathLike) -> list[Path]:
    """Descriptor-booster folders of a run (recipes with ``boosting_weight``), in split order."""
    run = Path(run_dir)
    found = [
        p / BOOSTING_FOLDER for p in split_folders(run) if (p / BOOSTING_FOLDER / BOOSTING_JSON).is_file()
    ]
    if not found:
        raise FileNotFoundError(f"{run} holds no descriptor booster (no split_*/{BOOSTING_FOLDER})")
    return found


def warn_if_seen(
    start: Path,
    data: LTCDataset,
    label: str = "",
    load: Callable[[str], LTCDataset] = load_dataset,
) -> None:
    """Warn when the model in ``start`` was trained on (or replayed) a dataset readable here
    (registered, or a file it recorded) sharing formulas with ``data``: fine-tuned on ``data``, it
    is scored on validation structures it has already seen."""
    for trained_on, key in training_sets(saved_metadata(start)).items():
        if can_load(trained_on):
            source = load(trained_on) if key == "ltc" else load_dataset(trained_on, label_key=key)
            _warn_if_shared(source, data, f"{label or start} was trained on {trained_on}")


def start_replay(starts: Sequence[str | os.PathLike], label: str, label_key: str = "ltc") -> str:
    """What the start models learnt from, for ``replay = "start"``: a registered name or a file's
    path, or their union (``hh143+togo15``) for a start that learnt from several. Files must be
    readable with ``label_key`` (a recipe reads ``info["ltc"]``)."""
    from ..plugins import available_datasets

    sources = {name: key for start in starts for name, key in training_sets(saved_metadata(start)).items()}
    if not sources:
        raise ValueError(
            f"replaying the start: {label} records no dataset; name the set to replay instead "
            "(replay = 'NAME|PATH', --replay NAME|PATH)"
        )
    for name, key in sorted(sources.items()):
        if not can_load(name):
            raise ValueError(
                f"replaying the start: {label} learnt from {name!r}, which is neither a registered "
                "dataset nor a file here; name its file instead (replay = 'PATH', --replay PATH)"
            )
        if name not in available_datasets() and key != label_key:
            how = (
                "a recipe reads a replay's labels at info['ltc']; train from the start one model at a "
                f"time instead: matgl-ltc train --from-model MODEL --replay start --label-key {key}"
                if label_key == "ltc"
                else f"pass --label-key {key}"
            )
            raise ValueError(
                f"replaying the start: {label} learnt from {name}, whose labels are info[{key!r}]; {how}"
            )
    return UNION.join(sorted(sources))


def warn_if_replayed(replay: LTCDataset, data: LTCDataset) -> None:
    """Warn when a stage's replay set shares formulas with the set it trains on: replayed in every
    epoch, those structures are no longer held out by the validation part."""
    _warn_if_shared(replay, data, f"the stage replays {replay.name}")


def _warn_if_shared(source: LTCDataset, data: LTCDataset, said: str) -> None:
    shared = data.count_shared_formulas(source)
    if shared:
        warnings.warn(
            f"{said}, which holds the formula of {shared} of {data.name}'s {len(data)} structures: "
            "their validation scores are not held out",
            UserWarning,
            stacklevel=3,
        )
