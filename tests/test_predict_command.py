"""``dostransformer predict``: per-structure files, summary tables, failures recorded, exit codes."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk, molecule
from ase.io import write

from ase_dostransformer.cli import build_parser, main
from ase_dostransformer.cli.predict import parse_temperatures, run_predict
from ase_dostransformer.io.phonopy_files import read_total_dos
from ase_dostransformer.io.summary import SUMMARY_COLUMNS
from ase_dostransformer.model import DOSTransformer, ModelConfig, save_model_file


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
    assert js["n_structures"] == 5 and js["n_ok"] == 4 and js["n_failed"] == 1
    bad = rows["sub__garbage"]
    assert bad["status"] == "failed" and "garbage.cif" in bad["error"] and bad["output_dir"] == ""
    assert not (out / "sub__garbage").exists()
    assert "sub__garbage" in capsys.readouterr().err

    expected = {
        "NaCl": ("NaCl", 2, "cubic"),
        "POSCAR": ("Si2", 2, "cubic"),
        "frames_0": ("Cu", 1, "cubic"),
        "frames_1": ("Mg2O2", 4, "cubic"),
    }
    with open(out / "summary.csv", newline="") as fh:
        assert tuple(csv.DictReader(fh).fieldnames) == SUMMARY_COLUMNS
    for name, (formula, natoms, system) in expected.items():
        row = rows[name]
        assert row["status"] == "ok", row["error"]
        assert (row["formula"], int(row["natoms"]), row["crystal_system"]) == (formula, natoms, system)
        folder = out / name
        freqs, dos = read_total_dos(folder / "total_dos.dat")
        assert len(freqs) == 51 and freqs[-1] == pytest.approx(1000 / 33.35640951981521, rel=1e-8)
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
    assert rows["frames_1"]["frame"] == "1" and rows["frames_1"]["source"].endswith("frames.extxyz")
    # an untrained model's flat spectrum is flagged as cut off
    assert rows["NaCl"]["cut_off"] == "True" and "cut off" in rows["NaCl"]["warnings"]
    assert js["structures"][0]["warnings"] and js["device"] == "cpu"


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
    assert set(rows) == {"NaCl", "POSCAR"} and all(r["status"] == "ok" for r in rows.values())
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
    assert status["water"][0] == "failed" and "periodic" in status["water"][1]


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
    assert "exit status" in text and "0 when every structure succeeded" in text and "1 when" in text
    for flag in ("--model", "--device", "--batch-size", "--out", "--temperatures"):
        assert flag in text


def test_parse_temperatures():
    assert parse_temperatures(None).tolist() == list(np.arange(0, 1001, 10.0))
    assert parse_temperatures(["0:1000:10"]).size == 101
    assert parse_temperatures(["100", "200,300"]).tolist() == [100.0, 200.0, 300.0]
    assert parse_temperatures(["0:25:10"]).tolist() == [0.0, 10.0, 20.0]
    for bad in (["-5"], ["abc"], ["0:10"], ["10:0:1"], ["0:10:0"]):
        with pytest.raises(ValueError):
            parse_temperatures(bad)
