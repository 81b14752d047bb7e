"""The Lightning module: loss, optimiser, validation metrics of a DOSTransformer."""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from ..errors import NonFiniteLossError
from ..model import DOSTransformer, ModelConfig
from .metrics import dostransformer_loss, spectrum_metrics


class DOSTransformerModule(L.LightningModule):
    """Trains ``DOSTransformer`` with ``RMSE_global + beta * RMSE_system`` under AdamW.

    Validation reports the paper's per-spectrum metrics of the system branch
    (``val_mse``, ``val_mae``, ``val_r2``) and selects models on ``val_mse``.
    """

    def __init__(
        self,
        config: dict[str, Any],
        lr: float = 1e-4,
        weight_decay: float = 1e-2,
        beta: float = 1.0,
        scheduler: str = "cosine",
        warmup_epochs: int = 5,
        max_epochs: int = 500,
        prompt_only: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = DOSTransformer(ModelConfig.from_dict(config))
        if prompt_only:
            keep = {id(p) for p in self.model.prompt_parameters()}
            for p in self.model.parameters():
                p.requires_grad_(id(p) in keep)
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """The model's clamped spectra of both branches."""
        return self.model(batch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """The loss of one batch; a non-finite loss raises :class:`NonFiniteLossError`."""
        out = self.model(batch, raw=True)
        loss = dostransformer_loss(out, batch.y, self.hparams.beta)
        if not torch.isfinite(loss):  # one sync per step: cheap next to the model, unlike detect_anomaly
            raise NonFiniteLossError(
                f"the training loss is {float(loss.detach())} at epoch {self.current_epoch}, step {self.global_step} "
                f"(batch {batch_idx}): lower --lr, or check the targets; training stopped"
            )
        self.log("train_loss", loss, batch_size=batch.num_graphs, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Keep the batch's system-branch predictions and targets for the epoch's metrics."""
        out = self.model(batch, branches=("system",))
        self._val.append((out["system"].detach().float().cpu(), batch.y.detach().float().cpu()))

    def on_validation_epoch_end(self) -> None:
        """Log ``val_mse``, ``val_mae`` and ``val_r2`` over the whole validation set (gathered from every rank)."""
        if not self._val:
            return
        pred = torch.cat([p for p, _ in self._val])
        true = torch.cat([t for _, t in self._val])
        self._val.clear()
        if self.trainer.world_size > 1:  # every rank sees its shard: gather all of them
            pred = self.all_gather(pred.to(self.device)).reshape(-1, pred.shape[-1]).cpu()
            true = self.all_gather(true.to(self.device)).reshape(-1, true.shape[-1]).cpu()
        m = spectrum_metrics(pred.numpy(), true.numpy())
        for k in ("mse", "mae", "r2"):
            self.log(f"val_{k}", m[k], prog_bar=k != "mae", rank_zero_only=False)

    def configure_optimizers(self) -> Any:
        """AdamW on the trainable parameters, with the configured learning-rate schedule."""
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "none":
            return opt
        warm, total = self.hparams.warmup_epochs, max(self.hparams.max_epochs, 1)

        def factor(epoch: int) -> float:
            if epoch < warm:
                return (epoch + 1) / (warm + 1)
            progress = (epoch - warm) / max(total - warm, 1)
            return float(0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
