"""Which torch device a model runs on: the argument, else ``$DOSTRANSFORMER_DEVICE``, else cuda, else cpu."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .errors import OptionError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["DEVICE_ENV", "resolve_device"]

#: Environment variable consulted by :func:`resolve_device` when no device is passed.
DEVICE_ENV = "DOSTRANSFORMER_DEVICE"


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: the argument, else ``$DOSTRANSFORMER_DEVICE``, else cuda if available, else cpu.

    An unknown device name, or cuda on a machine without it, raises :class:`~ase_dostransformer.errors.OptionError`.
    """
    import torch

    if device is None or (isinstance(device, str) and not device.strip()):
        device = os.environ.get(DEVICE_ENV, "").strip() or None
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise OptionError(f"invalid device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {device!r} requested but CUDA is not available on this machine")
    return resolved
