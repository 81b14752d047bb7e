"""benchmarks/physics_goals.py: its measuring helpers on known spectra and one cheap run on two crystals."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from ase_dostransformer.spectra import CM1_TO_THZ, EnergyGrid

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
WIDE = EnergyGrid(0.0, 4000.0, 801, "cm^-1")
NARROW = EnergyGrid(0.0, 1000.0, 51, "cm^-1")


@pytest.fixture(scope="module")
def goals():
    """The benchmark script as a module (it imports ``_machine`` from its own folder)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("physics_goals", BENCHMARKS / "physics_goals.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["physics_goals"] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("physics_goals", None)
        sys.path.remove(str(BENCHMARKS))


def exported(goals, grid: EnergyGrid, dos: np.ndarray, natoms: int = 1):
    """A DOS on a cm^-1 grid as the benchmark's exported form (THz; the scale does not matter here)."""
    return goals.Exported(grid.values * CM1_TO_THZ, dos, natoms)


@pytest.mark.parametrize("grid", [WIDE, NARROW])
def test_a_debye_dos_vanishes_at_zero_with_exponent_two(goals, grid):
    w = grid.values
    at_zero, n = goals.low_frequency(exported(goals, grid, np.where(w <= 300.0, w**2, 0.0)))
    assert at_zero == 0.0
    assert n == pytest.approx(2.0, abs=1e-9)


def test_a_dos_open_at_zero_and_linear_is_reported(goals):
    w = WIDE.values
    at_zero, n = goals.low_frequency(exported(goals, WIDE, np.where(w <= 400.0, 5.0 + w, 0.0)))
    assert at_zero == pytest.approx(5.0 / 405.0)
    w_lo = max(15.0, 0.05 * 400.0)  # the third point above 0, or 5% of the top
    sel = (w > 0) & (w <= w_lo)
    expected = np.polyfit(np.log(w[sel]), np.log(5.0 + w[sel]), 1)[0]
    assert n == pytest.approx(expected)
    assert 0.5 < n < 1.0  # the offset flattens the slope below 1


def test_a_wide_grid_dos_is_resampled_on_the_labels_grid(goals):
    w = WIDE.values
    dos = np.exp(-(((w - 500.0) / 150.0) ** 2))
    y = goals.on_dataset_grid(w, dos)
    assert y.shape == (51,)
    expected = np.exp(-(((goals.DATASET_GRID - 500.0) / 150.0) ** 2))
    np.testing.assert_allclose(y, expected / expected.max(), atol=1e-3)  # linear interpolation on a 5 cm^-1 grid
    assert y.max() == 1.0


def test_scaled_and_rotated_copies(goals):
    atoms = bulk("GaAs", "zincblende", a=5.653)
    big = goals.scaled(atoms, 1.03)
    assert big.get_volume() == pytest.approx(1.03 * atoms.get_volume())
    np.testing.assert_allclose(big.get_scaled_positions(), atoms.get_scaled_positions(), atol=1e-12)
    from scipy.spatial.transform import Rotation

    matrix = Rotation.random(rng=np.random.default_rng(0)).as_matrix()
    turned = goals.rotated(atoms, matrix)
    assert not np.allclose(turned.cell[:], atoms.cell[:])
    np.testing.assert_allclose(turned.get_all_distances(mic=True), atoms.get_all_distances(mic=True), atol=1e-10)
    np.testing.assert_allclose(turned.positions, atoms.positions @ matrix.T, atol=1e-10)


def test_rows_are_parsed_in_table_order(goals):
    assert goals.parse_rows("all") == list(goals.ROWS)
    assert goals.parse_rows("cost, test") == ["test", "cost"]
    with pytest.raises(argparse.ArgumentTypeError, match="bogus"):
        goals.parse_rows("test,bogus")


def test_teacher_summary_of_hand_made_rows(goals):
    def row(r2, s_model, s_teacher, cv20, cv50):
        return {
            "r2_full_range": r2,
            "model_s300": s_model,
            "teacher_s300": s_teacher,
            "record_s300_per_atom": s_teacher,
            "model_cv20": cv20,
            "teacher_cv20": 1.0,
            "model_cv50": cv50,
            "teacher_cv50": 1.0,
        }

    rows = [row(0.9, 11.0, 10.0, 1.1, 1.0), row(0.7, 9.5, 10.0, 1.3, 0.9), row(0.5, 10.0, 10.0, 1.0, 1.2)]
    out = goals.teacher_summary([*rows, {"id": "x", "failed": True}])
    assert (out["n"], out["failed"]) == (4, 1)
    assert out["r2_mean"] == pytest.approx(0.7)
    assert out["s300_median_abs_rel_error"] == pytest.approx(0.05)  # |+10%|, |-5%|, 0
    assert out["cv20_median_ratio"] == pytest.approx(1.1)
    assert out["cv20_within_15pct"] == pytest.approx(2 / 3)  # 1.3 is out
    assert out["cv50_within_15pct"] == pytest.approx(2 / 3)  # 1.2 is out
    assert "valid" in goals.ROWS
    with pytest.raises(SystemExit, match="none predicted"):
        goals.teacher_summary([{"id": "x", "failed": True}])


def test_two_crystals_exported_through_the_file_match_the_model_output(goals, tmp_path):
    from ase_dostransformer.pretrained import load_model

    ctx = goals.Context(load_model("phonon", "cpu"), tmp_path)
    structures = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.431).repeat((1, 1, 2))]
    preds, out = ctx.predict_exported(structures)
    for atoms, p, e in zip(structures, preds, out, strict=True):
        assert e.natoms == len(atoms)
        assert np.trapezoid(e.dos, e.freq_thz) == pytest.approx(3 * len(atoms), rel=1e-8)
        np.testing.assert_allclose(
            goals.on_dataset_grid(e.cm1, e.dos), goals.on_dataset_grid(p.grid.values, p.dos), atol=1e-8
        )
        s = e.thermal([300.0])["entropy"][0]
        assert 5.0 < s < 60.0  # J/K/mol of atoms: a plausible vibrational entropy
    assert list(tmp_path.iterdir()) == []  # the scratch files are removed
    # the per-atom entropy does not depend on the cell chosen for the same crystal
    primitive_si = ctx.predict_exported([bulk("Si", "diamond", a=5.431)])[1][0]
    assert primitive_si.thermal([300.0])["entropy"][0] == pytest.approx(out[1].thermal([300.0])["entropy"][0], rel=1e-4)
