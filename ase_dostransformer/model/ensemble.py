"""An ensemble of DOSTransformers trained with different seeds: the mean of their spectra.

It quacks like one :class:`DOSTransformer` (``cfg``, ``seen_systems``, ``forward``) so the
calculator, the batch API and ``evaluate`` take it unchanged, and saves into one model file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch_geometric.data import Batch

from ..errors import OptionError
from .config import ModelConfig
from .domain import DescribedModel
from .dostransformer import DOSTransformer


def _check_compatible(cfg: ModelConfig, ref: ModelConfig, i: int) -> None:
    """Members must predict the same thing on the same grid from graphs of one recipe family."""
    if cfg.task != ref.task or cfg.grid != ref.grid:
        raise OptionError(f"ensemble member {i} has another config than the others (task or grid differ)")
    a, b = dict(cfg.recipe), dict(ref.recipe)
    a.pop("element_features", None)
    b.pop("element_features", None)
    if a != b or cfg.edge_dim != ref.edge_dim or cfg.node_dim > ref.node_dim:
        raise OptionError(f"ensemble member {i} has another config than the others (graph recipe differs)")


class DOSEnsemble(DescribedModel, nn.Module):
    """Average of several DOSTransformers (the mean is taken before the clamp).

    Members may differ in architecture and in whether their phonon nodes carry element
    descriptors (those columns follow the seed's one-hot, so the others read a prefix). Its
    ``graph_recipe`` is the richest member's; ``training_domain`` comes from the ensemble file's meta.
    """

    def __init__(self, members: Sequence[DOSTransformer]) -> None:
        super().__init__()
        self._init_description()
        if len(members) < 2:
            raise OptionError(f"an ensemble needs at least 2 members, got {len(members)}")
        richest = max(members, key=lambda m: m.cfg.node_dim)
        for i, m in enumerate(members):
            _check_compatible(m.cfg, richest.cfg, i)
        self.members = nn.ModuleList(members)
        # graphs are built with the richest recipe; members of the seed recipe read its first columns
        self.cfg = richest.cfg

    @property
    def seen_systems(self) -> torch.Tensor:
        """Crystal systems any member saw in training."""
        return torch.stack([m.seen_systems for m in self.members]).any(dim=0)

    def forward(
        self,
        batch: Batch,
        energies: torch.Tensor | None = None,
        raw: bool = False,
        branches: tuple[str, ...] = ("global", "system"),
    ) -> dict[str, torch.Tensor]:
        """Mean of the members' spectra (the branches asked for)."""
        outs = [m(batch, energies=energies, raw=True, branches=branches) for m in self.members]
        mean = {k: torch.stack([o[k] for o in outs]).mean(dim=0) for k in outs[0]}
        return mean if raw else {k: v.clamp_min(0.0) for k, v in mean.items()}
