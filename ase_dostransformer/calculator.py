"""``DOSCalculator``: the phonon and electron density of states of a crystal as ASE calculator properties.

Usage::

    from ase.build import bulk
    from ase_dostransformer.calculator import DOSCalculator

    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = DOSCalculator()                           # the shipped model, offline
    y = atoms.calc.get_property("phonon_dos", atoms)       # (51,) on 0..1000 cm^-1, peak ~1 (max-normalised scale)
    dos = atoms.calc.get_phonon_dos()                      # ase GridDOSData: THz, states/THz/cell, 3N
    edos = atoms.calc.get_electron_dos()                   # ase GridDOSData: eV relative to E_F, max-normalised
    gap = atoms.calc.get_band_gap()                        # GapPrediction: gap, gap_std, p_metal, flags (eV)
    ref = atoms.calc.refine()                              # the teacher's DOS (universal potential + phonopy)

``phonon_dos``, ``electron_dos`` and ``band_gap`` are cached until the atoms change (positions, cell, numbers,
pbc, masses) or a parameter is set. The band gap comes from the electron DOS's own pass, and the two models
share one computation of the atoms' foundation features (held for the current atoms only:
:func:`~ase_dostransformer.graphs.foundation.shared_foundation_features`). ASE's generic property machinery
knows only its own names: ``atoms.get_properties`` and the extxyz / trajectory / db writers reject or drop
``phonon_dos`` / ``electron_dos``; export with :meth:`get_phonon_dos`, ``ase_dostransformer.io.phonopy_files``
or ``dostransformer predict`` instead.

Importing this module needs only ASE and NumPy; torch and the phonon model load when a calculator
is made, the electron model on the first ``electron_dos`` request.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

from .errors import (
    EmptySpectrumWarning,
    OptionError,
    OutOfDomainWarning,
    SpectrumCutOffWarning,
    UnseenCrystalSystemWarning,
)
from .kinds import KINDS, DOSKind, get_kind
from .kinds.phonon import CUT_OFF_MESSAGE
from .pipeline import EMPTY_SPECTRUM_MESSAGE, UNSEEN_SYSTEM_MESSAGE

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms
    from ase.spectrum.dosdata import GridDOSData
    from pymatgen.electronic_structure.dos import Dos
    from pymatgen.phonon.dos import PhononDos

    from .electronic import GapEstimate, GapPrediction
    from .escalation import Refinement
    from .model import DOSTransformer
    from .pipeline import Prediction
    from .screening import Screening
    from .thermo import ThermalProperties


__all__ = [
    "CUT_OFF_MESSAGE",
    "EMPTY_SPECTRUM_MESSAGE",
    "UNSEEN_SYSTEM_MESSAGE",
    "DOSCalculator",
    "EmptySpectrumWarning",
    "OutOfDomainWarning",
    "SpectrumCutOffWarning",
    "UnseenCrystalSystemWarning",
]


#: What :meth:`DOSCalculator.set` (and the constructor's keywords) accept: ASE's ``parameters``.
SETTABLE_PARAMETERS = ("cut_off_threshold", "symprec")
#: The constructor's own arguments, named in the error for a parameter that is not one.
CONSTRUCTOR_ARGUMENTS = ("model", "electron_model", "device", "batch_size")


class DOSCalculator(Calculator):
    """ASE calculator predicting the phonon and electron DOS of a periodic crystal with DOSTransformers.

    ``model``: the phonon model, a registered name (default ``"phonon"``, the shipped model), a path
    to a model file, or a loaded :class:`~ase_dostransformer.model.DOSTransformer`; ``None`` for an
    electron-DOS-only calculator. ``electron_model``: the same for the electron DOS (default
    ``"electron"``, the shipped model; loaded when ``electron_dos`` is first asked for). ``device``: as
    :func:`~ase_dostransformer.device.resolve_device` (argument, ``$DOSTRANSFORMER_DEVICE``,
    cuda, cpu). ``batch_size``: structures per forward pass in :meth:`predict_many`. ``symprec``: the
    symmetry tolerance (A) of the crystal-system detection (None: the model's recipe's, 0.1 A by default).

    Results after a calculation: ``results["phonon_dos"]`` (the property, a ``(51,)`` array,
    max-normalised, on :attr:`frequencies_cm1`), plus ``results["phonon_dos_cut_off"]`` (bool),
    ``results["phonon_dos_out_of_domain"]`` (bool: elements never seen in training, more atoms
    than any training cell, a slab / molecule in a vacuum box, or a shortest bond or volume per atom
    outside the training range) and ``results["phonon_dos_warnings"]``
    (list of str, each also issued as a Python warning of its class, see :mod:`ase_dostransformer.pipeline`).
    When the model gives them: ``results["phonon_dos_std"]`` (per-bin uncertainty, same scale as the
    DOS), ``results["phonon_dos_uncertainty"]`` (one number per crystal, relative to the peak) and
    ``results["phonon_dos_domain_score"]`` (distance to the training crystals); and
    ``results["space_group"]`` (the detected international number). ``results["electron_dos"]`` is
    the ``(201,)`` max-normalised electron DOS on :attr:`energies_ev`
    (-5..5 eV around the Fermi level, or the valence-band top of an insulator), with the matching
    ``electron_dos_*`` flags. ``results["band_gap"]`` (eV, :meth:`get_band_gap`) comes with
    ``band_gap_std``, ``band_gap_p_metal``, ``band_gap_flags`` and ``band_gap_if_insulator``: from the
    electron model's gap head when it has one, else read off the predicted DOS (flag ``"from_dos"``).

    Masses: a mass-scaled phonon model (trained with ``--mass_scaling``, ``model.cfg.mass_scaling``) takes the
    atoms' own masses, so isotopes set with ``atoms.set_masses`` move the DOS exactly as ``omega ~ m^-1/2``
    (every mass times 4: every frequency halved); a change of masses is a change of the atoms (recomputed).
    Any other phonon model, the shipped ``phonon-v3`` and ``phonon-paper`` included, learnt each element's
    mass: it predicts with the standard masses and issues a
    :class:`~ase_dostransformer.errors.CustomMassesIgnoredWarning` naming the atoms whose masses it ignored.
    An ensemble mixing the two kinds gives each member the masses it can read (the custom ones to the
    mass-scaled members) and says which members ignored them. A zero, negative or non-finite mass given to
    a model that takes the atoms' own masses raises :class:`~ase_dostransformer.errors.InvalidStructureError`
    naming the atom.

    Invalid atoms (see :mod:`ase_dostransformer.graphs.validation`) raise
    :class:`~ase_dostransformer.errors.InvalidStructureError`, a ``ValueError`` naming the fault.
    :meth:`todict` names the models (name or file, sha256, package version), as ASE records a
    calculator's parameters in databases and trajectories.

    :meth:`refine` recomputes the DOS of the current atoms with the teacher (the shipped universal
    potential driving phonopy; not DFT) and adds ``results["teacher_phonon_dos"]`` (on
    :attr:`frequencies_cm1`, max-normalised like ``phonon_dos``) and ``results["teacher_phonon_dos_status"]``.
    """

    implemented_properties = ["phonon_dos", "electron_dos", "band_gap"]
    discard_results_on_any_change = True
    default_parameters: dict[str, Any] = {"cut_off_threshold": 0.05}
    name = "dostransformer"

    def __init__(
        self,
        model: str | os.PathLike | DOSTransformer | None = "phonon",
        electron_model: str | os.PathLike | DOSTransformer | None = "electron",
        device: Any = None,
        batch_size: int = 64,
        symprec: float | None = None,
        **kwargs: Any,
    ) -> None:
        from .graphs.crystal_system import check_symprec

        super().__init__(symprec=None if symprec is None else check_symprec(symprec), **kwargs)  # through set()
        import torch

        from .device import resolve_device
        from .graphs.foundation import FoundationMemo
        from .inference import load_task_model

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OptionError(f"batch_size must be >= 1, got {batch_size}")
        if model is None and electron_model is None:
            raise OptionError("give a phonon model, an electron model or both (both are None)")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        #: Where each kind's model comes from (a name, a path or a module), by kind name; None: no such model.
        self._sources: dict[str, Any] = {"phonon": model, "electron": electron_model}
        #: The argument that gives each kind's model, for messages.
        self._arguments = {"phonon": "model", "electron": "electron_model"}
        #: Loaded models by kind name (the electron model loads on first use).
        self._models: dict[str, Any] = {}
        #: The last :class:`~ase_dostransformer.pipeline.Prediction` of each kind (for the getters).
        self._predictions: dict[str, Prediction] = {}
        #: Foundation features of the current atoms, shared by the phonon and electron models (see calculate).
        self._foundation = FoundationMemo()
        if model is not None:
            self._models["phonon"] = load_task_model(model, "phonon", self.device)
        if isinstance(electron_model, torch.nn.Module):
            self._model_of("electron")
        elif electron_model is not None and not Path(electron_model).is_file():
            from .pretrained import model_path

            model_path(str(electron_model), verify=False)  # a clear error now for an unknown name

    def _model_of(self, kind: str | DOSKind) -> Any:
        """The model of a kind (loaded on first use); :class:`OptionError` when this calculator has none."""
        from .inference import load_task_model

        kind = get_kind(kind)
        if kind.name not in self._models:
            source = self._sources.get(kind.name)
            if source is None:
                argument = self._arguments.get(kind.name, f"{kind.name}_model")
                raise OptionError(f"this calculator has no {kind.adjective} model ({argument}=None)")
            self._models[kind.name] = load_task_model(source, kind, self.device)
        return self._models[kind.name]

    @property
    def model(self) -> Any:
        """The phonon-DOS model (None for an electron-DOS-only calculator)."""
        return self._models.get("phonon")

    @property
    def recipe(self) -> Any:
        """The phonon model's graph recipe (None without a phonon model)."""
        return None if self.model is None else self.model.graph_recipe

    @property
    def electron_model(self) -> Any:
        """The electron-DOS model (loaded on first access)."""
        return self._model_of("electron")

    @property
    def frequencies_cm1(self) -> np.ndarray:
        """The frequency grid of ``results["phonon_dos"]`` in cm^-1."""
        return self._model_of("phonon").cfg.grid.values

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
        """Predict the requested DOS (``phonon_dos`` by default) of ``atoms`` into ``self.results``.

        The atoms' foundation features are computed once for both models: kept while ``system_changes`` is
        empty (ASE's ``get_property`` of more properties of the same atoms), dropped when the atoms change.
        """
        from .graphs.foundation import shared_foundation_features

        properties = list(properties or ["phonon_dos"])
        super().calculate(atoms, properties, system_changes)
        if system_changes:  # other atoms: the memo holds the current atoms' features only
            self._foundation.clear()
        with shared_foundation_features(self._foundation):
            for name in properties:
                kind = _kind_of_property(name)
                if kind is not None:
                    self._predict(kind)
                elif name == "band_gap":
                    self._predict_gap()

    def _predict_gap(self) -> None:
        """``results["band_gap"]`` and its ``band_gap_*`` companions, from the electron DOS's pass (made if not yet).

        The pipeline gives the gap with the DOS (``gap=True``): the gap head's, else the DOS read; a gap that
        failed raises its error here, the DOS staying in ``results``.
        """
        kind = get_kind("electron")
        prediction = self._predictions.get(kind.name)
        if kind.property not in self.results or prediction is None:
            self._predict(kind)
            prediction = self._predictions[kind.name]
        if prediction.gap is None:
            raise prediction.gap_error or OptionError("the electron model gave no band gap")
        gap = prediction.gap
        self.results["band_gap"] = gap.gap
        self.results["band_gap_std"] = gap.gap_std
        self.results["band_gap_p_metal"] = gap.p_metal
        self.results["band_gap_flags"] = list(gap.flags)
        self.results["band_gap_if_insulator"] = gap.gap_if_insulator

    def _predict(self, kind: DOSKind) -> None:
        """Run the kind's model on ``self.atoms``; fill ``results[kind.property]`` and its flags, issue the findings."""
        from .pipeline import predict_structures

        model = self._model_of(kind)
        threshold = self.parameters.get("cut_off_threshold", 0.05)
        (p,) = predict_structures(
            model,
            [self.atoms],
            batch_size=1,
            device=self.device,
            cut_off_threshold=threshold,
            on_invalid="keep",
            symprec=self.parameters.get("symprec"),
            gap=kind.name == "electron",  # the band gap from the same pass, for get_band_gap
        )
        if p.error is not None:
            raise p.error
        name = kind.property
        self.results[name] = p.dos
        # the whole Prediction (members, findings) for the getters; kept out of ``results``, which ASE's
        # writers serialise
        self._predictions[kind.name] = p
        if kind.checks_cut_off:
            self.results[f"{name}_cut_off"] = p.cut_off
        self.results[f"{name}_out_of_domain"] = p.out_of_domain
        self.results[f"{name}_warnings"] = p.messages
        for suffix, value in (("std", p.dos_std), ("uncertainty", p.uncertainty), ("domain_score", p.domain_score)):
            if value is not None:
                self.results[f"{name}_{suffix}"] = value
        if p.space_group is not None:
            self.results["space_group"] = p.space_group
        p.warn(stacklevel=4)

    def _identity(self, kind: str) -> dict[str, Any]:
        """``{"": name, "_sha256": ..., "_version": ...}`` of a kind's model, without loading it; empty without one."""
        from .io.writeback import model_identity

        source = self._sources.get(kind)
        if source is None:
            return {}
        model = self._models.get(kind)
        if model is None:  # not loaded yet: its file, found as load_model would
            from types import SimpleNamespace

            path = Path(source)
            if not path.is_file():
                from .pretrained import model_path

                path = model_path(str(source), verify=False)
            model = SimpleNamespace(source=str(path))
        identity = model_identity(model, None if hasattr(source, "state_dict") else source)
        return {k.removeprefix("model"): v for k, v in identity.to_dict().items()}

    def set(self, **kwargs: Any) -> dict[str, Any]:
        """Change ``cut_off_threshold`` or ``symprec`` (ASE's convention: changed values drop the results).

        Any other name raises :class:`~ase_dostransformer.errors.OptionError` naming the closest one: ASE's
        base class would store it silently, so ``DOSCalculator(phonon_model="mine.pt")`` would predict
        with the default model. Models, device and batch size are constructor arguments only.
        """
        import difflib

        from .graphs.crystal_system import check_symprec
        from .pipeline import check_threshold

        unknown = sorted(set(kwargs) - set(SETTABLE_PARAMETERS))
        if unknown:
            known = SETTABLE_PARAMETERS + CONSTRUCTOR_ARGUMENTS
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
                if name.endswith("model") and "electron" not in name:  # phonon_model, dos_model: the phonon one
                    close = ["model"]
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise OptionError(
                f"DOSCalculator has no parameter {', '.join(hints)}; parameters: {', '.join(SETTABLE_PARAMETERS)}; "
                f"constructor arguments: {', '.join(CONSTRUCTOR_ARGUMENTS)}"
            )
        if kwargs.get("symprec") is not None:
            kwargs["symprec"] = check_symprec(kwargs["symprec"])
        if "cut_off_threshold" in kwargs:
            kwargs["cut_off_threshold"] = check_threshold(kwargs["cut_off_threshold"])
        return super().set(**kwargs)

    def todict(self, skip_default: bool = True) -> dict[str, Any]:
        """The calculator's parameters as ASE records them: which models, where, and the settings.

        ``model`` / ``electron_model``: the registered name or file (a model made in memory:
        ``"<Class> in memory"``), ``model_sha256`` / ``electron_model_sha256`` (of the file),
        ``model_version`` (this package's version); ``device``, ``batch_size``, ``cut_off_threshold`` and
        ``symprec`` when set. Every value is a string or a number (JSON-ready).
        """
        out: dict[str, Any] = {}
        for kind, key in (("phonon", "model"), ("electron", "electron_model")):
            out.update({key + suffix: value for suffix, value in self._identity(kind).items()})
        out["device"] = str(self.device)
        out["batch_size"] = self.batch_size
        out.update({k: v for k, v in self.parameters.items() if v is not None})
        return out

    def check_state(self, atoms: Atoms, tol: float = 1e-15) -> list[str]:
        """ASE's changes of ``atoms`` since the last calculation, plus ``"masses"`` when their masses changed.

        ASE's ``all_changes`` leaves masses out, but a mass-scaled phonon model's DOS follows them: without this,
        ``atoms.set_masses(...)`` would be answered with the spectrum of the old masses.
        """
        changes = list(super().check_state(atoms, tol))
        if self.atoms is not None and not np.array_equal(self.atoms.get_masses(), atoms.get_masses()):
            changes.append("masses")
        return changes

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
            raise OptionError("no atoms: pass atoms, or attach this calculator first (atoms.calc = calc)")
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
        return phonon_dos_to_phonopy(y, len(atoms), self._model_of("phonon").cfg.grid)

    def get_phonon_dos(self, atoms: Atoms | None = None) -> GridDOSData:
        """The DOS as ASE ``GridDOSData``: energies in THz, weights in states/THz/cell (integral 3N)."""
        atoms = self._atoms(atoms)
        y = self.get_phonon_dos_normalised(atoms)
        model = self._model_of("phonon")
        info = {"cut_off": str(bool(self.results.get("phonon_dos_cut_off", False)))}
        return model.kind.to_ase(y, model.cfg.grid, natoms=len(atoms), label=atoms.get_chemical_formula(), info=info)

    def get_pymatgen_phonon_dos(self, atoms: Atoms | None = None) -> PhononDos:
        """The DOS as ``pymatgen.phonon.dos.PhononDos`` (THz, states/THz/cell, integral 3N)."""
        atoms = self._atoms(atoms)
        y = self.get_phonon_dos_normalised(atoms)
        model = self._model_of("phonon")
        return model.kind.to_pymatgen(y, model.cfg.grid, natoms=len(atoms))

    def get_thermal_properties(
        self, atoms: Atoms | None = None, temperatures: Any = (300.0,), per_atom: bool = False
    ) -> ThermalProperties:
        """Harmonic Cv, S, F, U and ZPE from the predicted DOS (per mole of cells by default)."""
        from .thermo import thermal_properties

        atoms = self._atoms(atoms)
        freqs, dos = self.get_phonon_dos_phonopy(atoms)
        return thermal_properties(freqs, dos, temperatures, per_atom=per_atom, natoms=len(atoms))

    def get_screening_quantities(self, atoms: Atoms | None = None, temperatures: Any = (300.0,)) -> Screening:
        """S, F, U, Cv (per mole of cells and of atoms), ZPE, Debye temperature, mean and maximum frequency.

        Each with its uncertainty (``.std``: the spread of the ensemble members' values scaled by the
        model's calibration; NaN for a model without one), as ``dostransformer predict`` writes them
        (:func:`ase_dostransformer.screening.screening_quantities`).
        """
        from .screening import screening_quantities

        atoms = self._atoms(atoms)
        self.get_property("phonon_dos", atoms)
        return screening_quantities(self._predictions["phonon"], len(atoms), temperatures)

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
        atoms = self._atoms(atoms)
        y = self.get_electron_dos_normalised(atoms)
        model = self.electron_model
        info = {"out_of_domain": str(bool(self.results.get("electron_dos_out_of_domain", False)))}
        return model.kind.to_ase(
            y, model.cfg.grid, natoms=len(atoms), label=atoms.get_chemical_formula(), efermi=efermi, info=info
        )

    def get_pymatgen_electron_dos(self, atoms: Atoms | None = None, efermi: float = 0.0) -> Dos:
        """The electron DOS as a pymatgen ``Dos`` (eV, max-normalised; ``efermi`` its Fermi level)."""
        y = self.get_electron_dos_normalised(atoms)
        model = self.electron_model
        return model.kind.to_pymatgen(y, model.cfg.grid, efermi=efermi)

    def get_band_gap(self, atoms: Atoms | None = None) -> GapPrediction:
        """The band gap (eV) with its uncertainty, metal probability and flags (cached as ``results["band_gap"]``).

        From the electron model's gap head when it has one (a metal is never given a gap without a
        flag: see :mod:`ase_dostransformer.electronic`), else read off the predicted DOS (flag
        ``"from_dos"``, ``gap_std`` and ``p_metal`` NaN).
        """
        from .electronic import GapPrediction

        atoms = self._atoms(atoms)
        gap = float(self.get_property("band_gap", atoms))
        r = self.results
        return GapPrediction(
            gap,
            float(r["band_gap_std"]),
            float(r["band_gap_p_metal"]),
            tuple(r["band_gap_flags"]),
            float(r["band_gap_if_insulator"]),
        )

    def get_band_gap_estimate(self, atoms: Atoms | None = None) -> GapEstimate:
        """The band gap as a :class:`~ase_dostransformer.electronic.GapEstimate` (eV).

        A model without a gap head: the empty window around the Fermi level of the predicted DOS, as
        always (``electronic.band_gap_estimate``). With one: the head's reported gap, its edges in the
        labels' convention (valence-band maximum at 0 eV, conduction-band minimum at the gap; 0, 0 for a
        metal); when that gap carries a metal flag a :class:`~ase_dostransformer.errors.DOSTransformerWarning`
        names it. :meth:`get_band_gap` gives the uncertainty, the metal probability and the flags.
        """
        from .electronic import GapEstimate, band_gap_estimate, has_gap_head

        if not has_gap_head(self.electron_model):
            return band_gap_estimate(self.get_electron_dos_normalised(atoms), self.electron_model.cfg.grid)
        gap = self.get_band_gap(atoms)
        if gap.gap > 0 and gap.metal_flagged:
            import warnings

            from .errors import DOSTransformerWarning

            warnings.warn(
                f"band gap {gap.gap:.2f} eV flagged {', '.join(gap.flags)} (p_metal {gap.p_metal:.2f}): "
                "see get_band_gap()",
                DOSTransformerWarning,
                stacklevel=2,
            )
        return GapEstimate(gap.gap, 0.0, gap.gap)

    def refine(self, atoms: Atoms | None = None, relax_cell: bool = False) -> Refinement:
        """The teacher's phonon DOS of ``atoms`` (default: the attached atoms): escalation of a doubtful prediction.

        The teacher is the shipped universal potential (TensorNet-MatPES-PBE) relaxing the atoms and
        driving phonopy finite displacements (:mod:`ase_dostransformer.escalation`), seconds to minutes
        on a CPU; it is not DFT (its accuracy against DFT, and against the model, is in
        ``benchmarks/RESULTS.md``). ``relax_cell``: relax the cell too (for unrelaxed or generated
        crystals; default positions only, for DFT-relaxed cells). The potential loads on the first call.

        Returns the :class:`~ase_dostransformer.escalation.Refinement` (fine-grid DOS in cm^-1 and THz,
        thermodynamics, ``status`` ``"ok"``, ``"unstable"`` or ``"failed"`` with its ``error``: a
        crystal the teacher fails on is returned, not raised; a potential that cannot load raises)
        and stores ``results["teacher_phonon_dos"]`` (the teacher's DOS on :attr:`frequencies_cm1`,
        smoothed and max-normalised as the training data; absent when it failed) and
        ``results["teacher_phonon_dos_status"]``, kept until the atoms change.
        """
        from .escalation import refine_structures
        from .teacher.phonons import PhononSettings

        atoms = self._atoms(atoms)
        if self.atoms is None or self.check_state(atoms):
            self.reset()
            self.atoms = atoms.copy()
        grid = self._model_of("phonon").cfg.grid if self.model is not None else get_kind("phonon").grid
        (ref,) = refine_structures(
            [atoms], grid=grid, settings=PhononSettings(relax_cell=bool(relax_cell)), potential=self._teacher()
        )
        self.results.pop("teacher_phonon_dos", None)
        if ref.dos_on_grid is not None:
            self.results["teacher_phonon_dos"] = ref.dos_on_grid
        self.results["teacher_phonon_dos_status"] = ref.status
        return ref

    def _teacher(self) -> Any:
        """The teacher potential, loaded on first use on this calculator's device."""
        teacher = getattr(self, "_teacher_potential", None)
        if teacher is None:
            from .teacher.potential import load_teacher

            teacher = self._teacher_potential = load_teacher(str(self.device))
        return teacher

    def predict_many(self, structures: Sequence[Any], property: str = "phonon_dos") -> np.ndarray:
        """Spectra ``(n, npoints)`` of many structures in batches; same numbers as one by one.

        ``property`` is ``"phonon_dos"`` (the default) or ``"electron_dos"``; nothing is cached. The
        findings are issued as warnings, ``"structure i: "`` in front (as
        :func:`~ase_dostransformer.inference.predict_dos` does).
        """
        from .inference import predict_dos

        kind = _kind_of_property(property)
        if kind is None:
            raise OptionError(f"property must be one of {self.implemented_properties}, got {property!r}")
        model = self._model_of(kind)
        symprec = self.parameters.get("symprec")
        return predict_dos(model, structures, batch_size=self.batch_size, device=self.device, symprec=symprec)


def _kind_of_property(name: str) -> DOSKind | None:
    """The DOS kind whose ASE property is ``name`` (None for a property of no kind)."""
    return next((k for k in KINDS.values() if k.property == name), None)
