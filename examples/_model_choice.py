"""Shared by the examples: which model to load (``--model``, else ``$DOSTRANSFORMER_MODEL``, else the shipped one)."""

from __future__ import annotations

import os

#: Environment variable the examples read when ``--model`` is not given.
MODEL_ENV = "DOSTRANSFORMER_MODEL"


def model_choice(arg: str | None) -> str:
    """The model name or file to use."""
    return arg or os.environ.get(MODEL_ENV) or "phonon"
