"""Embedders, energy encodings, prompts, attention stacks and the DOSTransformer module."""

from __future__ import annotations

from .build import build_model
from .config import ModelConfig
from .domain import TrainingDomain
from .dostransformer import DOSTransformer
from .embedders import EMBEDDERS
from .ensemble import DOSEnsemble
from .files import load_model_file, save_model_file
from .physical import PhysicalDOSTransformer

__all__ = [
    "EMBEDDERS",
    "DOSEnsemble",
    "DOSTransformer",
    "ModelConfig",
    "PhysicalDOSTransformer",
    "TrainingDomain",
    "build_model",
    "load_model_file",
    "save_model_file",
]
