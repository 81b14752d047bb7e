"""Electron DOS from the calculator and the quantities read off it (gap estimate, DOS at E_F, exports)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.spectrum.dosdata import GridDOSData
from pymatgen.electronic_structure.core import Spin
from pymatgen.electronic_structure.dos import Dos

from ase_dostransformer.calculator import DOSCalculator
from ase_dostransformer.electronic import band_gap_estimate, dos_at_fermi_level, write_electron_dos
from ase_dostransformer.graphs.electron import ElectronGraphRecipe
from ase_dostransformer.inference import predict_electron_dos
from ase_dostransformer.io.conversions import to_pymatgen_dos
from ase_dostransformer.io.electron_dataset import process_edos
from ase_dostransformer.io.electron_sources import read_dft_result
from ase_dostransformer.model import DOSTransformer, save_model_file
from ase_dostransformer.model.files import ModelFileError
from ase_dostransformer.spectra import ELECTRON_GRID
from ase_dostransformer.training.options import TrainOptions
from ase_dostransformer.training.tasks import edos_model_config

pytestmark = pytest.mark.filterwarnings("ignore::ase_dostransformer.calculator.SpectrumCutOffWarning")
GPAW_RESULTS = Path(__file__).resolve().parents[1] / "train" / "edos" / "dft_gpaw"
E = ELECTRON_GRID.values


@pytest.fixture(scope="module")
def edos_model() -> DOSTransformer:
    """A small untrained electron-DOS model (hidden 32) with the eDOS recipe."""
    torch.manual_seed(0)
    opts = TrainOptions(hidden=32, layers=1, transformer=1, heads=4)
    return DOSTransformer(edos_model_config(opts, ElectronGraphRecipe())).eval()


@pytest.fixture
def calc(model, edos_model) -> DOSCalculator:
    return DOSCalculator(model=model, electron_model=edos_model, device="cpu")


def step_dos(lo: float, hi: float) -> np.ndarray:
    """States everywhere except (lo, hi) eV."""
    return np.where((lo < E) & (hi > E), 0.0, 1.0)


@pytest.mark.parametrize(("lo", "hi"), [(-1.0, 1.0), (-0.3, 2.7), (-4.0, 0.5)])
def test_gap_estimate_measures_the_empty_window(lo: float, hi: float) -> None:
    gap = band_gap_estimate(step_dos(lo, hi))
    assert gap.gap == pytest.approx(hi - lo, abs=ELECTRON_GRID.step + 1e-9)
    assert gap.valence_edge == pytest.approx(lo, abs=ELECTRON_GRID.step + 1e-9)
    assert gap.conduction_edge == pytest.approx(hi, abs=ELECTRON_GRID.step + 1e-9)


def test_metal_has_no_gap_and_its_dos_at_fermi_level_is_read() -> None:
    y = 0.5 + 0.5 * np.cos(E)
    assert band_gap_estimate(y).gap == 0.0
    assert dos_at_fermi_level(y) == pytest.approx(1.0)
    assert dos_at_fermi_level(step_dos(-1, 1)) == 0.0


def test_gap_estimate_refuses_bad_spectra() -> None:
    with pytest.raises(ValueError, match="201 points"):
        band_gap_estimate(np.ones(50))
    with pytest.raises(ValueError, match="all-zero"):
        band_gap_estimate(np.zeros(201))
    with pytest.raises(ValueError, match="non-finite"):
        dos_at_fermi_level(np.full(201, np.nan))
    with pytest.raises(ValueError, match="threshold"):
        band_gap_estimate(np.ones(201), threshold=1.5)


def _gpaw_results(min_gap: float) -> list[tuple[np.ndarray, float]]:
    """(processed label, eigenvalue gap) of committed GPAW results with a gap of at least ``min_gap``."""
    out = []
    for path in sorted(GPAW_RESULTS.glob("mp-*.json.gz"))[:60]:
        rec = next(read_dft_result(path))
        gap = rec.properties.get("band_gap")
        if gap is not None and gap >= min_gap and gap < 4.0:
            out.append((process_edos(rec.energies, rec.densities, rec.efermi), gap))
    return out


def test_gap_estimate_on_gpaw_labels_tracks_the_eigenvalue_gap() -> None:
    """On real DFT labels (smoothed as for training) the estimate follows the gap from the eigenvalues."""
    found = _gpaw_results(min_gap=1.0)
    assert len(found) >= 20, f"only {len(found)} committed GPAW results with a gap of 1-4 eV"
    est = np.array([band_gap_estimate(y).gap for y, _ in found])
    dft = np.array([g for _, g in found])
    assert (est > 0.5).all()  # every gap of 1 eV or more is found
    assert np.median(np.abs(est - dft)) < 0.5  # the 0.85 eV smoothing window limits the precision
    assert np.corrcoef(est, dft)[0, 1] > 0.75


def test_pymatgen_dos_and_text_export(tmp_path: Path) -> None:
    y = step_dos(-1.0, 1.0)
    dos = to_pymatgen_dos(y, efermi=3.0)
    assert isinstance(dos, Dos)
    assert dos.efermi == 3.0
    np.testing.assert_allclose(dos.energies, E + 3.0)
    np.testing.assert_allclose(dos.densities[Spin.up], y)
    assert dos.get_gap(tol=0.05) == pytest.approx(2.0, abs=0.11)  # pymatgen's own gap finder agrees
    write_electron_dos(tmp_path / "edos.dat", y, comment="Si")
    back = np.loadtxt(tmp_path / "edos.dat")
    np.testing.assert_allclose(back[:, 0], E, atol=1e-6)
    np.testing.assert_allclose(back[:, 1], y, atol=1e-9)


def test_calculator_electron_dos(calc) -> None:
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = calc
    y = calc.get_property("electron_dos", atoms)
    assert y.shape == (201,)
    assert (y >= 0).all()
    np.testing.assert_allclose(calc.energies_ev, E)
    grid = calc.get_electron_dos()
    assert isinstance(grid, GridDOSData)
    np.testing.assert_allclose(grid.get_energies(), E)
    np.testing.assert_allclose(grid.get_weights(), y)
    assert grid.info["unit"] == "eV"
    assert "max-normalised" in grid.info["dos_unit"]
    shifted = calc.get_electron_dos(efermi=5.0)
    np.testing.assert_allclose(shifted.get_energies(), E + 5.0)
    pmg = calc.get_pymatgen_electron_dos(efermi=5.0)
    assert pmg.efermi == 5.0
    np.testing.assert_allclose(pmg.densities[Spin.up], y)
    assert calc.get_band_gap_estimate().gap == band_gap_estimate(y).gap


def test_electron_and_phonon_dos_are_cached_separately(calc, model, edos_model) -> None:
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.calc = calc
    calls = {"phonon": 0, "electron": 0}
    hooks = [
        model.register_forward_hook(lambda *a: calls.__setitem__("phonon", calls["phonon"] + 1)),
        edos_model.register_forward_hook(lambda *a: calls.__setitem__("electron", calls["electron"] + 1)),
    ]
    try:
        calc.get_property("phonon_dos", atoms)
        calc.get_property("electron_dos", atoms)
        calc.get_property("phonon_dos", atoms)
        calc.get_property("electron_dos", atoms)
        assert calls == {"phonon": 1, "electron": 1}
        atoms.positions[0, 0] += 0.05
        calc.get_property("electron_dos", atoms)
        assert calls == {"phonon": 1, "electron": 2}
    finally:
        for h in hooks:
            h.remove()


def test_electron_predict_many_equals_one_by_one(calc, edos_model) -> None:
    items = [bulk("Si", "diamond", a=5.43), bulk("NaCl", "rocksalt", a=5.64), bulk("Cu", "fcc", a=3.61)]
    many = calc.predict_many(items, property="electron_dos")
    assert many.shape == (3, 201)
    for atoms, row in zip(items, many, strict=True):
        np.testing.assert_allclose(row, predict_electron_dos(edos_model, atoms)[0], atol=1e-5)
    with pytest.raises(ValueError, match="property must be one of"):
        calc.predict_many(items, property="band_structure")


def test_model_choice_errors(model, edos_model, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both are None"):
        DOSCalculator(model=None, electron_model=None)
    with pytest.raises(ModelFileError, match="no model named 'nonesuch'"):
        DOSCalculator(model=model, electron_model="nonesuch")
    with pytest.raises(ValueError, match="not an electron DOS"):
        DOSCalculator(model=model, electron_model=model, device="cpu")
    with pytest.raises(ValueError, match="not a phonon DOS"):
        DOSCalculator(model=edos_model, electron_model=None, device="cpu")
    phonon_only = DOSCalculator(model=model, electron_model=None, device="cpu")
    atoms = bulk("Si", "diamond", a=5.43)
    with pytest.raises(ValueError, match="no electron-DOS model"):
        phonon_only.get_property("electron_dos", atoms)
    electron_only = DOSCalculator(model=None, electron_model=save_model_file(edos_model, tmp_path / "e.pt"))
    assert electron_only.get_property("electron_dos", atoms).shape == (201,)
    with pytest.raises(ValueError, match="no phonon-DOS model"):
        electron_only.get_property("phonon_dos", atoms)


def test_unseen_system_warns_for_the_electron_model(calc, edos_model) -> None:
    atoms = bulk("Si", "diamond", a=5.43)
    seen = edos_model.seen_systems.clone()
    try:
        edos_model.seen_systems.zero_()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            calc.get_property("electron_dos", atoms)
        assert any("cubic" in str(w.message) for w in caught)
        assert any("cubic" in m for m in calc.results["electron_dos_warnings"])
    finally:
        edos_model.seen_systems.copy_(seen)


def test_predict_command_writes_electron_dos(model, edos_model, tmp_path: Path) -> None:
    from ase.io import read, write

    from ase_dostransformer.cli import main

    phonon_file = save_model_file(model, tmp_path / "phonon.pt")
    electron_file = save_model_file(edos_model, tmp_path / "edos.pt")
    (tmp_path / "in").mkdir()
    write(tmp_path / "in" / "Si.cif", bulk("Si", "diamond", a=5.43))
    write(tmp_path / "in" / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    out = tmp_path / "out"
    args = [str(tmp_path / "in"), "--model", str(phonon_file), "--out", str(out), "--no-progress", "--quiet"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["predict", *args, "--electron-model", str(electron_file)]) == 0
    for name in ("Si", "NaCl"):
        data = np.loadtxt(out / name / "electron_dos.dat")
        assert data.shape == (201, 2)
        np.testing.assert_allclose(data[:, 0], E, atol=1e-6)
        expected = predict_electron_dos(edos_model, read(tmp_path / "in" / f"{name}.cif"))[0]
        np.testing.assert_allclose(data[:, 1], expected, atol=1e-6)
        assert (out / name / "electron_dos.png").stat().st_size > 1000
        assert (out / name / "total_dos.dat").is_file()
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["name"]: r for r in summary["structures"]}
    assert rows["Si"]["electron_dos_at_fermi"] is not None
    assert rows["Si"]["band_gap_estimate_eV"] is not None
    assert summary["electron_model"]
    header = (out / "summary.csv").read_text().splitlines()[0]
    assert "band_gap_estimate_eV" in header
    # without --electron-model no electron files; an electron model given as the phonon model is refused
    assert main(["predict", *args[:-2], "--out", str(tmp_path / "out2"), "--quiet", "--no-progress"]) == 0
    assert not (tmp_path / "out2" / "Si" / "electron_dos.dat").exists()
    assert main(["predict", str(tmp_path / "in"), "--model", str(electron_file), "--out", str(tmp_path / "o3")]) == 2


def _gap_head_model(seed: int) -> DOSTransformer:
    """A small untrained electron model with a gap head (random weights: the crystals get different gaps)."""
    torch.manual_seed(seed)
    opts = TrainOptions(task="electron", gap_head=True, hidden=32, layers=1, transformer=1, heads=4)
    return DOSTransformer(edos_model_config(opts, ElectronGraphRecipe())).eval()


def test_pipeline_gives_the_gap_of_the_dos_pass(model, edos_model) -> None:
    """``predict_structures(gap=True)``: predict_gap's numbers from the DOS's own featurisation and pass."""
    from ase_dostransformer.electronic import gap_from_dos, predict_gap_structures
    from ase_dostransformer.errors import OptionError
    from ase_dostransformer.model.ensemble import DOSEnsemble
    from ase_dostransformer.pipeline import predict_structures

    structures = [bulk("Si", "diamond", a=5.43), bulk("NaCl", "rocksalt", a=5.64), bulk("Cu", "fcc", a=3.6)]
    head = DOSEnsemble([_gap_head_model(1), _gap_head_model(2)]).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch_size in (3, 1):
            predictions = predict_structures(head, structures, batch_size=batch_size, gap=True)
            direct = predict_gap_structures(head, structures, batch_size=batch_size)
            assert [p.gap for p in predictions] == direct  # every field, exactly
            assert all(p.gap_error is None and not p.gap.from_dos for p in predictions)
        assert all(p.gap is None for p in predict_structures(head, structures))  # not asked for
        plain = predict_structures(edos_model, structures, gap=True)  # no head: the DOS read
        assert [p.gap for p in plain] == [gap_from_dos(p.dos) for p in plain]
    with pytest.raises(OptionError, match="phonon"):
        predict_structures(model, structures, gap=True)
