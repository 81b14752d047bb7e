"""Issue 11, prediction side: reliability of ``predict`` and the prediction API.

Out-of-domain geometry, atomic and locked outputs, failures that stay alone, thread safety, hostile
arguments and inputs, large cells, names.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.io import write
from ase.units import Bohr

from ase_dostransformer.calculator import DOSCalculator
from ase_dostransformer.cli import main
from ase_dostransformer.cli import predict as predict_command
from ase_dostransformer.cli.predict import parse_temperatures, run_predict
from ase_dostransformer.errors import OutOfDomainWarning
from ase_dostransformer.graphs import PhononGraphRecipe
from ase_dostransformer.graphs.crystal_system import (
    MAX_SYMMETRY_ATOMS,
    SymmetrySearchWarning,
    crystal_system_index,
    primitive_cell,
    spacegroup_number,
)
from ase_dostransformer.graphs.electron import ElectronGraphRecipe
from ase_dostransformer.graphs.validation import training_geometry
from ase_dostransformer.inference import domain_check, model_meta, predict_dos
from ase_dostransformer.io import summary as summary_module
from ase_dostransformer.io.locks import LOCK_FILE, FolderInUseError, FolderLock
from ase_dostransformer.model import DOSTransformer, ModelConfig, save_model_file
from ase_dostransformer.training.options import TrainOptions
from ase_dostransformer.training.tasks import edos_model_config

pytestmark = [
    pytest.mark.filterwarnings("ignore::ase_dostransformer.graphs.OutOfDomainWarning"),
    pytest.mark.filterwarnings("ignore::ase_dostransformer.calculator.SpectrumCutOffWarning"),
]

#: The training range of the shipped phonon model (pretrained/training_domain.json).
PHONON_RANGE = {"train_shortest_bond": [0.9715, 3.9076], "train_volume_per_atom": [5.6334, 55.6618]}


@pytest.fixture(scope="module")
def model() -> DOSTransformer:
    """A tiny untrained phonon model whose meta carries the shipped model's training geometry."""
    torch.manual_seed(0)
    net = DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4)).eval()
    net.meta = dict(PHONON_RANGE)  # type: ignore[attr-defined]
    return net


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory) -> Path:
    return save_model_file(model, tmp_path_factory.mktemp("model") / "tiny.pt", meta=dict(PHONON_RANGE))


@pytest.fixture(scope="module")
def edos_model() -> DOSTransformer:
    torch.manual_seed(0)
    opts = TrainOptions(hidden=32, layers=1, transformer=1, heads=4)
    return DOSTransformer(edos_model_config(opts, ElectronGraphRecipe())).eval()


def predict(inputs: list, out: Path, model_file: Path, *extra: str) -> int:
    args = ["predict", *map(str, inputs), "--model", str(model_file), "--out", str(out), "--device", "cpu"]
    return main([*args, "--no-progress", "--quiet", "--temperatures", "300", *extra])


def summary(out: Path) -> dict[str, dict]:
    with open(out / "summary.csv", newline="", encoding="utf-8") as fh:
        return {row["name"]: row for row in csv.DictReader(fh)}


# ------------------------------------------------------------------ 6. out of domain: bonds and volume


def test_dense_cell_is_out_of_domain_with_the_numbers(model):
    calc = DOSCalculator(model=model, electron_model=None, device="cpu")
    dense = bulk("NaCl", "rocksalt", a=5.64 * 0.3)  # 0.85 A bonds, 0.6 A^3 per atom
    calc.get_property("phonon_dos", dense)
    assert calc.results["phonon_dos_out_of_domain"]
    text = " ".join(calc.results["phonon_dos_warnings"])
    assert "shortest interatomic distance 0.846 A" in text
    assert "0.972..3.91 A" in text
    assert "0.605 A^3 per atom" in text
    assert "5.63..55.7 A^3" in text
    calc.get_property("phonon_dos", bulk("NaCl", "rocksalt", a=5.64))
    assert not calc.results["phonon_dos_out_of_domain"]
    assert not any("out of domain" in w for w in calc.results["phonon_dos_warnings"])


def test_cell_in_bohr_is_out_of_domain(model):
    """Every atom isolated (bonds over the cutoff) and 6.7x the volume: flagged, unlike the real cell."""
    calc = DOSCalculator(model=model, electron_model=None, device="cpu")
    calc.get_property("phonon_dos", bulk("NaCl", "rocksalt", a=5.64 / Bohr))
    assert calc.results["phonon_dos_out_of_domain"]
    text = " ".join(calc.results["phonon_dos_warnings"])
    assert "no two atoms within the graph cutoff" in text
    assert "151 A^3 per atom" in text


def test_shipped_models_get_their_training_geometry_and_training_crystals_are_inside():
    from ase_dostransformer.pretrained import load_model

    # the physical default also trained on teacher crystals (Cs, Rb: up to ~75 A^3 per atom); the electron model
    # on elemental metals too (bcc K, Rb, Cs: nearest neighbours up to ~4.9 A, ~87 A^3 per atom)
    limits = {"phonon": (4.1, 80.0), "phonon-paper": (4.1, 60.0), "electron": (5.0, 90.0), "electron-v1": (4.1, 60.0)}
    for name, (longest, largest) in limits.items():
        meta = model_meta(load_model(name, device="cpu"))
        assert meta["train_shortest_bond"][0] < meta["train_shortest_bond"][1] < longest
        assert 5.0 < meta["train_volume_per_atom"][0] < meta["train_volume_per_atom"][1] < largest
    geometry = training_geometry([bulk("Si", "diamond", a=5.43), bulk("NaCl", "rocksalt", a=5.64)])
    assert geometry["train_shortest_bond"] == pytest.approx([2.3513, 2.82], abs=1e-3)
    recipe = PhononGraphRecipe()
    net = DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4)).eval()
    net.meta = geometry  # type: ignore[attr-defined]
    atoms = bulk("Si", "diamond", a=5.43)
    assert not domain_check(net, recipe.featurise(atoms), atoms).out_of_domain  # its own edge is inside


def test_trained_model_file_records_its_training_geometry(tiny_dataset, tmp_path):
    """Dostransformer train stores the range of the training crystals; the flags then use it."""
    from ase_dostransformer.io.phdos import load_phonon_dataset
    from ase_dostransformer.pretrained import load_model
    from ase_dostransformer.training.run import train

    opts = dict(hidden=32, heads=4, layers=1, transformer=1, batch_size=4, eval=1, es=0, threads=1)
    train(TrainOptions(out=str(tmp_path / "run"), data=str(tiny_dataset), epochs=1, **opts))
    meta = model_meta(load_model(tmp_path / "run" / "model.pt", device="cpu"))
    ds = load_phonon_dataset(tiny_dataset)
    expected = training_geometry([ds.atoms[i] for i in ds.split["train"]])
    for key in ("train_shortest_bond", "train_volume_per_atom"):
        assert meta[key] == pytest.approx(expected[key])
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["seed"] == 0  # written atomically, whole


def test_cell_scaled_1e8_is_flagged_not_a_numpy_error(model):
    atoms = bulk("NaCl", "rocksalt", a=5.64 * 1e8)
    with pytest.warns(OutOfDomainWarning, match=r"A\^3 per atom, outside the training range"):
        y = predict_dos(model, [atoms])
    assert y.shape == (1, 51)
    assert np.isfinite(y).all()
    check = domain_check(model, PhononGraphRecipe().featurise(atoms), atoms)
    assert check.out_of_domain
    assert check.volume_outside
    assert check.bond_outside


# ------------------------------------------------------------------ 8. atomic outputs, no silent overwrite


def test_out_from_another_run_is_refused_unless_overwrite(model_file, tmp_path, capsys):
    write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    out = tmp_path / "out"
    assert predict([tmp_path / "NaCl.cif"], out, model_file) == 0
    before = (out / "summary.csv").read_bytes()
    assert predict([tmp_path / "NaCl.cif"], out, model_file) == 2
    err = capsys.readouterr().err
    assert "holds the outputs of another run" in err
    assert "--overwrite" in err
    assert (out / "summary.csv").read_bytes() == before
    assert predict([tmp_path / "NaCl.cif"], out, model_file, "--overwrite") == 0


def test_a_killed_rerun_leaves_no_summary_and_no_torn_file(model_file, tmp_path, monkeypatch):
    """The old summary goes first and the new one comes last: a run killed half-way has none."""
    (tmp_path / "in").mkdir()
    for i, a in enumerate((5.4, 5.6, 5.8)):
        write(tmp_path / "in" / f"s{i}.cif", bulk("NaCl", "rocksalt", a=a))
    out = tmp_path / "out"
    assert predict([tmp_path / "in"], out, model_file) == 0
    real, calls = predict_command._write_outputs, []

    def dies_on_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a SIGINT would, mid-run
        return real(*args, **kwargs)

    monkeypatch.setattr(predict_command, "_write_outputs", dies_on_the_second)
    with pytest.raises(KeyboardInterrupt):
        run_predict([tmp_path / "in"], model=str(model_file), out=out, device="cpu", progress=False, overwrite=True)
    assert not (out / "summary.csv").exists()
    assert not (out / "summary.json").exists()
    assert not list(out.rglob("*.tmp")), "temporary files left behind"


def test_out_that_is_a_file_is_a_clear_error(model_file, tmp_path, capsys):
    write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    (tmp_path / "afile").write_text("not a folder\n")
    assert predict([tmp_path / "NaCl.cif"], tmp_path / "afile", model_file) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_plots_and_summaries_are_written_atomically(model_file, tmp_path, monkeypatch):
    """Every output goes through io.atomic: os.replace sees each of them."""
    write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    replaced: list[str] = []
    real = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: (replaced.append(Path(dst).name), real(src, dst)))
    assert predict([tmp_path / "NaCl.cif"], tmp_path / "out", model_file) == 0
    for name in ("total_dos.dat", "thermal_properties.yaml", "phonon_dos.png", "summary.csv", "summary.json"):
        assert name in replaced
    assert replaced[-1] == "summary.json"  # the summary last


# ------------------------------------------------------------------ 9. locked output folders


def test_a_second_predict_into_a_locked_folder_fails_at_once(model_file, tmp_path, capsys):
    write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    out = tmp_path / "out"
    with FolderLock(out, "dostransformer predict"):
        t0 = time.perf_counter()
        assert predict([tmp_path / "NaCl.cif"], out, model_file) == 2
        assert time.perf_counter() - t0 < 30
        err = capsys.readouterr().err
        assert "in use by another run" in err
        assert f"pid {os.getpid()}" in err
    assert predict([tmp_path / "NaCl.cif"], out, model_file) == 0  # released on exit


def test_a_second_train_into_a_locked_folder_fails_at_once(tmp_path):
    from ase_dostransformer.training.run import train

    with FolderLock(tmp_path / "run"), pytest.raises(FolderInUseError, match="in use by another run"):
        train(TrainOptions(out=str(tmp_path / "run"), data=str(tmp_path / "no-data"), epochs=1))


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    folder = tmp_path / "out"
    code = (
        "import os, sys; from ase_dostransformer.io.locks import lock_folder; "
        f"lock_folder({str(folder)!r}, 'test'); os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code], check=False, timeout=120)
    assert (folder / LOCK_FILE).exists()
    assert "test" in (folder / LOCK_FILE).read_text()
    with FolderLock(folder) as lock:
        assert lock.locked


# ------------------------------------------------------------------ 10, 11. failures stay alone


def test_electron_model_fails_only_the_structure_without_an_embedding(model, edos_model, tmp_path):
    og = Atoms("NaOg", positions=[[0, 0, 0], [2.8, 2.8, 2.8]], cell=np.eye(3) * 5.6, pbc=True)
    (tmp_path / "in").mkdir()
    for name, atoms in (("a_NaCl", bulk("NaCl", "rocksalt", a=5.64)), ("b_Og", og), ("c_Si", bulk("Si", a=5.43))):
        write(tmp_path / "in" / f"{name}.cif", atoms)
    records = run_predict(
        [tmp_path / "in"], model=model, electron_model=edos_model, out=tmp_path / "out", device="cpu", progress=False
    )
    by_name = {r.name: r for r in records}
    assert by_name["b_Og"].status == "failed"
    assert "Og" in by_name["b_Og"].error
    assert "electron DOS" in by_name["b_Og"].error
    for name in ("a_NaCl", "c_Si"):
        assert by_name[name].status == "ok"
        assert by_name[name].electron_dos_at_fermi is not None
        assert (tmp_path / "out" / name / "electron_dos.dat").is_file()
        assert not any("Og" in w for w in by_name[name].warnings)


def test_frames_after_a_broken_frame_are_predicted(model_file, tmp_path):
    frames = [bulk("NaCl", "rocksalt", a=a) for a in (5.5, 5.6, 5.7, 5.8)]
    write(tmp_path / "good.extxyz", frames)
    lines = (tmp_path / "good.extxyz").read_text().splitlines(keepends=True)
    per = len(lines) // 4
    broken = lines[per + 2].split()
    broken[1] = "not-a-number"
    lines[per + 2] = " ".join(broken) + "\n"  # frame 1 has a bad coordinate
    (tmp_path / "multi.extxyz").write_text("".join(lines))
    assert predict([tmp_path / "multi.extxyz"], tmp_path / "out", model_file) == 1
    rows = summary(tmp_path / "out")
    assert [rows[f"multi_{i}"]["status"] for i in range(4)] == ["ok", "failed", "ok", "ok"]
    assert "frame 1" in rows["multi_1"]["error"]


# ------------------------------------------------------------------ 13. threads


def test_eight_threads_give_the_serial_results_and_leave_stderr_alone(model):
    """Supercells (primitive reduction), plain cells: the same numbers from 8 threads; fd 2 untouched."""
    structures = [bulk("NaCl", "rocksalt", a=5.64).repeat((2, 2, 2)), bulk("Si", "diamond", a=5.43, cubic=True)]
    structures += [bulk("Cu", "fcc", a=3.6).repeat((3, 1, 1)), bulk("GaAs", "zincblende", a=5.65).repeat((1, 2, 1))]
    calc = DOSCalculator(model=model, electron_model=None, device="cpu")
    serial = calc.predict_many(structures)
    before = os.fstat(2)
    stop = threading.Event()
    seen: list[tuple[int, int]] = []

    def watch() -> None:  # fd 2 must point at the same file throughout
        while not stop.is_set():
            st = os.fstat(2)
            seen.append((st.st_dev, st.st_ino))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: calc.predict_many(structures), range(32)))
    finally:
        stop.set()
        watcher.join()
    for y in results:
        np.testing.assert_array_equal(y, serial)
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert set(seen) == {(before.st_dev, before.st_ino)}


def test_stderr_still_works_after_threaded_predictions(tmp_path):
    code = (
        "import os, sys, warnings\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "from ase.build import bulk\n"
        "from ase_dostransformer.graphs import PhononGraphRecipe\n"
        "r = PhononGraphRecipe()\n"
        "cells = [bulk('NaCl', 'rocksalt', a=5.64).repeat((2, 2, 2))] * 64\n"
        "with ThreadPoolExecutor(8) as pool:\n"
        "    list(pool.map(r.featurise, cells))\n"
        "os.write(2, b'still-on-stderr\\n')\n"
        "warnings.warn('a warning after the threads')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "still-on-stderr" in done.stderr
    assert "a warning after the threads" in done.stderr
    assert "Omitted" not in done.stderr  # moyopy sees primitive cells: no notes to silence


# ------------------------------------------------------------------ 14. hostile arguments and inputs


@pytest.mark.parametrize("value", ["0:1e9:1", "1e308:inf:1", "nan:10:1", "0:10:0"])
def test_absurd_temperature_ranges_are_clear_errors(value):
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="temperature"):
        parse_temperatures([value])
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "0"])
def test_cut_off_threshold_must_be_a_fraction(model_file, tmp_path, capsys, value):
    write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    assert predict([tmp_path / "NaCl.cif"], tmp_path / "out", model_file, "--cut-off-threshold", value) == 2
    assert "--cut-off-threshold" in capsys.readouterr().err


def test_calculator_rejects_a_nan_cut_off_threshold(model):
    with pytest.raises(ValueError, match="cut_off_threshold must be a fraction"):  # at once, not at the first use
        DOSCalculator(model=model, electron_model=None, device="cpu", cut_off_threshold=float("nan"))
    calc = DOSCalculator(model=model, electron_model=None, device="cpu")
    with pytest.raises(ValueError, match="cut_off_threshold must be a fraction"):
        calc.set(cut_off_threshold=float("nan"))
    assert calc.get_property("phonon_dos", bulk("NaCl", "rocksalt", a=5.64)).shape == (51,)


def test_a_full_disk_is_a_clear_error_and_leaves_no_summary(model_file, tmp_path, monkeypatch, capsys):
    import errno

    write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(summary_module, "atomic_write_text", full)
    assert predict([tmp_path / "NaCl.cif"], tmp_path / "out", model_file) == 2
    assert "cannot write the outputs" in capsys.readouterr().err
    assert not (tmp_path / "out" / "summary.csv").exists()
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_fifo_and_dangling_link_are_listed_as_failures(model_file, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    os.mkfifo(folder / "pipe.cif")
    (folder / "gone.cif").symlink_to(tmp_path / "missing.cif")
    done = subprocess.run(  # a FIFO read would hang: a timeout makes a hang a failure, not a stuck suite
        [sys.executable, "-m", "ase_dostransformer.cli", "predict", str(folder), str(folder / "pipe.cif")]
        + ["--model", str(model_file), "--out", str(tmp_path / "out"), "--device", "cpu", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    rows = summary(tmp_path / "out")
    assert rows["NaCl"]["status"] == "ok"
    assert rows["pipe"]["status"] == "failed"
    assert "FIFO" in rows["pipe"]["error"]
    assert rows["gone"]["status"] == "failed"
    assert "dangling symbolic link" in rows["gone"]["error"]


def test_predict_ignores_a_read_only_cache_folder(model_file, tmp_path, monkeypatch):
    """Predict keeps no graph cache: a read-only (or full) $DOSTRANSFORMER_CACHE cannot break it."""
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o500)
    monkeypatch.setenv("DOSTRANSFORMER_CACHE", str(cache))
    write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    try:
        assert predict([tmp_path / "NaCl.cif"], tmp_path / "out", model_file) == 0
    finally:
        cache.chmod(0o700)
    assert list(cache.iterdir()) == []


# ------------------------------------------------------------------ 15. large cells


def test_crystal_system_of_a_22k_atom_supercell_is_fast_and_right():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((14, 14, 14))  # 21,952 atoms
    t0 = time.perf_counter()
    index = crystal_system_index(atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    assert time.perf_counter() - t0 < 10.0
    assert index == 0  # cubic (Fd-3m)
    cell, frac, numbers = primitive_cell(atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    assert len(numbers) == 2
    assert abs(np.linalg.det(cell)) == pytest.approx(5.43**3 / 4)


def test_a_huge_cell_without_translations_is_capped_with_a_warning():
    rng = np.random.default_rng(0)
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((7, 7, 7))  # 2744 atoms
    atoms.positions += rng.normal(0, 0.05, atoms.positions.shape)  # no symmetry, no translation
    assert len(atoms) > MAX_SYMMETRY_ATOMS
    with pytest.warns(SymmetrySearchWarning, match="taken as triclinic"):
        assert spacegroup_number(atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers) == 1


def test_supercells_keep_their_space_group():
    for atoms, number in (
        (bulk("NaCl", "rocksalt", a=5.64), 225),
        (bulk("ZnO", "wurtzite", a=3.25, c=5.2), 186),
        (bulk("Si", "diamond", a=5.43), 227),
    ):
        for reps in ((1, 1, 1), (2, 1, 1), (2, 3, 2)):
            big = atoms.repeat(reps)
            assert spacegroup_number(big.cell[:], big.get_scaled_positions(), big.numbers) == number


# ------------------------------------------------------------------ 16. names, re-runs, links


def test_unicode_names_are_kept(model_file, tmp_path):
    write(tmp_path / "Fe_äöü_Γ.cif", bulk("Fe", "bcc", a=2.87))
    assert predict([tmp_path / "Fe_äöü_Γ.cif"], tmp_path / "out", model_file) == 0
    assert (tmp_path / "out" / "Fe_äöü_Γ" / "total_dos.dat").is_file()


def test_out_inside_or_equal_to_the_input_folder(model_file, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write(folder / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    write(folder / "Si.vasp", bulk("Si", "diamond", a=5.43), format="vasp")
    assert predict([folder], folder, model_file) == 0  # not "no input files found"
    assert set(summary(folder)) == {"NaCl", "Si"}
    # predicting the folder again (elsewhere) reads only the structures, none of the outputs
    assert predict([folder], tmp_path / "again", model_file) == 0
    assert set(summary(tmp_path / "again")) == {"NaCl", "Si"}
    # an earlier run's folder inside the inputs is skipped too
    assert predict([tmp_path], tmp_path / "third", model_file) == 0
    assert set(summary(tmp_path / "third")) == {"in__NaCl", "in__Si"}
    payload = json.loads((tmp_path / "third" / "summary.json").read_text())
    assert payload["n_failed"] == 0
