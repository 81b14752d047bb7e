"""How well could a perfect physical model score on the held-out R^2 row, given what it is trained on?

No model is involved. For each teacher record, the training target that ``dostransformer train --teacher``
builds (:func:`ase_dostransformer.training.teacher_data.teacher_target`: the teacher DOS smoothed with
the chosen width and sampled on ``TEACHER_POINTS`` frequencies from 0 to ``TEACHER_SPAN`` x its highest
mode) is represented as the physical head can represent a spectrum at best: linear between
``--knots`` points spread over ``[0, omega_max]`` (the head's scaled axis, ``ModelConfig.scaled_points``;
``omega_max`` taken as ``TEACHER_SPAN`` x the highest mode). That spectrum is then scored exactly as
``physics_goals.py`` row ``heldout`` scores a model: against the teacher's DOS smoothed with a 10 cm^-1
Gaussian, on a 5 cm^-1 grid from 0 to 1.05 x the support, R^2 per crystal. A model that reproduced its
training targets perfectly would score this; one that underfits scores less.

    OMP_NUM_THREADS=1 python benchmarks/teacher_target_ceiling.py [--train-sample 300] [--model phonon]

Sets: the held-out chemistry crystals of row ``heldout`` (never trained on) and, with
``--train-sample N``, N random records of the training folders (seed 0; held-out ids left out), split
by the crystal's highest mode, where the width rule matters. With ``--model M``, that model's own R^2 on
the same crystals (row ``heldout``'s code; on the training sample the DFT validation crystals are left out,
so every crystal scored there is one the model trained on): how far below its ceiling it stays.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import physics_goals as pg  # noqa: E402  # the benchmark's own helpers: one definition of the held-out row

#: Widths compared: None is the default rule of ``teacher_target`` (max(4 cm^-1, 1.5% of the highest mode)).
WIDTHS: tuple[float | None, ...] = (None, 8.0, 10.0)
TRAIN_FOLDERS = ("dft_trainvalid", "extended", "generated")
TOP_BINS = ((0, 200), (200, 350), (350, 500), (500, 800), (800, 1200), (1200, 5000))


def ceiling_r2(record: dict[str, Any], knots: int) -> dict[float | None, float]:
    """R^2 (row ``heldout``'s measure) of the record's training target as the head represents it at best, per width."""
    from ase_dostransformer.teacher.records import smooth_and_sample
    from ase_dostransformer.training.metrics import r2_per_spectrum
    from ase_dostransformer.training.teacher_data import TEACHER_POINTS, TEACHER_SPAN, teacher_target

    teacher = pg.teacher_dos(record)
    top = float(record["frequencies"]["max_cm1"])
    freqs = np.linspace(0.0, TEACHER_SPAN * top, TEACHER_POINTS)
    xk = np.linspace(0.0, TEACHER_SPAN * top, knots)
    support = pg.support_cm1(teacher.cm1, teacher.per_cm1)
    grid = np.arange(0.0, 1.05 * support + 2.5, 5.0)
    reference = smooth_and_sample(teacher.cm1, teacher.per_cm1, grid, 10.0)
    out = {}
    for sigma in WIDTHS:
        target = teacher_target(record, sigma)["t_dos"].numpy().ravel() / top  # p(omega), integral 1
        best = np.interp(xk, freqs, target) * 3 * teacher.natoms  # states per cm^-1 per cell, on the head's knots
        model = np.interp(grid, xk, best, left=0.0, right=0.0)
        out[sigma] = float(r2_per_spectrum(model[None], reference[None])[0])
    return out


def by_top(label: str, r2: np.ndarray, tops: np.ndarray) -> dict[str, Any]:
    """Print and return the mean / median R^2, overall and by the crystals' highest mode."""
    bins = {}
    for lo, hi in TOP_BINS:
        k = (tops >= lo) & (tops < hi)
        if k.any():
            bins[f"{lo}-{hi}"] = {"n": int(k.sum()), "r2_mean": float(r2[k].mean())}
    text = ", ".join(f"{b}: {v['r2_mean']:.3f} ({v['n']})" for b, v in bins.items())
    print(f"  {label:34s} R2 mean {r2.mean():.3f} median {np.median(r2):.3f} | by highest mode: {text}")
    return {"r2_mean": float(r2.mean()), "r2_median": float(np.median(r2)), "by_top_cm1": bins}


def summarise(name: str, records: Sequence[dict[str, Any]], knots: int, ctx: Any = None) -> dict[str, Any]:
    """The ceiling per width (and the model's own R^2 with a ``ctx``), overall and by highest mode."""
    tops = np.array([float(r["frequencies"]["max_cm1"]) for r in records])
    out: dict[str, Any] = {"n": len(records), "knots": knots, "widths": {}}
    print(f"\n== {name}: {len(records)} crystals, {knots} knots ==")
    ceilings = [ceiling_r2(r, knots) for r in records]
    for sigma in WIDTHS:
        label = "max(4, 1.5% top) (default)" if sigma is None else f"{sigma:g} cm^-1"
        r2 = np.array([c[sigma] for c in ceilings])
        out["widths"][label] = by_top(f"ceiling, width {label}", r2, tops)
    if ctx is not None:
        rows = pg.teacher_results(ctx, name, {str(r["id"]) for r in records})
        scored = {row["id"]: row["r2_full_range"] for row in rows if "r2_full_range" in row}
        keep = [k for k, r in enumerate(records) if str(r["id"]) in scored]
        r2 = np.array([scored[str(records[k]["id"])] for k in keep])
        out["model"] = by_top("the model itself", r2, tops[keep]) | {"failed": len(records) - len(keep)}
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measure the ceilings and print them."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--knots", type=int, default=64, help="points of the head's scaled axis (default 64)")
    parser.add_argument("--train-sample", type=int, default=0, help="also N random training records (default 0)")
    parser.add_argument("--model", default=None, help="also score this model (registered name or file)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for --model (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    from ase_dostransformer.teacher.records import iter_records

    ctx = None
    with tempfile.TemporaryDirectory(prefix="teacher_target_ceiling_") as scratch:
        if args.model is not None:
            import torch

            from ase_dostransformer.pretrained import load_model

            torch.set_num_threads(args.threads)
            ctx = pg.Context(load_model(args.model, "cpu"), Path(scratch))
        held = set(json.loads(pg.HELD_OUT.read_text())["ids"])
        heldout = list(pg.first_records(lambda r: r in held).values())
        figures = {"model": args.model, "heldout": summarise("held-out chemistry", heldout, args.knots, ctx)}
        if args.train_sample:
            pool = [
                rec
                for folder in TRAIN_FOLDERS
                for rec in iter_records(pg.TEACHER / folder)
                if rec.get("status", "ok") == "ok" and str(rec.get("id")) not in held
            ]
            if ctx is not None:  # only crystals the model trained on: no DFT validation crystal
                valid = {str(ctx.dataset().ids[i]) for i in ctx.dataset().split["valid"]}
                pool = [rec for rec in pool if str(rec.get("id")) not in valid]
            sample = random.Random(0).sample(pool, min(args.train_sample, len(pool)))
            figures["train_sample"] = summarise("training records (random sample)", sample, args.knots, ctx)
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return figures


if __name__ == "__main__":
    main()
