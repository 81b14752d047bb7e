r"""Does active learning pay? Uncertainty against random selection of GPAW labels for the electron DOS.

The experiment of ``train/edos/README.md`` (section 4; issue 15, item 2) is a **pool-based replay**,
the standard protocol of active-learning studies: a random sample of the loop's own pool was labelled
with GPAW beforehand (``train/edos/dft_gpaw_pool/``, written by ``pool_queue.py`` and the GPAW runner),
and that labelled sample P plays the unlabelled pool. The loop sees only P's structures; a label is
handed out by :class:`~ase_dostransformer.active.labeller.StoredLabeller` only when a crystal is
chosen, so the uncertainty and random acquisitions spend the same budget on the same candidates and
differ only in what they choose.

The real run (the lead starts it when the labelling has finished; 2 cores, one loop on each)::

    .venv/bin/python train/edos/active_experiment.py --out runs/edos-active --jobs 2

It writes the learning curves, ``runs/edos-active/summary.json`` and ``docs/edos_active_learning.png``,
and prints the markdown table for ``train/edos/README.md``. A killed run continues when the same
command is run again; ``--summary-only`` redraws the summary and plot from what has finished.

**The fixed sets** (``OUT/split.json``, made once and never changed by a rerun):

- the initial labels L0 (``--initial``: ``dft_gpaw/``, 421 phonon-dataset crystals, and
  ``dft_gpaw_metals/``, 35 elemental metals) are built into one dataset and split as
  ``dostransformer train --task edos --dataset random --seed 0`` splits it (80/10/10 by
  :func:`~ase_dostransformer.training.splits.random_split`); its valid part is the validation set
  (model selection) and its train part round 0's training labels;
- the test set is L0's test part plus ``--test-from-pool`` crystals drawn at random (``--split-seed``)
  from the labels of P finished when the split is made, so that it holds metals (P is mostly
  intermetallic and ionic prototypes); how many test crystals are metals (DFT gap < 0.05 eV) is in
  ``split.json`` and the summary;
- the pool is the rest of P's finished labels (those ``dataset build`` accepts; a label it skips
  would be a label no model can use, for either acquisition). Labels that finish after the split
  was made are not used.

**The loops** (``OUT/loops/<acquisition>-seed<s>/``, each a ``dostransformer active`` loop folder):
for each acquisition (``--acquisitions``, default uncertainty and random) and seed (``--seeds``,
default 0 1), :func:`~ase_dostransformer.active.loop.run_loop` spends ``--budget`` labels in batches
of ``--batch`` (default 300 in batches of 150: points at +0, +150, +300 labels), with ``--members``
models per round (2, the fewest that disagree; random acquisition trains as many, so both curves
are the same ensemble evaluated the same way). Training follows ``train/edos/train.sh`` (hidden 128,
value energy encoding, lr 5e-4, batch 8, at most 45 epochs, validation every 3, early stopping after
15, fp32), each round from scratch unless ``--finetune``; ``--gap-head`` and ``--embedder`` as in
``dostransformer train`` (the shipped model's recipe: then the gap figures of the curves are the head's).

Round 0 of every acquisition with the same seed is the same training (same labels, split and member
seeds), so it is trained once: the first acquisition's loop runs with budget 0 (round 0 only), and
its finished ``round-000/member-*`` runs are copied into the other loops' folders, whose round 0 then
finds its members trained and only evaluates them. ``--jobs N`` runs N loops side by side, each in
its own process with ``--threads`` torch threads.

**Outputs**: ``OUT/summary.json`` (per acquisition, seed and labels added: test MSE x10 / MAE / R^2,
the mean-spectrum baseline, gap MAE, metal/insulator accuracy and balanced accuracy, metals picked;
means and ranges over seeds; the epochs and fit seconds of every training; the wall time of each
invocation under ``runs``), ``OUT/summary.md`` (the table printed) and the plot
(``--plot``): test MSE x10 and R^2 against labels added, one line per acquisition, the mean over
seeds with the seeds' range shaded.

Miniature (what the check of the script ran: full L0, 15 pool labels, two seeds; about 35 min on 2
cores shared with two GPAW labelling processes; ``--pool-labels`` a folder with a copy of a few labels)::

    .venv/bin/python train/edos/active_experiment.py --out /tmp/al-mini --pool-labels /tmp/al-mini-pool \
        --test-from-pool 3 --budget 4 --batch 2 --epochs 2 --threads 1 --jobs 2 --plot /tmp/al-mini/curve.png
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ase_dostransformer.active.loop import QUANTITY_KEYS
from ase_dostransformer.electronic import METAL_GAP  # the one metal threshold of training and evaluation

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
#: The initial labels L0: the phonon-dataset crystals and the elemental metals.
DEFAULT_INITIAL = (HERE / "dft_gpaw", HERE / "dft_gpaw_metals")
#: The labelled random sample P of the pool (read only; the labelling jobs write there).
DEFAULT_POOL_LABELS = HERE / "dft_gpaw_pool"
DEFAULT_PLOT = ROOT / "docs" / "edos_active_learning.png"
SPLIT_FILE = "split.json"
SPLIT_FORMAT = "ase-dostransformer-active-experiment-split"
SUMMARY_FILE = "summary.json"
#: Options that fix the split: a rerun with other values is refused.
SPLIT_OPTIONS = ("initial", "pool_labels", "test_from_pool", "split_seed")
#: Learning-curve figures carried into the summary (the ``test`` metrics and the electron quantities).
METRICS = ("mse_x10", "mae", "r2")
QUANTITIES = QUANTITY_KEYS

Log = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, flush=True)


def _write_json(path: Path, obj: Any) -> None:
    from ase_dostransformer.io.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def _gap(row: dict[str, Any]) -> float | None:
    """A dataset row's DFT eigenvalue gap (eV), None when unknown."""
    gap = row.get("properties", {}).get("band_gap")
    return float(gap) if gap is not None and math.isfinite(float(gap)) else None


def _composition(formula: str) -> tuple[tuple[str, int], ...]:
    """The reduced composition of a chemical formula, comparable across cells and element orders."""
    from ase.formula import Formula

    return tuple(sorted(Formula(formula).reduce()[0].count().items()))


def _metals(ids: Sequence[str], gaps: dict[str, float | None]) -> list[str]:
    """The ids among ``ids`` whose DFT gap is known and below :data:`METAL_GAP`."""
    found = []
    for i in ids:
        gap = gaps.get(i)
        if gap is not None and gap < METAL_GAP:
            found.append(i)
    return found


# ----------------------------------------------------------------------------------- the fixed split


def finished_labels(folder: Path) -> list[Path]:
    """The finished label files of ``folder`` (``<id>.json.gz``, written atomically by the runner), sorted."""
    return sorted(p for p in folder.glob("*.json.gz") if not p.name.startswith("."))


def make_split(
    out: Path,
    initial: Sequence[str | os.PathLike],
    pool_labels: str | os.PathLike,
    test_from_pool: int,
    split_seed: int = 0,
    log: Log = _print,
) -> dict[str, Any]:
    """The experiment's fixed sets: read from ``out/split.json``, or made and written there (see the module docstring).

    A split file made with other :data:`SPLIT_OPTIONS` is an :class:`~ase_dostransformer.errors.OptionError`
    naming the option. Keys: ``train``, ``valid``, ``test`` (what the loop reads), ``test_initial``,
    ``test_pool``, ``pool`` (P's crystals the loops choose from), ``gaps`` (DFT gap of each test and
    pool crystal), ``pool_same_composition_as_test`` (pool crystals with the reduced composition of a test
    crystal: other polymorphs, or the same crystal under another id), ``counts``, ``options``,
    ``p_skipped`` (P labels ``dataset build`` refused, with why).
    """
    from ase_dostransformer.errors import DatasetError, OptionError

    options: dict[str, Any] = {
        "initial": [str(Path(p).resolve()) for p in initial],
        "pool_labels": str(Path(pool_labels).resolve()),
        "test_from_pool": int(test_from_pool),
        "split_seed": int(split_seed),
    }
    path = out / SPLIT_FILE
    if path.is_file():
        split = json.loads(path.read_text(encoding="utf-8"))
        if split.get("format") != SPLIT_FORMAT:
            raise DatasetError(f"{path}: not the split file of this experiment")
        for name in SPLIT_OPTIONS:
            if split["options"].get(name) != options[name]:
                raise OptionError(
                    f"{path} was made with {name}={split['options'].get(name)!r}, not {options[name]!r}: the split "
                    "of an experiment is fixed; rerun with the same value or use another --out"
                )
        return split
    if test_from_pool < 0:
        raise OptionError(f"--test-from-pool must be >= 0, got {test_from_pool}")
    from ase_dostransformer.io.electron_dataset import build_edos_dataset, load_edos_dataset
    from ase_dostransformer.training.splits import random_split

    l0_report = build_edos_dataset(options["initial"], out / "data" / "initial")
    l0 = load_edos_dataset(out / "data" / "initial")
    log(f"initial labels: {len(l0)} crystals ({len(l0_report.skipped)} rows skipped)")
    part = random_split(len(l0), split_seed)  # what `dostransformer train --dataset random --seed S` does
    l0_ids = {name: [l0.ids[i] for i in idx] for name, idx in part.items()}
    files = finished_labels(Path(pool_labels))
    if not files:
        raise DatasetError(f"pool labels: no finished <id>.json.gz in {pool_labels}")
    p_report = build_edos_dataset(files, out / "data" / "pool-labels")
    p = load_edos_dataset(out / "data" / "pool-labels")
    known = set(l0.ids)
    usable = sorted(i for i in p.ids if i not in known)
    p_skipped = {str(r.get("id")): str(r["reason"]) for r in p_report.skipped}
    p_skipped.update({i: "already an initial label" for i in p.ids if i in known})
    log(f"pool labels: {len(files)} finished, {len(usable)} usable ({len(p_skipped)} left out)")
    if test_from_pool >= len(usable):
        raise OptionError(
            f"--test-from-pool {test_from_pool} leaves no pool: only {len(usable)} usable labels in {pool_labels}"
        )
    pick = np.random.default_rng(split_seed).choice(len(usable), test_from_pool, replace=False)
    test_pool = sorted(usable[j] for j in pick)
    chosen = set(test_pool)
    pool = [i for i in usable if i not in chosen]
    gaps = {l0.ids[i]: _gap(l0.rows[i]) for i in part["test"]}
    in_p = set(usable)
    gaps.update({mid: _gap(row) for mid, row in zip(p.ids, p.rows, strict=True) if mid in in_p})
    train_gaps = {l0.ids[i]: _gap(l0.rows[i]) for i in part["train"]}
    test = sorted([*l0_ids["test"], *test_pool])
    formula = {row["id"]: _composition(row["formula"]) for ds in (l0, p) for row in ds.rows}
    test_formulas = {formula[i] for i in test}
    same_formula = [i for i in pool if formula[i] in test_formulas]
    counts = {
        "initial": len(l0),
        "train": len(l0_ids["train"]),
        "valid": len(l0_ids["valid"]),
        "test": len(test),
        "test_initial": len(l0_ids["test"]),
        "test_pool": len(test_pool),
        "pool": len(pool),
        "p_finished": len(files),
        "metals_train": len(_metals(l0_ids["train"], train_gaps)),
        "metals_test": len(_metals(test, gaps)),
        "metals_test_initial": len(_metals(l0_ids["test"], gaps)),
        "metals_test_pool": len(_metals(test_pool, gaps)),
        "metals_pool": len(_metals(pool, gaps)),
        "pool_same_composition_as_test": len(same_formula),
    }
    split = {
        "format": SPLIT_FORMAT,
        "version": 1,
        "options": options,
        "metal_gap_eV": METAL_GAP,
        "counts": counts,
        "train": l0_ids["train"],
        "valid": l0_ids["valid"],
        "test": test,
        "test_initial": l0_ids["test"],
        "test_pool": test_pool,
        "pool": pool,
        "gaps": gaps,
        "pool_same_composition_as_test": same_formula,
        "p_skipped": p_skipped,
    }
    _write_json(path, split)
    log(
        f"split: {counts['train']} train, {counts['valid']} valid, {counts['test']} test ({counts['test_pool']} from "
        f"the pool; {counts['metals_test']} metals), {counts['pool']} in the pool ({counts['metals_pool']} metals)"
    )
    return split


def prepare_inputs(out: Path, split: dict[str, Any]) -> tuple[Path, Path]:
    """The loops' extra initial labels (P's test crystals) and pool (P's structures), written if missing.

    ``out/test-labels/<id>.json.gz`` are copies of the test crystals' labels; ``out/pool-structures/<id>.extxyz``
    the pool's structures (from their labels). Both are written atomically, file by file, so a rerun
    after a kill completes them.
    """
    from ase.io import write

    from ase_dostransformer.errors import DatasetError
    from ase_dostransformer.io.atomic import atomic_path, atomic_write
    from ase_dostransformer.io.atoms_json import atoms_from_dict

    source = Path(split["options"]["pool_labels"])
    labels, structures = out / "test-labels", out / "pool-structures"
    labels.mkdir(parents=True, exist_ok=True)
    structures.mkdir(parents=True, exist_ok=True)

    def read(mid: str) -> bytes:
        src = source / f"{mid}.json.gz"
        if not src.is_file():
            raise DatasetError(f"{src}: the label of {mid}, named in {out / SPLIT_FILE}, is gone")
        return src.read_bytes()

    for mid in split["test_pool"]:
        if not (labels / f"{mid}.json.gz").is_file():
            data = read(mid)
            atomic_write(labels / f"{mid}.json.gz", lambda f, data=data: f.write(data))  # type: ignore[misc]
    for mid in split["pool"]:
        target = structures / f"{mid}.extxyz"
        if not target.is_file():
            doc = json.loads(gzip.decompress(read(mid)))
            atoms = atoms_from_dict(doc["structure"], f"{source / mid}.json.gz")
            with atomic_path(target) as tmp:
                write(tmp, atoms, format="extxyz")
    return labels, structures


# ------------------------------------------------------------------------------------------- the loops


def loop_name(acquisition: str, seed: int) -> str:
    """The folder name of one loop under ``OUT/loops``."""
    return f"{acquisition}-seed{seed}"


def loop_config(args: argparse.Namespace, out: Path, acquisition: str, seed: int, budget: int) -> dict[str, Any]:
    """The :class:`~ase_dostransformer.active.loop.LoopConfig` fields of one loop (plain values, for a worker)."""
    from ase_dostransformer.active.loop import LoopConfig

    config = LoopConfig(
        out=str(out / "loops" / loop_name(acquisition, seed)),
        initial=[*map(str, args.initial), str(out / "test-labels")],
        pool=[str(out / "pool-structures")],
        budget=budget,
        batch=args.batch,
        acquisition=acquisition,
        seed=seed,
        members=args.members,
        epochs=args.epochs,
        finetune=args.finetune,
        hidden=args.hidden,
        split=str(out / SPLIT_FILE),
        threads=args.threads,
        gap_head=args.gap_head,
        embedder=args.embedder,
    )
    return config.to_dict()


def round0_done(loop: Path, members: int) -> bool:
    """Whether every round-0 member of the loop folder ``loop`` has finished training."""
    runs = [loop / "round-000" / f"member-{k}" for k in range(members)]
    return all((r / "model.pt").is_file() and (r / "metrics.json").is_file() for r in runs)


def share_round0(source: Path, target: Path, members: int, log: Log = _print) -> int:
    """Copy the finished round-0 member runs of loop ``source`` into loop ``target``; how many were copied.

    A member already finished in ``target`` is kept; an unfinished one (a killed training) is replaced.
    Each copy goes to a temporary folder first and is renamed into place, so a kill leaves either
    no member folder or a whole one. The loop of ``target`` then finds its round-0 members trained
    (:func:`~ase_dostransformer.active.loop.run_loop` skips a member with ``model.pt`` and
    ``metrics.json``) and only evaluates them.
    """
    from ase_dostransformer.errors import DatasetError

    if not round0_done(source, members):
        raise DatasetError(f"{source}: round 0 has not finished; nothing to share")
    copied = 0
    for k in range(members):
        src = source / "round-000" / f"member-{k}"
        dst = target / "round-000" / f"member-{k}"
        if (dst / "model.pt").is_file() and (dst / "metrics.json").is_file():
            continue
        tmp = dst.with_name(f".{dst.name}.copy")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
        copied += 1
    if copied:
        log(f"round 0 of {source.name}: {copied} member runs copied into {target.name}")
    return copied


def run_one(job: dict[str, Any]) -> dict[str, Any]:
    """Run (or continue) one loop; the worker of ``--jobs`` (a top-level function, picklable for spawn)."""
    from ase_dostransformer.active.labeller import StoredLabeller
    from ase_dostransformer.active.loop import LoopConfig, run_loop

    config = LoopConfig(**job["config"])
    logfile = Path(config.out) / "experiment.log"
    prefix = f"[{Path(config.out).name}{' round 0' if job.get('round0') else ''}]"

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {prefix} {msg}"
        print(line, flush=True)
        with open(logfile, "a", encoding="utf-8") as f:
            f.write(line + "\n")

    Path(config.out).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result = run_loop(config, StoredLabeller(job["labels"]), log)
    return {"loop": Path(config.out).name, "rounds_run": result.rounds_run, "seconds": round(time.time() - t0, 1)}


def run_jobs(jobs: list[dict[str, Any]], n_jobs: int, log: Log = _print) -> list[dict[str, Any]]:
    """Run ``jobs`` (:func:`run_one`), ``n_jobs`` processes side by side (in this process when 1).

    Every job runs to its end even when another fails; then the first failure is raised.
    """
    if n_jobs <= 1 or len(jobs) <= 1:
        return [run_one(job) for job in jobs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    done, errors = [], []
    with ProcessPoolExecutor(max_workers=n_jobs, mp_context=multiprocessing.get_context("spawn")) as ex:
        futures = {ex.submit(run_one, job): job for job in jobs}
        for future, job in futures.items():
            try:
                done.append(future.result())
            except Exception as exc:  # reported below, after the other loops have finished
                log(f"loop {Path(job['config']['out']).name} failed: {type(exc).__name__}: {exc}")
                errors.append(exc)
    if errors:
        raise errors[0]
    return done


def run_experiment(args: argparse.Namespace, out: Path, split: dict[str, Any], log: Log = _print) -> dict[str, Any]:
    """Round 0 once per seed, shared, then every loop to its budget; the timings."""
    loops = out / "loops"
    labels = str(Path(split["options"]["pool_labels"]))
    n_pool = split["counts"]["pool"]
    if args.budget > n_pool / 2:
        log(
            f"warning: the budget ({args.budget}) is {args.budget / n_pool:.0%} of the pool ({n_pool}): near the end "
            "both acquisitions hold mostly the same crystals, and the curves meet by construction"
        )
    timing: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "round0": [], "loops": []}
    t0 = time.time()
    first = []
    for seed in args.seeds:
        group = [loops / loop_name(a, seed) for a in args.acquisitions]
        if not any(round0_done(loop, args.members) for loop in group):
            config = loop_config(args, out, args.acquisitions[0], seed, budget=0)
            first.append({"config": config, "labels": labels, "round0": True})
    if first:
        log(f"round 0: {len(first)} trainings (one per seed), {min(args.jobs, len(first))} at a time")
        timing["round0"] = run_jobs(first, args.jobs, log)
    for seed in args.seeds:
        group = [loops / loop_name(a, seed) for a in args.acquisitions]
        source = next(loop for loop in group if round0_done(loop, args.members))
        for loop in group:
            if loop != source:
                share_round0(source, loop, args.members, log)
    jobs = [
        {"config": loop_config(args, out, a, seed, args.budget), "labels": labels}
        for seed in args.seeds
        for a in args.acquisitions
    ]
    log(f"loops: {len(jobs)}, {min(args.jobs, len(jobs))} at a time")
    timing["loops"] = run_jobs(jobs, args.jobs, log)
    timing["wall_seconds"] = round(time.time() - t0, 1)
    return timing


# ------------------------------------------------------------------------------------------ summary


def _stats(values: list[float | None]) -> dict[str, float | None]:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return {"mean": None, "min": None, "max": None}
    return {"mean": float(np.mean(vals)), "min": float(min(vals)), "max": float(max(vals))}


def _training(loop: Path, r: int) -> dict[str, Any]:
    """Epochs run and fit seconds of round ``r``'s members (from their ``metrics.json``)."""
    runs = sorted((loop / f"round-{r:03d}").glob("member-*/metrics.json"))
    info = [json.loads(p.read_text(encoding="utf-8")) for p in runs]
    return {
        "epochs_run": [m.get("epochs_run") for m in info],
        "fit_seconds": [m.get("fit_seconds") for m in info],
    }


def summarise(out: Path, acquisitions: Sequence[str], seeds: Sequence[int], timing: dict | None = None) -> dict:
    """``OUT/summary.json``: every loop's curve, the means and ranges over seeds, the picks; written and returned.

    A loop folder without a learning curve yet is left out; a number of labels added that not every
    seed has reached yet is averaged over the seeds that have.
    """
    from ase_dostransformer.active.loop import CURVE_FILE, STATE_FILE

    split = json.loads((out / SPLIT_FILE).read_text(encoding="utf-8"))
    gaps: dict[str, float | None] = split["gaps"]
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    picks: dict[str, dict[str, list[str]]] = {}
    for a in acquisitions:
        for seed in seeds:
            loop = out / "loops" / loop_name(a, seed)
            if not (loop / CURVE_FILE).is_file():
                continue
            state = json.loads((loop / STATE_FILE).read_text(encoding="utf-8"))
            rows = sorted(json.loads((loop / CURVE_FILE).read_text(encoding="utf-8"))["rows"], key=lambda r: r["round"])
            chosen: list[str] = []
            points = []
            for row in rows:
                rnd = state["rounds"][row["round"]]
                chosen += rnd.get("selected", [])
                points.append(
                    {
                        "round": row["round"],
                        "added": row["spent"],
                        "n_acquired": row["n_acquired"],
                        "n_labels": row["n_labels"],
                        "n_failed": row["n_failed"],
                        "metals_picked": len(_metals(chosen, gaps)),
                        **{m: row["test"][m] for m in METRICS},
                        **{q: row.get(q) for q in QUANTITIES},
                        "baseline": {m: row["test_mean_baseline"][m] for m in METRICS},
                        "seconds": row.get("seconds"),
                        **_training(loop, row["round"]),
                    }
                )
            curves.setdefault(a, {})[str(seed)] = points
            picks.setdefault(a, {})[str(seed)] = chosen
    mean: dict[str, list[dict[str, Any]]] = {}
    for a, by_seed in curves.items():
        added = sorted({p["added"] for pts in by_seed.values() for p in pts})
        mean[a] = []
        for x in added:
            at = [p for pts in by_seed.values() for p in pts if p["added"] == x]
            keys = (*METRICS, *QUANTITIES, "metals_picked")
            mean[a].append({"added": x, "seeds": len(at), **{k: _stats([p[k] for p in at]) for k in keys}})
    overlap = {}
    if len(acquisitions) >= 2:
        first, second = picks.get(acquisitions[0], {}), picks.get(acquisitions[1], {})
        for key in map(str, seeds):
            if key in first and key in second:
                overlap[key] = len(set(first[key]) & set(second[key]))
    summary = {
        "experiment": "pool-based replay: uncertainty vs random acquisition of GPAW labels (train/edos/README.md)",
        "split": {"counts": split["counts"], "metal_gap_eV": split["metal_gap_eV"], "options": split["options"]},
        "acquisitions": list(acquisitions),
        "seeds": list(seeds),
        "curves": curves,
        "mean_over_seeds": mean,
        "picked_by_both": {"acquisitions": list(acquisitions[:2]), "by_seed": overlap},
    }
    old = out / SUMMARY_FILE
    runs = json.loads(old.read_text(encoding="utf-8")).get("runs", []) if old.is_file() else []
    summary["runs"] = [*runs, timing] if timing is not None else runs  # one entry per invocation that trained
    _write_json(out / SUMMARY_FILE, summary)
    return summary


def _cell(s: dict[str, float | None], spec: str) -> str:
    if s["mean"] is None:
        return "n/a"
    if s["min"] == s["max"]:
        return format(s["mean"], spec)
    return f"{s['mean']:{spec}} [{s['min']:{spec}}, {s['max']:{spec}}]"


def _majority(summary: dict[str, Any]) -> str:
    """The accuracy of always calling the test set's majority class (the same for every curve point)."""
    values = {
        p["majority_baseline_accuracy"]
        for by_seed in summary["curves"].values()
        for pts in by_seed.values()
        for p in pts
        if p.get("majority_baseline_accuracy") is not None
    }
    return f"Always calling the majority class scores metal/insulator accuracy {min(values):.2f}. " if values else ""


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary's means over seeds (and their range) as a markdown table."""
    c = summary["split"]["counts"]
    head = (
        f"Test set: {c['test']} crystals ({c['test_initial']} of the initial labels' random test part, "
        f"{c['test_pool']} from the labelled pool; {c['metals_test']} metals, DFT gap < {METAL_GAP} eV). "
        f"Pool: {c['pool']} crystals ({c['metals_pool']} metals). Round 0: {c['train']} training labels. "
        f"{_majority(summary)}"
        f"Mean over seeds {', '.join(map(str, summary['seeds']))} [their range].\n\n"
    )
    lines = [
        "| acquisition | labels added | test MSE x10 | MAE | R^2 | gap MAE (eV) | metal/insulator acc. "
        "| balanced acc. | metals picked |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for a, points in summary["mean_over_seeds"].items():
        for p in points:
            lines.append(
                f"| {a} | +{p['added']} | {_cell(p['mse_x10'], '.3f')} | {_cell(p['mae'], '.3f')} "
                f"| {_cell(p['r2'], '.3f')} | {_cell(p['gap_mae_eV'], '.2f')} "
                f"| {_cell(p['metal_insulator_accuracy'], '.2f')} "
                f"| {_cell(p['metal_insulator_balanced_accuracy'], '.2f')} | {_cell(p['metals_picked'], '.1f')} |"
            )
    return head + "\n".join(lines) + "\n"


def plot(summary: dict[str, Any], path: Path) -> Path:
    """Test MSE x10 and R^2 against labels added: one line per acquisition, mean over seeds, range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ase_dostransformer.io.atomic import atomic_path

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
    panels = (("mse_x10", "test MSE x10 (lower is better)"), ("r2", "test R$^2$ (higher is better)"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for a, points in summary["mean_over_seeds"].items():
            pts = [p for p in points if p[key]["mean"] is not None]
            x = [p["added"] for p in pts]
            line = ax.plot(x, [p[key]["mean"] for p in pts], marker="o", label=a)[0]
            ax.fill_between(
                x, [p[key]["min"] for p in pts], [p[key]["max"] for p in pts], color=line.get_color(), alpha=0.2
            )
        ax.set_xticks(sorted({p["added"] for points in summary["mean_over_seeds"].values() for p in points}))
        ax.set_xlabel("GPAW labels added to the initial set")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].legend()
    c = summary["split"]["counts"]
    fig.suptitle(
        f"Electron DOS active learning: {c['test']} test crystals ({c['metals_test']} metals); "
        f"mean of {len(summary['seeds'])} seeds, range shaded",
        fontsize=10,
    )
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    from ase_dostransformer.active.acquisition import ACQUISITIONS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", required=True, help="experiment folder (split, loops, summary)")
    ap.add_argument("--initial", nargs="+", default=[str(p) for p in DEFAULT_INITIAL], help="initial labels L0")
    ap.add_argument("--pool-labels", default=str(DEFAULT_POOL_LABELS), help="the labelled pool sample P (read only)")
    ap.add_argument("--test-from-pool", type=int, default=100, help="P crystals added to the test set")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of L0's random split and of the P test draw")
    ap.add_argument("--acquisitions", nargs="+", choices=ACQUISITIONS, default=list(ACQUISITIONS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="one loop per acquisition and seed")
    ap.add_argument("--budget", type=int, default=300, help="labels each loop adds")
    ap.add_argument("--batch", type=int, default=150, help="labels per round")
    ap.add_argument("--members", type=int, default=2, help="models per round (the ensemble)")
    ap.add_argument("--epochs", type=int, default=45, help="maximum epochs per model (train.sh: 45)")
    ap.add_argument("--hidden", type=int, default=128, help="model width (train.sh: 128)")
    ap.add_argument("--finetune", action="store_true", help="start each round's models from the previous round's")
    ap.add_argument("--gap-head", action="store_true", help="members learn the gap too (train --gap_head)")
    ap.add_argument("--embedder", default="graph_network", help="members' encoder (train --embedder; e.g. foundation)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per loop")
    ap.add_argument("--jobs", type=int, default=1, help="loops side by side (one process each)")
    ap.add_argument("--plot", default=str(DEFAULT_PLOT), help="the learning-curve figure")
    ap.add_argument("--split-only", action="store_true", help="make the fixed split and the loops' inputs, then stop")
    ap.add_argument("--summary-only", action="store_true", help="summarise the finished rounds; train nothing")
    args = ap.parse_args(argv)
    if len(set(args.acquisitions)) != len(args.acquisitions) or len(set(args.seeds)) != len(args.seeds):
        ap.error("--acquisitions and --seeds must not repeat a value")
    if args.jobs < 1:
        ap.error(f"--jobs must be >= 1, got {args.jobs}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Split, loops, summary (see the module docstring)."""
    from ase_dostransformer.errors import DOSTransformerError

    try:
        return _main(argv)
    except DOSTransformerError as exc:
        print(f"active_experiment: error: {exc}", file=sys.stderr)
        return 2


def _main(argv: Sequence[str] | None) -> int:
    from ase_dostransformer.errors import DOSTransformerError

    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # before torch is imported, here and in the workers
    from ase_dostransformer.io.locks import lock_folder

    out = Path(args.out).resolve()
    timing, failure = None, None
    if args.summary_only:  # reads the loops (also while they run) and writes only the summary files
        if not (out / SPLIT_FILE).is_file():
            raise SystemExit(f"--summary-only: no {SPLIT_FILE} in {out}; run the experiment first")
    else:
        with lock_folder(out, "train/edos/active_experiment.py"):
            split = make_split(out, args.initial, args.pool_labels, args.test_from_pool, args.split_seed)
            prepare_inputs(out, split)
            if args.split_only:
                return 0
            try:
                timing = run_experiment(args, out, split)
            except DOSTransformerError as exc:  # a loop failed: summarise the others, then report it
                failure = exc
    summary = summarise(out, args.acquisitions, args.seeds, timing)
    table = markdown_table(summary)
    if summary["curves"]:
        print(f"plot: {plot(summary, Path(args.plot))}")
    print(table, end="")
    from ase_dostransformer.io.atomic import atomic_write_text

    atomic_write_text(out / "summary.md", table)
    if failure is not None:
        raise failure
    return 0


if __name__ == "__main__":
    sys.exit(main())
