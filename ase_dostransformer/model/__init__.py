"""Embedders, energy encodings, prompts, attention stacks and the DOSTransformer module."""

from __future__ import annotations

from .config import ModelConfig
from .domain import TrainingDomain
from .dostransformer import DOSTransformer
from .embedders import EMBEDDERS
from .ensemble import DOSEnsemble
from .files import load_model_file, save_model_file

__all__ = [
    "EMBEDDERS",
    "DOSEnsemble",
    "DOSTransformer",
    "ModelConfig",
    "TrainingDomain",
    "load_model_file",
    "save_model_file",
]
