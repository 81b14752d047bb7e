"""Torch files read safely: no code runs from a file, and damaged content is caught by a checksum.

Every torch file this package reads (model files, training checkpoints, graph caches, an electron
dataset's ``graphs.pt``) is loaded with ``torch.load(weights_only=True)``, which accepts tensors and
plain Python values only: a planted pickle (``__reduce__`` -> ``os.system``) is refused before
anything in it runs. The files we write hold nothing else: graphs are stored as dicts of tensors
(:func:`graphs_to_records`), never as pickled ``torch_geometric`` objects.

Integrity: :func:`content_sha256` hashes a nested structure of tensors and plain values (dtype,
shape and bytes of each tensor; keys, types and values of everything else) independently of how
torch serialised it; files carry it and readers compare it, so an edited tensor is an error, not a
silently different prediction.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import FileIntegrityError, UnsafeFileError
from .atomic import atomic_torch_save

__all__ = [
    "GRAPH_FILE_FORMAT",
    "content_sha256",
    "graphs_to_records",
    "is_private_file",
    "load_graph_file",
    "records_to_graphs",
    "safe_torch_load",
    "save_graph_file",
]

#: Format tag of a graph file (a cache entry or an electron dataset's ``graphs.pt``).
GRAPH_FILE_FORMAT = "ase-dostransformer-graphs"
GRAPH_FILE_VERSION = 2


def _feed(h: Any, obj: Any) -> None:
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"A{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)}".encode())
        for key in sorted(obj, key=str):
            _feed(h, str(key))
            _feed(h, obj[key])
    elif isinstance(obj, (list, tuple)):
        h.update(f"L{len(obj)}".encode())
        for item in obj:
            _feed(h, item)
    elif isinstance(obj, str):
        raw = obj.encode()
        h.update(f"S{len(raw)}:".encode() + raw)
    elif obj is None or isinstance(obj, (bool, int, float, np.generic)):
        value = obj.item() if isinstance(obj, np.generic) else obj
        h.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"cannot checksum a {type(obj).__name__}")


def content_sha256(obj: Any) -> str:
    """Hex sha256 of nested dicts, lists, tensors, arrays and plain values (not of their pickled bytes)."""
    h = hashlib.sha256()
    _feed(h, obj)
    return h.hexdigest()


def safe_torch_load(path: str | os.PathLike, what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with errors that say what is wrong.

    Raises :class:`UnsafeFileError` for a file holding anything but tensors and plain values (it
    may have been tampered with; nothing in it was run), :class:`FileIntegrityError` for a damaged
    or truncated one, ``FileNotFoundError`` for a missing one.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own message suggests loading unsafely: never pass that advice on, only the object named
        named = [ln.strip() for ln in str(exc).splitlines() if "global" in ln.lower() and "unsupported" in ln.lower()]
        if not named:  # not an object to refuse, just bytes that are not a torch file
            raise FileIntegrityError(f"{path}: not a readable {what} (damaged or truncated?)") from None
        raise UnsafeFileError(
            f"{path}: refused to load this {what}: it holds Python objects other than tensors and plain "
            f"values ({named[0]}), which no file written by ase-dostransformer does (it may have been "
            "tampered with; nothing in it was run)"
        ) from None
    except Exception as exc:
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise FileIntegrityError(f"{path}: not a readable {what} (damaged or truncated?): {reason}") from exc


def graphs_to_records(graphs: Iterable[Any]) -> list[dict[str, Any]]:
    """PyG ``Data`` objects as plain dicts of tensors and values (loadable with ``weights_only=True``)."""
    return [dict(g.to_dict()) for g in graphs]


def records_to_graphs(records: Iterable[Mapping[str, Any]]) -> list[Any]:
    """The inverse of :func:`graphs_to_records`."""
    from torch_geometric.data import Data

    return [Data(**dict(r)) for r in records]


def save_graph_file(
    path: str | os.PathLike, graphs: Iterable[Any], header: Mapping[str, Any], private: bool = True
) -> Path:
    """Write graphs with ``header`` (plain values) and the checksum of both, atomically.

    ``private``: readable and writable by this user only (cache entries); else the usual permissions.
    """
    payload = {"header": dict(header), "graphs": graphs_to_records(graphs)}
    blob = {"format": GRAPH_FILE_FORMAT, "version": GRAPH_FILE_VERSION, "sha256": content_sha256(payload), **payload}
    return atomic_torch_save(blob, path, mode=0o600 if private else None)


def load_graph_file(path: str | os.PathLike) -> tuple[dict[str, Any], list[Any]]:
    """``(header, graphs)`` of a file written by :func:`save_graph_file`, loaded safely and checked.

    Raises :class:`UnsafeFileError` or :class:`FileIntegrityError` (also for a file of an older
    format, whose content cannot be verified).
    """
    blob = safe_torch_load(path, "graph file")
    if not isinstance(blob, dict) or blob.get("format") != GRAPH_FILE_FORMAT:
        raise FileIntegrityError(f"{path}: not a graph file of this version of ase-dostransformer")
    payload = {"header": blob.get("header"), "graphs": blob.get("graphs")}
    if not isinstance(payload["header"], dict) or not isinstance(payload["graphs"], list):
        raise FileIntegrityError(f"{path}: graph file without header or graphs")
    if content_sha256(payload) != blob.get("sha256"):
        raise FileIntegrityError(f"{path}: the graphs do not match their checksum (damaged or edited)")
    return payload["header"], records_to_graphs(payload["graphs"])


def is_private_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a regular file owned by this user that nobody else may write.

    A cache in a shared folder could otherwise be replaced by another user's file with a valid
    checksum and poisoned content.
    """
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return False
    return not hasattr(os, "getuid") or st.st_uid == os.getuid()
