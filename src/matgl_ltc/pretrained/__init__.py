"""Trained ensembles shipped with the package (matgl directory layout, one folder each)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

#: The ensemble ``load_model()`` returns without an argument.
DEFAULT_MODEL = "LTC-MEGNet-Togo15-hybrid"


def shipped_dir() -> Path:
    return Path(str(resources.files("matgl_ltc.pretrained")))


def shipped_models() -> dict[str, tuple[str, Path]]:
    """Name → (one-line description, folder) of every shipped ensemble."""
    found = {}
    for folder in sorted(shipped_dir().iterdir()):
        card = folder / "ensemble.json"
        if card.is_file():
            meta = json.loads(card.read_text()).get("metadata", {})
            found[folder.name] = (meta.get("description", ""), folder)
    return found
