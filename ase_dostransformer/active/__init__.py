"""Active learning of the electron DOS: choose crystals to label with DFT by the model's uncertainty and diversity.

:mod:`.pool` assembles the unlabelled crystals (the phonon dataset's crystals outside its test split,
the teacher's relaxed elemental and prototype crystals, structure files); :mod:`.acquisition` picks a
batch (ensemble disagreement thinned for diversity, or at random as the baseline); :mod:`.labeller`
labels it (GPAW through ``train/edos/gpaw_runner.py``, or stored GPAW results for tests), resumably;
:mod:`.loop` runs select -> label -> retrain -> evaluate on a fixed test set until the label budget is
spent, writing the learning curve, and continues from its state file when restarted.
"""

from __future__ import annotations

__all__ = ["acquisition", "labeller", "loop", "pool"]
