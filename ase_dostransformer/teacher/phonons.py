"""One crystal -> one teacher record: relax with symmetry kept, phonopy finite displacements, DOS, thermodynamics.

Steps (settings in :class:`PhononSettings`, each stated with its reason there):

1. **Checks**: periodic in 3D, no two atoms closer than ``min_distance``, every element known to the
   potential, at most ``max_atoms`` atoms, masses of their own (isotopes) finite and positive: a
   :class:`TeacherInputError` (a ``ValueError``) names the fault.
2. **Relaxation** under ``ase.constraints.FixSymmetry`` (the space group is kept): positions only
   by default, the cell too when ``relax_cell`` (``FrechetCellFilter``). FIRE to ``fmax``.
3. **Force constants**: phonopy on a diagonal supercell whose vectors are at least
   ``supercell_length`` long (reduced along its longest vector while it holds more than
   ``max_supercell_atoms`` atoms), ``generate_displacements(distance)``; the forces of the
   undisplaced supercell (residuals of the relaxation) are subtracted from every displaced one,
   then each displaced supercell's mean force (drift) is removed; ``produce_force_constants`` and
   ``symmetrize_force_constants`` (translational and permutation symmetry).
4. **Spectra**: a mesh of length ``mesh_length`` over the input cell's Brillouin zone, eigenvectors
   kept; tetrahedron element-projected DOS on a ``dos_step_cm1`` grid from 0 to above the highest
   mode; the total DOS is their sum (integrates to 3N, N atoms of the input cell).
5. **Thermodynamics** from the mesh (phonopy's sums, per mole of input cells): Cv, S, F, U at
   ``temperatures``, and the zero-point energy.
6. **Stability**: the fraction of modes on the mesh below ``-imag_tol_cm1``; above
   ``max_imaginary_fraction`` the crystal is *unstable* (recorded, flagged, not used for training).
"""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InvalidStructureError, OptionError, TeacherComputationError, TeacherInputError

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from ase.calculators.calculator import Calculator

#: cm^-1 per THz.
THZ_TO_CM1 = 33.35641
#: Quantisation of stored spectra: integers, 1 = this fraction of the spectrum's maximum.
DOS_QUANTUM = 1e-4
#: Version of the record layout; bump when its meaning changes.
RECORD_VERSION = 1


@dataclass(frozen=True)
class PhononSettings:
    """Settings of one labelling; stored in every record.

    Defaults, with their reasons:

    * ``relax_cell=False``: the DFT dataset's cells are DFT-relaxed, and relaxing them with the
      teacher expands them, which softens every mode; against the DFT DOS of test crystals, positions
      only agrees better than relaxing the cell too (the comparison is in train/teacher/README.md).
      Generated crystals (prototypes with guessed lattices) need ``relax_cell=True``: per run, or per
      crystal with ``atoms.info["relax_cell"] = True``.
    * ``fmax=0.005`` eV/A: at 0.05, residual forces are as large as a 0.01 A displacement's response
      and left spurious imaginary modes on test crystals (benchmarks/compare_uip.py).
    * ``supercell_length=10`` A, ``max_supercell_atoms=256``: force constants of TensorNet's 5 A
      cutoff (x2 message-passing blocks) are captured; the cap bounds the cost of 16-40-atom cells.
    * ``displacement=0.01`` A: phonopy's default, in the harmonic regime.
    * ``mesh_length=40`` A: converged for the dataset's 20 cm^-1 grid at a fraction of the cost of
      denser meshes (the convergence check is in benchmarks/compare_uip.py).
    * ``dos_step_cm1=2``: the issue's resolution; 10x finer than the dataset's 20 cm^-1 bins.
    * ``imag_tol_cm1=3``, ``max_imaginary_fraction=0.01``: numerical noise near Gamma is a few
      cm^-1; more than 1% of modes clearly imaginary means a dynamically unstable crystal.
    """

    relax_cell: bool = False
    fmax: float = 0.005
    relax_steps: int = 300
    symprec: float = 1e-3
    supercell_length: float = 10.0
    max_supercell_atoms: int = 256
    displacement: float = 0.01
    mesh_length: float = 40.0
    dos_step_cm1: float = 2.0
    imag_tol_cm1: float = 3.0
    max_imaginary_fraction: float = 0.01
    temperatures: tuple[float, ...] = (
        10, 20, 30, 50, 75, 100, 150, 200, 250, 300, 400, 500, 600, 800, 1000,
    )  # fmt: skip
    max_atoms: int = 64
    min_distance: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.dos_step_cm1 <= 2.0:
            raise OptionError(f"dos_step_cm1 must be in (0, 2], got {self.dos_step_cm1}")
        for name in ("fmax", "supercell_length", "displacement", "mesh_length"):
            if not getattr(self, name) > 0:
                raise OptionError(f"{name} must be positive, got {getattr(self, name)}")
        if any(t <= 0 for t in self.temperatures):
            raise OptionError("temperatures must be positive (the zero-point energy is stored separately)")

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly settings."""
        d = asdict(self)
        d["temperatures"] = list(self.temperatures)
        return d


@dataclass
class _Timer:
    cpu: dict[str, float] = field(default_factory=dict)
    wall: dict[str, float] = field(default_factory=dict)

    def start(self) -> tuple[float, float]:
        return time.process_time(), time.perf_counter()

    def stop(self, name: str, t0: tuple[float, float]) -> None:
        self.cpu[name] = round(time.process_time() - t0[0], 3)
        self.wall[name] = round(time.perf_counter() - t0[1], 3)


def package_versions() -> dict[str, str]:
    """Versions of the packages a label depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("ase-dostransformer", "matgl", "torch", "phonopy", "ase", "numpy", "spglib"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "absent"
    return out


def check_structure(atoms: Atoms, settings: PhononSettings, elements: tuple[str, ...] | None = None) -> None:
    """Raise :class:`TeacherInputError` naming what makes ``atoms`` unusable."""
    from ase.data import chemical_symbols

    n = len(atoms)
    if n == 0:
        raise TeacherInputError("structure has no atoms")
    if n > settings.max_atoms:
        raise TeacherInputError(f"structure has {n} atoms, more than max_atoms={settings.max_atoms}")
    if not all(atoms.pbc):
        raise TeacherInputError(f"structure is not periodic in 3D (pbc={list(map(bool, atoms.pbc))})")
    vol = abs(float(np.linalg.det(atoms.cell[:])))
    if not np.isfinite(vol) or vol < 1e-3:
        raise TeacherInputError(f"cell is singular (volume {vol:.3g} A^3)")
    if not np.isfinite(atoms.positions).all():
        raise TeacherInputError("positions contain NaN or infinity")
    bad = [(i, z) for i, z in enumerate(atoms.numbers) if not 0 < z < len(chemical_symbols)]
    if bad:
        raise TeacherInputError(f"atom {bad[0][0]} has atomic number {bad[0][1]}")
    if elements is not None:
        unknown = sorted({s for s in atoms.get_chemical_symbols() if s not in elements})
        if unknown:
            raise TeacherInputError(f"element(s) {', '.join(unknown)} not covered by the teacher potential")
    from ase.neighborlist import neighbor_list

    i, j, d = neighbor_list("ijd", atoms, settings.min_distance)
    if len(d):
        k = int(np.argmin(d))
        raise TeacherInputError(
            f"atoms {int(i[k])} ({atoms[int(i[k])].symbol}) and {int(j[k])} ({atoms[int(j[k])].symbol}) "
            f"are {float(d[k]):.3f} A apart (< {settings.min_distance} A)"
        )


def _spacegroup(atoms: Atoms, symprec: float) -> str:
    import spglib

    try:
        return str(spglib.get_spacegroup((atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers), symprec=symprec))
    except Exception:  # noqa: BLE001 - informative only
        return "?"


def relax(atoms: Atoms, calc: Calculator, settings: PhononSettings) -> tuple[Atoms, dict[str, Any]]:
    """Relax under FixSymmetry (positions; the cell too if ``settings.relax_cell``)."""
    from ase.constraints import FixSymmetry
    from ase.filters import FrechetCellFilter
    from ase.optimize import FIRE

    a = atoms.copy()
    a.info = {}
    sg_before = _spacegroup(a, settings.symprec)
    a.calc = calc
    a.set_constraint(FixSymmetry(a, symprec=settings.symprec))
    target = FrechetCellFilter(a) if settings.relax_cell else a
    opt = FIRE(target, logfile=None)
    converged = bool(opt.run(fmax=settings.fmax, steps=settings.relax_steps))
    forces = target.get_forces()
    energy = float(a.get_potential_energy())
    stress = a.get_stress(voigt=True)
    a.set_constraint()
    relaxed = a.copy()
    relaxed.calc = None
    if not np.isfinite(relaxed.positions).all() or not np.isfinite(energy):
        raise TeacherComputationError("relaxation produced non-finite positions or energy")
    info = {
        "converged": converged,
        "steps": int(opt.nsteps),
        "final_fmax": round(float(np.sqrt((forces**2).sum(axis=1)).max()), 6),
        "energy_per_atom": round(energy / len(a), 6),
        "pressure_gpa": round(float(-np.mean(stress[:3]) * 160.21766), 4),
        "volume_ratio": round(float(relaxed.get_volume() / atoms.get_volume()), 6),
        "spacegroup_before": sg_before,
        "spacegroup_after": _spacegroup(relaxed, settings.symprec),
    }
    return relaxed, info


def supercell_diagonal(lengths: Any, natoms: int, min_length: float, max_atoms: int) -> list[int]:
    """``n_i = ceil(min_length / |a_i|)``, lowered along the longest supercell vector while over ``max_atoms``."""
    n = [max(1, math.ceil(min_length / float(length) - 1e-9)) for length in lengths]
    while natoms * math.prod(n) > max_atoms and max(n) > 1:
        i = max((j for j in range(3) if n[j] > 1), key=lambda j: n[j] * float(lengths[j]))
        n[i] -= 1
    return n


def quantise(values: np.ndarray, scale: float) -> list[int]:
    """Non-negative values -> integers in units of ``scale * DOS_QUANTUM``."""
    if scale <= 0:
        return [0] * len(values)
    q = np.rint(np.clip(values, 0.0, None) / (scale * DOS_QUANTUM))
    return [int(x) for x in q]


def _sig(x: Any, digits: int = 6) -> Any:
    """Round floats (or arrays of them) to ``digits`` significant digits for compact JSON."""
    arr = np.asarray(x, dtype=float)
    out = [float(f"{v:.{digits}g}") for v in arr.reshape(-1)]
    return out if arr.ndim else out[0]


def own_masses(atoms: Atoms) -> list[float] | None:
    """The masses (u) of ``atoms`` when any was set to its own value (``set_masses``: isotopes), else None.

    None lets phonopy take its standard masses, as every shipped record was labelled; the atoms' own masses
    go to phonopy's dynamical matrix (the force constants do not depend on them). A mass that is not finite
    and positive raises :class:`TeacherInputError` in the words of the model's own check
    (:func:`~ase_dostransformer.graphs.validation.check_masses`, naming the atom and its element).
    """
    from ..graphs.arrays import custom_mass_atoms
    from ..graphs.validation import check_masses

    if not atoms.has("masses"):
        return None
    masses = np.asarray(atoms.get_masses(), dtype=float)
    try:
        check_masses(masses, atoms.numbers)
    except InvalidStructureError as exc:
        raise TeacherInputError(str(exc)) from exc
    return masses.tolist() if custom_mass_atoms(masses, atoms.numbers) else None


def label_crystal(
    atoms: Atoms,
    calc: Calculator,
    settings: PhononSettings | None = None,
    *,
    elements: tuple[str, ...] | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Label one crystal; returns the record (``status`` ``ok`` or ``unstable``).

    Raises :class:`TeacherInputError` for unusable input and :class:`TeacherComputationError` (or
    phonopy's own errors) when the computation fails; :mod:`..pipeline` turns these into failure
    records.
    """
    from phonopy import Phonopy
    from phonopy.structure.atoms import PhonopyAtoms

    settings = settings or PhononSettings()
    check_structure(atoms, settings, elements)
    masses = own_masses(atoms)  # checked before the relaxation is spent; relaxing leaves the masses as they are
    timer = _Timer()
    t_all = timer.start()

    t0 = timer.start()
    relaxed, relax_info = relax(atoms, calc, settings)
    timer.stop("relax", t0)

    t0 = timer.start()
    unit = PhonopyAtoms(
        symbols=relaxed.get_chemical_symbols(),
        cell=relaxed.cell[:],
        scaled_positions=relaxed.get_scaled_positions(),
        masses=masses,
    )
    sc = supercell_diagonal(
        relaxed.cell.lengths(), len(relaxed), settings.supercell_length, settings.max_supercell_atoms
    )
    ph = Phonopy(unit, supercell_matrix=np.diag(sc), primitive_matrix="P", symprec=settings.symprec, log_level=0)
    ph.generate_displacements(distance=settings.displacement)
    from ase import Atoms as _Atoms

    def forces_of(cell: Any) -> np.ndarray:
        a = _Atoms(numbers=cell.numbers, cell=cell.cell, scaled_positions=cell.scaled_positions, pbc=True)
        a.calc = calc
        f = np.asarray(a.get_forces(), dtype=float)
        if not np.isfinite(f).all():
            raise TeacherComputationError("the potential returned non-finite forces")
        return f

    residual = forces_of(ph.supercell)
    displaced = ph.supercells_with_displacements
    forces = np.array([forces_of(c) - residual for c in displaced])
    drift = forces.mean(axis=1, keepdims=True)
    forces -= drift
    ph.forces = forces
    ph.produce_force_constants(show_drift=False)
    ph.symmetrize_force_constants(show_drift=False)
    timer.stop("forces", t0)
    lengths = np.asarray(relaxed.cell.lengths()) * np.asarray(sc)

    t0 = timer.start()
    ph.run_mesh(settings.mesh_length, is_mesh_symmetry=False, with_eigenvectors=True)
    freqs = np.asarray(ph.mesh.frequencies) * THZ_TO_CM1  # (nq, nbands)
    weights = np.asarray(ph.mesh.weights, dtype=float)
    if not np.isfinite(freqs).all():
        raise TeacherComputationError("non-finite phonon frequencies")
    w_modes = np.repeat(weights[:, None], freqs.shape[1], axis=1)
    imag_fraction = float(w_modes[freqs < -settings.imag_tol_cm1].sum() / w_modes.sum())
    f_max = float(freqs.max())
    if f_max <= 0:
        raise TeacherComputationError(f"no real phonon mode (highest frequency {f_max:.1f} cm^-1)")
    step = settings.dos_step_cm1
    n_pts = int(math.ceil((f_max + 5 * step) / step)) + 1
    ph.run_projected_dos(freq_min=0.0, freq_max=(n_pts - 1) * step / THZ_TO_CM1, freq_pitch=step / THZ_TO_CM1)
    fp = np.asarray(ph.projected_dos.frequency_points) * THZ_TO_CM1
    pdos_atoms = np.asarray(ph.projected_dos.projected_dos) / THZ_TO_CM1  # states per cm^-1, (natoms, npts)
    if not np.allclose(fp[: min(len(fp), 3)], np.arange(min(len(fp), 3)) * step, atol=1e-6):
        raise TeacherComputationError("unexpected DOS frequency grid from phonopy")
    symbols = relaxed.get_chemical_symbols()
    elements_here = sorted(set(symbols), key=symbols.index)
    pdos = {el: pdos_atoms[[i for i, s in enumerate(symbols) if s == el]].sum(axis=0) for el in elements_here}
    total = pdos_atoms.sum(axis=0)
    integral = float(np.trapezoid(total, fp)) if hasattr(np, "trapezoid") else float(np.trapz(total, fp))
    mean_freq = float(np.trapezoid(total * fp, fp) / integral) if integral > 0 else float("nan")

    ph.run_thermal_properties(
        temperatures=list(settings.temperatures), cutoff_frequency=settings.imag_tol_cm1 / THZ_TO_CM1
    )
    tp = ph.thermal_properties
    temps = np.asarray(tp.temperatures, dtype=float)
    free = np.asarray(tp.free_energy, dtype=float)  # kJ/mol
    entropy = np.asarray(tp.entropy, dtype=float)  # J/K/mol
    cv = np.asarray(tp.heat_capacity, dtype=float)  # J/K/mol
    internal = free + temps * entropy / 1000.0  # kJ/mol
    zpe = float(tp.zero_point_energy)  # kJ/mol
    timer.stop("dos", t0)
    timer.stop("total", t_all)

    scale = float(total.max())
    status = "unstable" if imag_fraction > settings.max_imaginary_fraction else "ok"
    import torch

    return {
        "record_version": RECORD_VERSION,
        "status": status,
        "reason": (
            f"dynamically unstable: {imag_fraction:.2%} of modes below -{settings.imag_tol_cm1} cm^-1"
            if status == "unstable"
            else ""
        ),
        "formula": relaxed.get_chemical_formula(),
        "natoms": len(relaxed),
        "structure": {
            "numbers": [int(z) for z in relaxed.numbers],
            "cell": [_sig(v, 10) for v in relaxed.cell[:]],
            "scaled_positions": [_sig(v, 10) for v in relaxed.get_scaled_positions(wrap=True)],
            **({"masses": [_sig(m, 10) for m in masses]} if masses is not None else {}),  # only the atoms' own
        },
        "relax": relax_info,
        "phonopy": {
            "supercell": sc,
            "supercell_atoms": len(relaxed) * math.prod(sc),
            "supercell_min_length": round(float(lengths.min()), 3),
            "n_displacements": len(displaced),
            "residual_force_max": round(float(np.sqrt((residual**2).sum(axis=1)).max()), 6),
            "drift_max": round(float(np.abs(drift).max()), 6),
            "mesh": [int(x) for x in ph.mesh.mesh_numbers],
        },
        "frequencies": {
            "max_cm1": round(f_max, 3),
            "min_cm1": round(float(freqs.min()), 3),
            "mean_cm1": round(mean_freq, 3),
            "imaginary_fraction": round(imag_fraction, 6),
        },
        "dos": {
            "unit": "states per cm^-1 per input cell (integral 3N)",
            "start_cm1": 0.0,
            "step_cm1": step,
            "n": int(len(fp)),
            "scale": _sig(scale, 8),
            "quantum": DOS_QUANTUM,
            "integral": round(integral, 4),
            "total": quantise(total, scale),
            "elements": {el: quantise(v, scale) for el, v in pdos.items()},
        },
        "thermal": {
            "unit": "per mole of input cells: Cv, S in J/K/mol; F, U, ZPE in kJ/mol",
            "temperatures": [float(t) for t in temps],
            "cv": _sig(cv),
            "entropy": _sig(entropy),
            "free_energy": _sig(free),
            "internal_energy": _sig(internal),
            "zpe": _sig(zpe),
        },
        "settings": settings.as_dict(),
        "versions": package_versions(),
        "cpu_seconds": timer.cpu,
        "wall_seconds": timer.wall,
        "threads": int(torch.get_num_threads()),
        "device": device,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
    }
