"""The phonon teacher: a shipped universal potential + phonopy labelling crystals far beyond the DFT dataset.

Modules: :mod:`.potential` (load the shipped TensorNet-MatPES potential, corrected, as an ASE
calculator), :mod:`.phonons` (one crystal -> one record), :mod:`.pipeline` (many crystals ->
records with a manifest, resumable, sharded, parallel), :mod:`.records` (read records back),
:mod:`.structures` (what to label: elements, prototype compounds, strained copies); the command is
``dostransformer dataset phonons`` (:mod:`ase_dostransformer.cli.dataset`). Heavy imports happen
inside functions.
"""

from __future__ import annotations

# No re-exports: importing a submodule (e.g. ``teacher.potential`` for the foundation features) must not
# pull in the labelling pipeline and, through it, the dataset readers and graphs (an import cycle).
__all__: list[str] = []
