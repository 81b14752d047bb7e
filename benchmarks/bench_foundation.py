"""Cost of the frozen foundation features (:func:`ase_dostransformer.graphs.foundation.foundation_features`).

Runs the shipped universal potential up to its per-atom features over the phonon dataset's 1,521
crystals on one CPU thread, batched (the function's default: up to 32 atoms a pass) and one
crystal at a time (as a graph recipe does), and prints process CPU time per crystal and per atom.
Wall time is printed too but depends on what else the machine runs.

    OMP_NUM_THREADS=1 python benchmarks/bench_foundation.py
"""

from __future__ import annotations

import json
import time

import torch


def timed(fn):
    """``(result, wall seconds, process CPU seconds)`` of ``fn()``."""
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    """Print the figures as JSON."""
    torch.set_num_threads(1)
    from ase_dostransformer.graphs.foundation import foundation_features, foundation_potential
    from ase_dostransformer.io.phdos import load_phonon_dataset

    atoms = list(load_phonon_dataset(None).atoms)
    natoms = sum(len(a) for a in atoms)
    _, load_wall, load_cpu = timed(foundation_potential)
    batched, bw, bc = timed(lambda: foundation_features(atoms))
    single, sw, sc = timed(lambda: [foundation_features([a])[0] for a in atoms])
    diff = max(float(abs(a - b).max()) for a, b in zip(batched, single, strict=True))
    report = {
        "crystals": len(atoms),
        "atoms": natoms,
        "threads": torch.get_num_threads(),
        "load_s": {"wall": round(load_wall, 2), "cpu": round(load_cpu, 2)},
        "batched": {
            "wall_s": round(bw, 1),
            "cpu_s": round(bc, 1),
            "cpu_ms_per_crystal": round(1e3 * bc / len(atoms), 1),
        },
        "one_at_a_time": {
            "wall_s": round(sw, 1),
            "cpu_s": round(sc, 1),
            "cpu_ms_per_crystal": round(1e3 * sc / len(atoms), 1),
        },
        "max_abs_difference": diff,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
