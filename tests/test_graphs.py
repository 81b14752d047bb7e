"""Crystal graphs: neighbour counts, features, crystal systems, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_masses
from ase.neighborlist import neighbor_list
from pymatgen.io.ase import AseAtomsAdaptor

from ase_dostransformer.graphs import (
    CRYSTAL_SYSTEMS,
    InvalidStructureError,
    PhononGraphRecipe,
    crystal_system_from_spacegroup,
)
from ase_dostransformer.graphs.cache import cached_graphs
from ase_dostransformer.graphs.crystal_system import spacegroup_number, spacegroup_number_spglib
from ase_dostransformer.graphs.neighbours import nearest_neighbours
from ase_dostransformer.graphs.structure import crystal_arrays

RECIPE = PhononGraphRecipe()


def rutile() -> Atoms:
    from ase.spacegroup import crystal

    return crystal(
        ["Ti", "O"], basis=[(0, 0, 0), (0.3048, 0.3048, 0)], spacegroup=136, cellpar=[4.594, 4.594, 2.959, 90, 90, 90]
    )


def test_spacegroup_ranges() -> None:
    expected = {
        1: "triclinic",
        2: "triclinic",
        3: "monoclinic",
        15: "monoclinic",
        16: "orthorhombic",
        74: "orthorhombic",
        75: "tetragonal",
        142: "tetragonal",
        143: "trigonal",
        167: "trigonal",
        168: "hexagonal",
        194: "hexagonal",
        195: "cubic",
        230: "cubic",
    }
    for number, name in expected.items():
        assert crystal_system_from_spacegroup(number) == name
    with pytest.raises(ValueError, match="1..230"):
        crystal_system_from_spacegroup(231)


@pytest.mark.parametrize(
    ("atoms", "system", "spacegroup"),
    [
        (bulk("NaCl", "rocksalt", a=5.64), "cubic", 225),
        (bulk("ZnO", "wurtzite", a=3.25, c=5.21), "hexagonal", 186),
        (rutile(), "tetragonal", 136),
        (bulk("Si", "diamond", a=5.43), "cubic", 227),
    ],
)
def test_crystal_system_of_known_structures(atoms: Atoms, system: str, spacegroup: int) -> None:
    g = RECIPE.featurise(atoms)
    assert CRYSTAL_SYSTEMS[int(g.system)] == system
    c = crystal_arrays(atoms)
    assert spacegroup_number(c.cell, c.scaled_positions, c.numbers) == spacegroup
    assert spacegroup_number_spglib(c.cell, c.scaled_positions, c.numbers) == spacegroup


def _one_atom(cellpar: list[float]) -> Atoms:
    from ase.geometry import cellpar_to_cell

    return Atoms("Cu", cell=cellpar_to_cell(cellpar), pbc=True)


@pytest.mark.parametrize(
    ("atoms", "prompt"),
    [
        (bulk("NaCl", "rocksalt", a=5.64), 0),
        (bulk("ZnO", "wurtzite", a=3.25, c=5.21), 1),
        (rutile(), 2),
        (_one_atom([3.0, 3.0, 3.0, 70, 70, 70]), 3),  # rhombohedral lattice, R-3m
        (_one_atom([3.0, 4.0, 5.0, 90, 90, 90]), 4),
        (_one_atom([3.0, 4.0, 5.0, 90, 100, 90]), 5),
        (_one_atom([3.0, 4.0, 5.0, 80, 95, 105]), 6),
    ],
)
def test_prompt_index_of_each_crystal_system(atoms: Atoms, prompt: int) -> None:
    """A crystal of each system gets the prompt the seed (and the shipped models) use for it.

    Cubic 0, hexagonal 1, tetragonal 2, trigonal 3, orthorhombic 4, monoclinic 5, triclinic 6.
    """
    g = RECIPE.featurise(atoms)
    assert int(g.system) == prompt
    c = crystal_arrays(atoms)
    number = spacegroup_number_spglib(c.cell, c.scaled_positions, c.numbers)
    assert CRYSTAL_SYSTEMS.index(crystal_system_from_spacegroup(number)) == prompt  # spglib agrees


def test_neighbour_counts_match_ase_and_self_loops() -> None:
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    g = RECIPE.featurise(atoms)
    i, _ = neighbor_list("ij", atoms, 4.0)
    # within 4 A of each Na/Cl: 6 at 2.82 A and 12 at 3.99 A; plus one self loop each
    assert len(i) == 2 * 18
    assert g.edge_index.shape[1] == len(i) + 2
    src, dst = g.edge_index
    loops = (g.edge_attr[:, 1:] == 0).all(dim=1)  # zero vector: the atom itself, not a periodic image
    assert int(loops.sum()) == 2
    assert torch.equal(src[loops], dst[loops])
    assert torch.allclose(g.edge_attr[loops], torch.tensor([[1.0, 0, 0, 0]] * 2))
    # the 12 same-sublattice neighbours at 3.99 A are periodic images of the atom itself
    assert int((src == dst).sum()) == 2 + 2 * 12


def test_edge_features_cosine_cutoff_and_unit_vectors() -> None:
    atoms = bulk("Si", "diamond", a=5.43)  # nearest neighbours at 2.351 A, next at 3.840 A
    g = RECIPE.featurise(atoms)
    loops = (g.edge_attr[:, 1:] == 0).all(dim=1)
    attr = g.edge_attr[~loops].numpy().astype(float)
    fc = attr[:, 0]
    unit_norm = np.linalg.norm(attr[:, 1:], axis=1)
    np.testing.assert_allclose(unit_norm, fc, rtol=1e-5)  # |[x,y,z]/r * fc| == fc
    r = np.array([2.3512, 3.8396])
    expected = 0.5 * (np.cos(np.pi * (r - 2.0) / 2.0) + 1.0)
    assert np.isclose(np.sort(np.unique(fc.round(4)))[::-1], expected.round(4), atol=2e-4).all()
    assert RECIPE.cosine_cutoff(np.array([1.0, 2.0, 4.0, 5.0])).tolist() == [1.0, 1.0, 0.0, 0.0]


def test_node_features_are_mass_valued_one_hot() -> None:
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    g = RECIPE.featurise(atoms)
    x = g.x.numpy()
    assert x.shape == (2, 118)
    assert x[0, 10] == pytest.approx(atomic_masses[11], rel=1e-6)
    assert x[1, 16] == pytest.approx(atomic_masses[17], rel=1e-6)
    assert (x > 0).sum() == 2


def test_pymatgen_structure_gives_the_same_graph() -> None:
    atoms = rutile()
    a = RECIPE.featurise(atoms)
    b = RECIPE.featurise(AseAtomsAdaptor.get_structure(atoms))
    assert torch.equal(a.edge_index, b.edge_index)
    assert torch.allclose(a.edge_attr, b.edge_attr, atol=1e-6)
    assert int(a.system) == int(b.system)


def test_nearest_neighbours_keeps_k_closest() -> None:
    atoms = bulk("Cu", "fcc", a=3.61)
    c = crystal_arrays(atoms)
    centre, _, vec = nearest_neighbours(c, 12, 8.0)
    assert len(centre) == 12
    assert np.allclose(np.linalg.norm(vec, axis=1), 3.61 / np.sqrt(2), atol=1e-6)


@pytest.mark.parametrize(
    ("atoms", "message"),
    [
        (Atoms(), "empty"),
        (Atoms("Si2", positions=[[0, 0, 0], [1, 1, 1]], cell=[5, 5, 5], pbc=[True, True, False]), "periodic"),
        (Atoms("Si", positions=[[0, 0, 0]], cell=[[1, 0, 0], [2, 0, 0], [0, 0, 1]], pbc=True), "singular"),
        (Atoms("Si2", positions=[[0, 0, 0], [np.nan, 1, 1]], cell=[5, 5, 5], pbc=True), "atom 1"),
    ],
)
def test_invalid_structures_raise_clear_errors(atoms: Atoms, message: str) -> None:
    with pytest.raises(InvalidStructureError, match=message):
        RECIPE.featurise(atoms)


def test_cache_reuses_graphs(tmp_path) -> None:
    structures = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    y = np.ones((2, 51), dtype=np.float32)
    first = cached_graphs(RECIPE, structures, y, "ab" * 32, tmp_path)
    files = list(tmp_path.glob("graphs-*.pt"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns
    second = cached_graphs(RECIPE, structures, y, "ab" * 32, tmp_path)
    assert files[0].stat().st_mtime_ns == mtime  # read, not rewritten
    assert torch.equal(first[1].edge_index, second[1].edge_index)
    cached_graphs(RECIPE, structures, y, "cd" * 32, tmp_path)  # other data -> other file
    assert len(list(tmp_path.glob("graphs-*.pt"))) == 2


def test_real_dataset_crystal_systems_and_moyopy_agrees_with_spglib(phdos_dir) -> None:
    from collections import Counter

    from ase_dostransformer.io.phdos import load_phonon_dataset

    ds = load_phonon_dataset(phdos_dir)
    assert len(ds) == 1521
    assert {k: len(v) for k, v in ds.split.items()} == {"train": 1191, "valid": 141, "test": 189}
    arrays = [crystal_arrays(a) for a in ds.atoms]
    # the README's counts are spglib's at 0.01 A (the default 0.1 A: tests/test_symprec.py)
    fast = [spacegroup_number(c.cell, c.scaled_positions, c.numbers, 0.01) for c in arrays]
    counts = Counter(crystal_system_from_spacegroup(n) for n in fast)
    # the dataset README's spglib counts
    assert counts == {
        "cubic": 425,
        "tetragonal": 324,
        "trigonal": 288,
        "orthorhombic": 204,
        "monoclinic": 153,
        "hexagonal": 119,
        "triclinic": 8,
    }
    sample = range(0, 1521, 15)
    ref = [spacegroup_number_spglib(c.cell, c.scaled_positions, c.numbers, 0.01) for c in (arrays[i] for i in sample)]
    assert [fast[i] for i in sample] == ref


def test_element_descriptors_touch_no_warning_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first call neither warns nor touches the process-wide warning filters (safe from any thread)."""
    import warnings

    from ase_dostransformer.graphs.elements import DESCRIPTORS, element_descriptor_table

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("element_descriptor_table changed the process-wide warning filters")

    element_descriptor_table.cache_clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with monkeypatch.context() as patch:
            for name in ("catch_warnings", "simplefilter", "filterwarnings", "resetwarnings"):
                patch.setattr(warnings, name, forbidden)
            table = element_descriptor_table()
    assert [str(w.message) for w in caught] == []
    flag = DESCRIPTORS.index("no_electronegativity")
    x = DESCRIPTORS.index("electronegativity/4")
    assert table[2, flag] == 1.0
    assert table[2, x] == 0.0
    assert table[8, flag] == 0.0
    assert table[8, x] == pytest.approx(3.44 / 4)
