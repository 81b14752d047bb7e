"""The phonon teacher: a shipped universal potential + phonopy labelling crystals far beyond the DFT dataset.

Modules: :mod:`.potential` (load the shipped TensorNet-MatPES potential, corrected, as an ASE
calculator), :mod:`.phonons` (one crystal -> one record), :mod:`.pipeline` (many crystals ->
records with a manifest, resumable, sharded, parallel), :mod:`.records` (read records back),
:mod:`.command` (``dostransformer dataset phonons``). Heavy imports happen inside functions.
"""

from __future__ import annotations

__all__ = ["label_crystal", "load_teacher", "run_pipeline"]


def __getattr__(name: str):  # pragma: no cover - lazy re-exports
    if name == "load_teacher":
        from .potential import load_teacher

        return load_teacher
    if name == "label_crystal":
        from .phonons import label_crystal

        return label_crystal
    if name == "run_pipeline":
        from .pipeline import run_pipeline

        return run_pipeline
    raise AttributeError(name)
