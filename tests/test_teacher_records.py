"""Which teacher labels may be trained on: the shipped record folders read through ``training_records``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ase_dostransformer.teacher.records import iter_records, record_files, training_records
from ase_dostransformer.teacher.structures import read_held_out_split

TEACHER = Path(__file__).resolve().parent.parent / "train" / "teacher"
FOLDERS = [TEACHER / name for name in ("dft_test", "dft_trainvalid", "generated", "strained")]


@pytest.fixture(scope="module")
def folders() -> list[Path]:
    present = [f for f in FOLDERS if f.is_dir() and record_files(f)]
    if len(present) < len(FOLDERS):
        pytest.fail(f"teacher record folders missing from the checkout: {sorted(set(FOLDERS) - set(present))}")
    return present


def test_training_records_leave_out_test_held_out_and_duplicates(folders) -> None:
    split = read_held_out_split()
    held, duplicates = set(split["ids"]), set(split["excluded_dft_test_duplicates"])
    everything = [r for f in folders for r in iter_records(f)]
    kept = list(training_records(folders))
    kept_ids = {r["id"] for r in kept}
    assert 0 < len(kept) < len(everything)
    assert len(kept_ids) == len(kept)  # a crystal labelled in two folders is given once
    assert not kept_ids & held
    assert not kept_ids & duplicates
    assert all(r["status"] == "ok" for r in kept)
    assert not any(r["source"] == "phdos:test" for r in kept)
    # what is left out is exactly the test labels, the held-out crystals and the test duplicates
    dropped = {r["id"] for r in everything} - kept_ids  # ids, so a repeat in a second folder is not "dropped"
    test_ids = {r["id"] for r in everything if r["source"] == "phdos:test"}
    assert test_ids  # the folder of test-split labels is among them
    assert dropped == test_ids | ({r["id"] for r in everything} & (held | duplicates))


def test_training_records_explicit_lists(folders) -> None:
    some = next(iter(iter_records(folders[1])))["id"]  # a DFT train/valid crystal
    ids = {r["id"] for r in training_records(folders[1:2], held_out=[some], excluded=[])}
    assert some not in ids
    assert ids
