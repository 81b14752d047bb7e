"""The universal potential's frozen per-atom features: values, the recipe that caches them, the embedders."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from torch_geometric.data import Batch

from ase_dostransformer.errors import InvalidStructureError, OptionError
from ase_dostransformer.graphs import foundation
from ase_dostransformer.graphs.cache import cache_file, cached_graphs, recipe_key
from ase_dostransformer.graphs.foundation import (
    FEATURE_DIM,
    FoundationMemo,
    foundation_features,
    foundation_potential,
    shared_foundation_features,
)
from ase_dostransformer.graphs.phonon import PhononGraphRecipe
from ase_dostransformer.model import ModelConfig
from ase_dostransformer.model.dostransformer import DOSTransformer
from ase_dostransformer.model.embedders import EMBEDDERS


def rocksalt(a: float = 4.25, species: str = "MgO") -> Atoms:
    return bulk(species, "rocksalt", a=a)


def unfixed_copy() -> torch.nn.Module:
    """A copy of the shipped TensorNet without the pair-order correction (matgl's own convention)."""
    from matgl.layers._embedding import TensorEmbedding

    model = copy.deepcopy(foundation_potential())
    for module in model.modules():
        if isinstance(module, TensorEmbedding):
            del module.message  # the instance-bound correction; the class's method shows through again
            del module._dostransformer_pair_order_fixed
    return model


def test_features_shape_dtype_and_determinism():
    structures = [rocksalt(), bulk("Cu", "fcc", a=3.6), bulk("Si", "diamond", a=5.43) * (2, 1, 1)]
    first = foundation_features(structures)
    again = foundation_features(structures)
    assert [f.shape for f in first] == [(2, FEATURE_DIM), (1, FEATURE_DIM), (4, FEATURE_DIM)]
    assert all(f.dtype == np.float32 and np.isfinite(f).all() for f in first)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    # batching changes nothing but rounding: one structure at a time gives the same features
    alone = [foundation_features([s])[0] for s in structures]
    for a, b in zip(first, alone, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # equivalent atoms (all Si of a supercell of diamond) get the same features
    np.testing.assert_allclose(first[2], np.repeat(first[2][:1], 4, axis=0), atol=1e-4)


def test_features_follow_the_atoms_and_their_neighbours():
    mgo = rocksalt()
    swapped = mgo.copy()
    swapped.numbers = mgo.numbers[::-1]  # O at the origin, Mg at the centre: the same crystal, translated
    f, g = foundation_features([mgo, swapped])
    np.testing.assert_allclose(g[::-1], f, atol=1e-4)  # each atom keeps its features
    assert np.abs(f[0] - f[1]).max() > 0.5  # Mg and O differ
    # the same Mg site with sulphur instead of oxygen around it
    mgs = rocksalt(species="MgS")
    h = foundation_features([mgs])[0]
    assert mgs.get_chemical_symbols()[0] == "Mg"
    assert np.abs(h[0] - f[0]).max() > 0.1


def test_pair_order_correction_changes_compounds_only():
    """Matgl's own pair order exchanges the two species of mixed pairs: elements are unaffected, compounds not."""
    raw = unfixed_copy()
    cu, mgo = bulk("Cu", "fcc", a=3.6), rocksalt()
    fixed = foundation_features([cu, mgo])
    unfixed = foundation_features([cu, mgo], model=raw)
    np.testing.assert_allclose(unfixed[0], fixed[0], atol=1e-5)
    assert np.abs(unfixed[1] - fixed[1]).max() > 0.1
    # the shared, corrected potential was left as it was
    np.testing.assert_array_equal(foundation_features([mgo])[0], foundation_features([mgo])[0])
    np.testing.assert_allclose(foundation_features([mgo])[0], fixed[1], atol=1e-4)


def test_unknown_element_and_molecule_are_refused():
    with pytest.raises(InvalidStructureError, match="element Og"):
        foundation_features([Atoms("Og", cell=[3, 3, 3], pbc=True)])
    with pytest.raises(InvalidStructureError, match="periodic"):
        foundation_features([Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=[5, 5, 5], pbc=False)])


def test_default_recipe_dict_is_unchanged():
    default = PhononGraphRecipe()
    assert "foundation" not in default.to_dict()
    on = PhononGraphRecipe(foundation=True)
    assert on.to_dict()["foundation"] is True
    assert recipe_key(on) != recipe_key(default)
    assert PhononGraphRecipe(**on.to_dict()) == on
    assert PhononGraphRecipe(**default.to_dict()) == default
    assert not hasattr(default.featurise(rocksalt()), "foundation")


def test_recipe_caches_the_features(tmp_path):
    recipe = PhononGraphRecipe(foundation=True)
    structures = [rocksalt(), bulk("Al", "fcc", a=4.05)]
    targets = np.random.default_rng(0).random((2, 51)).astype(np.float32)
    built = cached_graphs(recipe, structures, targets, "ab" * 32, folder=tmp_path)
    assert cache_file(recipe, "ab" * 32, tmp_path).is_file()
    read = cached_graphs(recipe, structures, targets, "ab" * 32, folder=tmp_path, build=lambda: [])
    direct = foundation_features(structures)
    for b, r, d in zip(built, read, direct, strict=True):
        assert r.foundation.shape == (len(d), FEATURE_DIM)
        torch.testing.assert_close(r.foundation, b.foundation, rtol=0, atol=0)
        np.testing.assert_allclose(r.foundation.numpy(), d, atol=1e-4)
    # collated batches keep one row per atom
    batch = Batch.from_data_list(read)
    assert batch.foundation.shape == (3, FEATURE_DIM)


@pytest.mark.parametrize("name", ["foundation", "foundation_gn"])
def test_embedder_trains_without_touching_the_potential(name):
    assert name in EMBEDDERS
    recipe = PhononGraphRecipe(foundation=True)
    cfg = ModelConfig(
        hidden=32,
        heads=4,
        layers=2,
        embedder=name,
        energy_encoding="value",
        node_dim=recipe.node_dim,
        edge_dim=recipe.edge_dim,
        recipe=recipe.to_dict(),
    )
    torch.manual_seed(0)
    model = DOSTransformer(cfg)
    graphs = [recipe.featurise(s, np.linspace(0, 1, 51)) for s in (rocksalt(), bulk("Cu", "fcc", a=3.6))]
    batch = Batch.from_data_list(graphs)
    out = model(batch, raw=True)["system"]
    assert out.shape == (2, 51)
    loss = ((out - batch.y) ** 2).mean()
    loss.backward()
    grads = [p.grad for p in model.embedder.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert batch.foundation.grad is None
    assert not batch.foundation.requires_grad
    assert all(p.grad is None for p in foundation_potential().parameters())
    # the features matter: other features, other output
    with torch.no_grad():
        before = model(batch)["system"]
        batch.foundation = batch.foundation.flip(0)
        assert (model(batch)["system"] - before).abs().max() > 1e-4
    # graphs without the features are refused with a message naming the recipe option
    plain = Batch.from_data_list([PhononGraphRecipe().featurise(rocksalt())])
    with pytest.raises(OptionError, match="foundation=True"):
        model(plain)


class CountingPotential:
    """Wraps :func:`foundation_features` (the real one runs): counts the structures it is given."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.structures = 0
        self._real = foundation.foundation_features
        monkeypatch.setattr(foundation, "foundation_features", self)

    def __call__(self, atoms_list, *args, **kwargs):
        self.structures += len(atoms_list)
        return self._real(atoms_list, *args, **kwargs)


def test_shared_scope_computes_each_crystal_once_and_exactly(monkeypatch):
    """The phonon and electron recipes feed the potential the same input: inside the scope it runs once."""
    from ase_dostransformer.graphs.electron import ElectronGraphRecipe

    counter = CountingPotential(monkeypatch)
    phonon, electron = PhononGraphRecipe(foundation=True), ElectronGraphRecipe(foundation=True)
    mgo = rocksalt()
    unshared = [phonon.featurise(mgo).foundation, electron.featurise(mgo).foundation]
    assert counter.structures == 2  # outside a scope nothing is kept
    with shared_foundation_features() as memo:
        shared = [phonon.featurise(mgo).foundation, electron.featurise(mgo).foundation]
        assert counter.structures == 3  # the electron recipe reused the phonon recipe's features
        assert (memo.hits, memo.misses, len(memo)) == (1, 1, 1)
        shared[0].mul_(0.0)  # a graph's features are its own: the memo and the other graph keep theirs
        np.testing.assert_array_equal(electron.featurise(mgo).foundation.numpy(), unshared[1].numpy())
        moved = mgo.copy()
        moved.positions[0, 0] += 1e-9  # not the same input: computed, never a near match
        electron.featurise(moved)
        assert counter.structures == 4
    np.testing.assert_array_equal(shared[1].numpy(), unshared[0].numpy())  # the potential's very numbers
    np.testing.assert_array_equal(unshared[0].numpy(), unshared[1].numpy())
    phonon.featurise(mgo)
    assert counter.structures == 5  # the scope is over: nothing kept


def test_nested_scopes_share_one_memo_and_leave_none_behind():
    with shared_foundation_features() as outer:
        with shared_foundation_features() as inner:
            assert inner is outer
        own = FoundationMemo(1024)
        with shared_foundation_features(own) as given:
            assert given is own
        assert foundation._ACTIVE_MEMO.get() is outer
    assert foundation._ACTIVE_MEMO.get() is None


def test_memo_is_bounded_in_bytes_and_drops_the_least_recently_used():
    features = np.ones((4, FEATURE_DIM), dtype=np.float32)  # 2048 bytes
    keys = [(bytes([k]) * 8,) for k in range(4)]  # 8 bytes each
    memo = FoundationMemo(max_bytes=2 * (2048 + 8))
    memo.put(keys[0], features)
    memo.put(keys[1], features)
    assert memo.get(keys[0]) is not None  # now the most recently used
    memo.put(keys[2], features)
    assert len(memo) == 2
    assert memo.nbytes == 2 * (2048 + 8) <= memo.max_bytes
    assert memo.get(keys[1]) is None  # the least recently used went
    assert memo.get(keys[0]) is not None
    assert memo.get(keys[2]) is not None
    memo.put(keys[3], np.ones((9, FEATURE_DIM), dtype=np.float32))  # larger than the whole limit: not kept
    assert memo.get(keys[3]) is None
    assert len(memo) == 2
    memo.clear()
    assert (len(memo), memo.nbytes) == (0, 0)
    with pytest.raises(OptionError, match="max_bytes"):
        FoundationMemo(-1)
