"""The band-gap head of electron models: config, training, ensemble combination, flag rules, calculator, old files."""

from __future__ import annotations

import csv
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from torch_geometric.data import Batch
from torch_geometric.utils import scatter, to_dense_batch

from ase_dostransformer.electronic import (
    GAP_STD_SCALE_KEY,
    METAL_FLAG_P,
    METAL_GAP,
    SMOOTHING_WIDTH,
    GapPrediction,
    band_gap_estimate,
    band_gap_targets,
    calibrate_gap_std,
    combine_members,
    fit_gap_std_scale,
    gap_from_dos,
    gap_metrics,
    gap_prediction,
    gap_std_scale,
    is_metal,
    metal_pos_weight,
    predict_gap,
)
from ase_dostransformer.errors import DatasetError, OptionError, TrainOptionsError
from ase_dostransformer.model import DOSEnsemble, ModelConfig, load_model_file
from ase_dostransformer.model.dostransformer import max_atoms
from ase_dostransformer.model.gap import LOG_STD_RANGE, gap_parameters
from ase_dostransformer.spectra import ELECTRON_GRID
from ase_dostransformer.training.lightning_module import gap_loss_terms
from ase_dostransformer.training.options import TrainOptions

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "train" / "edos"
METALS = ["Cu-fcc", "Al-fcc", "Na-bcc", "W-bcc"]
INSULATORS = ["mp-1000", "mp-1002164", "mp-10044", "mp-1008223", "mp-1002124"]  # gaps 0.27 .. 3.3 eV
TINY = dict(hidden=32, heads=4, layers=1, transformer=1, batch_size=4, eval=1, es=0, threads=1)
TINY |= dict(energy_encoding="value", precision="32-true", lr=1e-2, scheduler="none", dropout=0.0)

E = ELECTRON_GRID.values
METAL_DOS = np.exp(-(E**2))  # states at 0 eV
INSULATOR_DOS = np.where(np.abs(E) < 1.0, 0.0, 1.0)  # a 2 eV empty window around 0 eV


# ------------------------------------------------------------------------------------ config, options


def test_gap_head_is_for_electron_models_only() -> None:
    with pytest.raises(OptionError, match="gap_head=True is for electron models, not 'phonon'"):
        ModelConfig(gap_head=True)
    with pytest.raises(OptionError, match="gap_head must be True or False"):
        ModelConfig(task="electron", gap_head=1)  # type: ignore[arg-type]
    cfg = ModelConfig(task="electron", gap_head=True, hidden=32, heads=4)
    assert ModelConfig.from_dict(cfg.to_dict()).gap_head is True
    assert ModelConfig.from_dict({k: v for k, v in cfg.to_dict().items() if k != "gap_head"}).gap_head is False
    with pytest.raises(TrainOptionsError, match="--gap_head is for --task electron"):
        TrainOptions(gap_head=True)
    with pytest.raises(TrainOptionsError, match="--gap_weight must be a finite number >= 0"):
        TrainOptions(task="electron", gap_head=True, gap_weight=-0.1)
    with pytest.raises(TrainOptionsError, match="--gap_pos_weight must be a positive"):
        TrainOptions(task="electron", gap_head=True, gap_pos_weight=0.0)


def test_train_command_takes_the_gap_options() -> None:
    from ase_dostransformer.cli import build_parser

    args = build_parser().parse_args(["train", "--task", "electron", "--gap_head", "--gap_weight", "0.5"])
    assert (args.gap_head, args.gap_weight, args.gap_pos_weight) == (True, 0.5, None)
    args = build_parser().parse_args(["train", "--gap_pos_weight", "3"])
    assert (args.gap_head, args.gap_weight, args.gap_pos_weight) == (False, 0.1, 3.0)


# ------------------------------------------------------------------------------ a hand-made head and rules


def test_head_outputs_are_a_positive_mean_and_a_clamped_log_std() -> None:
    raw = torch.tensor([[0.3, -50.0, -100.0], [-2.0, 2.0, 100.0]])
    logit, mean, log_std = gap_parameters(raw)
    assert logit.tolist() == pytest.approx([0.3, -2.0])
    assert (mean > 0).all()
    assert float(mean[1]) == pytest.approx(math.log1p(math.exp(2.0)))
    assert log_std.tolist() == pytest.approx([LOG_STD_RANGE[0], LOG_STD_RANGE[1]])


def test_gap_loss_terms_by_hand() -> None:
    sp_inv = math.log(math.expm1(2.0))  # the raw output whose softplus is a 2 eV mean
    raw = torch.tensor([[0.0, sp_inv, 0.0], [1.0, sp_inv, math.log(0.5)], [5.0, 0.0, 0.0]])
    gap = torch.tensor([0.0, 3.0, float("nan")])  # a metal, an insulator 1 eV off, an unknown gap (left out)
    bce, nll = gap_loss_terms(raw, gap, pos_weight=4.0)
    # metal: pos_weight * -log(sigmoid(0)); insulator: -log(1 - sigmoid(1)); averaged over the two known
    want_bce = (4.0 * math.log(2.0) + math.log1p(math.exp(1.0))) / 2
    assert float(bce) == pytest.approx(want_bce, rel=1e-6)
    # the insulator alone: 0.5 (1 / 0.5)^2 + log 0.5 + log sqrt(2 pi)
    assert float(nll) == pytest.approx(0.5 * 4.0 + math.log(0.5) + 0.5 * math.log(2 * math.pi), rel=1e-6)
    bce, nll = gap_loss_terms(raw[2:], gap[2:], 4.0)  # nothing known: both terms 0, not NaN
    assert float(bce) == 0.0
    assert float(nll) == 0.0


def test_ensemble_combination_on_hand_made_numbers() -> None:
    p, gap, std = combine_members([[0.0], [math.log(3.0)]], [[1.0], [3.0]], [[1.0], [2.0]])
    assert p[0] == pytest.approx((0.5 + 0.75) / 2)
    assert gap[0] == pytest.approx(2.0)
    assert std[0] == pytest.approx(math.sqrt((1.0 + 4.0) / 2 + 1.0))  # mean variance + variance of the means
    p, gap, std = combine_members([0.0], [1.5], [0.4])  # one member: its own numbers
    assert (p[0], gap[0], std[0]) == pytest.approx((0.5, 1.5, 0.4))
    with pytest.raises(OptionError, match="one shape"):
        combine_members([[0.0, 1.0]], [[1.0]], [[1.0]])


def test_flag_rules_never_give_a_metal_a_gap_without_a_flag() -> None:
    metal = gap_prediction(0.7, 1.2, 0.3)
    assert (metal.gap, metal.flags, metal.gap_if_insulator) == (0.0, ("metal",), 1.2)
    assert metal.metal
    assert metal.metal_flagged
    metal_ish = gap_prediction(0.3, 1.2, 0.3, INSULATOR_DOS)
    assert (metal_ish.gap, metal_ish.flags) == (1.2, ("possibly_metallic",))
    assert gap_prediction(METAL_FLAG_P, 1.2, 0.3).flags == ("possibly_metallic",)
    states = gap_prediction(0.01, 1.2, 0.3, METAL_DOS)  # confident head, but the model's DOS has no gap
    assert (states.gap, states.flags) == (1.2, ("states_at_fermi_level",))
    both = gap_prediction(0.2, 1.2, 0.3, METAL_DOS)
    assert both.flags == ("possibly_metallic", "states_at_fermi_level")
    insulator = gap_prediction(0.01, 1.2, 0.3, INSULATOR_DOS)
    assert (insulator.gap, insulator.flags, insulator.metal_flagged) == (1.2, (), False)
    # an insulator's 0 eV is its valence-band top: states there are not states in the gap
    edge = np.where(E <= 0.0, 1.0, np.where(E >= 1.5, 1.0, 0.0))
    assert gap_prediction(0.01, 1.5, 0.3, edge).flags == ()
    # a pseudogap: the DOS empties over 0.5 eV only, far less than a 2 eV gap allows (the smoothing aside)
    pseudo = np.where((E > 0.0) & (E < 0.5), 0.0, 1.0)
    assert gap_prediction(0.01, 2.0, 0.3, pseudo).flags == ("states_at_fermi_level",)
    assert gap_prediction(0.01, 0.5 + SMOOTHING_WIDTH - 0.1, 0.3, pseudo).flags == ()
    for bad in ((1.5, 1.0, 0.1), (0.2, -1.0, 0.1), (0.2, 1.0, float("nan"))):
        with pytest.raises(OptionError, match="p_metal must be in"):
            gap_prediction(*bad)
    assert gap_prediction(0.2, 1.0, 0.1).to_dict() == {
        "gap_eV": 1.0,
        "gap_std_eV": 0.1,
        "p_metal": 0.2,
        "flags": ["possibly_metallic"],
        "gap_if_insulator_eV": 1.0,
    }


def test_smoothing_width_is_the_labels_window() -> None:
    from ase_dostransformer.io.electron_dataset import SAVGOL_WINDOW

    assert SAVGOL_WINDOW * ELECTRON_GRID.step == pytest.approx(SMOOTHING_WIDTH)


def test_dos_read_says_where_it_comes_from() -> None:
    read = gap_from_dos(INSULATOR_DOS)
    assert read.gap == band_gap_estimate(INSULATOR_DOS).gap > 1.5
    assert read.flags == ("from_dos",)
    assert math.isnan(read.gap_std)
    assert math.isnan(read.p_metal)
    assert gap_from_dos(METAL_DOS).flags == ("from_dos", "metal")
    assert read.to_dict()["gap_std_eV"] is None


def test_gap_targets_and_class_weight() -> None:
    rows = [{"properties": {"band_gap": 1.5}}, {"properties": {}}, {"properties": {"band_gap": 0.0}}, {}]
    gaps = band_gap_targets(rows)
    assert gaps[0] == 1.5
    assert gaps[2] == 0.0
    assert np.isnan(gaps[[1, 3]]).all()
    with pytest.raises(DatasetError, match=r"row 1 \(x\): band_gap -0.5 eV is negative"):
        band_gap_targets([{}, {"id": "x", "properties": {"band_gap": -0.5}}])
    with pytest.raises(DatasetError, match="is not a number"):
        band_gap_targets([{"id": "y", "properties": {"band_gap": "wide"}}])
    assert metal_pos_weight([0.0, 0.0, 1.0, 2.0, 3.0, METAL_GAP, np.nan]) == pytest.approx(4 / 2)
    assert metal_pos_weight([1.0, 2.0]) == 1.0  # no metals: nothing to balance


def test_gap_metrics_on_hand_made_predictions() -> None:
    dft = np.array([0.0, 0.0, 2.0, 1.0, np.nan])
    preds = [
        gap_prediction(0.9, 1.0, 0.5),  # metal called a metal
        GapPrediction(1.5, 0.5, 0.05, ()),  # metal given an unflagged gap: the error the rules prevent
        gap_prediction(0.01, 2.5, 0.5),  # 0.5 eV off, inside 1.64 std
        gap_prediction(0.01, 2.0, 0.1),  # 1.0 eV off, outside
        gap_prediction(0.01, 9.0, 0.1),  # unknown DFT gap: left out
    ]
    dos = np.stack([METAL_DOS, np.where(np.abs(E) < 0.2, 0.0, 1.0), INSULATOR_DOS, INSULATOR_DOS, INSULATOR_DOS])
    m = gap_metrics(dft, preds, dos)
    assert (m["n"], m["n_known"], m["n_metals"], m["n_gapped"]) == (5, 4, 2, 2)
    assert m["gap_mae_eV"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["metal_insulator_accuracy"] == pytest.approx(3 / 4)
    assert m["metal_insulator_balanced_accuracy"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["majority_baseline_accuracy"] == pytest.approx(1 / 2)
    assert m["metals_given_unflagged_gap"] == pytest.approx(1 / 2)
    assert m["n_metals_given_unflagged_gap"] == 1
    assert m["gap_within_90_interval"] == pytest.approx(1 / 2)
    assert m["insulators_flagged"] == 0.0
    assert m["metals_dos_at_fermi_positive"] == pytest.approx(1 / 2)  # the second metal's DOS is empty at 0 eV
    with pytest.raises(OptionError, match="4 predictions for 5"):
        gap_metrics(dft, preds[:4])


def test_gap_std_scale_fitted_by_hand() -> None:
    # |error| / (1.6449 std) = 0.5, 1, 2, 3, 4, 6 on the six gapped crystals; the metal and the unknown are left out
    z = 1.6449
    dft = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, np.nan])
    errors = [0.5, 1.0, 2.0, 3.0, 4.0, 6.0]
    preds = [gap_prediction(0.0, 1.0 + e * z * 0.1, 0.1) for e in errors]
    preds += [gap_prediction(0.9, 50.0, 0.01), gap_prediction(0.0, 50.0, 0.01)]
    assert fit_gap_std_scale(dft, preds) == pytest.approx(6.0, rel=1e-5)  # 90% of six: the sixth
    assert fit_gap_std_scale(dft, preds, coverage=0.5) == pytest.approx(3.0, rel=1e-5)
    scaled = [gap_prediction(p.p_metal, p.gap_if_insulator, p.gap_std * 3.0) for p in preds]
    assert gap_metrics(dft, scaled)["gap_within_90_interval"] == pytest.approx(3 / 6)  # 0.5, 1, 2 (3 on the edge: out)
    assert fit_gap_std_scale(dft[:4], preds[:4]) is None  # too few gapped crystals to fit on
    assert fit_gap_std_scale(dft[:6], [gap_from_dos(INSULATOR_DOS)] * 6) is None  # no head, no std
    with pytest.raises(OptionError, match="coverage"):
        fit_gap_std_scale(dft, preds, coverage=1.0)


# ----------------------------------------------------------------------------------- an old model file


def _old_forward(model, batch: Batch) -> torch.Tensor:
    """The system branch exactly as the model computed it before it had a gap head (commit 7e8a756)."""
    h = model.embedder(batch)
    pooled = scatter(h, batch.batch, dim=0, dim_size=batch.num_graphs, reduce=model.cfg.pool)
    g = model.material(pooled)
    atoms, mask = to_dense_batch(h, batch.batch, batch_size=batch.num_graphs, max_num_nodes=max_atoms(batch))
    return model.branch_outputs(batch, g, atoms, mask, model.energy(None), ("system",))["system"].clamp_min(0.0)


def test_shipped_edos_model_loads_and_predicts_as_before() -> None:
    from ase_dostransformer.batching import graph_recipe, predict_graphs
    from ase_dostransformer.model.files import read_model_file
    from ase_dostransformer.pretrained import model_path

    path = model_path("electron-v1")  # the electron model shipped before the head existed
    blob = read_model_file(path)
    assert "gap_head" not in blob["config"]  # written before the head existed
    model, _ = load_model_file(path)
    assert model.cfg.gap_head is False
    assert model.gap_head is None
    assert set(model.state_dict()) == set(blob["state_dict"])  # no new weights
    structures = [bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.6), bulk("NaCl", "rocksalt", a=5.64)]
    graphs = [graph_recipe(model).featurise(s) for s in structures]
    pred = predict_graphs(model, graphs)
    with torch.no_grad():
        old = _old_forward(model, Batch.from_data_list(graphs)).double().numpy()
    np.testing.assert_array_equal(pred, old)
    if blob.get("sha256") and path.name == "electron-v1.pt":  # the file shipped when the head was added
        from ase_dostransformer.io.checksums import file_sha256

        if file_sha256(path) == "4a18da45ef35b2ea65f87c3cdb46f09a4f23d7e8b7ee56e206440f7b539d01a9":
            # spectra sums printed by the code before the gap head
            assert pred.sum(axis=1) == pytest.approx([117.3482346945, 40.673438184, 33.0691444688], rel=1e-5)
    gaps = predict_gap(model, graphs)  # no head: the DOS read, flagged
    assert [g.gap for g in gaps] == [band_gap_estimate(y).gap for y in pred]
    assert all(g.from_dos for g in gaps)


# ------------------------------------------------------------------------------ a tiny model with a head


@pytest.fixture(scope="module")
def gap_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ase_dostransformer.io.electron_dataset import build_edos_dataset

    files = [LABELS / "dft_gpaw_metals" / f"{m}.json.gz" for m in METALS]
    files += [LABELS / "dft_gpaw" / f"{m}.json.gz" for m in INSULATORS]
    out = tmp_path_factory.mktemp("gap-data")
    assert build_edos_dataset(files, out).kept == len(files)
    return out


@pytest.fixture(scope="module")
def gap_run(gap_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    from ase_dostransformer.training.run import train

    out = tmp_path_factory.mktemp("gap-run")
    opts = TrainOptions(
        out=str(out), data=str(gap_data), task="electron", dataset="random", epochs=8, gap_head=True, gap_weight=1.0
    )
    return out, train(TrainOptions(**(vars(opts) | TINY)))


def _logged(run: Path, key: str) -> list[float]:
    rows = csv.DictReader(next((run / "logs").rglob("metrics.csv")).open())
    return [float(r[key]) for r in rows if r.get(key)]


def test_tiny_model_with_a_gap_head_learns_the_gaps(gap_run, gap_data: Path) -> None:
    from ase_dostransformer.io.electron_dataset import load_edos_dataset

    run, summary = gap_run
    loss = _logged(run, "train_gap_loss")
    assert len(loss) == 8
    assert np.mean(loss[-3:]) < loss[0] - 0.2  # the gap terms go down (3.27 -> 2.65 when written)
    # the class weight: the training split's insulators / metals, recorded with the options
    ds = load_edos_dataset(gap_data)
    from ase_dostransformer.training.tasks import evaluation_data

    _, _, split = evaluation_data("electron", str(gap_data), "random", 0)
    # the validation figures of electronic.gap_metrics, every epoch: a balanced accuracy in [0, 1] (the
    # recall of the one class when the validation part holds one), a gap MAE only over gapped crystals
    valid_gaps = band_gap_targets([ds.rows[i] for i in split["valid"]])
    balanced, mae = _logged(run, "val_metal_balanced_accuracy"), _logged(run, "val_gap_mae")
    assert len(balanced) == len(mae) == 8
    assert all(0.0 <= b <= 1.0 for b in balanced)
    gapped = int((~is_metal(valid_gaps[np.isfinite(valid_gaps)])).sum())
    assert all((0.0 <= m < 10.0) if gapped else np.isnan(m) for m in mae)
    train_gaps = band_gap_targets([ds.rows[i] for i in split["train"]])
    assert summary["options"]["gap_pos_weight"] == pytest.approx(metal_pos_weight(train_gaps))
    assert summary["options"]["gap_head"] is True
    model, meta = load_model_file(run / "model.pt")
    assert model.cfg.gap_head
    assert model.gap_head is not None
    assert json.loads((run / "metrics.json").read_text())["options"]["gap_weight"] == 1.0


def test_calculator_returns_the_heads_gap_prediction(gap_run) -> None:
    from ase_dostransformer.calculator import DOSCalculator

    run, _ = gap_run
    calc = DOSCalculator(model=None, electron_model=run / "model.pt")
    atoms = bulk("Cu", "fcc", a=3.6)
    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # out-of-domain findings of a tiny model
        gap = calc.get_band_gap()
        assert isinstance(gap, GapPrediction)
        assert not gap.from_dos
        assert 0.0 <= gap.p_metal <= 1.0
        assert gap.gap_std > 0
        assert gap.gap == 0.0 or gap.gap == gap.gap_if_insulator
        assert calc.results["band_gap"] == gap.gap
        assert calc.results["band_gap_flags"] == list(gap.flags)
        assert "electron_dos" in calc.results
        assert not calc.calculation_required(atoms, ["band_gap"])  # cached until the atoms change
        est = calc.get_band_gap_estimate()
        assert (est.gap, est.valence_edge, est.conduction_edge) == (gap.gap, 0.0, gap.gap)
        atoms.positions[0, 0] += 0.01
        assert calc.calculation_required(atoms, ["band_gap"])
    (direct,) = predict_gap(calc.electron_model, [calc.electron_model.graph_recipe.featurise(bulk("Cu", a=3.6))])
    assert direct.gap == pytest.approx(gap.gap)
    assert direct.flags == gap.flags


def test_ensemble_combines_its_members(gap_run) -> None:
    from ase_dostransformer.batching import graph_recipe

    run, _ = gap_run
    a, _ = load_model_file(run / "model.pt")
    b, _ = load_model_file(run / "model.pt")
    with torch.no_grad():
        b.gap_head.net[-1].bias += torch.tensor([1.0, 0.5, 0.3])  # another member: other numbers
    graphs = [graph_recipe(a).featurise(s) for s in (bulk("Cu", "fcc", a=3.6), bulk("Si", "diamond", a=5.43))]
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        raw = [m.spectra_and_gap(batch, branches=("system",))[1] for m in (a, b)]
    logit, mean, log_std = (torch.stack(t).numpy() for t in zip(*(gap_parameters(r) for r in raw), strict=True))
    p, gap, std = combine_members(logit, mean, np.exp(log_std))
    got = predict_gap(DOSEnsemble([a, b]), graphs)
    for k, g in enumerate(got):
        assert g.p_metal == pytest.approx(p[k], rel=1e-5)
        assert g.gap_if_insulator == pytest.approx(gap[k], rel=1e-5)
        assert g.gap_std == pytest.approx(std[k], rel=1e-5)
        rms = math.sqrt((math.exp(2 * log_std[0, k]) + math.exp(2 * log_std[1, k])) / 2)
        assert g.gap_std > rms * 1.001  # the members' disagreement adds to their own variance
    single = predict_gap(a, graphs)
    assert single[0].gap_std == pytest.approx(math.exp(log_std[0, 0]), rel=1e-5)


def test_gap_std_scale_is_fitted_on_validation_written_and_applied(gap_run, gap_data: Path, tmp_path: Path) -> None:
    from ase_dostransformer.io.electron_dataset import load_edos_dataset
    from ase_dostransformer.training.run import export_run
    from ase_dostransformer.training.tasks import evaluation_data

    run, summary = gap_run
    model, _ = load_model_file(run / "model.pt")
    assert gap_std_scale(model) == 1.0  # its own validation part holds too few gapped crystals to fit on
    sha, graphs, _ = evaluation_data("electron", str(gap_data), "random", 0)
    gaps = band_gap_targets(load_edos_dataset(gap_data).rows)
    gapped = np.flatnonzero(gaps >= METAL_GAP)
    assert len(gapped) == 5
    # written into the file when the validation part has enough gapped crystals
    split = {"train": np.flatnonzero(gaps < METAL_GAP), "valid": gapped, "test": gapped}
    opts = TrainOptions(**(summary["options"] | {"out": str(tmp_path)}))
    export_run(opts, next((run / "checkpoints").glob("*.ckpt")), {}, sha, graphs, split)
    calibrated, meta = load_model_file(tmp_path / "model.pt")
    scale = meta[GAP_STD_SCALE_KEY]
    assert scale == pytest.approx(calibrate_gap_std(model, [graphs[i] for i in gapped]), rel=1e-5)
    assert json.loads((tmp_path / "metrics.json").read_text())[GAP_STD_SCALE_KEY] == pytest.approx(scale)
    # applied: every std times the scale, and the calibrated intervals cover 90% of those crystals (here: all 5)
    raw = predict_gap(model, [graphs[i] for i in gapped])
    got = predict_gap(calibrated, [graphs[i] for i in gapped])
    assert [g.gap_std for g in got] == pytest.approx([scale * r.gap_std for r in raw], rel=1e-5)
    assert [g.gap_if_insulator for g in got] == pytest.approx([r.gap_if_insulator for r in raw], rel=1e-6)
    assert gap_metrics(gaps[gapped], got)["gap_within_90_interval"] == 1.0
    assert calibrate_gap_std(calibrated, [graphs[i] for i in gapped]) == pytest.approx(scale, rel=1e-5)  # a fixed point

    # an ensemble keeps its members' factors: in memory, and through an ensemble file (two copies: no spread)
    from ase_dostransformer.cli import main as cli_main
    from ase_dostransformer.model.files import combine_model_files

    in_memory = predict_gap(DOSEnsemble([calibrated, load_model_file(tmp_path / "model.pt")[0]]), graphs[:3])
    ens_file = combine_model_files([tmp_path / "model.pt"] * 2, tmp_path / "ens.pt")
    from_file = predict_gap(load_model_file(ens_file)[0], graphs[:3])
    alone = predict_gap(calibrated, graphs[:3])
    assert [g.gap_std for g in in_memory] == pytest.approx([g.gap_std for g in alone], rel=1e-5)
    assert [g.gap_std for g in from_file] == pytest.approx([g.gap_std for g in alone], rel=1e-5)
    # `dostransformer calibrate` fits the ensemble's own factor on the split's validation part, on top of them
    from ase_dostransformer.model.files import save_model_file

    other, _ = load_model_file(tmp_path / "model.pt")
    torch.manual_seed(3)
    with torch.no_grad():  # a second member that disagrees a little (the spectral calibration needs a spread)
        for p in other.parameters():
            p.add_(0.02 * torch.randn_like(p))
    pair = combine_model_files(
        [tmp_path / "model.pt", save_model_file(other, tmp_path / "other.pt", meta=meta)], tmp_path / "pair.pt"
    )
    ids = load_edos_dataset(gap_data).ids
    split_file = tmp_path / "split.json"
    metals = [ids[i] for i in split["train"]]
    split_file.write_text(json.dumps({"train": metals[:2], "valid": [ids[i] for i in gapped], "test": metals[2:]}))
    args = ["calibrate", str(pair), "--out", str(tmp_path / "cal.pt"), "--data", str(gap_data)]
    assert cli_main([*args, "--dataset", str(split_file), "--threads", "1"]) == 0
    cal, cal_meta = load_model_file(tmp_path / "cal.pt")
    factor = cal_meta[GAP_STD_SCALE_KEY]
    assert factor == pytest.approx(calibrate_gap_std(load_model_file(pair)[0], [graphs[i] for i in gapped]))
    before = predict_gap(load_model_file(pair)[0], graphs[:3])
    assert [g.gap_std for g in predict_gap(cal, graphs[:3])] == pytest.approx([factor * g.gap_std for g in before])
    assert gap_metrics(gaps[gapped], predict_gap(cal, [graphs[i] for i in gapped]))["gap_within_90_interval"] == 1.0

    # fine-tuned on a split whose validation part is too small to fit on: the starting file's factor is kept
    from ase_dostransformer.training.run import train

    tuned = tmp_path / "tuned"
    train(
        TrainOptions(
            out=str(tuned),
            data=str(gap_data),
            task="electron",
            dataset="random",
            epochs=1,
            init_from=str(tmp_path / "model.pt"),
            **TINY,
        )
    )
    assert load_model_file(tuned / "model.pt")[1][GAP_STD_SCALE_KEY] == pytest.approx(scale)

    calibrated.meta[GAP_STD_SCALE_KEY] = -1.0
    with pytest.raises(OptionError, match="gap_std_scale"):
        predict_gap(calibrated, graphs[:1])


def test_export_run_predicts_the_validation_part_once(gap_run, gap_data: Path, tmp_path: Path, monkeypatch) -> None:
    """One pass over the validation crystals gives both their metrics and the gap head's calibration.

    What is written equals what the two steps compute on their own from the exported model, and the
    model sees each validation and test crystal once.
    """
    from ase_dostransformer.io.electron_dataset import load_edos_dataset
    from ase_dostransformer.model.dostransformer import DOSTransformer
    from ase_dostransformer.training.evaluate import evaluate_split
    from ase_dostransformer.training.run import export_run
    from ase_dostransformer.training.tasks import evaluation_data

    run, summary = gap_run
    sha, graphs, _ = evaluation_data("electron", str(gap_data), "random", 0)
    gaps = band_gap_targets(load_edos_dataset(gap_data).rows)
    gapped, metals = np.flatnonzero(gaps >= METAL_GAP), np.flatnonzero(gaps < METAL_GAP)
    split = {"train": metals, "valid": gapped, "test": gapped[:2]}
    opts = TrainOptions(**(summary["options"] | {"out": str(tmp_path)}))
    seen: list[int] = []
    forward = DOSTransformer.forward

    def counting(self, batch, *args, **kwargs):
        seen.append(int(batch.num_graphs))
        return forward(self, batch, *args, **kwargs)

    monkeypatch.setattr(DOSTransformer, "forward", counting)
    written = export_run(opts, next((run / "checkpoints").glob("*.ckpt")), {}, sha, graphs, split)
    assert sum(seen) == len(split["valid"]) + len(split["test"])
    monkeypatch.setattr(DOSTransformer, "forward", forward)

    model, meta = load_model_file(tmp_path / "model.pt")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    expected = evaluate_split(model, graphs, split)
    assert set(expected) == {"valid", "test"}
    assert metrics["metrics"] == written["metrics"] == meta["metrics"] == expected
    written_scale = meta[GAP_STD_SCALE_KEY]
    model.meta.pop(GAP_STD_SCALE_KEY)  # the exported weights as they left training: fitted afresh
    assert gap_std_scale(model) == 1.0
    assert metrics[GAP_STD_SCALE_KEY] == written_scale == calibrate_gap_std(model, [graphs[i] for i in gapped])


def test_fine_tuning_adds_a_gap_head_to_a_model_without_one(gap_run, gap_data: Path, tmp_path: Path) -> None:
    from ase_dostransformer.training.run import train

    def options(out: Path, **kw) -> TrainOptions:
        return TrainOptions(out=str(out), data=str(gap_data), task="electron", dataset="random", epochs=1, **TINY, **kw)

    train(options(tmp_path / "plain"))
    plain, _ = load_model_file(tmp_path / "plain" / "model.pt")
    assert plain.gap_head is None
    summary = train(options(tmp_path / "tuned", init_from=str(tmp_path / "plain" / "model.pt"), gap_head=True))
    tuned, _ = load_model_file(tmp_path / "tuned" / "model.pt")
    assert tuned.gap_head is not None
    assert summary["options"]["gap_head"] is True
    assert summary["init_from"] == str(tmp_path / "plain" / "model.pt")
