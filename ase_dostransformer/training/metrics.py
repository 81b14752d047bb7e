"""Per-spectrum metrics (MSE, MAE, R^2) computed for each material, then averaged over materials."""

from __future__ import annotations

import numpy as np
import torch

from ..errors import OptionError


def r2_per_spectrum(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Sklearn's ``r2_score(true_i, pred_i)`` for each row (``force_finite`` semantics).

    A constant true spectrum scores 1.0 when predicted exactly and 0.0 otherwise.
    """
    ss_res = ((true - pred) ** 2).sum(axis=1)
    ss_tot = ((true - true.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    r2 = np.empty(len(true))
    ok = ss_tot > 0
    r2[ok] = 1.0 - ss_res[ok] / ss_tot[ok]
    r2[~ok] = np.where(ss_res[~ok] == 0, 1.0, 0.0)
    return r2


def spectrum_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Mean over materials of the per-spectrum MSE (also x10, as the paper reports), MAE and R^2."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 2:
        raise OptionError(f"pred and true must be equal (n, bins) arrays, got {pred.shape} and {true.shape}")
    mse = ((pred - true) ** 2).mean(axis=1)
    return {
        "mse": float(mse.mean()),
        "mse_x10": float(10 * mse.mean()),
        "mae": float(np.abs(pred - true).mean(axis=1).mean()),
        "r2": float(r2_per_spectrum(pred, true).mean()),
        "n": int(len(true)),
    }


def per_material_rmse(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Mean over materials of the RMSE across bins (the original's loss term)."""
    return torch.sqrt(((pred - true) ** 2).mean(dim=1) + 1e-12).mean()


def dostransformer_loss(out: dict[str, torch.Tensor], y: torch.Tensor, beta: float) -> torch.Tensor:
    """``RMSE_global + beta * RMSE_system`` (the training loss of both branches)."""
    return per_material_rmse(out["global"], y) + beta * per_material_rmse(out["system"], y)


def mean_spectrum_baseline(train_y: np.ndarray, n: int) -> np.ndarray:
    """The trivial model: the mean training DOS, predicted for ``n`` materials."""
    return np.repeat(np.asarray(train_y, dtype=np.float64).mean(axis=0, keepdims=True), n, axis=0)
