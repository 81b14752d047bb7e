"""The scripts in examples/ run as a user would run them (with a tiny model when none is shipped)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from ase.io import read

from ase_dostransformer.model import DOSTransformer, ModelConfig, save_model_file
from ase_dostransformer.pretrained import list_models, load_model

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """Environment of the example processes: the shipped model if present, else a tiny random one."""
    env = {k: v for k, v in os.environ.items() if k != "DOSTRANSFORMER_MODEL"}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DOSTRANSFORMER_DEVICE="cpu")
    if "phonon" not in list_models():
        torch.manual_seed(0)
        model = DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4))
        env["DOSTRANSFORMER_MODEL"] = str(save_model_file(model, tmp_path_factory.mktemp("m") / "tiny.pt"))
    return env


def run(script: str, *args: str, env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True, env=env, timeout=180, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_structures_are_real_crystals():
    expected = {
        "NaCl.cif": ("ClNa", 2),
        "Si.cif": ("Si2", 2),
        "MgO.cif": ("MgO", 2),
        "GaAs.vasp": ("AsGa", 2),
        "ZnO.cif": ("O2Zn2", 4),
        "Cu.vasp": ("Cu", 1),
        "TiO2_rutile.cif": ("O4Ti2", 6),
    }
    for name, (formula, natoms) in expected.items():
        atoms = read(EXAMPLES / "structures" / name)
        assert (atoms.get_chemical_formula(), len(atoms)) == (formula, natoms)
        assert atoms.pbc.all()
    nacl = read(EXAMPLES / "structures" / "NaCl.cif")
    assert nacl.get_volume() == pytest.approx(5.64**3 / 4, rel=1e-6)  # a = 5.64 A, fcc primitive cell


def test_ase_calculator_example(env):
    out = run("ase_calculator.py", env=env)
    assert "Si2 (2 atoms)" in out
    assert re.search(r"peak frequency:\s+[\d.]+ THz", out)
    assert "modes (integral): 6.000" in out
    cv = float(re.search(r"Cv\(300 K\):\s+([\d.]+) J/K/mol of cells", out).group(1))
    assert 0 < cv < 6 * 8.314463  # below Dulong-Petit for 2 atoms


def test_phonopy_export_example(env, tmp_path):
    out = run("phonopy_export.py", "--out", str(tmp_path), env=env)
    assert (tmp_path / "total_dos.dat").read_text().startswith("# ")
    # the phonon model's own grid (the default's, or the tiny stand-in's 51 points)
    model = load_model(env.get("DOSTRANSFORMER_MODEL") or "phonon", device="cpu")
    assert f"pymatgen read {model.cfg.grid.npoints} points" in out
    assert "modes: 6.0000" in out
    ours = float(re.search(r"ase_dostransformer:\s+([\d.]+)", out).group(1))
    theirs = float(re.search(r"pymatgen:\s+([\d.]+) J/K/mol", out).group(1))
    assert ours == pytest.approx(theirs, rel=2e-3)


def test_screening_example(env, tmp_path):
    # --quick: 40 generated crystals, the most doubtful one refined by the teacher (cell relaxed)
    out = run("screening.py", "--quick", "--out", str(tmp_path / "screening.png"), env=env)
    assert "predicted 40 of 40 candidates" in out
    assert "refined 1 by the teacher" in out
    ranked = re.findall(r"^(\d+)\s+(\S+)\s+(\S+)\s+([\d.]+)", out, flags=re.M)
    ranks = [int(r[0]) for r in ranked]
    assert ranks[:10] == list(range(1, 11))
    entropy = [float(r[3]) for r in ranked]
    assert entropy == sorted(entropy, reverse=True)
    assert all(0 < s < 120 for s in entropy)  # J/K/mol of atoms at 300 K: a few R at most
    refined = re.search(r"^refined (\S+): model ([\d.]+), teacher ([\d.]+) \((ok|unstable)\)", out, flags=re.M)
    assert refined, out
    assert 0 < float(refined.group(3)) < 120
    assert (tmp_path / "screening.png").stat().st_size > 20000


def test_electron_dos_example(env, tmp_path):
    env = dict(env)
    shipped = "electron" in list_models()
    if not shipped:
        from ase_dostransformer.graphs.electron import ElectronGraphRecipe
        from ase_dostransformer.training.options import TrainOptions
        from ase_dostransformer.training.tasks import edos_model_config

        torch.manual_seed(0)
        cfg = edos_model_config(TrainOptions(hidden=32, layers=1, transformer=1, heads=4), ElectronGraphRecipe())
        env["DOSTRANSFORMER_ELECTRON_MODEL"] = str(save_model_file(DOSTransformer(cfg), tmp_path / "edos.pt"))
    out = run("electron_dos.py", "--out", str(tmp_path / "edos.png"), env=env)
    rows = {}
    for line in out.splitlines()[1:7]:  # crystal, gap, std, p_metal, DOS at 0 eV, flags
        name, gap, std, p_metal, at_zero, flags = line.split(maxsplit=5)
        rows[name] = (float(gap), float(std), float(p_metal), float(at_zero), flags)
    assert set(rows) == {"Si", "GaAs", "NaCl", "MgO", "Cu", "Al"}
    assert all(gap >= 0 and 0 <= at_zero <= 1.5 for gap, _, _, at_zero, _ in rows.values())
    if shipped:  # the shipped model's gap head: the metals called metals, the insulators given gaps in order
        assert rows["Cu"][0] == rows["Al"][0] == 0.0
        assert "metal" in rows["Cu"][4]
        assert rows["Cu"][2] > 0.5
        assert 0.2 < rows["Si"][0] < 1.2
        assert rows["Si"][0] < rows["MgO"][0] < rows["NaCl"][0] + 1.0
        assert rows["NaCl"][0] > 3.0
        assert all(rows[c][1] > 0 for c in ("Si", "GaAs", "NaCl", "MgO"))  # each gap with its uncertainty
    assert (tmp_path / "edos.png").stat().st_size > 5000
