"""LTCModel: MEGNet's last hidden layer (+ optional descriptors) → MLP head → standardized
log10(κ+1) → κ_L in W m⁻¹ K⁻¹."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matgl.layers import MLP
from matgl.models import MEGNet
from torch import nn
from torch_geometric.data import Batch, Data

from ..data.descriptors import DESCRIPTOR_NAMES
from ..data.graphs import batch_indices, collate_graphs, structure_graph
from ..data.transform import LogStandardScaler
from .fast_megnet import accelerate, megnet_forward

MODEL_VERSION = 1
_ACTIVATIONS = {"relu": nn.ReLU, "softplus": nn.Softplus, "silu": nn.SiLU, "gelu": nn.GELU}


class ModelLoadError(RuntimeError):
    """A model directory is missing, corrupted, or holds something other than an LTC model."""


class UnboundedDescriptorsWarning(UserWarning):
    """A hybrid model saved without its descriptors' training range: nothing clips them.

    Its own class so that an ensemble can say it once for all its members."""


UNBOUNDED_DESCRIPTORS_ADVICE = (
    "saved before matgl-ltc recorded the descriptors' training range, so descriptors outside it "
    "are not clipped and predictions for structures unlike the training set (e.g. large cells) can "
    "be far off; retrain, or set the range with fit_descriptor_range(training descriptors) and save"
)


def _truncate_output_proj(megnet: MEGNet) -> int:
    """Drop the final 16→1 layer of MEGNet's ``output_proj``; return the embedding width.

    What remains ends with the activation after the second linear layer: the 16-d last
    hidden layer that ParAIsite feeds to its head.
    """
    layers = megnet.output_proj.layers
    if not isinstance(layers[-1], nn.Linear):
        raise ValueError("MEGNet output_proj does not end with a linear layer")
    megnet.output_proj.layers = layers[:-1]
    return int(layers[-1].in_features)


class LTCModel(nn.Module):
    """A MEGNet backbone with an MLP head that predicts lattice thermal conductivity.

    Parameters
    ----------
    backbone_config
        MEGNet constructor arguments (matgl's ``init_args``).
    head_hidden
        Widths of the head's hidden layers (ParAIsite: 450, 350, 350).
    head_activation
        ``relu`` (ParAIsite), ``softplus``, ``silu`` or ``gelu``.
    state_index
        The data fidelity the model predicts at, fed to MEGNet's state input: the category of
        a categorical-state backbone (multi-fidelity band-gap MEGNet: 0 = PBE), else the first
        state component (0 = the pretrained input). Fidelity-aware training (``fit(...,
        fidelity=1, replay="aflow_agl")``) teaches AGL as 0 and phono3py as 1.
    transform
        The target transform fitted on the training split.
    n_descriptors
        0 (ParAIsite) or ``len(DESCRIPTOR_NAMES)``: a *hybrid head* that reads the structure's
        composition/structure descriptors (standardized with training-split statistics)
        beside the MEGNet embedding. See :meth:`with_descriptors`.
    metadata
        Provenance: backbone, recipe, dataset, split, metrics; saved in ``model.json``.
    """

    def __init__(
        self,
        backbone_config: dict[str, Any],
        head_hidden: Sequence[int] = (450, 350, 350),
        head_activation: str = "relu",
        state_index: int = 0,
        transform: LogStandardScaler | dict | None = None,
        metadata: dict[str, Any] | None = None,
        n_descriptors: int = 0,
    ) -> None:
        super().__init__()
        if n_descriptors not in (0, len(DESCRIPTOR_NAMES)):
            raise ValueError(f"n_descriptors must be 0 or {len(DESCRIPTOR_NAMES)}, not {n_descriptors}")
        if head_activation not in _ACTIVATIONS:
            raise ValueError(
                f"head_activation must be one of {sorted(_ACTIVATIONS)}, not {head_activation!r}"
            )
        self.backbone_config = dict(backbone_config)
        self.backbone = accelerate(MEGNet(**self.backbone_config))
        self.embedding_dim = _truncate_output_proj(self.backbone)
        self.head_hidden = [int(h) for h in head_hidden]
        self.head_activation = head_activation
        self.n_descriptors = 0
        self.head = MLP([self.embedding_dim, *self.head_hidden, 1], _ACTIVATIONS[head_activation]())
        if n_descriptors:
            self.with_descriptors()
        self.state_index = int(state_index)
        if isinstance(transform, dict):
            transform = LogStandardScaler.from_dict(transform)
        self.register_buffer("target_mean", torch.tensor(0.0))
        self.register_buffer("target_std", torch.tensor(1.0))
        self.transform = transform or LogStandardScaler()
        self.metadata: dict[str, Any] = dict(metadata or {})

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def from_backbone(
        cls,
        backbone: str = "megnet-eform",
        head_hidden: Sequence[int] = (450, 350, 350),
        head_activation: str = "relu",
        state_index: int = 0,
        seed: int | None = None,
    ) -> LTCModel:
        """A fresh model whose backbone carries the weights of a registered backbone and a random head."""
        from ..plugins import get_backbone

        spec = get_backbone(backbone)
        if seed is not None:
            torch.manual_seed(seed)
        megnet, info = spec.build()
        model = cls(
            info["config"], head_hidden, head_activation, state_index, metadata={"backbone": backbone}
        )
        state = megnet.state_dict()
        last = len(megnet.output_proj.layers) - 1
        state = {k: v for k, v in state.items() if not k.startswith(f"output_proj.layers.{last}.")}
        model.backbone.load_state_dict(state, strict=True)
        return model

    def with_descriptors(self) -> LTCModel:
        """Give the head the descriptors as extra inputs, in place, keeping its function.

        The new input columns of the head's first layer start at zero, so a transferred model
        (the AFLOW stage of ``two-stage``) predicts exactly as before and fine-tuning learns
        how much the descriptors add. Returns ``self``; a hybrid model is returned unchanged.
        """
        if self.n_descriptors:
            return self
        first = self.head.layers[0]
        if not isinstance(first, nn.Linear):
            raise ValueError("the head does not start with a linear layer")
        n = len(DESCRIPTOR_NAMES)
        wider = nn.Linear(first.in_features + n, first.out_features).to(first.weight.device)
        with torch.no_grad():
            wider.weight.zero_()
            wider.weight[:, : first.in_features] = first.weight
            wider.bias.copy_(first.bias)
        self.head.layers[0] = wider
        self.n_descriptors = n
        self.register_buffer("descriptor_mean", torch.zeros(n, device=first.weight.device))
        self.register_buffer("descriptor_std", torch.ones(n, device=first.weight.device))
        # the training part's range, to which descriptors are clipped (unbounded until fitted)
        self.register_buffer("descriptor_min", torch.full((n,), -torch.inf, device=first.weight.device))
        self.register_buffer("descriptor_max", torch.full((n,), torch.inf, device=first.weight.device))
        return self

    @property
    def uses_descriptors(self) -> bool:
        return self.n_descriptors > 0

    @property
    def clips_descriptors(self) -> bool:
        """Whether a hybrid model knows its descriptors' training range (models saved before
        matgl-ltc recorded it do not)."""
        return self.uses_descriptors and not bool(torch.isinf(self.descriptor_min).all())

    def fit_descriptor_scaler(self, descriptors: np.ndarray) -> None:
        """Standardize the descriptors with these (training-split) statistics and keep their range
        (:meth:`fit_descriptor_range`). NaN-safe."""
        x = np.asarray(descriptors, dtype=float).reshape(-1, self.n_descriptors)
        with warnings.catch_warnings():  # a column with no value at all: leave it at zero
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, std = np.nanmean(x, 0), np.nanstd(x, 0)
        mean = np.nan_to_num(mean)
        std = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        self.descriptor_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.descriptor_std.copy_(torch.as_tensor(std, dtype=torch.float32))
        self.fit_descriptor_range(x)

    def fit_descriptor_range(self, descriptors: np.ndarray) -> None:
        """Clip the descriptors to this (training-split) range before the head sees them.

        The head is linear in them and Togo15's cells have 2 to 4 atoms: unclipped, a 64-atom cell
        sits 67 standard deviations out and drives κ below zero. A column without values stays
        unbounded. NaN-safe.
        """
        x = np.asarray(descriptors, dtype=float).reshape(-1, self.n_descriptors)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = np.nanmin(x, 0), np.nanmax(x, 0)
        self.descriptor_min.copy_(
            torch.as_tensor(np.where(np.isfinite(low), low, -np.inf), dtype=torch.float32)
        )
        self.descriptor_max.copy_(
            torch.as_tensor(np.where(np.isfinite(high), high, np.inf), dtype=torch.float32)
        )

    @property
    def transform(self) -> LogStandardScaler:
        return LogStandardScaler(float(self.target_mean), float(self.target_std))

    @transform.setter
    def transform(self, value: LogStandardScaler) -> None:
        self.target_mean.fill_(value.mean)
        self.target_std.fill_(value.std)

    @property
    def cutoff(self) -> float:
        return float(self.backbone_config.get("cutoff", 4.0))

    @property
    def device(self) -> torch.device:
        return self.target_mean.device

    # -- forward --------------------------------------------------------------------------
    def _state_attr(self, num_graphs: int, fidelity: torch.Tensor | None = None) -> torch.Tensor:
        """MEGNet's state input: each graph's data fidelity (default: ``state_index``).

        A categorical-state backbone (the multi-fidelity band-gap MEGNet) takes it as the
        category. A continuous-state one (Eform: two zeros) gets it in the first component, so
        fidelity 0 is exactly the pretrained input and fidelity 1 a new one the model learns.
        """
        if fidelity is None:
            index = torch.full((num_graphs,), self.state_index, dtype=torch.long, device=self.device)
        else:
            index = fidelity.to(self.device).long().reshape(num_graphs)
        if self.backbone_config.get("ntypes_state"):
            return index
        state = torch.zeros(
            num_graphs, int(self.backbone_config.get("dim_state_embedding", 2)), device=self.device
        )
        state[:, 0] = index.to(state.dtype)
        return state

    def embed(self, g: Batch | Data, edge_attr: torch.Tensor | None = None) -> torch.Tensor:
        """The backbone's last hidden layer, shape ``(num_graphs, embedding_dim)``.

        ``edge_attr``, the bond expansion from :func:`~matgl_ltc.model.fast_megnet.bond_features`,
        lets an ensemble compute it once per batch for all members.
        """
        num_graphs = int(getattr(g, "num_graphs", 1) or 1)
        state = self._state_attr(num_graphs, getattr(g, "fidelity", None))
        if edge_attr is None:
            out = self.backbone(g, state_attr=state)
        else:
            out = megnet_forward(self.backbone, g, state, edge_attr)
        return out.reshape(num_graphs, self.embedding_dim)

    def forward(self, g: Batch | Data, edge_attr: torch.Tensor | None = None) -> torch.Tensor:
        """Standardized log10(κ+1), shape ``(num_graphs,)``."""
        x = self.embed(g, edge_attr)
        if self.n_descriptors:
            d = getattr(g, "descriptors", None)
            if d is None:
                raise ValueError(
                    "this model's head reads descriptors: build graphs with descriptors=True "
                    "(LTCModel.graphs_for does)"
                )
            d = torch.clamp(d.to(x.device, x.dtype), self.descriptor_min, self.descriptor_max)
            d = (d - self.descriptor_mean) / self.descriptor_std
            x = torch.cat([x, torch.nan_to_num(d, nan=0.0)], dim=1)
        return self.head(x).reshape(-1)

    def to_kappa(self, z: torch.Tensor) -> torch.Tensor:
        """Invert the target transform, differentiably: standardized log → W m⁻¹ K⁻¹."""
        return torch.pow(10.0, z * self.target_std + self.target_mean) - 1.0

    # -- prediction -----------------------------------------------------------------------
    @torch.no_grad()
    def predict_graphs(self, graphs: Sequence[Data], batch_size: int = 64) -> np.ndarray:
        """κ_L for prepared graphs, batched."""
        was_training = self.training
        self.eval()
        out = np.empty(len(graphs), dtype=float)
        try:
            for idx in batch_indices(len(graphs), batch_size):
                batch = collate_graphs([graphs[i] for i in idx]).to(self.device)
                out[idx] = self.to_kappa(self(batch)).double().cpu().numpy()
        finally:
            self.train(was_training)
        return out

    def graphs_for(self, structures: Iterable[Any]) -> list[Data]:
        """Graphs at this model's cutoff; a structure MEGNet cannot handle raises an error naming it."""
        return [
            structure_graph(structure, i, self.cutoff, self.uses_descriptors)[2]
            for i, structure in enumerate(structures)
        ]

    def predict(self, structures: Iterable[Any], batch_size: int = 64) -> np.ndarray:
        """κ_L (W m⁻¹ K⁻¹) for ASE ``Atoms`` or pymatgen ``Structure`` objects, batched."""
        return self.predict_graphs(self.graphs_for(structures), batch_size=batch_size)

    def predict_structure(self, structure: Any) -> float:
        """κ_L of one structure, matgl style."""
        return float(self.predict([structure])[0])

    # -- persistence (matgl's directory layout) -------------------------------------------
    def init_args(self) -> dict[str, Any]:
        return {
            "backbone_config": self.backbone_config,
            "head_hidden": self.head_hidden,
            "head_activation": self.head_activation,
            "state_index": self.state_index,
            "transform": self.transform.to_dict(),
            "n_descriptors": self.n_descriptors,
        }

    def save(self, path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``model.json`` (architecture, transform, provenance), ``model.pt`` and ``state.pt``."""
        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        if metadata:
            self.metadata.update(metadata)
        self.metadata.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
        from .. import __version__

        description = {
            "@module": "matgl_ltc.model",
            "@class": "LTCModel",
            "@model_version": MODEL_VERSION,
            "kwargs": self.init_args(),
            "metadata": {**self.metadata, "matgl_ltc_version": __version__, "units": "W m^-1 K^-1 at 300 K"},
        }
        (folder / "model.json").write_text(json.dumps(description, indent=2, default=_json_default))
        torch.save(
            {
                "@class": "LTCModel",
                "@model_version": MODEL_VERSION,
                "init_args": json.loads(json.dumps(self.init_args(), default=_json_default)),
            },
            folder / "model.pt",
        )
        torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, folder / "state.pt")
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> LTCModel:
        """Load a saved model; tensors only, never unpickling arbitrary objects."""
        folder = Path(path)
        if not (folder / "model.json").is_file():
            raise ModelLoadError(f"{folder} is not an LTC model directory (no model.json)")
        try:
            description = json.loads((folder / "model.json").read_text())
        except json.JSONDecodeError as exc:
            raise ModelLoadError(f"{folder / 'model.json'} is corrupted: {exc}") from None
        if description.get("@class") != "LTCModel":
            found = description.get("@class", "unknown")
            raise ModelLoadError(
                f"{folder} holds a {found!r} model, not an LTCModel; for matgl's own models use matgl.load_model"
            )
        if int(description.get("@model_version", 0)) > MODEL_VERSION:
            raise ModelLoadError(
                f"{folder} was written by a newer matgl-ltc (model version {description['@model_version']})"
            )
        try:
            state = torch.load(folder / "state.pt", map_location=map_location, weights_only=True)
        except FileNotFoundError:
            raise ModelLoadError(f"{folder} has no state.pt") from None
        except Exception as exc:
            raise ModelLoadError(
                f"{folder / 'state.pt'} is corrupted or not a tensor state dict: {exc}"
            ) from None
        kwargs = description.get("kwargs", {})
        if kwargs.get("n_descriptors") and "descriptor_min" not in state:
            warnings.warn(
                f"{folder} was {UNBOUNDED_DESCRIPTORS_ADVICE}", UnboundedDescriptorsWarning, stacklevel=2
            )
            n = int(kwargs["n_descriptors"])
            state = {
                **state,
                "descriptor_min": torch.full((n,), -torch.inf),
                "descriptor_max": torch.full((n,), torch.inf),
            }
        try:
            model = cls(**kwargs, metadata=description.get("metadata"))
            model.load_state_dict(state, strict=True)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ModelLoadError(
                f"{folder}: weights do not match the architecture in model.json: {exc}"
            ) from None
        model.eval()
        return model.to(map_location)


def training_sets(metadata: dict[str, Any]) -> dict[str, str]:
    """The datasets whose κ a model's last stage learnt, as ``load_dataset`` reads them (a file's
    path, else a name), each with the ``atoms.info`` key of its labels: the one it trained on, and
    one it replayed at its own fidelity (a replay at another fidelity, AGL's κ, taught another
    quantity); a union's parts one by one."""
    training = metadata.get("training") or {}
    sources = [(metadata, "dataset")]
    if training.get("replay_fidelity", 0) == training.get("fidelity", 0):
        sources.append((training, "replay"))
    from ..data.datasets import dataset_parts
    from ..plugins import available_datasets

    registry = available_datasets()
    found: dict[str, str] = {}
    for record, prefix in sources:
        name = record.get(f"{prefix}_file") or record.get(prefix)
        for part in dataset_parts(name) if name else []:  # a union's sets, one by one
            found.setdefault(part, "ltc" if part in registry else record.get(f"{prefix}_label_key", "ltc"))
    return found


def saved_metadata(folder: str | os.PathLike) -> dict[str, Any]:
    """A saved model's metadata, read from its ``model.json`` without loading its weights."""
    return json.loads((Path(folder) / "model.json").read_text()).get("metadata", {})


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, tuple):
        return list(obj)
    return str(obj)
