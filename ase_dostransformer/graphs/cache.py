"""Featurise many structures once and keep the graphs on disk, keyed by data checksum and recipe.

:func:`cached_graphs` is the one path through the cache (phonon and electron datasets alike): look
the graphs up, else build them and store them. A recipe with ``compact`` / ``expand`` methods (the
electron recipe) stores its graphs compacted and expands them on the way out.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch_geometric.data import Data

from ..errors import CacheWarning, DOSTransformerError
from ..io.torch_files import is_private_file, load_graph_file, save_graph_file

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


def cache_file(recipe: Any, data_sha256: str, folder: str | os.PathLike | None = None) -> Path:
    """Where the graphs of a dataset (by checksum) made with ``recipe`` are cached."""
    return Path(folder or cache_dir()) / f"graphs-{recipe.name}-{recipe_key(recipe)}-{data_sha256[:16]}.pt"


def read_cache(path: Path, data_sha256: str, count: int) -> list[Data] | None:
    """The cached graphs at ``path`` if they can be trusted, else None (with a warning when one was refused).

    Trusted means: a private file of this user (a shared cache folder cannot plant entries), loaded
    without unpickling anything but tensors, its checksum right, made from the same data and of the
    expected length. Anything else is rebuilt, never used.
    """
    if not path.is_file():
        return None
    reason = None
    if not is_private_file(path):
        reason = "it is not a private file of this user (owned by someone else, or writable by others)"
    else:
        try:
            header, graphs = load_graph_file(path)
        except (DOSTransformerError, OSError) as exc:
            reason = str(exc)
        else:
            if header.get("data_sha256") == data_sha256 and len(graphs) == count:
                return graphs
            reason = "it was made from other data"
    warnings.warn(f"graph cache {path} not used, rebuilding it: {reason}", CacheWarning, stacklevel=3)
    return None


def write_cache(path: Path, graphs: Sequence[Data], data_sha256: str, recipe: Any) -> None:
    """Store ``graphs`` at ``path`` (private, checksummed); a cache that cannot be written is only a warning."""
    try:
        _private_folder(path.parent)
        save_graph_file(path, graphs, {"data_sha256": data_sha256, "recipe": recipe.to_dict()})
    except OSError as exc:
        warnings.warn(f"graph cache not written ({exc}); set ${CACHE_ENV} to a writable folder", CacheWarning, 3)


def _private_folder(folder: Path) -> None:
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)


def cached_graphs(
    recipe: Any,
    structures: Sequence[Any],
    targets: np.ndarray | None,
    data_sha256: str,
    folder: str | os.PathLike | None = None,
    build: Callable[[], list[Data]] | None = None,
) -> list[Data]:
    """Graphs from the cache when the data checksum and recipe match, else built and stored.

    ``build`` makes the graphs when the cache has none (default: :func:`featurise_many` of
    ``structures`` and ``targets``); it must return one graph per structure. A recipe with
    ``compact`` and ``expand`` stores ``recipe.compact(g)`` and returns ``recipe.expand(g)`` of what
    it reads, so cached and freshly built graphs are the same.
    """
    path = cache_file(recipe, data_sha256, folder)
    stored = read_cache(path, data_sha256, len(structures))
    compact, expand = getattr(recipe, "compact", None), getattr(recipe, "expand", None)
    if stored is not None:
        return [expand(g) for g in stored] if expand is not None else stored
    graphs = build() if build is not None else featurise_many(recipe, structures, targets)
    write_cache(path, [compact(g) for g in graphs] if compact is not None else graphs, data_sha256, recipe)
    return graphs
