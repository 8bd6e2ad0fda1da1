"""A tiny third-party matgl-ltc plugin: one backbone, one recipe, one pretrained model."""

from __future__ import annotations

import tempfile
from pathlib import Path

from matgl.models import MEGNet

from matgl_ltc.model.backbones import BackboneSpec, clean_megnet_args
from matgl_ltc.plugins import PretrainedSpec, hookimpl
from matgl_ltc.train.recipes import Recipe, Stage


def _tiny_megnet():
    model = MEGNet(
        dim_node_embedding=8,
        dim_edge_embedding=20,
        nblocks=1,
        hidden_layer_sizes_input=(16, 8),
        hidden_layer_sizes_conv=(16, 8),
        hidden_layer_sizes_output=(8, 4),
        dropout=0.0,
    )
    return model, {"name": None, "config": clean_megnet_args(model._init_args), "normalizer": None}


def _tiny_model_dir() -> Path:
    from matgl_ltc import LTCModel

    folder = Path(tempfile.gettempdir()) / "ltc-example-plugin-model"
    if not (folder / "model.json").exists():
        LTCModel.from_backbone("tiny-megnet", head_hidden=(8,), seed=0).save(folder, {"description": "tiny"})
    return folder


@hookimpl
def matgl_ltc_backbones():
    return [BackboneSpec("tiny-megnet", "a one-block MEGNet for tests", _tiny_megnet)]


@hookimpl
def matgl_ltc_recipes():
    return [
        Recipe(
            "tiny-recipe",
            (Stage("target", init="backbone:tiny-megnet", epochs=1, batch_size=32, head_hidden=(8,)),),
            "one epoch of the tiny backbone",
        )
    ]


@hookimpl
def matgl_ltc_pretrained_models():
    return [PretrainedSpec("tiny-ltc", "an untrained tiny model from the example plugin", _tiny_model_dir)]
