"""Metrics and loss against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ase_dostransformer.training.metrics import (
    dostransformer_loss,
    mean_spectrum_baseline,
    per_material_rmse,
    r2_per_spectrum,
    spectrum_metrics,
)


def test_spectrum_metrics_by_hand() -> None:
    true = np.array([[0.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    pred = np.array([[0.0, 0.5, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]])
    m = spectrum_metrics(pred, true)
    # material 0: errors (0, .5, 0, 0): mse .0625, mae .125; SS_tot = 4 * .25 = 1 -> r2 = 1 - .25/1 = .75
    # material 1: errors (0, 0, 0, 1): mse .25, mae .25; constant truth, imperfect -> r2 0 (sklearn force_finite)
    assert m["mse"] == pytest.approx((0.0625 + 0.25) / 2)
    assert m["mse_x10"] == pytest.approx(10 * (0.0625 + 0.25) / 2)
    assert m["mae"] == pytest.approx((0.125 + 0.25) / 2)
    assert m["r2"] == pytest.approx((0.75 + 0.0) / 2)
    assert m["n"] == 2


def test_r2_matches_sklearn_definition() -> None:
    rng = np.random.default_rng(0)
    true = rng.random((5, 51))
    pred = true + 0.1 * rng.standard_normal((5, 51))
    expected = [1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum() for t, p in zip(true, pred, strict=True)]
    np.testing.assert_allclose(r2_per_spectrum(pred, true), expected)
    assert r2_per_spectrum(np.ones((1, 3)), np.ones((1, 3)))[0] == 1.0


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="equal"):
        spectrum_metrics(np.zeros((2, 51)), np.zeros((2, 50)))


def test_loss_is_rmse_global_plus_beta_rmse_system() -> None:
    y = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    out = {"global": torch.tensor([[1.0, 1.0], [1.0, 1.0]]), "system": torch.tensor([[0.0, 2.0], [1.0, 1.0]])}
    # global: per-material RMSE (1, 0) -> 0.5; system: (sqrt(2), 0) -> sqrt(2)/2
    assert per_material_rmse(out["global"], y).item() == pytest.approx(0.5, abs=1e-6)
    assert dostransformer_loss(out, y, beta=2.0).item() == pytest.approx(0.5 + 2 * np.sqrt(2) / 2, abs=1e-5)


def test_mean_baseline() -> None:
    base = mean_spectrum_baseline(np.array([[0.0, 1.0], [1.0, 1.0]]), 3)
    assert base.shape == (3, 2)
    assert base[2].tolist() == [0.5, 1.0]
