"""Time and peak memory of phonon-DOS prediction versus the number of atoms in the cell.

Supercells of a real structure (diamond Si, 8-atom conventional cell) from 8 to 2000 atoms; each
size runs in a fresh process so that its peak resident memory (``ru_maxrss``) is its own. Reported
per size: edges of the graph, featurisation time, prediction time (median of ``--repeat``) and the
peak memory above the process's baseline (imports + model). ``--mixed`` also times the worst case of
batch padding: the large cell in one batch with 63 primitive cells.

    python benchmarks/bench_large_cells.py                       # 8 .. 2000 atoms, full-size model
    python benchmarks/bench_large_cells.py --max-atoms 500       # a quick check
    python benchmarks/bench_large_cells.py --model phonon        # a registered model or a model file

The default model is an untrained one of the shipped size (hidden 256, 3 graph layers, 2
transformer layers, 8 heads): memory and time do not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

#: Supercell repetitions of the 8-atom cubic Si cell, and the atoms they give.
REPEATS = [(1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4), (5, 5, 5), (5, 5, 8), (5, 5, 10)]


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def measure(reps: tuple[int, int, int], model_name: str | None, repeat: int, mixed: bool, threads: int) -> dict:
    """One size, in this process: timings and peak memory."""
    import warnings

    import numpy as np
    import torch
    from ase.build import bulk

    from ase_dostransformer.inference import graph_recipe, predict_graphs
    from ase_dostransformer.model import DOSTransformer, ModelConfig

    warnings.simplefilter("ignore")
    torch.set_num_threads(threads)
    if model_name:
        from ase_dostransformer.pretrained import load_model

        model = load_model(model_name, device="cpu")
    else:
        torch.manual_seed(0)
        model = DOSTransformer(ModelConfig()).eval()
    recipe = graph_recipe(model)
    unit = bulk("Si", "diamond", a=5.431, cubic=True)
    atoms = unit.repeat(reps)
    small = recipe.featurise(bulk("Si", "diamond", a=5.431))
    predict_graphs(model, [small], device="cpu")  # warm-up
    base = _rss_mb()
    t0 = time.perf_counter()
    graph = recipe.featurise(atoms)
    t_feat = time.perf_counter() - t0
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        y = predict_graphs(model, [graph], device="cpu")
        times.append(time.perf_counter() - t0)
    row = {
        "atoms": len(atoms),
        "edges": int(graph.edge_index.shape[1]),
        "featurise_s": round(t_feat, 4),
        "predict_s": round(float(np.median(times)), 4),
        "peak_mb_above_base": round(_rss_mb() - base, 1),
        "finite": bool(np.isfinite(y).all()),
    }
    if mixed:
        graphs = [graph] + [small] * 63
        t0 = time.perf_counter()
        predict_graphs(model, graphs, batch_size=64, device="cpu")
        row["mixed64_s"] = round(time.perf_counter() - t0, 4)
        row["mixed64_peak_mb_above_base"] = round(_rss_mb() - base, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    """Run every size in a child process and print a table (and JSON lines with --json)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-atoms", type=int, default=2000, help="largest cell to run (default 2000)")
    p.add_argument("--model", default=None, help="registered model name or model file (default: untrained, full size)")
    p.add_argument("--repeat", type=int, default=3, help="prediction repeats per size (median reported)")
    p.add_argument("--mixed", action="store_true", help="also predict the cell in a batch with 63 small cells")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)  # child mode: "a,b,c"
    args = p.parse_args(argv)
    if args.one:
        reps = tuple(int(v) for v in args.one.split(","))
        print(json.dumps(measure(reps, args.model, args.repeat, args.mixed, args.threads)))  # type: ignore[arg-type]
        return 0
    header = f"{'atoms':>6} {'edges':>8} {'featurise s':>12} {'predict s':>10} {'peak MB':>8}"
    if args.mixed:
        header += f" {'mixed64 s':>10} {'mixed MB':>9}"
    if not args.json:
        print(header)
    for reps in REPEATS:
        if 8 * reps[0] * reps[1] * reps[2] > args.max_atoms:
            break
        cmd = [sys.executable, __file__, "--one", ",".join(map(str, reps)), "--repeat", str(args.repeat)]
        cmd += ["--threads", str(args.threads)] + (["--model", args.model] if args.model else [])
        cmd += ["--mixed"] if args.mixed else []
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{8 * reps[0] * reps[1] * reps[2]:>6} failed: {out.stderr.strip().splitlines()[-1:]}")
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        if args.json:
            print(json.dumps(row), flush=True)
            continue
        line = (
            f"{row['atoms']:>6} {row['edges']:>8} {row['featurise_s']:>12.3f} {row['predict_s']:>10.3f} "
            f"{row['peak_mb_above_base']:>8.1f}"
        )
        if args.mixed:
            line += f" {row['mixed64_s']:>10.3f} {row['mixed64_peak_mb_above_base']:>9.1f}"
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
