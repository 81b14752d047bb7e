"""Continuous per-element descriptors, so that rare elements share what the model learns.

The seed's phonon nodes are a one-hot of Z carrying the mass: every element is learnt on its own,
and the training crystals show many elements only a handful of times. These
descriptors place elements on shared axes that matter for vibrations (mass, 1/sqrt(mass) which
sets frequency scales, electronegativity and radius for bond stiffness, row and group).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from ase.data import atomic_masses, covalent_radii

DESCRIPTORS: tuple[str, ...] = (
    "log_mass/5",
    "3/sqrt(mass)",
    "electronegativity/4",
    "no_electronegativity",
    "covalent_radius/2",
    "row/7",
    "group/18",
)


@lru_cache(maxsize=1)
def element_descriptor_table() -> np.ndarray:
    """``(119, len(DESCRIPTORS))`` float32 table indexed by atomic number (row 0 unused).

    Elements without a Pauling electronegativity (noble gases, superheavies) get 0 in that column and
    1 in ``no_electronegativity``. The value is read from pymatgen's element data rather than
    ``Element.X``, which warns for those elements: no warning filter is touched, so the first call
    is safe from any thread.
    """
    from pymatgen.core.periodic_table import Element

    table = np.zeros((119, len(DESCRIPTORS)), dtype=np.float32)
    for z in range(1, 119):
        el = Element.from_Z(z)
        mass = float(atomic_masses[z]) if atomic_masses[z] > 0 else 2.0 * z
        x = el.data.get("X")  # what Element.X returns, without its warning when it is absent
        has_x = isinstance(x, (int, float)) and np.isfinite(x) and x > 0
        table[z] = (
            np.log(mass) / 5.0,
            3.0 / np.sqrt(mass),
            float(x) / 4.0 if has_x else 0.0,
            0.0 if has_x else 1.0,
            float(covalent_radii[z]) / 2.0,
            el.row / 7.0,
            (el.group or 0) / 18.0,
        )
    return table
