"""``load_model`` and ``list_models``: like ``matgl.load_model``, for shipped, plugin and saved models."""

from __future__ import annotations

import os
from pathlib import Path

from .ensemble import ENSEMBLE_FILE, LTCEnsemble, read_ensemble_description
from .ltc_model import LTCModel, ModelLoadError


def load_model(name_or_path: str | os.PathLike | None = None) -> LTCModel | LTCEnsemble:
    """Load a model or ensemble.

    Parameters
    ----------
    name_or_path
        ``None``: the default shipped ensemble. A name: a shipped or plugin-registered model
        (see :func:`list_models`). A path: a saved ``LTCModel`` folder, an ``LTCEnsemble``
        folder, or a recipe run folder (its per-split models become an ensemble).
    """
    path = _resolve(name_or_path)
    if (path / ENSEMBLE_FILE).is_file():
        return LTCEnsemble.load(path)
    if (path / "model.json").is_file():
        return LTCModel.load(path)
    return LTCEnsemble.from_run(path)


def model_folders(name_or_path: str | os.PathLike | None = None) -> list[Path]:
    """The saved ``LTCModel`` folders behind what :func:`load_model` accepts, without loading them.

    One folder for a model; an ensemble's members in its order; a run's final-stage models in split
    order. Fine-tuning starts from these (a recipe stage's ``init = "model:..."``).
    """
    path = _resolve(name_or_path)
    if (path / ENSEMBLE_FILE).is_file():
        return [path / name for name in read_ensemble_description(path)["members"]]
    if (path / "model.json").is_file():
        return [path]
    from ..train.runner import run_models

    return run_models(path)


def _resolve(name_or_path: str | os.PathLike | None) -> Path:
    """The folder of a shipped or plugin model name, or the given path if it exists."""
    from ..plugins import available_pretrained_models
    from ..pretrained import DEFAULT_MODEL

    target = DEFAULT_MODEL if name_or_path is None else name_or_path
    path = Path(target)
    if not path.exists():
        registry = available_pretrained_models()
        if str(target) not in registry:
            known = ", ".join(sorted(registry)) or "none"
            raise ModelLoadError(f"{str(target)!r} is neither a known model ({known}) nor an existing folder")
        path = Path(registry[str(target)].path())
    if not any((path / f).is_file() for f in (ENSEMBLE_FILE, "model.json", "recipe.json")):
        raise ModelLoadError(f"{path} holds no LTC model (no {ENSEMBLE_FILE}, model.json or recipe.json)")
    return path


def list_models() -> dict[str, str]:
    """Name → one-line description of every loadable model (shipped and plugin-registered)."""
    from ..plugins import available_pretrained_models

    return {name: spec.description for name, spec in available_pretrained_models().items()}
