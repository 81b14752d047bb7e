"""An ensemble of DOSTransformers trained with different seeds: the mean of their spectra.

It quacks like one :class:`DOSTransformer` (``cfg``, ``seen_systems``, ``forward``) so the
calculator, the batch API and ``evaluate`` take it unchanged, and saves into one model file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch_geometric.data import Batch

from .dostransformer import DOSTransformer


class DOSEnsemble(nn.Module):
    """Average of several DOSTransformers of one architecture (the mean is taken before the clamp)."""

    def __init__(self, members: Sequence[DOSTransformer]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(members)}")
        first = members[0].cfg.to_dict()
        for i, m in enumerate(members[1:], start=1):
            if m.cfg.to_dict() != first:
                raise ValueError(f"ensemble member {i} has another config than member 0")
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg

    @property
    def seen_systems(self) -> torch.Tensor:
        """Crystal systems any member saw in training."""
        return torch.stack([m.seen_systems for m in self.members]).any(dim=0)

    def forward(self, batch: Batch, energies: torch.Tensor | None = None, raw: bool = False) -> dict[str, torch.Tensor]:
        """Mean of the members' spectra (both branches)."""
        outs = [m(batch, energies=energies, raw=True) for m in self.members]
        mean = {k: torch.stack([o[k] for o in outs]).mean(dim=0) for k in outs[0]}
        return mean if raw else {k: v.clamp_min(0.0) for k, v in mean.items()}
