"""Predict a list of graphs with a model and score the result against the mean baseline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch_geometric.data import Data

from ..errors import OptionError
from ..inference import predict_graphs
from ..kinds import get_kind
from ..model import DOSTransformer
from ..spectra import resample_max_normalised
from .metrics import mean_spectrum_baseline, spectrum_metrics


def evaluate_split(
    model: DOSTransformer,
    graphs: Sequence[Data],
    split: dict[str, np.ndarray],
    parts: Sequence[str] = ("valid", "test"),
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    predicted: Mapping[str, np.ndarray] | None = None,
) -> dict[str, dict]:
    """Metrics of the model and of the mean-training-DOS baseline on each part of a split.

    Parts that are empty or absent (a split file may leave ``test`` out) have no entry in the report.
    ``predicted``: a part's spectra when the caller already has them, exactly as
    :func:`~ase_dostransformer.inference.predict_graphs` returns them (``normalise=False``); that part
    is not predicted again.
    """
    predicted = predicted or {}
    # graphs without a DFT label (teacher-only crystals of a physical model) have no y to score or average
    labelled = [i for i in split["train"] if bool(getattr(graphs[i], "has_dft", True))]
    train_y = np.stack([graphs[i].y.numpy()[0] for i in labelled])
    report: dict[str, dict] = {}
    for part in parts:
        idx = split.get(part, ())
        if not len(idx):
            continue
        true = np.stack([graphs[i].y.numpy()[0] for i in idx])
        if part in predicted:
            pred = np.asarray(predicted[part], dtype=np.float64)
            if pred.shape[0] != len(idx):
                raise OptionError(f"{pred.shape[0]} predicted spectra for the {len(idx)} graphs of part {part!r}")
        else:
            pred = predict_graphs(model, [graphs[i] for i in idx], batch_size, device, normalise=False)
        if pred.shape[-1] != true.shape[-1]:  # a model on its own grid: scored as the exported file, re-gridded
            pred = resample_max_normalised(pred, model.cfg.grid, get_kind(model.cfg.task).grid)
        report[part] = {
            "model": spectrum_metrics(pred, true),
            "mean_baseline": spectrum_metrics(mean_spectrum_baseline(train_y, len(idx)), true),
        }
    return report


def format_report(report: dict[str, dict]) -> str:
    """A small text table: MSE x10 / MAE / R^2 per part, model and baseline."""
    lines = [f"{'split':<8}{'model':<15}{'n':>5}{'MSE x10':>10}{'MAE':>9}{'R^2':>9}"]
    for part, rows in report.items():
        for who, m in rows.items():
            lines.append(f"{part:<8}{who:<15}{m['n']:>5}{m['mse_x10']:>10.4f}{m['mae']:>9.4f}{m['r2']:>9.4f}")
    return "\n".join(lines)
