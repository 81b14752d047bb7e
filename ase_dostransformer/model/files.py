"""A model file: one torch file holding the weights, the full config and metadata.

Loading one gives a model that knows its ``source`` (the file), its ``meta`` and, from the meta, its
typed ``training_domain`` (:class:`~.domain.TrainingDomain`; files written before the training
geometry was recorded get it from ``pretrained/training_domain.json`` by their training-data sha256).
A file may also carry an uncertainty calibration (``calibration``, with its own checksum
``calibration_sha256``, so older readers still load the file): the loaded model's ``calibration``
(:class:`~.uncertainty.UncertaintyCalibration`), None without one.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import DOSTransformerError, ModelFileError, UnverifiedModelFileWarning
from ..io.atomic import atomic_torch_save
from ..io.torch_files import content_sha256, safe_torch_load
from .build import build_model
from .config import ModelConfig
from .domain import TrainingDomain
from .dostransformer import DOSTransformer
from .ensemble import DOSEnsemble
from .uncertainty import UncertaintyCalibration

FORMAT = "ase-dostransformer-model"
#: Version 2 adds ``sha256``, the checksum of the content (:func:`content_sha256` of the checked fields).
VERSION = 2
#: The fields covered by a model file's checksum.
CHECKED_FIELDS = ("config", "state_dict", "meta", "members", "member_configs")

__all__ = [
    "FORMAT",
    "VERSION",
    "ModelFileError",
    "UnverifiedModelFileWarning",
    "DOMAIN_KEYS",
    "combine_model_files",
    "load_model_file",
    "merge_training_domains",
    "read_model_file",
    "save_model_file",
]


def save_model_file(
    model: DOSTransformer | DOSEnsemble,
    path: str | os.PathLike,
    meta: dict[str, Any] | None = None,
    calibration: UncertaintyCalibration | None = None,
) -> Path:
    """Write ``model`` (weights in float32 + config + ``meta``) atomically to ``path``.

    ``meta`` is stored as plain JSON types, so the file loads with ``weights_only=True``.
    ``calibration``: an uncertainty calibration to store (default: the model's own ``calibration``, if any).
    """
    meta = json.loads(json.dumps(meta or {}, default=_json_default))
    state = {
        k: v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu()
        for k, v in model.state_dict().items()
    }
    content = {
        "config": model.cfg.to_dict(),
        "state_dict": state,
        "meta": meta,
        "members": len(model.members) if isinstance(model, DOSEnsemble) else 0,
        "member_configs": [m.cfg.to_dict() for m in model.models] if isinstance(model, DOSEnsemble) else [],
    }
    blob = {"format": FORMAT, "version": VERSION, "sha256": content_sha256(content), **content}
    calibration = calibration if calibration is not None else getattr(model, "calibration", None)
    if calibration is not None:
        stored = calibration.to_dict()
        blob |= {"calibration": stored, "calibration_sha256": content_sha256(stored)}
    atomic_torch_save(blob, path)
    return Path(path)


def combine_model_files(
    paths: Sequence[str | os.PathLike], out: str | os.PathLike, meta: dict[str, Any] | None = None
) -> Path:
    """Write an ensemble of the single models in ``paths`` to ``out``; member metadata is kept.

    The ensemble's training domain is the union of its members': their elements, largest cell and
    shortest-bond and volume-per-atom ranges (members trained on teacher crystals too widen them).
    """
    members, metas = [], []
    for p in paths:
        m, mt = load_model_file(p)
        if isinstance(m, DOSEnsemble):
            raise ModelFileError(f"{p} is already an ensemble")
        members.append(m)
        metas.append(mt)
    merged: dict[str, Any] = {k: metas[0][k] for k in ("data_sha256",) if k in metas[0]}
    merged |= merge_training_domains(metas)  # the ensemble's domain: everything any member saw
    return save_model_file(DOSEnsemble(members), out, meta=merged | {"members": metas} | (meta or {}))


#: The training-domain keys of a model file's meta (:class:`~ase_dostransformer.model.domain.TrainingDomain`).
DOMAIN_KEYS = ("train_elements", "train_max_atoms", "train_shortest_bond", "train_volume_per_atom")


def merge_training_domains(metas: Sequence[dict[str, Any]], require_all: bool = True) -> dict[str, Any]:
    """The union of the training domains recorded in ``metas``: elements, largest cell, bond and volume ranges.

    ``require_all``: a key is merged only when every meta has it (an ensemble member without one has an
    unknown domain, so the ensemble's is unknown too); otherwise over the metas that have it (a
    fine-tuned model: its own run's domain widened by its starting file's, whose weights it carries).
    """
    out: dict[str, Any] = {}
    for key in DOMAIN_KEYS:
        have = [mt[key] for mt in metas if key in mt]
        if not have or (require_all and len(have) < len(metas)):
            continue
        if key == "train_elements":
            out[key] = sorted({int(z) for v in have for z in v})
        elif key == "train_max_atoms":
            out[key] = max(int(v) for v in have)
        else:
            out[key] = [min(float(v[0]) for v in have), max(float(v[1]) for v in have)]
    return out


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy / torch scalars
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def read_model_file(path: str | os.PathLike) -> dict[str, Any]:
    """The raw contents of a model file, loaded safely and checked; :class:`ModelFileError` when unusable.

    Nothing but tensors and plain values is unpickled; the content must match its checksum
    (format version 2), so an edited or damaged tensor is an error, never a different prediction.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        blob = safe_torch_load(path, "model file")
    except DOSTransformerError as exc:
        raise ModelFileError(str(exc)) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an ase-dostransformer model file")
    version = blob.get("version", 0)
    if not isinstance(version, int) or version > VERSION:
        raise ModelFileError(f"{path} has format version {version!r}; this package reads <= {VERSION}")
    for key, kind in (("config", dict), ("state_dict", dict)):
        if not isinstance(blob.get(key), kind):
            raise ModelFileError(f"{path}: the model file has no {key}")
    if version >= 2:
        try:
            actual = content_sha256({k: blob.get(k) for k in CHECKED_FIELDS})
        except TypeError as exc:
            raise ModelFileError(f"{path}: unexpected content in the model file ({exc})") from None
        if actual != blob.get("sha256"):
            raise ModelFileError(
                f"{path}: the model file's content does not match its checksum (damaged or edited); "
                "retrain or restore the file"
            )
        if "calibration" in blob and content_sha256(blob["calibration"]) != blob.get("calibration_sha256"):
            raise ModelFileError(f"{path}: the uncertainty calibration does not match its checksum (damaged or edited)")
    else:
        warnings.warn(
            f"{path} is a model file of format version {version}, without a checksum of its content: it "
            "cannot be checked for damage. Re-save it with save_model_file() to add one.",
            UnverifiedModelFileWarning,
            stacklevel=3,
        )
    return blob


def _build(blob: Mapping[str, Any], path: Path) -> DOSTransformer | DOSEnsemble:
    """The model (or ensemble) the file's configs declare, with fresh weights on the current default device."""
    n = blob.get("members", 0)
    if not isinstance(n, int) or n < 0:
        raise ModelFileError(f"{path}: invalid member count {n!r}")
    try:
        if n:
            configs = blob.get("member_configs") or [blob["config"]] * n
            if len(configs) != n:
                raise ModelFileError(f"{path}: {len(configs)} member configs for {n} members")
            return DOSEnsemble([build_model(ModelConfig.from_dict(c)) for c in configs])
        return build_model(ModelConfig.from_dict(blob["config"]))
    except (TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, ModelFileError):
            raise
        raise ModelFileError(f"{path}: the model config is not valid ({exc})") from None


def _check_shapes(skeleton: torch.nn.Module, state: Mapping[str, Any], path: Path) -> None:
    """The stored tensors must be exactly those the declared config builds (names and shapes)."""
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelFileError(f"{path}: weights that are not tensors: {bad[:5]}")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k}: {tuple(state[k].shape)} stored, {expected[k]} declared"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        if wrong:
            parts.append("wrong shapes " + "; ".join(wrong[:5]))
        raise ModelFileError(f"{path}: weights do not match the stored config: {', '.join(parts)}")


def _calibration(stored: Any, path: Path, model: DOSTransformer | DOSEnsemble) -> UncertaintyCalibration:
    """The file's uncertainty calibration; :class:`ModelFileError` naming the file when malformed or not the model's."""
    try:
        calibration = UncertaintyCalibration.from_dict(stored)
    except ModelFileError as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    members = model.models if isinstance(model, DOSEnsemble) else [model]
    width = sum(m.cfg.hidden for m in members)
    if calibration.width != width:
        raise ModelFileError(
            f"{path}: the uncertainty calibration is for representations of length {calibration.width}, "
            f"this model makes {width}"
        )
    return calibration


def load_model_file(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[DOSTransformer | DOSEnsemble, dict[str, Any]]:
    """Rebuild a model (or an ensemble) from a file; returns ``(model in eval mode, meta)``.

    The model's ``source`` is ``path``, its ``meta`` the file's meta and its ``training_domain`` built from it.

    The declared architecture is first built on PyTorch's ``meta`` device (no memory) and its
    parameter shapes compared with the stored tensors, so a file that declares a huge model but
    holds small tensors is refused before anything is allocated.
    """
    path = Path(path)
    blob = read_model_file(path)
    with torch.device("meta"):
        skeleton = _build(blob, path)
    _check_shapes(skeleton, blob["state_dict"], path)
    del skeleton
    model = _build(blob, path)
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: weights do not match the stored config: {exc}") from exc
    meta = blob.get("meta") or {}
    meta = meta if isinstance(meta, dict) else {}
    try:
        domain = TrainingDomain.from_meta(meta)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{path}: the training domain in the model's meta is not valid ({exc})") from None
    calibration = blob.get("calibration")
    model.meta = meta
    model.training_domain = domain
    model.source = str(path)
    model.calibration = None if calibration is None else _calibration(calibration, path, model)
    return model.to(map_location).eval(), meta
