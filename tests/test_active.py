"""Active learning of the electron DOS: acquisition, pool, labellers and a two-round loop on stored GPAW labels."""

from __future__ import annotations

import gzip
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from ase.build import bulk
from ase.io import write

from ase_dostransformer.active.acquisition import diverse_uncertain, random_batch, relative_spread, standardise
from ase_dostransformer.active.labeller import (
    FAILURES_FILE,
    GPAWLabeller,
    StoredLabeller,
    label_path,
    read_failures,
)
from ase_dostransformer.active.loop import CURVE_FILE, STATE_FILE, LoopConfig, electron_quantities, run_loop
from ase_dostransformer.active.pool import PoolItem, assemble_pool, load_pool, phonon_test_ids, safe_id, save_pool
from ase_dostransformer.cli import main as cli_main
from ase_dostransformer.errors import OptionError
from ase_dostransformer.io.atoms_json import atoms_from_dict
from ase_dostransformer.io.locks import LOCK_FILE
from ase_dostransformer.io.phdos import load_phonon_dataset
from ase_dostransformer.model import load_model_file

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "train" / "edos" / "dft_gpaw"
#: Stored GPAW labels of the miniature loop, by their part of the phonon dataset's split.
TRAIN = ["mp-1747", "mp-1022", "mp-8426", "mp-22903", "mp-2064", "mp-4405"]  # mp-4405: a metal
VALID = ["mp-11327", "mp-568560", "mp-10653"]
TEST = ["mp-570891", "mp-1011695", "mp-1266"]  # mp-1011695: a metal
POOL = ["mp-23299", "mp-441", "mp-23303", "mp-22867"]
FAILED = "mp-1105"  # GPAW failed on it (train/edos/dft_gpaw/failures.jsonl): the stored labeller fails it too
TINY = dict(members=2, hidden=16, epochs=2, eval=1, es=0, batch_size=4, threads=1)


# ----------------------------------------------------------------------------------- acquisition


def test_relative_spread_is_the_member_std_over_the_peak() -> None:
    members = np.stack([np.full((2, 5), 1.0), np.full((2, 5), 0.5)])  # two members, two crystals
    expected = (0.5 / np.sqrt(2)) / 0.75  # std (ddof 1) over the mean's peak
    np.testing.assert_allclose(relative_spread(members), [expected, expected])
    assert np.all(relative_spread(np.stack([np.ones((3, 4))] * 3)) == 0)
    with pytest.raises(OptionError):
        relative_spread(np.ones((1, 3, 4)))  # one member has no spread


def test_uncertainty_batch_takes_the_most_uncertain_but_no_near_duplicate() -> None:
    labelled = np.array([[10.0, 0.0], [10.0, 1.0], [11.0, 0.0], [11.0, 1.0]])  # neighbour distance 1
    pool = np.array(
        [
            [0.0, 5.0],  # 0: the most uncertain
            [0.0, 5.001],  # 1: a near-duplicate of 0, nearly as uncertain
            [5.0, 5.0],  # 2
            [-5.0, -5.0],  # 3
            [5.0, -5.0],  # 4
            [10.0, 0.0],  # 5: uncertain, but on top of a labelled crystal
        ]
    )
    u = np.array([0.9, 0.89, 0.5, 0.4, 0.3, 0.8])
    assert 1 in np.argsort(-u)[:3]  # uncertainty alone would take the duplicate
    sel = diverse_uncertain(u, pool, 3, labelled)
    assert sel.indices.tolist() == [0, 2, 3]
    np.testing.assert_allclose(sel.uncertainty, [0.9, 0.5, 0.4])
    np.testing.assert_allclose(sel.score, [0.9, 0.5, 0.4])  # all far from what was chosen before them
    np.testing.assert_allclose(sel.distance[0], np.hypot(10, 4))  # to the nearest labelled crystal
    # among only the 3 most uncertain (candidate factor 1) the duplicate and the labelled twin must come in
    assert sorted(diverse_uncertain(u, pool, 3, labelled, candidate_factor=1).indices.tolist()) == [0, 1, 5]
    # without labelled crystals the first pick is the most uncertain, and the duplicate is still avoided
    assert diverse_uncertain(u, pool, 2).indices.tolist() == [0, 5]


def test_standardise_uses_the_reference_statistics() -> None:
    ref = np.array([[0.0, 10.0], [2.0, 30.0]])
    np.testing.assert_allclose(standardise(np.array([[1.0, 20.0], [3.0, 40.0]]), ref), [[0, 0], [2, 2]], atol=1e-4)


def test_random_batch_is_seed_deterministic() -> None:
    a = random_batch(100, 10, seed=3, round_index=1).indices
    assert a.tolist() == random_batch(100, 10, seed=3, round_index=1).indices.tolist()
    assert len(set(a.tolist())) == 10
    assert a.min() >= 0
    assert a.max() < 100
    assert a.tolist() != random_batch(100, 10, seed=4, round_index=1).indices.tolist()
    assert a.tolist() != random_batch(100, 10, seed=3, round_index=2).indices.tolist()
    assert sorted(random_batch(5, 10, seed=0).indices.tolist()) == [0, 1, 2, 3, 4]  # capped by the pool


# ------------------------------------------------------------------------------------------ pool


def test_pool_excludes_test_crystals_labelled_ids_and_duplicates(tmp_path: Path) -> None:
    ds = load_phonon_dataset()
    test_ids = phonon_test_ids()
    assert len(test_ids) == 189
    train_id, test_id = ds.ids[ds.split["train"][0]], ds.ids[ds.split["test"][0]]
    files = tmp_path / "files"
    files.mkdir()
    write(files / f"{test_id}.extxyz", ds.atoms[ds.split["test"][0]])  # a test crystal by another way in
    write(files / f"{ds.ids[ds.split['valid'][0]]}.extxyz", bulk("Si"))  # an id phdos already gave
    write(files / "Cu.v-0.02.extxyz", bulk("Cu"))  # a new one, with a dot in its name
    pool = assemble_pool(["phdos", str(files)], labelled=[train_id])
    ids = pool.ids
    assert not set(ids) & test_ids
    assert train_id not in ids
    assert len(ids) == len(set(ids)) == 1191 + 141 - 1 + 1
    assert ids[-1] == "Cu_v-0_02" == safe_id("Cu.v-0.02")
    reasons = {s["id"]: s["reason"] for s in pool.skipped}
    assert "test crystal" in reasons[test_id]
    assert "duplicate" in reasons[ds.ids[ds.split["valid"][0]]]
    small = assemble_pool([str(files)], max_atoms=1)
    assert small.ids == ["Cu_v-0_02"]
    save_pool(small, tmp_path / "pool.json.gz")
    back = load_pool(tmp_path / "pool.json.gz")
    assert back.ids == small.ids
    assert np.allclose(back.items[0].atoms.cell, bulk("Cu").cell)


def test_teacher_pool_holds_only_elemental_and_prototype_crystals() -> None:
    from ase_dostransformer.teacher.structures import read_held_out_split

    pool = assemble_pool(["teacher"], test_ids=[])
    sources = {item.source for item in pool.items}
    assert sources == {"teacher:element", "teacher:prototype"}
    assert len(pool) > 1000
    assert not set(pool.ids) & set(read_held_out_split()["ids"])


# -------------------------------------------------------------------------------------- labellers


def _items(ids: list[str]) -> list[PoolItem]:
    return [PoolItem(i, bulk("Si"), "test") for i in ids]


def test_stored_labeller_records_failures_and_resumes(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    for mid in POOL[:2]:
        shutil.copy(LABELS / f"{mid}.json.gz", store)
    failure = next(line for line in (LABELS / FAILURES_FILE).read_text().splitlines() if FAILED in line)
    (store / FAILURES_FILE).write_text(failure + "\n")
    out = tmp_path / "labels"
    report = StoredLabeller(store).label(_items([*POOL[:2], FAILED, "mp-0"]), out)
    assert report.done == POOL[:2]
    assert report.existing == []
    assert set(report.failed) == {FAILED, "mp-0"}
    assert report.failed[FAILED].startswith("stored failure: OverflowError")
    assert "no stored label for mp-0" in report.failed["mp-0"]
    assert read_failures(out) == report.failed
    assert label_path(out, POOL[0]).read_bytes() == (LABELS / f"{POOL[0]}.json.gz").read_bytes()
    shutil.rmtree(store)  # the second call needs nothing from the store: it resumes from out
    store.mkdir()
    again = StoredLabeller(store).label(_items([*POOL[:2], FAILED, "mp-0"]), out)
    assert again.done == []
    assert again.failed == {}
    assert again.existing == POOL[:2]
    assert again.failed_before == report.failed
    assert len((out / FAILURES_FILE).read_text().splitlines()) == 2  # nothing recorded twice
    retried = StoredLabeller(store).label(_items(["mp-0"]), out, retry_failed=True)
    assert list(retried.failed) == ["mp-0"]
    assert len((out / FAILURES_FILE).read_text().splitlines()) == 3


def test_gpaw_labeller_without_gpaw_says_so_and_resumes_without_it(tmp_path: Path) -> None:
    out = tmp_path / "labels"
    out.mkdir()
    shutil.copy(LABELS / f"{POOL[0]}.json.gz", out)
    done = GPAWLabeller(python="/nonexistent/python").label(_items([POOL[0]]), out)
    assert done.existing == [POOL[0]]
    assert not done.failed
    try:
        import gpaw  # noqa: F401
    except ImportError:
        with pytest.raises(OptionError, match="GPAW is not importable"):
            GPAWLabeller(python=sys.executable).label(_items([POOL[0], POOL[1]]), out)
        with pytest.raises(OptionError, match="cannot run /nonexistent/python"):
            GPAWLabeller(python="/nonexistent/python").label(_items([POOL[1]]), out)
        assert read_failures(out) == {}  # a missing GPAW is not a failure of the crystals
    else:  # pragma: no cover - only where GPAW is installed here
        pytest.skip("GPAW is importable here: the missing-GPAW error cannot be shown")


STAND_IN_RUNNER = """
import argparse, json, shutil, sys
from pathlib import Path
p = argparse.ArgumentParser()
p.add_argument("files", nargs="*")
p.add_argument("--out")
for name in ("--kdensity", "--h", "--conv-density", "--dos-kdensity"):
    p.add_argument(name)
p.add_argument("--skip-failed", action="store_true")
args = p.parse_args()
store = Path(__file__).parent / "store"
for f in args.files:
    mid = Path(f).name.split(".")[0]
    if mid == "crash":
        sys.exit(3)
    if (store / f"{mid}.json.gz").is_file():
        shutil.copy(store / f"{mid}.json.gz", Path(args.out) / f"{mid}.json.gz")
    else:
        with open(Path(args.out) / "failures.jsonl", "a") as log:
            log.write(json.dumps({"id": mid, "reason": "LinAlgError: not positive definite"}) + "\\n")
"""


def test_gpaw_labeller_runs_the_runner_and_collects_labels_and_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subprocess contract of the GPAW runner, with a stand-in script (GPAW itself is not installed here)."""
    fake = tmp_path / "site" / "gpaw"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")  # lets the interpreter check pass; the stand-in never calls GPAW
    monkeypatch.setenv("PYTHONPATH", str(fake.parent))
    (tmp_path / "runner.py").write_text(STAND_IN_RUNNER)
    (tmp_path / "store").mkdir()
    for mid in POOL[:2]:
        shutil.copy(LABELS / f"{mid}.json.gz", tmp_path / "store")
    labeller = GPAWLabeller(python=sys.executable, runner=tmp_path / "runner.py", workers=2)
    out = tmp_path / "labels"
    report = labeller.label(_items([*POOL[:2], FAILED]), out)
    assert sorted(report.done) == sorted(POOL[:2])
    assert report.failed == {FAILED: "LinAlgError: not positive definite"}
    assert sorted(p.name for p in (out / "structures").iterdir()) == sorted(f"{i}.extxyz" for i in [*POOL[:2], FAILED])
    crashed = labeller.label(_items(["crash"]), out)
    assert "wrote no label and no failure" in crashed.failed["crash"]
    assert "crash" in read_failures(out)
    again = labeller.label(_items([*POOL[:2], FAILED, "crash"]), out)
    assert again.existing == POOL[:2]
    assert set(again.failed_before) == {FAILED, "crash"}


# -------------------------------------------------------------------------------------------- loop


def test_electron_quantities_counts_metals_and_insulators() -> None:
    from ase_dostransformer.spectra import ELECTRON_GRID

    e = ELECTRON_GRID.values
    metal = np.exp(-(e**2))  # states at 0 eV
    insulator = np.where(np.abs(e) < 1.0, 0.0, 1.0)  # a 2 eV empty window around 0
    pred = np.stack([metal, insulator, insulator])
    q = electron_quantities(pred, pred, np.array([0.0, 2.0, 0.0]))  # the third is a metal called an insulator
    assert q["gap_source"] == "dos"  # no gap head: the gap is read off the DOS
    assert q["n_gap"] == 3
    assert q["n_metals"] == 2
    assert q["metal_insulator_accuracy"] == pytest.approx(2 / 3)
    assert q["metal_insulator_balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert q["majority_baseline_accuracy"] == pytest.approx(2 / 3)
    assert q["metals_given_unflagged_gap"] == pytest.approx(1 / 2)  # the DOS read gives the third a gap, unflagged
    est = 2.0 - ELECTRON_GRID.step  # the empty window's bins
    assert q["gap_mae_eV"] == pytest.approx(abs(est - 2.0), abs=0.06)  # on the gapped crystal only


@pytest.fixture
def miniature(tmp_path: Path) -> dict[str, Path]:
    """Initial labels, a store of GPAW results for the pool, and the pool as structure files."""
    initial, store, pool = tmp_path / "initial", tmp_path / "store", tmp_path / "pool"
    for folder in (initial, store, pool):
        folder.mkdir()
    for mid in TRAIN + VALID + TEST:
        shutil.copy(LABELS / f"{mid}.json.gz", initial)
    for mid in POOL:
        shutil.copy(LABELS / f"{mid}.json.gz", store)
        structure = json.loads(gzip.decompress((LABELS / f"{mid}.json.gz").read_bytes()))["structure"]
        write(pool / f"{mid}.extxyz", atoms_from_dict(structure))
    ds = load_phonon_dataset()
    write(pool / f"{FAILED}.extxyz", ds.atoms[ds.ids.index(FAILED)])
    failure = next(line for line in (LABELS / FAILURES_FILE).read_text().splitlines() if FAILED in line)
    (store / FAILURES_FILE).write_text(failure + "\n")
    return {"initial": initial, "store": store, "pool": pool, "out": tmp_path / "loop"}


def test_two_round_loop_end_to_end_and_resume(miniature: dict[str, Path]) -> None:
    config = LoopConfig(
        out=str(miniature["out"]),
        initial=[str(miniature["initial"])],
        pool=[str(miniature["pool"])],
        budget=2,
        batch=2,
        gap_head=True,
        embedder="foundation",
        **TINY,
    )
    logs: list[str] = []
    result = run_loop(config, StoredLabeller(miniature["store"]), logs.append)
    assert result.rounds_run == 2
    assert result.spent == 2
    out = miniature["out"]
    curve = json.loads((out / CURVE_FILE).read_text())["rows"]
    state = json.loads((out / STATE_FILE).read_text())
    assert [row["round"] for row in curve] == [0, 1]
    assert state["split"] == {"train": sorted(TRAIN), "valid": sorted(VALID), "test": sorted(TEST)}
    picked = state["rounds"][1]
    assert len(picked["selected"]) == 2
    assert set(picked["selected"]) <= {*POOL, FAILED}
    assert all(p["uncertainty"] > 0 and p["score"] > 0 for p in picked["selection"])
    assert set(picked["labelled"]) | set(picked["failed"]) == set(picked["selected"])
    n0, n1 = curve[0]["n_labels"], curve[1]["n_labels"]
    assert n0 == len(TRAIN)
    assert n1 == n0 + len(picked["labelled"]) > n0
    member, _ = load_model_file(out / "round-001" / "member-0" / "model.pt")
    assert member.gap_head is not None  # --gap-head reaches the members, and their head heads the curve
    assert member.cfg.embedder == "foundation"  # so does the encoder
    assert member.graph_recipe.foundation
    assert state["recipe"]["foundation"] is True  # the pool's graphs carry the potential's features too
    for row in curve:
        assert row["gap_source"] == "head"
        assert row["n_test"] == len(TEST) == row["test"]["n"]
        for key in ("mse_x10", "mae", "r2"):
            assert np.isfinite(row["test"][key])
        assert np.isfinite(row["gap_mae_eV"])
        assert row["n_metals"] == 1
        assert 0 <= row["metal_insulator_accuracy"] <= 1
        assert 0 <= row["metal_insulator_balanced_accuracy"] <= 1
    assert curve[1]["n_failed"] == len(picked["failed"])
    assert "pool_uncertainty_mean" in curve[1]
    split1 = json.loads((out / "round-001" / "split.json").read_text())
    assert sorted(split1["train"]) == sorted(TRAIN + picked["labelled"])
    assert split1["test"] == sorted(TEST)

    # resuming a finished loop does no work: nothing trained, labelled or rewritten
    def stamps() -> dict[Path, int]:  # every file but the folder lock, which records its last holder
        return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != LOCK_FILE}

    before = stamps()
    again = run_loop(config, StoredLabeller(miniature["store"]), logs.append)
    assert again.rounds_run == 0
    assert again.curve == curve
    assert stamps() == before
    with pytest.raises(OptionError, match="seed"):
        run_loop(LoopConfig(**{**config.to_dict(), "seed": 1}), StoredLabeller(miniature["store"]))


def test_killed_loop_continues_with_the_batch_it_chose(miniature: dict[str, Path]) -> None:
    class Killed(StoredLabeller):
        def label(self, items, out, retry_failed=False):  # noqa: D102
            super().label(items[:1], out)  # one crystal labelled, then the process dies
            raise KeyboardInterrupt

    args = dict(
        out=str(miniature["out"]),
        initial=[str(miniature["initial"])],
        pool=[str(miniature["pool"])],
        budget=2,
        batch=2,
        acquisition="random",
        **TINY,
    )
    with pytest.raises(KeyboardInterrupt):
        run_loop(LoopConfig(**args), Killed(miniature["store"]), lambda _: None)
    state = json.loads((miniature["out"] / STATE_FILE).read_text())
    chosen = state["rounds"][1]["selected"]
    assert len(chosen) == 2
    assert "labelled" not in state["rounds"][1]
    # the CLI continues it: the same batch, round 0 not retrained
    model0 = miniature["out"] / "round-000" / "member-0" / "model.pt"
    stamp = model0.stat().st_mtime_ns
    # a damaged checkpoint of an unfinished round-1 member is set aside, not resumed nor fatal
    damaged = miniature["out"] / "round-001" / "member-0" / "checkpoints" / "last.ckpt"
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"not a checkpoint")
    # a loop started before the gap options existed resumes: a missing field holds its default
    state_path = miniature["out"] / STATE_FILE
    old_state = json.loads(state_path.read_text())
    for key in ("gap_head", "gap_weight", "embedder"):
        del old_state["config"][key]
    state_path.write_text(json.dumps(old_state))
    status = cli_main(
        [
            "active",
            "--initial",
            args["initial"][0],
            "--pool",
            args["pool"][0],
            "--out",
            args["out"],
            "--budget",
            "2",
            "--batch",
            "2",
            "--acquisition",
            "random",
            "--labeller",
            f"stored:{miniature['store']}",
            "--members",
            "2",
            "--hidden",
            "16",
            "--epochs",
            "2",
            "--eval",
            "1",
            "--es",
            "0",
            "--batch-size",
            "4",
        ]
    )
    assert status == 0
    state = json.loads((miniature["out"] / STATE_FILE).read_text())
    assert state["rounds"][1]["selected"] == chosen
    assert state["rounds"][1]["done"]
    assert model0.stat().st_mtime_ns == stamp
    (stale,) = (miniature["out"] / "round-001").glob("member-0.stale-*")
    assert (stale / "checkpoints" / "last.ckpt").read_bytes() == b"not a checkpoint"
    assert (miniature["out"] / "round-001" / "member-0" / "model.pt").is_file()
    rows = json.loads((miniature["out"] / CURVE_FILE).read_text())["rows"]
    assert [r["round"] for r in rows] == [0, 1]
    pool_ids = sorted([*POOL, FAILED], key=lambda i: f"{i}.extxyz")  # the pool folder's files, in order
    assert chosen == [pool_ids[i] for i in random_batch(len(pool_ids), 2, seed=0, round_index=1).indices]


def test_loop_config_refuses_what_cannot_run(tmp_path: Path) -> None:
    with pytest.raises(OptionError, match="members >= 2"):
        LoopConfig(out=str(tmp_path), initial=[str(tmp_path)], members=1)
    with pytest.raises(OptionError, match="acquisition"):
        LoopConfig(out=str(tmp_path), initial=[str(tmp_path)], acquisition="greedy")
    with pytest.raises(OptionError, match="batch"):
        LoopConfig(out=str(tmp_path), initial=[str(tmp_path)], batch=0)
    assert LoopConfig(out=str(tmp_path), initial=[str(tmp_path)], members=1, acquisition="random").members == 1
    with pytest.raises(OptionError, match="embedder must be one of"):
        LoopConfig(out=str(tmp_path), initial=[str(tmp_path)], embedder="transformer")


# ------------------------------------------------------------------------- the active-vs-random experiment


def _experiment():
    import importlib.util

    spec = importlib.util.spec_from_file_location("active_experiment", ROOT / "train" / "edos" / "active_experiment.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_experiment_passes_the_model_recipe_to_its_loops(tmp_path: Path) -> None:
    exp = _experiment()
    plain = exp.loop_config(exp.parse_args(["--out", str(tmp_path)]), tmp_path, "random", 1, 150)
    assert (plain["gap_head"], plain["embedder"], plain["seed"], plain["budget"]) == (False, "graph_network", 1, 150)
    args = exp.parse_args(["--out", str(tmp_path), "--gap-head", "--embedder", "foundation"])
    config = exp.loop_config(args, tmp_path, "uncertainty", 0, 300)
    assert (config["gap_head"], config["embedder"], config["acquisition"]) == (True, "foundation", "uncertainty")
    with pytest.raises(OptionError, match="embedder"):
        exp.loop_config(exp.parse_args(["--out", str(tmp_path), "--embedder", "gnn"]), tmp_path, "random", 0, 1)


def test_experiment_split_is_fixed_and_keeps_test_crystals_out_of_the_pool(tmp_path: Path) -> None:
    from ase_dostransformer.training.tasks import evaluation_data

    exp = _experiment()
    initial, labels = tmp_path / "initial", tmp_path / "pool-labels"
    initial.mkdir()
    labels.mkdir()
    for mid in TRAIN + VALID + TEST:
        shutil.copy(LABELS / f"{mid}.json.gz", initial)
    for mid in [*POOL, TEST[1]]:  # TEST[1] (a metal) is already an initial label: never in the pool
        shutil.copy(LABELS / f"{mid}.json.gz", labels)
    (labels / "broken.json.gz").write_bytes(b"not gzip")  # a finished file dataset build cannot read
    out = tmp_path / "exp"
    split = exp.make_split(out, [initial], labels, test_from_pool=2, split_seed=0, log=lambda _: None)

    # the initial labels are split as `dostransformer train --dataset random --seed 0` splits them
    ids = json.loads((out / "data" / "initial" / "materials.json").read_text())
    ids = [row["id"] for row in ids]
    _, _, random = evaluation_data("edos", str(out / "data" / "initial"), "random", 0)
    for part, key in (("train", "train"), ("valid", "valid"), ("test", "test_initial")):
        assert sorted(split[key]) == sorted(ids[i] for i in random[part])
    assert set(split["test_pool"]) < set(POOL)
    assert len(split["test_pool"]) == 2
    assert split["test"] == sorted(split["test_initial"] + split["test_pool"])
    assert split["pool"] == sorted(set(POOL) - set(split["test_pool"]))
    assert "already an initial label" in split["p_skipped"][TEST[1]]
    assert "broken" in split["p_skipped"]
    parts = [set(split[k]) for k in ("train", "valid", "test", "pool")]
    assert sum(map(len, parts)) == len(set().union(*parts)) == len(TRAIN + VALID + TEST) + len(POOL)
    gaps = {
        mid: json.loads(gzip.decompress((LABELS / f"{mid}.json.gz").read_bytes()))["band_gap"]["gap"]
        for mid in split["test"]
    }
    assert split["counts"]["metals_test"] == sum(g < 0.05 for g in gaps.values())

    # deterministic, and fixed: a rerun reads the file even when more labels have finished since
    assert exp.make_split(tmp_path / "again", [initial], labels, 2, 0, log=lambda _: None)["test"] == split["test"]
    stamp = (out / exp.SPLIT_FILE).stat().st_mtime_ns
    shutil.copy(LABELS / "mp-1000.json.gz", labels)  # a label that finishes after the split was made
    assert exp.make_split(out, [initial], labels, 2, 0, log=lambda _: None) == split
    assert (out / exp.SPLIT_FILE).stat().st_mtime_ns == stamp
    with pytest.raises(OptionError, match="test_from_pool=2, not 3"):
        exp.make_split(out, [initial], labels, 3, 0)

    # the loops' inputs: the test labels to add to the initial ones, the pool as structure files
    test_labels, structures = exp.prepare_inputs(out, split)
    assert sorted(p.name for p in test_labels.iterdir()) == [f"{i}.json.gz" for i in split["test_pool"]]
    assert (test_labels / f"{split['test_pool'][0]}.json.gz").read_bytes() == (
        LABELS / f"{split['test_pool'][0]}.json.gz"
    ).read_bytes()
    labelled = split["train"] + split["valid"] + split["test"]
    # what each loop will choose from (P never holds phonon test crystals: their check is left out, for speed)
    assert assemble_pool([str(structures)], labelled, test_ids=[]).ids == split["pool"]
