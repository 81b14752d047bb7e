"""The electron-DOS graph recipe: 12 nearest neighbours within 8 A, Gaussian distances, MatScholar nodes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from torch_geometric.data import Batch

from ase_dostransformer.graphs.electron import (
    EMBEDDING_FILE,
    ElectronGraphRecipe,
    element_embeddings,
    gaussian_expansion,
    matscholar_table,
)
from ase_dostransformer.graphs.structure import InvalidStructureError
from ase_dostransformer.model import DOSTransformer, ModelConfig
from ase_dostransformer.spectra import ELECTRON_GRID


def test_recipe_defaults_are_the_papers() -> None:
    r = ElectronGraphRecipe()
    assert (r.neighbours, r.cutoff, r.gaussians, r.gaussian_start, r.gaussian_stop, r.gaussian_width) == (
        12,
        8.0,
        41,
        0.0,
        8.0,
        0.2,
    )
    assert (r.node_dim, r.edge_dim, r.global_dim) == (200, 41, 0)
    assert ElectronGraphRecipe.from_dict(r.to_dict()) == r


def test_twelve_neighbours_per_atom_and_no_dummy_node() -> None:
    atoms = bulk("GaAs", "zincblende", a=5.65)
    g = ElectronGraphRecipe().featurise(atoms)
    assert g.x.shape == (2, 200)  # one row per atom: no extra all-zero node
    assert g.edge_index.shape == (2, 24)
    assert g.edge_attr.shape == (24, 41)
    assert torch.bincount(g.edge_index[1], minlength=2).tolist() == [12, 12]
    r = g.edge_vec.norm(dim=1)
    # zincblende: 4 neighbours at a*sqrt(3)/4, then 12 at a/sqrt(2), of which the 8 first are kept
    assert torch.allclose(torch.sort(r[g.edge_index[1] == 0]).values[:4], torch.full((4,), 5.65 * 3**0.5 / 4))
    assert torch.all(r <= 8.0)
    assert int(g.system) == 0  # cubic


def test_cutoff_limits_the_neighbour_count() -> None:
    sparse = Atoms("Si", cell=[7.0, 7.0, 7.0], pbc=True)  # 6 neighbours at 7 A, next shell at 9.9 A > 8 A
    g = ElectronGraphRecipe().featurise(sparse)
    assert g.edge_index.shape[1] == 6
    lonely = Atoms("Si", cell=[9.0, 9.0, 9.0], pbc=True)  # nothing within 8 A: a graph without edges
    g = ElectronGraphRecipe().featurise(lonely)
    assert g.edge_index.shape == (2, 0)
    assert g.x.shape == (1, 200)


def test_gaussian_expansion_by_hand() -> None:
    rows = gaussian_expansion(np.array([1.0, 2.1]), 0.0, 8.0, 41, 0.2)
    assert rows.shape == (2, 41)
    # centres 0, 0.2, ..., 8.0: r = 1.0 sits on centre 5
    assert rows[0, 5] == pytest.approx(1.0)
    assert rows[0, 4] == pytest.approx(np.exp(-1.0))
    assert rows[0, 6] == pytest.approx(np.exp(-1.0))
    assert rows[0, 0] == pytest.approx(np.exp(-25.0))
    # r = 2.1 lies half way between centres 10 (2.0) and 11 (2.2)
    assert rows[1, 10] == pytest.approx(np.exp(-0.25))
    assert rows[1, 11] == pytest.approx(np.exp(-0.25))
    g = ElectronGraphRecipe().featurise(bulk("Cu", "fcc", a=3.61))
    d = 3.61 / 2**0.5
    expected = np.exp(-(((d - np.linspace(0, 8, 41)) / 0.2) ** 2))
    np.testing.assert_allclose(g.edge_attr[0].numpy(), expected, rtol=1e-5, atol=1e-7)


def test_matscholar_table_shape_and_known_values() -> None:
    table = matscholar_table()
    assert table.shape == (119, 200)
    assert table.dtype == np.float32
    assert np.isfinite(table[1:104]).all()
    assert np.isnan(table[0]).all()
    assert np.isnan(table[104:]).all()
    si = element_embeddings(np.array([14]))[0]
    # matminer 0.10.1, matscholar_els.json, "Si": first three and last value
    np.testing.assert_array_equal(
        si[:3], np.float32([-0.018988000229001045, -0.035817500203847885, 0.06580889970064163])
    )
    np.testing.assert_allclose(np.linalg.norm(table[1:104], axis=1), 1.0, atol=1e-5)  # unit vectors
    assert EMBEDDING_FILE.stat().st_size < 100_000  # small enough to ship
    assert (EMBEDDING_FILE.parent / "README.md").is_file()  # source and licence


def test_element_without_embedding_is_named() -> None:
    atoms = Atoms("Si2", positions=[[0, 0, 0], [1.3, 1.3, 1.3]], cell=[5, 5, 5], pbc=True)
    atoms.numbers[1] = 104  # Rf: beyond the table (H..Lr)
    with pytest.raises(InvalidStructureError, match="atom 1: element Rf"):
        ElectronGraphRecipe().featurise(atoms)


def test_global_features_only_when_asked() -> None:
    atoms = bulk("Si")
    plain = ElectronGraphRecipe()
    assert "global_features" not in plain.featurise(atoms)
    with pytest.raises(ValueError, match="takes no global features"):
        plain.featurise(atoms, global_features={"energy_per_atom": -5.4})
    rich = ElectronGraphRecipe(global_features=("energy_per_atom", "formation_energy_per_atom"))
    g = rich.featurise(atoms, global_features={"energy_per_atom": -5.4, "formation_energy_per_atom": 0.0})
    assert g.global_features.tolist() == [[pytest.approx(-5.4), 0.0]]
    with pytest.raises(ValueError, match="missing global feature"):
        rich.featurise(atoms, global_features={"energy_per_atom": -5.4})
    assert ElectronGraphRecipe.from_dict(rich.to_dict()) == rich


def test_model_takes_201_energy_tokens_and_global_features() -> None:
    recipe = ElectronGraphRecipe(global_features=("energy_per_atom",))
    cfg = ModelConfig(
        hidden=32,
        heads=4,
        layers=1,
        transformer=1,
        task="edos",
        grid=ELECTRON_GRID,
        node_dim=recipe.node_dim,
        edge_dim=recipe.edge_dim,
        aggregation="sum",
        node_scale=1.0,
        global_dim=recipe.global_dim,
        recipe=recipe.to_dict(),
    )
    model = DOSTransformer(cfg).eval()
    graphs = [
        recipe.featurise(a, global_features=[-4.0 - i])
        for i, a in enumerate([bulk("Si"), bulk("NaCl", "rocksalt", a=5.6), Atoms("Si", cell=[9, 9, 9], pbc=True)])
    ]
    out = model(Batch.from_data_list(graphs))
    assert out["system"].shape == (3, 201)
    assert out["global"].shape == (3, 201)
    assert torch.isfinite(out["system"]).all()
    assert (out["system"] >= 0).all()
    assert ModelConfig.from_dict(cfg.to_dict()).global_dim == 1
    # without the global features the model refuses instead of guessing
    bare = [ElectronGraphRecipe().featurise(bulk("Si"))]
    with pytest.raises(ValueError, match="global features"):
        model(Batch.from_data_list(bare))
