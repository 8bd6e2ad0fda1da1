"""Recipes: transfer-learning protocols as data, a chain of stages.

A stage trains on one dataset, starting from a backbone (``backbone:megnet-eform``), from the
model of an earlier stage of the same split (``stage:aflow``), or from a saved model or ensemble
(``model:LTC-MEGNet-Togo15-hybrid``: fine-tuning a shipped model on new data). The dataset
``target`` stands for the set the recipe is run on, so one recipe serves every target.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..analysis.metrics import METRIC_NAMES
from ..model.ensemble import ESTIMATES
from ..pretrained import DEFAULT_MODEL

TARGET = "target"
#: which stages a recipe's seed members re-seed (``Recipe.reseed``)
RESEED = ("last", "all")
#: what a stage can start from (``Stage.init``): a backbone, an earlier stage, a saved model
INIT_KINDS = ("backbone", "stage", "model")
#: ``replay = "start"``: replay what a ``model:`` start learnt from, read from its metadata
REPLAY_START = "start"


@dataclass(frozen=True)
class Stage:
    """One training stage.

    Parameters
    ----------
    name
        Short name, also the stage's folder name (``aflow``, ``target``).
    dataset
        ``target`` (the set the recipe runs on), a registered dataset name, or a path.
    init
        ``backbone:<name>`` (fresh head), ``stage:<earlier stage name>`` (continue from that
        stage's model of the same split index) or ``model:<name or folder>`` (continue from a
        shipped, plugin or saved model; from an ensemble or run of n models, split k continues
        from model ``k mod n``, and with ``rotate`` member i from model ``k + i mod n``).
    epochs, lr, batch_size, min_lr_fraction, loss, keep, weight_decay, seed
        As in :func:`matgl_ltc.train.fit`.
    head_hidden
        Head widths for a ``backbone:`` start (ignored when continuing).
    average_last
        Average the weights of the last N epochs (snapshot averaging); with ``keep="last"``
        the averaged weights are the stage's model.
    l2_sp
        L2-SP strength: a penalty α/2 · Σ‖w − w₀‖² towards the weights the stage starts from.
    freeze
        Parameter-name prefixes held fixed (``backbone.embedding``, ``backbone.blocks.0``...).
    fidelity, replay, replay_size, replay_fidelity
        Fidelity-aware training, as in :func:`matgl_ltc.train.fit`: the stage's labels enter
        MEGNet's state as ``fidelity``, mixed with ``replay_size`` structures of ``replay``
        at ``replay_fidelity``. ``replay = "start"`` with a ``model:`` start replays the set
        that model learnt from (so fine-tuning keeps what it knew), named in its metadata.
    monitor
        Validation metric whose best epoch ``keep="best"`` keeps (``mape``, ``log10_mae``...):
        a stage trained on a log loss is better judged by a log metric than by MAPE.
    descriptors
        Hybrid head: composition/structure descriptors enter the head beside the MEGNet
        embedding (:meth:`matgl_ltc.model.LTCModel.with_descriptors`). A continued model's
        head gets new, zero-initialized input columns, so the stage starts from exactly the
        earlier stage's predictions.
    n_splits
        Splits of a non-target stage's own dataset; when it is smaller than the target's,
        split k of the target continues from model ``k mod n_splits``.
    """

    name: str
    dataset: str = TARGET
    init: str = "backbone:megnet-eform"
    epochs: int = 300
    lr: float = 1e-3
    batch_size: int = 8
    min_lr_fraction: float = 0.01
    loss: str = "mape"
    keep: str = "best"
    weight_decay: float = 0.0
    seed: int = 42
    head_hidden: tuple[int, ...] = (450, 350, 350)
    n_splits: int | None = None
    average_last: int = 0
    l2_sp: float = 0.0
    freeze: tuple[str, ...] = ()
    fidelity: int | None = None
    replay: str | None = None
    replay_size: int = 0
    replay_fidelity: int = 0
    descriptors: bool = False
    monitor: str = "mape"

    def __post_init__(self) -> None:
        kind, _, ref = self.init.partition(":")
        if kind not in INIT_KINDS or not ref:
            raise ValueError(
                f"stage {self.name!r}: init must be 'backbone:<name>', 'stage:<name>' or "
                f"'model:<name or folder>', not {self.init!r}"
            )
        if self.replay == REPLAY_START and kind != "model":
            raise ValueError(
                f"stage {self.name!r}: replay = {REPLAY_START!r} replays what a 'model:' start learnt "
                f"from, and this stage starts from {self.init!r}: name the set to replay"
            )
        if self.keep not in ("best", "last"):
            raise ValueError(f"stage {self.name!r}: keep must be 'best' or 'last'")
        if self.monitor not in METRIC_NAMES:
            raise ValueError(
                f"stage {self.name!r}: monitor must be one of {METRIC_NAMES}, not {self.monitor!r}"
            )
        object.__setattr__(self, "head_hidden", tuple(int(h) for h in self.head_hidden))
        object.__setattr__(self, "freeze", tuple(str(p) for p in self.freeze))
        if self.average_last < 0 or self.average_last > self.epochs:
            raise ValueError(f"stage {self.name!r}: average_last must be between 0 and epochs")

    @property
    def init_kind(self) -> str:
        return self.init.partition(":")[0]

    @property
    def init_ref(self) -> str:
        return self.init.partition(":")[2]

    @property
    def is_target(self) -> bool:
        return self.dataset == TARGET

    @property
    def replays_alike(self) -> bool:
        """Whether the stage replays a set at its own fidelity: labels of the same quantity as its
        dataset's, so training data of its models (a replay at another fidelity, AGL's κ, is not)."""
        own = self.fidelity if self.fidelity is not None else 0
        return bool(self.replay) and self.replay_fidelity == own

    def fit_kwargs(self) -> dict[str, Any]:
        keys = ("epochs", "lr", "batch_size", "min_lr_fraction", "loss", "keep", "weight_decay", "seed")
        return {k: getattr(self, k) for k in (*keys, *_OPTIONAL_DEFAULTS)}

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["head_hidden"] = list(self.head_hidden)
        # optional settings appear only when set, so adding one never changes the fingerprint
        # (and the cached models) of stages that do not use it
        for key, default in _OPTIONAL_DEFAULTS.items():
            if data[key] == default:
                del data[key]
            else:
                data[key] = list(data[key]) if isinstance(default, tuple) else data[key]
        return data


_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "average_last": 0,
    "l2_sp": 0.0,
    "freeze": (),
    "fidelity": None,
    "replay": None,
    "replay_size": 0,
    "replay_fidelity": 0,
    "descriptors": False,
    "monitor": "mape",
}


@dataclass(frozen=True)
class Recipe:
    """A named chain of stages; the last one trains on the target set.

    ``members`` > 1 trains the last stage that many times per split, with seeds ``seed``,
    ``seed + 1``, ..., and scores each split on their combined prediction, made with
    ``estimate`` (``mean``, ``geometric`` or ``min_mape``, as in
    :func:`matgl_ltc.model.point_estimate`). ``reseed`` says which stages the members
    re-seed: ``last`` (the earlier stages' models, e.g. AFLOW's, are shared) or ``all``
    (member i trains its whole chain with every seed + i, so the members also differ in
    the models they were fine-tuned from). ``rotate`` makes member i of target split k continue
    from the earlier stages' models of split k + i (mod their ``n_splits``): with 3 shared AFLOW
    models, 3 members fine-tune from 3 different ones at no extra AFLOW cost.
    ``boosting_weight`` > 0 also fits a :class:`~matgl_ltc.model.boosting.DescriptorBoosting`
    on each split's training part and gives it that share of the (log-space) estimate;
    ``boosting_low_fidelity`` names a dataset (e.g. ``aflow_agl``) the booster also learns from,
    with the fidelity as an input.
    """

    name: str
    stages: tuple[Stage, ...]
    description: str = ""
    paper_name: str = ""
    tags: dict[str, Any] = field(default_factory=dict, compare=False)
    members: int = 1
    estimate: str = "geometric"
    reseed: str = "last"
    rotate: bool = False
    boosting_weight: float = 0.0
    boosting_low_fidelity: str = ""

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError(f"recipe {self.name!r} has no stage")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"recipe {self.name!r}: stage names must be unique, got {names}")
        for i, stage in enumerate(self.stages):
            if stage.init_kind == "stage" and stage.init_ref not in names[:i]:
                raise ValueError(
                    f"recipe {self.name!r}: stage {stage.name!r} starts from unknown or later stage "
                    f"{stage.init_ref!r}"
                )
        if not self.stages[-1].is_target:
            raise ValueError(f"recipe {self.name!r}: the last stage must train on 'target'")
        if int(self.members) < 1:
            raise ValueError(f"recipe {self.name!r}: members must be at least 1, not {self.members}")
        if self.estimate not in ESTIMATES:
            raise ValueError(
                f"recipe {self.name!r}: estimate must be one of {ESTIMATES}, not {self.estimate!r}"
            )
        if self.reseed not in RESEED:
            raise ValueError(f"recipe {self.name!r}: reseed must be one of {RESEED}, not {self.reseed!r}")
        object.__setattr__(self, "stages", tuple(self.stages))
        object.__setattr__(self, "members", int(self.members))
        object.__setattr__(self, "rotate", bool(self.rotate))
        object.__setattr__(self, "boosting_weight", float(self.boosting_weight))
        if not 0.0 <= self.boosting_weight < 1.0:
            raise ValueError(
                f"recipe {self.name!r}: boosting_weight is the boosters' share of the estimate, "
                f"in [0, 1), not {self.boosting_weight}"
            )
        if self.boosting_low_fidelity and not self.boosting_weight:
            raise ValueError(
                f"recipe {self.name!r}: boosting_low_fidelity is what the booster also learns from, "
                "so it needs boosting_weight > 0"
            )
        if self.members == 1 and (self.reseed != "last" or self.rotate):
            raise ValueError(
                f"recipe {self.name!r}: reseed and rotate choose what a split's members start from, "
                "so they need members > 1"
            )

    @property
    def combined(self) -> bool:
        """Whether a split is scored on a combination (several members, or boosters) not one model."""
        return self.members > 1 or self.boosting_weight > 0

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def with_overrides(self, **overrides: Any) -> Recipe:
        """The same recipe with settings replaced in every stage (``epochs=5`` for a smoke test)."""
        overrides = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, stages=tuple(replace(s, **overrides) for s in self.stages))

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "paper_name": self.paper_name,
        }
        if self.combined:  # one-member recipes keep the record they always had
            data.update(members=self.members, estimate=self.estimate)
            if self.reseed != "last":
                data["reseed"] = self.reseed
            if self.rotate:
                data["rotate"] = True
            if self.boosting_weight:
                data["boosting_weight"] = self.boosting_weight
            if self.boosting_low_fidelity:
                data["boosting_low_fidelity"] = self.boosting_low_fidelity
        return {**data, "stages": [s.to_dict() for s in self.stages]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        allowed = {f.name for f in fields(Stage)}
        stages = []
        for i, raw in enumerate(data.get("stages", [])):
            unknown = set(raw) - allowed
            if unknown:
                raise ValueError(
                    f"recipe stage {i}: unknown setting(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
                )
            stages.append(Stage(**raw))
        if "name" not in data:
            raise ValueError("a recipe needs a 'name'")
        unknown = set(data) - {f.name for f in fields(cls) if f.name != "tags"}
        if unknown:
            raise ValueError(f"recipe {data['name']!r}: unknown setting(s) {sorted(unknown)}")
        return cls(
            str(data["name"]),
            tuple(stages),
            str(data.get("description", "")),
            str(data.get("paper_name", "")),
            members=int(data.get("members", 1)),
            estimate=str(data.get("estimate", "geometric")),
            reseed=str(data.get("reseed", "last")),
            rotate=bool(data.get("rotate", False)),
            boosting_weight=float(data.get("boosting_weight", 0.0)),
            boosting_low_fidelity=str(data.get("boosting_low_fidelity", "")),
        )

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> Recipe:
        """Read a recipe from TOML (``[[stages]]`` tables), YAML or JSON."""
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ValueError(f"recipe file {path} must end in .toml, .yaml, .yml or .json")
        data.setdefault("name", path.stem)
        return cls.from_dict(data)


def stage_fingerprint(recipe: Recipe, stage: Stage) -> str:
    """A hash of a stage and everything before it: identical prefixes share trained models."""
    chain = []
    for s in recipe.stages:
        chain.append(s.to_dict())
        if s.name == stage.name:
            break
    return hashlib.sha1(json.dumps(chain, sort_keys=True).encode()).hexdigest()[:10]


# -- built-ins ---------------------------------------------------------------------------------
#: Epochs of the AFLOW stage in the default (fast) recipes. The paper used 300 at batch 8;
#: ``--paper`` restores that.
FAST_AFLOW = {"epochs": 40, "batch_size": 64, "lr": 2e-3, "n_splits": 3, "keep": "best"}
FAST_TARGET = {"epochs": 200, "batch_size": 16}


def builtin_recipes(paper: bool = False) -> list[Recipe]:
    """``scratch``, ``pretrained``, ``two-stage``, ``aflow-only`` (paper steps 1-3 and the control),
    ``two-stage-hybrid``: ``two-stage`` whose target stage also reads descriptors;
    ``two-stage-hybrid-agl-boosted``: the same, blended with a booster that also learns from AGL;
    ``two-stage-hybrid-3seeds``: ``two-stage-hybrid`` with 3 seed members per split;
    ``two-stage-hybrid-3rotated``: those members fine-tuned from the 3 different AFLOW models;
    ``two-stage-hybrid-3rotated-boosted``: the same, blended with a descriptor booster per split;
    ``two-stage-hybrid-3rotated-agl-boosted``: the same, with a booster that also learns from AGL;
    ``two-stage-hybrid-3chains``: 3 members per split, each with its own AFLOW models;
    ``finetune-shipped``: the shipped default's members fine-tuned on the target set, with its trees;
    ``finetune-shipped-replay``: the same, replaying what the shipped members learnt from (Togo15)
    so that the model keeps what it knew.

    With ``paper=True`` every stage uses the paper's settings (300 epochs, batch 8, 9 AFLOW
    models); the default keeps the target stage close to them and makes the AFLOW stage
    cheap (fewer epochs, larger batch, 3 AFLOW models shared round-robin by the 9 target splits).
    """
    aflow = {} if paper else FAST_AFLOW
    target = {} if paper else FAST_TARGET
    hybrid = (
        Stage("aflow", "aflow_agl", "backbone:megnet-eform", **aflow),
        Stage("target", init="stage:aflow", descriptors=True, **target),
    )
    return [
        Recipe(
            "scratch",
            (Stage("target", init="backbone:megnet-random", **target),),
            "random MEGNet + head → target set (paper step 1)",
            "RW",
        ),
        Recipe(
            "pretrained",
            (Stage("target", init="backbone:megnet-eform", **target),),
            "formation-energy MEGNet + random head → target set (paper step 2)",
            "FE",
        ),
        Recipe(
            "two-stage",
            (
                Stage("aflow", "aflow_agl", "backbone:megnet-eform", **aflow),
                Stage("target", init="stage:aflow", **target),
            ),
            "formation-energy MEGNet → AFLOW AGL → target set (paper step 3)",
            "FEAF",
        ),
        Recipe(
            "aflow-only",
            (
                Stage("aflow", "aflow_agl", "backbone:megnet-random", **aflow),
                Stage("target", init="stage:aflow", **target),
            ),
            "random MEGNet → AFLOW AGL → target set (control)",
            "RWAF",
        ),
        Recipe(
            "two-stage-hybrid",
            hybrid,
            "two-stage, whose target stage adds composition/structure descriptors to the head "
            "(not in the paper; one model per split, the shipped default's members; see docs/accuracy.md)",
        ),
        Recipe(
            "two-stage-hybrid-agl-boosted",
            hybrid,
            "two-stage-hybrid blended with gradient-boosted trees on the descriptors that also learn "
            "from AFLOW AGL, with the fidelity as an input, and take 0.4 of the estimate: one model "
            "per split, about a minute more than two-stage-hybrid, as the shipped default (unbiased MAPE 0.367 and log10-MAE "
            "0.143 on Togo15 over 7 runs from nothing, against 0.441 and 0.167 without the trees; "
            "see docs/accuracy.md)",
            boosting_weight=0.4,
            boosting_low_fidelity="aflow_agl",
        ),
        Recipe(
            "two-stage-hybrid-3seeds",
            hybrid,
            "two-stage-hybrid with its target stage trained with 3 seeds per split, scored on their "
            "min-MAPE estimate (lower unbiased MAPE and no seed lottery, at 3x the target-stage cost)",
            members=3,
            estimate="min_mape",
        ),
        Recipe(
            "two-stage-hybrid-3rotated",
            hybrid,
            "two-stage-hybrid-3seeds whose member i of split k fine-tunes from AFLOW model k + i: "
            "3 seeds and 3 AFLOW models per split at 3seeds' cost (lower unbiased MAPE than "
            "3seeds on each of four Togo15 AFLOW draws, level on HH143; see docs/accuracy.md)",
            members=3,
            estimate="min_mape",
            rotate=True,
        ),
        Recipe(
            "two-stage-hybrid-3rotated-boosted",
            hybrid,
            "two-stage-hybrid-3rotated whose estimate gives 1/4 of its weight, in log space, to "
            "gradient-boosted trees on the descriptors fitted per split (unbiased MAPE 0.324 and "
            "log10-MAE 0.139 on Togo15 over 7 AFLOW draws; worse on HH143; see docs/accuracy.md)",
            members=3,
            estimate="min_mape",
            rotate=True,
            boosting_weight=0.25,
        ),
        Recipe(
            "two-stage-hybrid-3rotated-agl-boosted",
            hybrid,
            "two-stage-hybrid-3rotated-boosted whose trees also learn from AFLOW AGL, with the "
            "fidelity as an input, and take 0.4 of the estimate (the most accurate on Togo15: "
            "unbiased MAPE 0.310 and log10-MAE 0.140 over 7 runs from nothing, against 0.340 and 0.144 "
            "for 3rotated-boosted on the same runs; see docs/accuracy.md)",
            members=3,
            estimate="min_mape",
            rotate=True,
            boosting_weight=0.4,
            boosting_low_fidelity="aflow_agl",
        ),
        Recipe(
            "two-stage-hybrid-3chains",
            hybrid,
            "two-stage-hybrid-3seeds whose members also train their own AFLOW models (seeds 42, 43, 44 "
            "for every stage): the AFLOW draw moves the target score as much as the target seed, and "
            "this averages over both (3x the AFLOW cost too)",
            members=3,
            estimate="min_mape",
            reseed="all",
        ),
        Recipe(
            "finetune-shipped",
            (Stage("target", init=f"model:{DEFAULT_MODEL}", **target),),
            f"{DEFAULT_MODEL} (AFLOW AGL → Togo15) fine-tuned on the target set, split k from member "
            "k mod 9, blended like it with trees that also learn from AFLOW AGL (0.4): a new "
            "structure family's model with no AFLOW stage (on HH143 as good as two-stage-hybrid "
            "unbiased at 15 to 114 training structures; see docs/training.md)",
            boosting_weight=0.4,
            boosting_low_fidelity="aflow_agl",
        ),
        Recipe(
            "finetune-shipped-replay",
            (Stage("target", init=f"model:{DEFAULT_MODEL}", replay=REPLAY_START, **target),),
            "finetune-shipped with the set the shipped members learnt from (Togo15) replayed in "
            "every epoch and among the trees' rows: the fine-tuned model keeps Togo15's scale "
            "(on HH143, held-out Togo15 log10-MAE 0.19 instead of 0.60) at a cost on the target "
            "set (HH143 unbiased MAPE 0.44 instead of 0.36; see docs/training.md)",
            boosting_weight=0.4,
            boosting_low_fidelity="aflow_agl",
        ),
    ]


def resolve_recipe(name_or_path: str | os.PathLike | Recipe, paper: bool = False) -> Recipe:
    """A recipe by registered name (built-in or plugin) or from a TOML/YAML/JSON file."""
    if isinstance(name_or_path, Recipe):
        return name_or_path
    text = str(name_or_path)
    if Path(text).suffix in (".toml", ".yaml", ".yml", ".json") and Path(text).exists():
        return Recipe.from_file(text)
    if paper:
        for recipe in builtin_recipes(paper=True):
            if recipe.name == text:
                return recipe
    from ..plugins import get_recipe

    return get_recipe(text)
