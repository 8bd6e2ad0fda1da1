"""LTCEnsemble: the k models of a run (one per split), mean (mTC) and spread (var pTC) per structure."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ..data.descriptors import DESCRIPTOR_NAMES
from ..data.graphs import batch_indices, collate_graphs, structure_graph
from .boosting import DescriptorBoosting
from .fast_megnet import bond_features, same_bond_expansion
from .ltc_model import (
    UNBOUNDED_DESCRIPTORS_ADVICE,
    LTCModel,
    ModelLoadError,
    UnboundedDescriptorsWarning,
)

ENSEMBLE_FILE = "ensemble.json"
#: Ways to turn k member predictions into one κ per structure (see :func:`point_estimate`).
ESTIMATES = ("mean", "geometric", "min_mape")
#: Member predictions at or below zero (a head can overshoot) enter the log-space estimates here.
_KAPPA_FLOOR = 1e-6


def log_spread(members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample variance (ddof 1; 0 for one member) of ln κ over members, per structure."""
    logs = np.log(np.clip(np.asarray(members, dtype=float), _KAPPA_FLOOR, None))
    var = logs.var(axis=1, ddof=1) if logs.shape[1] > 1 else np.zeros(len(logs))
    return logs.mean(axis=1), var


def point_estimate(
    members: np.ndarray,
    estimate: str = "mean",
    boosted: np.ndarray | None = None,
    boosting_weight: float = 0.0,
) -> np.ndarray:
    """One κ per structure from (structures × k) member predictions in W m⁻¹ K⁻¹.

    ``mean`` is the arithmetic mean, the paper's mTC. ``geometric`` is the geometric mean, the
    median if the members' errors are log-normal: what log-scale accuracy and rankings want.
    ``min_mape`` is exp(μ − s²) for μ, s² the mean and variance of ln κ over members: under a
    log-normal spread it minimises the expected absolute percentage error, which punishes an
    over-prediction without bound but an under-prediction at most 100 %. Where the members
    agree it equals the geometric mean; where they disagree (the model extrapolates) it leans
    low. On Togo15 it lowers the unbiased MAPE of seed ensembles at level log10-MAE
    (``docs/accuracy.md``).

    ``boosted`` (κ per structure from a :class:`~matgl_ltc.model.boosting.DescriptorBoosting`)
    takes the share ``boosting_weight`` of the estimate: of the mean for ``mean``, of μ for the
    log-space estimates; s² stays the members' own spread.
    """
    members = np.asarray(members, dtype=float)
    weight = float(boosting_weight) if boosted is not None else 0.0
    if estimate == "mean":
        mean = members.mean(axis=1)
        return mean if weight == 0.0 else (1 - weight) * mean + weight * np.asarray(boosted, dtype=float)
    mu, var = log_spread(members)
    if weight:
        mu = (1 - weight) * mu + weight * np.log(
            np.clip(np.asarray(boosted, dtype=float), _KAPPA_FLOOR, None)
        )
    if estimate == "geometric":
        return np.exp(mu)
    if estimate == "min_mape":
        return np.exp(mu - var)
    raise ValueError(f"unknown estimate {estimate!r}; choose one of {ESTIMATES}")


@dataclass
class EnsemblePrediction:
    """Per-structure ensemble output, all in W m⁻¹ K⁻¹.

    ``mean`` is the members' mean (the paper's mTC), ``var`` their variance (var pTC),
    ``std`` the calibrated standard deviation (``sigma_scale`` × raw spread), ``members``
    the (structures × k) predictions; :meth:`estimate` gives other point estimates from
    them (``geometric``, ``min_mape``). ``unseen_elements`` lists, per structure, the
    elements absent from every member's training set (out of domain), and ``extrapolated`` the
    descriptors (:data:`~matgl_ltc.data.descriptors.DESCRIPTOR_NAMES`) outside every hybrid
    member's training range, which the members clip (``n_atoms`` for a cell larger than any they
    learnt from). An ensemble with descriptor boosters also fills ``boosted`` (their κ) and
    ``boosting_weight``, its share of ``mean`` and of every estimate; the spread stays the members'
    own.
    """

    mean: np.ndarray
    var: np.ndarray
    std: np.ndarray
    std_raw: np.ndarray
    members: np.ndarray
    ids: list[str] = field(default_factory=list)
    unseen_elements: list[list[str]] = field(default_factory=list)
    boosted: np.ndarray | None = None
    boosting_weight: float = 0.0
    extrapolated: list[list[str]] = field(default_factory=list)

    @property
    def geometric_mean(self) -> np.ndarray:
        """The members' geometric mean, blended with the boosters if any (see :func:`point_estimate`)."""
        return self.estimate("geometric")

    @property
    def min_mape(self) -> np.ndarray:
        """The estimate with the least expected absolute percentage error (see :func:`point_estimate`)."""
        return self.estimate("min_mape")

    def estimate(self, kind: str = "mean") -> np.ndarray:
        """κ per structure as ``mean`` (mTC), ``geometric`` or ``min_mape``."""
        return point_estimate(self.members, kind, self.boosted, self.boosting_weight)

    @property
    def out_of_domain(self) -> np.ndarray:
        return np.array([bool(u) for u in self.unseen_elements], dtype=bool)

    def __len__(self) -> int:
        return len(self.mean)


class LTCEnsemble:
    """Several LTCModels sharing one graph per structure.

    Parameters
    ----------
    members
        The models (same cutoff).
    sigma_scale
        Recalibration factor for the spread, fitted on validation residuals; 1.0 = raw.
    metadata
        Model card fields (name, recipe, dataset, metrics...).
    boosters
        :class:`DescriptorBoosting` models (one per split) whose geometric mean takes the share
        ``boosting_weight`` of every point estimate (``Recipe.boosting_weight``).
    """

    def __init__(
        self,
        members: Sequence[LTCModel],
        sigma_scale: float = 1.0,
        metadata: dict[str, Any] | None = None,
        boosters: Sequence[DescriptorBoosting] = (),
        boosting_weight: float = 0.0,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if not 0.0 <= float(boosting_weight) < 1.0:
            raise ValueError(f"boosting_weight must be in [0, 1), not {boosting_weight}")
        if boosting_weight and not boosters:
            raise ValueError("boosting_weight > 0 needs boosters")
        cutoffs = {m.cutoff for m in members}
        if len(cutoffs) != 1:
            raise ValueError(f"ensemble members must share one graph cutoff, got {sorted(cutoffs)}")
        self.members = list(members)
        # members built from one backbone family expand bond lengths identically: do it once
        self.shared_bond_expansion = same_bond_expansion([m.backbone for m in self.members])
        self.sigma_scale = float(sigma_scale)
        self.metadata = dict(metadata or {})
        self.boosters = list(boosters)
        self.boosting_weight = float(boosting_weight) if self.boosters else 0.0

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        boosted = (
            f", boosters={len(self.boosters)}, boosting_weight={self.boosting_weight:g}"
            if self.boosters
            else ""
        )
        name = self.metadata.get("name")
        return f"LTCEnsemble(k={len(self)}, name={name!r}, sigma_scale={self.sigma_scale:.3g}{boosted})"

    @property
    def cutoff(self) -> float:
        return self.members[0].cutoff

    @property
    def default_estimate(self) -> str:
        """The point estimate the ensemble was scored with (its recipe's), else ``mean`` (mTC)."""
        return str(self.metadata.get("estimate", "mean"))

    @property
    def uses_descriptors(self) -> bool:
        """Whether a member has a hybrid head or boosters are attached, so graphs must carry descriptors."""
        return bool(self.boosters) or any(m.uses_descriptors for m in self.members)

    @property
    def train_elements(self) -> set[str] | None:
        known = [m.metadata.get("train_elements") for m in self.members]
        if any(k is None for k in known):
            return None
        return set().union(*known)

    def graphs_for(self, structures: Iterable[Any]) -> tuple[list[Data], list[str], list[list[str]]]:
        graphs, ids, unseen = [], [], []
        seen = self.train_elements
        for i, structure in enumerate(structures):
            atoms, sid, graph = structure_graph(structure, i, self.cutoff, self.uses_descriptors)
            graphs.append(graph)
            ids.append(sid)
            symbols = sorted(set(atoms.get_chemical_symbols()))
            unseen.append([] if seen is None else [s for s in symbols if s not in seen])
        return graphs, ids, unseen

    @torch.no_grad()
    def predict_graphs(
        self, graphs: Sequence[Data], batch_size: int = 64, max_edges: int | None = 16000
    ) -> np.ndarray:
        """(structures × k) member predictions.

        Each batch is collated once, moved once and its bonds expanded once, then fed to
        every member. Batches hold at most ``batch_size`` graphs and ``max_edges`` edges
        (``None``: no edge limit); on CPU about 16k edges keeps the tensors in cache.
        """
        out = np.empty((len(graphs), len(self.members)), dtype=float)
        states = [m.training for m in self.members]
        for m in self.members:
            m.eval()
        try:
            edges = [int(g.edge_index.shape[1]) for g in graphs]
            for idx in batch_indices(len(graphs), batch_size, edges, max_edges):
                batch = collate_graphs([graphs[i] for i in idx]).to(self.members[0].device)
                shared = (
                    bond_features(self.members[0].backbone, batch) if self.shared_bond_expansion else None
                )
                for k, member in enumerate(self.members):
                    z = member(batch.to(member.device), None if shared is None else shared.to(member.device))
                    out[idx, k] = member.to_kappa(z).double().cpu().numpy()
        finally:
            for m, state in zip(self.members, states):
                m.train(state)
        return out

    def boosted_kappa(self, graphs: Sequence[Data]) -> np.ndarray | None:
        """The boosters' geometric-mean κ per graph (from the descriptors it carries); None without boosters."""
        if not self.boosters:
            return None
        x = np.concatenate([g.descriptors.double().cpu().numpy() for g in graphs])
        return 10 ** np.mean([b.predict_log10(x) for b in self.boosters], axis=0)

    @property
    def descriptor_range(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The widest training range of the hybrid members' descriptors (the union of their
        splits'); None when no member clips its descriptors."""
        ranged = [m for m in self.members if m.clips_descriptors]
        if not ranged:
            return None
        low = np.min([m.descriptor_min.double().cpu().numpy() for m in ranged], axis=0)
        high = np.max([m.descriptor_max.double().cpu().numpy() for m in ranged], axis=0)
        return low, high

    def extrapolated(self, graphs: Sequence[Data]) -> list[list[str]]:
        """Per graph, the descriptors outside every hybrid member's training range, farthest first
        (in widths of that range): what the members clip, so their prediction extrapolates in that
        respect (a larger cell, more species)."""
        bounds = self.descriptor_range
        if bounds is None or not graphs or getattr(graphs[0], "descriptors", None) is None:
            return [[] for _ in graphs]
        low, high = bounds
        x = np.concatenate([g.descriptors.double().cpu().numpy() for g in graphs])
        scale = np.maximum(np.abs(low), np.abs(high))
        excess = np.nan_to_num(np.maximum(low - x, x - high), nan=0.0)
        excess[excess <= 1e-6 * scale] = 0.0  # float32 storage, not a real excess
        with np.errstate(invalid="ignore"):  # unbounded columns: inf - inf
            width = np.where(high > low, high - low, np.maximum(scale, 1e-12))
            far = np.nan_to_num(excess / width, nan=0.0)
        return [[DESCRIPTOR_NAMES[j] for j in np.argsort(-row, kind="stable") if row[j] > 0] for row in far]

    def combine(
        self,
        members: np.ndarray,
        ids: list[str] | None = None,
        unseen: list[list[str]] | None = None,
        boosted: np.ndarray | None = None,
    ) -> EnsemblePrediction:
        """Ensemble statistics of (structures × k) member predictions and the boosters' κ, if any."""
        var = members.var(axis=1)
        std_raw = np.sqrt(var)
        return EnsemblePrediction(
            point_estimate(members, "mean", boosted, self.boosting_weight),
            var,
            std_raw * self.sigma_scale,
            std_raw,
            members,
            ids or [],
            unseen or [[] for _ in range(len(members))],
            boosted,
            self.boosting_weight if boosted is not None else 0.0,
        )

    def predict_prepared(
        self,
        graphs: Sequence[Data],
        batch_size: int = 64,
        ids: list[str] | None = None,
        unseen: list[list[str]] | None = None,
    ) -> EnsemblePrediction:
        """Ensemble prediction for graphs built by :meth:`graphs_for` (members and boosters)."""
        prediction = self.combine(
            self.predict_graphs(graphs, batch_size), ids, unseen, self.boosted_kappa(graphs)
        )
        prediction.extrapolated = self.extrapolated(graphs)
        return prediction

    def predict(self, structures: Iterable[Any], batch_size: int = 64) -> EnsemblePrediction:
        """Ensemble prediction for ASE ``Atoms`` or pymatgen ``Structure``s; each graph is built once."""
        graphs, ids, unseen = self.graphs_for(structures)
        return self.predict_prepared(graphs, batch_size, ids, unseen)

    def predict_structure(self, structure: Any) -> float:
        return float(self.predict([structure]).mean[0])

    # -- persistence ----------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for k, member in enumerate(self.members):
            name = f"member_{k}"
            member.save(folder / name)
            names.append(name)
        description = {
            "@class": "LTCEnsemble",
            "@model_version": 1,
            "members": names,
            "sigma_scale": self.sigma_scale,
            "metadata": self.metadata,
        }
        if self.boosters:
            boosters = [f"boosting_{k}" for k in range(len(self.boosters))]
            for name, booster in zip(boosters, self.boosters):
                booster.save(folder / name)
            description.update(boosters=boosters, boosting_weight=self.boosting_weight)
        (folder / ENSEMBLE_FILE).write_text(json.dumps(description, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike) -> LTCEnsemble:
        folder = Path(path)
        description = read_ensemble_description(folder)
        members = load_members([folder / name for name in description["members"]], folder)
        boosters = [DescriptorBoosting.load(folder / name) for name in description.get("boosters", [])]
        return cls(
            members,
            float(description.get("sigma_scale", 1.0)),
            description.get("metadata"),
            boosters,
            float(description.get("boosting_weight", 0.0)),
        )

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, sigma_scale: float = 1.0) -> LTCEnsemble:
        """The final-stage models of a recipe run, one per split (with their boosters, if it fitted them)."""
        from ..train.runner import run_boosters, run_models

        recipe = json.loads((Path(run_dir) / "recipe.json").read_text())
        paths = run_models(run_dir, recipe)
        summary_path = Path(run_dir) / "summary.json"
        meta = {"run": str(run_dir)}
        if summary_path.exists():
            summary = json.loads(summary_path.read_text())
            meta.update({"recipe": summary.get("recipe"), "dataset": summary.get("dataset")})
        if "estimate" in recipe:  # several members per split, scored with this estimate
            meta["estimate"] = recipe["estimate"]
        weight = float(recipe.get("boosting_weight", 0.0))
        boosters = [DescriptorBoosting.load(p) for p in run_boosters(run_dir)] if weight else []
        return cls(load_members(paths, run_dir), sigma_scale, meta, boosters, weight)


def load_members(paths: Sequence[str | os.PathLike], where: str | os.PathLike) -> list[LTCModel]:
    """Load an ensemble's models, warning once for all of them, not once per member, about those
    saved without their descriptors' range."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnboundedDescriptorsWarning)
        members = [LTCModel.load(p) for p in paths]
    unbounded = sum(m.uses_descriptors and not m.clips_descriptors for m in members)
    if unbounded:
        warnings.warn(
            f"{where}: {unbounded} of its {len(members)} models were {UNBOUNDED_DESCRIPTORS_ADVICE}",
            UnboundedDescriptorsWarning,
            stacklevel=3,
        )
    return members


def read_ensemble_description(folder: str | os.PathLike) -> dict[str, Any]:
    """An ensemble folder's ``ensemble.json``, checked to describe an LTCEnsemble with members."""
    folder = Path(folder)
    try:
        description = json.loads((folder / ENSEMBLE_FILE).read_text())
    except FileNotFoundError:
        raise ModelLoadError(f"{folder} is not an ensemble directory (no {ENSEMBLE_FILE})") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{folder / ENSEMBLE_FILE} is corrupted: {exc}") from None
    if description.get("@class") != "LTCEnsemble" or not description.get("members"):
        raise ModelLoadError(f"{folder / ENSEMBLE_FILE} does not describe an LTCEnsemble with members")
    return description
