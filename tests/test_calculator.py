"""DOSCalculator: a real ASE calculator with caching, exports in phonopy's convention and batch prediction."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator
from ase.spacegroup import crystal
from ase.spectrum.dosdata import GridDOSData
from pymatgen.io.ase import AseAtomsAdaptor
from pymatgen.phonon.dos import PhononDos

from ase_dostransformer.calculator import DOSCalculator, SpectrumCutOffWarning, UnseenCrystalSystemWarning
from ase_dostransformer.errors import CustomMassesIgnoredWarning, OptionError
from ase_dostransformer.graphs import InvalidStructureError
from ase_dostransformer.inference import predict_phonon_dos
from ase_dostransformer.model import DOSTransformer, save_model_file
from ase_dostransformer.model.files import ModelFileError
from ase_dostransformer.pipeline import predict_structures
from ase_dostransformer.spectra import CM1_TO_THZ
from ase_dostransformer.thermo import GAS_CONSTANT, heat_capacity

# an untrained model predicts flat spectra, which are cut off: tests that need the warning catch it
pytestmark = pytest.mark.filterwarnings("ignore::ase_dostransformer.calculator.SpectrumCutOffWarning")


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    return save_model_file(model, tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def calc(model) -> DOSCalculator:
    return DOSCalculator(model=model, device="cpu")


class ForwardCounter:
    """Counts forward passes of a model through a hook."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.n = 0
        self.handle = model.register_forward_hook(self)

    def __call__(self, *args) -> None:
        self.n += 1


def rutile() -> Atoms:
    return crystal(
        ["Ti", "O"], basis=[(0, 0, 0), (0.3048, 0.3048, 0)], spacegroup=136, cellpar=[4.594, 4.594, 2.959, 90, 90, 90]
    )


def test_is_a_real_ase_calculator(calc):
    assert isinstance(calc, Calculator)
    assert "implemented_properties" in DOSCalculator.__dict__  # a class attribute of our own
    assert DOSCalculator.implemented_properties == ["phonon_dos", "electron_dos", "band_gap"]
    assert calc.implemented_properties is DOSCalculator.implemented_properties
    assert not {"phonon_dos", "electron_dos", "band_gap"} & set(Calculator.implemented_properties)  # nothing leaked
    assert DOSCalculator.discard_results_on_any_change is True


def test_get_property_matches_batch_api(calc, model):
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.calc = calc
    y = atoms.calc.get_property("phonon_dos", atoms)
    assert isinstance(y, np.ndarray)
    assert y.shape == (51,)
    assert y.max() > 0
    assert (y >= 0).all()
    np.testing.assert_allclose(y, predict_phonon_dos(model, [atoms], device="cpu")[0], atol=1e-6)
    np.testing.assert_allclose(calc.frequencies_cm1, np.linspace(0, 1000, 51))


def test_cached_until_atoms_change(calc, model):
    counter = ForwardCounter(model)
    try:
        atoms = bulk("Si", "diamond", a=5.431)
        atoms.calc = calc
        first = calc.get_property("phonon_dos", atoms)
        assert counter.n == 1
        second = calc.get_property("phonon_dos", atoms)
        calc.get_phonon_dos(atoms)
        calc.get_pymatgen_phonon_dos()
        assert counter.n == 1  # served from the cache
        np.testing.assert_array_equal(first, second)

        atoms.positions[1] += [0.15, -0.1, 0.05]
        moved = calc.get_property("phonon_dos", atoms)
        assert counter.n == 2  # positions changed: recomputed
        assert np.abs(moved - first).max() > 1e-5

        atoms.set_cell(atoms.cell * 1.02, scale_atoms=True)
        calc.get_property("phonon_dos", atoms)
        assert counter.n == 3  # cell changed: recomputed

        calc.set(cut_off_threshold=0.5)  # a parameter change drops the results
        assert calc.results == {}
        calc.get_property("phonon_dos", atoms)
        assert counter.n == 4
    finally:
        counter.handle.remove()


def test_grid_dos_data_in_phonopy_convention(calc):
    atoms = rutile()
    atoms.calc = calc
    dos = calc.get_phonon_dos()  # attached atoms are used when none are passed
    assert isinstance(dos, GridDOSData)
    assert dos.info["unit"] == "THz"
    assert dos.info["dos_unit"] == "states/THz/cell"
    assert "THz" in dos.info["units"]
    e, w = dos.get_energies(), dos.get_weights()
    assert e[0] == 0.0
    assert e[-1] == pytest.approx(1000.0 * CM1_TO_THZ)
    assert np.trapezoid(w, e) == pytest.approx(3 * len(atoms), abs=1e-6)
    y = calc.get_property("phonon_dos", atoms)
    np.testing.assert_allclose(w / w.max(), y / y.max(), atol=1e-12)  # same shape, rescaled


def test_pymatgen_phonon_dos(calc):
    atoms = bulk("MgO", "rocksalt", a=4.212)
    dos = calc.get_pymatgen_phonon_dos(atoms)
    assert isinstance(dos, PhononDos)
    assert np.trapezoid(dos.densities, dos.frequencies) == pytest.approx(6.0, abs=1e-6)
    # pymatgen's thermodynamics and ours agree on the exported DOS
    assert calc.get_heat_capacity(atoms, 300.0) == pytest.approx(dos.cv(300.0), rel=1e-3)


def test_heat_capacity_is_physical(calc):
    atoms = rutile()
    freqs, dos = calc.get_phonon_dos_phonopy(atoms)
    cv = calc.get_heat_capacity(atoms, 300.0)
    assert cv == pytest.approx(float(heat_capacity(freqs, dos, 300.0)[0]), rel=1e-12)
    assert 0 < cv < 3 * len(atoms) * GAS_CONSTANT  # below the Dulong-Petit limit
    assert calc.get_heat_capacity(atoms, 300.0, per_atom=True) == pytest.approx(cv / len(atoms))
    tp = calc.get_thermal_properties(atoms, [0.0, 300.0])
    assert tp.cv[0] == 0.0
    assert tp.zpe > 0


def test_predict_many_equals_one_at_a_time(calc):
    items = [
        bulk("Cu", a=3.615),
        bulk("NaCl", "rocksalt", a=5.64),
        rutile(),
        bulk("ZnO", "wurtzite", a=3.25, c=5.207, u=0.382),
    ]
    calc.batch_size = 3
    many = calc.predict_many(items)
    assert many.shape == (4, 51)
    one = []
    for atoms in items:
        atoms.calc = DOSCalculator(model=calc.model, device="cpu")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one.append(atoms.calc.get_property("phonon_dos", atoms))
    np.testing.assert_allclose(many, np.stack(one), atol=1e-5, rtol=0)


def test_cut_off_flag_and_warning(calc):
    atoms = bulk("Cu", a=3.615)
    with pytest.warns(SpectrumCutOffWarning, match="1000 cm\\^-1"):
        y = calc.get_property("phonon_dos", atoms)
    y_last_over_max = y[-1] / y.max()
    assert y_last_over_max > 0.05  # an untrained model gives a flat spectrum: cut off
    assert calc.results["phonon_dos_cut_off"] is True
    assert any("1000 cm^-1" in m for m in calc.results["phonon_dos_warnings"])
    assert calc.get_phonon_dos(atoms).info["cut_off"] == "True"

    strict = DOSCalculator(model=calc.model, device="cpu", cut_off_threshold=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpectrumCutOffWarning)
        strict.get_property("phonon_dos", atoms)
    assert strict.results["phonon_dos_cut_off"] is False


def test_unseen_crystal_system_is_reported(model):
    other = DOSTransformer(model.cfg)
    other.load_state_dict(model.state_dict())
    other.set_seen_systems(torch.tensor([0]))  # trained on cubic only
    calc = DOSCalculator(model=other, device="cpu", cut_off_threshold=1.0)
    with pytest.warns(UnseenCrystalSystemWarning, match="tetragonal"):
        calc.get_property("phonon_dos", rutile())
    assert any("tetragonal" in m for m in calc.results["phonon_dos_warnings"])


def test_a_model_that_learnt_each_element_mass_ignores_custom_masses_and_says_so(calc, model):
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    (standard,) = predict_structures(model, [atoms], device="cpu")
    heavy = atoms.copy()
    heavy.set_masses([atoms.get_masses()[0], 36.96590])  # Na as it is, 37Cl
    heavy.calc = calc
    with pytest.warns(CustomMassesIgnoredWarning, match=r"ignores the custom masses of atoms \[1\].*--mass_scaling"):
        y = calc.get_property("phonon_dos", heavy)
    np.testing.assert_array_equal(y, standard.dos)  # exactly the standard-mass prediction
    assert any("custom masses of atoms [1]" in m for m in calc.results["phonon_dos_warnings"])
    assert not calc.recipe.own_masses
    # standard masses set within the tolerance, and pymatgen structures (no masses of their own): no finding
    atoms.set_masses(atoms.get_masses() * (1 + 1e-9))
    for p in predict_structures(model, [atoms, AseAtomsAdaptor.get_structure(heavy)], device="cpu"):
        assert not any(issubclass(f.category, CustomMassesIgnoredWarning) for f in p.findings)
    deuterated = bulk("LiH", "rocksalt", a=4.08)
    deuterated.set_masses([6.015, 2.014])  # 6LiD: every atom named
    (p,) = predict_structures(model, [deuterated], device="cpu")
    assert [f.category for f in p.findings].count(CustomMassesIgnoredWarning) == 1
    assert "custom masses of atoms [0, 1]:" in " ".join(p.messages)


def test_model_from_path_and_errors(model_file, model):
    calc = DOSCalculator(model=str(model_file), device="cpu")
    assert not calc.model.training
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    np.testing.assert_allclose(
        calc.get_property("phonon_dos", atoms), predict_phonon_dos(model, [atoms], device="cpu")[0], atol=1e-6
    )
    with pytest.raises(ModelFileError, match="not found"):
        DOSCalculator(model=str(model_file.parent / "nope.pt"))
    with pytest.raises(ModelFileError, match="registered"):
        DOSCalculator(model="no-such-model")
    with pytest.raises(ValueError, match="batch_size"):
        DOSCalculator(model=model, batch_size=0)


def test_bad_input(calc):
    with pytest.raises(InvalidStructureError, match="periodic"):
        calc.get_property("phonon_dos", Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))
    with pytest.raises(ValueError, match="no atoms"):
        DOSCalculator(model=calc.model, device="cpu").get_phonon_dos()


def test_import_is_light_and_needs_no_lightning(model_file):
    code = (
        "import sys\n"
        "import ase_dostransformer.calculator as c\n"
        "assert 'torch' not in sys.modules, 'torch imported with the calculator module'\n"
        "from ase.build import bulk\n"
        "sys.modules['lightning'] = None\n"  # any import of lightning now fails
        "sys.modules['pytorch_lightning'] = None\n"
        f"calc = c.DOSCalculator({str(model_file)!r}, device='cpu', cut_off_threshold=1.0)\n"
        "print(calc.get_property('phonon_dos', bulk('Cu', a=3.6)).shape)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,  # a fresh interpreter importing torch and matgl; generous for a loaded 2-core machine
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    assert "(51,)" in out.stdout


@pytest.mark.parametrize(
    ("kwargs", "hint"),
    [
        ({"phonon_model": "mine.pt"}, "did you mean 'model'"),
        ({"cutoff_threshold": 0.1}, "did you mean 'cut_off_threshold'"),
        ({"devise": "cpu"}, "did you mean 'device'"),
    ],
)
def test_unknown_parameter_is_refused_with_a_hint(kwargs, hint):
    """ASE's base class would keep a misspelt keyword as a parameter and predict with the defaults."""
    with pytest.raises(OptionError, match=hint):
        DOSCalculator(electron_model=None, **kwargs)
    calc = DOSCalculator(electron_model=None, symprec=0.05)
    with pytest.raises(OptionError, match="no parameter 'symprec_'"):
        calc.set(symprec_=0.1)
    with pytest.raises(OptionError, match="cut_off_threshold must be a fraction"):
        calc.set(cut_off_threshold=2)
    assert calc.parameters == {"cut_off_threshold": 0.05, "symprec": 0.05}


def test_shipped_models_share_one_featurisation_of_the_atoms(monkeypatch):
    """Phonon DOS, electron DOS and band gap of the same atoms: the universal potential runs once, same numbers.

    The shipped phonon and electron models both read its features of the atoms; the band gap comes from
    the electron DOS's own pass. Moved atoms are computed afresh, and only their features are kept.
    """
    from ase_dostransformer.electronic import predict_gap_structures
    from ase_dostransformer.graphs import foundation

    real, seen = foundation.foundation_features, []

    def counting(atoms_list, *args, **kwargs):
        seen.extend(atoms_list)
        return real(atoms_list, *args, **kwargs)

    calc = DOSCalculator(device="cpu")
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    alone = [predict_structures(calc.model, atoms)[0].dos, predict_structures(calc.electron_model, atoms)[0].dos]
    (gap_alone,) = predict_gap_structures(calc.electron_model, [atoms])
    monkeypatch.setattr(foundation, "foundation_features", counting)
    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phonon = calc.get_property("phonon_dos", atoms)
        electron = calc.get_electron_dos_normalised()
        gap = calc.get_band_gap()
        assert len(seen) == 1  # was 3: phonon, electron DOS, gap head
        np.testing.assert_array_equal(phonon, alone[0])
        np.testing.assert_array_equal(electron, alone[1])
        assert gap == gap_alone
        atoms.positions[0, 0] += 0.01
        calc.get_band_gap()
        calc.get_property("phonon_dos", atoms)
    assert len(seen) == 2
    assert len(calc._foundation) == 1  # the current atoms' features only
