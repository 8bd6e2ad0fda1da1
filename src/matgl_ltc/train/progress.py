"""One progress bar over epochs with the live validation metrics, instead of one bar per epoch."""

from __future__ import annotations

from typing import Any

import lightning as pl
from tqdm.auto import tqdm


class EpochProgressBar(pl.Callback):
    """A tqdm bar that advances once per epoch and shows train loss, val MAPE and val log10-MAE.

    The epoch's row of ``pl_module.history`` is written in the module's ``on_train_epoch_end``,
    which Lightning calls *after* every callback's, so the bar catches up when the next epoch
    starts and when training ends; reading the row in its own ``on_train_epoch_end`` would show
    each epoch the previous one's metrics.
    """

    def __init__(self, description: str = "training") -> None:
        self.description = description
        self.bar: Any = None
        self.shown = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.bar = tqdm(total=trainer.max_epochs, desc=self.description, unit="epoch", dynamic_ncols=True)
            self.shown = len(getattr(pl_module, "history", []))

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._catch_up(pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._catch_up(pl_module)
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _catch_up(self, pl_module: pl.LightningModule) -> None:
        """Advance over the epochs the module has recorded since the last update."""
        history = getattr(pl_module, "history", [])
        if self.bar is None or len(history) <= self.shown:
            return
        row = history[-1]
        self.bar.set_postfix(
            loss=f"{row.get('train_loss', float('nan')):.3f}",
            val_mape=f"{row.get('val_mape', float('nan')):.3f}",
            val_log10_mae=f"{row.get('val_log10_mae', float('nan')):.3f}",
            best=getattr(pl_module, "best_epoch", -1),
        )
        self.bar.update(len(history) - self.shown)
        self.shown = len(history)
