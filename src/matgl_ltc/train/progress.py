"""One progress bar over epochs with the live validation metrics, instead of one bar per epoch."""

from __future__ import annotations

from typing import Any

import lightning as pl
from tqdm.auto import tqdm


class EpochProgressBar(pl.Callback):
    """A tqdm bar that advances once per epoch and shows train loss, val MAPE and val log10-MAE."""

    def __init__(self, description: str = "training") -> None:
        self.description = description
        self.bar: Any = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.is_global_zero:
            self.bar = tqdm(total=trainer.max_epochs, desc=self.description, unit="epoch", dynamic_ncols=True)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is None:
            return
        row = getattr(pl_module, "history", [{}])[-1] if getattr(pl_module, "history", None) else {}
        self.bar.set_postfix(
            loss=f"{row.get('train_loss', float('nan')):.3f}",
            val_mape=f"{row.get('val_mape', float('nan')):.3f}",
            val_log10_mae=f"{row.get('val_log10_mae', float('nan')):.3f}",
            best=getattr(pl_module, "best_epoch", -1),
        )
        self.bar.update(1)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
