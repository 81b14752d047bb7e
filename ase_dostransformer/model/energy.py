"""Energy tokens: one d-vector per energy the model is asked about."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import OptionError
from .config import ModelConfig


class EnergyTable(nn.Module):
    """The seed's learnable table: one vector per bin of the training grid (tied to that grid)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(cfg.grid.npoints, cfg.hidden) * 0.02)

    def forward(self, energies: torch.Tensor | None) -> torch.Tensor:
        """The table ``(L, hidden)``; ``energies`` may only be ``None`` or of the training grid's length."""
        if energies is not None and energies.shape[-1] != self.table.shape[0]:
            raise OptionError(
                "this model encodes energies with a per-bin table and can only predict on its "
                f"training grid of {self.table.shape[0]} points; train with energy_encoding='value' "
                "to query other grids"
            )
        return self.table


class EnergyValueEncoder(nn.Module):
    """Tokens computed from the energy itself: Fourier features of its position in the window.

    A model with this encoder can be queried at any energy inside (or near) its training window.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        k = torch.arange(1, cfg.fourier_features + 1, dtype=torch.float32)
        self.register_buffer("freqs", math.pi * k, persistent=False)
        self.register_buffer("default_energies", torch.linspace(0.0, 1.0, cfg.grid.npoints), persistent=False)
        self.net = nn.Sequential(
            nn.Linear(2 * cfg.fourier_features + 1, cfg.hidden),
            nn.GELU(),
            nn.Linear(cfg.hidden, cfg.hidden),
        )

    def forward(self, energies: torch.Tensor | None) -> torch.Tensor:
        """``energies``: positions in the window, 0 at its start and 1 at its end (L,)."""
        t = self.default_energies if energies is None else energies.to(self.default_energies)
        angles = t[:, None] * self.freqs
        return self.net(torch.cat([t[:, None], torch.sin(angles), torch.cos(angles)], dim=-1))


def build_energy_encoder(cfg: ModelConfig) -> nn.Module:
    """The encoder named by ``cfg.energy_encoding``."""
    return EnergyTable(cfg) if cfg.energy_encoding == "table" else EnergyValueEncoder(cfg)
