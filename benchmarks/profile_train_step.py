"""Where one phonon training step spends its time, at the default hyper-parameters.

Usage: python benchmarks/profile_train_step.py [--threads 1] [--steps 20] [--hidden 256] [--bf16]

Runs forward + backward + AdamW on real training batches (batch 32) without Lightning and prints
the process CPU seconds per step (fair on a busy machine when --threads is 1) and the share of the
time in each part of the model (torch.profiler, self CPU time grouped by module).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None, help="phonon dataset folder (default: $DOSTRANSFORMER_PHDOS)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bf16", action="store_true", help="CPU bf16 autocast")
    parser.add_argument("--no-profile", action="store_true", help="only the timing")
    args = parser.parse_args()

    import torch
    from torch_geometric.loader import DataLoader

    from ase_dostransformer.kinds import get_kind
    from ase_dostransformer.model import DOSTransformer
    from ase_dostransformer.training.metrics import dostransformer_loss
    from ase_dostransformer.training.options import TrainOptions
    from ase_dostransformer.training.tasks import model_config

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    opts = TrainOptions(hidden=args.hidden, batch_size=args.batch_size)
    data = get_kind("phonon").training_set(args.data, opts)  # the seed's recipe, cached graphs
    train = [data.graphs[i] for i in data.official["train"]]
    model = DOSTransformer(model_config(opts, data.recipe))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=1e-2)
    batches = list(DataLoader(train, batch_size=args.batch_size, shuffle=True))
    n_atoms = sum(b.num_nodes for b in batches) / len(batches)
    n_edges = sum(b.num_edges for b in batches) / len(batches)
    print(
        f"load average {os.getloadavg()[0]:.2f}, threads {torch.get_num_threads()}, hidden {args.hidden}, "
        f"batch {args.batch_size}: {n_atoms:.0f} atoms, {n_edges:.0f} edges a batch; bf16 {args.bf16}"
    )

    def step(batch) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = dostransformer_loss(model(batch, raw=True), batch.y, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for b in batches[:3]:  # warm-up
        step(b)
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(args.steps):
        step(batches[i % len(batches)])
    cpu, wall = (time.process_time() - cpu) / args.steps, (time.perf_counter() - wall) / args.steps
    print(
        f"step: {cpu:.3f} CPU-s, {wall:.3f} wall-s; an epoch of {len(train)} materials "
        f"= {len(batches)} steps = {cpu * len(batches):.1f} CPU-s"
    )
    if args.no_profile:
        return 0

    from torch.profiler import ProfilerActivity, profile, record_function

    parts = {
        "graph network (embedder)": model.embedder,
        "cross-attention 1 (energies -> atoms)": model.cross1,
        "self-attention (both branches)": model.self_attn,
        "cross-attention 2 (both branches)": model.cross2,
    }
    hooks = []
    for name, mod in parts.items():
        ctx: dict = {}

        def pre(_m, _i, name=name, ctx=ctx) -> None:
            ctx["r"] = record_function(f"part::{name}")
            ctx["r"].__enter__()

        def post(_m, _i, _o, ctx=ctx) -> None:
            ctx["r"].__exit__(None, None, None)

        hooks += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(5):
            step(batches[i])
    for h in hooks:
        h.remove()
    forward = defaultdict(float)
    for ev in prof.key_averages():
        if ev.key.startswith("part::"):
            forward[ev.key[6:]] += ev.cpu_time_total / 5 / 1e6
    total_fwd = sum(forward.values())
    print("forward time by part (s a step; backward costs about twice the forward of each part):")
    for name, t in sorted(forward.items(), key=lambda kv: -kv[1]):
        print(f"  {name:40s} {t:.3f}")
    print(f"  {'sum of parts':40s} {total_fwd:.3f}")
    print("top operators by self CPU time (forward and backward):")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15, max_name_column_width=40))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
