"""The band-gap head of an electron model: metal or insulator, and the gap of an insulator with its uncertainty.

A small MLP reads the crystal's pooled material vector (the input of the DOSTransformer's material
layer: the pooled atom embeddings, plus the global features of a model that takes them; the
vector :mod:`.ensemble` reads as the "representation") and outputs three numbers per crystal:

- a metal logit (``p_metal = sigmoid(logit)``);
- the mean of the gap of the crystal *if it is an insulator* (eV; ``softplus``, so positive);
- the log of its standard deviation (eV), clamped to :data:`LOG_STD_RANGE`.

It is trained beside the spectrum (``training/lightning_module.py``): a weighted cross-entropy of the
metal logit against the DFT gap and the Gaussian negative log-likelihood of the gap over the
insulators. What a user receives (the rules that turn these numbers into a reported gap and flags,
and the ensemble combination) lives in :mod:`ase_dostransformer.electronic`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LOG_STD_RANGE", "GapHead", "gap_parameters"]

#: The head's log standard deviation (ln eV) is clamped to this range: 0.02 eV .. 5 eV.
LOG_STD_RANGE = (math.log(0.02), math.log(5.0))
#: Starting biases of the last layer: about 8% metals, a 1.5 eV gap, a 1 eV standard deviation.
_INITIAL_BIAS = (math.log(0.08 / 0.92), math.log(math.expm1(1.5)), 0.0)


class GapHead(nn.Module):
    """``(B, d_in)`` material vectors -> ``(B, 3)`` raw outputs: metal logit, gap mean (pre-softplus), log-std.

    ``Linear(d_in, width) -> SiLU -> Dropout -> Linear(width, 3)``; read the outputs with :func:`gap_parameters`.
    """

    def __init__(self, d_in: int, width: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_in, width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(width, 3))
        last = self.net[-1]
        assert isinstance(last, nn.Linear)
        with torch.no_grad():
            last.weight.mul_(0.1)  # start near the prior below, whatever the embeddings
            last.bias.copy_(torch.tensor(_INITIAL_BIAS))

    def forward(self, material: torch.Tensor) -> torch.Tensor:
        """The raw ``(B, 3)`` outputs for the pooled material vectors."""
        return self.net(material)


def gap_parameters(raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(metal logit, gap mean in eV, log standard deviation)`` of the head's raw ``(..., 3)`` outputs.

    The mean is ``softplus`` of its output (always positive); the log-std is clamped to :data:`LOG_STD_RANGE`.
    """
    logit, mean, log_std = raw.unbind(dim=-1)
    return logit, F.softplus(mean), log_std.clamp(*LOG_STD_RANGE)
