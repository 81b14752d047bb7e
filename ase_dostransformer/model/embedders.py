"""Crystal encoders: graph -> atom embeddings H (N x hidden), and :data:`EMBEDDERS`, their registry by name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from ..errors import OptionError, UnknownKindError
from ..graphs.foundation import FEATURE_DIM
from .masses import relative_log_mass
from .matgl_embedder import TensorNetEmbedder

if TYPE_CHECKING:  # pragma: no cover
    from .config import ModelConfig


def node_scale_vector(cfg: ModelConfig) -> torch.Tensor:
    """Per-column input scale: ``cfg.node_scale`` on the 118 one-hot columns, 1 on any that follow."""
    scale = torch.ones(cfg.node_dim)
    scale[: min(118, cfg.node_dim)] = cfg.node_scale
    return scale


def mlp(d_in: int, d_out: int, d_hidden: int | None = None) -> nn.Sequential:
    """Linear-PReLU-Linear."""
    d_hidden = d_hidden or d_out
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.PReLU(), nn.Linear(d_hidden, d_out))


class GraphNetworkBlock(nn.Module):
    """One processor block: residual edge update, then residual node update."""

    def __init__(self, d: int, aggregation: str) -> None:
        super().__init__()
        self.edge = nn.Sequential(mlp(3 * d, d), nn.LayerNorm(d))
        self.node = nn.Sequential(mlp(2 * d, d), nn.LayerNorm(d))
        self.aggregation = aggregation

    def forward(
        self, h: torch.Tensor, e: torch.Tensor, edge_index: torch.Tensor, weight: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Updated ``(node, edge)`` features: edges first, then nodes from their aggregated incoming edges.

        ``weight`` (per edge, the phonon recipe's ``edge_weight``): a weighted mean (or sum) of the
        incoming edges, so that an edge tapering out near the cutoff fades out of it continuously.
        """
        src, dst = edge_index
        e = e + self.edge_update(h, e, src, dst)
        if weight is None:
            agg = scatter(e, dst, dim=0, dim_size=h.shape[0], reduce=self.aggregation)
        else:
            w = weight.to(e.dtype)
            agg = scatter(e * w[:, None], dst, dim=0, dim_size=h.shape[0], reduce="sum")
            if self.aggregation == "mean":
                total = scatter(w, dst, dim=0, dim_size=h.shape[0], reduce="sum")
                agg = agg / total.clamp_min(torch.finfo(w.dtype).tiny)[:, None]
        h = h + self.node(torch.cat([h, agg], dim=-1))
        return h, e

    def edge_update(self, h: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
        """``self.edge(cat(h[src], h[dst], e))``, computed without the (E, 3d) concatenation.

        The first linear layer splits as ``W_s h[src] + W_d h[dst] + W_e e + b``: projecting the N atoms
        before gathering them onto the E (about 16 N) edges does a third of its work (exact, same weights).
        """
        (first, act, second), norm = self.edge
        d = h.shape[-1]
        w = first.weight
        pre = F.linear(h, w[:, :d])[src] + F.linear(h, w[:, d : 2 * d])[dst] + F.linear(e, w[:, 2 * d :], first.bias)
        return norm(second(act(pre)))


class GraphNetworkEmbedder(nn.Module):
    """The seed's Battaglia-style graph network: edge and node MLP updates with residuals."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.register_buffer("node_scale", node_scale_vector(cfg), persistent=False)
        self.node_in = mlp(cfg.node_dim, cfg.hidden)
        self.edge_in = mlp(cfg.edge_dim, cfg.hidden)
        self.blocks = nn.ModuleList(GraphNetworkBlock(cfg.hidden, cfg.aggregation) for _ in range(cfg.layers))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Per-atom embeddings ``(N, hidden)`` after the graph-network blocks."""
        # graphs may carry more node columns than this model uses (a richer recipe in an ensemble)
        h = self.node_in(batch.x[:, : self.node_scale.numel()] * self.node_scale)
        e = self.edge_in(batch.edge_attr)
        weight = getattr(batch, "edge_weight", None)
        for block in self.blocks:
            h, e = block(h, e, batch.edge_index, weight)
        return h


class MLPEmbedder(nn.Module):
    """Atoms embedded independently of their neighbours (the seed's structure-blind baseline)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.register_buffer("node_scale", node_scale_vector(cfg), persistent=False)
        layers: list[nn.Module] = [mlp(cfg.node_dim, cfg.hidden)]
        for _ in range(cfg.layers - 1):
            layers += [nn.PReLU(), nn.Linear(cfg.hidden, cfg.hidden)]
        self.net = nn.Sequential(*layers)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Per-atom embeddings ``(N, hidden)`` from each atom's own features."""
        return self.net(batch.x[:, : self.node_scale.numel()] * self.node_scale)


#: Crystal encoders by the name a model config stores in ``embedder``; each is built from the config.
#: ``tensornet`` imports matgl only when one is built.
# --- the frozen universal potential's per-atom features (graphs/foundation.py) as the encoder's input


def _foundation_input(batch: Batch) -> torch.Tensor:
    feats = getattr(batch, "foundation", None)
    if feats is None:
        raise OptionError(
            "this embedder reads foundation features: make the graphs with the graph recipe's foundation=True "
            "(phonon or electron)"
        )
    return feats.detach()  # frozen: no gradient ever flows back towards the potential


class FoundationEmbedder(nn.Module):
    """Atom embeddings from the frozen foundation features (and the recipe's node features) by a small MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.register_buffer("node_scale", node_scale_vector(cfg), persistent=False)
        self.norm = nn.LayerNorm(FEATURE_DIM)
        # with mass scaling the node input is each atom's log mass ratio alone (model/masses.py)
        self.mass_scaling = cfg.mass_scaling
        self.node_in = mlp(FEATURE_DIM + (1 if self.mass_scaling else cfg.node_dim), cfg.hidden, 2 * cfg.hidden)

    def atoms(self, batch: Batch) -> torch.Tensor:
        """``(N, hidden)``: the MLP of each atom's normalised foundation features and its node input.

        The node input is the recipe's scaled node features, or with ``cfg.mass_scaling`` only
        ``log(m_i / m_h)`` (:func:`~ase_dostransformer.model.masses.relative_log_mass`).
        """
        if self.mass_scaling:
            x = relative_log_mass(batch).to(batch.x.dtype)
        else:
            x = batch.x[:, : self.node_scale.numel()] * self.node_scale
        return self.node_in(torch.cat([self.norm(_foundation_input(batch)), x], dim=-1))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Per-atom embeddings ``(N, hidden)``."""
        return self.atoms(batch)


class FoundationGraphNetworkEmbedder(FoundationEmbedder):
    """:class:`FoundationEmbedder` followed by ``cfg.layers`` graph-network blocks over the recipe's edges."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self.edge_in = mlp(cfg.edge_dim, cfg.hidden)
        self.blocks = nn.ModuleList(GraphNetworkBlock(cfg.hidden, cfg.aggregation) for _ in range(cfg.layers))

    def forward(self, batch: Batch) -> torch.Tensor:
        """Per-atom embeddings ``(N, hidden)`` after the graph-network blocks."""
        h = self.atoms(batch)
        e = self.edge_in(batch.edge_attr)
        weight = getattr(batch, "edge_weight", None)
        for block in self.blocks:
            h, e = block(h, e, batch.edge_index, weight)
        return h


EMBEDDERS: dict[str, type[nn.Module]] = {
    "graph_network": GraphNetworkEmbedder,
    "mlp": MLPEmbedder,
    "tensornet": TensorNetEmbedder,
    # the frozen universal potential's per-atom features (graphs of a phonon or electron recipe with foundation=True)
    "foundation": FoundationEmbedder,
    "foundation_gn": FoundationGraphNetworkEmbedder,
}


def build_embedder(cfg: ModelConfig) -> nn.Module:
    """The embedder named by ``cfg.embedder`` (:class:`UnknownKindError` for a name not in :data:`EMBEDDERS`)."""
    try:
        cls = EMBEDDERS[cfg.embedder]
    except KeyError:
        raise UnknownKindError(f"embedder must be one of {tuple(EMBEDDERS)}, got {cfg.embedder!r}") from None
    return cls(cfg)
