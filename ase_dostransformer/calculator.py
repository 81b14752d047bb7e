"""``DOSCalculator``: the phonon density of states of a crystal as an ASE calculator property.

Usage::

    from ase.build import bulk
    from ase_dostransformer.calculator import DOSCalculator

    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = DOSCalculator()                           # the shipped model, offline
    y = atoms.calc.get_property("phonon_dos", atoms)       # (51,) on 0..1000 cm^-1, peak ~1 (max-normalised scale)
    dos = atoms.calc.get_phonon_dos()                      # ase GridDOSData: THz, states/THz/cell, 3N

``phonon_dos`` is cached until the atoms change (positions, cell, numbers, pbc) or a parameter is
set. ASE's generic property machinery knows only its own names: ``atoms.get_properties`` and the
extxyz / trajectory / db writers reject or drop ``phonon_dos``; export with :meth:`get_phonon_dos`,
``ase_dostransformer.io.phonopy_files`` or ``dostransformer predict`` instead.

Importing this module needs only ASE and NumPy; torch and the model load when a calculator is made.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from ase.spectrum.dosdata import GridDOSData
    from pymatgen.phonon.dos import PhononDos

    from .model import DOSTransformer
    from .thermo import ThermalProperties


class SpectrumCutOffWarning(UserWarning):
    """The predicted spectrum is still high at the top of the 0..1000 cm^-1 window."""


CUT_OFF_MESSAGE = (
    "the predicted phonon DOS is still above {threshold:.0%} of its maximum at the top of the "
    "{top:g} cm^-1 window: the spectrum continues past the grid, so the 3N scaling and any "
    "thermodynamics from it are approximate"
)
UNSEEN_SYSTEM_MESSAGE = "crystal system {system!r} was absent from the training data: the model used its mean prompt"


class DOSCalculator(Calculator):
    """ASE calculator predicting the phonon DOS of a periodic crystal with a DOSTransformer.

    ``model``: a registered name (default ``"phonon"``, the shipped model), a path to a model file,
    or a loaded :class:`~ase_dostransformer.model.DOSTransformer`. ``device``: as
    :func:`~ase_dostransformer.inference.resolve_device` (argument, ``$DOSTRANSFORMER_DEVICE``,
    cuda, cpu). ``batch_size``: structures per forward pass in :meth:`predict_many`.

    Results after a calculation: ``results["phonon_dos"]`` (the property, a ``(51,)`` array,
    max-normalised, on :attr:`frequencies_cm1`), plus ``results["phonon_dos_cut_off"]`` (bool),
    ``results["phonon_dos_out_of_domain"]`` (bool: elements never seen in training, or more atoms
    than any training cell) and ``results["phonon_dos_warnings"]`` (list of str, each also issued
    as a Python warning).

    Invalid atoms (see :mod:`ase_dostransformer.graphs.validation`) raise
    :class:`~ase_dostransformer.graphs.InvalidStructureError`, a ``ValueError`` naming the fault.
    """

    implemented_properties = ["phonon_dos"]
    discard_results_on_any_change = True
    default_parameters: dict[str, Any] = {"cut_off_threshold": 0.05}
    name = "dostransformer"

    def __init__(
        self,
        model: str | os.PathLike | DOSTransformer = "phonon",
        device: Any = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        import torch

        from .inference import graph_recipe, require_task, resolve_device

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        if isinstance(model, torch.nn.Module):  # a DOSTransformer or a DOSEnsemble
            self.model = model.to(self.device).eval()
        else:
            from .pretrained import load_model

            self.model = load_model(model, self.device)
        require_task(self.model, "phonon")
        self.recipe = graph_recipe(self.model)
        self.batch_size = int(batch_size)

    @property
    def frequencies_cm1(self) -> np.ndarray:
        """The frequency grid of ``results["phonon_dos"]`` in cm^-1."""
        return self.model.cfg.grid.values

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] | None = None,
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Predict the phonon DOS of ``atoms`` into ``self.results``."""
        super().calculate(atoms, properties or ["phonon_dos"], system_changes)
        from .graphs import OutOfDomainWarning
        from .inference import domain_check, predict_graphs

        graph = self.recipe.featurise(self.atoms)
        domain = domain_check(self.model, graph)
        dos = predict_graphs(self.model, [graph], batch_size=1, device=self.device)[0]
        cut_off, found = self._check(dos, int(graph.system.item()))
        found = [(message, OutOfDomainWarning) for message in domain.messages()] + found
        self.results["phonon_dos"] = dos
        self.results["phonon_dos_cut_off"] = cut_off
        self.results["phonon_dos_out_of_domain"] = domain.out_of_domain
        self.results["phonon_dos_warnings"] = [message for message, _ in found]
        for message, category in found:
            warnings.warn(message, category, stacklevel=3)

    def _check(self, dos: np.ndarray, system: int) -> tuple[bool, list[tuple[str, type[Warning]]]]:
        """Whether the spectrum is cut off at the top of the window, and warnings for it."""
        from .graphs import CRYSTAL_SYSTEMS
        from .spectra import is_cut_off

        threshold = float(self.parameters.get("cut_off_threshold", 0.05))
        found: list[tuple[str, type[Warning]]] = []
        cut_off = is_cut_off(dos, threshold)
        if cut_off:
            top = self.model.cfg.grid.stop
            found.append((CUT_OFF_MESSAGE.format(threshold=threshold, top=top), SpectrumCutOffWarning))
        if not bool(self.model.seen_systems[system]):
            found.append((UNSEEN_SYSTEM_MESSAGE.format(system=CRYSTAL_SYSTEMS[system]), UserWarning))
        if not np.any(dos > 0):
            found.append(("the model predicted an all-zero spectrum; it cannot be scaled to 3N states", UserWarning))
        return cut_off, found

    def set_atoms(self, atoms: Atoms) -> None:
        """Remember the ``Atoms`` this calculator is attached to (ASE calls this on ``atoms.calc = calc``)."""
        self._attached = weakref.ref(atoms)

    def _atoms(self, atoms: Atoms | None) -> Atoms:
        """``atoms``, else the attached ``Atoms`` (as they are now), else those of the last calculation."""
        if atoms is None:
            ref = getattr(self, "_attached", None)
            attached = ref() if ref is not None else None
            atoms = attached if attached is not None and attached.calc is self else self.atoms
        if atoms is None:
            raise ValueError("no atoms: pass atoms, or attach this calculator first (atoms.calc = calc)")
        return atoms

    def get_phonon_dos_normalised(self, atoms: Atoms | None = None) -> np.ndarray:
        """The max-normalised ``(51,)`` spectrum on :attr:`frequencies_cm1` (cached)."""
        atoms = self._atoms(atoms)
        return np.array(self.get_property("phonon_dos", atoms))

    def get_phonon_dos_phonopy(self, atoms: Atoms | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(frequencies_THz, dos)`` in phonopy's convention: states/THz/cell integrating to 3N."""
        from .spectra import phonon_dos_to_phonopy

        atoms = self._atoms(atoms)
        y = self.get_phonon_dos_normalised(atoms)
        return phonon_dos_to_phonopy(y, len(atoms), self.model.cfg.grid)

    def get_phonon_dos(self, atoms: Atoms | None = None) -> GridDOSData:
        """The DOS as ASE ``GridDOSData``: energies in THz, weights in states/THz/cell (integral 3N)."""
        from .io.phonopy_files import to_ase_dos

        atoms = self._atoms(atoms)
        freqs, dos = self.get_phonon_dos_phonopy(atoms)
        info = {
            "label": atoms.get_chemical_formula(),
            "property": "phonon_dos",
            "unit": "THz",
            "dos_unit": "states/THz/cell",
            "units": "energies: THz; weights: states/THz/cell",
            "normalisation": f"integral = 3N = {3 * len(atoms)}",
            "cut_off": str(bool(self.results.get("phonon_dos_cut_off", False))),
            "source": "ase_dostransformer.DOSCalculator",
        }
        return to_ase_dos(freqs, dos, info=info)

    def get_pymatgen_phonon_dos(self, atoms: Atoms | None = None) -> PhononDos:
        """The DOS as ``pymatgen.phonon.dos.PhononDos`` (THz, states/THz/cell, integral 3N)."""
        from .io.phonopy_files import to_pymatgen_phonon_dos

        return to_pymatgen_phonon_dos(*self.get_phonon_dos_phonopy(atoms))

    def get_thermal_properties(
        self, atoms: Atoms | None = None, temperatures: Any = (300.0,), per_atom: bool = False
    ) -> ThermalProperties:
        """Harmonic Cv, S, F, U and ZPE from the predicted DOS (per mole of cells by default)."""
        from .thermo import thermal_properties

        atoms = self._atoms(atoms)
        freqs, dos = self.get_phonon_dos_phonopy(atoms)
        return thermal_properties(freqs, dos, temperatures, per_atom=per_atom, natoms=len(atoms))

    def get_heat_capacity(
        self, atoms: Atoms | None = None, temperature: float = 300.0, per_atom: bool = False
    ) -> float:
        """Cv in J/K/mol (of cells, or of atoms with ``per_atom``) at one temperature."""
        return float(self.get_thermal_properties(atoms, [temperature], per_atom=per_atom).cv[0])

    def predict_many(self, structures: Sequence[Any]) -> np.ndarray:
        """Max-normalised spectra ``(n, 51)`` of many structures in batches; no caching, same numbers as one by one."""
        from .inference import predict_phonon_dos

        return predict_phonon_dos(self.model, structures, batch_size=self.batch_size, device=self.device)
