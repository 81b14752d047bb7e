"""matgl's TensorNet as a crystal encoder (optional: needs ``pip install ase-dostransformer[matgl]``).

TensorNet reads positions and periodic shifts; our graphs store each edge's vector instead, which
is exactly what it needs: with all positions at the origin, matgl's ``pos[dst] + shift - pos[src]``
is the shift itself. Self loops (zero vectors) are dropped, as TensorNet divides by distances.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import TYPE_CHECKING

import torch
from ase.data import chemical_symbols
from torch import nn
from torch_geometric.data import Batch

if TYPE_CHECKING:  # pragma: no cover
    from .config import ModelConfig


class TensorNetEmbedder(nn.Module):
    """Atom embeddings from an O(3)-equivariant TensorNet (matgl), projected to ``hidden``."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        try:
            from matgl.models import TensorNet
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("embedder='tensornet' needs matgl: pip install 'ase-dostransformer[matgl]'") from exc
        cutoff = float(cfg.recipe.get("cutoff", 4.0)) if cfg.recipe else 4.0
        units = max(32, cfg.hidden // 2)
        self.net = TensorNet(
            element_types=tuple(chemical_symbols[1:119]),
            units=units,
            nblocks=cfg.layers,
            cutoff=cutoff,
            is_intensive=False,
        )
        self.project = nn.Linear(units, cfg.hidden)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Per-atom TensorNet features ``(N, hidden)`` from the batch's edge vectors (no positions needed)."""
        keep = batch.edge_vec.norm(dim=1) > 1e-6
        src, dst = batch.edge_index[:, keep]
        g = SimpleNamespace(
            node_type=batch.z.long() - 1,
            pos=torch.zeros(batch.num_nodes, 3, device=batch.z.device, dtype=batch.edge_vec.dtype),
            edge_index=torch.stack([src, dst]),
            # our vector points centre (dst) -> neighbour image (src); matgl wants src -> dst
            pbc_offshift=-batch.edge_vec[keep],
            batch=batch.batch,
            num_graphs=batch.num_graphs,
        )
        return self.project(self.net.forward_features(g)["readout"])
