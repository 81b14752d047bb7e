"""A real (tiny) DFT electron DOS: GPAW on Si through train/edos/gpaw_runner.py, then the 'ase' dataset path.

GPAW runs under the interpreter that has it (Debian's ``gpaw`` package: ``/usr/bin/python3``), not
the virtual environment; the test skips with the reason when no such interpreter is found.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk

from ase_dostransformer.io.electron_dataset import build_edos_dataset, load_edos_dataset

RUNNER = Path(__file__).resolve().parents[1] / "train" / "edos" / "gpaw_runner.py"


def gpaw_python() -> str | None:
    """An interpreter that imports GPAW: $DOSTRANSFORMER_GPAW_PYTHON, else /usr/bin/python3."""
    for exe in (os.environ.get("DOSTRANSFORMER_GPAW_PYTHON"), "/usr/bin/python3", shutil.which("python3")):
        if exe and Path(exe).is_file():
            probe = subprocess.run([exe, "-c", "import gpaw, ase"], capture_output=True, timeout=60)
            if probe.returncode == 0:
                return exe
    return None


def gpaw_python_or_skip() -> str:
    """An interpreter that imports GPAW, or the test is skipped saying how to get one."""
    exe = gpaw_python()
    if exe is None:
        pytest.skip(
            "GPAW absent: no interpreter imports gpaw "
            "(apt-get install gpaw gpaw-data, or set DOSTRANSFORMER_GPAW_PYTHON)"
        )
    return exe


@pytest.mark.slow
def test_gpaw_si_runner_is_resumable_and_builds_a_row(tmp_path: Path) -> None:
    exe = gpaw_python_or_skip()
    out = tmp_path / "dft"
    cmd = [exe, str(RUNNER), "--bulk", "Si", "Xx:nosuchlattice", "--out", str(out), "--kdensity", "1.5"]
    cmd += ["--dos-kdensity", "2.5"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert first.returncode == 1, first.stderr[-2000:]  # one material failed, and says so
    result = json.loads(gzip.decompress((out / "Si.json.gz").read_bytes()))
    assert result["format"] == "ase-dostransformer-dft-result"
    assert result["settings"]["xc"] == "PBE"
    assert result["nbands"] == result["compact"]["nbands_computed"] == 26  # every dzp orbital of two Si atoms
    assert 0.4 < result["band_gap"]["gap"] < 1.0  # PBE Si: about 0.6 eV (coarse mesh here)
    assert result["settings"]["mode"] == "lcao"
    assert "ecut" not in result["settings"]
    assert (result["settings"]["grid_spacing"], result["settings"]["nbands"]) == (0.2, "nao")
    assert result["nelectrons"] == 8.0
    assert result["band_gap_filled"]["bands_occupied"] == 4
    assert result["band_gap_filled"]["gap"] == pytest.approx(result["band_gap"]["gap"])
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert failures[0]["id"] == "Xx_nosuchlattice"
    assert failures[0]["reason"]
    # resumable: finished materials are skipped, known failures too with --skip-failed
    again = subprocess.run([*cmd, "--skip-failed"], capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0
    assert again.stdout.count("skipped") == 2
    report = build_edos_dataset([out], tmp_path / "ds")
    assert report.kept == 1
    assert report.manifest["inputs"][0]["format"] == "ase"
    ds = load_edos_dataset(tmp_path / "ds")
    assert ds.rows[0]["formula"] == "Si"
    assert ds.rows[0]["system"] == "cubic"
    assert ds.rows[0]["properties"]["band_gap"] == pytest.approx(result["band_gap"]["gap"], abs=2e-4)  # rounded
    y, grid = ds.dos[0], np.linspace(-5, 5, 201)
    assert y.max() == pytest.approx(1.0)
    # 0 eV is the valence-band top; the gap shows as a minimum just above it
    assert ds.rows[0]["efermi"] == pytest.approx(result["band_gap"]["vbm"], abs=2e-4)
    assert y[(grid > 0.1) & (grid < 0.5)].min() < 0.5 * y[(grid > -3) & (grid < -1)].max()


def _runner():
    spec = importlib.util.spec_from_file_location("gpaw_runner", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compact_results_keep_the_dos(tmp_path: Path) -> None:
    """Compacting drops far bands and rounds eigenvalues; the built DOS target barely moves."""
    from edos_synthetic import write_dft_result

    from ase_dostransformer.io.electron_dataset import process_edos
    from ase_dostransformer.io.electron_sources import read_dft_result

    runner = _runner()
    full = write_dft_result(tmp_path / "si.json", bulk("Si"), efermi=0.3, nbands_above=8)
    obj = json.loads(full.read_text())
    eps = np.asarray(obj["eigenvalues"], dtype=float)
    eps = np.concatenate([eps[..., :1] - 30.0, eps, eps[..., -1:] + 40.0], axis=-1)  # a deep and a far band
    obj["eigenvalues"] = eps.tolist()
    full.write_text(json.dumps(obj))
    small = runner.compact_result(obj)
    kept = np.asarray(small["eigenvalues"])
    assert kept.shape[-1] < eps.shape[-1]
    assert small["compact"]["nbands_computed"] == eps.shape[-1]
    assert np.all(np.abs(kept * 1e4 - np.round(kept * 1e4)) < 1e-6)
    runner.write_json_atomic(small, tmp_path / "si_small.json.gz")
    a, b = next(read_dft_result(full)), next(read_dft_result(tmp_path / "si_small.json.gz"))
    assert a.efermi == pytest.approx(b.efermi, abs=1e-4)
    ya = process_edos(a.energies, a.densities, a.efermi)
    np.testing.assert_allclose(ya, process_edos(b.energies, b.densities, b.efermi), atol=2e-3)


@pytest.mark.slow
def test_gpaw_si_plane_waves(tmp_path: Path) -> None:
    """--mode pw: converged empty bands past the window, the settings recorded, and the dataset reads it."""
    exe = gpaw_python_or_skip()
    out = tmp_path / "pw"
    cmd = [exe, str(RUNNER), "--bulk", "Si", "--out", str(out), "--mode", "pw", "--ecut", "250"]
    cmd += ["--kdensity", "1.5", "--dos-kdensity", "2.5"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(gzip.decompress((out / "Si.json.gz").read_bytes()))
    settings = result["settings"]
    assert (settings["mode"], settings["ecut"], settings["basis"], settings["nbands"]) == ("pw", 250.0, None, "auto")
    assert settings["grid_spacing"] is None  # GPAW's grid for the cutoff
    # 4 occupied + max(1.5 x free-electron estimate, 4 per atom) = 12 converged bands, 2 more unconverged
    assert (settings["nbands_converged"], settings["nbands_dos"], settings["nbands_tries"]) == (12, 14, 1)
    assert result["compact"]["nbands_computed"] == 12
    eps = np.asarray(result["eigenvalues"])
    assert eps[..., -1].min() - result["efermi"] >= 6.0  # the converged bands reach past the window
    assert 0.4 < result["band_gap"]["gap"] < 1.0
    assert result["band_gap_filled"]["gap"] == pytest.approx(result["band_gap"]["gap"])
    report = build_edos_dataset([out], tmp_path / "ds")
    assert report.kept == 1
    # an explicit band count that falls short fails with the reason instead of writing a cut-off DOS
    short = [*cmd[:5], str(tmp_path / "short"), *cmd[6:], "--nbands", "-1"]  # 4 occupied + 1: 5 of 7 bands
    run = subprocess.run(short, capture_output=True, text=True, timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert run.returncode == 1
    failure = json.loads((tmp_path / "short" / "failures.jsonl").read_text())
    assert "(5 of 7)" in failure["reason"]
    assert "pass a larger --nbands" in failure["reason"]
    assert not (tmp_path / "short" / "Si.json.gz").exists()


def test_runner_arguments_by_mode(capsys) -> None:
    runner = _runner()
    lcao = runner.parse_args(["--out", "x"])
    assert (lcao.mode, lcao.h, lcao.nbands, lcao.ecut) == ("lcao", 0.2, "nao", None)  # the labels' defaults
    pw = runner.parse_args(["--out", "x", "--mode", "pw"])
    assert (pw.mode, pw.h, pw.nbands, pw.ecut) == ("pw", None, "auto", 500.0)
    pw = runner.parse_args(["--out", "x", "--mode", "pw", "--ecut", "350", "--nbands", "-8", "--h", "0.18"])
    assert (pw.ecut, pw.nbands, pw.h) == (350.0, "-8", 0.18)
    bad = {
        "--ecut is the plane-wave cutoff: it needs --mode pw": ["--ecut", "400"],
        "--nbands auto is for --mode pw": ["--nbands", "auto"],
        "must be 'auto' or a non-zero integer, got 'nao'": ["--mode", "pw", "--nbands", "nao"],
        "got '0'": ["--mode", "pw", "--nbands", "0"],
        "--ecut must be > 0 eV, got -5.0": ["--mode", "pw", "--ecut", "-5"],
        "--dos-kdensity must be > 0": ["--dos-kdensity", "0"],
        "invalid choice: 'fd'": ["--mode", "fd"],
    }
    for message, argv in bad.items():
        with pytest.raises(SystemExit) as exit_info:
            runner.parse_args(["--out", "x", *argv])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_plane_wave_band_count() -> None:
    """The free-electron estimate of the empty bands, by hand: V = 100 A^3 holding 8 valence electrons."""
    runner = _runner()
    e0 = runner.HBAR2_2M * (3 * np.pi**2 * 0.08) ** (2 / 3)  # 6.77 eV

    def states(energy: float) -> float:
        return 100.0 / (6 * np.pi**2) * (energy / runner.HBAR2_2M) ** 1.5

    assert states(e0) == pytest.approx(4.0)  # the 8 electrons fill 4 bands
    assert states(e0 + 7.0) - states(e0) == pytest.approx(7.603, abs=1e-3)
    assert runner.pw_empty_bands(100.0, 8, natoms=2) == 12  # ceil(1.5 x 7.603)
    assert runner.pw_empty_bands(100.0, 8, natoms=4) == 16  # at least 4 per atom
    assert runner.pw_nbands(8, 12) == (18, 16)  # 4 occupied + 12 converged, 2 more unconverged
    assert runner.pw_nbands(41, 60) == (90, 81)  # ceil(41 / 2) + 60 converged, and a 10% buffer
    with pytest.raises(ValueError, match="positive volume"):
        runner.pw_empty_bands(0.0, 8, natoms=2)


def test_band_gap_filled() -> None:
    """The gap above the last band the electrons fill: gapped, overlapping, and a partly filled band."""
    runner = _runner()
    eps = np.array([[[-3.0, 0.0, 1.5, 4.0], [-2.5, 0.4, 1.2, 5.0]]])  # [spin][k][band]
    gapped = runner.band_gap_filled(eps, 4.0)
    assert gapped == {"gap": pytest.approx(0.8), "vbm": 0.4, "cbm": 1.2, "bands_occupied": 2}
    # a Fermi level between the k-points' edges would call it a metal; the filling does not look at one
    assert runner.band_gap(eps, 1.3)["gap"] == 0.0
    assert runner.band_gap_filled(eps, 6.0)["gap"] == pytest.approx(4.0 - 1.5)
    overlap = np.array([[[-3.0, 0.0, 1.5], [-2.5, 1.0, 0.8]]])
    assert runner.band_gap_filled(overlap, 4.0)["gap"] == pytest.approx(-0.2)
    assert runner.band_gap_filled(eps, 5.0)["gap"] is None  # half a band: a metal by filling
    assert runner.band_gap_filled(eps, 8.0)["gap"] is None  # no empty band computed
    assert runner.band_gap_filled(np.concatenate([eps, eps]), 4.0)["gap"] is None  # two spins: not handled


def test_band_gap_filled_under_the_gpaw_interpreter(tmp_path: Path) -> None:
    """The runner takes the rule from the package's reader, found in its checkout by a Python without the package."""
    exe = gpaw_python_or_skip()
    code = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('gpaw_runner', {str(RUNNER)!r})\n"
        "runner = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(runner)\n"
        "eps = [[[-3.0, 0.0, 1.5, 4.0], [-2.5, 0.4, 1.2, 5.0]]]\n"
        "print(json.dumps([runner.band_gap_filled(eps, 4.0), runner.band_gap_filled(eps, 5.0)]))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"OMP_NUM_THREADS": "1"}
    done = subprocess.run([exe, "-c", code], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    gapped, metal = json.loads(done.stdout)
    assert gapped == {"gap": pytest.approx(0.8), "vbm": 0.4, "cbm": 1.2, "bands_occupied": 2}
    assert metal == {"gap": None, "vbm": None, "cbm": None, "bands_occupied": 2.5}
