"""The ``dostransformer`` command itself: version, exit codes of errors and bugs, ``models``, plots, ``--no-plots``."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.io import write

import ase_dostransformer
from ase_dostransformer.cli import build_parser, main
from ase_dostransformer.cli import models as models_command
from ase_dostransformer.errors import DatasetError, ModelFileError
from ase_dostransformer.model import DOSTransformer, ModelConfig, save_model_file
from ase_dostransformer.plotting import ELECTRON_AXES, PHONON_AXES, new_figure, plot_dos
from ase_dostransformer.pretrained import list_models, read_registry
from ase_dostransformer.pretrained.__main__ import main as pretrained_main


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.manual_seed(0)
    model = DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4)).eval()
    return save_model_file(model, tmp_path_factory.mktemp("model") / "tiny.pt")


# ------------------------------------------------------------------ --version


def test_version_prints_the_package_version_and_exits_0(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"dostransformer {ase_dostransformer.__version__}\n"


def test_python_dash_m_cli_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "ase_dostransformer.cli", "--version"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"dostransformer {ase_dostransformer.__version__}"


# ------------------------------------------------------------------ exit codes


def test_a_package_error_is_exit_2_with_one_line(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ModelFileError("model registry damaged:\n  not valid JSON")

    monkeypatch.setattr(models_command, "print_models", broken)
    assert main(["models"]) == 2
    captured = capsys.readouterr()
    assert captured.err == "dostransformer models: error: model registry damaged: not valid JSON\n"
    assert "Traceback" not in captured.err
    assert captured.out == ""


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["predict", "x.cif", "--threads", "0"], "dostransformer predict: error: --threads must be >= 1, got 0\n"),
        (["predict", "x.cif", "--temperatures", "abc"], "dostransformer predict: error: not a temperature: 'abc'\n"),
        (["evaluate", "phonon", "--batch-size", "0"], "dostransformer evaluate: error: --batch-size must be at least"),
        (["dataset", "phonons", "--out", "o", "--generator", "nocolon"], "dostransformer dataset phonons: error: "),
    ],
)
def test_bad_options_are_option_errors_exit_2(argv, expected, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(expected)
    assert err.count("\n") == 1


def test_a_dataset_build_without_usable_rows_is_a_package_error(monkeypatch, capsys):
    def no_rows(args):
        raise DatasetError("no usable rows")

    from ase_dostransformer.cli import dataset

    monkeypatch.setattr(dataset, "_build", no_rows)
    assert main(["dataset", "build", "in", "--out", "o"]) == 2
    assert capsys.readouterr().err == "dostransformer dataset build: error: no usable rows\n"


@pytest.mark.parametrize("exc", [FileNotFoundError(2, "No such file or directory", "x.json"), PermissionError("no")])
def test_an_os_error_is_exit_2_with_one_line(exc, monkeypatch, capsys):
    def fails(*args, **kwargs):
        raise exc

    monkeypatch.setattr(models_command, "print_models", fails)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dostransformer models: error: ")
    assert err.count("\n") == 1
    assert str(exc) in err


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), ValueError("a bug's ValueError")])
def test_a_genuine_bug_propagates_with_its_traceback(exc, monkeypatch, capsys):
    def buggy(*args, **kwargs):
        raise exc

    monkeypatch.setattr(models_command, "print_models", buggy)
    with pytest.raises(type(exc), match=str(exc)):
        main(["models"])
    assert "error:" not in capsys.readouterr().err


# ------------------------------------------------------------------ models


def test_models_lists_the_shipped_models_as_python_dash_m_pretrained_does(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    registry = read_registry()
    assert "phonon" in registry
    assert len(registry) >= 2
    assert len(lines) == len(registry)
    present = list_models()
    for line in lines:
        name, file, state = line.split()[:3]
        assert registry[name]["file"] == file
        assert state == ("present" if name in present else "MISSING")
        assert registry[name]["description"] in line
    assert {line.split()[0] for line in lines} == set(registry)
    assert pretrained_main([]) == 0
    assert capsys.readouterr().out.splitlines() == lines


def test_every_command_has_its_module_and_help():
    sub = build_parser()._subparsers._group_actions[0].choices
    assert set(sub) == {"train", "evaluate", "ensemble", "calibrate", "dataset", "predict", "models", "active"}
    assert "--no-plots" in sub["predict"].format_help()
    for name, parser in sub.items():
        assert parser.get_default("run").__module__ == f"ase_dostransformer.cli.{name}"


# ------------------------------------------------------------------ plots


def _spectrum(shift: float) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(0.0, 30.0, 51)
    return x, np.exp(-((x - shift) ** 2) / 20.0) * 3.0


def test_one_figure_reused_draws_each_spectrum_as_a_fresh_one(tmp_path):
    fig = new_figure()
    a, b = _spectrum(8.0), _spectrum(20.0)
    first = plot_dos(tmp_path / "a1.png", *a, PHONON_AXES, "A", figure=fig).read_bytes()
    other = plot_dos(tmp_path / "b.png", *b, PHONON_AXES, "B", cut_off=True, figure=fig).read_bytes()
    again = plot_dos(tmp_path / "a2.png", *a, PHONON_AXES, "A", figure=fig).read_bytes()
    fresh = plot_dos(tmp_path / "a3.png", *a, PHONON_AXES, "A").read_bytes()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"
    assert first == again == fresh  # nothing of B (lines, note, second axis) left over
    assert first != other
    assert len(fig.axes) == 1
    assert len(fig.axes[0].child_axes) == 1
    e = np.linspace(-5, 5, 201), np.exp(-(np.linspace(-5, 5, 201) ** 2))
    electron = plot_dos(tmp_path / "e.png", *e, ELECTRON_AXES, "A", figure=fig).read_bytes()
    assert electron != first
    assert len(fig.axes) == 1
    assert fig.axes[0].child_axes == []
    assert plot_dos(tmp_path / "a4.png", *a, PHONON_AXES, "A", figure=fig).read_bytes() == first


def test_no_plots_writes_no_png_and_the_same_data(model_file, tmp_path):
    write(tmp_path / "NaCl.cif", bulk("NaCl", "rocksalt", a=5.64))
    write(tmp_path / "Si.cif", bulk("Si", "diamond", a=5.43))
    common = ["--model", str(model_file), "--device", "cpu", "--no-progress", "--quiet", "--temperatures", "300"]
    inputs = [str(tmp_path / "NaCl.cif"), str(tmp_path / "Si.cif")]
    assert main(["predict", *inputs, "--out", str(tmp_path / "plots"), *common]) == 0
    assert main(["predict", *inputs, "--out", str(tmp_path / "none"), "--no-plots", *common]) == 0
    assert sorted(p.name for p in (tmp_path / "plots").rglob("*.png")) == ["phonon_dos.png", "phonon_dos.png"]
    assert list((tmp_path / "none").rglob("*.png")) == []
    for name in ("NaCl", "Si"):
        for data in ("total_dos.dat", "thermal_properties.yaml", "thermal_properties.csv"):
            assert (tmp_path / "plots" / name / data).read_bytes() == (tmp_path / "none" / name / data).read_bytes()

    def rows(out):
        with open(out / "summary.csv", newline="") as fh:
            return [{k: v for k, v in r.items() if k != "output_dir"} for r in csv.DictReader(fh)]

    assert rows(tmp_path / "plots") == rows(tmp_path / "none")


def test_train_help_is_generated_from_the_registries(monkeypatch):
    from ase_dostransformer.kinds import ALIASES, KINDS
    from ase_dostransformer.model import embedders

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    text = " ".join(train.format_help().split())
    assert "crystal encoder: " + " | ".join(embedders.EMBEDDERS) in text
    for name in (*KINDS, *ALIASES):
        assert name in text
    assert train.parse_args(["--task", "edos"]).task == "edos"  # the alias still parses (TrainOptions maps it)
    monkeypatch.setitem(embedders.EMBEDDERS, "my_encoder", object)
    assert "my_encoder" in train.format_help()  # a newly registered embedder shows up: nothing is copied
