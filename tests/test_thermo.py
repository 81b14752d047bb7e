"""Thermodynamics from a phonon DOS, checked against phonopy, pymatgen and the Einstein model.

Reference: phonopy's NaCl example (tests/data/phonopy_NaCl: supercell 2x2x2, FCC primitive cell,
BORN non-analytical correction). phonopy's thermal properties come from its 20x20x20 mesh sum;
our functions get phonopy's own total DOS on that mesh (tetrahedron method, freq_pitch 0.05 THz).
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import constants

from ase_dostransformer import thermo
from ase_dostransformer.spectra import PHONON_GRID, phonon_dos_to_phonopy

DATA = Path(__file__).parent / "data" / "phonopy_NaCl"
TEMPS = [100.0, 300.0, 1000.0]
MESH = [20, 20, 20]
FREQ_PITCH = 0.05  # THz
R = constants.R  # J/K/mol


def load_nacl():
    """Phonopy's NaCl example as a Phonopy object with force constants and NAC."""
    phonopy = pytest.importorskip("phonopy")
    return phonopy.load(
        supercell_matrix=[2, 2, 2],
        primitive_matrix="F",
        unitcell_filename=str(DATA / "POSCAR-unitcell"),
        force_sets_filename=str(DATA / "FORCE_SETS"),
        born_filename=str(DATA / "BORN"),
        log_level=0,
    )


@pytest.fixture(scope="module")
def nacl():
    """Phonopy's DOS and thermal properties of NaCl (shifted 20^3 mesh, tetrahedron DOS)."""
    ph = load_nacl()
    assert ph.nac_params is not None
    # The default half-grid-shifted mesh; mesh symmetry is off explicitly (phonopy would turn it
    # off with a warning since the shift breaks the FCC point group).
    ph.run_mesh(MESH, is_mesh_symmetry=False)
    ph.run_thermal_properties(temperatures=TEMPS)
    ph.run_total_dos(freq_pitch=FREQ_PITCH, use_tetrahedron_method=True)
    tp = ph.thermal_properties
    ref = {
        "cv": np.array(tp.heat_capacity),
        "entropy": np.array(tp.entropy),
        "free_energy": np.array(tp.free_energy),
        "zpe": float(tp.zero_point_energy),
    }
    ref["internal_energy"] = ref["free_energy"] + np.array(TEMPS) * ref["entropy"] / 1000.0
    return {
        "freq": np.array(ph.total_dos.frequency_points),
        "dos": np.array(ph.total_dos.dos),
        "ref": ref,
        "natoms": len(ph.primitive),
        "phonon": ph,
    }


def einstein_dos(nu_e: float, natoms: int, step: float = 0.01, top: float = 10.0):
    """All 3N modes at one frequency: one grid point of height 3N/step (trapezoid integral 3N)."""
    nu = np.round(np.arange(0.0, top + step / 2, step), 10)
    g = np.zeros_like(nu)
    i = int(np.argmin(np.abs(nu - nu_e)))
    g[i] = 3 * natoms / step
    return nu, g, float(nu[i])


# --- agreement with phonopy -------------------------------------------------------------------


def test_nacl_dos_counts_3n(nacl):
    assert nacl["natoms"] == 2
    assert thermo.count_modes(nacl["freq"], nacl["dos"]) == pytest.approx(6.0, rel=5e-3)
    assert thermo.infer_natoms(nacl["freq"], nacl["dos"]) == 2


@pytest.mark.parametrize("key", ["cv", "entropy", "free_energy", "internal_energy"])
def test_matches_phonopy_within_1_percent(nacl, key):
    ours = thermo.thermal_properties(nacl["freq"], nacl["dos"], TEMPS)
    ref = nacl["ref"][key]
    rel = np.abs(getattr(ours, key) - ref) / np.abs(ref)
    # measured (phonopy 4.10, this DOS): below 0.25% for every quantity and temperature
    assert np.all(rel < 0.01), f"{key}: relative errors {rel} vs phonopy at {TEMPS} K"
    assert np.all(rel < 0.004), f"{key}: relative errors {rel} larger than measured"


def test_zpe_matches_phonopy(nacl):
    zpe = thermo.zero_point_energy(nacl["freq"], nacl["dos"])
    assert zpe == pytest.approx(nacl["ref"]["zpe"], rel=2e-3)
    tp = thermo.thermal_properties(nacl["freq"], nacl["dos"], [0.0])
    assert tp.zpe == pytest.approx(zpe, rel=1e-12)


def test_single_functions_agree_with_record(nacl):
    f, g = nacl["freq"], nacl["dos"]
    tp = thermo.thermal_properties(f, g, TEMPS)
    np.testing.assert_allclose(thermo.heat_capacity(f, g, TEMPS), tp.cv, rtol=1e-14)
    np.testing.assert_allclose(thermo.entropy(f, g, TEMPS), tp.entropy, rtol=1e-14)
    np.testing.assert_allclose(thermo.free_energy(f, g, TEMPS), tp.free_energy, rtol=1e-14)
    np.testing.assert_allclose(thermo.internal_energy(f, g, TEMPS), tp.internal_energy, rtol=1e-14)
    assert tp.natoms == 2
    assert not tp.per_atom


def test_matches_pymatgen(nacl):
    dos_mod = pytest.importorskip("pymatgen.phonon.dos")
    f, g = nacl["freq"], nacl["dos"]
    pmg = dos_mod.PhononDos(f, g)
    tp = thermo.thermal_properties(f, g, TEMPS)
    for i, t in enumerate(TEMPS):
        assert tp.cv[i] == pytest.approx(pmg.cv(t), rel=1e-10)
        assert tp.entropy[i] == pytest.approx(pmg.entropy(t), rel=1e-10)
        assert tp.free_energy[i] == pytest.approx(pmg.helmholtz_free_energy(t) / 1000.0, rel=1e-10)
        assert tp.internal_energy[i] == pytest.approx(pmg.internal_energy(t) / 1000.0, rel=1e-10)
    assert tp.zpe == pytest.approx(pmg.zero_point_energy() / 1000.0, rel=1e-10)


def test_per_atom_divides_by_natoms(nacl):
    f, g = nacl["freq"], nacl["dos"]
    cell = thermo.thermal_properties(f, g, TEMPS)
    atom = thermo.thermal_properties(f, g, TEMPS, per_atom=True)
    assert atom.per_atom
    assert atom.natoms == 2
    np.testing.assert_allclose(atom.cv, cell.cv / 2, rtol=1e-14)
    np.testing.assert_allclose(atom.entropy, cell.entropy / 2, rtol=1e-14)
    np.testing.assert_allclose(atom.free_energy, cell.free_energy / 2, rtol=1e-14)
    np.testing.assert_allclose(atom.internal_energy, cell.internal_energy / 2, rtol=1e-14)
    assert atom.zpe == pytest.approx(cell.zpe / 2, rel=1e-14)
    explicit = thermo.heat_capacity(f, g, TEMPS, per_atom=True, natoms=4)
    np.testing.assert_allclose(explicit, cell.cv / 4, rtol=1e-14)


# --- analytic checks --------------------------------------------------------------------------


def test_zero_temperature_exact_and_warning_free():
    nu, g, _ = einstein_dos(5.0, natoms=1)
    g = g + 0.1 * nu**2  # a non-trivial DOS, non-zero everywhere but nu = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tp = thermo.thermal_properties(nu, g, [0.0, 1e-300, 1e-3, 0.5, 300.0])
    for arr in (tp.cv, tp.entropy, tp.free_energy, tp.internal_energy):
        assert np.all(np.isfinite(arr))
    assert tp.cv[0] == 0.0
    assert tp.entropy[0] == 0.0
    assert tp.free_energy[0] == tp.zpe
    assert tp.internal_energy[0] == tp.zpe
    # near T = 0 the values approach the T = 0 limit continuously
    assert tp.cv[1] == 0.0
    assert tp.entropy[1] == 0.0
    assert tp.free_energy[1] == pytest.approx(tp.zpe, rel=1e-12)
    assert tp.cv[2] < 1e-6
    assert tp.cv[4] > 1.0


@pytest.mark.parametrize("temperature", [20.0, 100.0, 300.0, 1000.0])
def test_einstein_model_is_exact(temperature):
    natoms = 3
    nu, g, nu_e = einstein_dos(5.0, natoms)
    x = constants.h * nu_e * 1e12 / (constants.k * temperature)
    n = 3 * natoms
    cv = n * R * x**2 * math.exp(x) / math.expm1(x) ** 2
    s = n * R * (x / math.expm1(x) - math.log(-math.expm1(-x)))
    zpe = n * constants.N_A * constants.h * nu_e * 1e12 / 2 / 1000.0
    f = zpe + n * R * temperature * math.log(-math.expm1(-x)) / 1000.0
    u = zpe + n * R * temperature * (x / math.expm1(x)) / 1000.0
    tp = thermo.thermal_properties(nu, g, [temperature])
    assert tp.natoms == natoms
    assert tp.cv[0] == pytest.approx(cv, rel=1e-10)
    assert tp.entropy[0] == pytest.approx(s, rel=1e-10)
    assert tp.zpe == pytest.approx(zpe, rel=1e-10)
    assert tp.free_energy[0] == pytest.approx(f, rel=1e-10)
    assert tp.internal_energy[0] == pytest.approx(u, rel=1e-10)


def test_high_temperature_limits():
    natoms = 2
    nu, g, nu_e = einstein_dos(2.0, natoms)
    t = 1.0e5
    tp = thermo.thermal_properties(nu, g, [t])
    assert tp.cv[0] == pytest.approx(3 * natoms * R, rel=1e-6)  # Dulong-Petit
    # classical limit: U -> 3N k_B T (ZPE cancels to first order)
    assert tp.internal_energy[0] == pytest.approx(3 * natoms * R * t / 1000.0, rel=1e-6)


def test_negative_frequencies_are_ignored():
    nu, g, _ = einstein_dos(4.0, natoms=1, step=0.05)
    ref = thermo.thermal_properties(nu, g, TEMPS)
    neg = -nu[1:21][::-1]
    nu2 = np.concatenate([neg, nu])
    g2 = np.concatenate([np.full(neg.shape, 0.7), g])
    tp = thermo.thermal_properties(nu2, g2, TEMPS)
    np.testing.assert_allclose(tp.cv, ref.cv, rtol=1e-14)
    np.testing.assert_allclose(tp.free_energy, ref.free_energy, rtol=1e-14)


def test_zero_frequency_density_uses_limits():
    # g(0) > 0: Cv takes the k_B limit at nu = 0; S and F get nothing from the nu = 0 sample.
    nu = np.array([0.0, 1.0, 2.0])
    g = np.array([1.0, 0.0, 0.0])
    t = 300.0
    tp = thermo.thermal_properties(nu, g, [t], natoms=1)
    assert tp.cv[0] == pytest.approx(0.5 * R, rel=1e-12)  # trapezoid: half a panel at weight 1
    assert tp.entropy[0] == 0.0
    assert tp.free_energy[0] == 0.0
    assert tp.internal_energy[0] == 0.0


def test_model_grid_dos_reaches_dulong_petit():
    # A DOS on the model's 51-point cm^-1 grid, scaled to 3N by spectra.phonon_dos_to_phonopy.
    y = np.exp(-(((PHONON_GRID.values - 250.0) / 60.0) ** 2))
    f, g = phonon_dos_to_phonopy(y, natoms=5)
    tp = thermo.thermal_properties(f, g, [3000.0], per_atom=True)
    assert tp.natoms == 5
    assert tp.cv[0] == pytest.approx(3 * R, rel=2e-3)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("freq", "dos", "temps", "match"),
    [
        ([0.0, 1.0, 2.0], [0.0, 1.0], [300.0], "equal length"),
        ([0.0, 2.0, 1.0], [0.0, 1.0, 0.0], [300.0], "increasing"),
        ([0.0, 1.0, 2.0], [0.0, np.nan, 0.0], [300.0], "dos contains NaN"),
        ([0.0, 1.0, 2.0], [0.0, 3.0, 0.0], [-1.0], "temperatures"),
        ([0.0, 1.0, 2.0], [0.0, 3.0, 0.0], [np.nan], "temperatures"),
        ([-2.0, -1.0, 0.0], [0.0, 3.0, 0.0], [300.0], ">= 0 THz"),
    ],
)
def test_bad_input_raises(freq, dos, temps, match):
    with pytest.raises(ValueError, match=match):
        thermo.thermal_properties(freq, dos, temps)


def test_per_atom_needs_a_3n_dos_or_natoms():
    nu = np.linspace(0.0, 10.0, 101)
    g = np.where((nu > 2) & (nu < 6), 1.0, 0.0)  # integral 3.9: not 3N
    with pytest.raises(ValueError, match="natoms"):
        thermo.heat_capacity(nu, g, [300.0], per_atom=True)
    assert thermo.thermal_properties(nu, g, [300.0]).natoms is None
    with pytest.raises(ValueError, match="natoms"):
        thermo.heat_capacity(nu, g, [300.0], per_atom=True, natoms=0)
    assert np.isfinite(thermo.heat_capacity(nu, g, [300.0], per_atom=True, natoms=1)[0])


# --- writers ----------------------------------------------------------------------------------


def test_thermal_properties_yaml_layout_and_phonopy_reader(nacl, tmp_path):
    file_io = pytest.importorskip("phonopy.file_IO")
    temps = [0.0, *TEMPS]
    tp = thermo.thermal_properties(nacl["freq"], nacl["dos"], temps)
    ours = thermo.write_thermal_properties_yaml(tp, tmp_path / "thermal_properties.yaml")
    theirs = tmp_path / "phonopy_thermal_properties.yaml"
    nacl["phonon"].write_yaml_thermal_properties(filename=theirs)

    d_ours = yaml.safe_load(ours.read_text())
    d_theirs = yaml.safe_load(theirs.read_text())
    assert set(d_ours) <= set(d_theirs)  # a subset of phonopy's own keys
    assert {"unit", "natom", "zero_point_energy", "thermal_properties"} <= set(d_ours)
    assert d_ours["unit"] == d_theirs["unit"]
    assert d_ours["natom"] == d_theirs["natom"] == 2
    assert set(d_ours["thermal_properties"][0]) == set(d_theirs["thermal_properties"][0])
    assert d_ours["zero_point_energy"] == pytest.approx(d_theirs["zero_point_energy"], rel=2e-3)
    rows = d_ours["thermal_properties"]
    assert [r["temperature"] for r in rows] == temps
    np.testing.assert_allclose([r["heat_capacity"] for r in rows], tp.cv, atol=1e-6)
    np.testing.assert_allclose([r["energy"] for r in rows], tp.internal_energy, atol=1e-6)

    # phonopy's own reader (as phonopy-qha uses it) on both files; ours has T = 0 first
    t, cv, s, fe, _, _ = file_io.read_thermal_properties_yaml([ours])
    t_ref, cv_ref, s_ref, fe_ref, _, _ = file_io.read_thermal_properties_yaml([theirs])
    np.testing.assert_allclose(t, temps)
    np.testing.assert_allclose(t_ref, TEMPS)
    np.testing.assert_allclose(fe[0, 0], tp.zpe, atol=1e-6)
    np.testing.assert_allclose(cv[1:, 0], cv_ref[:, 0], rtol=0.01)
    np.testing.assert_allclose(s[1:, 0], s_ref[:, 0], rtol=0.01)
    np.testing.assert_allclose(fe[1:, 0], fe_ref[:, 0], rtol=0.01)


def test_yaml_is_per_cell_even_for_per_atom_values(nacl, tmp_path):
    tp = thermo.thermal_properties(nacl["freq"], nacl["dos"], TEMPS, per_atom=True)
    d = yaml.safe_load(thermo.write_thermal_properties_yaml(tp, tmp_path / "tp.yaml").read_text())
    np.testing.assert_allclose([r["entropy"] for r in d["thermal_properties"]], tp.entropy * 2, atol=1e-6)
    assert d["zero_point_energy"] == pytest.approx(tp.zpe * 2, abs=1e-6)
    no_n = thermo.ThermalProperties(np.array([1.0]), *(np.zeros(1),) * 4, zpe=0.0)
    with pytest.raises(ValueError, match="natom"):
        thermo.thermal_properties_yaml(no_n)


def test_csv_and_dict(nacl, tmp_path):
    tp = thermo.thermal_properties(nacl["freq"], nacl["dos"], [0.0, *TEMPS])
    path = thermo.write_thermal_properties_csv(tp, tmp_path / "tp.csv")
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][0] == "temperature_K"
    assert "J/K/mol-cell" in rows[0][1]
    table = np.array(rows[1:], dtype=float)
    assert table.shape == (4, 5)
    np.testing.assert_array_equal(table[:, 0], tp.temperatures)
    np.testing.assert_array_equal(table[:, 1], tp.cv)
    np.testing.assert_array_equal(table[:, 4], tp.internal_energy)
    assert [p.name for p in tmp_path.iterdir()] == ["tp.csv"]  # no temporary file left

    d = json.loads(json.dumps(tp.to_dict()))
    assert d["natoms"] == 2
    assert d["per_atom"] is False
    assert d["cv"] == pytest.approx(tp.cv.tolist(), rel=1e-15)
    assert d["units"]["free_energy"] == "kJ/mol"


def test_constants_are_scipy_codata():
    assert pytest.approx(constants.R, rel=1e-12) == thermo.GAS_CONSTANT
    assert pytest.approx(47.9924307, rel=1e-8) == thermo.THZ_TO_KELVIN  # h * 1 THz / k_B in K
    # 1 THz per mole in kJ/mol, via phonopy's own (older CODATA) units: agree to ~1e-6
    units = pytest.importorskip("phonopy.physical_units").get_physical_units()
    assert pytest.approx(units.THzToEv * units.EvTokJmol, rel=1e-5) == thermo.THZ_TO_KJ_PER_MOL
