"""Throughput of ``dostransformer predict`` (``run_predict``) with and without PNG plots.

Takes the first N crystals of the shipped phonon dataset, writes them to one temporary extxyz file
and runs :func:`ase_dostransformer.cli.predict.run_predict` on it twice (plots, then ``plots=False``)
with the model loaded once, after a short warm-up run. Prints structures per second for each and
the CPU model. The figures depend on the machine and on what else runs on it: record them in
``benchmarks/RESULTS.md`` with that context.

    python benchmarks/bench_predict.py --n 150
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (the platform's processor string where there is none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def timed_run(inputs: Path, net: object, out: Path, plots: bool, batch_size: int) -> tuple[float, int]:
    """Seconds of one ``run_predict`` and the number of structures it predicted."""
    from ase_dostransformer.cli.predict import run_predict

    t0 = time.perf_counter()
    records = run_predict(
        [inputs], model=net, out=out, device="cpu", batch_size=batch_size, progress=False, plots=plots
    )
    seconds = time.perf_counter() - t0
    return seconds, sum(r.status == "ok" for r in records)


def main() -> None:
    """Run the benchmark and print one line per setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=150, help="structures (the first N of the shipped dataset)")
    parser.add_argument("--model", default="phonon", help="registered model name or model file")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()

    import torch
    from ase.io import write

    from ase_dostransformer.io.phdos import load_phonon_dataset
    from ase_dostransformer.pretrained import load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    structures = load_phonon_dataset().atoms[: args.n]
    net = load_model(args.model, device="cpu")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical CPUs; torch threads {torch.get_num_threads()})")
    print(f"model {args.model}, {len(structures)} structures, batch size {args.batch_size}")
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        folder = Path(tmp)
        inputs = folder / "structures.extxyz"
        write(inputs, structures, format="extxyz")
        warm = folder / "warm.extxyz"
        write(warm, structures[:4], format="extxyz")
        timed_run(warm, net, folder / "warm", plots=True, batch_size=args.batch_size)  # imports, fonts, caches
        for plots in (True, False):
            seconds, ok = timed_run(inputs, net, folder / f"out-{plots}", plots, args.batch_size)
            label = "with plots   " if plots else "without plots"
            print(f"{label}: {ok} structures in {seconds:.2f} s = {ok / seconds:.1f} structures/s")


if __name__ == "__main__":
    main()
