"""DOSTransformer: shapes, padding masks, prompts, energy encodings, non-negativity, save/load."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk
from torch_geometric.data import Batch

from ase_dostransformer.graphs import PhononGraphRecipe
from ase_dostransformer.model import DOSTransformer, ModelConfig, load_model_file, save_model_file
from ase_dostransformer.model.files import ModelFileError

RECIPE = PhononGraphRecipe()


def small_config(**kw) -> ModelConfig:
    return ModelConfig(hidden=32, layers=2, transformer=1, heads=4, dropout=0.0, **kw)


@pytest.fixture(scope="module")
def graphs() -> list:
    return [
        RECIPE.featurise(bulk("NaCl", "rocksalt", a=5.64)),
        RECIPE.featurise(bulk("ZnO", "wurtzite", a=3.25, c=5.21) * (2, 2, 1)),  # 16 atoms
        RECIPE.featurise(bulk("Si", "diamond", a=5.43)),
    ]


def make_model(**kw) -> DOSTransformer:
    torch.manual_seed(0)
    return DOSTransformer(small_config(**kw)).eval()


def test_output_shapes_and_non_negative(graphs) -> None:
    model = make_model()
    out = model(Batch.from_data_list(graphs))
    assert set(out) == {"global", "system"}
    for v in out.values():
        assert v.shape == (3, 51)
        assert (v >= 0).all()
    raw = model(Batch.from_data_list(graphs), raw=True)
    assert torch.equal(raw["system"].clamp_min(0), out["system"])


@pytest.mark.parametrize("encoding", ["table", "value"])
def test_padding_atoms_do_not_change_a_prediction(graphs, encoding) -> None:
    """NaCl (2 atoms) batched with a 16-atom crystal is padded with 14 masked atoms."""
    model = make_model(energy_encoding=encoding)
    with torch.no_grad():
        alone = model(Batch.from_data_list([graphs[0]]))["system"]
        batched = model(Batch.from_data_list(graphs))["system"][0:1]
        reordered = model(Batch.from_data_list([graphs[1], graphs[2], graphs[0]]))["system"][2:3]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(reordered, alone, atol=1e-5, rtol=1e-5)


def test_padding_would_matter_without_the_mask(graphs) -> None:
    """The masking test above can fail: unmasked padding changes the answer."""
    from ase_dostransformer.model import attention

    model = make_model()
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        masked = model(batch)["system"][0]
        original = attention.MultiHeadAttention.forward
        try:
            attention.MultiHeadAttention.forward = lambda self, x, mem, key_mask: original(self, x, mem, None)
            unmasked = model(batch)["system"][0]
        finally:
            attention.MultiHeadAttention.forward = original
    assert (masked - unmasked).abs().max() > 1e-4


def test_prompts_change_the_system_branch_only(graphs) -> None:
    model = make_model()
    batch = Batch.from_data_list(graphs[:1])
    with torch.no_grad():
        before = model(batch)
        model.prompts[0] += 1.0  # NaCl is cubic (index 0)
        after = model(batch)
    torch.testing.assert_close(before["global"], after["global"])
    assert (before["system"] - after["system"]).abs().max() > 1e-4


def test_unseen_system_gets_mean_prompt() -> None:
    model = make_model()
    model.set_seen_systems(torch.tensor([0, 1, 0]))
    p = model.prompt(torch.tensor([0, 1, 5]))
    torch.testing.assert_close(p[0], model.prompts[0])
    torch.testing.assert_close(p[2], model.prompts[:2].mean(dim=0))


def test_value_encoding_queries_another_grid(graphs) -> None:
    model = make_model(energy_encoding="value")
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        fine = model(batch, energies=torch.linspace(0, 1, 101))["system"]
        default = model(batch)["system"]
    assert fine.shape == (3, 101)
    torch.testing.assert_close(fine[:, ::2], default, atol=1e-5, rtol=1e-5)  # same energies, same answer


def test_table_encoding_refuses_another_grid(graphs) -> None:
    model = make_model()
    with pytest.raises(ValueError, match="training grid"):
        model(Batch.from_data_list(graphs), energies=torch.linspace(0, 1, 101))


@pytest.mark.parametrize("embedder", ["graph_network", "mlp"])
def test_gradients_reach_every_parameter(graphs, embedder) -> None:
    model = make_model(embedder=embedder).train()
    out = model(Batch.from_data_list(graphs), raw=True)
    (out["global"].sum() + out["system"].sum()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_save_load_round_trip(tmp_path, graphs) -> None:
    model = make_model(energy_encoding="value")
    model.set_seen_systems(torch.tensor([0, 2]))
    path = save_model_file(model, tmp_path / "m.pt", meta={"note": "test"})
    loaded, meta = load_model_file(path)
    assert meta == {"note": "test"}
    assert loaded.cfg == model.cfg
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch)["system"], model(batch)["system"], atol=0, rtol=0)
    assert loaded.seen_systems.tolist() == model.seen_systems.tolist()


def test_damaged_model_file_is_a_clear_error(tmp_path) -> None:
    path = save_model_file(make_model(), tmp_path / "m.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="damaged or truncated"):
        load_model_file(path)
    (tmp_path / "other.pt").write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        load_model_file(tmp_path / "other.pt")
    with pytest.raises(ModelFileError, match="not found"):
        load_model_file(tmp_path / "missing.pt")


def test_bad_config_is_rejected() -> None:
    with pytest.raises(ValueError, match="embedder"):
        ModelConfig(embedder="dgl")
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(hidden=30, heads=4)
    with pytest.raises(ValueError, match="unknown model config"):
        ModelConfig.from_dict({"hidden": 32, "colour": "red"})


def test_tensornet_embedder_is_rotation_invariant_and_masked(graphs) -> None:
    pytest.importorskip("matgl")
    from ase_dostransformer.graphs import PhononGraphRecipe

    torch.manual_seed(1)
    model = DOSTransformer(small_config(embedder="tensornet", recipe=PhononGraphRecipe().to_dict())).eval()
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.21)
    turned = atoms.copy()
    turned.rotate(37, "z", rotate_cell=True)
    turned.rotate(20, "x", rotate_cell=True)
    with torch.no_grad():
        a = model(Batch.from_data_list([RECIPE.featurise(atoms)]), raw=True)["system"]
        b = model(Batch.from_data_list([RECIPE.featurise(turned)]), raw=True)["system"]
        alone = model(Batch.from_data_list(graphs[:1]), raw=True)["system"]
        batched = model(Batch.from_data_list(graphs), raw=True)["system"][:1]
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=1e-5)
    out = model.train()(Batch.from_data_list(graphs), raw=True)["system"].sum()
    out.backward()
    assert model.embedder.project.weight.grad.abs().sum() > 0


def test_ensemble_is_the_mean_of_its_members_and_round_trips(tmp_path, graphs) -> None:
    from ase_dostransformer.model.ensemble import DOSEnsemble
    from ase_dostransformer.model.files import combine_model_files

    members = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        members.append(DOSTransformer(small_config()).eval())
    members[1].set_seen_systems(torch.tensor([0, 3]))
    paths = [
        save_model_file(m, tmp_path / f"m{i}.pt", meta={"train_elements": [11, 17]}) for i, m in enumerate(members)
    ]
    path = combine_model_files(paths, tmp_path / "ens.pt")
    ens, meta = load_model_file(path)
    assert isinstance(ens, DOSEnsemble)
    assert len(meta["members"]) == 2
    assert meta["train_elements"] == [11, 17]
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        raw = [m(batch, raw=True)["system"] for m in members]
        torch.testing.assert_close(ens(batch)["system"], ((raw[0] + raw[1]) / 2).clamp_min(0), atol=1e-6, rtol=1e-6)
    assert ens.seen_systems.all()  # member 0 saw every system
    with pytest.raises(ValueError, match="another config"):
        DOSEnsemble([members[0], DOSTransformer(small_config(task="edos"))])


def test_training_domains_merge_as_unions() -> None:
    from ase_dostransformer.model.files import merge_training_domains

    a = {"train_elements": [11, 17], "train_max_atoms": 4, "train_volume_per_atom": [10.0, 30.0]}
    b = {"train_elements": [8, 11], "train_max_atoms": 8, "train_volume_per_atom": [5.0, 20.0], "seed": 3}
    both = {"train_elements": [8, 11, 17], "train_max_atoms": 8, "train_volume_per_atom": [5.0, 30.0]}
    assert merge_training_domains([a, b]) == both
    a["train_shortest_bond"] = [1.5, 3.0]  # only one has it: unknown for an ensemble, kept for a fine-tuned model
    assert "train_shortest_bond" not in merge_training_domains([a, b])
    assert merge_training_domains([a, b], require_all=False) == both | {"train_shortest_bond": [1.5, 3.0]}
    assert merge_training_domains([a, {}]) == {}
    assert merge_training_domains([a, {}], require_all=False) == a


def test_fine_tuned_domain_widens_only_what_the_run_measured() -> None:
    from ase_dostransformer.training.run import fine_tuned_domain

    # a starting file without the geometry record (electron-v1's meta): its shipped geometry is used
    start = {
        "data_sha256": "e0a4eb5b9bac97fae2509ac155425d5c1661649aebfb55c5d8804930f0feee1a",
        "train_elements": [8, 3],
    }
    own = {"train_elements": [12, 8], "train_volume_per_atom": [9.0, 10.0]}
    tuned = fine_tuned_domain(own, start)
    assert tuned == {"train_elements": [3, 8, 12], "train_volume_per_atom": [5.6334, 49.9653]}
    assert "train_shortest_bond" not in tuned  # the run did not measure it: unknown, not the start's range alone


def test_ensemble_mixes_seed_and_element_feature_recipes(tmp_path) -> None:
    """A seed-recipe member reads the one-hot prefix of graphs built with element descriptors."""
    from ase_dostransformer.model.ensemble import DOSEnsemble

    rich = PhononGraphRecipe(element_features=True)
    torch.manual_seed(0)
    plain_model = DOSTransformer(small_config(recipe=RECIPE.to_dict())).eval()
    rich_model = DOSTransformer(
        small_config(recipe=rich.to_dict(), node_dim=rich.node_dim, energy_encoding="value")
    ).eval()
    ens = DOSEnsemble([plain_model, rich_model])
    assert ens.cfg.node_dim == 125
    assert ens.cfg.recipe["element_features"]
    atoms = bulk("ZnO", "wurtzite", a=3.25, c=5.21)
    with torch.no_grad():
        a = plain_model(Batch.from_data_list([RECIPE.featurise(atoms)]), raw=True)["system"]
        b = rich_model(Batch.from_data_list([rich.featurise(atoms)]), raw=True)["system"]
        both = ens(Batch.from_data_list([rich.featurise(atoms)]))["system"]
    torch.testing.assert_close(both, ((a + b) / 2).clamp_min(0), atol=1e-6, rtol=1e-6)
    path = save_model_file(ens, tmp_path / "mixed.pt")
    loaded, _ = load_model_file(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(Batch.from_data_list([rich.featurise(atoms)]))["system"], both)


def test_system_branch_alone_equals_the_full_forward(graphs) -> None:
    model = make_model()
    batch = Batch.from_data_list(graphs)
    with torch.no_grad():
        full = model(batch)
        alone = model(batch, branches=("system",))
    assert set(alone) == {"system"}
    torch.testing.assert_close(alone["system"], full["system"], atol=0, rtol=0)


def test_edge_update_equals_the_concatenated_mlp(graphs) -> None:
    """The split first layer (atoms projected before gathering) is the seed's MLP on cat(h_src, h_dst, e)."""
    model = make_model()
    block = model.embedder.blocks[0]
    batch = Batch.from_data_list(graphs)
    torch.manual_seed(1)
    h = torch.randn(batch.num_nodes, 32)
    e = torch.randn(batch.num_edges, 32)
    src, dst = batch.edge_index
    with torch.no_grad():
        reference = block.edge(torch.cat([h[src], h[dst], e], dim=-1))
        split = block.edge_update(h, e, src, dst)
    torch.testing.assert_close(split, reference, atol=1e-5, rtol=1e-5)


def test_cpu_bf16_autocast_runs_attention_in_fp32_and_stays_close(monkeypatch) -> None:
    """Under CPU bf16 autocast the projections run in bf16 and attention in fp32, and spectra stay close.

    Attention stays in fp32 because the CPU bf16 attention kernel is slow; the paper model's spectra
    stay within 0.03 of its fp32 spectra (peaks near 1).
    """
    from ase_dostransformer.inference import graph_recipe, load_task_model
    from ase_dostransformer.model import attention as attention_module

    model = load_task_model("phonon-paper", "phonon").eval()
    recipe = graph_recipe(model)
    crystals = [
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("ZnO", "wurtzite", a=3.25, c=5.21),
        bulk("Si", "diamond", a=5.43),
    ]
    batch = Batch.from_data_list([recipe.featurise(a) for a in crystals])
    seen: list[torch.dtype] = []
    original = attention_module.F.scaled_dot_product_attention

    def spy(q, *args, **kw):
        seen.append(q.dtype)
        return original(q, *args, **kw)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        ref = model(batch, branches=("system",))["system"]
        assert set(seen) == {torch.float32}
        seen.clear()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(batch, branches=("system",))["system"].float()
            projected = model.members[0].cross1.blocks[0].attn.q(torch.randn(1, 2, model.cfg.hidden))
    assert projected.dtype == torch.bfloat16  # autocast really was on for the projections
    assert seen
    assert set(seen) == {torch.float32}
    assert float(ref.max()) > 0.5
    assert float((low - ref).abs().max()) < 0.03


def test_embedders_are_a_registry_and_matgl_loads_only_for_tensornet() -> None:
    import subprocess
    import sys

    from ase_dostransformer.errors import UnknownKindError
    from ase_dostransformer.model import EMBEDDERS
    from ase_dostransformer.model.embedders import build_embedder

    assert tuple(EMBEDDERS) == ("graph_network", "mlp", "tensornet", "foundation", "foundation_gn")
    assert type(build_embedder(small_config(embedder="mlp"))) is EMBEDDERS["mlp"]
    with pytest.raises(ValueError, match="graph_network.*mlp.*tensornet"):
        ModelConfig(embedder="dgl")
    cfg = small_config()
    cfg.embedder = "dgl"  # changed after validation: building still names the registered embedders
    with pytest.raises(UnknownKindError, match="embedder must be one of"):
        build_embedder(cfg)
    code = "\n".join(
        [
            "import sys, ase_dostransformer.model as m",
            "m.DOSTransformer(m.ModelConfig())",
            "assert 'matgl' not in sys.modules",
        ]
    )
    subprocess.run([sys.executable, "-c", code], check=True)
