"""Escalation: the most doubtful predictions recomputed by the teacher (universal potential + phonopy).

A screening run predicts thousands of crystals in seconds; the few it doubts most (out of the
training domain, or with the largest calibrated uncertainty) are worth a few CPU-seconds to a
minute each with the shipped universal potential driving phonopy finite displacements, the same
computation as the teacher labels (:mod:`ase_dostransformer.teacher.phonons`). This module chooses
them (:func:`select_doubtful`), recomputes them (:func:`refine_structures`) and returns each result
as a :class:`Refinement`: the teacher's DOS on its fine grid, in phonopy's units, and on the model's
grid in the model's normalisation, so that both can be written and compared side by side.

The teacher is not DFT: its frequencies run soft and it calls some crystals dynamically unstable
that DFT finds stable (its measurements against DFT are in ``train/teacher/README.md``).
A refined crystal whose teacher spectrum has imaginary modes keeps ``status="unstable"``, its
spectrum (the real part) and the fraction of imaginary modes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import OptionError
from .teacher.phonons import THZ_TO_CM1

if TYPE_CHECKING:  # pragma: no cover
    from .pipeline import Prediction
    from .spectra import EnergyGrid
    from .teacher.phonons import PhononSettings

__all__ = ["Refinement", "doubt", "refine_structures", "select_doubtful", "teacher_quantities"]


@dataclass(frozen=True)
class Refinement:
    """The teacher's phonon DOS of one structure, or why there is none (``error``).

    ``frequencies_cm1`` / ``dos_cm1``: the teacher's fine grid (2 cm^-1) and DOS in states per cm^-1
    per cell (integral 3N); :attr:`frequencies_thz` / :attr:`dos_thz` are the same in phonopy's units,
    converted back with the teacher's own factor (:data:`~ase_dostransformer.teacher.phonons.THZ_TO_CM1`).
    ``dos_on_grid``: the teacher DOS on the model's grid, Gaussian-smoothed as the training data were
    and max-normalised like the model's output (None when no grid was given).
    """

    index: int  # position in the input
    status: str  # "ok", "unstable" or "failed"
    frequencies_cm1: np.ndarray | None = None
    dos_cm1: np.ndarray | None = None
    dos_on_grid: np.ndarray | None = None
    imaginary_fraction: float | None = None
    thermal: dict[str, Any] = field(default_factory=dict)  # the record's thermodynamics (per mole of cells)
    cpu_seconds: float | None = None
    record: dict[str, Any] | None = None  # the full teacher record (settings, versions, relaxation)
    error: BaseException | None = None

    @property
    def ok(self) -> bool:
        """A teacher spectrum exists (stable or not)."""
        return self.error is None and self.dos_cm1 is not None

    @property
    def frequencies_thz(self) -> np.ndarray | None:
        """The fine grid in THz."""
        return None if self.frequencies_cm1 is None else self.frequencies_cm1 / THZ_TO_CM1

    @property
    def dos_thz(self) -> np.ndarray | None:
        """The DOS in states per THz per cell (phonopy's ``total_dos.dat`` unit)."""
        return None if self.dos_cm1 is None else self.dos_cm1 * THZ_TO_CM1


def doubt(prediction: Prediction) -> tuple[int, float]:
    """How doubtful a prediction is, as a sort key (larger = more doubtful).

    Failed predictions first, then out-of-domain ones, then by calibrated scalar uncertainty (or,
    without one, the mean per-bin spread of the ensemble members relative to the peak; 0 without either).
    """
    if not prediction.ok:
        return (2, math.inf)
    value = prediction.uncertainty
    if value is None and prediction.members is not None and prediction.dos is not None:
        peak = float(np.max(prediction.dos)) or 1.0
        value = float(np.std(prediction.members, axis=0, ddof=1).mean() / peak)
    value = float(value) if value is not None and math.isfinite(value) else 0.0
    return (1 if prediction.out_of_domain else 0, value)


def select_doubtful(
    predictions: Sequence[Prediction], k: int | None = None, threshold: float | None = None
) -> list[int]:
    """Positions (``Prediction.index``) of the predictions to refine, most doubtful first.

    ``k``: at most this many; ``threshold``: only those whose scalar uncertainty is above it (and every
    out-of-domain or failed one). Both may be given; at least one must be.
    """
    if k is None and threshold is None:
        raise OptionError("select_doubtful needs k, threshold or both")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
        raise OptionError(f"k must be a non-negative integer, got {k!r}")
    if threshold is not None and not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise OptionError(f"threshold must be a finite number, got {threshold!r}")
    ranked = sorted(predictions, key=doubt, reverse=True)
    if threshold is not None:
        ranked = [p for p in ranked if doubt(p)[0] > 0 or doubt(p)[1] > threshold]
    if k is not None:
        ranked = ranked[:k]
    return [p.index for p in ranked]


def refine_structures(
    structures: Sequence[Any],
    indices: Sequence[int] | None = None,
    *,
    grid: EnergyGrid | None = None,
    settings: PhononSettings | None = None,
    device: str | None = None,
    potential: Any = None,
    sigma_cm1: float = 10.0,
) -> list[Refinement]:
    """Teacher phonon DOS of ``structures[i]`` for each ``i`` in ``indices`` (default: all).

    ``settings``: the teacher's :class:`~ase_dostransformer.teacher.phonons.PhononSettings` (default:
    positions relaxed under symmetry, cell kept: the setting that agrees best with DFT on DFT-relaxed
    cells; pass ``PhononSettings(relax_cell=True)`` for unrelaxed cells). ``potential``: an already
    loaded :class:`~ase_dostransformer.teacher.potential.TeacherPotential` (default: load the shipped
    one). ``grid``: also give each result on this grid (``dos_on_grid``), smoothed by a Gaussian of
    ``sigma_cm1`` and max-normalised. A structure the teacher cannot handle gets ``status="failed"``
    and its ``error``; the others go on.
    """
    from .batching import as_structure_list
    from .teacher.phonons import PhononSettings, label_crystal
    from .teacher.potential import load_teacher, make_calculator
    from .teacher.records import decode_dos, max_normalised_on

    items = as_structure_list(structures)
    chosen = list(range(len(items))) if indices is None else [int(i) for i in indices]
    bad = [i for i in chosen if not 0 <= i < len(items)]
    if bad:
        raise OptionError(f"indices out of range for {len(items)} structures: {bad}")
    if grid is not None and grid.unit not in ("cm^-1", "cm-1"):
        raise OptionError(f"refining needs a phonon grid in cm^-1, got {grid.unit!r}")
    if not chosen:
        return []
    settings = settings or PhononSettings()
    teacher = potential if potential is not None else load_teacher(device)
    calc = make_calculator(teacher.potential, teacher.device)
    out: list[Refinement] = []
    for i in chosen:
        try:
            atoms = _as_atoms(items[i])
            record = label_crystal(atoms, calc, settings, device=teacher.device)
        except Exception as exc:  # noqa: BLE001 - one crystal's failure must not stop the others
            out.append(Refinement(i, "failed", error=exc))
            continue
        freq, total, _ = decode_dos(record)
        on_grid = None if grid is None else max_normalised_on(freq, total, grid.values, sigma_cm1)
        out.append(
            Refinement(
                i,
                str(record.get("status", "ok")),
                frequencies_cm1=freq,
                dos_cm1=total,
                dos_on_grid=on_grid,
                imaginary_fraction=float(record.get("frequencies", {}).get("imaginary_fraction", 0.0)),
                thermal=dict(record.get("thermal", {})),
                cpu_seconds=float(record.get("cpu_seconds", {}).get("total", float("nan"))),
                record=record,
            )
        )
    return out


def teacher_quantities(refinement: Refinement, natoms: int, temperatures: Sequence[float]) -> dict[str, float]:
    """Heat capacity and entropy of a teacher DOS at each temperature, named as the screening columns.

    From the teacher's fine-grid DOS (states/THz/cell) by :func:`ase_dostransformer.thermo.thermal_properties`:
    ``cv_<T>K_J_per_K_per_mol_cells``, ``..._per_mol_atoms``, ``entropy_<T>K_...`` as
    :func:`ase_dostransformer.screening.quantity_columns` names them. Empty for a failed refinement.
    """
    from .screening import temperature_label
    from .thermo import thermal_properties

    if not refinement.ok or refinement.frequencies_thz is None or refinement.dos_thz is None:
        return {}
    t = np.atleast_1d(np.asarray(temperatures, dtype=float))
    tp = thermal_properties(refinement.frequencies_thz, refinement.dos_thz, t, natoms=int(natoms))
    out: dict[str, float] = {}
    for j, temp in enumerate(t):
        label = temperature_label(temp)
        for name, values in (("cv", tp.cv), ("entropy", tp.entropy)):
            out[f"{name}_{label}_J_per_K_per_mol_cells"] = float(values[j])
            out[f"{name}_{label}_J_per_K_per_mol_atoms"] = float(values[j]) / natoms
    return out


def _as_atoms(structure: Any) -> Any:
    """An ASE ``Atoms`` copy of an ``Atoms`` or a pymatgen ``Structure``."""
    from ase import Atoms

    if isinstance(structure, Atoms):
        return structure.copy()
    from pymatgen.io.ase import AseAtomsAdaptor

    return AseAtomsAdaptor.get_atoms(structure)
