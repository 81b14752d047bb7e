"""Multi-head attention blocks with learned projections and key padding masks.

Written on ``torch.nn.functional.scaled_dot_product_attention`` so that a GPU uses the fused
kernels; pre-LayerNorm residual blocks, as in current transformer practice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Queries from one sequence attend to keys/values from another (or the same)."""

    def __init__(self, d: int, heads: int, attn_drop: float) -> None:
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.out = nn.Linear(d, d)
        self.attn_drop = attn_drop

    def forward(self, x: torch.Tensor, mem: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B, Lq, d), ``mem`` (B, Lk, d), ``key_mask`` (B, Lk) True where a key is real."""
        b, lq, d = x.shape
        h = self.heads
        q = self.q(x).view(b, lq, h, d // h).transpose(1, 2)
        k, v = self.kv(mem).view(b, mem.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        mask = None if key_mask is None else key_mask[:, None, None, :]
        drop = self.attn_drop if self.training else 0.0
        if q.device.type == "cpu" and q.dtype == torch.bfloat16:
            # CPU bf16 autocast: the projections gain from bf16, but the CPU attention kernel (forward +
            # backward) is several times slower in bf16 than in fp32 (benchmarks/RESULTS.md): run it in
            # fp32, outside autocast, which would otherwise cast it back to bf16
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, dropout_p=drop)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self.out(y.transpose(1, 2).reshape(b, lq, d))


class AttentionBlock(nn.Module):
    """Pre-LN residual block: attention (self or cross), then a feed-forward network."""

    def __init__(self, d: int, heads: int, attn_drop: float, dropout: float, cross: bool, ff_mult: int = 1) -> None:
        super().__init__()
        self.cross = cross
        self.norm_q = nn.LayerNorm(d)
        self.norm_kv = nn.LayerNorm(d) if cross else None
        self.attn = MultiHeadAttention(d, heads, attn_drop)
        self.norm_ff = nn.LayerNorm(d)
        self.ff = nn.Sequential(nn.Linear(d, ff_mult * d), nn.GELU(), nn.Linear(ff_mult * d, d))
        self.drop = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, mem: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` updated by attention over ``mem`` (cross) or over itself (self; ``mem`` and ``key_mask`` ignored)."""
        q = self.norm_q(x)
        if self.cross:
            kv = self.norm_kv(mem)
        else:
            kv, key_mask = q, None
        x = x + self.drop(self.attn(q, kv, key_mask))
        return x + self.drop(self.ff(self.norm_ff(x)))


class AttentionStack(nn.Module):
    """``n`` attention blocks of one kind."""

    def __init__(
        self, n: int, d: int, heads: int, attn_drop: float, dropout: float, cross: bool, ff_mult: int = 1
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(AttentionBlock(d, heads, attn_drop, dropout, cross, ff_mult) for _ in range(n))
        self.norm = nn.LayerNorm(d)

    def forward(
        self, x: torch.Tensor, mem: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x`` through every block (each attending to ``mem`` when cross), then a final layer norm."""
        for block in self.blocks:
            x = block(x, mem, key_mask)
        return self.norm(x)
