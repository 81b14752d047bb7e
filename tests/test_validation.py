"""Input validation in one place: every bad structure gets a clear error on every path, out-of-domain ones a flag."""

from __future__ import annotations

import csv
import json
import re
import warnings

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.io import write
from pymatgen.core import Lattice, Structure

from ase_dostransformer.calculator import DOSCalculator
from ase_dostransformer.cli.predict import run_predict
from ase_dostransformer.graphs import (
    InvalidStructureError,
    OutOfDomainWarning,
    PhononGraphRecipe,
    check_domain,
    crystal_arrays,
)
from ase_dostransformer.graphs.neighbours import MAX_CELL_LIST_CUBES, periodic_pairs
from ase_dostransformer.graphs.validation import MIN_VOLUME_PER_ATOM
from ase_dostransformer.inference import predict_phonon_dos
from ase_dostransformer.model import save_model_file

# an untrained model predicts flat spectra, which are cut off: not what these tests are about
pytestmark = pytest.mark.filterwarnings("ignore::ase_dostransformer.calculator.SpectrumCutOffWarning")


@pytest.fixture(scope="module")
def domain_model_file(model, tmp_path_factory):
    """The tiny model saved with a training domain of Na, Cl, Si (at most 8 atoms a cell)."""
    path = tmp_path_factory.mktemp("domain") / "tiny.pt"
    return save_model_file(model, path, meta={"train_elements": [11, 14, 17], "train_max_atoms": 8})


def _atoms(symbols, positions, cell=(10.0, 10.0, 10.0), pbc=True) -> Atoms:
    return Atoms(symbols, positions=positions, cell=cell, pbc=pbc)


def _nan_position() -> Atoms:
    atoms = bulk("Si", "diamond", a=5.43)
    atoms.positions[1, 0] = np.nan
    return atoms


def _inf_cell() -> Atoms:
    atoms = bulk("Cu", a=3.6)
    atoms.cell[1, 2] = np.inf
    return atoms


def _overlap() -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.positions[1] = atoms.positions[0] + [0.1, 0.0, 0.0]
    return atoms


def _dummy() -> Atoms:
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.numbers[1] = 0
    return atoms


#: (case id, structure factory, regex the message must match); each names the field or atom at fault
INVALID = [
    ("empty", lambda: Atoms(cell=[5, 5, 5], pbc=True), r"empty structure: no atoms"),
    ("molecule", lambda: molecule("H2O"), r"no periodic cell \(pbc=\[False, False, False\]\)"),
    (
        "slab",
        lambda: _atoms("Si2", [[0, 0, 0], [1.5, 1.5, 1.5]], pbc=[True, True, False]),
        r"partly periodic structure \(pbc=\[True, True, False\]\)",
    ),
    ("no cell", lambda: Atoms("Cu", pbc=True), r"singular cell: cell vector a has zero length"),
    (
        "flat cell",
        lambda: _atoms("Si", [[0, 0, 0]], cell=[[3, 0, 0], [0, 3, 0], [3, 3, 0]]),
        r"singular cell: the cell vectors are \(nearly\) linearly dependent",
    ),
    (
        "cell in nm",
        lambda: bulk("Si", "diamond", a=0.543),
        r"near-zero cell volume: .* A\^3 for 2 atoms .* per atom, minimum 0.5 A\^3",
    ),
    ("nan position", _nan_position, r"atom 1 \(Si\) has a NaN or infinite position"),
    ("inf cell", _inf_cell, r"cell vector b contains NaN or infinite values"),
    ("overlap", _overlap, r"atoms 0 \(Na\) and 1 \(Cl\) are 0.1 A apart"),
    (
        "overlap across the boundary",
        lambda: _atoms("NaCl", [[0.1, 5, 5], [9.95, 5, 5]]),
        r"atoms 0 \(Na\) and 1 \(Cl\) are 0.15 A apart \(periodic images included\)",
    ),
    (
        "own image",
        lambda: _atoms("Cu", [[0, 0, 0]], cell=[0.4, 10, 10]),
        r"atom 0 \(Cu\) is 0.4 A from its own periodic image.* cell is too small",
    ),
    ("dummy X", _dummy, r"atom 1 is a dummy atom 'X' \(Z=0\)"),
    (
        "Z 119",
        lambda: Atoms(numbers=[11, 119], positions=[[0, 0, 0], [2, 2, 2]], cell=[5, 5, 5], pbc=True),
        r"atom 1 has atomic number 119, outside 1..118",
    ),
    (
        "negative Z",
        lambda: Atoms(numbers=[-3], positions=[[0, 0, 0]], cell=[5, 5, 5], pbc=True),
        r"atom 0 has atomic number -3",
    ),
]
IDS = [case[0] for case in INVALID]


@pytest.mark.parametrize(("name", "make", "message"), INVALID, ids=IDS)
def test_crystal_arrays_rejects(name, make, message) -> None:
    with pytest.raises(InvalidStructureError, match=message) as err:
        crystal_arrays(make())
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize(("name", "make", "message"), INVALID, ids=IDS)
def test_calculator_rejects(model, name, make, message) -> None:
    atoms = make()
    calc = DOSCalculator(model=model, device="cpu")
    with pytest.raises(InvalidStructureError, match=message):
        calc.get_property("phonon_dos", atoms)
    assert "phonon_dos" not in calc.results


@pytest.mark.parametrize(("name", "make", "message"), INVALID, ids=IDS)
def test_batch_api_names_the_structure(model, name, make, message) -> None:
    good = bulk("Cu", a=3.6)
    with pytest.raises(InvalidStructureError, match="structure 1: " + message):
        predict_phonon_dos(model, [good, make(), good])


def test_predict_command_records_each_invalid_frame(model, tmp_path) -> None:
    """One extxyz holding every invalid case between good frames: each fails alone with its reason."""
    frames, expected = [bulk("Cu", a=3.6)], {0: None}
    for name, make, message in INVALID:
        if name in ("empty", "no cell", "Z 119", "negative Z"):  # extxyz cannot hold these
            continue
        expected[len(frames)] = message
        frames.append(make())
    frames.append(bulk("Si", "diamond", a=5.43))
    expected[len(frames) - 1] = None
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "all.extxyz", frames, format="extxyz")
    write(folder / "empty.extxyz", Atoms(cell=[5, 5, 5], pbc=True), format="extxyz")
    records = run_predict([folder], model=model, out=tmp_path / "out", device="cpu", temperatures=[300.0])
    by_frame = {r.frame: r for r in records if r.source.endswith("all.extxyz")}
    assert sorted(by_frame) == sorted(expected)
    for frame, message in expected.items():
        rec = by_frame[frame]
        if message is None:
            assert rec.status == "ok", rec.error
        else:
            assert rec.status == "failed", frame
            assert rec.error.startswith("InvalidStructureError: "), rec.error
            assert re.search(message, rec.error), (message, rec.error)
    empty = next(r for r in records if r.source.endswith("empty.extxyz"))
    assert empty.status == "failed", empty.error
    assert "no atoms" in empty.error or "no structures" in empty.error, empty.error


def test_minimum_distance_threshold() -> None:
    """Atoms 0.51 A apart are accepted, 0.49 A apart refused (the documented 0.5 A limit)."""
    crystal_arrays(_atoms("H2", [[0, 0, 0], [0.51, 0, 0]]))
    with pytest.raises(InvalidStructureError, match=r"atoms 0 \(H\) and 1 \(H\) are 0.49 A apart"):
        crystal_arrays(_atoms("H2", [[0, 0, 0], [0.49, 0, 0]]))


def test_volume_threshold_is_far_below_real_solids() -> None:
    densest = bulk("C", "diamond", a=3.567)  # 5.7 A^3 per atom
    assert densest.get_volume() / len(densest) > 10 * MIN_VOLUME_PER_ATOM
    crystal_arrays(densest)


def test_pymatgen_dummy_species_and_overlap() -> None:
    lattice = Lattice.cubic(5.0)
    with pytest.raises(InvalidStructureError, match=r"site 0 is a dummy species 'X0\+'"):
        crystal_arrays(Structure(lattice, ["X0+", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]]))
    with pytest.raises(InvalidStructureError, match=r"atoms 0 \(Na\) and 1 \(Cl\) are 0.05 A apart"):
        crystal_arrays(Structure(lattice, ["Na", "Cl"], [[0, 0, 0], [0.01, 0, 0]]))
    crystal_arrays(Structure(lattice, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))


def test_positions_far_outside_the_cell_give_the_graph_of_the_wrapped_crystal() -> None:
    recipe = PhononGraphRecipe()
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    shifted = atoms.copy()
    shifted.positions[1] += 1000 * atoms.cell[0] - 700 * atoms.cell[2]
    a, b = recipe.featurise(atoms), recipe.featurise(shifted)
    key = lambda g: sorted(map(tuple, np.round(g.edge_vec.numpy(), 4).tolist()))  # noqa: E731
    assert key(a) == key(b)


def test_sparse_huge_cell_uses_the_bounded_neighbour_search() -> None:
    """Two atoms in a 2 km cell: pymatgen's cell list would need petabytes; ASE's binned search takes over."""
    positions = np.array([[0.0, 0.0, 0.0], [1.0e4, 1.0e4, 1.0e4]])
    cell = np.eye(3) * 2.0e4
    assert MAX_CELL_LIST_CUBES < (2.0e4 / 1.0) ** 3
    centre, neighbour, images, dist = periodic_pairs(positions, cell, 4.0)
    assert len(dist) == 0
    crystal_arrays(Atoms("Na2", positions=positions, cell=cell, pbc=True))
    # the fallback finds the same pairs as the cell list
    pos = np.array([[0.0, 0.0, 0.0], [1.2, 0.3, 0.1], [2.0, 2.0, 2.0]])
    small = periodic_pairs(pos, np.eye(3) * 3.0, 2.5)
    import ase_dostransformer.graphs.neighbours as nb

    before = nb.MAX_CELL_LIST_CUBES
    nb.MAX_CELL_LIST_CUBES = 0
    try:
        forced = periodic_pairs(pos, np.eye(3) * 3.0, 2.5)
    finally:
        nb.MAX_CELL_LIST_CUBES = before
    as_set = lambda r: sorted(zip(r[0].tolist(), r[1].tolist(), map(tuple, r[2].tolist()), strict=True))  # noqa: E731
    assert as_set(small) == as_set(forced)


# ---------------------------------------------------------------- out of domain: predicted, flagged


def test_unseen_element_is_flagged_by_the_calculator(domain_model_file) -> None:
    calc = DOSCalculator(model=str(domain_model_file), device="cpu")
    atoms = bulk("GaAs", "zincblende", a=5.65)
    with pytest.warns(OutOfDomainWarning, match="element\\(s\\) Ga, As never seen in training"):
        dos = calc.get_property("phonon_dos", atoms)
    assert dos.shape == (51,)
    assert np.isfinite(dos).all()
    assert calc.results["phonon_dos_out_of_domain"] is True
    assert any("Ga, As never seen" in m for m in calc.results["phonon_dos_warnings"])

    calc.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", OutOfDomainWarning)
        calc.get_property("phonon_dos", bulk("Si", "diamond", a=5.43))
    assert calc.results["phonon_dos_out_of_domain"] is False


def test_cell_larger_than_training_is_flagged_but_works(domain_model_file) -> None:
    calc = DOSCalculator(model=str(domain_model_file), device="cpu")
    atoms = bulk("NaCl", "rocksalt", a=5.64).repeat((2, 2, 2))
    with pytest.warns(OutOfDomainWarning, match="16 atoms in the cell, more than the largest training cell \\(8"):
        dos = calc.get_property("phonon_dos", atoms)
    assert np.isfinite(dos).all()
    assert calc.results["phonon_dos_out_of_domain"] is True


def test_isolated_atom_is_a_warning_not_an_error(domain_model_file) -> None:
    """Simple-cubic Na with a = 4.5 A: no neighbour within the 4 A cutoff, only the self loop."""
    atoms = _atoms("Na", [[0, 0, 0]], cell=[4.5, 4.5, 4.5])
    graph = PhononGraphRecipe().featurise(atoms)
    found = check_domain(graph, {"train_elements": [11]})
    assert found.isolated_atoms == (0,)
    assert not found.out_of_domain
    calc = DOSCalculator(model=str(domain_model_file), device="cpu")
    with pytest.warns(OutOfDomainWarning, match=r"atom\(s\) 0 \(Na\) have no neighbour within 4 A"):
        dos = calc.get_property("phonon_dos", atoms)
    assert np.isfinite(dos).all()
    assert calc.results["phonon_dos_out_of_domain"] is False
    # an atom whose only neighbours are its own periodic images is not isolated
    assert check_domain(PhononGraphRecipe().featurise(bulk("Cu", a=3.6))).isolated_atoms == ()


def test_slab_in_a_vacuum_box_is_flagged_out_of_domain(domain_model_file) -> None:
    slab = bulk("NaCl", "rocksalt", a=5.64, cubic=True)  # two NaCl layers a cell along z
    slab.center(vacuum=5.0, axis=2)  # 10 A of vacuum between the slab's periodic images
    found = check_domain(PhononGraphRecipe().featurise(slab), {"train_elements": [11, 17]})
    assert found.vacuum == pytest.approx(10.0, abs=1e-4)
    assert found.out_of_domain
    assert not found.unseen_elements
    assert not found.too_large
    calc = DOSCalculator(model=str(domain_model_file), device="cpu")
    with pytest.warns(OutOfDomainWarning, match="empty layer 10.0 A wide .* a slab, wire or molecule"):
        dos = calc.get_property("phonon_dos", slab)
    assert np.isfinite(dos).all()
    assert calc.results["phonon_dos_out_of_domain"] is True
    box = molecule("H2O")
    box.center(vacuum=6.0)
    box.pbc = True
    assert check_domain(PhononGraphRecipe().featurise(box)).in_vacuum


def test_vacuum_gap_of_bulk_crystals_is_small_and_supercell_invariant() -> None:
    from ase_dostransformer.graphs.validation import vacuum_gap

    for atoms in (bulk("Cu", a=3.6), bulk("NaCl", "rocksalt", a=5.64), bulk("ZnO", "wurtzite", a=3.25, c=5.21)):
        gap = vacuum_gap(atoms.cell[:], atoms.get_scaled_positions())
        big = atoms.repeat((2, 3, 1))
        assert gap < 3.0
        assert vacuum_gap(big.cell[:], big.get_scaled_positions()) == pytest.approx(gap, rel=1e-9)
    # a layered crystal keeps its interlayer gap (graphite: 3.35 A between the sheets)
    from ase.build import graphene

    sheet = graphene(a=2.46, vacuum=0.0)
    sheet.cell[2] = [0, 0, 3.35]
    assert vacuum_gap(sheet.cell[:], sheet.get_scaled_positions()) == pytest.approx(3.35, abs=1e-6)


def test_no_bulk_crystal_of_the_phonon_data_is_taken_for_a_slab(phdos_dir) -> None:
    from ase_dostransformer.graphs.validation import MAX_BULK_VACUUM, WIDEST_BULK_VACUUM, vacuum_gap
    from ase_dostransformer.io.phdos import load_phonon_dataset

    gaps = np.array([vacuum_gap(a.cell[:], a.get_scaled_positions()) for a in load_phonon_dataset(phdos_dir).atoms])
    assert len(gaps) == 1521
    assert gaps.max() == pytest.approx(3.92, abs=0.01)
    assert gaps.max() < MAX_BULK_VACUUM
    assert round(float(gaps.max()), 1) == WIDEST_BULK_VACUUM  # the figure the out-of-domain message quotes


def test_model_without_training_domain_flags_nothing_but_isolated_atoms(model) -> None:
    graph = PhononGraphRecipe().featurise(bulk("GaAs", "zincblende", a=5.65).repeat(3))
    found = check_domain(graph, getattr(model, "meta", None))
    assert not found.out_of_domain
    assert found.messages() == []


def test_batch_api_warns_naming_the_structure(domain_model_file) -> None:
    from ase_dostransformer.pretrained import load_model

    net = load_model(str(domain_model_file), device="cpu")
    with pytest.warns(OutOfDomainWarning, match="structure 1: out of domain: element\\(s\\) Cu"):
        out = predict_phonon_dos(net, [bulk("Si", "diamond", a=5.43), bulk("Cu", a=3.6)])
    assert out.shape == (2, 51)
    assert np.isfinite(out).all()


def test_predict_summary_has_out_of_domain(domain_model_file, tmp_path) -> None:
    write(tmp_path / "Si.cif", bulk("Si", "diamond", a=5.43))
    write(tmp_path / "Cu.cif", bulk("Cu", a=3.6))
    run_predict([tmp_path / "Si.cif", tmp_path / "Cu.cif"], model=str(domain_model_file), out=tmp_path / "o")
    with open(tmp_path / "o" / "summary.csv", newline="") as fh:
        rows = {r["name"]: r for r in csv.DictReader(fh)}
    assert rows["Si"]["status"] == rows["Cu"]["status"] == "ok"
    assert rows["Si"]["out_of_domain"] == "False"
    assert rows["Cu"]["out_of_domain"] == "True"
    assert "Cu never seen in training" in rows["Cu"]["warnings"]
    js = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert js["n_out_of_domain"] == 1
    assert js["failures"] == []


def test_disordered_cif_read_by_ase_is_rejected(tmp_path) -> None:
    """ASE's CIF reader keeps one species per mixed site; predicting that stand-in would be wrong."""
    from ase.io import read

    from ase_dostransformer.graphs import InvalidStructureError
    from ase_dostransformer.graphs.structure import crystal_arrays

    cif = tmp_path / "mixed.cif"
    cif.write_text(
        "data_x\n_cell_length_a 4.0\n_cell_length_b 4.0\n_cell_length_c 4.0\n_cell_angle_alpha 90\n"
        "_cell_angle_beta 90\n_cell_angle_gamma 90\n_symmetry_space_group_name_H-M 'P 1'\nloop_\n"
        "_atom_site_label\n_atom_site_type_symbol\n_atom_site_fract_x\n_atom_site_fract_y\n_atom_site_fract_z\n"
        "_atom_site_occupancy\nA Fe 0 0 0 0.5\nB Co 0 0 0 0.5\nC O 0.5 0.5 0.5 1.0\n"
    )
    atoms = read(cif)
    assert len(atoms) == 2  # what ASE made of it: an ordered stand-in
    with pytest.raises(InvalidStructureError, match="disordered structure: site 0 has partial occupancies"):
        crystal_arrays(atoms)
    ordered = read(cif)
    ordered.info.pop("occupancy")
    assert crystal_arrays(ordered).natoms == 2
