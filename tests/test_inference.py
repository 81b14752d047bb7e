"""Batched phonon-DOS prediction: shapes, normalisation, batch == one-at-a-time, device choice."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.spacegroup import crystal
from pymatgen.io.ase import AseAtomsAdaptor

from ase_dostransformer.errors import CustomMassesIgnoredWarning
from ase_dostransformer.graphs import InvalidStructureError
from ase_dostransformer.inference import (
    DEVICE_ENV,
    featurise_structures,
    graph_recipe,
    predict_graphs,
    predict_phonon_dos,
    resolve_device,
)
from ase_dostransformer.model import DOSTransformer, ModelConfig
from ase_dostransformer.pipeline import predict_structures

# untrained test models predict flat spectra, cut off at the top of the grid: expected here
pytestmark = pytest.mark.filterwarnings("ignore::ase_dostransformer.errors.SpectrumCutOffWarning")


def structures() -> list[Atoms]:
    rutile = crystal(
        ["Ti", "O"], basis=[(0, 0, 0), (0.3048, 0.3048, 0)], spacegroup=136, cellpar=[4.594, 4.594, 2.959, 90, 90, 90]
    )
    return [
        bulk("Cu", "fcc", a=3.615),
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("ZnO", "wurtzite", a=3.25, c=5.207, u=0.382),
        rutile,
        bulk("Si", "diamond", a=5.431, cubic=True),
        bulk("MgO", "rocksalt", a=4.212),
    ]


def test_shape_and_normalisation(model):
    y = predict_phonon_dos(model, structures(), device="cpu")
    assert y.shape == (6, 51)
    assert y.dtype == np.float64
    assert np.isfinite(y).all()
    assert (y >= 0).all()
    graphs = featurise_structures(graph_recipe(model), structures())
    np.testing.assert_allclose(predict_graphs(model, graphs), y, atol=0)  # not rescaled by default
    rescaled = predict_graphs(model, graphs, normalise=True)
    np.testing.assert_allclose(rescaled.max(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(rescaled * y.max(axis=1, keepdims=True), y, atol=1e-12)


def test_batch_equals_one_at_a_time(model):
    items = structures()
    single = np.stack([predict_phonon_dos(model, [a], batch_size=1, device="cpu")[0] for a in items])
    for batch_size in (2, 4, 64):
        batched = predict_phonon_dos(model, items, batch_size=batch_size, device="cpu")
        np.testing.assert_allclose(batched, single, atol=1e-5, rtol=0)
    # and in another order (a structure's neighbours in its batch do not matter)
    rev = predict_phonon_dos(model, items[::-1], device="cpu")[::-1]
    np.testing.assert_allclose(rev, single, atol=1e-5, rtol=0)


def test_different_structures_get_different_spectra(model):
    y = predict_phonon_dos(model, structures()[:2], device="cpu")
    assert np.abs(y[0] - y[1]).max() > 1e-4


def test_pymatgen_structure_and_single_atoms(model):
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    from_atoms = predict_phonon_dos(model, atoms, device="cpu")
    assert from_atoms.shape == (1, 51)
    from_pmg = predict_phonon_dos(model, [AseAtomsAdaptor.get_structure(atoms)], device="cpu")
    np.testing.assert_allclose(from_pmg, from_atoms, atol=1e-6)


def test_raw_output_is_the_unnormalised_model_output(model):
    recipe = graph_recipe(model)
    graphs = [recipe.featurise(a) for a in structures()[:3]]
    raw = predict_graphs(model, graphs, device="cpu", normalise=False)
    norm = predict_graphs(model, graphs, device="cpu", normalise=True)
    with torch.no_grad():
        from torch_geometric.data import Batch

        direct = model(Batch.from_data_list(graphs))["system"].numpy()
    np.testing.assert_allclose(raw, direct, atol=1e-6)
    np.testing.assert_allclose(norm, raw / raw.max(axis=1, keepdims=True), atol=1e-12)


def test_empty_input(model):
    assert predict_phonon_dos(model, [], device="cpu").shape == (0, 51)


def test_invalid_structure_names_its_position(model):
    bad = Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]])  # a molecule: no periodic cell
    with pytest.raises(InvalidStructureError, match="structure 1"):
        predict_phonon_dos(model, [bulk("Cu", a=3.6), bad], device="cpu")
    with pytest.raises(TypeError, match="path"):
        predict_phonon_dos(model, "NaCl.cif")


def test_recipe_comes_from_the_model_config():
    cfg = ModelConfig(
        hidden=32,
        layers=1,
        transformer=1,
        heads=4,
        recipe={"cutoff": 3.0, "cutoff_onset": 1.5, "self_loops": True, "name": "phonon-v1"},
    )
    recipe = graph_recipe(DOSTransformer(cfg))
    assert recipe.cutoff == 3.0
    assert recipe.cutoff_onset == 1.5
    with pytest.raises(ValueError, match="not a phonon DOS"):
        predict_phonon_dos(DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4, task="edos")), [])


def test_batch_size_must_be_positive(model):
    with pytest.raises(ValueError, match="batch_size"):
        predict_phonon_dos(model, [bulk("Cu", a=3.6)], batch_size=0)


def test_resolve_device_order(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device(None) == torch.device("cuda")  # cuda when available
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert resolve_device(None) == torch.device("cpu")  # the environment beats cuda
    monkeypatch.setenv(DEVICE_ENV, "meta")
    assert resolve_device("cpu") == torch.device("cpu")  # the argument beats the environment
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda:0")
    with pytest.raises(ValueError, match="invalid device"):
        resolve_device("not-a-device")


def test_graph_route_says_which_custom_masses_the_model_ignored(model):
    plain = bulk("NaCl", "rocksalt", a=5.64)
    heavy = plain.copy()
    heavy.set_masses([plain.get_masses()[0], 36.96590])  # 37Cl
    graphs = featurise_structures(graph_recipe(model), [plain, heavy])
    with pytest.warns(CustomMassesIgnoredWarning) as record:
        y = predict_graphs(model, graphs)
    (p,) = predict_structures(model, [heavy], device="cpu")
    pipeline = [f.message for f in p.findings if issubclass(f.category, CustomMassesIgnoredWarning)]
    ignored = [str(w.message) for w in record if issubclass(w.category, CustomMassesIgnoredWarning)]
    assert ignored == [f"structure 1: {m}" for m in pipeline]  # once, for the second structure, in the same words
    assert "ignores the custom masses of atoms [1]" in ignored[0]
    np.testing.assert_array_equal(y[1], y[0])  # it predicted with the standard masses
    with warnings.catch_warnings():
        warnings.simplefilter("error", CustomMassesIgnoredWarning)
        predict_graphs(model, graphs[:1])  # standard masses: nothing to say
