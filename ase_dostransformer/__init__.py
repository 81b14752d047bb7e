"""ase-dostransformer: density of states of crystals from a prompt-guided multimodal transformer."""

from __future__ import annotations

__version__ = "0.1.0"
