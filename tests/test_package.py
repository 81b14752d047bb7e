"""The package as distributed: the shipped phonon dataset (checksums, overrides), version, licences, citation."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import subprocess
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pytest

import ase_dostransformer
from ase_dostransformer.errors import FileIntegrityError
from ase_dostransformer.io.phdos import (
    DATA_ENV,
    PACKAGED_DATA_DIR,
    default_data_dir,
    load_phonon_dataset,
    resolve_data_dir,
)

ROOT = Path(__file__).resolve().parents[1]
#: sha256 of the dataset's uncompressed data.csv, as recorded by the shipped model and the training recipe
PHDOS_SHA256 = "fe19bbabc4d49f13a3fb336ee6adff9d70d66e20375cabf56fbfa31cf4da1754"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def shipped():
    return load_phonon_dataset(PACKAGED_DATA_DIR)


def test_the_dataset_ships_in_the_package_with_licence_citation_and_sums() -> None:
    names = {p.name for p in PACKAGED_DATA_DIR.iterdir()}
    assert {"data.csv.gz", "idx_train.txt", "idx_valid.txt", "idx_test.txt", "sha256.json", "README.md"} <= names
    assert "data.csv" not in names  # compressed only
    readme = (PACKAGED_DATA_DIR / "README.md").read_text()
    for needed in ("CC BY 4.0", "MIT", "10.1038/sdata.2018.65", "10.1002/advs.202004214", PHDOS_SHA256):
        assert needed in readme
    assert "MIT License" in (PACKAGED_DATA_DIR / "LICENSE-phononDoS_tutorial").read_text()
    sums = json.loads((PACKAGED_DATA_DIR / "sha256.json").read_text())
    for name, digest in sums.items():
        if name == "data.csv":
            assert sha256(gzip.decompress((PACKAGED_DATA_DIR / "data.csv.gz").read_bytes())) == digest
        else:
            assert sha256((PACKAGED_DATA_DIR / name).read_bytes()) == digest
        assert digest in readme
    assert sums["data.csv"] == PHDOS_SHA256


def test_the_shipped_dataset_is_the_default_and_keeps_its_sha256(shipped, monkeypatch) -> None:
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert default_data_dir() == PACKAGED_DATA_DIR == resolve_data_dir(None)
    assert len(shipped) == 1521
    assert {k: len(v) for k, v in shipped.split.items()} == {
        "train": 1191,
        "valid": 141,
        "test": 189,
    }
    assert shipped.sha256 == PHDOS_SHA256  # the sum of the uncompressed table, as before it was compressed
    registry = json.loads((ROOT / "ase_dostransformer" / "pretrained" / "registry.json").read_text())
    entries = registry.values() if isinstance(registry, dict) else registry
    recorded = [e.get("training_data_sha256") for e in entries if isinstance(e, dict)]
    assert PHDOS_SHA256 in recorded  # the shipped phonon model was trained on exactly this table


def test_plain_csv_folder_reads_the_same_as_the_shipped_one(shipped, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "data.csv").write_bytes(gzip.decompress((PACKAGED_DATA_DIR / "data.csv.gz").read_bytes()))
    for name in ("idx_train.txt", "idx_valid.txt", "idx_test.txt"):
        shutil.copy(PACKAGED_DATA_DIR / name, folder / name)
    monkeypatch.setenv(DATA_ENV, str(folder))  # the environment overrides the shipped data
    assert default_data_dir() == folder
    plain = load_phonon_dataset()
    assert plain.sha256 == shipped.sha256
    assert plain.ids == shipped.ids
    np.testing.assert_array_equal(plain.dos, shipped.dos)
    for a, b in zip(plain.atoms, shipped.atoms, strict=True):
        np.testing.assert_array_equal(a.positions, b.positions)
    for part in ("train", "valid", "test"):
        np.testing.assert_array_equal(plain.split[part], shipped.split[part])
    assert load_phonon_dataset(folder / "data.csv").sha256 == PHDOS_SHA256  # a path to the file works too


def test_env_and_argument_override_the_shipped_data(tiny_dataset, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv(DATA_ENV, str(tiny_dataset))
    assert len(load_phonon_dataset()) == 20
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="no data.csv"):
        load_phonon_dataset()
    assert len(load_phonon_dataset(PACKAGED_DATA_DIR)) == 1521  # an explicit path wins over the environment


@pytest.mark.parametrize("damaged", ["data.csv.gz", "idx_test.txt", "content"])
def test_a_damaged_copy_of_the_shipped_data_is_refused(damaged, tmp_path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(PACKAGED_DATA_DIR, folder)
    if damaged == "content":  # a valid gzip file holding an edited table
        text = gzip.decompress((folder / "data.csv.gz").read_bytes()).replace(b"mp-1000,", b"mp-1001,", 1)
        (folder / "data.csv.gz").write_bytes(gzip.compress(text))
        sums = json.loads((folder / "sha256.json").read_text())
        sums["data.csv.gz"] = sha256((folder / "data.csv.gz").read_bytes())  # only the inner sum catches it
        (folder / "sha256.json").write_text(json.dumps(sums))
        name = "data.csv"
    else:
        raw = bytearray((folder / damaged).read_bytes())
        raw[len(raw) // 2] ^= 0x01
        (folder / damaged).write_bytes(bytes(raw))
        name = damaged
    with pytest.raises(FileIntegrityError, match=re.escape(name) + ": sha256 differs"):
        load_phonon_dataset(folder)


def test_one_version_source() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    declared = re.search(r'(?m)^version\s*=\s*"([^"]+)"', pyproject).group(1)
    assert ase_dostransformer.__version__ == version("ase-dostransformer") == declared
    assert not re.search(r"__version__\s*=\s*['\"]", (ROOT / "ase_dostransformer" / "__init__.py").read_text())


def test_typed_licensed_citable() -> None:
    assert (ROOT / "ase_dostransformer" / "py.typed").is_file()
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License")
    assert "ase-dostransformer developers" in licence
    assert "CC BY 4.0" in licence
    assert "data/phdos" in licence
    cff = (ROOT / "CITATION.cff").read_text()
    assert "cff-version: 1.2.0" in cff
    assert "2311.12856" in cff
    readme = (ROOT / "README.md").read_text()
    assert "@inproceedings{" in readme
    assert "@software{" in readme
    assert "2311.12856" in readme
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"py.typed"' in pyproject
    assert '"data/phdos/*"' in pyproject
    assert (ROOT / "CHANGELOG.md").read_text().startswith("# Changelog")


def test_no_file_of_the_project_points_outside_it() -> None:
    """Nothing tracked refers to a development folder beside the checkout (it is not there on a fresh clone)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
        names = [n for n in listed.stdout.decode().split("\0") if n]
    except (OSError, subprocess.CalledProcessError):  # no git, or not a checkout: every file but the usual clutter
        skip = {".git", ".venv", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "build", "dist"}
        parts = lambda p: set(p.relative_to(ROOT).parts)  # noqa: E731
        names = [
            str(p.relative_to(ROOT))
            for p in ROOT.rglob("*")
            if not skip & parts(p) and not any(x.endswith(".egg-info") for x in parts(p))
        ]
    needle = "shared" + "/"
    offenders = []
    for name in names:
        path = ROOT / name
        if not path.is_file() or path.suffix in {".pt", ".npz", ".gz", ".png", ".npy"}:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}:{i}" for i, line in enumerate(text.splitlines(), 1) if needle in line]
    assert offenders == []
