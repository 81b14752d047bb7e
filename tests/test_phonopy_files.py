"""phonopy total_dos.dat writer/reader, checked against phonopy, pymatgen, ASE and phonopy-pdosplot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ase_dostransformer.io.conversions import ASE_DOS_INFO, to_ase_dos, to_pymatgen_phonon_dos
from ase_dostransformer.io.phonopy_files import (
    format_total_dos,
    read_total_dos,
    read_total_dos_ase,
    read_total_dos_pymatgen,
    write_total_dos,
)
from ase_dostransformer.spectra import PHONON_GRID, phonon_dos_to_phonopy

DATA = Path(__file__).parent / "data" / "phonopy_NaCl"


@pytest.fixture(scope="module")
def model_like_dos():
    """A DOS on the model's grid scaled to phonopy units (THz, states/THz/cell, integral 3N)."""
    rng = np.random.default_rng(7)
    y = rng.random(PHONON_GRID.npoints) * np.exp(-(((PHONON_GRID.values - 300.0) / 150.0) ** 2))
    y[0] = 0.0
    return phonon_dos_to_phonopy(y, natoms=4)


@pytest.fixture(scope="module")
def nacl_phonopy_dos(tmp_path_factory):
    """Phonopy's own total_dos.dat of its NaCl example (small gamma-centred mesh, sigma smearing)."""
    phonopy = pytest.importorskip("phonopy")
    ph = phonopy.load(
        supercell_matrix=[2, 2, 2],
        primitive_matrix="F",
        unitcell_filename=str(DATA / "POSCAR-unitcell"),
        force_sets_filename=str(DATA / "FORCE_SETS"),
        born_filename=str(DATA / "BORN"),
        log_level=0,
    )
    ph.run_mesh([8, 8, 8], is_gamma_center=True)
    ph.run_total_dos(sigma=0.1, freq_pitch=0.05)
    path = tmp_path_factory.mktemp("phonopy") / "total_dos.dat"
    ph.write_total_dos(filename=path)
    return path, np.array(ph.total_dos.frequency_points), np.array(ph.total_dos.dos)


def test_format_is_phonopys(model_like_dos, tmp_path):
    f, g = model_like_dos
    path = write_total_dos(tmp_path / "total_dos.dat", f, g, comment="predicted")
    text = path.read_text()
    lines = text.split("\n")
    assert lines[0] == "# predicted"
    assert lines[-1] == ""
    assert "" not in lines[:-1]
    assert len(lines) - 2 == PHONON_GRID.npoints
    assert lines[1] == f"{f[0]:20.10f}{g[0]:20.10f}"
    assert all(len(line) == 40 for line in lines[1:-1])
    # byte-identical to phonopy's own writer
    dos_mod = pytest.importorskip("phonopy.phonon.dos")
    ref = tmp_path / "ref.dat"
    dos_mod.write_total_dos(f, g, comment="predicted", filename=ref)
    assert ref.read_bytes() == path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.dat", "total_dos.dat"]  # no temp files


def test_default_comment_and_no_comment(model_like_dos):
    f, g = model_like_dos
    assert format_total_dos(f, g).startswith("# Phonon DOS (THz, states/THz/cell)")
    assert format_total_dos(f, g, comment=None).split("\n")[0] == f"{f[0]:20.10f}{g[0]:20.10f}"


def test_round_trip_ours_and_pymatgen(model_like_dos, tmp_path):
    f, g = model_like_dos
    path = write_total_dos(tmp_path / "total_dos.dat", f, g)
    f2, g2 = read_total_dos(path)
    np.testing.assert_allclose(f2, f, rtol=0, atol=1e-8)
    np.testing.assert_allclose(g2, g, rtol=0, atol=1e-8)
    pmg_io = pytest.importorskip("pymatgen.io.phonopy")
    pmg = pmg_io.get_ph_dos(str(path))
    np.testing.assert_allclose(pmg.frequencies, f, rtol=0, atol=1e-8)
    np.testing.assert_allclose(pmg.densities, g, rtol=0, atol=1e-8)
    assert np.trapezoid(pmg.densities, pmg.frequencies) == pytest.approx(12.0, rel=1e-8)  # 3N, N = 4


def test_overwrite_is_atomic_replace(model_like_dos, tmp_path):
    f, g = model_like_dos
    path = tmp_path / "total_dos.dat"
    path.write_text("old content\n")
    write_total_dos(path, f, g)
    assert read_total_dos(path)[0].shape == f.shape
    assert [p.name for p in tmp_path.iterdir()] == ["total_dos.dat"]
    with pytest.raises(ValueError, match="NaN"):
        write_total_dos(path, f, np.full_like(g, np.nan))
    assert read_total_dos(path)[1] == pytest.approx(g, abs=1e-8)  # untouched by the failed write
    assert [p.name for p in tmp_path.iterdir()] == ["total_dos.dat"]


def test_reads_phonopys_own_file(nacl_phonopy_dos):
    path, f_ref, g_ref = nacl_phonopy_dos
    assert path.read_text().startswith("# Sigma = 0.100000\n")
    f, g = read_total_dos(path)
    assert f.shape == f_ref.shape
    np.testing.assert_allclose(f, f_ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-9)
    assert np.trapezoid(g, f) == pytest.approx(6.0, rel=0.01)  # NaCl primitive cell: 3N = 6


def test_pdosplot_reads_our_file(model_like_dos, tmp_path):
    script = Path(sys.executable).parent / "phonopy-pdosplot"
    if not script.exists():
        pytest.skip("phonopy-pdosplot not installed next to this Python")
    f, g = model_like_dos
    path = write_total_dos(tmp_path / "total_dos.dat", f, g)
    out = tmp_path / "dos.png"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run(
        [str(script), "-i", "1", "-o", str(out), str(path)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.is_file()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # control: the tool does reject a comment without the space after '#'
    bad = tmp_path / "bad_dos.dat"
    bad.write_text("#no space\n" + format_total_dos(f, g, comment=None))
    proc = subprocess.run(
        [str(script), "-i", "1", "-o", str(tmp_path / "bad.png"), str(bad)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "could not convert" in proc.stderr


def test_pymatgen_and_ase_conversions(model_like_dos, tmp_path):
    f, g = model_like_dos
    pmg = to_pymatgen_phonon_dos(f, g)
    np.testing.assert_array_equal(pmg.frequencies, f)
    np.testing.assert_array_equal(pmg.densities, g)

    ase_dos = to_ase_dos(f, g, info={"label": "test"})
    np.testing.assert_array_equal(ase_dos.get_energies(), f)
    np.testing.assert_array_equal(ase_dos.get_weights(), g)
    assert ase_dos.info == {**ASE_DOS_INFO, "label": "test"}
    assert ase_dos.info["unit"] == "THz"
    assert ase_dos.info["dos_unit"] == "states/THz/cell"

    path = write_total_dos(tmp_path / "total_dos.dat", f, g)
    np.testing.assert_allclose(read_total_dos_pymatgen(path).densities, g, atol=1e-8)
    np.testing.assert_allclose(read_total_dos_ase(path).get_weights(), g, atol=1e-8)

    with pytest.raises(ValueError, match="evenly-spaced"):
        to_ase_dos([0.0, 1.0, 3.0], [0.0, 1.0, 0.0])


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("# Tetrahedron method\n    0.0000000000    0.0000000000\n    0.1000000000    abc\n", r":3: not a number"),
        ("# x\n    0.0    1.0    2.0\n", r":2: expected 2 columns"),
        ("# x\n    0.0\n", r":2: expected 2 columns"),
        ("    0.0    1.0\n    0.1    nan\n", r":2: NaN"),
        ("# only a comment\n", "no data rows"),
        ("", "no data rows"),
        ("    0.0    1.0\n    0.2    1.0\n    0.1    1.0\n", "not strictly increasing"),
    ],
)
def test_malformed_file_raises_naming_file(tmp_path, content, match):
    path = tmp_path / "broken_total_dos.dat"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as err:
        read_total_dos(path)
    assert "broken_total_dos.dat" in str(err.value)


def test_reader_skips_comments_and_blank_lines(tmp_path):
    path = tmp_path / "total_dos.dat"
    path.write_text("# a\n#b\n\n    0.0    0.5\n   # c\n    1.0    1.5\n")
    f, g = read_total_dos(path)
    np.testing.assert_array_equal(f, [0.0, 1.0])
    np.testing.assert_array_equal(g, [0.5, 1.5])


@pytest.mark.parametrize(
    ("freq", "dos", "comment", "match"),
    [
        ([0.0, 1.0], [0.0], "x", "equal length"),
        ([0.0, np.inf], [0.0, 1.0], "x", "frequencies contain"),
        ([0.0, 1.0], [0.0, 1.0], "two\nlines", "single line"),
        ([], [], "x", "empty"),
    ],
)
def test_writer_rejects_bad_input(tmp_path, freq, dos, comment, match):
    with pytest.raises(ValueError, match=match):
        write_total_dos(tmp_path / "total_dos.dat", freq, dos, comment=comment)
    assert list(tmp_path.iterdir()) == []
