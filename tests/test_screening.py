"""Screening quantities: definitions on known spectra, thermo's numbers, ensemble error bars, model identity."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest
from ase.build import bulk

from ase_dostransformer.errors import OptionError
from ase_dostransformer.kinds import get_kind
from ase_dostransformer.pipeline import Prediction
from ase_dostransformer.screening import (
    calibration_scale,
    debye_temperature,
    max_frequency,
    mean_frequency,
    quantity_columns,
    screening_quantities,
    temperature_label,
    thermo_weights,
)
from ase_dostransformer.spectra import CM1_TO_THZ, PHONON_GRID, phonon_dos_to_phonopy
from ase_dostransformer.thermo import THZ_TO_KELVIN, entropy, heat_capacity, thermal_properties


@pytest.fixture(scope="module")
def shipped():
    from ase_dostransformer.pretrained import load_model

    return load_model("phonon", device="cpu")


@pytest.fixture(scope="module")
def nacl(shipped) -> Prediction:
    from ase_dostransformer.pipeline import predict_structures

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        (p,) = predict_structures(shipped, [bulk("NaCl", "rocksalt", a=5.64)])
    return p


def _prediction(dos: np.ndarray, natoms: int = 2, **fields) -> Prediction:
    return Prediction(0, get_kind("phonon"), np.asarray(dos, dtype=float), PHONON_GRID, natoms=natoms, **fields)


def test_debye_dos_gives_its_debye_temperature() -> None:
    """A DOS ~ nu^2 up to nu_D: theta_D = h nu_D / k_B, <nu> = 3/4 nu_D, max frequency nu_D."""
    nu = np.linspace(0.0, 20.0, 4001)
    nu_d = 12.0
    g = np.where(nu <= nu_d, 9 * 2 * nu**2 / nu_d**3, 0.0)
    assert debye_temperature(nu, g) == pytest.approx(THZ_TO_KELVIN * nu_d, rel=1e-3)
    assert mean_frequency(nu, g) == pytest.approx(0.75 * nu_d, rel=1e-3)
    assert max_frequency(nu, g) == pytest.approx(nu_d, abs=0.01)
    # on the model's 51-point grid, through a Prediction: the Debye DOS sampled at the grid points, its edge
    # mid-way between two of them (a sharp edge on a grid point is smeared by half a bin, ~2% high)
    freqs = PHONON_GRID.values * CM1_TO_THZ
    nu_d = 510.0 * CM1_TO_THZ
    s = screening_quantities(_prediction(np.where(freqs <= nu_d, freqs**2, 0.0)))
    assert s.values["debye_temperature_K"] == pytest.approx(THZ_TO_KELVIN * nu_d, rel=0.01)
    assert s.values["mean_frequency_THz"] == pytest.approx(0.75 * nu_d, rel=0.01)
    assert abs(s.values["max_frequency_THz"] - nu_d) < freqs[1]  # within one bin
    assert s.scale is None  # no members: no uncertainties
    assert all(v is None for k, v in s.columns().items() if k.endswith("_std"))


def test_thermodynamics_are_thermo_s_numbers() -> None:
    """The precomputed weights give thermal_properties' values; the screening columns are thermo's per cell and atom."""
    freqs = PHONON_GRID.values * CM1_TO_THZ
    shape = np.exp(-((freqs - 8.0) ** 2) / 8.0) + 0.5 * np.exp(-((freqs - 16.0) ** 2) / 4.0)
    _, dos = phonon_dos_to_phonopy(shape, 3, PHONON_GRID)
    temps = np.array([0.0, 50.0, 300.0, 1000.0])
    direct = thermal_properties(freqs, dos, temps, natoms=3)
    fast = thermo_weights(freqs, temps).properties(dos, 3)
    for name in ("cv", "entropy", "free_energy", "internal_energy"):
        np.testing.assert_allclose(getattr(fast, name), getattr(direct, name), rtol=1e-10, atol=1e-12)
    assert fast.zpe == pytest.approx(direct.zpe, rel=1e-12)
    s = screening_quantities(_prediction(shape, natoms=3), temperatures=[300.0, 298.15])
    assert s.values["entropy_300K_J_per_K_per_mol_cells"] == pytest.approx(entropy(freqs, dos, 300.0)[0], rel=1e-10)
    cv = heat_capacity(freqs, dos, 298.15)[0]
    assert s.values["cv_298p15K_J_per_K_per_mol_atoms"] == pytest.approx(cv / 3, rel=1e-10)
    assert list(s.values) == list(quantity_columns([300.0, 298.15]))


def test_error_bars_are_the_members_spread_times_the_calibration_scale(shipped, nacl) -> None:
    """The shipped ensemble: each quantity's std over the member spectra (thermo's numbers), times the scale."""
    assert nacl.members is not None
    assert nacl.members.shape == (len(shipped.models), shipped.cfg.grid.npoints)  # on the model's own grid
    freqs, members = phonon_dos_to_phonopy(nacl.members, 2, nacl.grid)
    s_members = [entropy(freqs, g, 300.0, natoms=2)[0] for g in members]
    theta = [debye_temperature(freqs, g) for g in members]
    raw = screening_quantities(dataclasses.replace(nacl, dos_std=None))  # members without a calibration
    assert raw.scale == 1.0
    assert raw.std["entropy_300K_J_per_K_per_mol_cells"] == pytest.approx(np.std(s_members), rel=1e-9)
    assert raw.std["debye_temperature_K"] == pytest.approx(np.std(theta), rel=1e-9)
    if nacl.dos_std is not None:  # the shipped model carries a calibration
        scale = np.mean(nacl.dos_std) / np.mean(nacl.members.std(axis=0))
        calibrated = screening_quantities(nacl)
        assert calibration_scale(nacl) == pytest.approx(scale)
        assert calibrated.std["entropy_300K_J_per_K_per_mol_cells"] == pytest.approx(np.std(s_members) * scale)
    none = screening_quantities(dataclasses.replace(nacl, members=None, dos_std=None))
    assert none.scale is None
    assert np.isnan(none.std["entropy_300K_J_per_K_per_mol_cells"])
    assert none.values == pytest.approx(raw.values, rel=1e-12)


def test_temperatures_and_failed_predictions_are_checked() -> None:
    assert temperature_label(300) == "300K"
    assert temperature_label(298.15) == "298p15K"
    for bad in ([], [-1.0], [np.nan], [300.0, 300.0]):
        with pytest.raises(OptionError):
            quantity_columns(bad)
    failed = dataclasses.replace(_prediction(np.ones(51)), dos=None, error=ValueError("x"))
    with pytest.raises(OptionError, match="no spectrum"):
        screening_quantities(failed)


def test_calculator_names_its_models_and_stores_the_new_results(shipped, model_path_shipped) -> None:
    from ase_dostransformer.calculator import DOSCalculator
    from ase_dostransformer.io.checksums import file_sha256
    from ase_dostransformer.pretrained import model_path, read_registry

    calc = DOSCalculator(device="cpu")  # the shipped models, by name; the electron model not loaded
    d = calc.todict()
    registry = read_registry()
    assert d["model"] == "phonon"
    assert d["model_sha256"] == registry["phonon"]["sha256"] == file_sha256(model_path("phonon"))
    assert d["electron_model"] == "electron"
    assert d["electron_model_sha256"] == registry["electron"]["sha256"]
    assert d["model_version"]
    assert d["device"] == "cpu"
    assert d["cut_off_threshold"] == 0.05
    assert json.loads(json.dumps(d)) == d  # what ASE stores in databases and trajectories
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        atoms.calc.get_property("phonon_dos", atoms)
    assert calc.results["space_group"] == 225
    assert calc.results["phonon_dos_std"].shape == calc.frequencies_cm1.shape == (shipped.cfg.grid.npoints,)
    assert calc.results["phonon_dos_uncertainty"] > 0
    assert calc.results["phonon_dos_domain_score"] > 0
    by_file = DOSCalculator(model=model_path_shipped, electron_model=None, device="cpu").todict()
    assert by_file["model"] == str(model_path_shipped)
    assert by_file["model_sha256"] == d["model_sha256"]
    assert "electron_model" not in by_file
    in_memory = DOSCalculator(model=shipped, electron_model=None, device="cpu").todict()
    assert in_memory["model"] == "phonon"  # a loaded shipped model: the registered name of its file
    assert in_memory["model_sha256"] == d["model_sha256"]


@pytest.fixture
def model_path_shipped():
    from ase_dostransformer.pretrained import model_path

    return model_path("phonon")


def test_calculator_gives_screening_quantities_with_uncertainty() -> None:
    from ase_dostransformer.calculator import DOSCalculator

    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.calc = DOSCalculator()
    sq = atoms.calc.get_screening_quantities(temperatures=(100.0, 300.0))
    entropy = {k: v for k, v in sq.values.items() if k.startswith("entropy_300K")}
    assert entropy
    # the same S(300 K) per mole of cells as the calculator's own thermodynamics
    tp = atoms.calc.get_thermal_properties(temperatures=[300.0])
    per_cells = next(v for k, v in entropy.items() if "cells" in k)
    assert per_cells == pytest.approx(float(tp.entropy[0]), rel=1e-6)
    # the shipped ensemble is calibrated: every quantity has a finite, positive uncertainty
    stds = [sq.std[k] for k in entropy]
    assert all(np.isfinite(s) and s > 0 for s in stds)
    # and a new structure gives new quantities, not the cached ones
    atoms2 = bulk("MgO", "rocksalt", a=4.21)
    atoms2.calc = atoms.calc
    other = atoms.calc.get_screening_quantities(atoms2, temperatures=(300.0,))
    assert next(v for k, v in other.values.items() if k.startswith("entropy_300K") and "cells" in k) != per_cells
