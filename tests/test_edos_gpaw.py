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


@pytest.mark.slow
def test_gpaw_si_runner_is_resumable_and_builds_a_row(tmp_path: Path) -> None:
    exe = gpaw_python()
    if exe is None:
        pytest.skip(
            "GPAW absent: no interpreter imports gpaw "
            "(apt-get install gpaw gpaw-data, or set DOSTRANSFORMER_GPAW_PYTHON)"
        )
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
