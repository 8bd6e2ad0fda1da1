"""MEGNet backbones: random, or matgl's pretrained formation-energy and band-gap models, loaded strictly.

ParAIsite loaded its "pretrained" weights with ``strict=False`` and a key-prefix mismatch,
so nothing arrived and its step 2 trained from random weights. Here every tensor must
match (``strict=True``) or loading fails loudly.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from matgl.models import MEGNet

#: MEGNet's constructor arguments that ``model.json`` may carry but that are not hyper-parameters.
_NON_ARCH_KEYS = ("graph_transformations", "element_types", "bond_expansion")


@dataclass
class BackboneSpec:
    """A named way to build a MEGNet backbone (built-in or registered by a plugin)."""

    name: str
    description: str
    build: Callable[[], tuple[MEGNet, dict[str, Any]]]
    tags: dict[str, Any] = field(default_factory=dict)


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are missing, unsafe, or do not match MEGNet's architecture."""


def pretrained_dir(name: str) -> Path:
    """Folder of a pretrained matgl model: ``MATGL_LTC_PRETRAINED/<name>`` if set, else the bundled copy."""
    override = os.environ.get("MATGL_LTC_PRETRAINED")
    if override and (Path(override) / name).is_dir():
        return Path(override) / name
    return Path(str(resources.files("matgl_ltc.model") / "weights" / name))


def megnet_config_from_json(model_json: dict) -> dict[str, Any]:
    """MEGNet constructor arguments from a matgl ``model.json`` (plain or ``TransformedTargetModel``)."""
    node = model_json
    if node.get("@class") == "TransformedTargetModel":
        node = node["kwargs"]["model"]
    if node.get("@class") != "MEGNet":
        raise PretrainedWeightsError(f"model.json describes a {node.get('@class')!r}, not a MEGNet")
    return clean_megnet_args(node["init_args"])


def clean_megnet_args(init_args: dict[str, Any]) -> dict[str, Any]:
    """JSON-friendly MEGNet hyper-parameters (tuples as lists, no object-valued arguments)."""
    args = {k: v for k, v in init_args.items() if k not in _NON_ARCH_KEYS}
    if args.get("dropout") is None:
        args["dropout"] = 0.0
    return {k: list(v) if isinstance(v, tuple) else v for k, v in args.items()}


def parse_normalizer(model_json: dict) -> tuple[float, float] | None:
    """Mean and std of matgl's target ``Normalizer`` as written in ``model.json``, if any."""
    text = str(model_json.get("kwargs", {}).get("target_transformer", ""))
    match = re.search(r"Mean=\s*([-+0-9.eE]+),\s*Std:\s*([-+0-9.eE]+)", text)
    return (float(match.group(1)), float(match.group(2))) if match else None


def load_pretrained_megnet(name: str) -> tuple[MEGNet, dict[str, Any]]:
    """Build MEGNet from a matgl model folder and load ``state.pt`` strictly and safely.

    Returns the model (the full MEGNet, final layer included) and its provenance
    (``name``, ``config``, ``normalizer`` as ``(mean, std)`` of its original target).
    """
    folder = pretrained_dir(name)
    try:
        model_json = json.loads((folder / "model.json").read_text())
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise PretrainedWeightsError(f"pretrained model {name!r} not found in {folder}: {exc}") from None
    except Exception as exc:
        raise PretrainedWeightsError(f"cannot read pretrained model {name!r} from {folder}: {exc}") from None
    config = megnet_config_from_json(model_json)
    model = MEGNet(**config)
    stripped = {k.removeprefix("model."): v for k, v in state.items()}
    try:
        model.load_state_dict(stripped, strict=True)
    except RuntimeError as exc:
        raise PretrainedWeightsError(f"weights of {name!r} do not match MEGNet{config}: {exc}") from None
    return model, {"name": name, "config": config, "normalizer": parse_normalizer(model_json)}


def _random_megnet() -> tuple[MEGNet, dict[str, Any]]:
    model = MEGNet(dropout=0.0)
    return model, {"name": None, "config": clean_megnet_args(model._init_args), "normalizer": None}


def builtin_backbones() -> list[BackboneSpec]:
    """The backbones the package registers through its own plugin hook."""
    return [
        BackboneSpec(
            "megnet-random",
            "MEGNet with matgl's default hyper-parameters and random weights (paper step 1)",
            _random_megnet,
            {"pretrained": None},
        ),
        BackboneSpec(
            "megnet-eform",
            "MEGNet pre-trained on MP-2018.6.1 formation energy, 62k materials (paper steps 2-3)",
            lambda: load_pretrained_megnet("MEGNet-MP-2018.6.1-Eform"),
            {"pretrained": "MEGNet-MP-2018.6.1-Eform"},
        ),
        BackboneSpec(
            "megnet-bandgap",
            "MEGNet pre-trained on MP-2019.4.1 multi-fidelity band gaps (PBE state)",
            lambda: load_pretrained_megnet("MEGNet-MP-2019.4.1-BandGap-mfi"),
            {"pretrained": "MEGNet-MP-2019.4.1-BandGap-mfi"},
        ),
    ]
