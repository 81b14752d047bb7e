"""The universal potential's frozen features as the electron model's encoder input (``--embedder foundation``).

The recipe option, the features it attaches (the same helper as the phonon recipe's, in a standard
orientation), caching, and a tiny electron model trained on them that predicts through the
calculator, ``predict_gap`` and ``dostransformer predict``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from ase_dostransformer.errors import OptionError
from ase_dostransformer.graphs.cache import cache_file, cached_graphs, recipe_key
from ase_dostransformer.graphs.electron import ElectronGraphRecipe
from ase_dostransformer.graphs.foundation import (
    FEATURE_DIM,
    crystal_foundation_features,
    foundation_features,
    standard_orientation,
)
from ase_dostransformer.graphs.phonon import PhononGraphRecipe
from ase_dostransformer.graphs.structure import crystal_arrays
from ase_dostransformer.kinds import get_kind
from ase_dostransformer.training.options import TrainOptions

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "train" / "edos"
# the small set of tests/test_gap_head.py: four metals, five insulators with gaps 0.27 .. 3.3 eV
METALS = ["Cu-fcc", "Al-fcc", "Na-bcc", "W-bcc"]
INSULATORS = ["mp-1000", "mp-1002164", "mp-10044", "mp-1008223", "mp-1002124"]
TINY = dict(hidden=32, heads=4, layers=1, transformer=1, batch_size=4, eval=1, es=0, threads=1)
TINY |= dict(energy_encoding="value", precision="32-true", lr=1e-2, scheduler="none", dropout=0.0)

#: The default electron recipe's dict and cache key, as written before ``foundation`` existed.
DEFAULT_DICT = {
    "neighbours": 12,
    "cutoff": 8.0,
    "gaussian_start": 0.0,
    "gaussian_stop": 8.0,
    "gaussians": 41,
    "gaussian_width": 0.2,
    "global_features": [],
    "name": "edos-v1",
    "symprec": 0.1,
}
DEFAULT_KEY = "3e6ea96a7fa3"


def strained_rocksalt():
    """NaCl in a triclinic cell with rattled atoms: no symmetry that would hide a rotation."""
    atoms = bulk("NaCl", "rocksalt", a=5.64) * (1, 1, 2)
    atoms.set_cell(atoms.cell[:] @ np.array([[1.02, 0.03, 0.0], [0.0, 0.98, 0.04], [0.01, 0.0, 1.01]]), True)
    atoms.rattle(0.05, seed=3)
    return atoms


# ---------------------------------------------------------------------------------------------- the recipe


def test_recipe_dict_unchanged_when_off_and_round_trips_when_on() -> None:
    off = ElectronGraphRecipe()
    assert off.to_dict() == DEFAULT_DICT
    assert recipe_key(off) == DEFAULT_KEY  # older graph caches and model files keep their key
    on = ElectronGraphRecipe(foundation=True)
    assert on.to_dict() == DEFAULT_DICT | {"foundation": True}
    assert recipe_key(on) != DEFAULT_KEY
    kind = get_kind("electron")
    assert kind.recipe_from_dict(json.loads(json.dumps(on.to_dict()))) == on
    assert kind.recipe_from_dict(off.to_dict()) == off
    assert (on.node_dim, on.edge_dim) == (200, 41)  # the MatScholar nodes the foundation embedder also reads
    with pytest.raises(OptionError, match="foundation must be True or False"):
        ElectronGraphRecipe(foundation=1)  # type: ignore[arg-type]
    assert not hasattr(off.featurise(bulk("Si", "diamond", a=5.43)), "foundation")


def test_first_electron_model_keeps_its_recipe() -> None:
    from ase_dostransformer.model import load_model_file
    from ase_dostransformer.pretrained import model_path

    model, _ = load_model_file(model_path("electron-v1"))  # written before the option existed
    assert "foundation" not in model.cfg.recipe
    assert model.graph_recipe.foundation is False
    assert model.graph_recipe.to_dict() == DEFAULT_DICT


def test_features_are_the_potentials_in_a_standard_orientation() -> None:
    atoms = strained_rocksalt()
    recipe = ElectronGraphRecipe(foundation=True)
    graph = recipe.featurise(atoms)
    crystal = crystal_arrays(atoms)
    assert graph.foundation.shape == (len(atoms), FEATURE_DIM)
    assert graph.foundation.dtype == torch.float32
    # exactly the potential's features of the crystal in its standard orientation
    np.testing.assert_array_equal(graph.foundation.numpy(), foundation_features([standard_orientation(crystal)])[0])
    np.testing.assert_array_equal(graph.foundation.numpy(), crystal_foundation_features(crystal))
    # and of the crystal as given, to float32 rounding (the potential is invariant up to it)
    np.testing.assert_allclose(graph.foundation.numpy(), foundation_features([atoms])[0], atol=1e-4)
    # one helper for both kinds: the phonon recipe attaches the same numbers
    np.testing.assert_array_equal(PhononGraphRecipe(foundation=True).featurise(atoms).foundation, graph.foundation)
    # the features follow each atom: Na and Cl differ
    assert (graph.foundation[0] - graph.foundation[1]).abs().max() > 0.5
    # the rest of the graph is the plain recipe's
    plain = ElectronGraphRecipe().featurise(atoms)
    for key in ("x", "edge_attr", "edge_index", "system"):
        torch.testing.assert_close(graph[key], plain[key], rtol=0, atol=0)


def test_features_are_rotation_invariant() -> None:
    atoms = strained_rocksalt()
    rotated = atoms.copy()
    rotated.rotate(37.0, (1.0, -2.0, 0.5), rotate_cell=True)
    rotated.rotate(-71.0, "z", rotate_cell=True)
    assert np.abs(rotated.cell[:] - atoms.cell[:]).max() > 1.0  # really rotated
    recipe = ElectronGraphRecipe(foundation=True)
    a, b = recipe.featurise(atoms).foundation.numpy(), recipe.featurise(rotated).foundation.numpy()
    np.testing.assert_allclose(b, a, atol=1e-5)


def test_compact_expand_and_the_cache_keep_the_features(tmp_path: Path) -> None:
    recipe = ElectronGraphRecipe(foundation=True)
    structures = [strained_rocksalt(), bulk("Cu", "fcc", a=3.6)]
    targets = np.random.default_rng(0).random((2, 201)).astype(np.float32)
    built = cached_graphs(recipe, structures, targets, "cd" * 32, folder=tmp_path)
    assert cache_file(recipe, "cd" * 32, tmp_path).is_file()
    assert cache_file(recipe, "cd" * 32, tmp_path) != cache_file(ElectronGraphRecipe(), "cd" * 32, tmp_path)
    read = cached_graphs(recipe, structures, targets, "cd" * 32, folder=tmp_path, build=list)  # never rebuilt
    for b, r in zip(built, read, strict=True):
        torch.testing.assert_close(r.foundation, b.foundation, rtol=0, atol=0)
        torch.testing.assert_close(r.x, b.x, rtol=0, atol=0)
        again = recipe.expand(recipe.compact(b))
        torch.testing.assert_close(again.foundation, b.foundation, rtol=0, atol=0)


# ----------------------------------------------------------------------------------- a tiny trained model


@pytest.fixture(scope="module")
def foundation_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    from ase_dostransformer.io.electron_dataset import build_edos_dataset
    from ase_dostransformer.training.run import train

    files = [LABELS / "dft_gpaw_metals" / f"{m}.json.gz" for m in METALS]
    files += [LABELS / "dft_gpaw" / f"{m}.json.gz" for m in INSULATORS]
    data = tmp_path_factory.mktemp("foundation-data")
    assert build_edos_dataset(files, data).kept == len(files)
    out = tmp_path_factory.mktemp("foundation-run")
    opts = dict(out=str(out), data=str(data), task="electron", dataset="random", epochs=2, gap_head=True)
    # lr 1e-3: two epochs at TINY's 1e-2 drive this model (and a graph-network one) to an all-zero DOS
    summary = train(TrainOptions(**(opts | TINY | {"embedder": "foundation", "lr": 1e-3})))
    return data, out, summary


def test_training_set_makes_and_caches_foundation_graphs(foundation_run) -> None:
    from ase_dostransformer.graphs.cache import cache_dir
    from ase_dostransformer.io.electron_dataset import load_edos_dataset

    data, _, _ = foundation_run
    kind = get_kind("electron")
    ds = load_edos_dataset(data)
    # the dataset's own graphs.pt holds plain graphs; the foundation ones live in the cache under their own key
    made = ElectronGraphRecipe(foundation=True)
    cached = cache_file(made, ds.sha256)
    assert cached.is_file()
    assert cached.parent == cache_dir()
    written = cached.stat().st_mtime_ns
    ts = kind.training_set(str(data), TrainOptions(task="electron", data=str(data), embedder="foundation_gn"))
    assert cached.stat().st_mtime_ns == written  # read back, not computed again
    assert ts.recipe == made
    assert all(g.foundation.shape == (int(g.natoms), FEATURE_DIM) for g in ts.graphs)
    assert all(g.x.shape[1] == 200 and g.band_gap.shape == (1,) for g in ts.graphs)
    plain = kind.training_set(str(data), TrainOptions(task="electron", data=str(data)))
    assert plain.recipe == ElectronGraphRecipe()
    assert not hasattr(plain.graphs[0], "foundation")
    # a model's recipe (evaluation) wins over the options
    by_model = kind.training_set(str(data), TrainOptions(task="electron", data=str(data)), made.to_dict())
    assert by_model.recipe == made
    torch.testing.assert_close(by_model.graphs[3].foundation, ts.graphs[3].foundation, rtol=0, atol=0)


def test_tiny_foundation_model_predicts_dos_and_gap(foundation_run, tmp_path: Path) -> None:
    from ase.io import write

    from ase_dostransformer.calculator import DOSCalculator
    from ase_dostransformer.cli import main
    from ase_dostransformer.electronic import GapPrediction, predict_gap_structures
    from ase_dostransformer.model import load_model_file

    _, run, summary = foundation_run
    assert summary["options"]["embedder"] == "foundation"
    model, _ = load_model_file(run / "model.pt")
    assert model.cfg.embedder == "foundation"
    assert model.cfg.node_dim == 200
    assert model.cfg.recipe["foundation"] is True
    assert model.graph_recipe.foundation is True
    assert model.gap_head is not None
    assert model.embedder.node_in[0].in_features == FEATURE_DIM + 200

    si = bulk("Si", "diamond", a=5.43)
    calc = DOSCalculator(model=None, electron_model=run / "model.pt")
    si.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-domain findings of a tiny model
        gap = calc.get_band_gap()
        dos = calc.results["electron_dos"]
    assert isinstance(gap, GapPrediction)
    assert not gap.from_dos
    assert 0.0 <= gap.p_metal <= 1.0
    assert gap.gap_std > 0
    assert gap.gap >= 0.0
    assert calc.results["band_gap"] == gap.gap
    values = np.asarray(dos.get_weights() if hasattr(dos, "get_weights") else dos)
    assert values.shape == (201,)
    assert np.isfinite(values).all()
    assert values.min() >= 0.0
    assert values.max() > 0.0

    # predict_gap from the structures: the recipe in the model file featurises them, foundation included
    (direct,) = predict_gap_structures(model, [bulk("Si", "diamond", a=5.43)])
    assert direct.gap == pytest.approx(gap.gap, abs=1e-5)
    assert direct.p_metal == pytest.approx(gap.p_metal, abs=1e-5)
    # the features matter: without them the model refuses, naming the option
    from ase_dostransformer.electronic import predict_gap

    plain = ElectronGraphRecipe().featurise(bulk("Si", "diamond", a=5.43))
    with pytest.raises(OptionError, match="foundation=True"):
        predict_gap(model, [plain])

    # dostransformer predict with this electron model
    write(tmp_path / "si.extxyz", [bulk("Si", "diamond", a=5.43)])
    out = tmp_path / "pred"
    argv = ["predict", str(tmp_path / "si.extxyz"), "--electron-model", str(run / "model.pt"), "--out", str(out)]
    assert main([*argv, "--no-plots", "--no-progress", "--quiet", "--threads", "1"]) == 0
    (row,) = json.loads((out / "summary.json").read_text())["structures"]
    assert row["band_gap_eV"] == pytest.approx(gap.gap, abs=1e-5)
    assert row["p_metal"] == pytest.approx(gap.p_metal, abs=1e-5)
    assert len(list(out.rglob("electron_dos.dat"))) == 1


def test_fine_tuning_a_foundation_model_needs_no_embedder_option(foundation_run, tmp_path: Path) -> None:
    """A run started from a foundation model gets graphs of its recipe (train.sh's few-shot step has no --embedder)."""
    from ase_dostransformer.model import load_model_file
    from ase_dostransformer.training.run import train

    data, out, _ = foundation_run
    start, start_meta = load_model_file(out / "model.pt")
    opts = TrainOptions(
        out=str(tmp_path / "ft"),
        data=str(data),
        task="electron",
        dataset="random",
        epochs=1,
        init_from=str(out / "model.pt"),
        prompt_only=True,
        **(TINY | {"lr": 1e-3}),
    )
    assert opts.embedder == "graph_network"  # the option's default, not the model's encoder
    summary = train(opts)
    tuned, meta = load_model_file(tmp_path / "ft" / "model.pt")
    assert tuned.cfg.embedder == "foundation"
    assert tuned.graph_recipe.foundation
    assert summary["init_from"] == str(out / "model.pt")
    assert set(meta["train_elements"]) == set(start_meta["train_elements"])
