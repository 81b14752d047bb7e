"""The physical phonon output: its physics by construction, teacher targets and a small training run."""

from __future__ import annotations

import gzip
import itertools
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk
from torch_geometric.data import Batch

from ase_dostransformer.batching import CUSTOM_MASSES_PARTLY_MESSAGE, predict_graphs
from ase_dostransformer.calculator import DOSCalculator
from ase_dostransformer.errors import (
    CustomMassesIgnoredWarning,
    InvalidStructureError,
    OptionError,
    TrainOptionsError,
)
from ase_dostransformer.graphs.cache import recipe_key
from ase_dostransformer.graphs.phonon import PhononGraphRecipe
from ase_dostransformer.model import (
    DOSEnsemble,
    ModelConfig,
    PhysicalDOSTransformer,
    build_model,
    load_model_file,
    save_model_file,
)
from ase_dostransformer.model.physical import scaled_shape
from ase_dostransformer.pipeline import predict_structures
from ase_dostransformer.spectra import PHONON_GRID, WIDE_PHONON_GRID, phonon_dos_to_phonopy, resample_max_normalised
from ase_dostransformer.teacher.records import decode_dos, iter_records, smooth_and_sample
from ase_dostransformer.training.options import TrainOptions
from ase_dostransformer.training.teacher_data import TEACHER_POINTS, TEACHER_SPAN, teacher_sigma_cm1, teacher_target

ROOT = Path(__file__).resolve().parents[1]
RECIPE = PhononGraphRecipe(foundation=True, volume=True)


def physical_model(seed: int = 0, mass_scaling: bool = False) -> PhysicalDOSTransformer:
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
        mass_scaling=mass_scaling,
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


def isotopes(batch: Batch, factor: float) -> Batch:
    """``batch`` with every mass times ``factor``.

    The nodes' one-hot of Z carries the mass; the potential's features (so the force constants) do not.
    """
    heavy = batch.clone()
    heavy.x = batch.x.clone()
    heavy.x[:, :118] *= factor
    return heavy


def test_mass_scaling_rescales_every_frequency_as_one_over_root_mass(batch):
    model = physical_model(4, mass_scaling=True)
    with torch.no_grad():  # a scale head of a trained model's size: frequency scales well inside the range
        model.scale_head[-1].weight.mul_(0.01)
        model.scale_head[-1].bias.zero_()
    heavy = isotopes(batch, 4.0)
    with torch.no_grad():
        f, w = model.heads(batch)
        f4, w4 = model.heads(heavy)
        freqs = torch.linspace(0.0, 4000.0, 801)
        g = model.density(f["system"], w, freqs)
        g4 = model.density(f4["system"], w4, freqs / 2.0)
    # the shape sees mass ratios only; the scale is exactly (4)^-1/2 = 1/2 away from the clamp's ends
    for name in f:
        torch.testing.assert_close(f4[name], f[name], rtol=0, atol=1e-5)
    assert (w > 60).all(), w
    assert (w < 2400).all(), w
    torch.testing.assert_close(w4 / w, torch.full_like(w, 0.5), rtol=0, atol=1e-4)
    # g'(omega / 2) = 2 g(omega): the same states, at half the frequencies
    torch.testing.assert_close(g4, 2.0 * g, rtol=1e-4, atol=1e-7)
    # without mass scaling the masses are learnt columns: the same test fails
    plain = physical_model(4)
    with torch.no_grad():
        plain.scale_head[-1].weight.mul_(0.01)
        plain.scale_head[-1].bias.zero_()
        ratio = plain.heads(heavy)[1] / plain.heads(batch)[1]
    assert ((ratio - 0.5).abs() > 0.05).all(), ratio


def test_mass_scaling_reads_the_harmonic_mean_mass(batch):
    from ase.data import atomic_masses

    from ase_dostransformer.model.masses import harmonic_mean_mass, relative_log_mass

    na, cl = atomic_masses[11], atomic_masses[17]
    m_h = harmonic_mean_mass(batch)
    expected = torch.tensor([2.0 / (1.0 / na + 1.0 / cl), atomic_masses[6], atomic_masses[29]], dtype=m_h.dtype)
    torch.testing.assert_close(m_h, expected)
    rel = relative_log_mass(batch).squeeze(-1)
    assert rel.shape == (batch.num_nodes,)
    torch.testing.assert_close(rel[2:].abs().max(), torch.tensor(0.0))  # C and Cu: one element, ratio 1
    assert rel[0] < 0 < rel[1]  # Na lighter than the harmonic mean, Cl heavier
    with pytest.raises(OptionError, match="mass_scaling=True is for physical phonon models"):
        ModelConfig(mass_scaling=True)
    with pytest.raises(TrainOptionsError, match="--mass_scaling"):
        TrainOptions(mass_scaling=True)
    model = physical_model(5, mass_scaling=True)
    assert model.embedder.node_in[0].in_features == model.embedder.norm.normalized_shape[0] + 1


def mass_scaled_model(seed: int = 4) -> PhysicalDOSTransformer:
    """A small mass-scaled model whose frequency scales lie well inside the soft clamp."""
    model = physical_model(seed, mass_scaling=True)
    with torch.no_grad():
        model.scale_head[-1].weight.mul_(0.01)
        model.scale_head[-1].bias.zero_()
    return model


def mass_scaled_calculator(seed: int = 4) -> DOSCalculator:
    """A calculator of :func:`mass_scaled_model`."""
    return DOSCalculator(model=mass_scaled_model(seed), electron_model=None, device="cpu")


def test_only_mass_scaled_models_take_the_atoms_own_masses(tmp_path):
    scaled, plain = physical_model(1, mass_scaling=True), physical_model(2)
    assert scaled.graph_recipe.own_masses
    assert not plain.graph_recipe.own_masses
    assert "own_masses" not in plain.graph_recipe.to_dict()  # the cache keys of every other recipe are unchanged
    assert recipe_key(scaled.graph_recipe) != recipe_key(plain.graph_recipe)  # graph caches keep the two apart
    loaded, _ = load_model_file(save_model_file(scaled, tmp_path / "scaled.pt"))
    assert loaded.graph_recipe.own_masses  # from the config's mass_scaling, not from a stored recipe
    # an ensemble takes them when a member reads a mass as a mass; it gives the others the standard ones
    mixed = DOSEnsemble([scaled, plain])
    assert mixed.graph_recipe.own_masses
    assert mixed.standard_mass_members == (1,)
    assert not mixed.cfg.mass_scaling  # not every member honours them
    both = DOSEnsemble([scaled, physical_model(3, mass_scaling=True)])
    assert both.graph_recipe.own_masses
    assert both.standard_mass_members == ()
    assert both.cfg.mass_scaling
    assert not DOSEnsemble([plain, physical_model(3)]).graph_recipe.own_masses
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    standard = atoms.get_masses()
    atoms.set_masses(standard * [2.0, 1.0])
    assert scaled.graph_recipe.featurise(atoms).x[[0, 1], [10, 16]].tolist() == pytest.approx(standard * [2.0, 1.0])
    assert plain.graph_recipe.featurise(atoms).x[[0, 1], [10, 16]].tolist() == pytest.approx(standard)
    assert scaled.graph_recipe.ignored_masses(atoms) == []
    assert plain.graph_recipe.ignored_masses(atoms) == [0]


def test_a_mixed_ensemble_honours_masses_in_its_mass_scaled_members_and_says_the_others_ignore_them():
    scaled, plain = mass_scaled_model(), physical_model(2)
    ensemble = DOSEnsemble([scaled, plain])
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    heavy = atoms.copy()
    heavy.set_masses(atoms.get_masses() * [1.0, 2.0])  # Cl twice as heavy
    (p,) = predict_structures(ensemble, [heavy], device="cpu")
    alone = {
        name: predict_structures(m, [heavy], device="cpu")[0].dos for name, m in (("scaled", scaled), ("plain", plain))
    }
    standard = predict_structures(scaled, [atoms], device="cpu")[0].dos
    assert np.abs(alone["scaled"] - standard).max() > 0.01  # the masses matter to the mass-scaled member
    # each member predicts as it does on its own: the mass-scaled one with the custom masses, the other without
    np.testing.assert_allclose(p.members[0], alone["scaled"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(p.members[1], alone["plain"], rtol=0, atol=1e-6)
    # and says that the masses were ignored in part, naming the atoms and the members that ignored them
    message = CUSTOM_MASSES_PARTLY_MESSAGE.format(atoms="[1]", members=[1], total=2)
    assert [f.message for f in p.findings if issubclass(f.category, CustomMassesIgnoredWarning)] == [message]
    assert message.startswith("this ensemble partly ignores the custom masses of atoms [1]: its members [1] (of 2")
    with pytest.warns(CustomMassesIgnoredWarning, match=r"^structure 0: this ensemble partly ignores"):
        y = predict_graphs(ensemble, [ensemble.graph_recipe.featurise(heavy)])  # the graph route too
    np.testing.assert_allclose(y[0], p.dos, rtol=0, atol=1e-6)
    calc = DOSCalculator(model=ensemble, electron_model=None, device="cpu")
    heavy.calc = calc
    with pytest.warns(CustomMassesIgnoredWarning, match="partly ignores"):
        calc.get_property("phonon_dos", heavy)
    assert message in calc.results["phonon_dos_warnings"]
    # every member mass-scaled: nothing ignored, nothing said
    (q,) = predict_structures(DOSEnsemble([scaled, mass_scaled_model(5)]), [heavy], device="cpu")
    assert not any(issubclass(f.category, CustomMassesIgnoredWarning) for f in q.findings)


def test_calculator_follows_isotope_masses_exactly_with_a_mass_scaled_model():
    calc = mass_scaled_calculator()
    counter = []
    calc.model.register_forward_hook(lambda *_: counter.append(1))
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.calc = calc
    with warnings.catch_warnings():
        warnings.simplefilter("error", CustomMassesIgnoredWarning)
        freqs, g = calc.get_phonon_dos_phonopy()
        atoms.set_masses(atoms.get_masses())  # the standard masses, set explicitly: nothing changed
        calc.get_phonon_dos_phonopy()
        assert len(counter) == 1
        atoms.set_masses(4.0 * atoms.get_masses())  # the same Atoms object: the calculator must notice
        _, g4 = calc.get_phonon_dos_phonopy()
    assert len(counter) == 2
    assert calc.results["phonon_dos_warnings"] == []
    half = (len(freqs) + 1) // 2
    np.testing.assert_allclose(freqs[:half], freqs[::2] / 2.0)
    # every mass times 4, every frequency halved: g'(omega / 2) = 2 g(omega), the same 3N states
    assert np.trapezoid(g, freqs) == pytest.approx(6.0)
    assert np.trapezoid(g4, freqs) == pytest.approx(6.0)
    np.testing.assert_allclose(g4[:half], 2.0 * g[::2], rtol=1e-3, atol=1e-5 * g.max())
    assert not g4[half:].any()
    # one species only (37Cl): mass ratios change, so the spectrum does, and not by a rescaling alone
    masses = atoms.get_masses() / 4.0
    masses[atoms.numbers == 17] = 36.96590
    atoms.set_masses(masses)
    _, g37 = calc.get_phonon_dos_phonopy()
    assert len(counter) == 3
    assert np.abs(g37 - g).max() > 0.01 * g.max()


@pytest.mark.parametrize("mass", [0.0, -35.45, float("nan")])
def test_a_mass_scaled_model_refuses_a_mass_that_is_not_finite_and_positive(mass):
    calc = mass_scaled_calculator()
    atoms = bulk("NaCl", "rocksalt", a=5.64)
    atoms.set_masses([atoms.get_masses()[0], mass])
    atoms.calc = calc
    with pytest.raises(InvalidStructureError, match=rf"atom 1 \(Cl\) has mass {mass:g} u: .*finite and positive"):
        calc.get_phonon_dos_phonopy()


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


def test_teacher_targets_smoothed_with_a_fixed_width_when_asked():
    rec = next(iter_records(ROOT / "train" / "teacher" / "strained"))
    top = float(rec["frequencies"]["max_cm1"])
    # the default rule: 4 cm^-1 for soft crystals, 1.5% of the highest mode for stiff ones
    assert teacher_sigma_cm1(100.0) == 4.0
    assert teacher_sigma_cm1(2000.0) == pytest.approx(30.0)
    assert teacher_sigma_cm1(2000.0, 10.0) == 10.0
    freq, total, _ = decode_dos(rec)
    grid = np.linspace(0.0, TEACHER_SPAN * top, TEACHER_POINTS)
    integral = np.trapezoid(np.clip(total, 0.0, None), freq)
    for sigma in (None, 10.0, 25.0):
        expected = smooth_and_sample(freq, np.clip(total, 0.0, None), grid, teacher_sigma_cm1(top, sigma))
        got = teacher_target(rec, sigma)["t_dos"][0].numpy()
        np.testing.assert_allclose(got, expected / integral * top, rtol=1e-5, atol=1e-6 * got.max())
    # a wider Gaussian lowers the sharpest peak
    assert teacher_target(rec, 25.0)["t_dos"].max() < teacher_target(rec, 4.0)["t_dos"].max()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"teacher_sigma": 10.0}, "smooths the teacher spectra: add --teacher"),
        ({"teacher_sigma": 0.0, "teacher": "x"}, "positive finite width"),
        ({"teacher_sigma": float("inf"), "teacher": "x"}, "positive finite width"),
        ({"teacher_sigma": "10", "teacher": "x"}, "must be a number"),
    ],
)
def test_teacher_sigma_is_checked(options, message):
    with pytest.raises(TrainOptionsError, match=message):
        TrainOptions(output="physical", energy_encoding="value", **options)


def test_train_command_takes_the_teacher_width():
    from ase_dostransformer.cli import build_parser

    assert build_parser().parse_args(["train"]).teacher_sigma is None
    assert build_parser().parse_args(["train", "--teacher_sigma", "10"]).teacher_sigma == 10.0


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
        mass_scaling=True,
        pair_weight=1.0,  # the 6 records are strained copies of two crystals: families to pair
        thermo_weight=0.5,
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
    assert model.cfg.mass_scaling
    # the teacher crystals widen the recorded training domain (their elements are in it)
    teacher_elements = {int(z) for rec in iter_records(teacher) for z in rec["structure"]["numbers"]}
    assert teacher_elements <= set(model.training_domain.elements)


def test_volume_response_error_is_the_grueneisen_error_of_same_family_pairs():
    from types import SimpleNamespace

    from ase_dostransformer.training.lightning_module import volume_response_error

    v = torch.tensor([0.96, 1.0, 1.04, 1.0, 1.02, 1.0]) * 20.0
    # family 7: three strains (teacher gamma 2, model gamma 1.5); family 9: one crystal; a crystal of family 7
    # without a teacher target; a crystal of no family (-1)
    family = torch.tensor([7, 7, 7, 9, 7, -1])
    has_teacher = torch.tensor([True, True, True, True, False, True])
    teacher = 300.0 * (v / 20.0) ** -2.0
    model = 280.0 * (v / 20.0) ** -1.5
    batch = SimpleNamespace(t_family=family, has_teacher=has_teacher, volume_per_atom=v, t_mean=teacher)
    assert float(volume_response_error(model, batch)) == pytest.approx(0.5, rel=1e-4)
    assert float(volume_response_error(teacher * 1.07, batch)) == pytest.approx(
        0.0, abs=1e-4
    )  # scale errors do not count
    alone = SimpleNamespace(
        t_family=torch.tensor([1, 2, -1]),
        has_teacher=torch.ones(3, dtype=torch.bool),
        volume_per_atom=v[:3],
        t_mean=teacher[:3],
    )
    assert float(volume_response_error(model[:3], alone)) == 0.0


def test_family_sampler_batches_a_crystal_with_its_strained_copies():
    from torch_geometric.data import Data

    from ase_dostransformer.training.data_module import FamilySampler

    families = [3, 5, 3, -1, 5, 3, 8, -1, 5]
    graphs = [Data(t_family=torch.tensor([f])) for f in families]
    sampler = FamilySampler(graphs, seed=1)
    orders = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        order = list(sampler)
        assert sorted(order) == list(range(len(graphs)))
        for f in (3, 5):  # each family's members are consecutive
            pos = sorted(order.index(i) for i, g in enumerate(families) if g == f)
            assert pos == list(range(pos[0], pos[0] + len(pos)))
        orders.append(order)
    assert orders[0] != orders[1]
    sampler.set_epoch(0)
    assert list(sampler) == orders[0]  # a resumed run sees the same batches
    assert len(sampler.families) == 5  # 3, 5, 8 and the two crystals without a family, each alone


def test_mode_thermodynamics_agree_with_the_package_thermodynamics(batch):
    from ase_dostransformer.thermo import thermal_properties

    model = physical_model(6)
    with torch.no_grad():
        model.scale_head[-1].weight.mul_(0.01)
        f, w = model.heads(batch)
        mine = model.mode_thermodynamics(f["system"], w, (20.0, 50.0), 300.0).numpy()
        fine = torch.linspace(0.0, 4000.0, 40001)
        p = model.density(f["system"], w, fine).numpy()
    thz = fine.numpy() * 0.0299792458
    for k, n_atoms in enumerate((2, 2, 1)):
        g = 3 * n_atoms * p[k] / 0.0299792458  # states per THz per cell
        tp = thermal_properties(thz, g, [20.0, 50.0, 300.0], natoms=n_atoms)
        per_mode = np.array([tp.cv[0], tp.cv[1], tp.entropy[2]]) / (3 * n_atoms * 8.314462618)
        np.testing.assert_allclose(mine[k], per_mode, rtol=2e-3)
    assert (mine[:, 0] < mine[:, 1]).all()  # Cv rises with temperature
    # differentiable everywhere, also where x = hc omega / k_B T is huge (a stiff crystal at 20 K)
    f = {k: v.clone().requires_grad_(True) for k, v in f.items()}
    stiff = torch.full_like(w, 3900.0).requires_grad_(True)
    model.mode_thermodynamics(f["system"], stiff, (5.0, 20.0), 300.0).sum().backward()
    assert torch.isfinite(f["system"].grad).all()
    assert torch.isfinite(stiff.grad).all()


def test_thermo_target_is_the_record_per_mode():
    from ase_dostransformer.training.teacher_data import thermo_target

    rec = next(iter(iter_records(ROOT / "train" / "teacher" / "strained")))
    th = rec["thermal"]
    modes = 3 * len(rec["structure"]["numbers"])
    expected = [th["cv"][1], th["cv"][3], th["entropy"][9]]  # 20, 50 and 300 K
    assert [th["temperatures"][i] for i in (1, 3, 9)] == [20.0, 50.0, 300.0]
    np.testing.assert_allclose(thermo_target(rec)[0].numpy(), np.array(expected) / (modes * 8.314462618), rtol=1e-6)
    assert 0 < thermo_target(rec)[0, 2] < 10  # an entropy per mode of a few k_B at 300 K


def test_volume_response_term_trains_the_frequency_scale_head_alone(batch):
    from ase_dostransformer.training.lightning_module import PhysicalDOSModule

    model = physical_model(7, mass_scaling=True)
    module = PhysicalDOSModule(model.cfg.to_dict(), teacher_weight=0.0, mean_weight=0.0, pair_weight=1.0)
    module.model.load_state_dict(model.state_dict())
    b = batch.num_graphs
    fam = batch.clone()
    fam.has_dft = torch.zeros(b, dtype=torch.bool)
    fam.has_teacher = torch.ones(b, dtype=torch.bool)
    fam.t_family = torch.full((b,), 7)  # one family: every crystal paired with every other
    fam.t_top = torch.full((b,), 500.0)
    fam.t_dos = torch.zeros(b, TEACHER_POINTS)
    fam.t_mean = torch.tensor([300.0, 900.0, 200.0])
    fam.y = torch.zeros(b, 51)
    torch.manual_seed(0)  # the same dropout masks for both modules
    _, _, _, extra = module._losses(fam, ("global", "system"))
    assert float(extra) > 0
    extra.backward()
    grads = {n: p.grad for n, p in module.model.named_parameters()}
    assert any(g is not None and g.abs().sum() > 0 for n, g in grads.items() if n.startswith("scale_head."))
    others = [n for n, g in grads.items() if not n.startswith("scale_head.") and g is not None and g.abs().sum() > 0]
    assert others == []  # the encoder, the attention and the shape head are untouched by this term

    whole = PhysicalDOSModule(
        model.cfg.to_dict(), teacher_weight=0.0, mean_weight=0.0, pair_weight=1.0, pair_through="network"
    )
    whole.model.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    _, _, _, extra_whole = whole._losses(fam, ("global", "system"))
    assert float(extra_whole) == pytest.approx(float(extra), rel=1e-6)  # the same value, other gradients
    extra_whole.backward()
    params = whole.model.named_parameters()
    reached = {n.split(".")[0] for n, p in params if p.grad is not None and p.grad.abs().sum() > 0}
    assert "scale_head" in reached
    assert len(reached) > 3  # the encoder, the attention and the shape head learn from it too
