"""The phonon teacher: shipped potential (pair-order fix, sha256), one-crystal physics, pipeline mechanics.

Pipeline mechanics (resume, shards, failures) use a stub labeller so they cost nothing; the physics
runs the real teacher on two 2-atom crystals and compares NaCl with phonopy's DFT example.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

pytest.importorskip("matgl")
pytest.importorskip("phonopy")

from ase_dostransformer.errors import DatasetError, FolderInUseError, OptionError, TeacherInputError  # noqa: E402
from ase_dostransformer.teacher import phonons as phon  # noqa: E402
from ase_dostransformer.teacher import pipeline as pl  # noqa: E402
from ase_dostransformer.teacher.potential import (  # noqa: E402
    POTENTIAL_DIR,
    PotentialError,
    fix_pair_order,
    load_teacher,
    verify_files,
)
from ase_dostransformer.teacher.records import (  # noqa: E402
    decode_dos,
    iter_records,
    record_atoms,
    record_files,
    to_dataset_grid,
)

NACL = Path(__file__).parent / "data" / "phonopy_NaCl"
A_NACL = 5.6903014761756712  # phonopy example's lattice constant
R = 8.314462618


@pytest.fixture(scope="module")
def teacher():
    import torch

    torch.set_num_threads(1)
    return load_teacher("cpu")


# --------------------------------------------------------------------------- potential


def _mgo_energy_pressure(calc, a: float) -> tuple[float, float]:
    atoms = bulk("MgO", "rocksalt", a=a)
    atoms.calc = calc
    return atoms.get_potential_energy() / 2, float(-np.mean(atoms.get_stress()[:3]) * 160.21766)


def test_pair_order_fix_mgo_lattice(teacher):
    calc = teacher.calculator()
    e = {a: _mgo_energy_pressure(calc, a) for a in (4.10, 4.25, 4.40)}
    assert e[4.25][0] < e[4.10][0], e  # minimum near DFT's 4.25 A
    assert e[4.25][0] < e[4.40][0], e
    assert abs(e[4.25][1]) < 2.0, e  # GPa; uncorrected weights: tens of GPa
    assert e[4.10][1] > 5
    assert e[4.40][1] < -3


def test_pair_order_fix_is_per_instance(teacher):
    import matgl
    from matgl.layers._embedding import TensorEmbedding

    assert "message" in vars(TensorEmbedding)  # matgl's class keeps its own method
    plain = matgl.load_model(POTENTIAL_DIR)  # another instance: matgl's convention, untouched
    emb = next(m for m in plain.modules() if isinstance(m, TensorEmbedding))
    assert "message" not in vars(emb)
    from ase_dostransformer.teacher.potential import make_calculator

    e_plain, _ = _mgo_energy_pressure(make_calculator(plain), 4.25)
    e_fixed, _ = _mgo_energy_pressure(teacher.calculator(), 4.25)
    assert abs(e_plain - e_fixed) > 0.05  # the swap matters for a compound
    assert fix_pair_order(plain) == 1
    assert fix_pair_order(plain) == 1
    assert _mgo_energy_pressure(make_calculator(plain), 4.25)[0] == pytest.approx(e_fixed, abs=1e-5)


def test_sha256_checked(tmp_path):
    verify_files()
    copy = tmp_path / "pot"
    shutil.copytree(POTENTIAL_DIR, copy)
    with open(copy / "model.json", "a") as fh:
        fh.write(" ")
    with pytest.raises(PotentialError, match="model.json"):
        load_teacher("cpu", folder=copy)
    shutil.copy(POTENTIAL_DIR / "model.json", copy / "model.json")
    verify_files(copy)
    (copy / "state.pt").unlink()
    with pytest.raises(PotentialError, match="missing"):
        verify_files(copy)


def test_device_choice(monkeypatch):
    from ase_dostransformer.teacher.potential import DEVICE_ENV, choose_device

    assert choose_device("cpu") == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert choose_device() == "cpu"
    monkeypatch.setenv(DEVICE_ENV, "nonsense")
    with pytest.raises(PotentialError, match="nonsense"):
        choose_device()


# --------------------------------------------------------------------------- physics, end to end

FAST = phon.PhononSettings(mesh_length=30.0, temperatures=(20.0, 100.0, 300.0, 1000.0))


@pytest.fixture(scope="module")
def two_crystals(teacher, tmp_path_factory):
    """Si and NaCl labelled through the real pipeline (module-level teacher reused)."""
    out = tmp_path_factory.mktemp("e2e")
    si = bulk("Si", "diamond", a=5.47)
    si.info.update(id="Si-diamond", prototype="diamond")
    nacl = bulk("NaCl", "rocksalt", a=A_NACL)
    nacl.info.update(id="NaCl-rocksalt", prototype="rocksalt")
    pl._WORKER.update(teacher=teacher, calc=teacher.calculator(), elements=tuple(teacher.potential.model.element_types))
    mp = pytest.MonkeyPatch()
    mp.setattr(pl, "_init_worker", lambda device, threads: None)
    try:
        report = pl.run_pipeline(pl.inputs_from_atoms([si, nacl], source="test"), out, FAST, progress=False)
    finally:
        mp.undo()
    recs = {r["id"]: r for r in iter_records(out, status=None)}
    return report, recs


def test_end_to_end_physics(two_crystals):
    report, recs = two_crystals
    assert report.counts == {"ok": 2}
    for ident, rec in recs.items():
        assert rec["status"] == "ok", rec["reason"]
        assert rec["frequencies"]["imaginary_fraction"] == 0.0
        freq, total, elements = decode_dos(rec)
        assert freq[1] - freq[0] <= 2.0
        assert freq[-1] > rec["frequencies"]["max_cm1"]
        integral = float(((total[1:] + total[:-1]) / 2 * np.diff(freq)).sum())
        assert integral == pytest.approx(6.0, rel=0.02), ident  # 3N, N = 2
        assert sum(elements.values()) == pytest.approx(total, abs=3e-4 * total.max())
        th = rec["thermal"]
        cv_1000 = th["cv"][th["temperatures"].index(1000.0)]
        assert 0.97 * 6 * R < cv_1000 < 6 * R, ident  # Dulong-Petit (Si: 2% quantum correction at 1000 K)
        assert th["zpe"] > 0
        assert th["cv"] == sorted(th["cv"])
        assert rec["device"] == "cpu"
        assert rec["versions"]["matgl"] != "absent"
        assert rec["cpu_seconds"]["total"] > 0
        assert rec["tags"]["prototype"] in ("diamond", "rocksalt")
        y = to_dataset_grid(rec)
        assert y.shape == (51,)
        assert y.max() == pytest.approx(1.0)
    assert 440 < recs["Si-diamond"]["frequencies"]["max_cm1"] < 540  # DFT ~ 515 cm^-1 (LTO at Gamma)


def test_record_atoms_reads_the_stored_crystal_back(two_crystals):
    rec = two_crystals[1]["NaCl-rocksalt"]
    stored = rec["structure"]
    atoms = record_atoms(rec)
    assert atoms.numbers.tolist() == stored["numbers"]
    assert atoms.pbc.all()
    np.testing.assert_array_equal(atoms.cell[:], np.asarray(stored["cell"]))
    np.testing.assert_allclose(atoms.get_scaled_positions(wrap=False), stored["scaled_positions"], atol=1e-12)
    assert atoms.get_chemical_formula() == rec["formula"]
    broken = {**rec, "structure": {k: v for k, v in stored.items() if k != "cell"}}
    with pytest.raises(DatasetError, match=r"record NaCl-rocksalt: structure lacks \['cell'\]"):
        record_atoms(broken)


def test_shipped_teacher_records_read_back():
    folder = Path(__file__).parent.parent / "train" / "teacher" / "dft_test"
    if not record_files(folder):
        pytest.skip("no shipped teacher records")
    records = list(iter_records(folder, status=None))
    assert records
    for rec in records:
        atoms = record_atoms(rec)
        assert atoms.get_chemical_formula() == rec["formula"], rec["id"]
        assert len(atoms) == rec["natoms"], rec["id"]
        assert atoms.numbers.tolist() == rec["structure"]["numbers"]


def test_nacl_against_phonopy_dft(two_crystals):
    """Teacher NaCl against phonopy's VASP example (no LO-TO correction: the teacher has no Born charges)."""
    import phonopy

    ph = phonopy.load(
        supercell_matrix=[2, 2, 2],
        primitive_matrix="F",
        unitcell_filename=str(NACL / "POSCAR-unitcell"),
        force_sets_filename=str(NACL / "FORCE_SETS"),
        is_nac=False,
        log_level=0,
    )
    ph.run_mesh(30.0)
    ph.run_thermal_properties(temperatures=list(FAST.temperatures))
    dft_cv = np.asarray(ph.thermal_properties.heat_capacity)
    dft_max = float(np.max(ph.mesh.frequencies)) * phon.THZ_TO_CM1
    rec = two_crystals[1]["NaCl-rocksalt"]
    cv = np.asarray(rec["thermal"]["cv"])
    # measured: highest mode 204 vs 210 cm^-1; Cv +11% at 100 K, +1.3% at 300 K (the teacher is soft)
    assert rec["frequencies"]["max_cm1"] == pytest.approx(dft_max, rel=0.08)
    assert cv[2] == pytest.approx(dft_cv[2], rel=0.04)  # 300 K
    assert cv[1] == pytest.approx(dft_cv[1], rel=0.2)  # 100 K


# --------------------------------------------------------------------------- pipeline mechanics (stub labeller)


def _fake_label(atoms, calc, settings=None, *, elements=None, device="cpu"):
    phon.check_structure(atoms, settings or phon.PhononSettings(), elements)
    n = len(atoms)
    return {
        "status": "ok",
        "reason": "",
        "formula": atoms.get_chemical_formula(),
        "natoms": n,
        "dos": {"start_cm1": 0.0, "step_cm1": 2.0, "n": 3, "scale": 1.0, "quantum": 1e-4,
                "total": [0, 10000, 0], "elements": {}},
        "settings": (settings or phon.PhononSettings()).as_dict(),
        "cpu_seconds": {"total": 0.01},
    }  # fmt: skip


@pytest.fixture
def stub(monkeypatch):
    """Replace the teacher by a stub; returns a list of the inputs labelled, in order."""
    calls: list[str] = []

    def fake(atoms, *a, **k):
        calls.append(atoms.get_chemical_formula())
        return _fake_label(atoms, *a, **k)

    worker = {"teacher": type("T", (), {"device": "cpu"})(), "calc": None, "elements": ("H", "Na", "Cl", "Si")}
    monkeypatch.setattr(pl, "_init_worker", lambda device, threads: pl._WORKER.update(worker))
    monkeypatch.setattr(phon, "label_crystal", fake)
    return calls


def _crystals(n: int) -> list[Atoms]:
    out = []
    for k in range(n):
        a = bulk("NaCl", "rocksalt", a=5.5 + 0.01 * k)
        a.info["id"] = f"c{k}"
        out.append(a)
    return out


def test_resume_after_interruption(tmp_path, stub, monkeypatch):
    inputs = pl.inputs_from_atoms(_crystals(5))
    real = phon.label_crystal

    def dies_on_third(atoms, *a, **k):
        if len(stub) == 2:
            raise KeyboardInterrupt  # a kill in the middle of the third crystal
        return real(atoms, *a, **k)

    monkeypatch.setattr(phon, "label_crystal", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        pl.run_pipeline(inputs, tmp_path, progress=False)
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert [e["status"] for e in man["inputs"]] == ["ok", "ok", "pending", "pending", "pending"]
    assert len(list(iter_records(tmp_path))) == 2
    monkeypatch.setattr(phon, "label_crystal", real)
    report = pl.run_pipeline(inputs, tmp_path, progress=False)
    assert report.labelled_now == 3
    assert report.counts == {"ok": 5}
    assert len(stub) == 5  # nothing labelled twice
    assert [r["id"] for r in iter_records(tmp_path)] == [f"c{k}" for k in range(5)]
    again = pl.run_pipeline(inputs, tmp_path, progress=False)
    assert again.labelled_now == 0
    # other settings or changed inputs are refused, not silently mixed
    with pytest.raises(OptionError, match="settings"):
        pl.run_pipeline(inputs, tmp_path, phon.PhononSettings(fmax=0.01), progress=False)
    moved = _crystals(5)
    moved[0].positions[0] += 0.1
    with pytest.raises(TeacherInputError, match="c0"):
        pl.run_pipeline(pl.inputs_from_atoms(moved), tmp_path, progress=False)


def test_chunks_are_deterministic(tmp_path, stub):
    inputs = pl.inputs_from_atoms(_crystals(5))
    pl.run_pipeline(inputs, tmp_path / "a", chunk_size=2, progress=False)
    pl.run_pipeline(inputs[:3], tmp_path / "b", chunk_size=2, progress=False)  # then resumed with all
    pl.run_pipeline(inputs, tmp_path / "b", chunk_size=2, progress=False)
    names = sorted(p.name for p in (tmp_path / "a").glob("records-*"))
    assert names == ["records-00000.jsonl.gz", "records-00001.jsonl.gz", "records-00002.jsonl.gz"]
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_shards_partition_inputs(tmp_path, stub):
    inputs = pl.inputs_from_atoms(_crystals(7))
    seen: list[str] = []
    for i in range(3):
        pl.run_pipeline(inputs, tmp_path, shard=(i, 3), progress=False)
        man = json.loads(pl.manifest_path(tmp_path, (i, 3)).read_text())
        seen += [e["id"] for e in man["inputs"]]
    assert sorted(seen) == sorted(inp.id for inp in inputs)
    assert len(seen) == len(set(seen))
    assert sorted(r["id"] for r in iter_records(tmp_path)) == sorted(seen)
    for n in (1, 2, 5):
        parts = [pl.shard_indices(11, (i, n)) for i in range(n)]
        assert sorted(sum(parts, [])) == list(range(11))
    for bad in ("3/2", "a/b", "1", "-1/2"):
        with pytest.raises(OptionError):
            pl.parse_shard(bad)


def test_failures_recorded_with_reason(tmp_path, stub):
    good = _crystals(1)
    overlap = Atoms("NaCl", positions=[[0, 0, 0], [0.1, 0, 0]], cell=[5, 5, 5], pbc=True)
    overlap.info["id"] = "overlap"
    molecule = Atoms("H2", positions=[[0, 0, 0], [0.74, 0, 0]])
    molecule.info["id"] = "molecule"
    unknown = Atoms("Og", cell=[4, 4, 4], pbc=True)
    unknown.info["id"] = "unknown"
    bad_file = tmp_path / "garbage.cif"
    bad_file.write_text("this is not a crystal\n")
    inputs = pl.inputs_from_atoms([*good, overlap, molecule, unknown]) + pl.inputs_from_files([bad_file])
    report = pl.run_pipeline(inputs, tmp_path / "out", progress=False)
    assert report.counts == {"failed": 4, "ok": 1}
    man = {e["id"]: e for e in json.loads((tmp_path / "out" / "manifest.json").read_text())["inputs"]}
    assert "0.100 A apart" in man["overlap"]["reason"]
    assert "not periodic" in man["molecule"]["reason"]
    assert "Og" in man["unknown"]["reason"]
    assert man["garbage.cif"]["reason"].startswith("read:")
    # failures are retried only on request
    again = pl.run_pipeline(inputs, tmp_path / "out", progress=False)
    assert again.labelled_now == 0
    assert pl.run_pipeline(inputs, tmp_path / "out", retry_failed=True, progress=False).labelled_now == 4
    with pytest.raises(TeacherInputError, match="info\\['id'\\]"):
        pl.inputs_from_atoms([bulk("Si")])
    with pytest.raises(TeacherInputError, match="more than once"):
        pl.run_pipeline(pl.inputs_from_atoms(_crystals(2) + _crystals(1)), tmp_path / "dup", progress=False)


def test_unstable_is_recorded_not_dropped(tmp_path, stub, monkeypatch):
    def unstable(atoms, *a, **k):
        rec = _fake_label(atoms, *a, **k)
        rec.update(status="unstable", reason="dynamically unstable: 5.00% of modes below -3.0 cm^-1")
        return rec

    monkeypatch.setattr(phon, "label_crystal", unstable)
    report = pl.run_pipeline(pl.inputs_from_atoms(_crystals(1)), tmp_path, progress=False)
    assert report.counts == {"unstable": 1}
    assert list(iter_records(tmp_path)) == []  # not a training label
    (rec,) = iter_records(tmp_path, status="unstable")
    assert "unstable" in rec["reason"]
    with gzip.open(next(tmp_path.glob("records-*.jsonl.gz")), "rt") as fh:
        assert json.loads(fh.readline())["status"] == "unstable"


def test_cli_bad_arguments(capsys):
    from ase_dostransformer.cli import main

    assert main(["dataset", "phonons", "--out", "/nonexistent/x", "--shard", "5/2", "x.cif"]) == 2
    assert "shard" in capsys.readouterr().err
    assert main(["dataset", "phonons", "--out", "/nonexistent/x"]) == 2
    assert "no inputs" in capsys.readouterr().err


def test_relax_cell_per_input_override(tmp_path, stub, monkeypatch):
    seen: dict[str, bool] = {}

    def record_settings(atoms, calc, settings=None, **k):
        seen[atoms.info["id"]] = settings.relax_cell
        return _fake_label(atoms, calc, settings, **k)

    monkeypatch.setattr(phon, "label_crystal", record_settings)
    crystals = _crystals(2)
    crystals[1].info["relax_cell"] = True
    pl.run_pipeline(pl.inputs_from_atoms(crystals), tmp_path, progress=False)
    assert seen == {"c0": False, "c1": True}


def test_cuda_matches_cpu(teacher):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = load_teacher("cuda")
    atoms = bulk("NaCl", "rocksalt", a=A_NACL)
    atoms.positions[0] += 0.05
    atoms.calc = teacher.calculator()
    f_cpu = atoms.get_forces()
    atoms.calc = gpu.calculator()
    assert gpu.device.startswith("cuda")
    assert atoms.get_forces() == pytest.approx(f_cpu, abs=1e-4)


def test_second_run_on_same_folder_is_refused(tmp_path, stub):
    fcntl = pytest.importorskip("fcntl")
    inputs = pl.inputs_from_atoms(_crystals(1))
    tmp_path.mkdir(exist_ok=True)
    with open(pl.lock_path(tmp_path), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running job holds it
        with pytest.raises(FolderInUseError, match="another run"):
            pl.run_pipeline(inputs, tmp_path, progress=False)
        fcntl.flock(fh, fcntl.LOCK_UN)
    assert pl.run_pipeline(inputs, tmp_path, progress=False).counts == {"ok": 1}
    assert pl.run_pipeline(inputs, tmp_path, shard=(0, 2), progress=False).counts == {"ok": 1}  # other shard: own lock


def test_teacher_labels_with_the_atoms_own_masses(teacher):
    """Isotopes reach phonopy: every mass x4 halves every frequency; the record keeps the masses it used."""
    calc = teacher.calculator()
    settings = phon.PhononSettings(mesh_length=20.0, temperatures=(300.0,))
    plain = bulk("NaCl", "rocksalt", a=A_NACL)
    heavy = plain.copy()
    heavy.set_masses(plain.get_masses() * 4)
    a = phon.label_crystal(plain, calc, settings)
    b = phon.label_crystal(heavy, calc, settings)
    assert "masses" not in a["structure"]  # standard masses: records as before
    assert b["frequencies"]["max_cm1"] == pytest.approx(a["frequencies"]["max_cm1"] / 2, rel=1e-4)
    assert b["thermal"]["zpe"] == pytest.approx(a["thermal"]["zpe"] / 2, rel=1e-3)
    np.testing.assert_allclose(record_atoms(b).get_masses(), heavy.get_masses(), rtol=1e-9)
    broken = plain.copy()
    broken.set_masses([22.99, 0.0])  # the model's rule and words (graphs/validation.py check_masses), the element named
    with pytest.raises(TeacherInputError, match=r"atom 1 \(Cl\) has mass 0 u: atomic masses must be finite and pos"):
        phon.label_crystal(broken, calc, settings)


@pytest.mark.parametrize("mass", [0.0, -35.45, float("nan")])
def test_teacher_refuses_a_mass_that_is_not_finite_and_positive_before_relaxing(mass):
    atoms = bulk("NaCl", "rocksalt", a=A_NACL)
    atoms.set_masses([atoms.get_masses()[0], mass])
    with pytest.raises(TeacherInputError, match=rf"^atom 1 \(Cl\) has mass {mass:g} u: atomic masses must be finite"):
        phon.label_crystal(atoms, None, phon.PhononSettings())  # no potential: refused before the relaxation needs one
    assert phon.own_masses(bulk("NaCl", "rocksalt", a=A_NACL)) is None  # standard masses: phonopy's own
