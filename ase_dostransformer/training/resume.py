"""Training that never loses work: atomic checkpoints, RNG states in checkpoints, checked resumes.

A run killed at any moment (SIGKILL, OOM, a pre-empted node) leaves ``checkpoints/last.ckpt`` as the
last complete checkpoint, and ``dostransformer train --resume`` from it ends with the same weights
and metrics (to float round-off: bit for bit on CPU) as a run that was never interrupted, because
each checkpoint also holds the global RNG states and the training order depends only on
``(seed, epoch)`` (:class:`~.data_module.EpochSeededSampler`). A damaged checkpoint is refused
with a clear :class:`CheckpointError`, never loaded silently.
"""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import CheckpointError, FileIntegrityError, UnsafeFileError
from ..io.atomic import atomic_torch_save
from ..io.torch_files import safe_torch_load
from ..model import ModelConfig

#: Pattern of the temporary files :class:`AtomicCheckpointIO` writes beside a checkpoint.
TEMPORARY_GLOB = ".*.ckpt.*.tmp"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a hidden temporary file beside it, fsyncs it, then renames it into place.

    Lightning's own ``_atomic_save`` (lightning/fabric/utilities/cloud_io.py, 2.6) serialises to
    memory and writes through an fsspec transaction; for a local path fsspec's ``LocalFileOpener``
    writes the bytes to ``tempfile.mkstemp()`` -- the system temp folder, not the checkpoint's -- and
    ``commit()`` moves it with ``shutil.move``. That is an atomic ``rename`` only when the temp folder
    and the run folder share a file system; otherwise (``/tmp`` on tmpfs, runs on another disk, a
    cluster scratch) ``shutil.move`` copies then deletes, and a kill during the copy leaves a torn
    ``last.ckpt``. Neither path fsyncs. Writing beside the target and ``os.replace`` is atomic on
    every POSIX file system, so a killed run always leaves the previous complete checkpoint.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        """Write ``checkpoint`` to ``path`` atomically (beside it, then ``os.replace``)."""
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_torch_save(checkpoint, path)


class RNGStateCallback(Callback):
    """Keeps the global RNG states (Python, NumPy, torch, CUDA) in every checkpoint and restores them on resume.

    Lightning (2.6) checkpoints hold the weights, optimiser, scheduler, loop and callback states,
    but not the random generators: a resumed run would draw other dropout masks (and DataLoader
    seeds) than an uninterrupted one. With these states and :class:`~.data_module.EpochSeededSampler`
    a resumed run repeats the uninterrupted one exactly on CPU.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Store the Python, NumPy, torch (and CUDA) RNG states under ``rng_states``."""
        # plain types and tensors only: Lightning loads checkpoints with ``weights_only=True``
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        states: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["rng_states"] = states

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Restore the RNG states stored by :meth:`on_save_checkpoint` (none in an older checkpoint)."""
        states = checkpoint.get("rng_states")
        if not states:  # a checkpoint from before this callback: resume without the RNG states
            return
        version, internal, gauss_next = states["python"]
        random.setstate((version, tuple(internal), gauss_next))
        kind, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(states["torch"])
        cuda = states.get("cuda")
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)


def check_resume_checkpoint(path: str | os.PathLike, config: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded and checked before resuming; :class:`CheckpointError` if unusable."""
    path = Path(path)
    advice = f"move {path.name} away to start afresh, or copy best.ckpt over it to resume from the best epoch"
    try:  # tensors and plain values only: a planted pickle is refused before anything in it runs
        ckpt = safe_torch_load(path, "checkpoint")
    except UnsafeFileError as exc:
        raise CheckpointError(f"cannot resume from {path}: {exc}; {advice}") from None
    except (FileIntegrityError, OSError) as exc:
        raise CheckpointError(
            f"cannot resume from {path}: the checkpoint is damaged or truncated ({exc}); {advice}"
        ) from exc
    needed = ("state_dict", "epoch", "optimizer_states", "hyper_parameters", "loops")
    missing = [k for k in needed if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise CheckpointError(f"cannot resume from {path}: not a complete training checkpoint (no {missing}); {advice}")
    try:  # fill in fields added since the checkpoint was written with their defaults
        stored = ModelConfig.from_dict(dict(ckpt["hyper_parameters"].get("config") or {})).to_dict()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot resume from {path}: its model config is not readable ({exc}); {advice}") from exc
    shown = _differences(stored, config, repr)
    if shown:
        raise CheckpointError(
            f"cannot resume from {path}: it was trained with other model settings ({shown}); "
            "pass the same options, or a new --out"
        )
    return ckpt


def _differences(old: dict[str, Any], new: dict[str, Any], show: Any) -> str:
    """``"key: old -> new, ..."`` for every key whose value differs (empty when none does)."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return ", ".join(f"{k}: {show(old.get(k))} -> {show(new.get(k))}" for k in keys)


def remove_stale_temporaries(folder: str | os.PathLike) -> None:
    """Delete temporary checkpoint files left in ``folder`` by a run killed while writing one."""
    folder = Path(folder)
    if folder.is_dir():
        for stale in folder.glob(TEMPORARY_GLOB):
            stale.unlink(missing_ok=True)


#: Options a resumed run must share with the run it continues, besides the model config: what it trains on
#: (task, split and its cut, seed), how it optimises (the optimiser, schedule and batch), and the callback
#: settings a checkpoint restores over the new ones (early-stopping patience = ``es // eval``). Allowed to
#: change: ``epochs`` (train longer), ``out``, paths with the same content, and the hardware options.
RESUME_OPTIONS = (
    "task",
    "dataset",
    "limit",
    "seed",
    "lr",
    "weight_decay",
    "beta",
    "scheduler",
    "warmup_epochs",
    "batch_size",
    "prompt_only",
    "es",
    "eval",
)
#: Key of a checkpoint that holds :func:`run_identity` (plain values: loads with ``weights_only=True``).
IDENTITY_KEY = "run_identity"


def split_checksum(split: dict[str, np.ndarray]) -> str:
    """sha256 of a split's row indices, part by part (train, valid, test, in order)."""
    h = hashlib.sha256()
    for part in ("train", "valid", "test"):
        idx = np.asarray(split.get(part, ()), dtype=np.int64)
        h.update(f"{part}:{len(idx)}:".encode())
        h.update(idx.tobytes())
    return h.hexdigest()


def run_identity(opts: Any, data_sha256: str, split: dict[str, np.ndarray]) -> dict[str, Any]:
    """What a resumed run must repeat: :data:`RESUME_OPTIONS`, the data, the split and the starting model.

    ``opts`` is a :class:`~.options.TrainOptions`. A split file is identified by its content, not its path;
    ``split_sha256`` also catches a split that a seed or ``--limit`` changed.
    """
    from ..io.checksums import file_sha256

    identity: dict[str, Any] = {name: getattr(opts, name) for name in RESUME_OPTIONS}
    if str(opts.dataset).endswith(".json"):
        identity["dataset"] = "split file"
        identity["split_file_sha256"] = file_sha256(opts.dataset)
    identity["data_sha256"] = data_sha256
    identity["split_sha256"] = split_checksum(split)
    identity["init_sha256"] = file_sha256(opts.init_from) if opts.init_from else None
    if getattr(opts, "gap_head", False):  # runs without a gap head keep the identity they always had
        identity |= {"gap_weight": opts.gap_weight, "gap_pos_weight": opts.gap_pos_weight}
    return identity


class RunIdentityCallback(Callback):
    """Writes :func:`run_identity` (and the number of processes) into every checkpoint, for resume checks."""

    def __init__(self, identity: dict[str, Any]) -> None:
        self.identity = dict(identity)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        """Store the run identity and the number of processes under the identity key."""
        checkpoint[IDENTITY_KEY] = self.identity | {"world_size": int(trainer.world_size)}


def _short(value: Any) -> str:
    """``repr`` of a value, a sha256 cut to its first 12 digits."""
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return repr(value[:12] + "...")
    return repr(value)


def check_resume_identity(ckpt: dict[str, Any], path: str | os.PathLike, identity: dict[str, Any]) -> None:
    """:class:`CheckpointError` naming every difference between the checkpoint's run and this one.

    ``identity`` is :func:`run_identity` of the new run plus its ``world_size``. A checkpoint without
    an identity (written before these checks) cannot be shown to match, so it is refused too.
    """
    stored = ckpt.get(IDENTITY_KEY)
    if not isinstance(stored, dict):
        raise CheckpointError(
            f"cannot resume from {path}: it does not record the data, split, seed and optimiser settings it was "
            "trained with (written by an older version), so a resume could silently mix two runs; start afresh "
            "with a new --out"
        )
    shown = _differences(stored, identity, _short)
    if shown:
        raise CheckpointError(
            f"cannot resume from {path}: this run differs from the one it would continue ({shown}); "
            "pass the same data and options (only --epochs and hardware options may change), or a new --out"
        )
