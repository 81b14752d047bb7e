"""train/edos/suspect_labels.py: which committed GPAW metal labels are suspect, their queue, the PW comparison."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import read

from ase_dostransformer.errors import OptionError

EDOS = Path(__file__).resolve().parents[1] / "train" / "edos"
#: CuBr (zinc blende): a metal by the label's gap, an empty 2.2 eV window in its DOS; its 9th band
#: (the last its 18 stored electrons fill) touches the 10th at the Fermi level.
SUSPECT = EDOS / "dft_gpaw" / "mp-570354.json.gz"
#: CsAu (CsCl structure): its bands are full up to a 1.21 eV gap on the DOS mesh, but the SCF mesh's
#: Fermi level lies 0.66 eV under the top of the last full band: read as gapped by band filling.
FILLED = EDOS / "dft_gpaw" / "mp-2667.json.gz"
#: fcc Cu: a metal with states at the Fermi level (no window).
METAL = EDOS / "dft_gpaw_metals" / "Cu-fcc.json.gz"
#: MgO: gapped, so no metal at all.
INSULATOR = EDOS / "dft_gpaw_reference" / "MgO_rocksalt_4.189.json.gz"


def _module():
    spec = importlib.util.spec_from_file_location("suspect_labels", EDOS / "suspect_labels.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["suspect_labels"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def sl():
    return _module()


def _load(path: Path) -> dict:
    return json.loads(gzip.decompress(path.read_bytes()))


def test_one_suspect_among_a_metal_and_an_insulator(sl) -> None:
    suspects, metals = sl.find_suspects([METAL, SUSPECT, INSULATOR, FILLED])
    assert metals == 2  # Cu and CuBr; MgO is gapped, and so is CsAu by band filling
    assert [s.id for s in suspects] == ["mp-570354"]
    s = suspects[0]
    assert (s.formula, s.natoms, s.folder) == ("BrCu", 2, "dft_gpaw")
    assert s.dft_gap == 0.0
    assert s.window == pytest.approx(2.2)
    assert s.filled_gap == pytest.approx(0.0043, abs=1e-4)  # under METAL_GAP: the bands touch
    assert s.kind == "touch"
    assert not sl.check_label(FILLED).metal
    clean = sl.check_label(METAL)
    assert clean.metal
    assert (clean.window, clean.kind) == (0.0, "partial")  # Cu: 11 electrons, half a band
    # the threshold is an option: a window of 2.2 eV is not wider than 2.5
    assert sl.find_suspects([SUSPECT], window=2.5)[0] == []
    with pytest.raises(OptionError, match="window"):
        sl.find_suspects([SUSPECT], window=0.0)


def test_filled_gap_from_the_electron_count_matches_the_inferred_one(sl) -> None:
    label = _load(FILLED)
    inferred = sl.filled_gap(label)
    assert inferred == pytest.approx(1.214, abs=1e-3)
    # GPAW's PBE setups: Cs 9 valence electrons, Au 11; the compact label starts at band 3
    assert label["compact"]["bands"][0] == 3
    assert sl.filled_gap({**label, "nelectrons": 20.0}) == pytest.approx(inferred)
    assert sl.filled_gap({**label, "nelectrons": 21.0}) is None  # an odd count fills no whole band
    assert [sl.kind_of(g) for g in (None, 0.01, -0.01, -0.3, 0.05)] == ["partial", "touch", "touch", "overlap", "fermi"]


def test_queue_holds_the_structures_for_the_runner(sl, tmp_path: Path) -> None:
    suspects, _ = sl.find_suspects([SUSPECT])
    lists = sl.write_queue(suspects * 2, tmp_path / "q", queues=2)  # the same crystal twice: dealt round-robin
    assert [p.name for p in lists] == ["queue-0.txt", "queue-1.txt"]
    files = [line for p in lists for line in p.read_text().splitlines()]
    assert files == [str(tmp_path / "q" / "0" / "mp-570354.extxyz"), str(tmp_path / "q" / "1" / "mp-570354.extxyz")]
    atoms = read(files[0])
    s = _load(SUSPECT)["structure"]
    assert atoms.numbers.tolist() == s["numbers"]
    np.testing.assert_allclose(atoms.cell[:], s["cell"], atol=1e-8)
    np.testing.assert_allclose(atoms.positions, s["positions"], atol=1e-8)
    doc = json.loads((tmp_path / "q" / "queue.json").read_text())
    assert doc["queue"][0] == {"id": "mp-570354", "folder": "dft_gpaw", "atoms": 2}
    with pytest.raises(OptionError, match="queues"):
        sl.write_queue(suspects, tmp_path / "r", queues=0)


def test_pw_comparison_verdicts(sl, tmp_path: Path) -> None:
    """A PW result read as gapped (at its Fermi level or by band filling) replaces the label; else keep."""
    suspects, _ = sl.find_suspects([SUSPECT])
    pw = tmp_path / "pw"
    pw.mkdir()
    assert sl.compare_pw(suspects, pw)[0]["verdict"] == "pending"
    (pw / "failures.jsonl").write_text(json.dumps({"id": "mp-570354", "reason": "RuntimeError: no\nmore"}) + "\n")
    row = sl.compare_pw(suspects, pw)[0]
    assert (row["verdict"], row["reason"]) == ("failed", "RuntimeError: no")
    # a result whose empty bands lie 0.8 eV higher: gapped
    label = _load(SUSPECT)
    eps = np.asarray(label["eigenvalues"])
    eps[..., 8:] += 0.8  # the compact label starts at band 1: 8 of its bands are full
    opened = {**label, "eigenvalues": eps.tolist()}
    (pw / "mp-570354.json").write_text(json.dumps(opened))
    row = sl.compare_pw(suspects, pw)[0]
    assert row["verdict"] == "replace"
    assert row["pw_gap"] == pytest.approx(0.804, abs=1e-3)
    assert row["pw_filled_gap"] == pytest.approx(0.804, abs=1e-3)
    # the label itself as its "PW result": the bands still touch, PBE's own answer stands
    (pw / "mp-570354.json").write_text(json.dumps(label))
    assert sl.compare_pw(suspects, pw)[0]["verdict"] == "keep"
    assert "verdict" in sl.table(sl.compare_pw(suspects, pw)).splitlines()[0]
    with pytest.raises(OptionError, match="does not exist"):
        sl.compare_pw(suspects, tmp_path / "nowhere")


def test_command_line_writes_table_queue_and_json(sl, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "labels"
    folder.mkdir()
    for f in (SUSPECT, METAL):
        (folder / f.name).write_bytes(f.read_bytes())
    out = tmp_path / "suspects.json"
    assert sl.main([str(folder), "--structures", str(tmp_path / "s"), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 suspect of 2 metal labels in 2 files" in text
    assert (tmp_path / "s" / "0" / "mp-570354.extxyz").is_file()
    assert [r["id"] for r in json.loads(out.read_text())["rows"]] == ["mp-570354"]
    assert sl.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_replace_in_list_swaps_only_replaced_labels(sl, tmp_path: Path) -> None:
    """``--replace-in``: a label list (as model_files.txt) gets the PW result's path for a 'replace' verdict."""
    root = tmp_path / "edos"
    (root / "dft_gpaw").mkdir(parents=True)
    (root / "pw").mkdir()
    for f in (SUSPECT, METAL):
        (root / "dft_gpaw" / f.name).write_bytes(f.read_bytes())
    listing = root / "files.txt"
    listing.write_text(f"dft_gpaw/{METAL.name}\ndft_gpaw/{SUSPECT.name}\n")
    label = _load(SUSPECT)
    assert sl.main([str(root / "dft_gpaw"), "--pw", str(root / "pw"), "--replace-in", str(listing)]) == 0
    assert listing.read_text().split() == [f"dft_gpaw/{METAL.name}", f"dft_gpaw/{SUSPECT.name}"]  # pending: kept
    eps = np.asarray(label["eigenvalues"])
    eps[..., 8:] += 0.8
    (root / "pw" / "mp-570354.json").write_text(json.dumps({**label, "eigenvalues": eps.tolist()}))
    assert sl.main([str(root / "dft_gpaw"), "--pw", str(root / "pw"), "--replace-in", str(listing)]) == 0
    assert listing.read_text().split() == [f"dft_gpaw/{METAL.name}", "pw/mp-570354.json"]
    assert sl.main([str(root / "dft_gpaw"), "--replace-in", str(listing)]) == 2  # no verdicts without --pw
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "mp-570354.json").write_text(json.dumps({**label, "eigenvalues": eps.tolist()}))
    listing.write_text(f"dft_gpaw/{SUSPECT.name}\n")
    assert sl.main([str(root / "dft_gpaw"), "--pw", str(outside), "--replace-in", str(listing)]) == 2
