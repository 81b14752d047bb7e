"""Screen a few hundred hypothetical crystals by vibrational entropy, with error bars, and refine the doubtful ones.

    python examples/screening.py [--count 300] [--refine 6] [--temperature 300] [--out docs/screening.png]
        [--model NAME_OR_FILE] [--quick]

The candidates are generated, not looked up: binary and ternary compounds decorating common
prototypes (rock salt, perovskite, Heusler, spinel, ...) with lattice parameters guessed from radii
(:func:`ase_dostransformer.teacher.structures.prototype_crystals`). That is what a screening run
sees: hypothetical crystals without DFT phonons, much of it chemistry the model was not trained on
(the shipped model learnt from the Petretto/Chen DFT dataset only). The dataset's test split would
be the wrong choice here: it has DFT labels already, and it is the model's own distribution.

1. The shipped model predicts every candidate in one batched call
   (:func:`ase_dostransformer.pipeline.predict_structures`), and
   :func:`ase_dostransformer.screening.screening_quantities` turns each DOS into the vibrational
   entropy per atom at ``--temperature`` with its uncertainty (the spread over the ensemble's
   members, calibrated).
2. The ``--refine`` most doubtful (:func:`ase_dostransformer.escalation.select_doubtful`: out of
   the training domain first, then the largest calibrated uncertainty) are recomputed by the teacher:
   the shipped universal potential relaxing the cell (the lattice is a guess) and driving phonopy
   (:func:`ase_dostransformer.escalation.refine_structures`). The teacher is not DFT; how it compares
   with the model on DFT labels is in ``benchmarks/RESULTS.md``.
3. The ranking is printed and plotted (``--out``): every candidate with its error bar, the refined
   ones marked with the teacher's value.

``--quick``: 40 candidates and one refinement (a check that the script runs, used by the tests).
One thread runs the default in a few minutes (prediction takes seconds; each refinement seconds to
a minute).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from ase_dostransformer.escalation import refine_structures, select_doubtful, teacher_quantities  # noqa: E402
from ase_dostransformer.pipeline import predict_structures  # noqa: E402
from ase_dostransformer.pretrained import load_model  # noqa: E402
from ase_dostransformer.screening import screening_quantities, temperature_label  # noqa: E402
from ase_dostransformer.teacher.phonons import PhononSettings  # noqa: E402
from ase_dostransformer.teacher.structures import prototype_crystals  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "screening.png"


def plot_ranking(rows: list[dict], temperature: float, out: Path) -> None:
    """Entropy per atom against rank, with error bars; refined crystals marked with the teacher's value."""
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=110)
    rank = np.arange(1, len(rows) + 1)
    value = np.array([r["s"] for r in rows])
    std = np.array([np.nan if r["s_std"] is None else r["s_std"] for r in rows])
    ood = np.array([r["out_of_domain"] for r in rows])
    for mask, colour, label in ((~ood, "tab:blue", "model"), (ood, "tab:orange", "model, out of domain")):
        if mask.any():
            ax.errorbar(
                rank[mask], value[mask], yerr=np.nan_to_num(std[mask]), fmt="o", ms=2.5, lw=0.6,
                color=colour, ecolor=colour, alpha=0.7, label=label,
            )  # fmt: skip
    refined = [k for k, r in enumerate(rows) if r.get("teacher_status") is not None]
    for j, k in enumerate(refined):
        r, x = rows[k], rank[k]
        ax.plot([x], [r["s"]], "o", ms=7, mfc="none", mec="k", mew=1.2)
        end = r["s"]
        if r.get("teacher_s") is not None:
            end = r["teacher_s"]
            ax.plot([x, x], [r["s"], end], "k:", lw=0.8)
            ax.plot([x], [end], "*", ms=11, color="tab:red", label="teacher (refined)" if j == 0 else None)
        note = r["formula"] + ("" if r["teacher_status"] == "ok" else f" ({r['teacher_status']})")
        up = end >= r["s"]
        offset = (18 + 13 * (j % 3)) * (1 if up else -1)  # staggered so that neighbours' labels do not overlap
        ax.annotate(
            note, (x, end), textcoords="offset points", xytext=(-10, offset), fontsize=7, ha="center",
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.4"},
        )  # fmt: skip
    ax.set_xlabel("rank (model)")
    ax.set_ylabel(f"vibrational entropy at {temperature:g} K (J/K/mol of atoms)")
    ax.set_title(f"{len(rows)} generated crystals ranked by predicted entropy; circled: refined by the teacher")
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Predict, rank, refine the most doubtful, print and plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="generated candidates (default 300)")
    parser.add_argument("--refine", type=int, default=6, help="most doubtful ones refined by the teacher (default 6)")
    parser.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help=f"PNG of the ranking (default {DEFAULT_OUT})")
    parser.add_argument("--model", default=None, help="model name or file (default: $DOSTRANSFORMER_MODEL or phonon)")
    parser.add_argument("--quick", action="store_true", help="40 candidates, one refinement")
    args = parser.parse_args(argv)
    count, n_refine = (40, 1) if args.quick else (args.count, args.refine)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))

    structures = prototype_crystals(max_count=count)
    model = load_model(args.model or os.environ.get("DOSTRANSFORMER_MODEL") or "phonon", "cpu")
    t0 = time.perf_counter()
    predictions = predict_structures(model, structures, on_invalid="keep")
    seconds = time.perf_counter() - t0
    column = f"entropy_{temperature_label(args.temperature)}_J_per_K_per_mol_atoms"
    rows = []
    for p, atoms in zip(predictions, structures, strict=True):
        if not p.ok:
            print(f"failed: {atoms.info['id']}: {p.error}")
            continue
        q = screening_quantities(p, len(atoms), [args.temperature]).columns()
        rows.append(
            {
                "index": p.index,
                "formula": atoms.get_chemical_formula(),
                "prototype": atoms.info["prototype"],
                "s": q[column],
                "s_std": q[column + "_std"],
                "out_of_domain": p.out_of_domain,
            }
        )
    print(f"predicted {len(rows)} of {len(structures)} candidates in {seconds:.1f} s")

    chosen = select_doubtful(predictions, k=n_refine)
    by_index = {r["index"]: r for r in rows}
    t0 = time.perf_counter()
    settings = PhononSettings(relax_cell=True)  # generated lattices are guesses
    for ref in refine_structures(structures, chosen, grid=model.cfg.grid, settings=settings):
        row = by_index.get(ref.index)
        if row is None:
            continue
        row["teacher_status"] = ref.status
        values = teacher_quantities(ref, len(structures[ref.index]), [args.temperature])
        row["teacher_s"] = values.get(column)
        if ref.error is not None:
            row["teacher_error"] = str(ref.error)
    refined = [r for r in rows if "teacher_status" in r]
    print(f"refined {len(refined)} by the teacher in {time.perf_counter() - t0:.1f} s")

    rows.sort(key=lambda r: r["s"], reverse=True)
    print(f"{'rank':<5}{'formula':<12}{'prototype':<15}{'S/atom':>8}{'+-':>8}  (J/K/mol at {args.temperature:g} K)")
    for rank, r in enumerate(rows, start=1):
        if rank <= 10 or "teacher_status" in r:
            std = "" if r["s_std"] is None else f"{r['s_std']:.2f}"  # after a space: never run into S
            note = "  out of domain" if r["out_of_domain"] else ""
            if "teacher_status" in r:
                teacher = "-" if r.get("teacher_s") is None else f"{r['teacher_s']:.2f}"
                note += f"  teacher {teacher} ({r['teacher_status']})"
            print(f"{rank:<5}{r['formula']:<12}{r['prototype']:<15}{r['s']:>8.2f} {std:>7}{note}")
    with_std = [r["s_std"] for r in rows if r["s_std"] is not None]
    if with_std:
        print(f"median uncertainty {np.median(with_std):.2f} J/K/mol; out of domain: "
              f"{sum(r['out_of_domain'] for r in rows)} of {len(rows)}")  # fmt: skip
    for r in refined:
        if r.get("teacher_s") is not None:
            print(f"refined {r['formula']}: model {r['s']:.2f}, teacher {r['teacher_s']:.2f} ({r['teacher_status']})")
        else:
            print(f"refined {r['formula']}: teacher failed: {r.get('teacher_error', '')}")
    plot_ranking(rows, args.temperature, Path(args.out))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
