"""One prediction pipeline: predict_structures, predict_dos and the calculator report the same findings."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from ase_dostransformer import batching
from ase_dostransformer.calculator import DOSCalculator
from ase_dostransformer.errors import (
    CustomMassesIgnoredWarning,
    EmptySpectrumWarning,
    InvalidStructureError,
    OptionError,
    OutOfDomainWarning,
    PredictionError,
    SpectrumCutOffWarning,
    UnseenCrystalSystemWarning,
)
from ase_dostransformer.graphs.electron import ElectronGraphRecipe
from ase_dostransformer.inference import predict_dos
from ase_dostransformer.model import DOSTransformer, ModelConfig
from ase_dostransformer.pipeline import CUSTOM_MASSES_MESSAGE, Prediction, predict_structures
from ase_dostransformer.training.options import TrainOptions
from ase_dostransformer.training.tasks import edos_model_config


@pytest.fixture(scope="module")
def net() -> DOSTransformer:
    """A tiny phonon model trained (so its domain says) on Na, Cl, Si in cells of up to 8 atoms, cubic only."""
    torch.manual_seed(0)
    model = DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4)).eval()
    model.meta = {"train_elements": [11, 14, 17], "train_max_atoms": 8}
    model.set_seen_systems(torch.tensor([0]))  # cubic
    return model


def crystals() -> list[Atoms]:
    return [
        bulk("NaCl", "rocksalt", a=5.64),  # inside the domain, cubic
        bulk("ZnO", "wurtzite", a=3.25, c=5.21),  # unseen elements, hexagonal (unseen system)
        bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1)),  # 16 atoms: larger than any training cell
    ]


def recorded(call) -> tuple[object, list[tuple[type, str]]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [(w.category, str(w.message)) for w in caught]


def test_the_three_callers_give_the_same_findings(net):
    items = crystals()
    predictions = predict_structures(net, items, device="cpu")
    assert [p.index for p in predictions] == [0, 1, 2]
    assert all(isinstance(p, Prediction) for p in predictions)
    assert [p.crystal_system for p in predictions] == ["cubic", "hexagonal", "cubic"]
    assert [p.out_of_domain for p in predictions] == [False, True, True]
    assert [p.natoms for p in predictions] == [2, 4, 16]
    categories = [{f.category for f in p.findings} for p in predictions]
    assert OutOfDomainWarning not in categories[0]
    assert UnseenCrystalSystemWarning not in categories[0]
    assert {OutOfDomainWarning, UnseenCrystalSystemWarning} <= categories[1]
    assert OutOfDomainWarning in categories[2]
    assert UnseenCrystalSystemWarning not in categories[2]
    assert any("Zn, O" in m or "O, Zn" in m for m in predictions[1].messages)
    assert all(p.cut_off == (SpectrumCutOffWarning in c) for p, c in zip(predictions, categories, strict=True))

    spectra, from_batch = recorded(lambda: predict_dos(net, items, device="cpu"))
    expected = [(f.category, f"structure {p.index}: {f.message}") for p in predictions for f in p.findings]
    assert from_batch == expected  # same classes, same words, "structure i: " in front
    np.testing.assert_array_equal(spectra, np.stack([p.dos for p in predictions]))

    calc = DOSCalculator(model=net, electron_model=None, device="cpu")
    for p, atoms in zip(predictions, items, strict=True):
        _, from_calc = recorded(lambda atoms=atoms: calc.get_property("phonon_dos", atoms))
        assert from_calc == [(f.category, f.message) for f in p.findings]
        assert calc.results["phonon_dos_warnings"] == p.messages
        assert calc.results["phonon_dos_out_of_domain"] is p.out_of_domain
        assert calc.results["phonon_dos_cut_off"] is p.cut_off
        np.testing.assert_allclose(calc.results["phonon_dos"], p.dos, atol=1e-6)


def test_an_all_zero_spectrum_is_a_finding(net):
    silent = copy.deepcopy(net)
    with torch.no_grad():
        silent.head.weight.zero_()
        silent.head.bias.fill_(-1.0)  # clamped to zero everywhere
    (p,) = predict_structures(silent, [bulk("NaCl", "rocksalt", a=5.64)], device="cpu")
    assert not np.any(p.dos)
    assert not p.cut_off
    (finding,) = [f for f in p.findings if f.category is EmptySpectrumWarning]
    assert finding.message == "the model predicted an all-zero spectrum; it cannot be scaled to 3N states"
    with pytest.warns(EmptySpectrumWarning, match="structure 0: the model predicted an all-zero spectrum"):
        predict_dos(silent, [bulk("NaCl", "rocksalt", a=5.64)], device="cpu")


def test_keep_isolates_an_invalid_structure(net):
    molecule = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])  # no periodic cell
    good = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    alone = predict_structures(net, good, device="cpu")
    mixed = predict_structures(net, [good[0], molecule, good[1]], device="cpu", on_invalid="keep")
    assert [p.ok for p in mixed] == [True, False, True]
    bad = mixed[1]
    assert isinstance(bad.error, InvalidStructureError)
    assert "periodic" in str(bad.error)
    assert bad.dos is None
    assert bad.findings == ()
    assert bad.natoms == 2
    np.testing.assert_array_equal(mixed[0].dos, alone[0].dos)
    np.testing.assert_array_equal(mixed[2].dos, alone[1].dos)
    assert [p.messages for p in (mixed[0], mixed[2])] == [p.messages for p in alone]
    with pytest.raises(InvalidStructureError, match="structure 1: .*periodic"):
        predict_structures(net, [good[0], molecule, good[1]], device="cpu")


def test_a_non_finite_output_fails_only_its_structure(net, monkeypatch):
    real = batching.predict_graphs_members

    def breaks_on_four_atoms(model, graphs, **kw):
        bad = [k for k, g in enumerate(graphs) if int(g.num_nodes) == 4]
        if bad:
            error = PredictionError(f"model produced non-finite values for structure {bad[0]}")
            error.structure = bad[0]
            raise error
        return real(model, graphs, **kw)

    monkeypatch.setattr(batching, "predict_graphs_members", breaks_on_four_atoms)
    items = crystals()
    kept = predict_structures(net, items, device="cpu", on_invalid="keep", batch_size=8)
    assert [p.ok for p in kept] == [True, False, True]
    assert isinstance(kept[1].error, PredictionError)
    assert kept[1].dos is None
    assert (kept[1].crystal_system, kept[1].natoms, kept[1].out_of_domain) == ("hexagonal", 4, True)
    with pytest.raises(PredictionError, match="structure 1: the model produced non-finite values"):
        predict_structures(net, items, device="cpu")


def test_kinds_without_the_cut_off_check_are_never_cut_off():
    torch.manual_seed(0)
    opts = TrainOptions(hidden=32, layers=1, transformer=1, heads=4)
    electron = DOSTransformer(edos_model_config(opts, ElectronGraphRecipe())).eval()
    (p,) = predict_structures(electron, bulk("Si", "diamond", a=5.43), device="cpu")
    assert p.kind.name == "electron"
    assert p.grid.npoints == 201
    assert p.dos.shape == (201,)
    assert p.cut_off is False
    assert SpectrumCutOffWarning not in {f.category for f in p.findings}


def test_arguments_are_checked(net):
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    for kwargs in ({"batch_size": 0}, {"cut_off_threshold": float("nan")}, {"on_invalid": "skip"}):
        with pytest.raises(OptionError):
            predict_structures(net, [atoms], device="cpu", **kwargs)
    assert predict_structures(net, [], device="cpu") == []


class CountingAtoms(Atoms):
    """ASE ``Atoms`` that count how often their positions and masses are read."""

    reads: dict[str, int]

    def get_positions(self, wrap: bool = False, **kwargs) -> np.ndarray:
        self.reads["positions"] += 1
        return super().get_positions(wrap, **kwargs)

    def get_masses(self) -> np.ndarray:
        self.reads["masses"] += 1
        return super().get_masses()


def test_ignored_custom_masses_are_named_from_the_graph_without_reading_the_structure_again(net):
    nacl = bulk("NaCl", "rocksalt", a=5.64)
    atoms = CountingAtoms(nacl.numbers, positions=nacl.positions, cell=nacl.cell, pbc=True)
    atoms.set_masses([nacl.get_masses()[0], 36.96590])  # 37Cl
    atoms.reads = {"positions": 0, "masses": 0}
    (p,) = predict_structures(net, [atoms], device="cpu")
    assert atoms.reads == {"positions": 1, "masses": 1}  # featurised once; the finding comes from the graph
    (finding,) = [f for f in p.findings if issubclass(f.category, CustomMassesIgnoredWarning)]
    assert finding.message == CUSTOM_MASSES_MESSAGE.format(atoms="[1]")  # the words as before
