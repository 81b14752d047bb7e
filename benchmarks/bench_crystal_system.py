"""Time and peak memory of the crystal-system step (the prompt index) versus the atoms in the cell.

Each case runs in a fresh process, so that its peak resident memory (``ru_maxrss``) above the
process's baseline (imports, the structure itself) is its own. Cases, at about 1k, 10k and 20k atoms:

- ``supercell``: diamond Si repeated (1,000 / 10,648 / 21,952 atoms), the cells of issue 11, item 15;
- ``vacancy``: the same with one atom removed (symmetry left, no pure translation): the primitive
  cell is the whole cell, so above ``MAX_SYMMETRY_ATOMS`` the search is capped (taken as triclinic);
- ``noisy``: the supercell with 0.1 A random displacements (no symmetry at all).

    python benchmarks/bench_crystal_system.py                 # one thread, all cases
    python benchmarks/bench_crystal_system.py --direct        # also moyopy on the whole cell, as before
                                                              # (slow: about 100 s and 6 GB at 21,952 atoms)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

from _machine import cpu_model

#: Repetitions of the 8-atom cubic Si cell: 1,000, 10,648 and 21,952 atoms.
REPEATS = {1000: (5, 5, 5), 10648: (11, 11, 11), 21952: (14, 14, 14)}
CASES = ("supercell", "vacancy", "noisy")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def measure(natoms: int, case: str, direct: bool) -> dict:
    """One case in this process: seconds, peak memory above the baseline, the answer."""
    import warnings

    import numpy as np
    from ase.build import bulk

    from ase_dostransformer.graphs.crystal_system import (
        CRYSTAL_SYSTEMS,
        crystal_system_index,
        primitive_cell,
    )

    warnings.simplefilter("ignore")
    atoms = bulk("Si", "diamond", a=5.431, cubic=True).repeat(REPEATS[natoms])
    if case == "vacancy":
        del atoms[0]
    elif case == "noisy":
        atoms.positions += np.random.default_rng(0).normal(0.0, 0.1, atoms.positions.shape)
    cell, frac, numbers = atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers
    crystal_system_index(np.eye(3) * 3.0, np.zeros((1, 3)), np.array([14]))  # warm-up (imports)
    base = _rss_mb()
    t0 = time.perf_counter()
    if direct:
        import moyopy

        number = moyopy.MoyoDataset(moyopy.Cell(cell.tolist(), frac.tolist(), numbers.tolist()), symprec=0.01).number
        from ase_dostransformer.graphs.crystal_system import crystal_system_from_spacegroup

        system = crystal_system_from_spacegroup(number)
    else:
        system = CRYSTAL_SYSTEMS[crystal_system_index(cell, frac, numbers)]
    seconds = time.perf_counter() - t0
    primitive = len(primitive_cell(cell, frac, numbers)[2])
    return {
        "atoms": len(atoms),
        "case": case,
        "method": "moyopy on the whole cell" if direct else "crystal_system_index",
        "seconds": round(seconds, 3),
        "peak_mb_above_baseline": round(_rss_mb() - base, 1),
        "primitive_atoms": primitive,
        "crystal_system": system,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--direct", action="store_true", help="also time moyopy on the whole cell (the old way)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(REPEATS), choices=list(REPEATS))
    parser.add_argument("--one", nargs=3, metavar=("NATOMS", "CASE", "DIRECT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.one[1], args.one[2] == "1")))
        return
    print(f"# {cpu_model()}; one thread; Python {platform.python_version()}")
    print(f"{'atoms':>7} {'case':>10} {'method':>26} {'seconds':>8} {'peak MB':>8} {'prim.':>6}  crystal system")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1", RAYON_NUM_THREADS="1")
    for natoms in args.sizes:
        for case in CASES:
            for direct in (False, True) if args.direct else (False,):
                cmd = [sys.executable, __file__, "--one", str(natoms), case, "1" if direct else "0"]
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(
                    f"{r['atoms']:>7} {r['case']:>10} {r['method']:>26} {r['seconds']:>8.3f} "
                    f"{r['peak_mb_above_baseline']:>8.1f} {r['primitive_atoms']:>6}  {r['crystal_system']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
