"""Models shipped inside the package, and a small registry of them.

``registry.json`` beside this file maps a name to its file (relative to this folder), the file's
sha256, the task (a DOS kind), energy grid and units, the checksum of the training data, the
measured test metrics and a description. :func:`load_model` loads a registered model after
checking the sha256, or any model file written by :func:`ase_dostransformer.model.save_model_file`
given its path. The shipped models are ``"phonon"`` (the default: the physical phonon model,
``train/phonon_physical``), ``"phonon-paper"`` (the paper's setting: 51 max-normalised points on
0..1000 cm^-1, ``train/phonon``) and ``"electron"``; the electron model's former name ``"edos"``
still loads it (:data:`MODEL_ALIASES`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..device import resolve_device
from ..errors import ModelFileError, OptionError
from ..io.atomic import atomic_path, atomic_write_text
from ..io.checksums import file_sha256
from ..kinds import get_kind

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from ..model import DOSEnsemble, DOSTransformer

#: Folder of the shipped model files.
PRETRAINED_DIR = Path(__file__).resolve().parent
#: The registry file shipped with the package.
REGISTRY_FILE = PRETRAINED_DIR / "registry.json"
#: Name loaded when none is given.
DEFAULT_MODEL = "phonon"
#: Former names of registered models: still accepted by :func:`model_path` and :func:`load_model`.
MODEL_ALIASES = {"edos": "electron"}
#: The models shipped with the package.
SHIPPED_MODELS = ("phonon", "phonon-paper", "electron", "electron-v1")

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_ALIASES",
    "PRETRAINED_DIR",
    "REGISTRY_FILE",
    "SHIPPED_MODELS",
    "ModelFileError",
    "list_models",
    "load_model",
    "model_path",
    "read_registry",
    "register_model",
]


def read_registry(registry: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """The registry (name -> entry); empty when the file does not exist."""
    path = Path(registry) if registry is not None else REGISTRY_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"model registry {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelFileError(f"model registry {path} must hold a JSON object (name -> entry)")
    return data


def list_models(registry: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Registered models whose files are present: name -> registry entry."""
    path = Path(registry) if registry is not None else REGISTRY_FILE
    entries = read_registry(path)
    return {name: e for name, e in entries.items() if (path.parent / e.get("file", "")).is_file()}


def _registered_name(name: str, entries: dict[str, Any]) -> str:
    """``name``, or the registered name it is a former name of (:data:`MODEL_ALIASES`)."""
    if name not in entries and MODEL_ALIASES.get(name) in entries:
        return MODEL_ALIASES[name]
    return name


def model_path(name: str, registry: str | os.PathLike | None = None, verify: bool = True) -> Path:
    """Path of a registered model's file (a former name such as ``"edos"`` too), its sha256 checked when ``verify``.

    Raises :class:`ModelFileError` for an unknown name, a missing file or a checksum mismatch.
    """
    reg_path = Path(registry) if registry is not None else REGISTRY_FILE
    entries = read_registry(reg_path)
    name = _registered_name(name, entries)
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none"
        raise ModelFileError(f"no model named {name!r} is registered (registered: {known})")
    entry = entries[name]
    path = reg_path.parent / entry["file"]
    if not path.is_file():
        raise ModelFileError(
            f"model {name!r} is registered but its file {path} is missing; reinstall ase-dostransformer"
        )
    if verify:
        expected = str(entry.get("sha256", "")).lower()
        actual = file_sha256(path)
        if actual != expected:
            raise ModelFileError(
                f"model file {path} is damaged: sha256 {actual} does not match the registered "
                f"{expected or '(none)'}; reinstall ase-dostransformer or re-download the file"
            )
    return path


def _resolve(name_or_path: str | os.PathLike, registry: str | os.PathLike | None) -> Path:
    if isinstance(name_or_path, str):
        entries = read_registry(registry)
        if _registered_name(name_or_path, entries) in entries:
            return model_path(name_or_path, registry)
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    if isinstance(name_or_path, str) and os.sep not in name_or_path and not path.suffix:
        known = ", ".join(sorted(read_registry(registry))) or "none"
        hint = ""
        if name_or_path in SHIPPED_MODELS or name_or_path in MODEL_ALIASES:
            hint = f" (the shipped {name_or_path!r} model is not in this installation)"
        raise ModelFileError(
            f"{name_or_path!r} is neither a registered model{hint} nor an existing file (registered: {known})"
        )
    raise ModelFileError(f"model file not found: {path}")


def load_model(
    name_or_path: str | os.PathLike = DEFAULT_MODEL,
    device: str | torch.device | None = None,
    *,
    registry: str | os.PathLike | None = None,
) -> DOSTransformer | DOSEnsemble:
    """A ``DOSTransformer`` (or ensemble) in eval mode on ``device`` (see :func:`..device.resolve_device`).

    A registered name loads the shipped file after checking its sha256; any other string or path
    is read as a model file written by ``save_model_file``. Problems raise :class:`ModelFileError`.
    The model knows its ``kind``, ``graph_recipe``, ``training_domain`` and ``source`` (the file).
    """
    from ..model.files import load_model_file

    path = _resolve(name_or_path, registry)
    model, _ = load_model_file(path)
    return model.to(resolve_device(device)).eval()


def _test_metrics(meta: dict[str, Any]) -> dict[str, Any] | None:
    metrics = meta.get("metrics")
    if isinstance(metrics, dict) and isinstance(metrics.get("test"), dict):
        return metrics["test"].get("model", metrics["test"])
    return None


def register_model(
    name: str,
    path: str | os.PathLike,
    *,
    description: str = "",
    test_metrics: dict[str, Any] | None = None,
    training_data_sha256: str | None = None,
    registry: str | os.PathLike | None = None,
    copy: bool = True,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Add (or replace) the registry entry of a model file and return it.

    The file is read and checked; task, grid and units come from its config, and the test metrics
    and training-data checksum default to those stored in its metadata by ``dostransformer train``.
    When ``copy`` and the file is not already in the registry's folder it is copied there as
    ``<name>.pt``. The registry file is rewritten atomically.
    """
    from ..model.files import read_model_file

    reg_path = Path(registry) if registry is not None else REGISTRY_FILE
    folder = reg_path.parent
    src = Path(path)
    blob = read_model_file(src)
    cfg, meta = blob["config"], blob.get("meta", {}) or {}
    if src.resolve().parent != folder.resolve():
        if not copy:
            raise OptionError(f"{src} is not in the registry folder {folder}; pass copy=True")
        dest = folder / f"{name}.pt"
        with atomic_path(dest) as tmp:  # a killed copy never leaves half a model file under the registry's name
            shutil.copyfile(src, tmp)
        src = dest
    grid = cfg.get("grid", {})
    try:
        kind = get_kind(cfg.get("task", "phonon"))
    except OptionError as exc:
        raise ModelFileError(f"{src}: {exc}") from None
    entry: dict[str, Any] = {
        "file": src.name,
        "sha256": file_sha256(src),
        "task": kind.name,
        "grid": grid,
        "units": kind.units(grid),
        "training_data_sha256": training_data_sha256 or meta.get("data_sha256"),
        "test_metrics": test_metrics if test_metrics is not None else _test_metrics(meta),
        "description": description,
    }
    if extra:
        entry.update(extra)
    entries = read_registry(reg_path)
    entries[name] = entry
    atomic_write_text(reg_path, json.dumps(entries, indent=2, sort_keys=True) + "\n")
    return entry
