"""One place that turns a model config into its network: the seed's head or the physical one."""

from __future__ import annotations

from .config import ModelConfig
from .dostransformer import DOSTransformer
from .physical import PhysicalDOSTransformer

__all__ = ["build_model"]


def build_model(cfg: ModelConfig) -> DOSTransformer:
    """:class:`PhysicalDOSTransformer` for ``cfg.output == "physical"``, else :class:`DOSTransformer`."""
    return PhysicalDOSTransformer(cfg) if cfg.output == "physical" else DOSTransformer(cfg)
