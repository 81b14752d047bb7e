"""``DOSCalculator``: the phonon and electron density of states of a crystal as ASE calculator properties.

Usage::

    from ase.build import bulk
    from ase_dostransformer.calculator import DOSCalculator

    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = DOSCalculator()                           # the shipped model, offline
    y = atoms.calc.get_property("phonon_dos", atoms)       # (51,) on 0..1000 cm^-1, peak ~1 (max-normalised scale)
    dos = atoms.calc.get_phonon_dos()                      # ase GridDOSData: THz, states/THz/cell, 3N
    edos = atoms.calc.get_electron_dos()                   # ase GridDOSData: eV relative to E_F, max-normalised

``phonon_dos`` and ``electron_dos`` are cached until the atoms change (positions, cell, numbers, pbc) or a parameter is
set. ASE's generic property machinery knows only its own names: ``atoms.get_properties`` and the
extxyz / trajectory / db writers reject or drop ``phonon_dos`` / ``electron_dos``; export with :meth:`get_phonon_dos`,
``ase_dostransformer.io.phonopy_files`` or ``dostransformer predict`` instead.

Importing this module needs only ASE and NumPy; torch and the phonon model load when a calculator
is made, the electron model on the first ``electron_dos`` request.
"""

from __future__ import annotations

import os
import warnings
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from ase.spectrum.dosdata import GridDOSData
    from pymatgen.electronic_structure.dos import Dos
    from pymatgen.phonon.dos import PhononDos

    from .electronic import GapEstimate
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
    """ASE calculator predicting the phonon and electron DOS of a periodic crystal with DOSTransformers.

    ``model``: the phonon model, a registered name (default ``"phonon"``, the shipped model), a path
    to a model file, or a loaded :class:`~ase_dostransformer.model.DOSTransformer`; ``None`` for an
    electron-DOS-only calculator. ``electron_model``: the same for the electron DOS (default
    ``"edos"``, the shipped model; loaded when ``electron_dos`` is first asked for). ``device``: as
    :func:`~ase_dostransformer.inference.resolve_device` (argument, ``$DOSTRANSFORMER_DEVICE``,
    cuda, cpu). ``batch_size``: structures per forward pass in :meth:`predict_many`.

    Results after a calculation: ``results["phonon_dos"]`` (the property, a ``(51,)`` array,
    max-normalised, on :attr:`frequencies_cm1`), plus ``results["phonon_dos_cut_off"]`` (bool),
    ``results["phonon_dos_out_of_domain"]`` (bool: elements never seen in training, more atoms
    than any training cell, a slab / molecule in a vacuum box, or a shortest bond or volume per atom
    outside the training range) and ``results["phonon_dos_warnings"]``
    (list of str, each also issued as a Python warning). ``results["electron_dos"]`` is the ``(201,)``
    max-normalised electron DOS on :attr:`energies_ev` (-5..5 eV around the Fermi level, or the
    valence-band top of an insulator), with the matching ``electron_dos_*`` flags.

    Invalid atoms (see :mod:`ase_dostransformer.graphs.validation`) raise
    :class:`~ase_dostransformer.graphs.InvalidStructureError`, a ``ValueError`` naming the fault.
    """

    implemented_properties = ["phonon_dos", "electron_dos"]
    discard_results_on_any_change = True
    default_parameters: dict[str, Any] = {"cut_off_threshold": 0.05}
    name = "dostransformer"

    def __init__(
        self,
        model: str | os.PathLike | DOSTransformer | None = "phonon",
        electron_model: str | os.PathLike | DOSTransformer | None = "edos",
        device: Any = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        import torch

        from .inference import graph_recipe, load_task_model, resolve_device

        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if model is None and electron_model is None:
            raise ValueError("give a phonon model, an electron model or both (both are None)")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        self.model = None if model is None else load_task_model(model, "phonon", self.device)
        self.recipe = None if self.model is None else graph_recipe(self.model)
        self._electron_source = electron_model
        self._electron: tuple[Any, Any] | None = None
        if isinstance(electron_model, torch.nn.Module):
            self._electron = self._electron_pair()
        elif electron_model is not None and not Path(electron_model).is_file():
            from .pretrained import model_path

            model_path(str(electron_model), verify=False)  # a clear error now for an unknown name

    def _electron_pair(self) -> tuple[Any, Any]:
        """The electron model and its graph recipe, loaded on first use."""
        from .inference import graph_recipe, load_task_model

        if self._electron is None:
            if self._electron_source is None:
                raise ValueError("this calculator has no electron-DOS model (electron_model=None)")
            model = load_task_model(self._electron_source, "edos", self.device)
            self._electron = (model, graph_recipe(model))
        return self._electron

    @property
    def electron_model(self) -> Any:
        """The electron-DOS model (loaded on first access)."""
        return self._electron_pair()[0]

    def _phonon_pair(self) -> tuple[Any, Any]:
        if self.model is None:
            raise ValueError("this calculator has no phonon-DOS model (model=None)")
        return self.model, self.recipe

    @property
    def frequencies_cm1(self) -> np.ndarray:
        """The frequency grid of ``results["phonon_dos"]`` in cm^-1."""
        return self._phonon_pair()[0].cfg.grid.values

    @property
    def energies_ev(self) -> np.ndarray:
        """The energy grid of ``results["electron_dos"]`` in eV relative to the Fermi level."""
        return self.electron_model.cfg.grid.values

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] | None = None,
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        """Predict the requested DOS (``phonon_dos`` by default) of ``atoms`` into ``self.results``."""
        properties = list(properties or ["phonon_dos"])
        super().calculate(atoms, properties, system_changes)
        for name in properties:
            if name == "phonon_dos":
                self._predict("phonon_dos", *self._phonon_pair())
            elif name == "electron_dos":
                self._predict("electron_dos", *self._electron_pair())

    def _predict(self, name: str, model: Any, recipe: Any) -> None:
        """Run ``model`` on ``self.atoms``; fill ``results[name]`` and its ``_out_of_domain`` / ``_warnings``."""
        from .graphs import OutOfDomainWarning
        from .inference import domain_check, predict_graphs

        graph = recipe.featurise(self.atoms)
        domain = domain_check(model, graph, self.atoms)
        dos = predict_graphs(model, [graph], batch_size=1, device=self.device)[0]
        found = [(message, OutOfDomainWarning) for message in domain.messages()]
        found += self._check_common(model, dos, int(graph.system.item()))
        if name == "phonon_dos":
            cut_off, cut_warnings = self._check(dos, model)
            self.results["phonon_dos_cut_off"] = cut_off
            found += cut_warnings
        self.results[name] = dos
        self.results[f"{name}_out_of_domain"] = domain.out_of_domain
        self.results[f"{name}_warnings"] = [message for message, _ in found]
        for message, category in found:
            warnings.warn(message, category, stacklevel=4)

    def _check(self, dos: np.ndarray, model: Any) -> tuple[bool, list[tuple[str, type[Warning]]]]:
        """Whether a phonon spectrum is cut off at the top of the window, and the warning for it."""
        from .spectra import is_cut_off

        threshold = float(self.parameters.get("cut_off_threshold", 0.05))
        if not (np.isfinite(threshold) and 0.0 < threshold <= 1.0):  # NaN would silently disable the flag
            raise ValueError(f"cut_off_threshold must be a fraction in (0, 1], got {threshold}")
        cut_off = is_cut_off(dos, threshold)
        if not cut_off:
            return False, []
        message = CUT_OFF_MESSAGE.format(threshold=threshold, top=model.cfg.grid.stop)
        return True, [(message, SpectrumCutOffWarning)]

    @staticmethod
    def _check_common(model: Any, dos: np.ndarray, system: int) -> list[tuple[str, type[Warning]]]:
        """Warnings for an unseen crystal system or an all-zero spectrum."""
        from .graphs import CRYSTAL_SYSTEMS

        found: list[tuple[str, type[Warning]]] = []
        if not bool(model.seen_systems[system]):
            found.append((UNSEEN_SYSTEM_MESSAGE.format(system=CRYSTAL_SYSTEMS[system]), UserWarning))
        if not np.any(dos > 0):
            found.append(("the model predicted an all-zero spectrum; it cannot be scaled to 3N states", UserWarning))
        return found

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
        return phonon_dos_to_phonopy(y, len(atoms), self._phonon_pair()[0].cfg.grid)

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

    def get_electron_dos_normalised(self, atoms: Atoms | None = None) -> np.ndarray:
        """The max-normalised ``(201,)`` electron DOS on :attr:`energies_ev` (cached)."""
        atoms = self._atoms(atoms)
        return np.array(self.get_property("electron_dos", atoms))

    def get_electron_dos(self, atoms: Atoms | None = None, efermi: float = 0.0) -> GridDOSData:
        """The electron DOS as ASE ``GridDOSData``: energies in eV (relative to the Fermi level, + ``efermi``).

        The weights are the predicted max-normalised DOS: the model predicts the shape, not states/eV.
        """
        from .electronic import electron_dos_info, to_ase_electron_dos

        atoms = self._atoms(atoms)
        y = self.get_electron_dos_normalised(atoms)
        info = electron_dos_info(atoms.get_chemical_formula())
        info["out_of_domain"] = str(bool(self.results.get("electron_dos_out_of_domain", False)))
        return to_ase_electron_dos(y, self.electron_model.cfg.grid, efermi=efermi, info=info)

    def get_pymatgen_electron_dos(self, atoms: Atoms | None = None, efermi: float = 0.0) -> Dos:
        """The electron DOS as a pymatgen ``Dos`` (eV, max-normalised; ``efermi`` its Fermi level)."""
        from .electronic import to_pymatgen_dos

        y = self.get_electron_dos_normalised(atoms)
        return to_pymatgen_dos(y, self.electron_model.cfg.grid, efermi=efermi)

    def get_band_gap_estimate(self, atoms: Atoms | None = None) -> GapEstimate:
        """The empty window around the Fermi level of the predicted electron DOS (eV); see ``electronic.py``."""
        from .electronic import band_gap_estimate

        return band_gap_estimate(self.get_electron_dos_normalised(atoms), self.electron_model.cfg.grid)

    def predict_many(self, structures: Sequence[Any], property: str = "phonon_dos") -> np.ndarray:
        """Max-normalised spectra ``(n, npoints)`` of many structures in batches; same numbers as one by one.

        ``property`` is ``"phonon_dos"`` (the default) or ``"electron_dos"``; nothing is cached.
        """
        from .inference import predict_dos

        if property not in self.implemented_properties:
            raise ValueError(f"property must be one of {self.implemented_properties}, got {property!r}")
        model, _ = self._phonon_pair() if property == "phonon_dos" else self._electron_pair()
        return predict_dos(model, structures, batch_size=self.batch_size, device=self.device)
