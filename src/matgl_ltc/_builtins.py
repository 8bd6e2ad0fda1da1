"""The package's own plugin: built-in backbones and datasets, registered like any other."""

from __future__ import annotations

from .plugins import DatasetSpec, hookimpl


@hookimpl
def matgl_ltc_backbones() -> list:
    from .model.backbones import builtin_backbones

    return builtin_backbones()


@hookimpl
def matgl_ltc_datasets() -> list:
    from .data.datasets import BUNDLED_DATASETS, load_bundled

    return [
        DatasetSpec(name, text, lambda n=name: load_bundled(n)) for name, text in BUNDLED_DATASETS.items()
    ]


@hookimpl
def matgl_ltc_recipes() -> list:
    from .train.recipes import builtin_recipes

    return builtin_recipes()


@hookimpl
def matgl_ltc_pretrained_models() -> list:
    from .plugins import PretrainedSpec
    from .pretrained import shipped_models

    return [PretrainedSpec(name, text, lambda p=path: p) for name, (text, path) in shipped_models().items()]
