"""The Lightning module that trains an LTCModel: loss on the W m⁻¹ K⁻¹ scale, cosine schedule, best epoch kept."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import lightning as pl
import numpy as np
import torch
from torch.utils.data import Dataset
from torch_geometric.data import Batch, Data

from ..analysis.metrics import METRIC_NAMES, regression_metrics
from ..data.graphs import collate_graphs
from ..model.ltc_model import LTCModel

LOSSES = ("mape", "log_mse", "log_l1")
#: log10(κ̂ + 1) below which the MAPE loss continues κ̂ linearly (κ̂ = -0.9 W/m/K)
_LOG10_JOIN = -1.0


class GraphLabelDataset(Dataset):
    """Prepared graphs with their κ_L labels (and optionally each one's data fidelity)."""

    def __init__(self, graphs: Sequence[Data], kappa: np.ndarray, fidelity: np.ndarray | None = None) -> None:
        self.graphs = list(graphs)
        self.kappa = torch.as_tensor(np.asarray(kappa, dtype=np.float32))
        self.fidelity = None if fidelity is None else torch.as_tensor(np.asarray(fidelity, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, index: int) -> tuple:
        if self.fidelity is None:
            return self.graphs[index], self.kappa[index]
        return self.graphs[index], self.kappa[index], self.fidelity[index]


def collate_labelled(items: list[tuple]) -> tuple[Batch, torch.Tensor]:
    """One batch graph and its labels; a per-graph ``fidelity`` rides on the batch (the cached graphs are shared, never modified)."""
    graphs, kappa, *fidelity = zip(*items)
    batch = collate_graphs(graphs)
    if fidelity:
        batch.fidelity = torch.stack(fidelity[0])
    return batch, torch.stack(kappa)


class LTCLightningModule(pl.LightningModule):
    """Adam + cosine annealing to ``min_lr_fraction`` × lr; keeps the weights of the best validation epoch.

    Parameters
    ----------
    model
        The model to train (its target transform must already be fitted on the training split).
    loss
        ``mape`` (the paper's: mean |κ̂ - κ| / κ on the original scale), ``log_mse`` or
        ``log_l1`` (on the standardized log target).
    monitor
        Validation metric whose minimum selects the kept epoch (``mape``, or ``log10_mae``...).
        For ``spearman``/``r2`` the maximum is used.
    average_last
        Keep a running mean of the weights over the last N epochs (``averaged_state``).
    l2_sp
        Strength α of the L2-SP penalty α/2 · Σ‖w − w₀‖² towards the weights w₀ the stage
        starts from (Li et al., ICML 2018): fine-tuning may move where the data asks, but is
        pulled back towards what the earlier stage learned, instead of towards zero as weight
        decay is. Logged ``train_loss`` is the data loss alone.
    """

    def __init__(
        self,
        model: LTCModel,
        lr: float = 1e-3,
        epochs: int = 300,
        min_lr_fraction: float = 0.01,
        loss: str = "mape",
        weight_decay: float = 0.0,
        monitor: str = "mape",
        average_last: int = 0,
        l2_sp: float = 0.0,
    ) -> None:
        super().__init__()
        if l2_sp < 0:
            raise ValueError(f"l2_sp must be non-negative, not {l2_sp}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, not {loss!r}")
        if monitor not in METRIC_NAMES:
            raise ValueError(f"monitor must be one of {METRIC_NAMES}, not {monitor!r}")
        self.model = model
        self.lr, self.epochs, self.min_lr_fraction = lr, epochs, min_lr_fraction
        self.loss_name, self.weight_decay, self.monitor = loss, weight_decay, monitor
        self.history: list[dict[str, Any]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best_epoch: int = -1
        self.best_score = -math.inf if monitor in ("spearman", "r2") else math.inf
        self._train_loss_sum = 0.0
        self._train_count = 0
        self._val_pred: list[torch.Tensor] = []
        self._val_true: list[torch.Tensor] = []
        self._val_metrics: dict[str, float] = {}
        #: κ̂ of every validation structure at every epoch (in validation order), so other choices
        #: of epoch can be scored after training (``validation_epochs.npz``)
        self.val_predictions: list[np.ndarray] = []
        self.average_last = int(average_last)
        self.averaged_state: dict[str, torch.Tensor] | None = None
        self._n_averaged = 0
        self.l2_sp = float(l2_sp)
        self._anchor: dict[str, torch.Tensor] = {}

    def on_fit_start(self) -> None:
        if self.l2_sp:  # the starting weights, on the device training runs on
            self._anchor = {
                n: p.detach().clone() for n, p in self.model.named_parameters() if p.requires_grad
            }

    def anchor_penalty(self) -> torch.Tensor:
        """α/2 · Σ‖w − w₀‖² over the trainable parameters (0 without ``l2_sp``)."""
        if not self._anchor:
            return torch.zeros((), device=self.device)
        params = dict(self.model.named_parameters())
        squared = sum(torch.sum((params[n] - w0) ** 2) for n, w0 in self._anchor.items())
        return 0.5 * self.l2_sp * squared

    def loss(self, z: torch.Tensor, kappa: torch.Tensor) -> torch.Tensor:
        if self.loss_name == "mape":
            return torch.mean(torch.abs(self.kappa_for_loss(z) - kappa) / kappa)
        target = (torch.log10(kappa + 1.0) - self.model.target_mean) / self.model.target_std
        if self.loss_name == "log_mse":
            return torch.mean((z - target) ** 2)
        return torch.mean(torch.abs(z - target))

    def kappa_for_loss(self, z: torch.Tensor) -> torch.Tensor:
        """κ̂ as the MAPE loss sees it: exact down to -0.9 W/m/K, continued linearly in z below.

        The exact inverse flattens as κ̂ → -1 (its slope is ∝ κ̂ + 1), so a head that MAPE's
        pull towards small κ drives far into negative predictions gets no gradient back and
        stays there: every prediction ≈ -1 W/m/K, MAPE ≈ 1 (at batch 8 this happened from the
        first epoch). Below κ̂ = -0.9 the continuation keeps the slope it has there, so the loss
        pushes the head back out. Above it nothing changes: a run that never goes that low
        trains exactly as with the plain inverse.
        """
        kappa = self.model.to_kappa(z)
        mean, std = self.model.target_mean, self.model.target_std
        z_join = (_LOG10_JOIN - mean) / std  # where κ̂ + 1 = 10**_LOG10_JOIN
        slope = math.log(10.0) * std * 10.0**_LOG10_JOIN  # dκ̂/dz there
        return torch.where(z >= z_join, kappa, 10.0**_LOG10_JOIN - 1.0 + slope * (z - z_join))

    def training_step(self, batch: tuple[Batch, torch.Tensor], batch_idx: int) -> torch.Tensor:
        graphs, kappa = batch
        loss = self.loss(self.model(graphs), kappa)
        self._train_loss_sum += float(loss.detach()) * len(kappa)
        self._train_count += len(kappa)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(kappa), on_step=False, on_epoch=True)
        return loss + self.anchor_penalty() if self.l2_sp else loss

    def validation_step(self, batch: tuple[Batch, torch.Tensor], batch_idx: int) -> None:
        graphs, kappa = batch
        self._val_pred.append(self.model.to_kappa(self.model(graphs)).detach())
        self._val_true.append(kappa.detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val_pred:
            return
        pred, true = torch.cat(self._val_pred), torch.cat(self._val_true)
        self._val_pred, self._val_true = [], []
        if self.trainer.world_size > 1:  # every rank scores the whole validation set
            pred = self.all_gather(pred).reshape(-1)
            true = self.all_gather(true).reshape(-1)
        self._val_metrics = regression_metrics(true.double().cpu().numpy(), pred.double().cpu().numpy())
        if self.trainer.world_size == 1:  # gathered ranks come back in the sampler's order
            self.val_predictions.append(pred.float().cpu().numpy())
        self.log("val_mape", self._val_metrics["mape"], prog_bar=True, sync_dist=False)
        self.log("val_log10_mae", self._val_metrics["log10_mae"], prog_bar=True, sync_dist=False)

    def on_train_epoch_end(self) -> None:
        epoch = int(self.current_epoch)
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": self._train_loss_sum / max(self._train_count, 1),
            "lr": float(self.trainer.optimizers[0].param_groups[0]["lr"]),
        }
        row.update({f"val_{k}": v for k, v in self._val_metrics.items()})
        self.history.append(row)
        self._train_loss_sum, self._train_count = 0.0, 0
        if self.average_last and epoch >= self.epochs - self.average_last:
            self._accumulate_average()
        score = self._val_metrics.get(self.monitor)
        if score is None or not math.isfinite(score):
            return
        better = score > self.best_score if self.monitor in ("spearman", "r2") else score < self.best_score
        if better:
            self.best_score, self.best_epoch = score, epoch
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})

    def _accumulate_average(self) -> None:
        state = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
        self._n_averaged += 1
        if self.averaged_state is None:
            self.averaged_state = state
            return
        for key, value in state.items():
            if value.is_floating_point():
                self.averaged_state[key] += (value - self.averaged_state[key]) / self._n_averaged

    def configure_optimizers(self) -> Any:
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(trainable, lr=self.lr, weight_decay=self.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(self.epochs, 1), eta_min=self.lr * self.min_lr_fraction
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
