"""``dostransformer predict``: per-structure files, summary tables, failures recorded, exit codes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk, molecule
from ase.io import write

from ase_dostransformer.cli import build_parser, main
from ase_dostransformer.cli.predict import parse_temperatures, run_predict
from ase_dostransformer.errors import OptionError
from ase_dostransformer.io.phonopy_files import read_total_dos
from ase_dostransformer.io.summary import summary_columns
from ase_dostransformer.kinds.phonon import CUT_OFF_MESSAGE
from ase_dostransformer.model import DOSTransformer, ModelConfig, load_model_file, save_model_file
from ase_dostransformer.screening import quantity_columns


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4)).eval()
    return save_model_file(model, tmp_path_factory.mktemp("model") / "tiny.pt")


@pytest.fixture
def inputs(tmp_path):
    """A folder with two good files, a two-frame extxyz and (in a subfolder) a garbage CIF."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    write(folder / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    write(folder / "POSCAR", bulk("Si", "diamond", a=5.431), format="vasp")
    write(folder / "frames.extxyz", [bulk("Cu", a=3.615), bulk("MgO", "rocksalt", a=4.212).repeat((1, 1, 2))])
    (folder / "sub" / "garbage.cif").write_text("this is not a crystal\n")
    (folder / ".hidden.cif").write_text("hidden files are skipped\n")
    return folder


def read_summary(out):
    with open(out / "summary.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {r["name"]: r for r in rows}, json.loads((out / "summary.json").read_text())


def test_folder_with_a_garbage_file(inputs, model_file, tmp_path, capsys):
    out = tmp_path / "pred"
    code = main(
        [
            "predict",
            str(inputs),
            "--model",
            str(model_file),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--batch-size",
            "2",
            "--temperatures",
            "0:500:100",
            "--no-progress",
        ]
    )
    assert code == 1  # one file failed
    rows, js = read_summary(out)
    assert set(rows) == {"NaCl", "POSCAR", "frames_0", "frames_1", "sub__garbage"}
    assert js["n_structures"] == 5
    assert js["n_ok"] == 4
    assert js["n_failed"] == 1
    bad = rows["sub__garbage"]
    assert bad["status"] == "failed"
    assert "garbage.cif" in bad["error"]
    assert bad["output_dir"] == ""
    assert not (out / "sub__garbage").exists()
    assert "sub__garbage" in capsys.readouterr().err

    expected = {
        "NaCl": ("NaCl", 2, "cubic"),
        "POSCAR": ("Si2", 2, "cubic"),
        "frames_0": ("Cu", 1, "cubic"),
        "frames_1": ("Mg2O2", 4, "cubic"),
    }
    quantities = [c for name in quantity_columns([300.0]) for c in (name, name + "_std")]
    with open(out / "summary.csv", newline="") as fh:
        assert csv.DictReader(fh).fieldnames == summary_columns(quantities)  # no ids in these inputs
    for name, (formula, natoms, system) in expected.items():
        row = rows[name]
        assert row["status"] == "ok", row["error"]
        assert (row["formula"], int(row["natoms"]), row["crystal_system"]) == (formula, natoms, system)
        folder = out / name
        freqs, dos = read_total_dos(folder / "total_dos.dat")
        assert len(freqs) == 51
        assert freqs[-1] == pytest.approx(1000 / 33.35640951981521, rel=1e-8)
        assert np.trapezoid(dos, freqs) == pytest.approx(3 * natoms, abs=1e-6)
        assert (folder / "total_dos.dat").read_text().startswith("# ")
        tp = yaml.safe_load((folder / "thermal_properties.yaml").read_text())
        assert tp["natom"] == natoms
        assert [p["temperature"] for p in tp["thermal_properties"]] == [0, 100, 200, 300, 400, 500]
        cv_cell = float(row["cv_300K_J_per_K_per_mol_cells"])
        assert tp["thermal_properties"][3]["heat_capacity"] == pytest.approx(cv_cell, rel=1e-5)
        assert float(row["cv_300K_J_per_K_per_mol_atoms"]) == pytest.approx(cv_cell / natoms, rel=1e-5)
        with open(folder / "thermal_properties.csv", newline="") as fh:
            assert len(list(csv.reader(fh))) == 7
        assert (folder / "phonon_dos.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert rows["frames_1"]["frame"] == "1"
    assert rows["frames_1"]["source"].endswith("frames.extxyz")
    # an untrained model's flat spectrum is flagged as cut off, in the calculator's words, in the YAML too
    assert rows["NaCl"]["cut_off"] == "True"
    assert CUT_OFF_MESSAGE.format(threshold=0.05, top=1000) in rows["NaCl"]["warnings"].split("; ")
    assert yaml.safe_load((out / "NaCl" / "thermal_properties.yaml").read_text())["cut_off"] is True
    # a single model has no ensemble spread: the uncertainty columns are empty
    assert rows["NaCl"]["entropy_300K_J_per_K_per_mol_atoms_std"] == ""
    assert float(rows["NaCl"]["entropy_300K_J_per_K_per_mol_atoms"]) > 0
    assert js["structures"][0]["warnings"]
    assert js["device"] == "cpu"


def test_all_good_exits_zero_and_missing_file_fails(inputs, model_file, tmp_path):
    out = tmp_path / "ok"
    args = [
        "predict",
        str(inputs / "NaCl.cif"),
        str(inputs / "POSCAR"),
        "--model",
        str(model_file),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--no-progress",
        "--quiet",
        "--temperatures",
        "250,300",
    ]
    assert main(args) == 0
    rows, _ = read_summary(out)
    assert set(rows) == {"NaCl", "POSCAR"}
    assert all(r["status"] == "ok" for r in rows.values())
    assert main([args[0], str(inputs / "missing.cif"), *args[1:], "--overwrite"]) == 1  # same --out again
    rows, _ = read_summary(out)
    assert "no such file" in rows["missing"]["error"]


def test_invalid_structure_is_recorded(model_file, tmp_path):
    write(tmp_path / "water.xyz", molecule("H2O"))
    write(tmp_path / "cu.cif", bulk("Cu", a=3.615))
    records = run_predict(
        [tmp_path / "water.xyz", tmp_path / "cu.cif"],
        model=str(model_file),
        out=tmp_path / "o",
        device="cpu",
        temperatures=[300.0],
        progress=False,
    )
    status = {r.name: (r.status, r.error) for r in records}
    assert status["cu"] == ("ok", "")
    assert status["water"][0] == "failed"
    assert "periodic" in status["water"][1]


def test_bad_model_exits_2(tmp_path, capsys):
    write(tmp_path / "cu.cif", bulk("Cu", a=3.615))
    assert (
        main(["predict", str(tmp_path / "cu.cif"), "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_inputs_exit_2_with_a_working_model(model_file, tmp_path, capsys):
    """An empty folder (only a hidden file in it) is a usage error even though the model loads fine."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / ".hidden.cif").write_text("hidden files are skipped\n")
    out = tmp_path / "o"
    assert main(["predict", str(tmp_path / "empty"), "--model", str(model_file), "--out", str(out)]) == 2
    assert "no input files found" in capsys.readouterr().err
    assert not (out / "summary.json").exists()


def test_help_documents_exit_codes():
    text = build_parser()._subparsers._group_actions[0].choices["predict"].format_help()
    assert "exit status" in text
    assert "0 when every structure succeeded" in text
    assert "1 when" in text
    for flag in ("--model", "--device", "--batch-size", "--out", "--temperatures"):
        assert flag in text


def test_parse_temperatures():
    assert parse_temperatures(None).tolist() == list(np.arange(0, 1001, 10.0))
    assert parse_temperatures(["0:1000:10"]).size == 101
    assert parse_temperatures(["100", "200,300"]).tolist() == [100.0, 200.0, 300.0]
    assert parse_temperatures(["0:25:10"]).tolist() == [0.0, 10.0, 20.0]
    for bad, message in (
        (["-5"], "temperatures must be finite and >= 0 K"),
        (["abc"], "not a temperature: 'abc'"),
        (["0:10"], "temperature range must be START:STOP:STEP, got '0:10'"),
        (["10:0:1"], "needs STEP > 0 and STOP >= START"),
        (["0:10:0"], "needs STEP > 0 and STOP >= START"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_temperatures(bad)


# ------------------------------------------------------------------ screening outputs, ids, write-back


@pytest.fixture(scope="module")
def shipped():
    from ase_dostransformer.pretrained import load_model

    return load_model("phonon", device="cpu")


@pytest.fixture(scope="module")
def paper():
    """The paper's ensemble (``phonon-paper``): trained, so its calibrated error bars and domain flags are real."""
    from ase_dostransformer.pretrained import load_model

    return load_model("phonon-paper", device="cpu")


def _json_rows(out):
    return {r["name"]: r for r in json.loads((out / "summary.json").read_text())["structures"]}


@pytest.mark.parametrize("fixture", ["shipped", "paper"])
def test_summary_entropy_is_thermo_of_the_exported_dos(fixture, request, tmp_path):
    """S(300 K) in the summary is thermo's entropy of total_dos.dat; the shipped ensembles give error bars."""
    from ase_dostransformer.thermo import entropy, thermal_properties

    shipped = request.getfixturevalue(fixture)

    write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    write(tmp_path / "Si.cif", bulk("Si", "diamond", a=5.43))
    out = tmp_path / "o"
    run_predict([tmp_path], model=shipped, out=out, device="cpu", temperatures=[300.0], progress=False, plots=False)
    rows = _json_rows(out)
    for name, natoms in (("NaCl", 2), ("Si", 2)):
        row = rows[name]
        freqs, dos = read_total_dos(out / name / "total_dos.dat")
        s_cell = float(entropy(freqs, dos, 300.0, natoms=natoms)[0])
        assert row["entropy_300K_J_per_K_per_mol_cells"] == pytest.approx(s_cell, rel=1e-7)
        assert row["entropy_300K_J_per_K_per_mol_atoms"] == pytest.approx(s_cell / natoms, rel=1e-7)
        tp = thermal_properties(freqs, dos, [300.0], natoms=natoms)
        assert row["zpe_kJ_per_mol_cells"] == pytest.approx(tp.zpe, rel=1e-7)
        assert row["free_energy_300K_kJ_per_mol_cells"] == pytest.approx(tp.free_energy[0], rel=1e-7)
        assert row["internal_energy_300K_kJ_per_mol_cells"] == pytest.approx(tp.internal_energy[0], rel=1e-7)
        assert 0 < row["entropy_300K_J_per_K_per_mol_cells_std"] < np.inf
        if fixture == "paper":  # a trained ensemble's error bar is below the value itself
            assert row["entropy_300K_J_per_K_per_mol_cells_std"] < row["entropy_300K_J_per_K_per_mol_cells"]
        assert 100 < row["debye_temperature_K"] < 1000
        assert row["mean_frequency_THz"] < row["max_frequency_THz"] <= freqs[-1]
        assert row["space_group"] in (225, 227)
        assert row["crystal_system"] == "cubic"
        assert row["uncertainty"] > 0
        assert row["domain_score"] > 0


def test_summary_and_calculator_report_the_same_findings(paper, tmp_path):
    """An elemental metal far from training: the summary carries the calculator's warnings, word for word."""
    import warnings

    from ase_dostransformer.calculator import DOSCalculator

    atoms = bulk("Cu", a=3.6)
    calc = DOSCalculator(model=paper, electron_model=None, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc.get_property("phonon_dos", atoms)
    write(tmp_path / "Cu.extxyz", atoms)  # the same coordinates and cell (a CIF would re-orient the cell)
    (rec,) = run_predict([tmp_path / "Cu.extxyz"], model=paper, out=tmp_path / "o", progress=False, plots=False)
    assert calc.results["phonon_dos_out_of_domain"] is True
    assert rec.out_of_domain is True
    assert rec.warnings == calc.results["phonon_dos_warnings"]
    assert rec.uncertainty == pytest.approx(calc.results["phonon_dos_uncertainty"], rel=1e-6)
    assert rec.space_group == calc.results["space_group"] == 225


def test_ids_of_extxyz_and_ase_db_inputs(model_file, tmp_path):
    """Ids in extxyz info and ASE db key-value pairs reach the summary, and the folder names when unique and safe."""
    import ase.db

    folder = tmp_path / "in"
    folder.mkdir()
    frames = [bulk("Cu", a=3.615), bulk("Al", a=4.05)]
    frames[0].info.update(material_id="mp-30", source_note="a")
    frames[1].info.update(material_id="mp-134", source_note="b")
    write(folder / "named.extxyz", frames)
    clash = [bulk("Cu", a=3.615), bulk("Al", a=4.05)]
    for atoms in clash:
        atoms.info["material_id"] = "mp-1"  # not unique: folders fall back to <file>_<frame>
    write(folder / "clash.extxyz", clash)
    unsafe = [bulk("Cu", a=3.615), bulk("Al", a=4.05)]
    unsafe[0].info["id"], unsafe[1].info["id"] = "../x", "y"  # not safe as a folder name
    write(folder / "unsafe.extxyz", unsafe)
    with ase.db.connect(folder / "rows.db") as db:
        db.write(bulk("Si", "diamond", a=5.43), project="screen", energy_above_hull=0.01)
        db.write(bulk("NaCl", "rocksalt", a=5.64), project="screen", energy_above_hull=0.0)
    out = tmp_path / "o"
    run_predict([folder], model=str(model_file), out=out, device="cpu", temperatures=[300.0], progress=False)
    rows, js = read_summary(out)
    assert {"mp-30", "mp-134", "clash_0", "clash_1", "unsafe_0", "unsafe_1", "rows_id1", "rows_id2"} == set(rows)
    assert (out / "mp-30" / "total_dos.dat").is_file()
    assert rows["mp-30"]["input_material_id"] == "mp-30"
    assert rows["mp-30"]["id"] == "mp-30"
    assert rows["mp-134"]["input_source_note"] == "b"
    assert rows["mp-134"]["frame"] == "1"
    assert rows["clash_1"]["input_material_id"] == "mp-1"
    assert rows["unsafe_0"]["id"] == "../x"
    assert rows["rows_id2"]["input_db_id"] == "2"
    assert rows["rows_id2"]["id"] == "2"
    assert rows["rows_id2"]["input_project"] == "screen"
    assert float(rows["rows_id1"]["input_energy_above_hull"]) == pytest.approx(0.01)
    assert rows["rows_id2"]["formula"] == "NaCl"
    structures = {r["name"]: r for r in js["structures"]}
    assert structures["rows_id1"]["input"] == {"db_id": 1, "project": "screen", "energy_above_hull": 0.01}
    assert not (folder / "rows.db.lock").exists()  # reading wrote nothing beside the input


def _gap_model_file(path, p_metal, gap, std):
    """A tiny electron model with a gap head whose outputs are fixed: ``p_metal``, ``gap`` (eV), ``std`` (eV).

    The head's last layer has zero weights and these numbers as its biases (see ``model/gap.py``), so
    every crystal gets them whatever its embedding; the DOS is the untrained model's own.
    """
    from ase_dostransformer.graphs.electron import ElectronGraphRecipe
    from ase_dostransformer.training.options import TrainOptions
    from ase_dostransformer.training.tasks import edos_model_config

    torch.manual_seed(0)
    opts = TrainOptions(task="electron", gap_head=True, hidden=32, layers=1, transformer=1, heads=4)
    net = DOSTransformer(edos_model_config(opts, ElectronGraphRecipe())).eval()
    last = net.gap_head.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.tensor([np.log(p_metal / (1 - p_metal)), np.log(np.expm1(gap)), np.log(std)]))
    return save_model_file(net, path)


def test_write_back_round_trips_through_ase_readers(model_file, shipped, tmp_path):
    """Write-back to extxyz (tiny model) and ASE db (shipped ensemble): ASE reads both, and read_predictions.

    Each run has a tiny electron model with a gap head: a possibly metallic insulator (p_metal 0.3,
    1.2 +- 0.25 eV) in extxyz, a metal (p_metal 0.8: gap 0, flag ``metal``) in the database.
    """
    import ase.db
    from ase.io import read

    from ase_dostransformer.electronic import predict_gap_structures
    from ase_dostransformer.io.checksums import file_sha256
    from ase_dostransformer.io.writeback import read_predictions

    frames = [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)]
    frames[0].info["material_id"], frames[1].info["material_id"] = "mp-22862", "mp-149"
    write(tmp_path / "in.extxyz", frames)
    gap_heads = {".extxyz": (0.3, 1.2, 0.25), ".db": (0.8, 1.5, 0.4)}  # p_metal, gap, std
    for model, back in ((str(model_file), tmp_path / "back.extxyz"), (shipped, tmp_path / "back.db")):
        out = tmp_path / back.suffix[1:]
        p_metal, gap, std = gap_heads[back.suffix]
        electron = _gap_model_file(tmp_path / f"edos{back.suffix}.pt", p_metal, gap, std)
        run_predict(
            [tmp_path / "in.extxyz"],
            model=model,
            out=out,
            temperatures=[300.0],
            progress=False,
            plots=False,
            write_back=back,
            electron_model=electron,
        )
        rows = _json_rows(out)
        records = read_predictions(back)
        assert [r.name for r in records] == ["mp-22862", "mp-149"]
        direct = predict_gap_structures(load_model_file(electron)[0], frames)  # the gap head, called directly
        for rec, want in zip(records, direct, strict=True):
            row = rows[rec.name]
            assert rec.p_metal == pytest.approx(p_metal, rel=1e-6)
            assert rec.band_gap_std_eV == pytest.approx(std, rel=1e-6)
            assert rec.band_gap_eV == (0.0 if p_metal >= 0.5 else pytest.approx(gap, rel=1e-6))
            assert rec.band_gap_flags == list(want.flags)
            assert rec.band_gap_flags[0] == ("metal" if p_metal >= 0.5 else "possibly_metallic")
            for key in ("band_gap_eV", "band_gap_std_eV", "p_metal", "band_gap_estimate_eV", "electron_dos_at_fermi"):
                assert getattr(rec, key) == row[key]  # exactly the summary's numbers
                assert key not in rec.quantities  # not taken for a screening quantity
            assert rec.band_gap_flags == row["band_gap_flags"]
            assert rec.electron_model.name == str(electron)
            assert rec.electron_dos.shape == (201,)
        for rec in records:
            row = rows[rec.name]
            freqs, dos = read_total_dos(out / rec.name / "total_dos.dat")
            np.testing.assert_allclose(rec.frequencies_THz, freqs, atol=1e-9)
            np.testing.assert_allclose(rec.phonon_dos, dos, atol=1e-9)
            assert rec.ids == {"material_id": rec.name}
            assert rec.quantities["entropy_300K_J_per_K_per_mol_atoms"] == pytest.approx(
                row["entropy_300K_J_per_K_per_mol_atoms"], rel=1e-12
            )
            assert rec.crystal_system == row["crystal_system"]
            assert rec.cut_off == row["cut_off"]
            assert rec.out_of_domain == row["out_of_domain"]
            assert rec.warnings == row["warnings"]
            assert rec.model.version
            assert len(rec.atoms) == row["natoms"]
        if back.suffix == ".extxyz":
            assert records[0].model.name == str(model_file)
            assert records[0].model.sha256 == file_sha256(model_file)
            assert records[0].phonon_dos_std is None  # one model: no per-bin uncertainty
            assert records[0].uncertainties == {}
            info = read(back, index=0).info  # ASE's own reader
            assert info["material_id"] == "mp-22862"
            assert info["dt_p_metal"] == pytest.approx(0.3, rel=1e-6)
            assert info["dt_band_gap_flags"].startswith("possibly_metallic")
            assert info["dt_model_sha256"] == file_sha256(model_file)
            assert info["dt_phonon_dos"].shape == (51,)
        else:
            assert records[0].model.name == "phonon"  # a loaded module: the registered name of its file
            assert records[0].model.sha256 == file_sha256(shipped.source)
            assert records[1].phonon_dos_std.shape == (shipped.cfg.grid.npoints,)
            assert records[1].uncertainties["entropy_300K_J_per_K_per_mol_atoms"] == pytest.approx(
                rows["mp-149"]["entropy_300K_J_per_K_per_mol_atoms_std"], rel=1e-12
            )
            assert records[1].space_group == 227
            row = next(ase.db.connect(back).select(material_id="mp-149"))  # ASE's own reader
            assert row.dt_crystal_system == "cubic"
            assert row.data["dt_phonon_dos"].shape == (shipped.cfg.grid.npoints,)
            assert row.dt_model_sha256 == file_sha256(shipped.source)
            assert (row.dt_band_gap_eV, row.dt_band_gap_flags) == (0.0, "metal")


@pytest.mark.parametrize("suffix", [".extxyz", ".db"])
def test_write_back_of_empty_and_unknown_values(suffix, tmp_path):
    """No warnings, a gap without flags, NaN and None: read back as such, the keys after them intact."""
    from ase_dostransformer.io.writeback import read_predictions, write_predictions

    spectrum = {"frequencies_THz": np.linspace(0.0, 10.0, 5), "phonon_dos": np.ones(5)}
    gapped = {"band_gap_eV": 1.5, "band_gap_std_eV": 0.2, "p_metal": 0.01, "band_gap_flags": ""}
    no_head = {
        "band_gap_eV": 0.0,
        "band_gap_std_eV": float("nan"),
        "p_metal": None,
        "band_gap_flags": "from_dos; metal",
    }
    entries = [
        (
            bulk("Si", "diamond", a=5.43),
            {"name": name, "warnings": "", **gap, "model": "m", "model_sha256": "ab"},
            spectrum,
        )
        for name, gap in (("gapped", gapped), ("no_head", no_head), ("phonon_only", {}))
    ]
    got = read_predictions(write_predictions(tmp_path / f"back{suffix}", entries))
    assert [(r.name, r.model.name, r.model.sha256, r.warnings) for r in got] == [
        (name, "m", "ab", []) for name in ("gapped", "no_head", "phonon_only")
    ]  # an empty string swallowed the next key in extxyz before it was left out
    assert [(r.band_gap_eV, r.band_gap_std_eV, r.p_metal, r.band_gap_flags) for r in got] == [
        (1.5, 0.2, 0.01, []),
        (0.0, None, None, ["from_dos", "metal"]),
        (None, None, None, None),
    ]
    assert all(r.quantities == {} for r in got)


def test_write_back_refuses_an_existing_file_or_an_input(model_file, tmp_path):
    write(tmp_path / "in.extxyz", bulk("Cu", a=3.615))
    (tmp_path / "taken.db").write_bytes(b"")
    common = ["--model", str(model_file), "--device", "cpu", "--no-progress", "--quiet"]
    assert main(["predict", str(tmp_path / "in.extxyz"), "--out", str(tmp_path / "a"), *common,
                 "--write-back", str(tmp_path / "taken.db")]) == 2  # fmt: skip
    assert main(["predict", str(tmp_path / "in.extxyz"), "--out", str(tmp_path / "b"), *common,
                 "--write-back", str(tmp_path / "in.extxyz"), "--overwrite"]) == 2  # fmt: skip
    assert main(["predict", str(tmp_path / "in.extxyz"), "--out", str(tmp_path / "c"), *common,
                 "--write-back", str(tmp_path / "out.cif")]) == 2  # fmt: skip
    assert (tmp_path / "taken.db").read_bytes() == b""


def test_plots_only_for_the_most_doubtful(model_file, tmp_path):
    """--plots 1: one PNG, for a flagged structure before an unflagged one; the data files for all."""
    write(tmp_path / "a_Si.cif", bulk("Si", "diamond", a=5.43))
    write(tmp_path / "b_NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    common = ["--model", str(model_file), "--device", "cpu", "--no-progress", "--quiet", "--temperatures", "300"]
    inputs = [str(tmp_path / "a_Si.cif"), str(tmp_path / "b_NaCl.cif")]
    assert main(["predict", *inputs, "--out", str(tmp_path / "one"), "--plots", "1", *common]) == 0
    rows, js = read_summary(tmp_path / "one")
    pngs = sorted(p.parent.name for p in (tmp_path / "one").rglob("*.png"))
    flagged = sorted(n for n, r in rows.items() if r["cut_off"] == "True" or r["out_of_domain"] == "True")
    assert len(pngs) == 1
    assert pngs[0] in (flagged or ["a_Si"])
    assert js["plots"] == 1
    assert all((tmp_path / "one" / n / "total_dos.dat").is_file() for n in rows)
    assert main(["predict", *inputs, "--out", str(tmp_path / "bad"), "--plots", "-1", *common]) == 2
    assert main(["predict", *inputs, "--out", str(tmp_path / "bad"), "--symprec", "0", *common]) == 2
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_plotter_draws_what_plot_dos_draws(tmp_path):
    """DOSPlotter (axes drawn once, curve updated) writes the bytes plot_dos writes, also after a shared figure."""
    from ase_dostransformer.plotting import ELECTRON_AXES, PHONON_AXES, DOSPlotter, plot_dos

    x = np.linspace(0.0, 30.0, 51)
    plotter = DOSPlotter(PHONON_AXES)
    for i, (centre, cut) in enumerate(((8.0, False), (20.0, True), (8.0, False))):
        y = np.exp(-((x - centre) ** 2) / 20.0) * 3.0
        mine = plotter.plot(tmp_path / f"p{i}.png", x, y, f"T{i}", cut_off=cut).read_bytes()
        assert mine == plot_dos(tmp_path / f"q{i}.png", x, y, PHONON_AXES, f"T{i}", cut_off=cut).read_bytes()
    e = np.linspace(-5.0, 5.0, 201)
    other = DOSPlotter(ELECTRON_AXES, plotter.figure)  # clears the shared figure
    other.plot(tmp_path / "e.png", e, np.exp(-(e**2)), "E")
    y = np.exp(-((x - 8.0) ** 2) / 20.0) * 3.0
    assert plotter.plot(tmp_path / "again.png", x, y, "T0").read_bytes() == (tmp_path / "p0.png").read_bytes()


def test_workers_write_what_one_process_writes(inputs, model_file, tmp_path):
    """``--workers 2``: the same rows, failures and DOS files as one process, in input order."""
    outs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        args = ["predict", str(inputs), "--model", str(model_file), "--out", str(out), "--no-progress", "--quiet"]
        assert main([*args, "--no-plots", "--batch-size", "2", "--workers", str(workers)]) == 1  # the garbage file
        outs[workers] = out
    rows1, _ = read_summary(outs[1])
    rows2, _ = read_summary(outs[2])
    assert list(rows2) == list(rows1)
    assert {k: r["status"] for k, r in rows2.items()} == {k: r["status"] for k, r in rows1.items()}
    written = sorted(p.relative_to(outs[1]) for p in outs[1].rglob("total_dos.dat"))
    assert len(written) == 4
    for rel in written:
        np.testing.assert_allclose(np.loadtxt(outs[2] / rel), np.loadtxt(outs[1] / rel), rtol=1e-6, atol=1e-9)
    with pytest.raises(OptionError, match="--workers > 1 runs on the CPU"):
        run_predict([inputs], model=str(model_file), out=tmp_path / "gpu", device="cuda", workers=2)
    with pytest.raises(OptionError, match="workers must be an integer >= 1"):
        run_predict([inputs], model=str(model_file), out=tmp_path / "none", workers=0)


EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "structures"


def test_electron_model_reuses_the_phonon_featurisation(shipped, tmp_path, monkeypatch):
    """``--electron-model``: the potential runs once per crystal for both models and for the gap, same outputs.

    The shipped phonon and electron models both read the universal potential's features of the same
    crystal; the run computes them once (the phonon model's), and the electron DOS and the band gap come
    from one pass. What it writes is what the electron model and its gap head give on their own
    (featurising again, outside any shared scope), to the last digit.
    """
    from ase.io import read

    from ase_dostransformer.electronic import predict_gap_structures, write_electron_dos
    from ase_dostransformer.graphs import foundation
    from ase_dostransformer.pipeline import predict_structures
    from ase_dostransformer.pretrained import load_model

    names = ["NaCl.cif", "Si.cif", "GaAs.vasp"]
    electron = load_model("electron", device="cpu")
    real, structures_seen = foundation.foundation_features, []

    def counting(atoms_list, *args, **kwargs):
        structures_seen.extend(atoms_list)
        return real(atoms_list, *args, **kwargs)

    monkeypatch.setattr(foundation, "foundation_features", counting)
    out = tmp_path / "o"
    records = run_predict(
        [EXAMPLES / n for n in names],
        model=shipped,
        out=out,
        electron_model=electron,
        device="cpu",
        temperatures=[300.0],
        progress=False,
        plots=False,
        batch_size=2,  # two electron chunks: the second after the last phonon batch
    )
    assert [r.status for r in records] == ["ok"] * 3
    assert len(structures_seen) == 3  # was 9: phonon, electron DOS, gap head
    monkeypatch.undo()

    atoms = [read(EXAMPLES / n) for n in names]
    alone = predict_structures(electron, atoms, batch_size=2)  # the run's batches: the same rounding
    gaps = predict_gap_structures(electron, atoms, batch_size=2)
    assert [r.formula for r in records] == [a.get_chemical_formula(mode="metal") for a in atoms]
    rows = _json_rows(out)
    for rec, p, gap in zip(records, alone, gaps, strict=True):
        write_electron_dos(tmp_path / "alone.dat", p.dos, p.grid, comment=f"{rec.formula} electron DOS by electron")
        written = (out / rec.name / "electron_dos.dat").read_text().splitlines()[1:]
        assert written == (tmp_path / "alone.dat").read_text().splitlines()[1:]
        row = rows[rec.name]
        assert row["band_gap_eV"] == gap.gap
        assert row["band_gap_std_eV"] == gap.gap_std
        assert row["p_metal"] == gap.p_metal
        assert row["band_gap_flags"] == list(gap.flags)
        electron_findings = [w for w in row["warnings"] if w.startswith("electron model: ")]
        assert electron_findings == [f"electron model: {m}" for m in p.messages]


def test_a_gap_that_fails_fails_its_structure_and_keeps_its_dos(model_file, tmp_path):
    """A gap head giving NaN: each structure fails with the gap's reason; its electron DOS is written."""
    electron = _gap_model_file(tmp_path / "nan-gap.pt", 0.3, 1.2, 0.25)
    model, _ = load_model_file(electron)
    with torch.no_grad():
        model.gap_head.net[-1].bias[0] = float("nan")  # the metal logit
    write(tmp_path / "in.extxyz", [bulk("NaCl", "rocksalt", a=5.64), bulk("Si", "diamond", a=5.43)])
    out = tmp_path / "o"
    records = run_predict(
        [tmp_path / "in.extxyz"], model=str(model_file), out=out, electron_model=model, progress=False, plots=False
    )
    for rec in records:
        assert rec.status == "failed"
        assert rec.error == "band gap: PredictionError: the gap head produced non-finite values"
        assert (out / rec.name / "electron_dos.dat").is_file()
        assert rec.electron_dos_at_fermi is not None
        assert rec.band_gap_eV is None
        assert rec.p_metal is None
