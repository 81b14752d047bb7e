"""Throughput of ``dostransformer predict`` (``run_predict``) end to end, with and without PNG plots.

Writes the first N crystals of the shipped phonon dataset (all 1,521 by default) to one extxyz file,
each with its ``material_id`` in ``info`` (so the run names folders by it, as a user's file would),
and runs :func:`ase_dostransformer.cli.predict.run_predict` on it, the model loaded once, after a
short warm-up run: with ``--no-plots``, with the default plots (the 100 most doubtful crystals)
and with a plot for every crystal (``--all-plots``; slow). Prints crystals per second (wall clock)
and per CPU-second of this process, the CPU model and the load average before and after each run:
the figures depend on the machine and on what else runs on it; record them in
``benchmarks/RESULTS.md`` with that context. ``--profile`` prints where the no-plots run spends
its time (cProfile, cumulative).

    python benchmarks/bench_predict.py --threads 2
    python benchmarks/bench_predict.py --n 300 --profile
    python benchmarks/bench_predict.py --threads 2 --workers 2      # two processes of one thread
    python benchmarks/bench_predict.py --threads 2 --electron-model electron   # + the electron DOS and gap

``--electron-model`` adds the electron model to every run (``predict --electron-model``): the difference from
a run without it is the electron ensemble's cost: its graphs and one forward pass, which gives the DOS and the
band gap together. The foundation features are not computed again: both models' recipes feed the universal
potential the same crystal, and the run computes each crystal's features once
(:func:`ase_dostransformer.graphs.foundation.shared_foundation_features`; with ``--workers`` the phonon ones are
computed in the workers, so the electron model computes its own).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from _machine import children_cpu_seconds, cpu_model  # noqa: E402


def load() -> str:
    """The 1-minute load average (``?`` where the platform has none)."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "?"


def timed_run(
    inputs: Path,
    net: Any,
    out: Path,
    plots: bool | int,
    batch_size: int,
    profile: bool = False,
    workers: int = 1,
    electron: Any = None,
) -> str:
    """One ``run_predict``: a line with crystals/s (wall and CPU) and the load before and after.

    ``workers`` > 1: that many prediction processes (``predict --workers``), this process's torch threads
    shared among them; their start inside the wall clock, their CPU time (once reaped) in the CPU figure.
    """
    import torch

    from ase_dostransformer.cli.predict import run_predict

    before = load()
    profiler = cProfile.Profile() if profile else None
    t0, c0 = time.perf_counter(), time.process_time() + children_cpu_seconds()
    if profiler is not None:
        profiler.enable()
    records = run_predict(
        [inputs],
        model=net,
        out=out,
        electron_model=electron,
        device="cpu",
        batch_size=batch_size,
        progress=False,
        plots=plots,
        workers=workers,
        threads=torch.get_num_threads(),
    )
    if profiler is not None:
        profiler.disable()
    seconds, cpu = time.perf_counter() - t0, time.process_time() + children_cpu_seconds() - c0
    ok = sum(r.status == "ok" for r in records)
    line = (
        f"{ok} crystals in {seconds:.2f} s = {ok / seconds:.1f} crystals/s "
        f"({ok / cpu:.1f} per CPU-second of this process and its workers); load average {before} -> {load()}"
    )
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
    return line


def main() -> None:
    """Run the benchmark and print one line per setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="crystals: the first N of the shipped dataset (all)")
    parser.add_argument("--model", default="phonon", help="registered model name or model file")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--all-plots", action="store_true", help="also run with a plot for every crystal")
    parser.add_argument("--profile", action="store_true", help="cProfile the no-plots run")
    parser.add_argument("--workers", type=int, default=1, help="prediction processes (predict --workers)")
    parser.add_argument("--electron-model", default=None, help="also predict the electron DOS with this model")
    args = parser.parse_args()

    import torch
    from ase.io import write

    from ase_dostransformer.io.phdos import load_phonon_dataset
    from ase_dostransformer.pretrained import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = load_phonon_dataset()
    structures = [a.copy() for a in dataset.atoms[: args.n]]
    for atoms, material in zip(structures, dataset.ids, strict=False):
        atoms.info["material_id"] = str(material)
    net = load_model(args.model, device="cpu")
    electron = None if args.electron_model is None else load_model(args.electron_model, device="cpu")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs; torch threads {torch.get_num_threads()})")
    also = f" + electron model {args.electron_model}" if electron is not None else ""
    print(f"model {args.model}{also}, {len(structures)} crystals, batch size {args.batch_size}, workers {args.workers}")
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        folder = Path(tmp)
        inputs = folder / "structures.extxyz"
        write(inputs, structures, format="extxyz")
        warm = folder / "warm.extxyz"
        write(warm, structures[:8], format="extxyz")
        timed_run(warm, net, folder / "warm", plots=True, batch_size=args.batch_size, electron=electron)  # imports
        settings: list[tuple[str, bool | int]] = [("no plots", False), ("default plots (100)", 100)]
        if args.all_plots:
            settings.append(("every crystal plotted", True))
        for label, plots in settings:
            profile = args.profile and plots is False
            line = timed_run(
                inputs, net, folder / f"out-{plots}", plots, args.batch_size, profile, args.workers, electron
            )
            print(f"{label:>22}: {line}")


if __name__ == "__main__":
    main()
