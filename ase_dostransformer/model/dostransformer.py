"""DOSTransformer: energy tokens attend to the atoms of a crystal, guided by crystal-system prompts."""

from __future__ import annotations

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter, to_dense_batch

from ..errors import OptionError
from .attention import AttentionStack
from .config import ModelConfig
from .domain import DescribedModel
from .embedders import build_embedder
from .energy import build_energy_encoder
from .gap import GapHead


def max_atoms(batch: Batch) -> int | None:
    """Largest crystal in a batch, read from PyG's CPU-side slice table (no device sync)."""
    slices = getattr(batch, "_slice_dict", {}).get("x")
    if slices is None or len(slices) < 2:
        return None
    return int((slices[1:] - slices[:-1]).max())


class DOSTransformer(DescribedModel, nn.Module):
    """Energy tokens attending to atom embeddings, with learned multi-head attention, padding masks and batching.

    ``forward`` returns both branches' spectra ``{"global": (B, L), "system": (B, L)}``;
    predictions use the system (prompt) branch and are clamped to be non-negative. The typed
    ``kind``, ``graph_recipe``, ``training_domain`` and ``source`` come from :class:`DescribedModel`.

    With ``cfg.gap_head`` (electron models) ``gap_head`` is a :class:`~.gap.GapHead` on the pooled
    material vector; :meth:`spectra_and_gap` gives the spectra and its raw ``(B, 3)`` outputs from one
    pass. Without it ``gap_head`` is None and the model has exactly the weights it always had.
    """

    gap_head: GapHead | None

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self._init_description()
        self.cfg = cfg
        d = cfg.hidden
        self.embedder = build_embedder(cfg)
        self.material = nn.Linear(d + cfg.global_dim, d)
        self.energy = build_energy_encoder(cfg)
        self.cross1 = AttentionStack(cfg.transformer, d, cfg.heads, cfg.attn_drop, cfg.dropout, True, cfg.ff_mult)
        self.prompts = nn.Parameter(torch.randn(cfg.num_systems, d // 2) * 0.02)
        self.register_buffer("seen_systems", torch.ones(cfg.num_systems, dtype=torch.bool))
        self.fuse_global = nn.Linear(2 * d, d)
        self.fuse_system = nn.Linear(2 * d + d // 2, d)
        self.self_attn = AttentionStack(cfg.transformer, d, cfg.heads, cfg.attn_drop, cfg.dropout, False, cfg.ff_mult)
        self.cross2 = AttentionStack(cfg.transformer, d, cfg.heads, cfg.attn_drop, cfg.dropout, True, cfg.ff_mult)
        self.head = nn.Linear(d, 1)
        self.gap_head = GapHead(d + cfg.global_dim, max(d // 2, 8), cfg.dropout) if cfg.gap_head else None

    def set_seen_systems(self, systems: torch.Tensor) -> None:
        """Record which crystal systems the training data had; others get the mean prompt."""
        seen = torch.zeros_like(self.seen_systems)
        seen[systems.long().unique()] = True
        self.seen_systems.copy_(seen)

    def prompt(self, system: torch.Tensor) -> torch.Tensor:
        """Prompt vectors for system indices; the mean of the seen prompts for unseen systems."""
        seen = self.seen_systems.to(self.prompts.dtype)[:, None]  # masked mean: no data-dependent shape, no sync
        mean = (self.prompts * seen).sum(dim=0, keepdim=True) / seen.sum().clamp_min(1.0)
        known = self.seen_systems[system]
        return torch.where(known[:, None], self.prompts[system], mean.expand(len(system), -1))

    def _branch(self, x: torch.Tensor, atoms: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.self_attn(x)
        x = self.cross2(x, atoms, mask)
        return self.head(x).squeeze(-1)

    def forward(
        self,
        batch: Batch,
        energies: torch.Tensor | None = None,
        raw: bool = False,
        branches: tuple[str, ...] = ("global", "system"),
    ) -> dict[str, torch.Tensor]:
        """Spectra of a batch of crystal graphs.

        ``energies`` (value encoding only): positions in the training window (0..1) to predict
        at; default the training grid. ``raw=True`` skips the final clamp (used by the loss, so
        that negative outputs still receive gradient). ``branches``: which spectra to compute;
        prediction needs only ``("system",)``, which skips the global branch's attention stacks.
        """
        return self.spectra_and_gap(batch, energies, raw, branches)[0]

    def spectra_and_gap(
        self,
        batch: Batch,
        energies: torch.Tensor | None = None,
        raw: bool = False,
        branches: tuple[str, ...] = ("global", "system"),
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        """``(spectra as forward returns them, the gap head's raw (B, 3) outputs or None)`` from one pass."""
        g, atoms, mask, material = self._encode(batch)
        out = self.branch_outputs(batch, g, atoms, mask, self.energy(energies), branches)
        if not raw:
            out = {k: v.clamp_min(0.0) for k, v in out.items()}
        return out, None if self.gap_head is None else self.gap_head(material)

    def encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(g, atoms, mask)``: the material vector ``(B, d)`` and the padded atom embeddings with their mask."""
        g, atoms, mask, _ = self._encode(batch)
        return g, atoms, mask

    def _encode(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`encode` plus the pooled vector the material layer reads (the gap head's input)."""
        h = self.embedder(batch)
        pooled = scatter(h, batch.batch, dim=0, dim_size=batch.num_graphs, reduce=self.cfg.pool)
        if self.cfg.global_dim:
            extra = getattr(batch, "global_features", None)
            if extra is None:
                raise OptionError(
                    f"this model needs {self.cfg.global_dim} global features per material (graph.global_features)"
                )
            pooled = torch.cat([pooled, extra.to(pooled.dtype).view(batch.num_graphs, -1)], dim=-1)
        g = self.material(pooled)
        atoms, mask = to_dense_batch(h, batch.batch, batch_size=batch.num_graphs, max_num_nodes=max_atoms(batch))
        return g, atoms, mask, pooled

    def branch_outputs(
        self,
        batch: Batch,
        g: torch.Tensor,
        atoms: torch.Tensor,
        mask: torch.Tensor,
        tokens: torch.Tensor,
        branches: tuple[str, ...] = ("global", "system"),
    ) -> dict[str, torch.Tensor]:
        """The head's raw output ``(B, L)`` of each branch for the energy ``tokens`` ``(L, d)``."""
        b, n_e = atoms.shape[0], tokens.shape[0]
        e = self.cross1(tokens.unsqueeze(0).expand(b, -1, -1), atoms, mask)
        g_tok = g[:, None, :].expand(-1, n_e, -1)
        out = {}
        if "global" in branches:
            out["global"] = self._branch(self.fuse_global(torch.cat([e, g_tok], dim=-1)), atoms, mask)
        if "system" in branches:
            p_tok = self.prompt(batch.system.view(-1))[:, None, :].expand(-1, n_e, -1)
            out["system"] = self._branch(self.fuse_system(torch.cat([e, g_tok, p_tok], dim=-1)), atoms, mask)
        return out

    def prompt_parameters(self) -> list[nn.Parameter]:
        """What "prompt-only" fine-tuning trains: the prompts and the output head."""
        return [self.prompts, *self.head.parameters()]
