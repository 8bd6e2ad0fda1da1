"""Train/validation splits: the paper's seeded random 80/20 splits, or explicit ones from JSON."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Split:
    """One train/validation partition, by structure id."""

    train: tuple[str, ...]
    validation: tuple[str, ...]
    index: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        overlap = set(self.train) & set(self.validation)
        if overlap:
            raise ValueError(f"split {self.index}: ids in both train and validation: {sorted(overlap)[:5]}")
        if not self.train or not self.validation:
            raise ValueError(f"split {self.index}: train and validation must both be non-empty")

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "seed": self.seed,
            "train": list(self.train),
            "validation": list(self.validation),
        }

    @classmethod
    def from_dict(cls, data: dict, index: int = 0) -> Split:
        try:
            return cls(
                tuple(map(str, data["train"])),
                tuple(map(str, data["validation"])),
                int(data.get("index", index)),
                data.get("seed"),
            )
        except KeyError as exc:
            raise ValueError(f"a split needs 'train' and 'validation' id lists; missing {exc}") from None


def random_splits(
    ids: Sequence[str], n_splits: int = 9, train_fraction: float = 0.8, first_seed: int = 0
) -> list[Split]:
    """``n_splits`` random splits; split k permutes with ``numpy.random.default_rng(first_seed + k)``.

    The validation part has ``ceil((1 - train_fraction) * n)`` structures (19 of Togo15's 95).
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    ids = list(ids)
    n_val = math.ceil(round((1 - train_fraction) * len(ids), 9))
    splits = []
    for k in range(n_splits):
        seed = first_seed + k
        order = np.random.default_rng(seed).permutation(len(ids))
        val = tuple(ids[i] for i in order[:n_val])
        train = tuple(ids[i] for i in order[n_val:])
        splits.append(Split(train, val, index=k, seed=seed))
    return splits


def load_splits(path: str | os.PathLike) -> list[Split]:
    """Read ``{"train": [...], "validation": [...]}`` or a list of such objects."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"split file {path} is not valid JSON: {exc}") from None
    items = data if isinstance(data, list) else data.get("splits", [data])
    return [Split.from_dict(item, index=i) for i, item in enumerate(items)]


def save_splits(splits: Sequence[Split], path: str | os.PathLike) -> None:
    Path(path).write_text(json.dumps([s.to_dict() for s in splits], indent=1))


def warn_if_few_validation(splits: Sequence[Split], name: str, stacklevel: int = 3) -> None:
    """Warn when a split validates on fewer than 5 structures: its scores are then mostly noise."""
    smallest = min(len(split.validation) for split in splits)
    if smallest < 5:
        held = "splits hold as few as" if len(splits) > 1 else "split holds only"
        warnings.warn(
            f"{name}'s validation {held} {smallest} structure(s), so the scores are mostly noise "
            "(Spearman needs 3)",
            UserWarning,
            stacklevel=stacklevel,
        )
