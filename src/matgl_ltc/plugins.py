"""Plugin hooks (pluggy) and discovery through the ``matgl_ltc`` entry-point group.

Built-in backbones, datasets, recipes and pretrained models register through these same
hooks, the way pytest registers its own plugins: one mechanism, no special cases. A
third-party package exposes a module with ``@hookimpl`` functions under
``[project.entry-points.matgl_ltc]``; a plugin that fails to import or whose hook raises
produces a warning naming it, never a crash.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

PROJECT = "matgl_ltc"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@dataclass
class DatasetSpec:
    """A named dataset: ``load()`` returns anything :func:`matgl_ltc.data.load_dataset` accepts."""

    name: str
    description: str
    load: Callable[[], Any]
    card: str = ""


@dataclass
class PretrainedSpec:
    """A named trained model or ensemble: ``path()`` gives its directory."""

    name: str
    description: str
    path: Callable[[], Any]
    tags: dict[str, Any] = field(default_factory=dict)


class HookSpecs:
    """What a plugin may provide. Each hook returns a list of specs."""

    @hookspec
    def matgl_ltc_backbones(self) -> list:  # list[BackboneSpec]
        """Backbones usable by ``LTCModel.from_backbone`` and ``matgl-ltc train --backbone``."""

    @hookspec
    def matgl_ltc_datasets(self) -> list:  # list[DatasetSpec]
        """Datasets usable by name in ``load_dataset`` and ``--dataset``."""

    @hookspec
    def matgl_ltc_recipes(self) -> list:  # list[Recipe]
        """Training recipes usable by name in ``--recipe``."""

    @hookspec
    def matgl_ltc_pretrained_models(self) -> list:  # list[PretrainedSpec]
        """Trained models usable by name in ``load_model`` and ``--model``."""


_MANAGER: pluggy.PluginManager | None = None


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager: built-ins first, then every entry point of the group."""
    global _MANAGER
    if _MANAGER is None:
        manager = pluggy.PluginManager(PROJECT)
        manager.add_hookspecs(HookSpecs)
        from . import _builtins

        manager.register(_builtins, name="matgl_ltc.builtins")
        for ep in entry_points(group=PROJECT):
            try:
                manager.register(ep.load(), name=ep.name)
            except Exception as exc:  # a broken plugin must not break the package
                warnings.warn(
                    f"matgl-ltc plugin {ep.name!r} ({ep.value}) failed to load and is ignored: "
                    f"{type(exc).__name__}: {exc}",
                    stacklevel=2,
                )
        _MANAGER = manager
    return _MANAGER


def reset_plugins() -> None:
    """Forget discovered plugins (after installing one in a running process, or in tests)."""
    global _MANAGER
    _MANAGER = None


def _collect(hook_name: str) -> dict[str, Any]:
    manager = get_plugin_manager()
    hook = getattr(manager.hook, hook_name)
    found: dict[str, Any] = {}
    # pluggy calls the last-registered first; iterate in registration order so built-ins
    # come first and a plugin cannot silently shadow one (it gets a warning instead).
    for impl in reversed(hook.get_hookimpls()):
        try:
            items = impl.function() or []
        except Exception as exc:
            warnings.warn(
                f"matgl-ltc plugin {impl.plugin_name!r} raised in {hook_name} and is ignored: "
                f"{type(exc).__name__}: {exc}",
                stacklevel=3,
            )
            continue
        for item in items:
            if item.name in found:
                warnings.warn(
                    f"matgl-ltc plugin {impl.plugin_name!r} registers {item.name!r} again; keeping the first",
                    stacklevel=3,
                )
                continue
            found[item.name] = item
    return found


def available_backbones() -> dict[str, Any]:
    return _collect("matgl_ltc_backbones")


def available_datasets() -> dict[str, DatasetSpec]:
    return _collect("matgl_ltc_datasets")


def available_recipes() -> dict[str, Any]:
    return _collect("matgl_ltc_recipes")


def available_pretrained_models() -> dict[str, PretrainedSpec]:
    return _collect("matgl_ltc_pretrained_models")


def _get(kind: str, name: str, table: dict[str, Any]) -> Any:
    if name not in table:
        raise KeyError(f"unknown {kind} {name!r}; available: {', '.join(sorted(table)) or 'none'}")
    return table[name]


def get_backbone(name: str) -> Any:
    return _get("backbone", name, available_backbones())


def get_dataset_spec(name: str) -> DatasetSpec:
    return _get("dataset", name, available_datasets())


def get_recipe(name: str) -> Any:
    return _get("recipe", name, available_recipes())


def get_pretrained_model(name: str) -> PretrainedSpec:
    return _get("pretrained model", name, available_pretrained_models())
