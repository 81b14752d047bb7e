"""Phonon benchmarks on this machine: featurisation, training seconds per epoch, inference, memory.

Usage: python benchmarks/bench_phonon.py [--data DIR] [--model FILE] [--threads 2] [--epochs 2]

Prints one line per figure. Run it on an idle machine (the load average is printed first): on
2 cores, another busy process slows small PyTorch operations many times over.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=None, help="phonon dataset folder (default: $DOSTRANSFORMER_PHDOS)")
    parser.add_argument("--model", default=None, help="model file for inference (default: the shipped model)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="epochs to time (the first is reported apart)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--precision", default="auto", help="auto: bf16-mixed where native, else 32-true")
    args = parser.parse_args()

    import lightning as L
    import numpy as np
    import torch
    from lightning.pytorch.callbacks import Callback

    from ase_dostransformer.graphs import PhononGraphRecipe
    from ase_dostransformer.graphs.cache import featurise_many
    from ase_dostransformer.inference import predict_phonon_dos
    from ase_dostransformer.io.phdos import load_phonon_dataset
    from ase_dostransformer.training.data_module import GraphDataModule
    from ase_dostransformer.training.lightning_module import DOSTransformerModule
    from ase_dostransformer.training.options import TrainOptions
    from ase_dostransformer.training.precision import resolve_precision
    from ase_dostransformer.training.tasks import model_config

    torch.set_num_threads(args.threads)
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    ds = load_phonon_dataset(args.data)
    recipe = PhononGraphRecipe()

    t = time.perf_counter()
    graphs = featurise_many(recipe, ds.atoms, ds.dos)
    dt = time.perf_counter() - t
    print(f"featurisation: {len(graphs)} structures in {dt:.2f} s = {len(graphs) / dt:.0f} structures/s")

    opts = TrainOptions(hidden=args.hidden, batch_size=args.batch_size)
    module = DOSTransformerModule(model_config(opts, recipe).to_dict(), lr=opts.lr, max_epochs=args.epochs)
    n_params = sum(p.numel() for p in module.parameters())

    class Timer(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self.t = time.perf_counter()

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            self.times.append(time.perf_counter() - self.t)

    timer = Timer()
    dm = GraphDataModule(graphs, ds.split, batch_size=args.batch_size)
    gpu = args.device.startswith("cuda")
    precision = resolve_precision(args.precision, "gpu" if gpu else "cpu")
    trainer = L.Trainer(
        max_epochs=args.epochs,
        accelerator="gpu" if gpu else "cpu",
        devices=1,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=dm)
    later = timer.times[1:] or timer.times
    print(
        f"training: hidden {args.hidden}, {n_params / 1e6:.2f} M parameters, batch {args.batch_size}, "
        f"{len(ds.split['train'])} materials, {args.device} {precision}: {np.mean(later):.2f} s/epoch "
        f"(first epoch {timer.times[0]:.1f} s; {len(timer.times)} epochs)"
    )

    from ase_dostransformer.inference import featurise_structures, graph_recipe, predict_graphs
    from ase_dostransformer.pretrained import load_model

    model = load_model(args.model or "phonon", device=args.device)
    members = len(getattr(model, "members", [model]))
    test_atoms = [ds.atoms[i] for i in ds.split["test"]]
    predict_phonon_dos(model, test_atoms[:8], device=args.device)  # warm-up
    runs, feats, nets = [], [], []
    for _ in range(3):
        t = time.perf_counter()
        pred = predict_phonon_dos(model, test_atoms, batch_size=64, device=args.device)
        runs.append(time.perf_counter() - t)
        t = time.perf_counter()
        test_graphs = featurise_structures(graph_recipe(model), test_atoms)
        feats.append(time.perf_counter() - t)
        t = time.perf_counter()
        predict_graphs(model, test_graphs, batch_size=64, device=args.device)
        nets.append(time.perf_counter() - t)
    print(
        f"inference ({members}-member model): {len(test_atoms)} test structures from Atoms to DOS in "
        f"{min(runs):.3f} s (best of 3; {len(test_atoms) / min(runs):.0f} structures/s; featurisation "
        f"{min(feats):.3f} s, network {min(nets):.3f} s; output {pred.shape})"
    )
    t = time.perf_counter()
    predict_phonon_dos(model, ds.atoms, batch_size=128, device=args.device)
    dt = time.perf_counter() - t
    print(f"inference: all {len(ds.atoms)} dataset structures in {dt:.2f} s = {len(ds.atoms) / dt:.0f} structures/s")
    if gpu:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print(f"peak memory (RSS): {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
