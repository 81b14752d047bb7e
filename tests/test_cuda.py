"""Checks that need an NVIDIA GPU (skipped elsewhere; run by benchmarks/gpu_check.sh)."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk
from torch_geometric.data import Batch

from ase_dostransformer.graphs import PhononGraphRecipe
from ase_dostransformer.model import DOSTransformer, ModelConfig
from ase_dostransformer.training.metrics import dostransformer_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

RECIPE = PhononGraphRecipe()


def batch() -> Batch:
    structures = [
        bulk("NaCl", "rocksalt", a=5.64),
        bulk("ZnO", "wurtzite", a=3.25, c=5.21) * (2, 2, 1),
        bulk("Si", "diamond", a=5.43),
    ]
    return Batch.from_data_list([RECIPE.featurise(s) for s in structures])


def model() -> DOSTransformer:
    torch.manual_seed(0)
    return DOSTransformer(ModelConfig(hidden=128, dropout=0.0)).eval()


def test_gpu_matches_cpu() -> None:
    m, b = model(), batch()
    with torch.no_grad():
        cpu = m(b)["system"]
        gpu = m.cuda()(b.cuda())["system"].cpu()
    torch.testing.assert_close(gpu, cpu, atol=2e-4, rtol=2e-3)


def test_bf16_autocast_close_to_fp32() -> None:
    m, b = model().cuda(), batch().cuda()
    with torch.no_grad():
        ref = m(b)["system"]
        with torch.autocast("cuda", dtype=torch.bfloat16):
            low = m(b)["system"].float()
    assert (low - ref).abs().max() < 0.05


def test_training_step_has_no_host_device_sync() -> None:
    m, b = model().cuda().train(), batch().cuda()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
    y = b.y if getattr(b, "y", None) is not None else torch.rand(b.num_graphs, 51, device="cuda")
    for step in range(2):  # the first step warms up; the second must not synchronise
        if step == 1:
            torch.cuda.set_sync_debug_mode("error")
        try:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = dostransformer_loss(m(b, raw=True), y, beta=1.0)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()
