"""A model file: one torch file holding the weights, the full config and metadata."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..io.atomic import atomic_torch_save
from .config import ModelConfig
from .dostransformer import DOSTransformer
from .ensemble import DOSEnsemble

FORMAT = "ase-dostransformer-model"
VERSION = 1


class ModelFileError(ValueError):
    """A model file that is missing, damaged, or not ours."""


def save_model_file(
    model: DOSTransformer | DOSEnsemble, path: str | os.PathLike, meta: dict[str, Any] | None = None
) -> Path:
    """Write ``model`` (weights in float32 + config + ``meta``) atomically to ``path``.

    ``meta`` is stored as plain JSON types, so the file loads with ``weights_only=True``.
    """
    meta = json.loads(json.dumps(meta or {}, default=_json_default))
    state = {
        k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    atomic_torch_save(
        {
            "format": FORMAT,
            "version": VERSION,
            "config": model.cfg.to_dict(),
            "state_dict": state,
            "meta": meta,
            "members": len(model.members) if isinstance(model, DOSEnsemble) else 0,
            "member_configs": [m.cfg.to_dict() for m in model.members] if isinstance(model, DOSEnsemble) else [],
        },
        path,
    )
    return Path(path)


def combine_model_files(
    paths: Sequence[str | os.PathLike], out: str | os.PathLike, meta: dict[str, Any] | None = None
) -> Path:
    """Write an ensemble of the single models in ``paths`` to ``out``; member metadata is kept."""
    members, metas = [], []
    for p in paths:
        m, mt = load_model_file(p)
        if isinstance(m, DOSEnsemble):
            raise ModelFileError(f"{p} is already an ensemble")
        members.append(m)
        metas.append(mt)
    merged = {k: metas[0][k] for k in ("data_sha256", "train_elements", "train_max_atoms") if k in metas[0]}
    return save_model_file(DOSEnsemble(members), out, meta=merged | {"members": metas} | (meta or {}))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw contents of a model file, checked; :class:`ModelFileError` when unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelFileError(f"{path} is not a readable model file (damaged or truncated?): {exc}") from exc
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an ase-dostransformer model file")
    if blob.get("version", 0) > VERSION:
        raise ModelFileError(f"{path} has format version {blob['version']}; this package reads <= {VERSION}")
    return blob


def load_model_file(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[DOSTransformer | DOSEnsemble, dict[str, Any]]:
    """Rebuild a model (or an ensemble) from a file; returns ``(model in eval mode, meta)``."""
    blob = read_model_file(path)
    n = int(blob.get("members", 0))
    model: DOSTransformer | DOSEnsemble
    if n:
        configs = blob.get("member_configs") or [blob["config"]] * n
        model = DOSEnsemble([DOSTransformer(ModelConfig.from_dict(c)) for c in configs])
    else:
        model = DOSTransformer(ModelConfig.from_dict(blob["config"]))
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not match the stored config: {exc}") from exc
    return model.to(map_location).eval(), blob.get("meta", {})
