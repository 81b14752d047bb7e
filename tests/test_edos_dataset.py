"""Electron-DOS targets and dataset building: the documented processing, every source format, bad rows reported."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointDFTCalculator, SinglePointKPoint
from edos_synthetic import (
    crystals,
    spectrum,
    write_dft_result,
    write_mp_json,
    write_pymatgen_dos,
    write_sources,
    write_vasprun,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.signal import savgol_filter

from ase_dostransformer.cli import main
from ase_dostransformer.errors import DatasetError
from ase_dostransformer.graphs.electron import ElectronGraphRecipe
from ase_dostransformer.graphs.structure import crystal_arrays
from ase_dostransformer.io.electron_dataset import (
    build_edos_dataset,
    edos_graphs,
    load_edos_dataset,
    process_edos,
)
from ase_dostransformer.io.electron_sources import (
    EDOSRecord,
    SkippedRow,
    detect_format,
    gaussian_dos,
    read_edos_source,
    record_from_calculator,
)

GRID = np.linspace(-5, 5, 201)


# ------------------------------------------------------------------------------ processing


def test_processing_follows_the_spec_step_by_step() -> None:
    e = np.linspace(-12.0, 9.0, 901)
    d = 1.0 + np.sin(e) ** 2 + 0.3 * e
    ef = 1.37
    got = process_edos(e, d, ef)
    by_hand = savgol_filter(np.interp(GRID + ef, e, d), 17, 1)
    by_hand = np.clip(by_hand / by_hand.max(), 0, None)
    np.testing.assert_allclose(got, by_hand, rtol=1e-12, atol=1e-12)
    assert got.shape == (201,)
    assert got.max() == pytest.approx(1.0)


def test_smoothing_negatives_are_clamped() -> None:
    e = np.linspace(-8, 8, 321)
    d = np.where(e > -4.6, 0.0, 50.0) + np.exp(-((e - 1) ** 2))  # a cliff near the window edge
    y = process_edos(e, d, 0.0)
    assert (y >= 0).all()
    assert y.max() == 1.0


@settings(max_examples=25, deadline=None)
@given(shift=st.floats(-30, 30), scale=st.floats(1e-3, 1e3))
def test_fermi_shift_and_scale_do_not_change_the_target(shift: float, scale: float) -> None:
    e = np.linspace(-10, 10, 801)
    d = spectrum(3, e)
    ref = process_edos(e, d, 0.4)
    np.testing.assert_allclose(process_edos(e + shift, scale * d, 0.4 + shift), ref, atol=1e-9)


@pytest.mark.parametrize(
    ("energies", "densities", "efermi", "match"),
    [
        (np.linspace(-3, 9, 50), np.ones(50), 0.0, "not the whole"),
        (np.linspace(-9, 9, 50)[::-1], np.ones(50), 0.0, "not strictly increasing"),
        (np.linspace(-9, 9, 50), np.full(50, np.nan), 0.0, "non-finite"),
        (np.linspace(-9, 9, 50), np.ones(50), np.nan, "Fermi level"),
        (np.linspace(-9, 9, 50), np.zeros(50), 0.0, "no states"),
        (np.linspace(-9, 9, 50), np.ones(49), 0.0, "equal-length"),
    ],
)
def test_processing_refuses_bad_spectra(energies, densities, efermi, match) -> None:
    with pytest.raises(DatasetError, match=match):
        process_edos(energies, densities, efermi)


# ------------------------------------------------------------------------------ readers


def _only_record(items: list) -> EDOSRecord:
    assert len(items) == 1, items
    assert isinstance(items[0], EDOSRecord), items
    return items[0]


def test_gaussian_broadening_matches_ase_dos() -> None:
    """The 'ase' path against ase.dft.dos.DOS on a SinglePointDFTCalculator (any ASE DFT calculator)."""
    from ase.dft.dos import DOS

    atoms = bulk("Si")
    rng = np.random.default_rng(0)
    eps = np.sort(rng.uniform(-6, 12, size=(4, 10)), axis=1)
    eps[:, -1] = 15.0  # enough empty bands for the +5 eV window
    w = np.array([0.1, 0.2, 0.3, 0.4])
    calc = SinglePointDFTCalculator(atoms, energy=-10.8, efermi=0.7)
    calc.kpts = [SinglePointKPoint(w[k], 0, k, eps[k], np.zeros(10)) for k in range(4)]
    atoms.calc = calc
    ase_dos = DOS(calc, width=0.1, window=(-5.0, 5.0), npts=201)
    ours = gaussian_dos(eps[None], w, ase_dos.get_energies() + 0.7, width=0.1)
    # each state is summed within 8 widths of it: exp(-64) ~ 1e-28 of a peak is left out
    np.testing.assert_allclose(ours, ase_dos.get_dos(), rtol=1e-10, atol=1e-20)
    # any grid (here one point moved off the uniform grid): every state on every point, the same DOS
    uneven = ase_dos.get_energies() + 0.7
    uneven[100] += 0.013
    dense = gaussian_dos(eps[None], w, uneven, width=0.1)
    keep = np.arange(201) != 100
    np.testing.assert_allclose(dense[keep], ours[keep], rtol=1e-10, atol=1e-20)
    assert dense[100] != pytest.approx(ours[100], rel=1e-3)  # the moved point sees the states around it
    rec = record_from_calculator(atoms, rid="si")
    assert rec.format == "ase"
    assert rec.efermi == 0.7
    assert rec.properties["energy_per_atom"] == pytest.approx(-5.4)
    y = process_edos(rec.energies, rec.densities, rec.efermi)
    assert y.shape == (201,)
    assert y.max() == 1.0


@pytest.mark.parametrize("efermi", [-0.05, 0.3, 1.2])
def test_insulator_targets_are_referenced_to_the_valence_band_top(efermi: float) -> None:
    """Wherever the code puts its Fermi level inside the gap, the target is the same (0 eV = VBM)."""
    atoms = bulk("Si")
    rng = np.random.default_rng(1)
    eps = np.concatenate([rng.uniform(-6, -0.2, (4, 4)), rng.uniform(1.5, 14, (4, 6))], axis=1)
    eps = np.sort(eps, axis=1)
    eps[:, -1] = 15.0
    eps[2, 3] = -0.1  # the valence-band top
    w = np.full(4, 0.25)
    calc = SinglePointDFTCalculator(atoms, energy=-10.8, efermi=efermi)
    calc.kpts = [SinglePointKPoint(w[k], 0, k, eps[k], np.zeros(10)) for k in range(4)]
    atoms.calc = calc
    rec = record_from_calculator(atoms, rid="gapped")
    assert rec.efermi == -0.1
    assert rec.properties["efermi_dft"] == efermi
    assert rec.properties["band_gap"] == pytest.approx(eps[:, 4].min() + 0.1)
    reference = process_edos(rec.energies - rec.efermi, rec.densities, 0.0)
    np.testing.assert_allclose(process_edos(rec.energies, rec.densities, rec.efermi), reference, atol=1e-12)
    # a metal (a band crosses the Fermi level) keeps the code's Fermi level
    eps[0, 4] = efermi - 0.05
    calc.kpts = [SinglePointKPoint(w[k], 0, k, eps[k], np.zeros(10)) for k in range(4)]
    metal = record_from_calculator(atoms, rid="metal")
    assert metal.efermi == efermi
    assert metal.properties["band_gap"] == 0.0


def test_each_format_is_read_and_detected(tmp_path: Path) -> None:
    atoms, ef = crystals()[5][1], 0.3
    mp = write_mp_json(tmp_path / "mp.json", [("mp-22862", atoms, ef, 5)])
    pmg = write_pymatgen_dos(tmp_path / "nacl.json", atoms, ef, 5)
    vr = write_vasprun(tmp_path / "nacl" / "vasprun.xml", atoms, ef, 5)
    dft = write_dft_result(tmp_path / "nacl_gpaw.json", atoms, ef)
    assert [detect_format(p) for p in (mp, pmg, vr, dft)] == ["mp-json", "pymatgen-dos", "vasprun", "ase"]
    targets = []
    for path, fmt in ((mp, "mp-json"), (pmg, "pymatgen-dos"), (vr, "vasprun")):
        rec = _only_record(list(read_edos_source(path, "auto")))
        assert rec.format == fmt
        assert rec.efermi == pytest.approx(ef)
        assert sorted(crystal_arrays(rec.structure).numbers.tolist()) == [11, 17]
        targets.append(process_edos(rec.energies, rec.densities, rec.efermi))
    # the same spectrum through three formats gives the same target (vasprun rounds to 4 decimals)
    np.testing.assert_allclose(targets[0], targets[1], atol=1e-12)
    np.testing.assert_allclose(targets[0], targets[2], atol=1e-4)
    rec = _only_record(list(read_edos_source(dft, "ase")))
    assert rec.id == "nacl_gpaw"
    assert rec.properties["energy_per_atom"] == -3.0
    # forcing a wrong format is reported, not raised
    wrong = list(read_edos_source(mp, "pymatgen-dos"))
    assert isinstance(wrong[0], SkippedRow)
    assert "not a pymatgen Dos" in wrong[0].reason


def test_gpw_without_gpaw_is_skipped_with_a_reason(tmp_path: Path) -> None:
    try:
        import gpaw  # noqa: F401

        pytest.skip("GPAW is importable here: the no-GPAW message is not reachable")
    except ImportError:
        pass
    f = tmp_path / "si.gpw"
    f.write_bytes(b"not really")
    (item,) = read_edos_source(f)
    assert isinstance(item, SkippedRow)
    assert "GPAW is not importable" in item.reason


# ------------------------------------------------------------------------------ building


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    src = tmp_path_factory.mktemp("sources")
    expected = write_sources(src)
    out = tmp_path_factory.mktemp("dataset")
    report = build_edos_dataset([src], out)
    return src, out, {"expected": expected, "report": report}


def test_build_keeps_good_rows_and_reports_bad_ones(built) -> None:
    src, out, info = built
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"]["kept"] == 12
    assert m["counts"]["skipped"] == 8
    assert m["counts"]["inputs"] == 13
    rows = json.loads((out / "materials.json").read_text())
    assert sorted(r["id"] for r in rows) == sorted(info["expected"]["good"])
    reasons = {s["id"]: s["reason"] for s in m["skipped"]}
    assert "unreadable JSON" in reasons["broken"]
    assert "not the whole -5..5 eV window" in reasons["mp-narrow"]
    assert "efermi" in reasons["mp-nofermi"]
    assert "duplicate id 'mp-0'" in reasons["mp-0"]
    assert "no 'structure'" in reasons["mp-nostructure"]
    assert "has no structure" in reasons["plain_dos"]
    assert "more empty bands" in reasons["few_bands"]
    assert "Vasprun could not parse" in reasons["damaged"]
    # every input with its checksum and counts
    by_path = {Path(i["path"]).relative_to(src).as_posix(): i for i in m["inputs"]}
    mp = by_path["mp_batch.json"]
    assert mp["sha256"] == hashlib.sha256((src / "mp_batch.json").read_bytes()).hexdigest()
    assert (mp["rows"], mp["kept"], mp["skipped"], mp["format"]) == (5, 5, 0, "mp-json")
    assert by_path["mgo/vasprun.xml"]["format"] == "vasprun"
    assert m["recipe"] == ElectronGraphRecipe().to_dict()
    assert m["grid"] == {"start": -5.0, "stop": 5.0, "npoints": 201, "unit": "eV"}
    assert m["processing"]["savgol"] == {"window": 17, "order": 1, "function": "scipy.signal.savgol_filter"}
    assert sum(m["counts"]["by_crystal_system"].values()) == 12
    assert m["counts"]["by_crystal_system"]["monoclinic"] == 1
    assert m["counts"]["by_crystal_system"]["triclinic"] == 1


def test_built_dataset_loads_with_its_graphs(built) -> None:
    _, out, _ = built
    ds = load_edos_dataset(out)
    assert len(ds) == 12
    assert ds.dos.shape == (12, 201)
    assert ds.dos.dtype == np.float32
    assert np.allclose(ds.dos.max(axis=1), 1.0)
    assert (ds.dos >= 0).all()
    graphs = edos_graphs(ds)
    assert len(graphs) == 12
    for g, row in zip(graphs, ds.rows, strict=True):
        assert g.x.shape == (row["natoms"], 200)
        assert g.y.shape == (1, 201)
        assert torch_equal_counts(g.edge_index[1], row["natoms"])
    assert set(ds.num_species.tolist()) == {1, 2, 3}


def torch_equal_counts(dst, natoms: int) -> bool:
    """Every atom of these small dense crystals has exactly 12 incoming edges."""
    import torch

    return torch.bincount(dst, minlength=natoms).tolist() == [12] * natoms


def test_edited_dataset_is_refused(built, tmp_path: Path) -> None:
    import shutil

    _, out, _ = built
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    dos = np.load(copy / "dos.npy")
    dos[0, 0] += 0.5
    np.save(copy / "dos.npy", dos)
    with pytest.raises(ValueError, match="checksum"):
        load_edos_dataset(copy)
    with pytest.raises(FileNotFoundError, match="dataset build"):
        load_edos_dataset(tmp_path)


def test_global_features_are_opt_in_and_rows_without_them_skipped(built, tmp_path: Path) -> None:
    src, _, _ = built
    recipe = ElectronGraphRecipe(global_features=("energy_per_atom",))
    report = build_edos_dataset([src], tmp_path / "g", recipe=recipe, write_graphs=False)
    # pymatgen Dos files carry no energies: those three rows are skipped, with the reason
    assert report.kept == 9
    missing = [s for s in report.skipped if "missing global feature" in s["reason"]]
    assert sorted(s["id"] for s in missing) == ["gaas", "nacl", "zno"]
    ds = load_edos_dataset(tmp_path / "g")
    graphs = edos_graphs(ds)  # rebuilt (no graphs.pt), with the feature
    assert graphs[0].global_features.shape == (1, 1)


def test_cli_dataset_build(tmp_path: Path, capsys) -> None:
    src = tmp_path / "src"
    write_sources(src)
    assert (
        main(["dataset", "build", str(src / "mp_batch.json"), str(src / "broken.json"), "--out", str(tmp_path / "d")])
        == 0
    )
    printed = capsys.readouterr().out
    assert "5 materials written" in printed
    assert "skipped broken: unreadable JSON" in printed
    assert (tmp_path / "d" / "graphs.pt").is_file()
    assert main(["dataset", "build", str(src / "broken.json"), "--out", str(tmp_path / "e")]) == 2
    assert "no usable rows" in capsys.readouterr().err
    assert (
        main(["dataset", "build", str(src / "mp_batch.json"), "--format", "vasprun", "--out", str(tmp_path / "f")]) == 2
    )


def test_stored_graphs_expand_to_exactly_the_featurised_ones(built) -> None:
    import torch

    from ase_dostransformer.io.torch_files import load_graph_file

    _, out, _ = built
    ds = load_edos_dataset(out)
    _, stored = load_graph_file(out / "graphs.pt")
    assert "x" not in stored[0]
    assert "edge_attr" not in stored[0]
    recipe = ElectronGraphRecipe()
    for g, atoms, y in zip(edos_graphs(ds), ds.atoms, ds.dos, strict=True):
        fresh = recipe.featurise(atoms, y)
        for key in ("x", "edge_attr", "edge_index", "edge_vec", "z", "system", "y"):
            assert torch.equal(g[key], fresh[key]), key


def test_json_lines_are_streamed_row_by_row(tmp_path: Path) -> None:
    mp = json.loads(
        write_mp_json(
            tmp_path / "mp.json", [(f"mp-{k}", a, 0.0, k) for k, (_, a) in enumerate(crystals()[:3])]
        ).read_text()
    )
    lines = [json.dumps(mp[0]), "{not json", json.dumps(mp[1]), "", json.dumps({"material_id": "x"}), json.dumps(mp[2])]
    (tmp_path / "mp.jsonl").write_text("\n".join(lines) + "\n")
    items = list(read_edos_source(tmp_path / "mp.jsonl"))
    assert [i.id for i in items if isinstance(i, EDOSRecord)] == ["mp-0", "mp-1", "mp-2"]
    skipped = [i for i in items if isinstance(i, SkippedRow)]
    assert skipped[0].reason.startswith("line 2 is not JSON")
    assert skipped[0].id == "mp#2"
    assert skipped[1].id == "x"
    assert "no 'structure'" in skipped[1].reason


def test_checksum_does_not_depend_on_how_inputs_are_named(tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "src"
    write_sources(src)
    a = build_edos_dataset([src], tmp_path / "a", write_graphs=False)
    monkeypatch.chdir(tmp_path)
    b = build_edos_dataset(["src"], tmp_path / "b", write_graphs=False)
    assert a.manifest["data_sha256"] == b.manifest["data_sha256"]
    assert json.loads((tmp_path / "a" / "materials.json").read_text())[0]["source"].startswith(str(src))


# ------------------------------------------------------------------------------ structure dicts


def test_structure_dicts_round_trip_exactly_and_name_the_bad_field() -> None:
    from ase import Atoms

    from ase_dostransformer.errors import InvalidStructureError
    from ase_dostransformer.io.atoms_json import atoms_from_dict, atoms_to_dict

    atoms = bulk("NaCl", "rocksalt", a=5.64) * (2, 1, 1)
    atoms.rattle(0.01, seed=3)
    d = json.loads(json.dumps(atoms_to_dict(atoms)))
    assert d["pbc"] == [True, True, True]
    back = atoms_from_dict(d)
    assert back.numbers.tolist() == atoms.numbers.tolist()
    assert back.pbc.all()
    np.testing.assert_array_equal(back.positions, atoms.positions)  # bit for bit through JSON
    np.testing.assert_array_equal(back.cell[:], atoms.cell[:])
    scaled = {
        "numbers": d["numbers"],
        "cell": d["cell"],
        "scaled_positions": atoms.get_scaled_positions(wrap=False).tolist(),
    }
    np.testing.assert_allclose(atoms_from_dict(scaled).positions, atoms.positions, atol=1e-12)
    with pytest.raises(InvalidStructureError, match="no atoms"):
        atoms_to_dict(Atoms(cell=[3, 3, 3], pbc=True))
    bad = [
        ({**d, "numbers": ["Na", "Cl", "Na", "Cl"]}, r"row 7: structure field 'numbers' is not an array of numbers"),
        ({**d, "numbers": [11.5, 17, 11, 17]}, r"field 'numbers' holds values that are not integers"),
        ({**d, "positions": d["positions"][:3]}, r"field 'positions' has shape \(3, 3\), expected \(4, 3\)"),
        ({**d, "cell": d["cell"][:2]}, r"field 'cell' has shape \(2, 3\)"),
        ({k: v for k, v in d.items() if k != "positions"}, r"structure lacks \['positions'\]"),
        ([1, 2], "structure is a list, not a dict"),
    ]
    for value, message in bad:
        with pytest.raises(DatasetError, match=message):
            atoms_from_dict(value, "row 7")
    with pytest.raises(DatasetError, match=r"lacks \['pbc'\]"):
        atoms_from_dict({k: v for k, v in d.items() if k != "pbc"}, "row 7", require_pbc=True)


def test_file_sha256_reads_large_files_in_blocks(tmp_path: Path) -> None:
    from ase_dostransformer.io.checksums import bytes_sha256, file_sha256

    data = np.random.default_rng(0).bytes(3 * (1 << 20) + 17)  # three full blocks and a partial one
    path = tmp_path / "blob.bin"
    path.write_bytes(data)
    assert file_sha256(path) == bytes_sha256(data) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path) != bytes_sha256(data[:-1])
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing")
