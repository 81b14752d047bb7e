r"""Suspect metal labels: DFT metals whose own DOS shows an empty window at 0 eV, queued for a plane-wave check.

A GPAW label is a metal when its DFT gap (the dataset's, ``properties["band_gap"]`` of
:func:`ase_dostransformer.io.electron_sources.read_dft_result`) is below
:data:`ase_dostransformer.electronic.METAL_GAP`. It is *suspect* when the DOS the dataset makes of it
(:func:`~ase_dostransformer.io.electron_dataset.process_edos`) nonetheless has an empty window wider
than ``--window`` eV (default 0.5) within 0.5 eV of 0 eV
(:func:`ase_dostransformer.electronic.band_gap_estimate`): either the dzp basis closed a real gap, or a
band only grazes the Fermi level. Each suspect also gets its ``filled`` gap, between the last band
its electrons fill and the next (the dataset reader's
:func:`~ase_dostransformer.io.electron_sources.filled_band_edges`; the electron count is the result's
``nelectrons``, or for older results the bands below the Fermi level on the DOS mesh, when they come
to a whole number within ``electron_sources.FILLING_TOL``), and a ``kind``:

- ``fermi``: gapped by filling (>= METAL_GAP): the SCF's Fermi level, found on the coarser SCF mesh,
  cuts a band edge of the DOS mesh; the label's own eigenvalues already hold the gap. The dataset
  reader takes such a label as gapped (``gap_source`` ``"band_filling"``), so no suspect has this kind
  any more (five did before the reader learnt it: AgI, CsAu, GaN, CuH, NbRuP);
- ``touch``: the last full and the first empty band touch (|gap| < METAL_GAP; PBE's zero-gap
  band inversions, e.g. InAs, HgS);
- ``overlap``: they overlap in energy (a semimetal on this basis);
- ``partial``: the electrons do not fill whole bands at the Fermi level (a metal by filling).

The table goes to stdout (``--json`` writes it too). ``--structures DIR`` writes each suspect's
structure (from its result file) as ``DIR/<q>/<id>.extxyz``, dealt round-robin into ``--queues``
folders with their lists ``DIR/queue-<q>.txt`` (smallest cells first), and ``DIR/queue.json``, as
``pool_queue.py`` does for the pool; the runner then recomputes them with plane waves::

    .venv/bin/python train/edos/suspect_labels.py --structures /tmp/edos_pwcheck --json /tmp/edos_pwcheck/suspects.json
    OMP_NUM_THREADS=1 nice -n 19 /usr/bin/python3 train/edos/gpaw_runner.py $(cat /tmp/edos_pwcheck/queue-0.txt) \
        --mode pw --out /tmp/pwcheck --kdensity 2.5 --dos-kdensity 8 --skip-failed
    .venv/bin/python train/edos/suspect_labels.py --pw /tmp/pwcheck     # the labels against the PW results

``--pw DIR`` adds each suspect's PW result (same id) read the same way (gap, filled gap, window) and
a verdict: ``replace`` (the PW result is gapped as the dataset reads it: the label is wrong), ``keep``
(the PW result is a metal too: PBE's own answer), ``failed`` (in ``DIR/failures.jsonl``) or ``pending``.
``--replace-in LIST`` then rewrites a label list (``model_files.txt``) with each ``replace`` label's
path swapped for its PW result; the LCAO files stay, as the record of what was computed first.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from ase_dostransformer.electronic import METAL_GAP, band_gap_estimate
from ase_dostransformer.errors import DatasetError, OptionError
from ase_dostransformer.io.electron_dataset import process_edos
from ase_dostransformer.io.electron_sources import (
    EDOSRecord,
    filled_band_edges,
    load_json,
    read_dft_result,
    result_nelectrons,
)

HERE = Path(__file__).resolve().parent
#: The folders of training labels searched by default.
LABEL_FOLDERS = ("dft_gpaw", "dft_gpaw_metals", "dft_gpaw_pool")
#: Default width (eV) of the empty window that makes a metal label suspect.
DEFAULT_WINDOW = 0.5
#: Kinds of suspect (module docstring).
KINDS = ("fermi", "touch", "overlap", "partial")


@dataclass(frozen=True)
class LabelCheck:
    """One result file as the dataset reads it, with its filled-band gap (eV; ``None``: not whole bands)."""

    id: str
    folder: str
    path: str
    formula: str
    natoms: int
    dft_gap: float
    window: float
    filled_gap: float | None
    kind: str
    seconds: float | None = None  # the runner's wall time for it, when recorded

    @property
    def metal(self) -> bool:
        """A metal by the dataset's DFT gap."""
        return self.dft_gap < METAL_GAP


def load_result(path: Path) -> dict:
    """A runner result file (``.json`` or ``.json.gz``)."""
    try:
        obj = load_json(path)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable result file ({type(exc).__name__}: {exc})") from exc
    if not isinstance(obj, dict) or "eigenvalues" not in obj or "efermi" not in obj:
        raise DatasetError(f"{path}: not a gpaw_runner result (no eigenvalues or efermi)")
    return obj


def result_files(folder: Path) -> list[Path]:
    """The result files of a label folder (not ``queue.json``); a missing folder is an error."""
    if not folder.is_dir():
        raise OptionError(f"label folder {folder} does not exist")
    files = sorted(folder.glob("*.json.gz")) + sorted(f for f in folder.glob("*.json") if f.name != "queue.json")
    return files


def filled_gap(result: dict) -> float | None:
    """The gap between the last full and the first empty band (negative: overlap); ``None``: not whole bands.

    The reader's own rule (:func:`ase_dostransformer.io.electron_sources.filled_band_edges`): the
    electron count is the result's ``nelectrons`` when it has it, else the k-weighted number of bands
    below its Fermi level on the DOS mesh, when within ``electron_sources.FILLING_TOL`` of a whole number.
    """
    edges = filled_band_edges(
        result["eigenvalues"], result["weights"], float(result["efermi"]), result_nelectrons(result)
    )
    return None if edges is None else edges[1] - edges[0]


def kind_of(gap: float | None) -> str:
    """One of :data:`KINDS` for a filled-band gap."""
    if gap is None:
        return "partial"
    if gap >= METAL_GAP:
        return "fermi"
    return "touch" if gap > -METAL_GAP else "overlap"


def check_label(path: Path) -> LabelCheck:
    """Read one result file the way ``dostransformer dataset build`` does, and measure its window."""
    obj = load_result(path)
    rec = next(read_dft_result(path, obj=obj))
    if not isinstance(rec, EDOSRecord):
        raise DatasetError(f"{path}: the dataset reader skips it ({rec.reason})")
    y = process_edos(rec.energies, rec.densities, rec.efermi)
    gap = filled_gap(obj)
    seconds = obj.get("seconds")
    return LabelCheck(
        id=rec.id,
        folder=path.parent.name,
        path=str(path),
        formula=rec.structure.get_chemical_formula(),
        natoms=len(rec.structure),
        dft_gap=round(float(rec.properties["band_gap"]), 4),
        window=round(float(band_gap_estimate(y).gap), 3),
        filled_gap=None if gap is None else round(gap, 4),
        kind=kind_of(gap),
        seconds=float(seconds) if isinstance(seconds, (int, float)) else None,
    )


def find_suspects(files: Iterable[Path], window: float = DEFAULT_WINDOW) -> tuple[list[LabelCheck], int]:
    """``(suspects, metals)``: the metal labels among ``files`` whose DOS window exceeds ``window`` eV.

    Files the dataset reader skips are left out here too (they are no labels). Suspects come
    smallest cell first, then by id; an id met twice keeps its first file.
    """
    if not window > 0:
        raise OptionError(f"the window threshold must be > 0 eV, got {window}")
    suspects: dict[str, LabelCheck] = {}
    metals = 0
    for path in files:
        try:
            check = check_label(path)
        except DatasetError:
            continue
        if not check.metal:
            continue
        metals += 1
        if check.window > window and check.id not in suspects:
            suspects[check.id] = check
    return sorted(suspects.values(), key=lambda c: (c.natoms, c.id)), metals


def write_queue(suspects: Sequence[LabelCheck], structures: Path, queues: int = 1) -> list[Path]:
    """Each suspect's structure as ``structures/<q>/<id>.extxyz``, the lists ``queue-<q>.txt`` and ``queue.json``.

    Returns the list files. The structure is the one the label was computed for (its result file).
    """
    from ase import Atoms
    from ase.io import write

    if queues < 1:
        raise OptionError(f"--queues must be >= 1, got {queues}")
    lists: list[list[str]] = [[] for _ in range(queues)]
    for n, check in enumerate(suspects):
        s = load_result(Path(check.path))["structure"]
        atoms = Atoms(numbers=s["numbers"], positions=s["positions"], cell=s["cell"], pbc=s["pbc"])
        folder = structures / str(n % queues)
        folder.mkdir(parents=True, exist_ok=True)
        write(folder / f"{check.id}.extxyz", atoms)
        lists[n % queues].append(str(folder / f"{check.id}.extxyz"))
    out = []
    for q, files in enumerate(lists):
        out.append(structures / f"queue-{q}.txt")
        out[-1].write_text("".join(f + "\n" for f in files))
    doc = {"queue": [{"id": c.id, "folder": c.folder, "atoms": c.natoms} for c in suspects]}
    (structures / "queue.json").write_text(json.dumps(doc, indent=1) + "\n")
    return out


def failures(folder: Path) -> dict[str, str]:
    """Id -> the reason of its latest failure in ``folder/failures.jsonl``."""
    log = folder / "failures.jsonl"
    out: dict[str, str] = {}
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                item = json.loads(line)
                out[str(item["id"])] = str(item["reason"]).splitlines()[0]
            except (ValueError, KeyError, TypeError):
                continue
    return out


def pw_result(pw: Path, rid: str) -> Path | None:
    """The PW result file of material ``rid`` in ``pw`` (``.json.gz`` or ``.json``), or None."""
    return next((p for p in (pw / f"{rid}.json.gz", pw / f"{rid}.json") if p.is_file()), None)


def compare_pw(suspects: Sequence[LabelCheck], pw: Path) -> list[dict]:
    """Each suspect with its PW result from ``pw`` (same id) and a verdict (module docstring)."""
    if not pw.is_dir():
        raise OptionError(f"PW result folder {pw} does not exist")
    failed = failures(pw)
    rows = []
    for check in suspects:
        row: dict = asdict(check)
        found = pw_result(pw, check.id)
        if found is not None:
            got = check_label(found)
            row.update(pw_gap=got.dft_gap, pw_filled_gap=got.filled_gap, pw_window=got.window, pw_seconds=got.seconds)
            row["verdict"] = "keep" if got.metal else "replace"
        elif check.id in failed:
            row.update(verdict="failed", reason=failed[check.id])
        else:
            row["verdict"] = "pending"
        rows.append(row)
    return rows


def replace_in_list(rows: Sequence[dict], label_list: Path, pw: Path) -> int:
    """Swap each ``replace`` verdict's label in ``label_list`` for its PW result; returns how many were swapped.

    ``label_list`` holds one result file per line, relative to its own folder (as ``model_files.txt``).
    The LCAO label files stay where they are (their provenance); only the list a training reads changes.
    A PW result must lie under the list's folder, so that the list stays relative to it.
    """
    if not label_list.is_file():
        raise OptionError(f"label list {label_list} does not exist")
    base = label_list.resolve().parent
    lines = label_list.read_text().split()
    index = {(base / line).resolve(): i for i, line in enumerate(lines)}
    swapped = 0
    for row in rows:
        if row["verdict"] != "replace":
            continue
        i = index.get(Path(row["path"]).resolve())
        if i is None:
            continue  # a suspect this list does not train on
        found = pw_result(pw, row["id"])
        assert found is not None  # a 'replace' verdict is given only to a suspect with a PW result
        try:
            lines[i] = str(found.resolve().relative_to(base))
        except ValueError as exc:
            raise OptionError(f"PW result {found} is not under {base}, the folder of {label_list}") from exc
        swapped += 1
    label_list.write_text("\n".join(lines) + "\n")
    return swapped


def _relative(path: str) -> str:
    """``path`` relative to this script's folder when under it (so a written JSON holds no machine's paths)."""
    try:
        return str(Path(path).resolve().relative_to(HERE))
    except ValueError:
        return path


def _fmt(value: object) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def table(rows: Sequence[dict]) -> str:
    """A fixed-width table of the rows (the label's columns, and the PW ones when present)."""
    cols = ["id", "folder", "formula", "natoms", "dft_gap", "window", "filled_gap", "kind"]
    if any("verdict" in r for r in rows):
        cols += ["pw_gap", "pw_filled_gap", "pw_window", "pw_seconds", "verdict"]
    cells = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(line[i]) for line in cells]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)) for line in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "folders",
        nargs="*",
        default=[str(HERE / f) for f in LABEL_FOLDERS],
        help=f"label folders of result files (default: {', '.join(LABEL_FOLDERS)} beside this script)",
    )
    ap.add_argument("--window", type=float, default=DEFAULT_WINDOW, help="empty window (eV) that makes a metal suspect")
    ap.add_argument("--structures", default=None, help="write the runner's queue (structure files) here")
    ap.add_argument("--queues", type=int, default=1, help="runner processes the queue is dealt to")
    ap.add_argument("--pw", default=None, help="folder of PW results (gpaw_runner.py --mode pw) to compare")
    ap.add_argument("--json", default=None, help="write the suspects (and PW comparison) here as JSON")
    ap.add_argument(
        "--replace-in",
        default=None,
        help="with --pw: in this label list (e.g. model_files.txt), swap each 'replace' label for its PW result",
    )
    args = ap.parse_args(argv)
    try:
        files = [f for folder in args.folders for f in result_files(Path(folder))]
        suspects, metals = find_suspects(files, args.window)
        rows = compare_pw(suspects, Path(args.pw)) if args.pw else [asdict(c) for c in suspects]
        lists = write_queue(suspects, Path(args.structures), args.queues) if args.structures else []
        if args.replace_in and not args.pw:
            raise OptionError("--replace-in needs --pw (the verdicts)")
        swapped = replace_in_list(rows, Path(args.replace_in), Path(args.pw)) if args.replace_in else 0
    except (OptionError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(table(rows))
    kinds = {k: sum(c.kind == k for c in suspects) for k in KINDS}
    print(
        f"{len(suspects)} suspect of {metals} metal labels in {len(files)} files (window > {args.window:g} eV); {kinds}"
    )
    if args.pw:
        verdicts = sorted({r["verdict"] for r in rows})
        print("verdicts: " + ", ".join(f"{v} {sum(r['verdict'] == v for r in rows)}" for v in verdicts))
    for path in lists:
        print(f"queue: {path}")
    if args.replace_in:
        print(f"{args.replace_in}: {swapped} labels replaced by their PW results")
    if args.json:
        portable = [{**r, "path": _relative(r["path"])} for r in rows]
        doc = {"window": args.window, "metal_gap": METAL_GAP, "metals": metals, "files": len(files), "rows": portable}
        Path(args.json).write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
