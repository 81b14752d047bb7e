"""Queue a random sample of the active-learning pool for GPAW labelling (train/edos/dft_gpaw_pool).

The sample is the candidate set of the active-vs-random comparison (README.md, section 4) and the
new labels of the shipped ``edos`` model. It is drawn at random (``--seed``) from
``dostransformer active``'s pool (``phdos`` + ``teacher`` sources, never the phonon test crystals)
restricted to cells of at most ``--max-atoms`` atoms (DFT cost: README.md section 3) and to elements
with a dzp basis in Debian's gpaw-data; crystals already labelled under another id (the elemental
metals of ``dft_gpaw_metals``: ``elem-Cu-fcc`` is ``Cu-fcc``) and crystals with Cr, Mn, Fe, Co or Ni
(non-spin-polarised labels misdraw magnetic crystals) are left out. It writes the order to
``OUT/queue.json``, one extxyz per crystal into ``--structures`` folders, dealt round-robin so
that each of ``--queues`` runner processes takes one folder, and each folder's files in queue order
to ``--structures``/queue-N.txt. The queue runs the smallest cells first
(random order within a size), so a run stopped early holds the cheapest labels:

    python train/edos/pool_queue.py --n 900 --structures /tmp/edos_pool
    for q in 0 1; do OMP_NUM_THREADS=1 /usr/bin/python3 train/edos/gpaw_runner.py $(cat /tmp/edos_pool/queue-$q.txt) \
        --out train/edos/dft_gpaw_pool --kdensity 2.5 --h 0.3 --conv-density 1e-3 --dos-kdensity 8 --skip-failed & done
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from ase.io import write

from ase_dostransformer.active.pool import assemble_pool

HERE = Path(__file__).resolve().parent
LABEL_FOLDERS = ("dft_gpaw", "dft_gpaw_metals")
#: Left out: the labels are non-spin-polarised, which misdraws the DOS of magnetic crystals (as for
#: the elemental metals of ``dft_gpaw_metals``).
MAGNETIC = frozenset({"Cr", "Mn", "Fe", "Co", "Ni"})


def dzp_elements(setups: Path = Path("/usr/share/gpaw-setups")) -> set[str]:
    """Elements whose dzp LCAO basis Debian's gpaw-data ships (the others fail: README.md section 3)."""
    return {p.name.split(".")[0] for p in setups.glob("*.dzp.basis*")}


def len_atoms(item: object) -> int:
    """Atoms in a pool item's cell."""
    return len(item.atoms)  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=900, help="crystals to queue")
    ap.add_argument("--max-atoms", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queues", type=int, default=2)
    ap.add_argument("--structures", required=True, help="folder for the structure files (not committed)")
    ap.add_argument("--out", default=str(HERE / "dft_gpaw_pool"))
    args = ap.parse_args()
    labelled = [p.name.split(".")[0] for d in LABEL_FOLDERS for p in (HERE / d).glob("*.json.gz")]
    pool = assemble_pool(["phdos", "teacher"], labelled=labelled, max_atoms=args.max_atoms)
    known = set(labelled)
    basis = dzp_elements()
    items = [
        it
        for it in pool.items
        if set(it.atoms.get_chemical_symbols()) <= basis and it.id.removeprefix("elem-") not in known
    ]
    sample = random.Random(args.seed).sample(items, min(args.n, len(items)))
    # after the draw, so that the order of the others does not depend on this rule
    sample = [it for it in sample if not set(it.atoms.get_chemical_symbols()) & MAGNETIC]
    order = sorted(sample, key=len_atoms)  # smallest (cheapest) cells first, random order within a size
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "seed": args.seed,
        "max_atoms": args.max_atoms,
        "pool_size": len(pool),
        "eligible": len(items),
        "queue": [{"id": it.id, "source": it.source, "atoms": len(it.atoms)} for it in order],
    }
    (out / "queue.json").write_text(json.dumps(doc, indent=1) + "\n")
    lists: list[list[str]] = [[] for _ in range(args.queues)]
    for n, it in enumerate(order):
        folder = Path(args.structures) / str(n % args.queues)
        folder.mkdir(parents=True, exist_ok=True)
        write(folder / f"{it.id}.extxyz", it.atoms)
        lists[n % args.queues].append(str(folder / f"{it.id}.extxyz"))
    for q, files in enumerate(lists):
        (Path(args.structures) / f"queue-{q}.txt").write_text("\n".join(files) + "\n")
    print(f"pool {len(pool)}, eligible {len(items)}, queued {len(order)} -> {out / 'queue.json'}")


if __name__ == "__main__":
    main()
