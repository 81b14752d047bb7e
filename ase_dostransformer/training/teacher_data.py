"""Teacher phonon labels as training targets beside the DFT ones (``dostransformer train --teacher``).

A physical phonon model (``--output physical``) learns from two sources at once:

- the DFT dataset's 51-point max-normalised spectra (``graph.y``, ``graph.has_dft``);
- the teacher's full-range spectra (:mod:`ase_dostransformer.teacher`): for each crystal the DOS
  normalised to 1 (the 3N states divided out), Gaussian-smoothed (standard deviation
  ``max(4 cm^-1, 1.5% of the highest mode)``, or a fixed width: ``train --teacher_sigma``,
  :func:`teacher_sigma_cm1`) and sampled on :data:`TEACHER_POINTS` frequencies from 0 to
  :data:`TEACHER_SPAN` x its highest mode, stored as ``p(omega) * omega_top`` (``graph.t_dos``, unitless),
  with ``omega_top`` (``graph.t_top``, cm^-1) and the first moment (``graph.t_mean``, cm^-1);
  ``graph.t_family`` numbers the crystal's family (itself and its strained copies, ``tags.parent``), for
  the volume-response term; ``graph.t_thermo`` holds the teacher's mode sums per mode, in k_B:
  Cv at :data:`THERMO_CV_TEMPERATURES` and S at :data:`THERMO_S_TEMPERATURE` (phonopy on its mesh, not
  from the smoothed DOS), for the thermodynamic term.

A DFT crystal that the teacher labelled too carries both targets on one graph; every other teacher
crystal is a new training graph. Left out, always: the DFT test crystals and anything derived from
them, the held-out chemistry split (:func:`~ase_dostransformer.teacher.records.training_records`),
and the strained copies of DFT validation crystals (validation stays unseen). The teacher labels of
the DFT validation crystals are kept on their graphs: they give the validation's teacher loss.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import DatasetError
from ..thermo import GAS_CONSTANT

__all__ = [
    "TEACHER_POINTS",
    "TEACHER_SPAN",
    "THERMO_CV_TEMPERATURES",
    "THERMO_S_TEMPERATURE",
    "attach_teacher_target",
    "family_number",
    "teacher_sigma_cm1",
    "teacher_target",
    "with_teacher_labels",
]

#: Frequencies per teacher target.
TEACHER_POINTS = 96
#: The target covers 0 .. TEACHER_SPAN x the highest mode (the model must be ~0 beyond the top).
TEACHER_SPAN = 1.1
#: Temperatures (K) of the heat capacities, and of the entropy, that the thermodynamic term compares.
THERMO_CV_TEMPERATURES = (20.0, 50.0)
THERMO_S_TEMPERATURE = 300.0


def family_number(name: str) -> int:
    """A stable non-negative 63-bit number for a family name (a crystal's id, or its strained copies' parent)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


def thermo_target(record: dict[str, Any]) -> torch.Tensor:
    """``(1, 3)``: the record's Cv at :data:`THERMO_CV_TEMPERATURES`, S at :data:`THERMO_S_TEMPERATURE`.

    Per mode, in k_B: the molar values (per mole of cells) divided by 3N R
    (:data:`~ase_dostransformer.thermo.GAS_CONSTANT`).
    """
    thermal = record["thermal"]
    temps = [float(t) for t in thermal["temperatures"]]
    modes = 3 * len(record["structure"]["numbers"])
    try:
        values = [float(thermal["cv"][temps.index(t)]) for t in THERMO_CV_TEMPERATURES]
        values.append(float(thermal["entropy"][temps.index(THERMO_S_TEMPERATURE)]))
    except ValueError:
        raise DatasetError(
            f"teacher record {record.get('id')}: no thermal properties at {THERMO_CV_TEMPERATURES} and "
            f"{THERMO_S_TEMPERATURE} K (it has {temps})"
        ) from None
    return torch.tensor([values], dtype=torch.float32) / (modes * GAS_CONSTANT)


def teacher_sigma_cm1(top_cm1: float, sigma_cm1: float | None = None) -> float:
    """A teacher target's smoothing width (cm^-1): ``sigma_cm1``, else ``max(4 cm^-1, 1.5% of the highest mode)``."""
    return float(sigma_cm1) if sigma_cm1 is not None else max(4.0, 0.015 * top_cm1)


def teacher_target(record: dict[str, Any], sigma_cm1: float | None = None) -> dict[str, torch.Tensor]:
    """``{"t_top", "t_dos" (1, TEACHER_POINTS), "t_mean", "t_family", "t_thermo" (1, 3)}`` of one teacher record.

    The spectrum is smoothed with :func:`teacher_sigma_cm1` (``sigma_cm1`` None: the default rule).
    """
    from ..teacher.records import decode_dos, mean_frequency, smooth_and_sample

    freq, total, _ = decode_dos(record)
    top = float(record["frequencies"]["max_cm1"])
    integral = float(np.trapezoid(np.clip(total, 0.0, None), freq))
    if not (top > 0 and integral > 0):
        raise DatasetError(f"teacher record {record.get('id')}: no positive spectrum to learn from")
    grid = np.linspace(0.0, TEACHER_SPAN * top, TEACHER_POINTS)
    p = smooth_and_sample(freq, np.clip(total, 0.0, None), grid, teacher_sigma_cm1(top, sigma_cm1)) / integral
    return {
        "t_top": torch.tensor([top], dtype=torch.float32),
        "t_dos": torch.from_numpy((p * top).astype(np.float32)).reshape(1, -1),
        "t_mean": torch.tensor([mean_frequency(freq, total)], dtype=torch.float32),
        "t_family": torch.tensor([family_number(str((record.get("tags") or {}).get("parent") or record.get("id")))]),
        "t_thermo": thermo_target(record),
    }


def attach_teacher_target(graph: Any, target: dict[str, torch.Tensor] | None, has_dft: bool) -> Any:
    """Give ``graph`` the teacher fields (zeros and ``has_teacher=False`` without a target) and ``has_dft``."""
    if target is None:
        target = {
            "t_top": torch.ones(1),
            "t_dos": torch.zeros(1, TEACHER_POINTS),
            "t_mean": torch.ones(1),
            "t_family": torch.tensor([-1]),  # no family: never paired (has_teacher is False)
            "t_thermo": torch.ones(1, 1 + len(THERMO_CV_TEMPERATURES)),
        }
        graph.has_teacher = torch.tensor([False])
    else:
        graph.has_teacher = torch.tensor([True])
    for key, value in target.items():
        setattr(graph, key, value)
    graph.has_dft = torch.tensor([bool(has_dft)])
    return graph


def _records_sha256(records: Sequence[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for rec in records:
        h.update(json.dumps([rec.get("id"), rec.get("structure")], sort_keys=True).encode())
    return h.hexdigest()


#: Teacher crystals per graph-cache file: a labelling run that adds records re-featurises only its last group.
CACHE_GROUP = 500


def _cache_groups(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """``records`` cut into runs of at most :data:`CACHE_GROUP` of one source each, in order."""
    groups: list[list[dict[str, Any]]] = []
    for rec in records:
        if not groups or len(groups[-1]) >= CACHE_GROUP or groups[-1][0].get("source") != rec.get("source"):
            groups.append([])
        groups[-1].append(rec)
    return groups


def with_teacher_labels(
    graphs: list,
    ids: Sequence[str],
    split: dict[str, np.ndarray],
    recipe: Any,
    folders: Sequence[str],
    sigma_cm1: float | None = None,
) -> tuple[list, dict[str, np.ndarray]]:
    """The DFT ``graphs`` with teacher targets attached, followed by graphs of the teacher-only crystals.

    Args:
        graphs: the DFT dataset's graphs (``y`` on the dataset grid), in the order of ``ids``.
        ids: the DFT crystals' ids (what teacher records of DFT crystals are called).
        split: the DFT split (row indices); the new graphs are appended to ``train``.
        recipe: the graph recipe of the run (the new crystals' graphs are made, and cached, with it).
        folders: teacher labelling folders (``train/teacher/<name>``).
        sigma_cm1: the teacher spectra's smoothing width (None: :func:`teacher_sigma_cm1`'s default rule).

    Returns:
        ``(graphs, split)``: every graph has ``has_dft``, ``has_teacher``, ``t_top``, ``t_dos``, ``t_mean``,
        ``t_family``, ``t_thermo``.
    """
    from ..graphs.cache import cached_graphs
    from ..teacher.records import record_atoms, training_records

    index = {str(i): n for n, i in enumerate(ids)}
    valid_ids = {str(ids[i]) for i in split.get("valid", ())}
    test_rows = {int(i) for i in split.get("test", ())}
    on_dft: dict[int, dict[str, torch.Tensor]] = {}
    extra: list[dict[str, Any]] = []
    for rec in training_records(folders):
        rid = str(rec.get("id"))
        if (rec.get("tags") or {}).get("parent") in valid_ids:
            continue  # a strained copy of a validation crystal: validation must stay unseen
        if rid in index:
            if index[rid] not in test_rows:
                on_dft[index[rid]] = teacher_target(rec, sigma_cm1)
            continue
        extra.append(rec)
    if not extra and not on_dft:
        raise DatasetError(f"no teacher records to train on under {list(folders)}")
    out = [attach_teacher_target(g, on_dft.get(n), True) for n, g in enumerate(graphs)]
    new = []
    for group in _cache_groups(extra):
        new.extend(cached_graphs(recipe, [record_atoms(rec) for rec in group], None, _records_sha256(group)))
    width = int(graphs[0].y.shape[-1]) if graphs and getattr(graphs[0], "y", None) is not None else 51
    for rec, g in zip(extra, new, strict=True):
        g.y = torch.zeros(1, width)
        out.append(attach_teacher_target(g, teacher_target(rec, sigma_cm1), False))
    split = dict(split)
    split["train"] = np.concatenate([np.asarray(split["train"], dtype=np.int64), np.arange(len(graphs), len(out))])
    return out, split
