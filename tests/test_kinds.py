"""The registry of DOS kinds: names and aliases, a third kind, model-config defaults, checks and exports."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk
from ase.spectrum.dosdata import GridDOSData
from pymatgen.electronic_structure.dos import Dos
from pymatgen.phonon.dos import PhononDos

from ase_dostransformer.errors import SpectrumCutOffWarning, TrainOptionsError, UnknownKindError
from ase_dostransformer.kinds import ALIASES, KINDS, DOSKind, get_kind, kind_name, register_kind
from ase_dostransformer.kinds.electron import ElectronKind
from ase_dostransformer.kinds.phonon import PhononKind
from ase_dostransformer.spectra import ELECTRON_GRID, PHONON_GRID, EnergyGrid
from ase_dostransformer.training.options import TrainOptions


def test_the_shipped_kinds_and_the_former_name():
    assert set(KINDS) == {"phonon", "electron"}
    assert isinstance(get_kind("phonon"), PhononKind)
    assert isinstance(get_kind("electron"), ElectronKind)
    assert get_kind("edos") is get_kind("electron")
    assert kind_name("edos") == "electron"
    assert get_kind(get_kind("phonon")) is get_kind("phonon")  # a kind passes through
    assert (get_kind("phonon").property, get_kind("electron").property) == ("phonon_dos", "electron_dos")
    assert get_kind("phonon").grid == PHONON_GRID
    assert get_kind("electron").grid == ELECTRON_GRID


def test_unknown_kind_names_the_registered_ones():
    with pytest.raises(UnknownKindError, match="unknown DOS kind 'magnon'") as info:
        get_kind("magnon")
    assert "electron, phonon" in str(info.value)
    assert "'edos'" in str(info.value)
    assert isinstance(info.value, ValueError)  # an OptionError


class MagnonKind(DOSKind):
    """A third kind for the test: a magnon DOS on 0..100 meV, phonon-like graphs."""

    name = "magnon"
    aliases = ("mdos",)
    property = "magnon_dos"
    description = "a magnon DOS"
    adjective = "magnon-DOS"
    grid = EnergyGrid(0.0, 100.0, 21, "meV")

    def recipe_type(self) -> type:
        from ase_dostransformer.graphs import PhononGraphRecipe

        return PhononGraphRecipe


@pytest.fixture
def magnon():
    kind = register_kind(MagnonKind())
    yield kind
    KINDS.pop("magnon", None)
    ALIASES.pop("mdos", None)


def test_registering_a_kind_makes_it_usable_everywhere(magnon):
    from ase_dostransformer.inference import predict_dos
    from ase_dostransformer.model import DOSTransformer, ModelConfig

    assert get_kind("magnon") is magnon
    assert get_kind("mdos") is magnon
    assert TrainOptions(task="mdos").task == "magnon"
    net = DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4, task="magnon", grid=magnon.grid))
    assert net.kind is magnon
    assert net.graph_recipe.cutoff == 4.0
    y = predict_dos(net.eval(), [bulk("Si", "diamond", a=5.43)], task="magnon", device="cpu")
    assert y.shape == (1, 21)
    with pytest.raises(UnknownKindError, match="already registered"):
        register_kind(type("Other", (MagnonKind,), {"name": "other", "aliases": ("magnon",)})())


def test_task_option_takes_kind_names_and_the_former_name():
    assert TrainOptions(task="electron").task == "electron"
    assert TrainOptions(task="edos").task == "electron"
    with pytest.raises(TrainOptionsError, match="--task must be one of"):
        TrainOptions(task="magnons")


def test_electron_kind_sets_its_model_config_defaults():
    from ase_dostransformer.graphs.electron import ElectronGraphRecipe
    from ase_dostransformer.model import ModelConfig

    recipe = ElectronGraphRecipe(global_features=("energy_per_atom",))
    cfg = get_kind("electron").model_config(ModelConfig(hidden=32, heads=4), recipe)
    assert (cfg.task, cfg.grid, cfg.aggregation, cfg.node_scale, cfg.global_dim) == (
        "electron",
        ELECTRON_GRID,
        "sum",
        1.0,
        1,
    )
    assert (cfg.node_dim, cfg.edge_dim, cfg.recipe) == (200, 41, recipe.to_dict())
    assert get_kind("electron").recipe(cfg) == recipe
    assert ModelConfig(task="edos").task == "electron"  # a file of the former name reads as the electron kind
    with pytest.raises(UnknownKindError):
        ModelConfig(task="magnons")


def test_only_the_phonon_kind_checks_the_cut_off():
    flat = np.ones(51)
    (finding,) = get_kind("phonon").check(flat, PHONON_GRID, 0.05)
    assert finding.category is SpectrumCutOffWarning
    assert "1000 cm^-1 window" in finding.message
    falling = np.linspace(1.0, 0.0, 51)
    assert get_kind("phonon").check(falling, PHONON_GRID, 0.05) == []
    assert get_kind("electron").check(np.ones(201), ELECTRON_GRID, 0.05) == []
    assert get_kind("phonon").checks_cut_off
    assert not get_kind("electron").checks_cut_off


def test_exporters_follow_each_kinds_convention():
    phonon = get_kind("phonon")
    y = np.exp(-(((PHONON_GRID.values - 300.0) / 80.0) ** 2))
    ase_dos = phonon.to_ase(y, PHONON_GRID, natoms=2, label="NaCl")
    assert isinstance(ase_dos, GridDOSData)
    assert ase_dos.info["unit"] == "THz"
    assert ase_dos.info["label"] == "NaCl"
    assert np.trapezoid(ase_dos.get_weights(), ase_dos.get_energies()) == pytest.approx(6.0)  # 3N
    pmg = phonon.to_pymatgen(y, PHONON_GRID, natoms=2)
    assert isinstance(pmg, PhononDos)
    assert np.trapezoid(pmg.densities, pmg.frequencies) == pytest.approx(6.0)
    with pytest.raises(ValueError, match="natoms"):
        phonon.to_ase(y, PHONON_GRID)
    electron = get_kind("electron")
    e = np.exp(-((ELECTRON_GRID.values / 2.0) ** 2))
    grid = electron.to_ase(e, ELECTRON_GRID, efermi=1.0, label="Si")
    np.testing.assert_allclose(grid.get_energies(), ELECTRON_GRID.values + 1.0)
    np.testing.assert_allclose(grid.get_weights(), e)
    assert grid.info["label"] == "Si"
    assert grid.info["property"] == "electron_dos"
    dos = electron.to_pymatgen(e, ELECTRON_GRID, efermi=1.0)
    assert isinstance(dos, Dos)
    assert dos.efermi == 1.0
    assert phonon.units(PHONON_GRID)["frequency"] == "cm^-1"
    assert "Fermi level" in electron.units({"unit": "eV"})["energy"]
