"""Training on Lightning end to end: a tiny run, resume, evaluate, the CLI, DDP on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ase_dostransformer
from ase_dostransformer.cli import main
from ase_dostransformer.model import load_model_file
from ase_dostransformer.training.precision import cpu_has_native_bf16, resolve_precision
from ase_dostransformer.training.run import TrainOptions, train

#: the same tiny run on the command line (2 epochs)
TINY_CLI = [
    "--epochs",
    "2",
    "--hidden",
    "32",
    "--heads",
    "4",
    "--layers",
    "1",
    "--transformer",
    "1",
    "--batch_size",
    "4",
    "--eval",
    "1",
]
ROOT = Path(__file__).resolve().parents[1]
TINY = dict(hidden=32, heads=4, layers=1, transformer=1, batch_size=4, eval=1, es=0, threads=1)


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_tiny_training_learns_and_writes_model(tiny_dataset: Path, tmp_path: Path, precision: str) -> None:
    out = tmp_path / "run"
    opts = TrainOptions(out=str(out), data=str(tiny_dataset), epochs=30, lr=3e-3, warmup_epochs=1, precision=precision)
    summary = train(TrainOptions(**{**vars(opts), **TINY}))
    assert summary["precision"] == precision
    code = summary["code"]
    assert code["package_version"] == ase_dostransformer.__version__
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode == 0:  # run from a git checkout (CI clones one): the commit is recorded
        assert code["git_commit"] == head.stdout.strip()
        assert isinstance(code["git_dirty"], bool)
    m = summary["metrics"]
    assert summary["split_sizes"] == {"train": 12, "valid": 4, "test": 4}
    # smooth single-peak spectra: after 30 epochs the model beats predicting the mean training DOS
    assert m["valid"]["model"]["mse"] < m["valid"]["mean_baseline"]["mse"]
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    model, meta = load_model_file(out / "model.pt")
    assert meta["seed"] == 0
    assert len(meta["data_sha256"]) == 64
    assert meta["code"] == summary["code"]  # the model file says which code trained it
    assert model.cfg.hidden == 32
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] >= 0


@pytest.mark.parametrize(
    ("avx512_bf16", "amx", "expected"),
    [(True, False, "bf16-mixed"), (False, True, "bf16-mixed"), (False, False, "32-true")],
)
def test_auto_precision_is_bf16_only_on_hardware_with_native_bf16(monkeypatch, avx512_bf16, amx, expected) -> None:
    """The CPU's bf16 instructions decide (stand-in probes): AVX512-BF16 or AMX -> bf16-mixed, else fp32."""
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert cpu_has_native_bf16() is (expected == "bf16-mixed")
    assert resolve_precision("auto", "cpu") == expected
    assert resolve_precision("auto", "auto") == expected  # no GPU: auto means this CPU


def test_auto_precision_without_probes_or_on_gpus(monkeypatch) -> None:
    """An older torch without the CPU probes gets fp32; on a GPU the GPU's native bf16 decides."""
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert cpu_has_native_bf16() is False
    assert resolve_precision("auto", "cpu") == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for native, expected in ((True, "bf16-mixed"), (False, "32-true")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True, n=native: n)
        assert resolve_precision("auto", "gpu") == expected
        assert resolve_precision("auto", "auto") == expected


def test_explicit_precision_is_kept_and_unknown_refused() -> None:
    assert resolve_precision("32-true", "cpu") == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")


def test_training_is_deterministic_on_cpu(tiny_dataset: Path, tmp_path: Path) -> None:
    a = train(TrainOptions(out=str(tmp_path / "a"), data=str(tiny_dataset), epochs=3, **TINY))
    b = train(TrainOptions(out=str(tmp_path / "b"), data=str(tiny_dataset), epochs=3, **TINY))
    assert a["metrics"] == b["metrics"]


def test_resume_continues_from_last_checkpoint(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train(TrainOptions(out=str(out), data=str(tiny_dataset), epochs=2, **TINY))
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1
    summary = train(TrainOptions(out=str(out), data=str(tiny_dataset), epochs=4, resume=True, **TINY))
    assert summary["epochs_run"] == 4
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 3


def test_cli_train_and_evaluate(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cli"
    args = [
        "train",
        "--data",
        str(tiny_dataset),
        "--out",
        str(out),
        *TINY_CLI,
        "--beta",
        "0.5",
        "--energy_encoding",
        "value",
    ]
    assert main(args) == 0
    model, meta = load_model_file(out / "model.pt")
    assert model.cfg.energy_encoding == "value"
    assert meta["options"]["beta"] == 0.5
    report = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate",
                str(out / "model.pt"),
                "--data",
                str(tiny_dataset),
                "--split",
                "valid",
                "test",
                "--json",
                str(report),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "mean_baseline" in printed
    assert "MSE x10" in printed
    metrics = json.loads(report.read_text())["metrics"]
    assert metrics["test"]["model"]["n"] == 4
    assert metrics["test"]["mean_baseline"]["mse_x10"] > 0


def test_cli_reports_missing_data(tmp_path: Path, capsys) -> None:
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "no data.csv" in capsys.readouterr().err


def test_ddp_two_processes_on_cpu(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    exe = Path(sys.executable).parent / "dostransformer"
    cmd = [str(exe), "train", "--data", str(tiny_dataset), "--out", str(out), *TINY_CLI]
    cmd += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--threads", "1"]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    # Lightning starts rank 1 as a second copy of the command: on a timeout, kill the whole session, not rank 0 alone
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        _, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["world_size"] == 2
    assert summary["effective_batch_size"] == 8
    assert (out / "model.pt").is_file()


def test_real_dataset_official_split_smoke(phdos_dir: Path, tmp_path: Path) -> None:
    """Two epochs on 64 materials of the real data, official split: runs and reports the baseline."""
    summary = train(TrainOptions(out=str(tmp_path / "real"), data=str(phdos_dir), epochs=1, limit=64, **TINY))
    assert summary["data_sha256"] == "fe19bbabc4d49f13a3fb336ee6adff9d70d66e20375cabf56fbfa31cf4da1754"
    assert summary["split_sizes"] == {"train": 64, "valid": 64, "test": 64}
    assert summary["metrics"]["test"]["model"]["n"] == 64


def test_mean_baseline_reproduces_the_papers_trivial_numbers(phdos_dir: Path) -> None:
    """The paper's "mean training DOS" row (0.452 / 0.151 / 0.355) from our metrics on the official split."""
    from ase_dostransformer.io.phdos import load_phonon_dataset
    from ase_dostransformer.training.metrics import mean_spectrum_baseline, spectrum_metrics

    ds = load_phonon_dataset(phdos_dir)
    train_y, test_y = ds.dos[ds.split["train"]], ds.dos[ds.split["test"]]
    m = spectrum_metrics(mean_spectrum_baseline(train_y, len(test_y)), test_y)
    assert round(m["mse_x10"], 3) == 0.452
    assert round(m["mae"], 3) == 0.151
    assert round(m["r2"], 3) == 0.355


def test_cli_ensemble_of_two_seeds(tiny_dataset: Path, tmp_path: Path, capsys) -> None:
    from ase_dostransformer.model.ensemble import DOSEnsemble

    files = []
    for seed in (0, 1):
        out = tmp_path / f"s{seed}"
        train(TrainOptions(out=str(out), data=str(tiny_dataset), epochs=1, seed=seed, **TINY))
        files.append(str(out / "model.pt"))
    ens_path = tmp_path / "ens.pt"
    assert main(["ensemble", str(ens_path), *files, "--data", str(tiny_dataset)]) == 0
    assert "mean_baseline" in capsys.readouterr().out
    model, meta = load_model_file(ens_path)
    assert isinstance(model, DOSEnsemble)
    assert len(model.members) == 2
    assert meta["metrics"]["test"]["model"]["n"] == 4
    assert meta["ensemble_of"] == files


def test_phonon_split_file_picks_materials_by_id(tiny_dataset: Path, tmp_path: Path) -> None:
    from ase_dostransformer.io.phdos import load_phonon_dataset
    from ase_dostransformer.training.tasks import evaluation_data

    ids = load_phonon_dataset(str(tiny_dataset)).ids
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": ids[5:9], "valid": ids[:2], "test": [ids[-1]]}))
    _, _, split = evaluation_data("phonon", str(tiny_dataset), str(path), 0)
    assert split["train"].tolist() == [5, 6, 7, 8]
    assert split["valid"].tolist() == [0, 1]
    assert split["test"].tolist() == [len(ids) - 1]
