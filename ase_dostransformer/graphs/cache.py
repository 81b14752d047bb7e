"""Featurise many structures once and keep the graphs on disk, keyed by data checksum and recipe."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch_geometric.data import Data

from ..io.atomic import atomic_torch_save

#: Environment variable overriding the cache folder.
CACHE_ENV = "DOSTRANSFORMER_CACHE"


def cache_dir() -> Path:
    """``$DOSTRANSFORMER_CACHE`` or ``~/.cache/ase_dostransformer``."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "ase_dostransformer"))


def recipe_key(recipe: Any) -> str:
    """Short hash of a recipe's parameters."""
    text = json.dumps(recipe.to_dict(), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def featurise_many(recipe: Any, structures: Sequence[Any], targets: np.ndarray | None = None) -> list[Data]:
    """Graphs of many structures (targets, if given, become ``data.y``)."""
    return [recipe.featurise(s, None if targets is None else targets[i]) for i, s in enumerate(structures)]


def cached_graphs(
    recipe: Any,
    structures: Sequence[Any],
    targets: np.ndarray | None,
    data_sha256: str,
    folder: str | os.PathLike | None = None,
) -> list[Data]:
    """Graphs from the cache when the data checksum and recipe match, else built and stored."""
    path = Path(folder or cache_dir()) / f"graphs-{recipe.name}-{recipe_key(recipe)}-{data_sha256[:16]}.pt"
    if path.is_file():
        try:
            graphs = torch.load(path, weights_only=False)
            if len(graphs) == len(structures):
                return graphs
        except Exception:  # a damaged cache is rebuilt, never trusted
            pass
    graphs = featurise_many(recipe, structures, targets)
    atomic_torch_save(graphs, path)
    return graphs
