"""Embedders, energy encodings, prompts, attention stacks and the DOSTransformer module."""

from __future__ import annotations

from .config import ModelConfig
from .dostransformer import DOSTransformer
from .files import load_model_file, save_model_file

__all__ = ["DOSTransformer", "ModelConfig", "load_model_file", "save_model_file"]
