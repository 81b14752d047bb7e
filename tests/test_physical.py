"""The physical phonon output: its physics by construction, teacher targets and a small training run."""

from __future__ import annotations

import gzip
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from torch_geometric.data import Batch

from ase_dostransformer.errors import OptionError, TrainOptionsError
from ase_dostransformer.graphs.phonon import PhononGraphRecipe
from ase_dostransformer.model import ModelConfig, PhysicalDOSTransformer, build_model, load_model_file
from ase_dostransformer.model.physical import scaled_shape
from ase_dostransformer.spectra import PHONON_GRID, WIDE_PHONON_GRID, phonon_dos_to_phonopy, resample_max_normalised
from ase_dostransformer.teacher.records import decode_dos, iter_records
from ase_dostransformer.training.options import TrainOptions
from ase_dostransformer.training.teacher_data import TEACHER_POINTS, TEACHER_SPAN, teacher_target

ROOT = Path(__file__).resolve().parents[1]
RECIPE = PhononGraphRecipe(foundation=True, volume=True)


def physical_model(seed: int = 0) -> PhysicalDOSTransformer:
    torch.manual_seed(seed)
    cfg = ModelConfig(
        hidden=32,
        layers=1,
        transformer=1,
        heads=4,
        embedder="foundation",
        energy_encoding="value",
        output="physical",
        grid=WIDE_PHONON_GRID,
        node_dim=RECIPE.node_dim,
        recipe=RECIPE.to_dict(),
    )
    model = build_model(cfg)
    # a non-trivial head: random output weights, so f varies with energy and crystal
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model.eval()


def crystals() -> list:
    return [bulk("NaCl", "rocksalt", a=5.64), bulk("C", "diamond", a=3.567), bulk("Cu", "fcc", a=3.61)]


@pytest.fixture(scope="module")
def batch() -> Batch:
    return Batch.from_data_list([RECIPE.featurise(a) for a in crystals()])


def test_physical_config_is_checked():
    with pytest.raises(OptionError, match="energy_encoding='value'"):
        ModelConfig(output="physical")
    with pytest.raises(OptionError, match="output must be one of"):
        ModelConfig(output="spectral")
    with pytest.raises(TrainOptionsError, match="--output physical"):
        TrainOptions(teacher="somewhere")
    assert isinstance(physical_model(), PhysicalDOSTransformer)


def test_dos_is_zero_at_zero_with_an_omega_squared_onset(batch):
    model = physical_model()
    with torch.no_grad():
        dos = model(batch)["system"].numpy()
        f, omega_max = model.heads(batch)
    assert dos.shape == (3, WIDE_PHONON_GRID.npoints)
    assert np.all(dos[:, 0] == 0.0)
    assert np.all(dos >= 0.0)
    np.testing.assert_allclose(dos.max(axis=1), 1.0, rtol=1e-6)
    # power law of the lowest bins: 2 as omega -> 0, whatever the weights
    # exactly a * omega^2 below 5% of omega_max (DEBYE_FRACTION): the exponent between 1% and 4% is 2
    freqs = torch.stack([0.01 * omega_max, 0.04 * omega_max], dim=1)
    with torch.no_grad():
        p = model.density(f["system"], omega_max, freqs).numpy()
    exponent = np.log(p[:, 1] / p[:, 0]) / np.log(4.0)
    np.testing.assert_allclose(exponent, 2.0, atol=1e-4)
    # nothing above the predicted highest frequency
    top = omega_max.numpy()
    grid = WIDE_PHONON_GRID.values
    for row, w in zip(dos, top, strict=True):
        assert np.all(row[grid >= w] == 0.0)
        assert row[grid < w].max() > 0


def test_density_integrates_to_one_and_exports_to_3n(batch):
    model = physical_model(1)
    with torch.no_grad():
        f, omega_max = model.heads(batch)
        fine = torch.linspace(0.0, 4000.0, 40001)
        p = model.density(f["system"], omega_max, fine)
        dos = model(batch)["system"].numpy()
    np.testing.assert_allclose(torch.trapezoid(p, fine, dim=-1).numpy(), 1.0, atol=2e-3)
    for row, atoms in zip(dos, crystals(), strict=True):
        freq_thz, g = phonon_dos_to_phonopy(row, len(atoms), WIDE_PHONON_GRID)
        assert np.trapezoid(g, freq_thz) == pytest.approx(3 * len(atoms), rel=1e-9)
    # the first moment the loss uses is the moment of this density
    mean = model.mean_frequency(f["system"], omega_max).detach().numpy()
    np.testing.assert_allclose(mean, torch.trapezoid(fine * p, fine, dim=-1).detach().numpy(), rtol=2e-3)


def test_scaled_shape_tapers_to_zero_at_the_top():
    f = torch.zeros(1, 16)
    x = torch.tensor([[0.0, 0.5, 0.95, 0.999, 1.0, 1.2]])
    s = scaled_shape(f, x)[0].numpy()
    assert s[0] == 0
    assert s[-1] == 0
    assert s[-2] == 0
    assert s[1] == pytest.approx(0.25 * np.log(2.0))
    assert 0 < s[3] < s[2] < 0.95**2 * np.log(2.0)


def test_rigid_rotation_leaves_the_dos_unchanged():
    from scipy.spatial.transform import Rotation

    model = physical_model(2)
    rot = Rotation.random(random_state=0).as_matrix()
    originals = [bulk("GaAs", "zincblende", a=5.65), bulk("ZnO", "wurtzite", a=3.25, c=5.2)]
    rotated = []
    for a in originals:
        b = a.copy()
        b.set_cell(a.cell[:] @ rot.T, scale_atoms=True)
        rotated.append(b)
    with torch.no_grad():
        d0 = model(Batch.from_data_list([RECIPE.featurise(a) for a in originals]))["system"].numpy()
        d1 = model(Batch.from_data_list([RECIPE.featurise(a) for a in rotated]))["system"].numpy()
    assert np.abs(d1 - d0).max() < 1e-5


def test_volume_enters_the_frequency_scale(batch):
    model = physical_model(3)
    with torch.no_grad():
        _, before = model.heads(batch)
        squeezed = batch.clone()
        squeezed.volume_per_atom = batch.volume_per_atom * 0.9
        _, after = model.heads(squeezed)
    assert not torch.allclose(before, after)
    no_volume = Batch.from_data_list([PhononGraphRecipe(foundation=True).featurise(crystals()[0])])
    with pytest.raises(OptionError, match="volume=True"):
        model(no_volume)


def test_resample_to_the_dataset_grid_matches_sampling_on_its_points():
    rng = np.random.default_rng(0)
    dos = rng.random((2, WIDE_PHONON_GRID.npoints))
    out = resample_max_normalised(dos, WIDE_PHONON_GRID, PHONON_GRID)
    every_fourth = dos[:, : 4 * 50 + 1 : 4]
    np.testing.assert_allclose(out, every_fourth / every_fourth.max(axis=1, keepdims=True))


def test_teacher_target_is_the_normalised_smoothed_spectrum():
    rec = next(iter_records(ROOT / "train" / "teacher" / "strained"))
    t = teacher_target(rec)
    top = float(rec["frequencies"]["max_cm1"])
    assert t["t_top"].item() == pytest.approx(top)
    assert t["t_dos"].shape == (1, TEACHER_POINTS)
    # p * top integrates to top over the frequency axis (p integrates to 1), up to the smoothing's leak below 0
    grid = np.linspace(0.0, TEACHER_SPAN * top, TEACHER_POINTS)
    assert np.trapezoid(t["t_dos"][0].numpy() / top, grid) == pytest.approx(1.0, abs=0.05)
    freq, total, _ = decode_dos(rec)
    assert t["t_mean"].item() == pytest.approx(float((freq * total).sum() / total.sum()), rel=1e-4)


def write_teacher_folder(folder: Path, n: int = 6) -> Path:
    """A labelling folder holding ``n`` real teacher records (strained copies of DFT training crystals)."""
    folder.mkdir(parents=True)
    records = list(itertools.islice(iter_records(ROOT / "train" / "teacher" / "strained"), n))
    with gzip.open(folder / "records-00000.jsonl.gz", "wt", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    return folder


def test_training_on_dft_and_teacher_targets_writes_a_physical_model(tiny_dataset, tmp_path):
    from ase_dostransformer.training.run import train

    teacher = write_teacher_folder(tmp_path / "teacher")
    opts = TrainOptions(
        out=str(tmp_path / "run"),
        data=str(tiny_dataset),
        output="physical",
        embedder="foundation",
        energy_encoding="value",
        teacher=str(teacher),
        hidden=16,
        heads=2,
        layers=1,
        transformer=1,
        epochs=2,
        eval=1,
        batch_size=8,
        precision="32-true",
        threads=1,
    )
    report = train(opts)
    assert report["split_sizes"]["train"] == 12 + 6  # the teacher crystals join the training part only
    assert report["split_sizes"]["valid"] == 4
    m = report["metrics"]["test"]["model"]
    assert m["n"] == 4
    assert np.isfinite(m["mse_x10"])
    model, _ = load_model_file(tmp_path / "run" / "model.pt")
    assert isinstance(model, PhysicalDOSTransformer)
    assert model.cfg.grid == WIDE_PHONON_GRID
    # the teacher crystals widen the recorded training domain (their elements are in it)
    teacher_elements = {int(z) for rec in iter_records(teacher) for z in rec["structure"]["numbers"]}
    assert teacher_elements <= set(model.training_domain.elements)
