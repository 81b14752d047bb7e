"""Electron-DOS training end to end: build from real-format files, train, evaluate, prompt-only fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from edos_synthetic import write_sources

from ase_dostransformer.cli import main
from ase_dostransformer.io.electron_dataset import build_edos_dataset, load_edos_dataset
from ase_dostransformer.model import load_model_file
from ase_dostransformer.training.run import TrainOptions, train
from ase_dostransformer.training.tasks import evaluation_data

TINY = dict(hidden=32, heads=4, layers=1, transformer=1, batch_size=4, eval=1, es=0, threads=1)


@pytest.fixture(scope="module")
def edos_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("sources")
    write_sources(src)
    out = tmp_path_factory.mktemp("edos")
    assert build_edos_dataset([src], out).kept == 12
    return out


@pytest.fixture(scope="module")
def trained(edos_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    summary = train(
        TrainOptions(out=str(out), data=str(edos_data), task="electron", dataset="random", epochs=2, **TINY)
    )
    return out, summary


def test_edos_training_writes_an_edos_model(trained, edos_data: Path) -> None:
    out, summary = trained
    assert summary["split_sizes"] == {"train": 10, "valid": 1, "test": 1}  # 80/10/10 of 12
    assert summary["data_sha256"] == load_edos_dataset(edos_data).sha256
    model, meta = load_model_file(out / "model.pt")
    cfg = model.cfg
    assert cfg.task == "electron"
    assert model.kind.name == "electron"
    assert (cfg.grid.npoints, cfg.grid.start, cfg.grid.stop, cfg.grid.unit) == (201, -5.0, 5.0, "eV")
    assert (cfg.node_dim, cfg.edge_dim, cfg.aggregation, cfg.node_scale, cfg.global_dim) == (200, 41, "sum", 1.0, 0)
    assert cfg.recipe["name"] == "edos-v1"
    assert cfg.recipe["neighbours"] == 12
    assert model.energy.table.shape == (201, 32)  # one token per 50 meV bin
    assert meta["options"]["task"] == "electron"
    for part in ("valid", "test"):
        m = summary["metrics"][part]["model"]
        assert m["n"] == 1
        assert np.isfinite([m["mse"], m["mae"], m["r2"]]).all()


def test_edos_splits(edos_data: Path) -> None:
    ds = load_edos_dataset(edos_data)
    _, _, crystal = evaluation_data("electron", str(edos_data), "crystal_ood", 0)
    held = np.concatenate([crystal["valid"], crystal["test"]])
    assert sorted(ds.rows[i]["system"] for i in held) == ["monoclinic", "triclinic"]
    _, _, element = evaluation_data("edos", str(edos_data), "element_ood", 0)  # the former task name still works
    assert set(ds.num_species[element["train"]].tolist()) == {2, 3}
    assert set(ds.num_species[np.concatenate([element["valid"], element["test"]])].tolist()) == {1}
    with pytest.raises(ValueError, match="no official split"):
        evaluation_data("electron", str(edos_data), "official", 0)


def test_cli_evaluate_edos_model(trained, edos_data: Path, tmp_path: Path, capsys) -> None:
    out, _ = trained
    report = tmp_path / "eval.json"
    args = ["evaluate", str(out / "model.pt"), "--data", str(edos_data), "--dataset", "element_ood"]
    assert main([*args, "--split", "valid", "test", "--json", str(report)]) == 0
    assert "mean_baseline" in capsys.readouterr().out
    metrics = json.loads(report.read_text())["metrics"]
    assert metrics["valid"]["model"]["n"] + metrics["test"]["model"]["n"] == 6  # the six unary materials


def test_prompt_only_fine_tuning_changes_only_prompts_and_head(trained, edos_data: Path, tmp_path: Path) -> None:
    start, _ = trained
    out = tmp_path / "ft"
    args = ["train", "--task", "edos", "--data", str(edos_data), "--dataset", "crystal_ood", "--out", str(out)]
    args += ["--epochs", "2", "--batch_size", "4", "--eval", "1", "--threads", "1", "--lr", "1e-2"]
    assert main([*args, "--init_from", str(start / "model.pt"), "--prompt_only"]) == 0
    before, _ = load_model_file(start / "model.pt")
    after, meta = load_model_file(out / "model.pt")
    assert after.cfg == before.cfg  # the architecture comes from the starting model, not the options
    changed = {
        name
        for (name, p0), (_, p1) in zip(before.named_parameters(), after.named_parameters(), strict=True)
        if not torch.equal(p0, p1)
    }
    assert changed == {"prompts", "head.weight", "head.bias"}
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["init_from"] == str(start / "model.pt")
    assert len(summary["init_sha256"]) == 64
    assert meta["options"]["prompt_only"] is True
    # the systems the starting model had seen stay seen
    assert bool((after.seen_systems | ~before.seen_systems).all())


def test_prompt_only_needs_a_model_and_a_matching_one(
    trained, edos_data: Path, tmp_path: Path, tiny_dataset: Path
) -> None:
    start, _ = trained
    with pytest.raises(ValueError, match="--init_from"):
        train(
            TrainOptions(
                out=str(tmp_path / "a"), data=str(edos_data), task="electron", dataset="random", prompt_only=True
            )
        )
    phonon = TrainOptions(out=str(tmp_path / "b"), data=str(tiny_dataset), init_from=str(start / "model.pt"), epochs=1)
    with pytest.raises(ValueError, match="task is 'electron' but the data gives 'phonon'"):
        train(phonon)


def test_split_file_few_shot_prompt_fine_tuning(trained, edos_data: Path, tmp_path: Path) -> None:
    """Few-shot adaptation: a split file names the materials to fine-tune on; the parts are those ids."""
    start, _ = trained
    ds = load_edos_dataset(edos_data)
    _, _, crystal = evaluation_data("electron", str(edos_data), "crystal_ood", 0)
    held = [ds.ids[i] for i in np.concatenate([crystal["valid"], crystal["test"]])]
    split_file = tmp_path / "few_shot.json"
    others = [m for m in ds.ids if m not in held][:3]
    split_file.write_text(json.dumps({"train": held[:1], "valid": held[1:], "test": others}))
    _, _, split = evaluation_data("electron", str(edos_data), str(split_file), 0)
    assert [ds.ids[i] for i in split["train"]] == held[:1]
    assert [ds.ids[i] for i in split["test"]] == sorted(others, key=ds.ids.index)
    opts = dict(TINY, epochs=3, lr=1e-2)
    summary = train(
        TrainOptions(
            out=str(tmp_path / "ft"),
            data=str(edos_data),
            task="electron",
            dataset=str(split_file),
            init_from=str(start / "model.pt"),
            prompt_only=True,
            **opts,
        )
    )
    assert summary["split_sizes"] == {"train": 1, "valid": len(held) - 1, "test": 3}
    after, meta = load_model_file(tmp_path / "ft" / "model.pt")
    # its recorded domain: the one crystal it was tuned on, widened by everything the starting weights saw
    _, start_meta = load_model_file(start / "model.pt")
    own = set(ds.atoms[ds.ids.index(held[0])].numbers.tolist())
    assert set(meta["train_elements"]) == set(start_meta["train_elements"]) | own
    assert len(meta["train_elements"]) > len(own)
    assert meta["train_max_atoms"] == max(start_meta["train_max_atoms"], len(ds.atoms[ds.ids.index(held[0])]))
    for key in ("train_shortest_bond", "train_volume_per_atom"):
        assert meta[key][0] <= start_meta[key][0]
        assert meta[key][1] >= start_meta[key][1]
    systems = {ds.rows[ds.ids.index(m)]["system"] for m in held[:1]}
    from ase_dostransformer.graphs.crystal_system import CRYSTAL_SYSTEMS

    assert all(bool(after.seen_systems[CRYSTAL_SYSTEMS.index(s)]) for s in systems)  # now seen: own prompts


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read it as JSON"),
        ('{"train": ["no-such-id"]}', "ids not in the dataset"),
        ('{"train": [], "valid": []}', "train part is empty"),
        ('{"training": []}', "expected an object with keys"),
        ('{"train": "mp-1"}', "must be a list"),
    ],
)
def test_bad_split_files_are_clear_errors(edos_data: Path, tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "split.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        evaluation_data("electron", str(edos_data), str(path), 0)


def test_split_file_rejects_an_id_in_two_parts(edos_data: Path, tmp_path: Path) -> None:
    first = load_edos_dataset(edos_data).ids[0]
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": [first], "test": [first]}))
    with pytest.raises(ValueError, match="in both train and test"):
        evaluation_data("electron", str(edos_data), str(path), 0)
