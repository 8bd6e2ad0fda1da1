"""``fit``: train one LTCModel on one split of one dataset, with the paper's defaults."""

from __future__ import annotations

import csv
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from ..analysis.metrics import regression_metrics
from ..data.datasets import LTCDataset, load_dataset
from ..data.readers import reduced_formula
from ..data.splits import Split, random_splits
from ..data.transform import LogStandardScaler
from ..model.ltc_model import LTCModel
from .lightning_module import GraphLabelDataset, LTCLightningModule, collate_labelled
from .progress import EpochProgressBar

#: The paper's training settings (ParAIsite), every one a parameter of :func:`fit`.
PAPER_DEFAULTS: dict[str, Any] = {
    "epochs": 300,
    "batch_size": 8,
    "lr": 1e-3,
    "min_lr_fraction": 0.01,
    "loss": "mape",
    "seed": 42,
}


#: every epoch's validation predictions, beside ``validation_predictions.csv``
EPOCH_PREDICTIONS = "validation_epochs.npz"


@dataclass
class FitResult:
    """The trained model (weights of the kept epoch), its validation metrics and the per-epoch curve."""

    model: LTCModel
    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    out_dir: Path | None = None
    #: κ̂ of every validation structure after every epoch, shape (epochs, n_validation); None
    #: when training ran on several processes
    epoch_predictions: np.ndarray | None = None


def resolve_split(dataset: LTCDataset, split: Split | int | None) -> Split:
    """A :class:`Split` from a split object or the index of one of the 9 seeded random splits."""
    if isinstance(split, Split):
        dataset.indices(list(split.train) + list(split.validation))  # unknown ids fail here, by name
        return split
    k = 0 if split is None else int(split)
    return random_splits(dataset.ids, n_splits=k + 1)[k]


def fit(
    model: LTCModel,
    dataset: LTCDataset | str,
    split: Split | int | None = None,
    *,
    epochs: int = 300,
    batch_size: int = 8,
    lr: float = 1e-3,
    min_lr_fraction: float = 0.01,
    loss: str = "mape",
    weight_decay: float = 0.0,
    seed: int = 42,
    monitor: str = "mape",
    keep: str = "best",
    out_dir: str | os.PathLike | None = None,
    progress: bool = True,
    callbacks: list[pl.Callback] | None = None,
    accelerator: str = "auto",
    devices: int | str | list[int] = "auto",
    strategy: str = "auto",
    num_workers: int = 0,
    metadata: dict[str, Any] | None = None,
    average_last: int = 0,
    l2_sp: float = 0.0,
    freeze: Sequence[str] = (),
    fidelity: int | None = None,
    replay: LTCDataset | str | None = None,
    replay_size: int = 0,
    replay_fidelity: int = 0,
    descriptors: bool = False,
) -> FitResult:
    """Train ``model`` on the training part of ``split`` and score it on the validation part.

    The target transform is fitted on the training labels only. With ``keep="best"`` (the
    paper's protocol) the weights of the epoch with the best validation ``monitor`` are kept;
    ``keep="last"`` keeps the final epoch, which is the unbiased choice when the validation
    split must not steer training. ``average_last=N`` makes "the final epoch" the mean of the
    weights of the last N epochs (snapshot averaging); ``freeze`` holds the parameters whose
    names start with any of the given prefixes fixed; ``l2_sp=α`` pulls the weights back
    towards those the stage started from (L2-SP, see :class:`LTCLightningModule`).

    Fidelity-aware training: ``fidelity`` sets the model's state input for the target labels
    (and for its predictions afterwards); ``replay`` mixes ``replay_size`` structures of another
    labelled set (e.g. ``aflow_agl``), fed with state ``replay_fidelity``, into every training
    epoch, so the model keeps the low-fidelity knowledge and learns the offset between the two
    as an effect of the state rather than overwriting it. Validation uses the target only.

    ``descriptors=True`` turns the head into a hybrid one (:meth:`LTCModel.with_descriptors`):
    composition/structure descriptors, standardized on the training split, enter beside
    the MEGNet embedding. A model that already has a hybrid head always gets them.

    Returns
    -------
    FitResult
        ``metrics`` holds ``validation`` (of the kept weights), ``train``, ``best_epoch``,
        ``final_validation`` (last epoch) and the settings; ``history`` the per-epoch curve.
        With ``out_dir``, the model, ``metrics.json`` and ``curve.csv`` are written there.
    """
    if keep not in ("best", "last"):
        raise ValueError(f"keep must be 'best' or 'last', not {keep!r}")
    dataset = load_dataset(dataset) if isinstance(dataset, str) else dataset
    if not dataset.is_labelled:
        raise ValueError(
            f"dataset {dataset.name!r} has unlabelled structures; training needs κ_L on every one"
        )
    split = resolve_split(dataset, split)
    pl.seed_everything(seed, workers=True, verbose=False)
    train_idx, val_idx = dataset.indices(split.train), dataset.indices(split.validation)
    model.transform = LogStandardScaler.fit(dataset.labels[train_idx])
    if descriptors:
        model.with_descriptors()
    cache = dataset.graph_cache(model.cutoff, model.uses_descriptors)
    if model.uses_descriptors:
        model.fit_descriptor_scaler(np.concatenate([cache.graphs[i].descriptors for i in train_idx]))

    if fidelity is not None:
        model.state_index = int(fidelity)
    # recorded as given (a name, or the path as written); the set itself is read once, here
    replay_name = None if replay is None else getattr(replay, "name", str(replay))
    if isinstance(replay, str):
        replay = load_dataset(replay)
    train_data, replayed_elements = _training_data(
        model, dataset, cache, train_idx, replay, replay_size, replay_fidelity, seed, split
    )

    def loader(data: GraphLabelDataset, shuffle: bool, size: int) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(
            data,
            batch_size=size,
            shuffle=shuffle,
            collate_fn=collate_labelled,
            num_workers=num_workers,
            generator=generator,
        )

    model.train()
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    _freeze(model, freeze)
    module = LTCLightningModule(
        model, lr, epochs, min_lr_fraction, loss, weight_decay, monitor, average_last, l2_sp
    )
    root = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="matgl_ltc_"))
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda"):
        logging.getLogger(name).setLevel(logging.WARNING)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator=accelerator,
        devices=devices,
        strategy=strategy,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[
            *([EpochProgressBar(f"{dataset.name} split {split.index}")] if progress else []),
            *(callbacks or []),
        ],
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(root),
        log_every_n_steps=1,
    )
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
        # Lightning 2.6 builds torch's deprecated LeafSpec once per batch; nothing a user can act on
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated.*")
        val_data = GraphLabelDataset([cache.graphs[i] for i in val_idx], dataset.labels[val_idx])
        trainer.fit(
            module, loader(train_data, True, batch_size), loader(val_data, False, max(batch_size, 64))
        )
    wall = time.perf_counter() - started

    model = module.model.cpu()
    for name, param in model.named_parameters():  # as before: matgl's fixed RBF centers stay fixed
        param.requires_grad_(trainable[name])
    val_graphs = [cache.graphs[i] for i in val_idx]
    final = {
        k.removeprefix("val_"): v
        for k, v in (module.history[-1] if module.history else {}).items()
        if k.startswith("val_")
    }
    if module.averaged_state is not None:  # "final" weights = the average of the last epochs
        model.load_state_dict(module.averaged_state)
    # the unbiased protocol's predictions, kept beside the kept epoch's for parity plots and ensembles
    final_pred = model.predict_graphs(val_graphs)
    if module.averaged_state is not None:
        final = regression_metrics(dataset.labels[val_idx], final_pred)
    if keep == "best" and module.best_state is not None:
        model.load_state_dict(module.best_state)
        val_pred = model.predict_graphs(val_graphs)
    else:  # the kept weights are the final ones
        val_pred = final_pred
    kept_epoch = module.best_epoch if keep == "best" else epochs - 1
    check_trained(f"{dataset.name} split {split.index}", module.history, val_pred, final_pred, lr)
    train_pred = model.predict_graphs([cache.graphs[i] for i in train_idx])
    metrics: dict[str, Any] = {
        "dataset": dataset.name,
        "split": {
            "index": split.index,
            "seed": split.seed,
            "n_train": len(train_idx),
            "n_validation": len(val_idx),
        },
        "keep": keep,
        "monitor": monitor,
        "best_epoch": kept_epoch,
        "validation": regression_metrics(dataset.labels[val_idx], val_pred),
        "final_validation": final,
        "train": regression_metrics(dataset.labels[train_idx], train_pred),
        "settings": {
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "min_lr_fraction": min_lr_fraction,
            "loss": loss,
            "weight_decay": weight_decay,
            "seed": seed,
            "average_last": average_last,
            "l2_sp": l2_sp,
            "freeze": list(freeze),
            "fidelity": model.state_index,
            "replay": replay_name,
            **_source_of(replay, "replay"),
            "replay_size": len(train_data) - len(train_idx),
            "replay_fidelity": replay_fidelity,
            "descriptors": model.uses_descriptors,
        },
        "wall_time_s": wall,
    }
    model.metadata.update(metadata or {})
    model.metadata.update(
        {
            "dataset": dataset.name,
            **_source_of(dataset, "dataset"),
            "split": metrics["split"],
            "metrics": metrics["validation"],
            "training": metrics["settings"],
            "best_epoch": kept_epoch,
            # elements of the (fine-tuning) training split and of what it replayed: inputs with
            # others are out of domain
            "train_elements": sorted({*dataset.elements(train_idx), *replayed_elements}),
        }
    )
    epoch_predictions = None
    if len(module.val_predictions) == len(module.history) and module.history:
        epoch_predictions = np.stack(module.val_predictions)
    result = FitResult(model, metrics, module.history, Path(out_dir) if out_dir else None, epoch_predictions)
    if out_dir:
        save_fit(result, out_dir, split, dataset, val_idx, val_pred, final_pred)
    return result


class TrainingDivergedError(RuntimeError):
    """The kept weights predict NaN or infinity: the training diverged."""


def check_trained(
    where: str,
    history: Sequence[dict[str, Any]],
    kept: np.ndarray,
    final: np.ndarray,
    lr: float,
) -> None:
    """Fail on a diverged model and warn on a collapsed one, instead of saving either silently.

    A learning rate too high for the loss makes the weights NaN (every later prediction is NaN);
    a MAPE loss on labels far below the scaler's range can push the head's ReLUs dead, after
    which it predicts one constant for every structure; a run stopped while MAPE's pull towards
    small κ still has the head below every label predicts κ ≤ 0.
    """
    first_bad = next((int(row["epoch"]) for row in history if not np.isfinite(row["train_loss"])), None)
    since = f" (the training loss is not finite from epoch {first_bad})" if first_bad is not None else ""
    if not np.all(np.isfinite(kept)):
        raise TrainingDivergedError(
            f"{where}: training diverged, the model predicts NaN{since}; lower the learning rate (lr={lr:g})"
        )
    if not np.all(np.isfinite(final)):
        warnings.warn(
            f"{where}: training diverged after the kept epoch{since}; the final-epoch predictions "
            "are NaN, the kept (best) weights are finite",
            RuntimeWarning,
            stacklevel=3,
        )
    if kept.size > 1 and np.ptp(kept) <= 1e-6 * max(float(np.abs(kept).max()), 1.0):
        warnings.warn(
            f"{where}: every validation structure gets the same prediction ({kept[0]:.4g}): the head "
            "collapsed (dead ReLUs); a lower learning rate or loss='log_l1' avoids it",
            RuntimeWarning,
            stacklevel=3,
        )
    elif np.mean(kept <= 0) >= 0.1:  # one stray tiny-κ structure below zero is not this
        warnings.warn(
            f"{where}: {int(np.sum(kept <= 0))} of {kept.size} validation structures get κ ≤ 0 W/m/K "
            "(unphysical): the head is still below the labels' range; train longer, with a larger "
            "batch or a lower learning rate",
            RuntimeWarning,
            stacklevel=3,
        )


def _source_of(data: LTCDataset | None, prefix: str) -> dict[str, str]:
    """``{prefix}_file``, the file a set was read from (absolute path), and ``{prefix}_label_key``
    when its labels are not ``info["ltc"]``: a model's metadata points at them, so that ``evaluate``
    can tell seen data and a later fine-tuning can replay it (``replay = "start"``)."""
    if data is None or not data.file:
        return {}
    key = {} if data.label_key == "ltc" else {f"{prefix}_label_key": data.label_key}
    return {f"{prefix}_file": data.file, **key}


def replay_indices(n_replay: int, replay_size: int, seed: int, split_index: int) -> np.ndarray:
    """Which structures of a replay set of ``n_replay`` split ``split_index`` replays: all of them for
    ``replay_size`` <= 0, else a seeded choice of that many."""
    n = n_replay if replay_size <= 0 else min(replay_size, n_replay)
    return np.sort(np.random.default_rng(seed + split_index).choice(n_replay, size=n, replace=False))


def _training_data(
    model: LTCModel,
    dataset: LTCDataset,
    cache: Any,
    train_idx: np.ndarray,
    other: LTCDataset | None,
    replay_size: int,
    replay_fidelity: int,
    seed: int,
    split: Split,
) -> tuple[GraphLabelDataset, list[str]]:
    """The split's training structures with the replayed ones, and the replayed ones' elements."""
    graphs = [cache.graphs[i] for i in train_idx]
    labels = dataset.labels[train_idx]
    if other is None:
        return GraphLabelDataset(graphs, labels), []
    if not other.is_labelled:
        raise ValueError(f"replay set {other.name!r} has unlabelled structures")
    pick = replay_indices(len(other), replay_size, seed, split.index)
    n = len(pick)
    # one batch cannot mix graphs with and without descriptors (a hybrid model trained earlier in
    # this process may have described either set): describe both or neither
    other_graphs = other.graph_cache(model.cutoff).graphs
    if model.uses_descriptors or any(
        bool(g) and getattr(g[0], "descriptors", None) is not None for g in (graphs, other_graphs)
    ):
        dataset.graph_cache(model.cutoff, descriptors=True)
        other_graphs = other.graph_cache(model.cutoff, descriptors=True).graphs
    fidelity = np.r_[np.full(len(graphs), model.state_index), np.full(n, replay_fidelity)]
    data = GraphLabelDataset(
        graphs + [other_graphs[i] for i in pick], np.r_[labels, other.labels[pick]], fidelity
    )
    return data, other.elements(pick)


def _freeze(model: LTCModel, prefixes: Sequence[str]) -> None:
    names = [name for name, _ in model.named_parameters()]
    for prefix in prefixes:
        if not any(name.startswith(prefix) for name in names):
            raise ValueError(f"freeze prefix {prefix!r} matches no parameter (e.g. {names[0]!r})")
    for name, param in model.named_parameters():
        if any(name.startswith(prefix) for prefix in prefixes):
            param.requires_grad_(False)


def save_fit(
    result: FitResult,
    out_dir: str | os.PathLike,
    split: Split,
    dataset: LTCDataset,
    val_idx: np.ndarray,
    val_pred: np.ndarray,
    final_pred: np.ndarray | None = None,
) -> None:
    """Model directory, ``metrics.json``, ``curve.csv``, ``split.json`` and ``validation_predictions.csv``.

    ``validation_predictions.csv`` holds the kept weights' predictions (``ltc_pred``) and, when
    given, the final epoch's (``ltc_pred_final``): the two protocols of the benchmark.
    ``validation_epochs.npz`` holds every epoch's (``ids``, ``epoch``, ``ltc_pred``), so another
    choice of epoch (e.g. one common epoch for a split's seed members) can be scored without
    training again.
    """
    if final_pred is None:
        final_pred = val_pred
    folder = Path(out_dir)
    result.model.save(folder / "model")
    (folder / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
    (folder / "split.json").write_text(json.dumps(split.to_dict()))
    write_curve(result.history, folder / "curve.csv")
    if result.epoch_predictions is not None:
        np.savez_compressed(
            folder / EPOCH_PREDICTIONS,
            ids=np.array([dataset.ids[i] for i in val_idx], dtype=str),
            epoch=np.array([row["epoch"] for row in result.history], dtype=np.int64),
            ltc_pred=result.epoch_predictions.astype(np.float32),
        )
    with open(folder / "validation_predictions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "formula", "ltc_true", "ltc_pred", "ltc_pred_final"])
        for i, p, f in zip(val_idx, val_pred, final_pred):
            writer.writerow(
                [
                    dataset.ids[i],
                    reduced_formula(dataset.atoms[i]),
                    f"{dataset.labels[i]:.6g}",
                    f"{p:.6g}",
                    f"{f:.6g}",
                ]
            )


def write_curve(history: list[dict[str, Any]], path: str | os.PathLike) -> None:
    if not history:
        return
    columns = list(dict.fromkeys(k for row in history for k in row))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(history)
