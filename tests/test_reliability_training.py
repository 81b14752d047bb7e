"""Reliability of training and its data (issue 11, items 4, 5, 7, 12, 14).

Strict resume, checked splits, rejected bad targets, a loss that turns NaN, last.ckpt every epoch,
options refused before any work.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from ase_dostransformer.cli import main
from ase_dostransformer.io.phdos import load_phonon_dataset
from ase_dostransformer.training import run as run_module
from ase_dostransformer.training.lightning_module import NonFiniteLossError
from ase_dostransformer.training.options import TrainOptions, TrainOptionsError
from ase_dostransformer.training.resume import CheckpointError
from ase_dostransformer.training.run import train
from ase_dostransformer.training.splits import split_from_file

#: a tiny model, one thread, validation every epoch, no early stopping
TINY = dict(hidden=32, heads=4, layers=1, transformer=1, batch_size=4, eval=1, es=0, threads=1)


def rewrite_row(folder: Path, row: int, **columns: str) -> None:
    """Replace columns of one data row (counted from 0) of ``folder/data.csv``."""
    path = folder / "data.csv"
    rows = list(csv.reader(io.StringIO(path.read_text(), newline="")))
    header = rows[0]
    for name, value in columns.items():
        rows[row + 1][header.index(name)] = value
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue())


def dos_text(values: list[float]) -> str:
    return str([float(v) for v in values])


# ------------------------------------------------------------------ 14: options refused before any work


@pytest.mark.parametrize(
    ("option", "value", "flag"),
    [
        ("threads", -3, "--threads"),
        ("threads", 0, "--threads"),
        ("eval", 0, "--eval"),
        ("epochs", 0, "--epochs"),
        ("epochs", -1, "--epochs"),
        ("limit", 0, "--limit"),
        ("batch_size", 0, "--batch_size"),
        ("es", -1, "--es"),
        ("lr", math.nan, "--lr"),
        ("lr", 0.0, "--lr"),
        ("weight_decay", math.inf, "--weight_decay"),
        ("dropout", 1.0, "--dropout"),
        ("seed", -1, "--seed"),
        ("devices", "many", "--devices"),
        ("scheduler", "linear", "--scheduler"),
        ("epochs", 2.5, "--epochs"),
    ],
)
def test_train_options_out_of_range_are_refused_on_construction(option: str, value: object, flag: str) -> None:
    with pytest.raises(TrainOptionsError, match=flag):
        TrainOptions(**{option: value})


def test_train_revalidates_options_changed_after_construction(tiny_dataset: Path, tmp_path: Path) -> None:
    opts = TrainOptions(out=str(tmp_path / "run"), data=str(tiny_dataset), **TINY)
    opts.epochs = -1  # would train forever
    with pytest.raises(TrainOptionsError, match="--epochs must be at least 1, got -1"):
        train(opts)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "-3"], "--threads must be at least 1, got -3"),
        (["--eval", "0"], "--eval must be at least 1, got 0"),
        (["--epochs", "0"], "--epochs must be at least 1, got 0"),
        (["--epochs", "-1"], "--epochs must be at least 1, got -1"),
        (["--devices", "2x"], "--devices must be a positive number or 'auto'"),
    ],
)
def test_cli_train_refuses_bad_options_before_reading_data(tmp_path: Path, capsys, args, message) -> None:
    out = tmp_path / "out"
    # --data names no dataset: the option error must come first, before anything is read or written
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--threads", "-3"], "--threads must be at least 1, got -3"),
        (["--batch-size", "0"], "--batch-size must be at least 1, got 0"),
    ],
)
def test_cli_evaluate_refuses_bad_options_before_loading(tmp_path: Path, capsys, args, message) -> None:
    assert main(["evaluate", str(tmp_path / "no-model.pt"), *args]) == 2
    assert message in capsys.readouterr().err


# ------------------------------------------------------------------ 7, 14: data.csv rows checked when read


FREQS = str(np.linspace(0, 1000, 51).tolist())


@pytest.mark.parametrize(
    ("columns", "reason"),
    [
        ({"structure": "{'numbers': [11, 17], 'positions': [[0.0, 0.0, 0.0], [2.8"}, "structure is not a readable"),
        ({"structure": "[1, 2, 3]"}, "structure is a list"),
        ({"phdos": dos_text([0.5] * 50)}, r"phdos has shape \(50,\), expected 51 values"),
        ({"phdos": dos_text([0.5] * 52)}, r"phdos has shape \(52,\), expected 51 values"),
        ({"phdos": dos_text([0.5] * 7 + [math.inf] + [0.5] * 43)}, "phdos value 7 is inf"),
        ({"phdos": dos_text([0.5] * 7 + [-math.inf] + [0.5] * 43)}, "phdos value 7 is -inf"),
        ({"phdos": str([0.5] * 7 + ["1e999"] + [0.5] * 43).replace("'", "")}, "phdos value 7 is inf"),
        ({"phdos": dos_text([0.5] * 9 + [math.nan] + [0.5] * 41)}, "phdos value 9 is nan"),
        ({"phdos": dos_text([0.5] * 3 + [-0.2] + [0.5] * 47)}, "phdos value 3 is negative"),
        ({"phdos": dos_text([0.5] * 3 + [1e39] + [0.5] * 47)}, "phdos value 3 is 1e[+]39"),
        ({"phdos": "[0.5, 0.5, 'x']"}, r"""phdos is not a list of numbers \("'x'"\)"""),
        ({"phdos": "[0.5, 0.5, nan, " + ", ".join(["0.5"] * 48) + "]"}, "phdos value 2 is nan"),
        ({"phfreq": FREQS[: len(FREQS) // 2]}, r"phfreq is not a list \[...\] of numbers \(truncated"),
        ({"phfreq": str(np.linspace(0, 1000, 41).tolist())}, r"phfreq has shape \(41,\)"),
    ],
)
def test_bad_rows_of_data_csv_are_refused_naming_the_row(tiny_dataset: Path, columns: dict, reason: str) -> None:
    rewrite_row(tiny_dataset, 3, **columns)
    with pytest.raises(ValueError, match=rf"row 3 \(mp-3\): {reason}"):
        load_phonon_dataset(tiny_dataset)


def test_cli_train_reports_a_bad_row_without_traceback(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    rewrite_row(tiny_dataset, 5, phdos=dos_text([0.1] * 40))
    assert main(["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "o"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "row 5 (mp-5): phdos has shape (40,)" in err
    assert "Traceback" not in err


def test_bad_electron_dos_targets_are_refused_naming_the_row(tmp_path: Path) -> None:
    from ase.build import bulk

    from ase_dostransformer.graphs.electron import ElectronGraphRecipe
    from ase_dostransformer.io.atoms_json import atoms_to_dict
    from ase_dostransformer.io.electron_dataset import (
        DATASET_FORMAT,
        DATASET_VERSION,
        data_checksum,
        load_edos_dataset,
    )

    def write(folder: Path, dos: np.ndarray) -> Path:
        """A dataset folder whose checksum matches its (bad) content: built by a faulty or hostile tool."""
        folder.mkdir()
        rows = [
            {"id": f"m{i}", "system": "cubic", "num_species": 1, "structure": atoms_to_dict(bulk("Cu"))}
            for i in range(3)
        ]
        (folder / "materials.json").write_text(json.dumps(rows))
        np.save(folder / "dos.npy", dos.astype(np.float32))
        manifest = {
            "format": DATASET_FORMAT,
            "version": DATASET_VERSION,
            "recipe": ElectronGraphRecipe().to_dict(),
            "data_sha256": data_checksum(folder),
        }
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return folder

    good = np.full((3, 201), 0.5)
    assert len(load_edos_dataset(write(tmp_path / "good", good))) == 3
    for name, value, what in (
        ("nan", math.nan, "not finite"),
        ("inf", math.inf, "not finite"),
        ("neg", -0.1, "negative"),
    ):
        dos = good.copy()
        dos[2, 17] = value
        with pytest.raises(ValueError, match=rf"row 2 \(m2\) has a target that is {what} .* at point 17"):
            load_edos_dataset(write(tmp_path / name, dos))


# ------------------------------------------------------------------ 5: split files and index files checked


@pytest.fixture
def ids(tiny_dataset: Path) -> list[str]:
    return load_phonon_dataset(tiny_dataset).ids


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"train": ["mp-1", "mp-2", "mp-3"], "valid": ["mp-3", "mp-4"]}, r"1 ids are in both train and valid: 'mp-3'"),
        (
            {"train": ["mp-1", "mp-2"], "valid": ["mp-4"], "test": ["mp-2", "mp-4"]},
            r"2 ids are in both train / valid and test: 'mp-2', 'mp-4'",
        ),
        ({"train": ["mp-1", "mp-2", "mp-1"], "valid": ["mp-4"]}, r"train lists 1 ids more than once: 'mp-1'"),
        ({"train": ["mp-1", -1], "valid": ["mp-4"]}, r"train holds -1, which are not material ids"),
        ({"train": [0, 1, 2], "valid": [3]}, r"train holds 0, 1, 2, which are not material ids"),
        ({"train": ["mp-1"], "valid": ["mp-99", "mp-100"]}, r"valid has 2 ids not in the dataset: 'mp-99', 'mp-100'"),
        ({"train": [], "valid": ["mp-1"]}, "the train part is empty"),
    ],
)
def test_split_file_faults_are_errors_naming_the_ids(tmp_path: Path, ids: list[str], spec: dict, message: str) -> None:
    path = tmp_path / "split.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=message):
        split_from_file(path, ids)


def test_split_file_id_that_names_two_rows_is_an_error(tmp_path: Path, ids: list[str]) -> None:
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["mp-1", "mp-2"], "valid": ["mp-4"]}))
    with pytest.raises(ValueError, match="train has ids that several rows of the dataset carry: 'mp-2'"):
        split_from_file(path, [*ids, "mp-2"])


def test_cli_train_reports_an_overlapping_split_file(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ["mp-1", "mp-2"], "valid": ["mp-3"], "test": ["mp-2"]}))
    out = tmp_path / "o"
    assert main(["train", "--data", str(tiny_dataset), "--out", str(out), "--dataset", str(path)]) == 2
    assert "1 ids are in both train and test: 'mp-2'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"idx_train.txt": "0\n1\n-1\n"}, r"idx_train.txt: negative row indices -1"),
        ({"idx_valid.txt": "12\n13\n25\n30\n"}, r"idx_valid.txt: row indices 25, 30 are past the end of data.csv"),
        ({"idx_train.txt": "0\n1\n2\n1\n"}, r"idx_train.txt: row indices 1 are listed more than once"),
        ({"idx_test.txt": "16\n3\n17\n"}, r"idx_test.txt: row indices 3 are also in train"),
        ({"idx_test.txt": "16\n12\n"}, r"idx_test.txt: row indices 12 are also in valid"),
        ({"idx_test.txt": "16\nseventeen\n"}, r"idx_test.txt: not a list of row indices"),
    ],
)
def test_official_index_file_faults_are_errors_naming_the_indices(
    tiny_dataset: Path, files: dict, message: str
) -> None:
    for name, text in files.items():
        (tiny_dataset / name).write_text(text)
    with pytest.raises(ValueError, match=message):
        load_phonon_dataset(tiny_dataset)


def test_official_index_one_past_the_end_is_the_documented_missing_row(tiny_dataset: Path) -> None:
    """The published idx_train.txt lists row 1521 of a data.csv with 1521 rows (0..1520): it is dropped."""
    ds = load_phonon_dataset(tiny_dataset)  # its idx_test.txt lists 16..20 of 20 rows
    assert ds.split["test"].tolist() == [16, 17, 18, 19]


# ------------------------------------------------------------------ 7: a non-finite loss stops training at once


def test_loss_turning_nan_stops_training_at_once_naming_epoch_and_step(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    from ase_dostransformer.training import lightning_module

    real = lightning_module.dostransformer_loss
    calls = []

    def poisoned(out, y, beta):  # the 7th step diverges: epoch 2, step 6 (from 0; 3 batches an epoch)
        calls.append(1)
        loss = real(out, y, beta)
        return loss * math.nan if len(calls) == 7 else loss

    monkeypatch.setattr(lightning_module, "dostransformer_loss", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at epoch 2, step 6 \(batch 0\)"):
        train(TrainOptions(out=str(tmp_path / "run"), data=str(tiny_dataset), epochs=50, **TINY))
    assert len(calls) == 7  # stopped at once, not after 50 epochs of NaN
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_diverging_learning_rate_stops_training_with_a_clear_error(tiny_dataset: Path, tmp_path: Path) -> None:
    opts = TrainOptions(out=str(tmp_path / "run"), data=str(tiny_dataset), epochs=200, lr=1e30, warmup_epochs=0, **TINY)
    with pytest.raises(NonFiniteLossError, match=r"training loss is (nan|inf) at epoch \d+, step \d+"):
        train(opts)


# ------------------------------------------------------------------ 12: last.ckpt after every epoch


def test_last_checkpoint_is_written_every_epoch_without_validation(
    tiny_dataset: Path, tmp_path: Path, monkeypatch
) -> None:
    """With validation every 10 epochs (a plateau looks the same: no new best), last.ckpt still follows each epoch."""
    seen: list[tuple[int, int]] = []
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"

    class Spy(run_module.EpochLog):
        def on_train_epoch_start(self, trainer, pl_module) -> None:
            if trainer.current_epoch:  # a run killed now would resume from this checkpoint
                seen.append((trainer.current_epoch, torch.load(last, map_location="cpu", weights_only=True)["epoch"]))

    monkeypatch.setattr(run_module, "EpochLog", Spy)
    summary = train(TrainOptions(out=str(tmp_path / "run"), data=str(tiny_dataset), epochs=4, **(TINY | {"eval": 10})))
    assert seen == [(1, 0), (2, 1), (3, 2)]
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 3
    assert summary["best_checkpoint"] == "last.ckpt"  # no validation ran: the last epoch is the model
    assert not list(last.parent.glob(".*.tmp"))


# ------------------------------------------------------------------ 4: resume refuses a changed run


@pytest.fixture
def trained_run(tiny_dataset: Path, tmp_path: Path) -> dict:
    """Options of a 1-epoch run already in ``out`` (with its last.ckpt)."""
    opts = dict(out=str(tmp_path / "run"), data=str(tiny_dataset), epochs=1, **TINY)
    train(TrainOptions(**opts))
    return opts


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"seed": 1}, ["seed: 0 -> 1"]),
        ({"lr": 2e-4}, ["lr: 0.0001 -> 0.0002"]),
        ({"weight_decay": 0.0}, ["weight_decay: 0.01 -> 0.0"]),
        ({"batch_size": 8}, ["batch_size: 4 -> 8"]),
        ({"beta": 0.5}, ["beta: 1.0 -> 0.5"]),
        ({"scheduler": "none"}, ["scheduler: 'cosine' -> 'none'"]),
        ({"warmup_epochs": 1}, ["warmup_epochs: 5 -> 1"]),
        ({"es": 10}, ["es: 0 -> 10"]),
        ({"limit": 5}, ["limit: None -> 5", "split_sha256"]),
        ({"dataset": "random"}, ["dataset: 'official' -> 'random'", "split_sha256"]),
        ({"lr": 1e-3, "seed": 3, "batch_size": 2}, ["batch_size: 4 -> 2", "lr: 0.0001 -> 0.001", "seed: 0 -> 3"]),
    ],
)
def test_resume_refuses_other_split_seed_or_optimiser_naming_each_difference(
    trained_run: dict, change: dict, named: list[str]
) -> None:
    last = Path(trained_run["out"]) / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(CheckpointError, match="differs from the one it would continue") as info:
        train(TrainOptions(**(trained_run | change | {"epochs": 3, "resume": True})))
    for text in named:
        assert text in str(info.value)
    assert last.read_bytes() == before  # nothing trained, nothing recorded
    assert " epochs: " not in str(info.value)  # training longer is allowed


def test_resume_refuses_other_data_and_other_split_file_content(trained_run: dict, tmp_path: Path) -> None:
    data = Path(trained_run["data"])
    rewrite_row(data, 2, phdos=dos_text(np.linspace(1, 0, 51)))
    with pytest.raises(CheckpointError, match=r"data_sha256: '[0-9a-f]{12}\.\.\.' -> '[0-9a-f]{12}\.\.\.'"):
        train(TrainOptions(**(trained_run | {"epochs": 2, "resume": True})))

    ids = [f"mp-{i}" for i in range(20)]
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ids[:10], "valid": ids[10:14]}))
    opts = trained_run | {"out": str(tmp_path / "split-run"), "dataset": str(split)}
    train(TrainOptions(**opts))
    moved = tmp_path / "same-split-elsewhere.json"  # the same content at another path resumes
    moved.write_text(split.read_text())
    assert train(TrainOptions(**(opts | {"dataset": str(moved), "epochs": 2, "resume": True})))["epochs_run"] == 2
    split.write_text(json.dumps({"train": ids[:9], "valid": ids[9:14]}))
    with pytest.raises(CheckpointError, match="split_file_sha256.*split_sha256"):
        train(TrainOptions(**(opts | {"epochs": 3, "resume": True})))


def test_resume_refuses_a_checkpoint_that_does_not_record_its_run(trained_run: dict) -> None:
    last = Path(trained_run["out"]) / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    del ckpt["run_identity"]
    torch.save(ckpt, last)
    with pytest.raises(CheckpointError, match="does not record the data, split, seed"):
        train(TrainOptions(**(trained_run | {"epochs": 2, "resume": True})))


def test_resume_with_the_same_run_records_only_options_used(trained_run: dict) -> None:
    summary = train(TrainOptions(**(trained_run | {"epochs": 2, "resume": True})))
    assert summary["epochs_run"] == 2
    assert summary["resumed_after_epoch"] == 0
    metrics = json.loads((Path(trained_run["out"]) / "metrics.json").read_text())
    for key in ("seed", "lr", "weight_decay", "batch_size", "dataset", "limit"):
        assert metrics["options"][key] == trained_run.get(key, getattr(TrainOptions(), key))
