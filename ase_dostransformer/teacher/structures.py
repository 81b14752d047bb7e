"""Crystals for the teacher to label: elements, prototype compounds, strained copies, DFT crystals.

Every function returns a list of :class:`ase.Atoms` whose ``info`` carries

* ``id``: unique and stable (``elem-Cu-fcc``, ``proto-rocksalt-MgO``, ``mp-1234-v+0.02``, ``mp-1234``);
* ``source``: ``"element"``, ``"prototype"``, ``"strained"`` or ``"dft"``;
* ``prototype`` and ``formula`` (generated crystals), ``parent`` and ``volume_strain`` (strained ones);
* ``relax_cell``: ``True`` for generated elements and prototypes (their lattice parameter is a guess),
  ``False`` for DFT crystals and strained copies (their volume is the point).

Generated cells are primitive, with a lattice parameter guessed from radii so that nearest-neighbour
distances are plausible (ionic radii for ionic prototypes, covalent for tetrahedral ones, metallic for
intermetallics); the labelling pipeline relaxes them. Element choices for ionic prototypes are
charge-balanced with pymatgen's oxidation states (the list ``Composition.oxi_state_guesses`` uses:
``Element.icsd_oxidation_states``, else ``Element.oxidation_states``), intermetallic ones come from metal
combinations. Selection is deterministic: candidates are enumerated in a fixed order; known real
compounds (:data:`KNOWN`) are kept first; the rest are shuffled with a seeded generator per prototype and
capped per prototype by a greedy pick that favours light-element (H, B, C, N) crystals and then elements
used least so far.

Generated crystals identical to a DFT *test* crystal (StructureMatcher) are recorded in the split file and
left out of :func:`queue`, so that no teacher label of a test crystal reaches training.

The held-out chemistry split (:func:`write_held_out_split`, :func:`held_out_ids`) is written to
``train/teacher/held_out_chemistry.json`` and regenerated with
``python -m ase_dostransformer.teacher.structures --write-split``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, chemical_symbols, covalent_radii, reference_states
from ase.spacegroup import crystal

from ..errors import DatasetError, OptionError
from ..io.atomic import atomic_write_text
from ..io.checksums import bytes_sha256

__all__ = [
    "ALLOWED_ELEMENTS",
    "DEFAULT_STRAINS",
    "HELD_OUT_PROTOTYPES",
    "KNOWN",
    "PROTOTYPES",
    "QUEUE_KINDS",
    "SPLIT_PATH",
    "dft_crystals",
    "dft_strain_parents",
    "elemental_crystals",
    "extended_queue",
    "has_light_bonds",
    "held_out_ids",
    "held_out_rule",
    "interleave",
    "min_distance",
    "more_strained_queue",
    "prototype_crystals",
    "queue",
    "read_held_out_split",
    "skipped_elements",
    "strained_copies",
    "strained_queue",
    "summary",
    "write_held_out_split",
]

#: Default seed of every deterministic choice in this module.
SEED = 13
#: Volume strains of :func:`strained_copies` (fractional change of the cell volume).
DEFAULT_STRAINS: tuple[float, ...] = (-0.04, -0.02, 0.02, 0.04)
#: Where the held-out chemistry split lives (inside the repository, next to the other label sets).
SPLIT_PATH = Path(__file__).resolve().parents[2] / "train" / "teacher" / "held_out_chemistry.json"

_NOBLE = {"He", "Ne", "Ar", "Kr", "Xe", "Rn"}
#: Elements the generators may use: H..Bi without noble gases and promethium, plus Th and U (the universal
#: potential covers H..Pu; radioactive exotica are left out).
ALLOWED_ELEMENTS: frozenset[str] = frozenset(
    [s for s in chemical_symbols[1:84] if s not in _NOBLE and s != "Pm"] + ["Th", "U"]
)
#: Light elements whose bonds carry modes above about 1000 cm^-1.
LIGHT = frozenset({"H", "B", "C", "N"})
_STIFF_LIGHT = frozenset({"Be", "B", "C", "N", "O"})

#: Anions and the formal charge used for them (all in pymatgen's oxidation-state lists).
ANION_CHARGE: dict[str, int] = {
    "H": -1, "F": -1, "Cl": -1, "Br": -1, "I": -1,
    "O": -2, "S": -2, "Se": -2, "Te": -2,
    "N": -3, "P": -3, "As": -3, "Sb": -3,
    "C": -4, "Si": -4,
}  # fmt: skip
#: Ionic radii (A) for anions that pymatgen has none for: chosen so that typical bonds come out
#: plausible (LiH 2.15 A, NaH 2.4 A, TiC 2.15 A, Mg2Si 2.75 A, Li3Sb 2.9 A).
_ANION_RADIUS_FALLBACK = {"H": 1.25, "C": 1.40, "Si": 1.90, "P": 1.80, "As": 1.90, "Sb": 2.10, "N": 1.40}


# ----------------------------------------------------------------------------------------------
# chemistry helpers


@cache
def oxidation_states(symbol: str) -> tuple[int, ...]:
    """Oxidation states pymatgen's ``oxi_state_guesses`` considers for ``symbol`` (ICSD, else all)."""
    from pymatgen.core import Element

    el = Element(symbol)
    return tuple(int(q) for q in (el.icsd_oxidation_states or el.oxidation_states))


@cache
def cation_states(symbol: str) -> tuple[int, ...]:
    """Positive oxidation states a generator may give ``symbol``: ICSD-observed ones, else the common ones.

    Always a subset of :func:`oxidation_states`, so pymatgen's guesses contain the assignment.
    """
    from pymatgen.core import Element

    el = Element(symbol)
    return tuple(int(q) for q in (el.icsd_oxidation_states or el.common_oxidation_states) if q > 0)


def _cations(charge: int, pool: Iterable[str] | None = None) -> list[str]:
    """Allowed elements (from ``pool``, default all metals and metalloids) that take ``+charge``."""
    if pool is None:
        pool = _metals_and_metalloids()
    return [s for s in pool if s in ALLOWED_ELEMENTS and charge in cation_states(s)]


@cache
def _metals_and_metalloids() -> tuple[str, ...]:
    from pymatgen.core import Element

    out = []
    for z in range(1, 93):
        s = chemical_symbols[z]
        if s in ALLOWED_ELEMENTS and s not in ("Po", "At"):
            el = Element(s)
            if el.is_metal or el.is_metalloid:
                out.append(s)
    return tuple(out)


@cache
def _metals() -> frozenset[str]:
    from pymatgen.core import Element

    return frozenset(s for s in _metals_and_metalloids() if Element(s).is_metal)


@cache
def _hydride_former(symbol: str) -> bool:
    """Whether ``symbol`` is a metal that forms saline or metallic hydrides at ambient pressure.

    The test is a Pauling electronegativity of at most 1.82: it keeps alkali, alkaline-earth, rare-earth,
    early transition metals, Al, Ga, Zn and drops Fe, Co, Ni, Cu, Hg, Pb, Sn and the noble metals.
    """
    from pymatgen.core import Element

    return symbol in _metals() and float(Element(symbol).X) <= 1.82


@cache
def ionic_radius(symbol: str, charge: int) -> float | None:
    """Shannon-type ionic radius (A) from pymatgen, with fallbacks for hydride, carbide, pnictide anions."""
    from pymatgen.core import Species

    if charge < 0 and symbol in _ANION_RADIUS_FALLBACK and symbol != "N":
        return _ANION_RADIUS_FALLBACK[symbol]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            r = Species(symbol, charge).ionic_radius
        except Exception:  # noqa: BLE001 - pymatgen raises various errors for unknown species
            r = None
    if r is None and charge < 0:
        return _ANION_RADIUS_FALLBACK.get(symbol)
    return None if r is None else float(r)


@cache
def metallic_radius(symbol: str) -> float:
    """Metallic radius (A) from pymatgen, else the covalent radius."""
    from pymatgen.core import Element

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = Element(symbol).metallic_radius
    return float(r) if r else float(covalent_radii[atomic_numbers[symbol]])


def covalent_radius(symbol: str) -> float:
    """Covalent radius (A) from ASE (Cordero et al.)."""
    return float(covalent_radii[atomic_numbers[symbol]])


def bond_length(a: str, qa: int | None, b: str, qb: int | None, kind: str) -> float:
    """A plausible nearest-neighbour distance (A) between ``a`` and ``b``.

    ``kind`` is ``"ionic"`` (sum of ionic radii when both are known, else 1.1 x the covalent sum),
    ``"covalent"`` (sum of covalent radii) or ``"metallic"`` (sum of metallic radii).
    """
    if kind == "ionic" and qa is not None and qb is not None:
        ra, rb = ionic_radius(a, qa), ionic_radius(b, qb)
        if ra is not None and rb is not None:
            return ra + rb
        return 1.1 * (covalent_radius(a) + covalent_radius(b))  # ionic bonds run longer than covalent sums
    if kind == "metallic":
        return metallic_radius(a) + metallic_radius(b)
    return covalent_radius(a) + covalent_radius(b)


def _valence(symbol: str) -> int:
    """Valence electrons counted as for the half-Heusler 8/18-electron rules (group, or group - 10)."""
    from pymatgen.core import Element

    g = Element(symbol).group
    return g - 10 if g >= 13 else g


def min_distance(atoms: Atoms) -> float:
    """Shortest interatomic distance (A) in the periodic crystal (periodic images included)."""
    if len(atoms) == 0:
        return float("inf")
    return float(_pair_min_distances(atoms).min())


def has_light_bonds(atoms: Atoms) -> bool:
    """Whether the crystal likely has modes above ~1000 cm^-1: a bonded H, or two bonded Be/B/C/N/O atoms.

    A heuristic for counting and prioritising (hydrides, B-B, B-N, C-C, C-N, Be-O bonds); it does not
    replace the teacher's spectrum.
    """
    syms = atoms.get_chemical_symbols()
    if "H" in syms:
        return True
    light = [i for i, s in enumerate(syms) if s in _STIFF_LIGHT]
    if len(light) < 2:
        return False
    sub = atoms[light]
    dist = _pair_min_distances(sub)
    radii = np.array([covalent_radius(s) for s in sub.get_chemical_symbols()])
    return bool((dist <= 1.25 * (radii[:, None] + radii[None, :])).any())


# ----------------------------------------------------------------------------------------------
# elemental crystals

#: Ground states ASE's ``bulk`` cannot build (they need a basis), written out here.
#: symbol -> (structure name, spacegroup, basis, cellpar, setting)
_ELEMENT_BASIS: dict[str, tuple[str, int, list[tuple[float, float, float]], list[float], int]] = {
    "B": ("rhombohedral", 166, [(0.11886, 0.88114, 0.89133), (0.19686, 0.80314, 0.02432)],
          [4.908, 4.908, 12.567, 90, 90, 120], 1),  # alpha-B12
    "Ga": ("orthorhombic", 64, [(0.0, 0.1549, 0.081)], [4.52, 7.66, 4.53, 90, 90, 90], 1),  # alpha-Ga
    "P": ("orthorhombic", 64, [(0.0, 0.1017, 0.0806)], [3.314, 10.48, 4.376, 90, 90, 90], 1),  # black P
    "Se": ("trigonal", 152, [(0.2254, 0.0, 1 / 3)], [4.366, 4.366, 4.954, 90, 90, 120], 1),
    "Te": ("trigonal", 152, [(0.2636, 0.0, 1 / 3)], [4.457, 4.457, 5.929, 90, 90, 120], 1),
    "U": ("orthorhombic", 63, [(0.0, 0.1025, 0.25)], [2.854, 5.869, 4.955, 90, 90, 90], 1),  # alpha-U
}  # fmt: skip
#: Elements left out of :func:`elemental_crystals`, with the reason.
_ELEMENT_SKIPS = {
    "H": "molecular (H2) crystal",
    "N": "molecular (N2) crystal",
    "O": "molecular (O2) crystal",
    "F": "molecular (F2) crystal",
    "Cl": "molecular (Cl2) crystal",
    "Br": "molecular (Br2) crystal",
    "I": "molecular (I2) crystal",
    "S": "alpha-S: 32-atom primitive cell of S8 rings (molecular)",
    "Mn": "alpha-Mn: 29-atom primitive cell, complex magnetism",
}


def skipped_elements() -> dict[str, str]:
    """Allowed elements without an elemental crystal, and why (molecular, too large, no reference)."""
    built = {a.info["formula"] for a in elemental_crystals()}
    out = {}
    for s in sorted(ALLOWED_ELEMENTS, key=lambda x: atomic_numbers[x]):
        if s not in built:
            out[s] = _ELEMENT_SKIPS.get(s, "no ground-state reference in ASE")
    return out


def _tag(atoms: Atoms, **info: object) -> Atoms:
    atoms.pbc = True
    atoms.info.update(info)
    return atoms


@lru_cache(maxsize=1)
def _elemental_cached() -> tuple[Atoms, ...]:
    out = []
    for z in range(1, 93):
        s = chemical_symbols[z]
        if s not in ALLOWED_ELEMENTS or s in _ELEMENT_SKIPS:
            continue
        if s in _ELEMENT_BASIS:
            name, sg, basis, cellpar, setting = _ELEMENT_BASIS[s]
            atoms = crystal([s] * len(basis), basis, spacegroup=sg, cellpar=cellpar, setting=setting,
                            primitive_cell=True)  # fmt: skip
        else:
            ref = reference_states[z]
            if not ref or ref.get("symmetry") in (None, "atom", "diatom"):
                continue
            name = ref["symmetry"]
            try:
                atoms = bulk(s)
            except (ValueError, RuntimeError, KeyError):
                continue
        atoms = Atoms(atoms.numbers, cell=atoms.cell[:], scaled_positions=atoms.get_scaled_positions(), pbc=True)
        out.append(_tag(atoms, id=f"elem-{s}-{name}", source="element", prototype=name, formula=s, relax_cell=True))
    return tuple(out)


def elemental_crystals() -> list[Atoms]:
    """Elemental crystals in their ground-state structures (ASE's reference states), ordered by Z.

    ``ase.build.bulk`` builds fcc/bcc/hcp/diamond/sc/bct/rhombohedral/orthorhombic ones; B (alpha-B12),
    Ga, black P, trigonal Se and Te, and alpha-U are written out here. Molecular crystals (H, N, O, F,
    halogens, S) and alpha-Mn are skipped (see :func:`skipped_elements`).
    """
    return [a.copy() for a in _elemental_cached()]


# ----------------------------------------------------------------------------------------------
# prototypes


@dataclass(frozen=True)
class Site:
    """One Wyckoff site of a prototype: the role it holds and a representative fractional position."""

    role: str
    position: tuple[float, float, float]


@dataclass(frozen=True)
class Prototype:
    """A structure type: spacegroup, sites by role, cell parameters at ``a = 1`` and how to size it.

    ``formula`` is a pattern over role names (``"{A}{X}2"``); ``pairs`` are the role pairs in contact,
    whose target bond lengths set the lattice parameter (``combine``: the largest or the mean scale).
    """

    name: str
    spacegroup: int
    sites: tuple[Site, ...]
    formula: str
    pairs: tuple[tuple[str, str], ...]
    cellpar: tuple[float, ...] = (1, 1, 1, 90, 90, 90)
    setting: int = 1
    cap: int = 200
    combine: str = "max"
    min_scale: float = 0.0
    notes: str = ""
    generate: Callable[[], list[Candidate]] = field(default=lambda: [], compare=False, repr=False)


@dataclass(frozen=True)
class Candidate:
    """A choice of elements (and charges, for ionic ones) for the roles of a prototype."""

    elements: dict[str, str]
    charges: dict[str, int] | None  # None: intermetallic / covalent, no charge balance claimed
    kind: str  # "ionic", "covalent" or "metallic": which radii size the cell
    formula: str | None = None  # overrides the prototype's formula pattern (e.g. NdH3 rather than H3Nd)


def _hex(c_over_a: float) -> tuple[float, ...]:
    return (1, 1, c_over_a, 90, 90, 120)


def _tet(c_over_a: float) -> tuple[float, ...]:
    return (1, 1, c_over_a, 90, 90, 90)


def _pair_min_distances(atoms: Atoms, reach: int = 2) -> np.ndarray:
    """(n, n) shortest distances between atoms i and j over periodic images within ``reach`` cells.

    The diagonal holds the shortest lattice vector.
    """
    frac = atoms.get_scaled_positions()
    shifts = np.array(list(itertools.product(range(-reach, reach + 1), repeat=3)), dtype=float)
    diff = frac[None, :, None, :] - frac[:, None, None, :] + shifts[None, None, :, :]
    dist = np.linalg.norm(diff @ atoms.cell[:], axis=-1)
    dist[dist < 1e-8] = np.inf
    return dist.min(axis=-1)


@cache
def _template(proto_name: str) -> tuple[Atoms, tuple[str, ...], dict[tuple[str, str], float]]:
    """Primitive cell at a = 1 with one placeholder per role, the role of each atom, and role-pair distances.

    The role-pair distances are the nearest ones, at a = 1.
    """
    p = PROTOTYPES[proto_name]
    roles = list(dict.fromkeys(s.role for s in p.sites))
    placeholders = [chemical_symbols[i + 1] for i in range(len(roles))]
    symbols = [placeholders[roles.index(s.role)] for s in p.sites]
    atoms = crystal(symbols, [s.position for s in p.sites], spacegroup=p.spacegroup, cellpar=list(p.cellpar),
                    setting=p.setting, primitive_cell=True)  # fmt: skip
    atom_roles = tuple(roles[z - 1] for z in atoms.numbers)
    dist = _pair_min_distances(atoms)
    nearest: dict[tuple[str, str], float] = {}
    for a, b in itertools.product(range(len(atoms)), repeat=2):
        key = (atom_roles[a], atom_roles[b])
        nearest[key] = min(nearest.get(key, np.inf), float(dist[a, b]))
    atoms.info["scaled_positions"] = atoms.get_scaled_positions()
    return atoms, atom_roles, nearest


def _formula(p: Prototype, elements: dict[str, str]) -> str:
    return p.formula.format(**elements)


def build(proto_name: str, candidate: Candidate) -> Atoms:
    """The primitive cell of ``proto_name`` decorated with ``candidate`` and sized from its radii."""
    p = PROTOTYPES[proto_name]
    template, roles, nearest = _template(proto_name)
    scales = []
    for r1, r2 in p.pairs:
        e1, e2 = candidate.elements[r1], candidate.elements[r2]
        q1 = candidate.charges.get(r1) if candidate.charges else None
        q2 = candidate.charges.get(r2) if candidate.charges else None
        scales.append(bond_length(e1, q1, e2, q2, candidate.kind) / nearest[(r1, r2)])
    a = max(max(scales) if p.combine == "max" else float(np.mean(scales)), p.min_scale)
    atoms = Atoms(
        [candidate.elements[r] for r in roles],
        cell=template.cell[:] * a,
        scaled_positions=template.info["scaled_positions"],
        pbc=True,
    )
    formula = candidate.formula or _formula(p, candidate.elements)
    info: dict[str, object] = dict(
        id=f"proto-{p.name}-{formula}", source="prototype", prototype=p.name, formula=formula, relax_cell=True,
        ionic=candidate.charges is not None,
    )  # fmt: skip
    if candidate.charges is not None:
        info["oxidation_states"] = {candidate.elements[r]: q for r, q in candidate.charges.items()}
    return _tag(atoms, **info)


# --- candidate generators ---------------------------------------------------------------------

_TETRAHEDRAL = {1: ["Cu", "Ag"], 2: ["Be", "Mg", "Zn", "Cd", "Hg", "Mn", "Fe", "Co"],
                3: ["B", "Al", "Ga", "In"], 4: ["Si", "Ge", "Sn", "C"]}  # fmt: skip
_TETRA_ANIONS = {1: ["H", "F", "Cl", "Br", "I"], 2: ["O", "S", "Se", "Te"], 3: ["N", "P", "As", "Sb"],
                 4: ["C", "Si"]}  # fmt: skip
_TM_LATE = ["Mn", "Fe", "Co", "Ni", "Cu", "Ru", "Rh", "Pd", "Ag", "Os", "Ir", "Pt", "Au"]
_EARLY = ["Li", "Be", "Mg", "Ca", "Sr", "Ba", "Al", "Sc", "Ti", "V", "Y", "Zr", "Nb", "Hf", "Ta", "La",
          "Zn", "Cd", "Ga", "In", "Tl", "Hg", "Ce", "Gd", "Er", "Lu", "Th", "U"]  # fmt: skip
_RARE_EARTH_3 = ["Sc", "Y", "La", "Ce", "Pr", "Nd", "Sm", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Lu"]


def _ratio_ok(cation: str, q: int, anion: str, qa: int, lo: float, hi: float) -> bool:
    rc, ra = ionic_radius(cation, q), ionic_radius(anion, qa)
    if rc is None or ra is None:
        return True
    return lo <= rc / ra <= hi


def _binary_ionic(
    cation_charges: dict[int, list[str]],
    anion_of: dict[int, list[str]],
    n_cation: int,
    n_anion: int,
    ratio: tuple[float, float] | None = None,
    roles: tuple[str, str] = ("A", "X"),
    kind: str = "ionic",
) -> list[Candidate]:
    """A_nc X_na with nc*q_A = na*|q_X|; ``cation_charges`` maps q_A to candidate cations."""
    out = []
    for q, cations in sorted(cation_charges.items()):
        if (n_cation * q) % n_anion:
            continue
        qx = n_cation * q // n_anion
        for x in anion_of.get(qx, []):
            if -qx not in oxidation_states(x):
                continue
            for c in cations:
                if c == x or c not in ALLOWED_ELEMENTS or q not in cation_states(c):
                    continue
                if x == "H" and not _hydride_former(c):
                    continue
                if ratio and not _ratio_ok(c, q, x, -qx, *ratio):
                    continue
                out.append(Candidate({roles[0]: c, roles[1]: x}, {roles[0]: q, roles[1]: -qx}, kind))
    return out


def _by_charge(charges: Iterable[int], pool: Iterable[str] | None = None) -> dict[int, list[str]]:
    pool = list(pool) if pool is not None else None
    return {q: _cations(q, pool) for q in charges}


def _anions(*names: str) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for n in names:
        out.setdefault(-ANION_CHARGE[n], []).append(n)
    return out


def _gen_rocksalt() -> list[Candidate]:
    anions = _anions("H", "F", "Cl", "Br", "I", "O", "S", "Se", "Te", "N", "P", "As", "Sb", "C")
    return _binary_ionic(_by_charge((1, 2, 3, 4)), anions, 1, 1, ratio=(0.3, 1.45))


def _gen_cscl() -> list[Candidate]:
    out = _binary_ionic({1: ["Cs", "Rb", "Tl", "K"]}, _anions("Cl", "Br", "I"), 1, 1)
    for a in _EARLY:
        for b in _TM_LATE:
            if a != b and a in ALLOWED_ELEMENTS:
                out.append(Candidate({"A": a, "X": b}, None, "metallic"))
    return out


def _gen_tetrahedral() -> list[Candidate]:
    out = []
    for q, cations in _TETRAHEDRAL.items():
        for x in _TETRA_ANIONS[q]:
            for c in cations:
                if x == "H" and c != "Cu" and not _hydride_former(c):
                    continue  # CuH (wurtzite) is real; AgH is not
                if c != x and q in cation_states(c) and -q in oxidation_states(x):
                    out.append(Candidate({"A": c, "X": x}, {"A": q, "X": -q}, "covalent"))
    return out


def _gen_nias() -> list[Candidate]:
    pool = ["Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Zr", "Nb", "Rh", "Pd", "Ir", "Pt", "Cu", "Sc", "Ru"]
    return _binary_ionic(_by_charge((2, 3), pool), _anions("S", "Se", "Te", "As", "Sb", "P"), 1, 1)


def _gen_fluorite() -> list[Candidate]:
    out = _binary_ionic(_by_charge((2,)), _anions("F", "Cl", "H"), 1, 2, ratio=(0.6, 1.6))
    out += _binary_ionic(_by_charge((4,)), _anions("O"), 1, 2, ratio=(0.6, 1.6))
    have = {c.elements["A"] for c in out if c.elements["X"] == "H"}
    # metallic dihydrides (ScH2, TiH2, ZrH2, LaH2...): no charge balance claimed
    for m in _RARE_EARTH_3 + ["Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Th", "U"]:
        if m not in have:
            out.append(Candidate({"A": m, "X": "H"}, None, "ionic"))
    return out


def _gen_antifluorite() -> list[Candidate]:
    out = _binary_ionic(_by_charge((1,), ["Li", "Na", "K", "Rb", "Cs", "Cu", "Ag"]), _anions("O", "S", "Se", "Te"),
                        2, 1, roles=("A", "X"))  # fmt: skip
    out += _binary_ionic(_by_charge((2,), ["Be", "Mg", "Ca", "Sr", "Ba"]), _anions("C", "Si"), 2, 1)
    return out


def _gen_rutile() -> list[Candidate]:
    out = _binary_ionic(_by_charge((4,)), _anions("O"), 1, 2, ratio=(0.35, 0.85))
    out += _binary_ionic(_by_charge((2,)), _anions("F", "H"), 1, 2, ratio=(0.35, 0.9))
    return out


def _gen_cdi2() -> list[Candidate]:
    out = _binary_ionic(_by_charge((2,)), _anions("Cl", "Br", "I"), 1, 2, ratio=(0.3, 0.9))
    out += _binary_ionic(_by_charge((4,)), _anions("S", "Se", "Te"), 1, 2, ratio=(0.3, 0.9))
    return out


def _gen_pyrite() -> list[Candidate]:
    pool = ["Mg", "Ca", "Sr", "Ba", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Cd", "Ru", "Os", "Pd", "Pt", "Hg"]
    out = []
    for x in ("S", "Se", "Te"):  # (X2)^2- dimers: X at -1, in pymatgen's lists
        for a in pool:
            if 2 in cation_states(a) and -1 in oxidation_states(x):
                out.append(Candidate({"A": a, "X": x}, {"A": 2, "X": -1}, "covalent"))  # M-S ~ covalent sum
    return out


def _gen_perovskite() -> list[Candidate]:
    out = []
    metals = _metals_and_metalloids()
    for x in ("O", "F", "Cl", "Br", "I", "H"):
        qx = ANION_CHARGE[x]
        rx = ionic_radius(x, qx)
        assert rx is not None
        for a in metals:
            for qa in cation_states(a):
                if qa > 3:
                    continue
                ra = ionic_radius(a, qa)
                if ra is None or ra < 0.9:
                    continue
                qb = -3 * qx - qa
                for b in metals:
                    if b == a or qb <= 0 or qb not in cation_states(b):
                        continue
                    if x == "H" and not (_hydride_former(a) and _hydride_former(b)):
                        continue
                    rb = ionic_radius(b, qb)
                    if rb is None or not 0.38 <= rb / rx <= 0.9:
                        continue
                    t = (ra + rx) / (np.sqrt(2) * (rb + rx))
                    if 0.85 <= t <= 1.06:
                        out.append(Candidate({"A": a, "B": b, "X": x}, {"A": qa, "B": qb, "X": qx}, "ionic"))
    return out


def _gen_heusler() -> list[Candidate]:
    xs = ["Mn", "Fe", "Co", "Ni", "Cu", "Ru", "Rh", "Pd", "Ag", "Ir", "Pt", "Au"]
    ys = ["Sc", "Ti", "V", "Cr", "Mn", "Fe", "Y", "Zr", "Nb", "Mo", "Hf", "Ta", "Li"]
    zs = ["Mg", "Zn", "Al", "Ga", "In", "Si", "Ge", "Sn", "Pb", "Sb"]
    return [Candidate({"X": x, "Y": y, "Z": z}, None, "metallic") for x in xs for y in ys for z in zs if x != y]


def _gen_half_heusler() -> list[Candidate]:
    ys = ["Li", "Na", "Mg", "Sc", "Ti", "V", "Y", "Zr", "Nb", "Hf", "Ta", "La", "Lu", "Er"]
    xs = ["Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ru", "Rh", "Pd", "Ag", "Cd", "Os", "Ir", "Pt", "Au", "Mg"]
    zs = ["Al", "Ga", "In", "Si", "Ge", "Sn", "Pb", "N", "P", "As", "Sb", "Bi"]
    out = []
    for y, x, z in itertools.product(ys, xs, zs):
        if len({x, y, z}) == 3 and _valence(x) + _valence(y) + _valence(z) in (8, 18):
            out.append(Candidate({"Y": y, "X": x, "Z": z}, None, "metallic"))
    return out


def _gen_spinel() -> list[Candidate]:
    a2 = ["Mg", "Zn", "Mn", "Fe", "Co", "Ni", "Cu", "Cd"]
    b3 = ["Al", "Ga", "Cr", "Fe", "V", "Mn", "Co", "Rh", "In", "Ti", "Sc"]
    out = []
    for x in ("O", "S", "Se"):
        for a, b in itertools.product(a2, b3):
            if a != b and 2 in cation_states(a) and 3 in cation_states(b):
                out.append(Candidate({"A": a, "B": b, "X": x}, {"A": 2, "B": 3, "X": -2}, "ionic"))
    return out


def _gen_l12() -> list[Candidate]:
    majors = ["Ni", "Cu", "Pt", "Pd", "Au", "Ag", "Co", "Fe", "Ir", "Rh", "Al", "Zr"]
    minors = ["Al", "Ga", "In", "Si", "Ge", "Sn", "Ti", "V", "Mn", "Fe", "Zn", "Mg", "Sc", "Y", "Zr", "Nb",
              "Hf", "Ta", "Au", "Pt", "Pd", "Cu", "Ni", "La", "Ce", "Pb"]  # fmt: skip
    return [Candidate({"A": a, "B": b}, None, "metallic") for a in majors for b in minors if a != b]


def _gen_a15() -> list[Candidate]:
    majors = ["V", "Nb", "Ta", "Cr", "Mo", "W", "Ti", "Zr"]
    minors = ["Al", "Ga", "In", "Si", "Ge", "Sn", "Sb", "As", "Pt", "Au", "Ir", "Os", "Rh", "Pd", "Pb", "Bi"]
    return [Candidate({"A": a, "B": b}, None, "metallic") for a in majors for b in minors]


def _gen_reo3() -> list[Candidate]:
    out = _binary_ionic(_by_charge((3,)), _anions("F", "H"), 1, 3, ratio=(0.35, 0.9))
    out += _binary_ionic(_by_charge((6,)), _anions("O"), 1, 3)
    return out


def _gen_anti_reo3() -> list[Candidate]:
    return _binary_ionic(_by_charge((1,), ["Li", "Na", "K", "Cu", "Ag"]), _anions("N", "P"), 3, 1, kind="covalent")


def _gen_antiperovskite() -> list[Candidate]:
    out = []
    # ionic: (M^q)3 (centre anion) (corner anion), 3q = |centre| + |corner|
    for q, ms in ((1, ["Li", "Na", "K", "Rb", "Ag"]), (2, ["Mg", "Ca", "Sr", "Ba", "Eu", "Yb"])):
        for centre in ("O", "N"):
            for corner in ("F", "Cl", "Br", "I", "H", "S", "Se", "Te", "P", "As", "Sb", "Si"):
                if 3 * q != -ANION_CHARGE[centre] - ANION_CHARGE[corner] or corner == centre:
                    continue
                for m in ms:
                    if q in cation_states(m):
                        charges = {"M": q, "X": ANION_CHARGE[centre], "A": ANION_CHARGE[corner]}
                        out.append(Candidate({"M": m, "X": centre, "A": corner}, charges, "ionic"))
    # metallic carbide / nitride / boride antiperovskites (MgCNi3, Mn3GaN, ...)
    for m in ("Ni", "Co", "Fe", "Mn", "Pd", "Cr"):
        for a in ("Mg", "Zn", "Al", "Ga", "In", "Cd", "Sn", "Cu", "Ge", "Ag"):
            for x in ("C", "N", "B"):
                out.append(Candidate({"M": m, "X": x, "A": a}, None, "metallic"))
    return out


def _gen_d03() -> list[Candidate]:
    out = []
    for m in _RARE_EARTH_3 + ["Ga", "In", "Tl", "Th"]:  # trihydrides MH3 (LaH3, YH3)
        if 3 in cation_states(m) and m in ALLOWED_ELEMENTS:
            out.append(Candidate({"A": "H", "B": m}, {"A": -1, "B": 3}, "ionic", formula=f"{m}H3"))
    for a in ("Li", "Na"):  # Li3Sb-type A3X (larger A would touch each other as closely as X)
        for x in ("N", "P", "As", "Sb"):
            out.append(Candidate({"A": a, "B": x}, {"A": 1, "B": -3}, "ionic"))
    for a in ("Fe", "Co", "Ni", "Cu", "Mn", "Ag", "Au"):  # Fe3Al-type
        for b in ("Al", "Si", "Ga", "Ge", "Sn", "In", "Sb"):
            out.append(Candidate({"A": a, "B": b}, None, "metallic"))
    return out


def _gen_alb2() -> list[Candidate]:
    ms = ["Mg", "Al", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Y", "Zr", "Nb", "Mo", "Hf", "Ta", "W", "Re", "U", "Th",
          "Lu", "Er", "Gd"]  # fmt: skip
    return [Candidate({"M": m, "B": "B"}, None, "covalent") for m in ms]


def _gen_cab6() -> list[Candidate]:
    ms = ["Ca", "Sr", "Ba", "Eu", "Yb", "La", "Ce", "Pr", "Nd", "Sm", "Gd", "Y", "Th", "K", "Na"]
    return [Candidate({"M": m, "B": "B"}, None, "covalent") for m in ms]


def _gen_cac2() -> list[Candidate]:
    out = []
    for m in ("Mg", "Ca", "Sr", "Ba", "Eu", "Yb", "Be"):  # acetylides M^2+ (C2)^2-
        out.append(Candidate({"M": m, "C": "C"}, {"M": 2, "C": -1}, "ionic"))
    for m in ("La", "Y", "Ce", "Th", "U", "Sc"):  # metallic dicarbides
        out.append(Candidate({"M": m, "C": "C"}, None, "covalent"))
    return out


def _gen_wc() -> list[Candidate]:
    ms = ["W", "Mo", "Cr", "V", "Nb", "Ta", "Ti", "Zr", "Hf", "Re", "Os", "Ru", "Ir"]
    return [Candidate({"M": m, "X": x}, None, "covalent") for m in ms for x in ("C", "N", "B")]


def _gen_brucite() -> list[Candidate]:
    out = []
    for m in ("Mg", "Ca", "Mn", "Fe", "Co", "Ni", "Cd", "Zn", "Cu", "Sr", "Be"):  # M(OH)2
        if 2 in cation_states(m):
            out.append(Candidate({"M": m, "O": "O", "H": "H"}, {"M": 2, "O": -2, "H": 1}, "ionic"))
    return out


def _gen_ub12() -> list[Candidate]:
    ms = ["Sc", "Y", "Zr", "Hf", "U", "Th", "Lu", "Er", "Ho", "Tm", "Dy", "Yb", "Tb"]
    return [Candidate({"M": m, "B": "B"}, None, "covalent") for m in ms]


def _gen_li3n() -> list[Candidate]:
    pool = _by_charge((1,), ["Li", "Na", "K", "Cu", "Ag"])
    return _binary_ionic(pool, _anions("N", "P", "As", "Sb"), 3, 1, kind="covalent")  # 2- and 3-fold Li: short


def _p(name: str, sg: int, sites: list[tuple[str, tuple[float, float, float]]], formula: str,
       pairs: list[tuple[str, str]], gen: Callable[[], list[Candidate]], **kw: object) -> Prototype:  # fmt: skip
    return Prototype(name, sg, tuple(Site(r, p) for r, p in sites), formula, tuple(pairs), generate=gen, **kw)


_H = 0.5
#: The prototypes, by name.
PROTOTYPES: dict[str, Prototype] = {
    p.name: p
    for p in [
        _p("rocksalt", 225, [("A", (0, 0, 0)), ("X", (_H, _H, _H))], "{A}{X}", [("A", "X")], _gen_rocksalt,
           cap=300),
        _p("CsCl", 221, [("A", (0, 0, 0)), ("X", (_H, _H, _H))], "{A}{X}", [("A", "X")], _gen_cscl, cap=250),
        _p("zincblende", 216, [("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))], "{A}{X}", [("A", "X")],
           _gen_tetrahedral, cap=150),
        _p("wurtzite", 186, [("A", (1 / 3, 2 / 3, 0)), ("X", (1 / 3, 2 / 3, 0.375))], "{A}{X}", [("A", "X")],
           _gen_tetrahedral, cellpar=_hex(np.sqrt(8 / 3)), cap=150),
        _p("NiAs", 194, [("A", (0, 0, 0)), ("X", (1 / 3, 2 / 3, 0.25))], "{A}{X}", [("A", "X")], _gen_nias,
           cellpar=_hex(1.39), cap=150),
        _p("fluorite", 225, [("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))], "{A}{X}2", [("A", "X")],
           _gen_fluorite, cap=200),
        _p("antifluorite", 225, [("X", (0, 0, 0)), ("A", (0.25, 0.25, 0.25))], "{A}2{X}", [("A", "X")],
           _gen_antifluorite, cap=100),
        _p("rutile", 136, [("A", (0, 0, 0)), ("X", (0.305, 0.305, 0))], "{A}{X}2", [("A", "X")], _gen_rutile,
           cellpar=_tet(0.644), cap=200),
        _p("CdI2", 164, [("A", (0, 0, 0)), ("X", (1 / 3, 2 / 3, 0.25))], "{A}{X}2", [("A", "X")], _gen_cdi2,
           cellpar=_hex(1.6), cap=150),
        _p("pyrite", 205, [("A", (0, 0, 0)), ("X", (0.385, 0.385, 0.385))], "{A}{X}2", [("A", "X")],
           _gen_pyrite, cap=100),
        _p("perovskite", 221, [("A", (_H, _H, _H)), ("B", (0, 0, 0)), ("X", (_H, 0, 0))], "{A}{B}{X}3",
           [("B", "X"), ("A", "X")], _gen_perovskite, cap=300),
        _p("heusler", 225, [("X", (0.25, 0.25, 0.25)), ("Y", (_H, _H, _H)), ("Z", (0, 0, 0))], "{X}2{Y}{Z}",
           [("X", "Y"), ("X", "Z")], _gen_heusler, combine="mean", cap=250),
        _p("half-heusler", 216, [("Y", (0, 0, 0)), ("Z", (_H, _H, _H)), ("X", (0.25, 0.25, 0.25))],
           "{Y}{X}{Z}", [("X", "Y"), ("X", "Z")], _gen_half_heusler, combine="mean", cap=200),
        _p("spinel", 227, [("A", (0, 0, 0)), ("B", (0.625, 0.625, 0.625)), ("X", (0.387, 0.387, 0.387))],
           "{A}{B}2{X}4", [("B", "X")], _gen_spinel, cap=80),  # octahedral B-X sets a (u fixed)
        _p("L12", 221, [("B", (0, 0, 0)), ("A", (0, _H, _H))], "{A}3{B}", [("A", "A"), ("A", "B")], _gen_l12,
           combine="mean", cap=200),
        _p("A15", 223, [("B", (0, 0, 0)), ("A", (0.25, 0, _H))], "{A}3{B}", [("A", "B"), ("A", "A")],
           _gen_a15, cap=100, combine="mean"),
        _p("ReO3", 221, [("A", (0, 0, 0)), ("X", (_H, 0, 0))], "{A}{X}3", [("A", "X")], _gen_reo3, cap=60),
        _p("anti-ReO3", 221, [("X", (0, 0, 0)), ("A", (_H, 0, 0))], "{A}3{X}", [("A", "X")], _gen_anti_reo3,
           cap=20),
        _p("antiperovskite", 221, [("X", (_H, _H, _H)), ("A", (0, 0, 0)), ("M", (_H, _H, 0))], "{M}3{X}{A}",
           [("M", "X"), ("M", "A")], _gen_antiperovskite, cap=150),
        _p("D03", 225, [("B", (0, 0, 0)), ("A", (_H, _H, _H)), ("A", (0.25, 0.25, 0.25))], "{A}3{B}",
           [("A", "B")], _gen_d03, cap=150),
        _p("AlB2", 191, [("M", (0, 0, 0)), ("B", (1 / 3, 2 / 3, _H))], "{M}{B}2", [("B", "B"), ("M", "B")],
           _gen_alb2, cellpar=_hex(1.1), cap=60, combine="mean"),
        _p("CaB6", 221, [("M", (0, 0, 0)), ("B", (0.2, _H, _H))], "{M}{B}6", [("B", "B")], _gen_cab6, cap=30),
        _p("CaC2", 139, [("M", (0, 0, 0)), ("C", (0, 0, 0.406))], "{M}{C}2", [("M", "C")], _gen_cac2,
           cellpar=_tet(1.64), cap=30, min_scale=1.2 / (0.188 * 1.64)),  # C2 dimer >= 1.2 A
        _p("WC", 187, [("M", (0, 0, 0)), ("X", (1 / 3, 2 / 3, _H))], "{M}{X}", [("M", "X")], _gen_wc,
           cellpar=_hex(0.976), cap=60),
        _p("Li3N", 191, [("X", (0, 0, 0)), ("A", (0, 0, _H)), ("A", (1 / 3, 2 / 3, 0))], "{A}3{X}",
           [("A", "X")], _gen_li3n, cellpar=_hex(1.06), cap=30),
        _p("brucite", 164, [("M", (0, 0, 0)), ("O", (1 / 3, 2 / 3, 0.22)), ("H", (1 / 3, 2 / 3, 0.44))],
           "{M}O2H2", [("M", "O")], _gen_brucite, cellpar=_hex(1.5), cap=20,
           min_scale=1.02 / (0.22 * 1.5)),  # O-H >= 1.02 A at the start (O-H stretch ~3600 cm^-1)
        _p("UB12", 225, [("M", (0, 0, 0)), ("B", (_H, 0.1694, 0.1694))], "{M}B12", [("B", "B")], _gen_ub12,
           cap=20),
    ]
}  # fmt: skip


#: Known real compounds of each prototype: always kept (ahead of the capped choice) when generated.
KNOWN: dict[str, tuple[str, ...]] = {
    "rocksalt": ("NaCl", "MgO", "LiH", "NaH", "KH", "RbH", "CsH", "LiF", "CaO", "TiC", "TiN", "ZrC", "ZrN", "HfC",
                 "VC", "VN", "NbC", "NbN", "TaC", "ScN", "CrN", "PbS", "PbTe", "AgCl", "SrO", "BaO", "NiO"),
    "CsCl": ("CsCl", "CsBr", "CsI", "TlCl", "AlNi", "AlCo", "AlFe", "ZnCu", "MgAg", "ZnAu", "TiNi", "ScAg", "CdAg"),
    "zincblende": ("BN", "SiC", "BP", "BAs", "AlP", "AlAs", "GaP", "GaAs", "InSb", "ZnS", "ZnSe", "CdTe", "CuCl",
                   "BeS", "GaN", "AlN"),
    "wurtzite": ("BN", "AlN", "GaN", "InN", "ZnO", "BeO", "CdS", "CuH", "SiC", "ZnS"),
    "NiAs": ("NiAs", "FeS", "NiS", "CoS", "CrSb", "MnSb", "FeSe", "CoTe", "NiSb"),
    "fluorite": ("CaF2", "SrF2", "BaF2", "CdF2", "PbF2", "ZrO2", "HfO2", "CeO2", "ThO2", "UO2", "SrCl2", "ScH2",
                 "YH2", "TiH2", "ZrH2", "LaH2", "CaH2", "SrH2", "EuH2"),
    "antifluorite": ("Li2O", "Na2O", "K2O", "Li2S", "Li2Se", "Na2S", "Be2C", "Mg2Si"),
    "rutile": ("TiO2", "SnO2", "SiO2", "GeO2", "PbO2", "RuO2", "VO2", "CrO2", "MnO2", "MgF2", "ZnF2", "FeF2",
               "NiF2", "MgH2"),
    "CdI2": ("CdI2", "MgI2", "MgBr2", "FeBr2", "TiS2", "TiSe2", "ZrS2", "HfS2", "SnS2", "PtS2", "PtSe2"),
    "pyrite": ("FeS2", "CoS2", "NiS2", "MnS2", "CuS2", "ZnS2", "RuS2", "FeSe2"),
    "perovskite": ("SrTiO3", "BaTiO3", "KTaO3", "KNbO3", "LaAlO3", "SrZrO3", "BaZrO3", "KMgF3", "KZnF3",
                   "CsCaH3", "KMgH3", "RbMgH3", "BaLiH3"),
    "heusler": ("Co2MnSi", "Co2MnGe", "Cu2MnAl", "Ni2MnGa", "Co2TiSn", "Fe2VAl", "Pd2MnSn", "Co2TiAl"),
    "half-heusler": ("TiNiSn", "ZrNiSn", "HfNiSn", "NbFeSb", "TiCoSb", "ZrCoSb", "LiZnP", "LiMgN", "LiMgP",
                     "LiZnAs", "ScPtSb", "ZrPtSn"),
    "spinel": ("MgAl2O4", "ZnAl2O4", "MgCr2O4", "ZnCr2O4", "FeCr2O4", "CoAl2O4", "ZnFe2O4", "ZnGa2O4", "MnAl2O4",
               "CdIn2S4"),
    "L12": ("Ni3Al", "Cu3Au", "Ni3Ga", "Ni3Si", "Pt3Al", "Al3Sc", "Ni3Fe", "Co3Ti", "Pd3Fe", "Pt3Ti"),
    "A15": ("Nb3Sn", "V3Si", "Nb3Ge", "Nb3Al", "V3Ga", "Cr3Si", "Nb3Ga", "Mo3Ge"),
    "ReO3": ("ReO3", "WO3", "ScF3", "AlF3", "FeF3", "GaF3", "AlH3"),
    "anti-ReO3": ("Cu3N", "Na3N", "Ag3N"),
    "antiperovskite": ("Li3OCl", "Li3OBr", "Na3OCl", "Ca3NAs", "Ca3NP", "Ni3CMg", "Ni3CZn", "Mn3NGa", "Mn3NZn",
                       "Mn3NCu"),
    "D03": ("Fe3Al", "Fe3Si", "Cu3Al", "Li3Sb", "LaH3", "YH3"),
    "AlB2": ("MgB2", "AlB2", "TiB2", "ZrB2", "HfB2", "NbB2", "TaB2", "ScB2", "CrB2", "VB2", "YB2"),
    "CaB6": ("CaB6", "SrB6", "BaB6", "LaB6", "YB6", "EuB6", "SmB6"),
    "CaC2": ("CaC2", "SrC2", "BaC2", "LaC2", "YC2", "MgC2"),
    "WC": ("WC", "MoC", "MoN", "WN", "NbN", "TaN"),
    "Li3N": ("Li3N",),
    "brucite": ("MgO2H2", "CaO2H2", "NiO2H2", "CoO2H2", "FeO2H2", "MnO2H2", "CdO2H2"),
    "UB12": ("ZrB12", "UB12", "YB12", "LuB12"),
}  # fmt: skip


def _select(items: list[Atoms], cap: int, seed: str, prefer_light: bool = True) -> list[Atoms]:
    """Deterministic capped choice of at most ``cap`` items.

    A seeded shuffle, then (``prefer_light``) crystals with H/B/C/N first and, among equals, the crystal
    whose elements have been used least so far.
    """
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    if len(items) <= cap:
        return [items[i] for i in order]
    elements = [set(a.get_chemical_symbols()) for a in items]
    names = sorted(set().union(*elements))
    incidence = np.zeros((len(items), len(names)))
    for i, e in enumerate(elements):
        incidence[i, [names.index(x) for x in e]] = 1.0
    heavy = np.array([0.0 if (e & LIGHT or not prefer_light) else 1.0 for e in elements])
    rank = np.empty(len(items))
    rank[order] = np.arange(len(items))
    used = np.zeros(len(names))
    taken = np.zeros(len(items), dtype=bool)
    chosen: list[int] = []
    n = float(len(items))
    while len(chosen) < cap:
        # lexicographic key (light first, least-used elements, shuffled rank) as one exact float
        key = heavy * n * n * (cap * 4 + 1) + (incidence @ used) * n + rank
        key[taken] = np.inf
        best = int(np.argmin(key))
        taken[best] = True
        chosen.append(best)
        used += incidence[best]
    return [items[i] for i in chosen]


@cache
def _prototype_cached(name: str, cap: int, seed: int) -> tuple[Atoms, ...]:
    p = PROTOTYPES[name]
    seen: dict[str, Atoms] = {}
    for cand in p.generate():
        if any(e not in ALLOWED_ELEMENTS for e in cand.elements.values()):
            continue
        atoms = build(name, cand)
        seen.setdefault(atoms.info["id"], atoms)
    known = [seen.pop(f"proto-{name}-{f}") for f in KNOWN.get(name, ()) if f"proto-{name}-{f}" in seen][:cap]
    items = [seen[k] for k in sorted(seen)]
    return tuple(known + _select(items, cap - len(known), f"{seed}:{name}"))


def prototype_crystals(
    prototypes: Sequence[str] | None = None,
    max_per_prototype: int | None = None,
    max_count: int | None = None,
    seed: int = SEED,
) -> list[Atoms]:
    """Binary and ternary compounds decorating common prototypes, grouped by prototype.

    ``prototypes`` restricts to some names of :data:`PROTOTYPES`; ``max_per_prototype`` overrides each
    prototype's own cap; ``max_count`` truncates the round-robin order of :func:`interleave` (so that a
    short list stays diverse). Deterministic for a given ``seed``.
    """
    names = list(PROTOTYPES) if prototypes is None else list(prototypes)
    unknown = [n for n in names if n not in PROTOTYPES]
    if unknown:
        raise OptionError(f"unknown prototype(s) {unknown}; known: {sorted(PROTOTYPES)}")
    groups = [[a.copy() for a in _prototype_cached(n, max_per_prototype or PROTOTYPES[n].cap, seed)] for n in names]
    if max_count is None:
        return [a for g in groups for a in g]
    return interleave(groups)[:max_count]


def interleave(groups: Sequence[Sequence[Atoms]]) -> list[Atoms]:
    """Round-robin over groups: first of each, then second of each, ... (so partial runs are diverse)."""
    out: list[Atoms] = []
    for row in itertools.zip_longest(*groups):
        out.extend(a for a in row if a is not None)
    return out


# ----------------------------------------------------------------------------------------------
# strained copies and DFT crystals


def _strain_label(s: float) -> str:
    return f"{s:+.2f}"


def strained_copies(atoms_list: Iterable[Atoms], strains: Sequence[float] = DEFAULT_STRAINS) -> list[Atoms]:
    """Isotropically scaled copies whose volume is ``(1 + s)`` times the parent's, for each strain ``s``.

    Ids are ``<parent id>-v+0.02``; ``info``: source="strained", parent, volume_strain, relax_cell=False
    (the pipeline must relax positions only, or the strain is undone). Parent order is kept, with the
    strains of one parent adjacent so that a partial run has complete sets.

    The strain is relative to the parent's stored cell: DFT-relaxed for DFT crystals, ASE's experimental
    reference for elements; not the teacher's own equilibrium, which the pipeline's record of the
    unstrained parent gives (label the parent too when fitting Grueneisen parameters).
    """
    out = []
    for parent in atoms_list:
        pid = parent.info["id"]
        for s in strains:
            if s <= -1:
                raise OptionError(f"volume strain {s} of {pid} would give a non-positive volume")
            a = parent.copy()
            a.set_cell(parent.cell[:] * (1.0 + s) ** (1.0 / 3.0), scale_atoms=True)
            info = {k: v for k, v in parent.info.items() if k not in ("id", "source", "relax_cell")}
            a.info = dict(
                info,
                id=f"{pid}-v{_strain_label(s)}",
                source="strained",
                parent=pid,
                parent_source=parent.info.get("source"),
                volume_strain=float(s),
                relax_cell=False,
            )
            out.append(a)
    return out


@lru_cache(maxsize=2)
def _dataset(data: str | None):  # noqa: ANN202 - PhononDataset, imported lazily
    from ..io.phdos import load_phonon_dataset

    return load_phonon_dataset(data)


_PARTS = {"train": ("train",), "valid": ("valid",), "test": ("test",), "train+valid": ("train", "valid")}


def dft_crystals(part: str = "train", data: str | Path | None = None) -> list[Atoms]:
    """Crystals of the DFT phonon dataset's ``part`` ("train", "valid", "test" or "train+valid").

    They come in dataset order, with ``info``: id (the mp id), source="dft", split, formula, relax_cell=False.

    ``data`` is the dataset folder (default: ``$DOSTRANSFORMER_PHDOS`` or the shipped copy; see
    :mod:`ase_dostransformer.io.phdos`).
    """
    if part not in _PARTS:
        raise OptionError(f"part must be one of {sorted(_PARTS)}, got {part!r}")
    ds = _dataset(None if data is None else str(data))
    out = []
    for name in _PARTS[part]:
        for i in ds.split[name]:
            a = ds.atoms[int(i)].copy()
            a.pbc = True
            a.info = dict(id=ds.ids[int(i)], source="dft", split=name, formula=a.get_chemical_formula(),
                          relax_cell=False)  # fmt: skip
            out.append(a)
    return out


def dft_strain_parents(
    n: int = 150,
    data: str | Path | None = None,
    max_atoms: int = 10,
    light_fraction: float = 2 / 3,
    seed: int = SEED,
) -> list[Atoms]:
    """``n`` DFT *training* crystals (at most ``max_atoms`` atoms) to strain, deterministically.

    Up to ``light_fraction`` of them have light-element bonds (:func:`has_light_bonds`: likely modes above
    1000 cm^-1, which the DFT grid cuts); the rest are spread over the other crystals' elements. Returned
    alternating between the two groups.
    """
    pool = [a for a in dft_crystals("train", data) if len(a) <= max_atoms]
    light = [a for a in pool if has_light_bonds(a)]
    other = [a for a in pool if not has_light_bonds(a)]
    first = _select(light, min(len(light), round(n * light_fraction)), f"{seed}:dft-light")
    rest = _select(other, n - len(first), f"{seed}:dft-other", prefer_light=False)
    return interleave([first, rest])


# ----------------------------------------------------------------------------------------------
# held-out chemistry

#: Whole prototypes held out, one intermetallic, one ionic, one boride; each is verified to match no DFT
#: train or valid crystal (pymatgen's StructureMatcher, anonymous) when the split is written. Of the 25
#: prototypes, CdI2, spinel, L12, A15, AlB2 and CaB6 match none (perovskite = antiperovskite and
#: fluorite = antifluorite anonymously, so those cannot be held out as prototypes).
HELD_OUT_PROTOTYPES: tuple[str, ...] = ("A15", "spinel", "CaB6")


def held_out_element_choice(absent: Iterable[str]) -> list[str]:
    """Held-out elements: every second one, in Z order, of the allowed elements absent from DFT train+valid.

    The other half stays in training, so teacher labels still widen the model's periodic table; the held-out
    half measures generalisation to elements that neither DFT nor teacher training has seen.
    """
    return sorted(absent, key=lambda s: atomic_numbers[s])[::2]


def held_out_rule(held_out_elements: Iterable[str], absent: Iterable[str] = ()) -> str:
    """The held-out rule in words."""
    return (
        "a generated crystal (elemental, prototype, or a strained copy of one) is held out when it contains "
        f"any of the elements {sorted(held_out_elements, key=lambda s: atomic_numbers[s])} (every second, in "
        "Z order, of the allowed elements absent from the DFT train and valid crystals: "
        f"{sorted(absent, key=lambda s: atomic_numbers[s])}) or its prototype is one of "
        f"{list(HELD_OUT_PROTOTYPES)} (prototypes no DFT train or valid crystal has, checked with "
        "pymatgen's StructureMatcher.fit_anonymous). DFT crystals and their strained copies are never held out."
    )


def _is_held_out(atoms: Atoms, elements: set[str]) -> bool:
    if atoms.info.get("source") == "dft" or atoms.info.get("parent_source") == "dft":
        return False
    return bool(set(atoms.get_chemical_symbols()) & elements) or atoms.info.get("prototype") in HELD_OUT_PROTOTYPES


def _ids_sha256(ids: Sequence[str]) -> str:
    return bytes_sha256("\n".join(ids).encode())


def _prototype_matches(dft: list[Atoms]) -> dict[str, list[str]]:
    """For each prototype, the DFT crystals with the same structure type (anonymous StructureMatcher)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    matcher = StructureMatcher()
    by_key: dict[tuple[str, int], list[Atoms]] = {}
    for a in dft:
        s = AseAtomsAdaptor.get_structure(a)
        prim = s.get_primitive_structure()
        by_key.setdefault((prim.composition.anonymized_formula, len(prim)), []).append(a)
    out: dict[str, list[str]] = {}
    for name in PROTOTYPES:
        template, _, _ = _template(name)
        s = AseAtomsAdaptor.get_structure(template)
        key = (s.composition.anonymized_formula, len(s))
        hits = []
        for a in by_key.get(key, []):
            if matcher.fit_anonymous(s, AseAtomsAdaptor.get_structure(a)):
                hits.append(a.info["id"])
        out[name] = hits
    return out


def _dft_test_duplicates(generated: list[Atoms], test: list[Atoms]) -> dict[str, str]:
    """Generated crystals that are a DFT test crystal (same reduced formula and structure): id -> mp id.

    They are excluded from the queue, so no teacher label of a DFT test crystal can reach training.
    """
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.io.ase import AseAtomsAdaptor

    matcher = StructureMatcher()
    by_formula: dict[str, list[Atoms]] = {}
    for a in test:
        by_formula.setdefault(AseAtomsAdaptor.get_structure(a).composition.reduced_formula, []).append(a)
    out = {}
    for g in generated:
        sg = AseAtomsAdaptor.get_structure(g)
        for t in by_formula.get(sg.composition.reduced_formula, []):
            if matcher.fit(sg, AseAtomsAdaptor.get_structure(t)):
                out[g.info["id"]] = t.info["id"]
                break
    return out


def write_held_out_split(path: str | Path = SPLIT_PATH, data: str | Path | None = None, seed: int = SEED) -> dict:
    """Choose the held-out chemistry set (before any training) and write it as JSON to ``path``.

    Held out: every generated crystal (elements, prototypes, strained copies of elemental crystals)
    containing one of :func:`held_out_element_choice` of the allowed elements absent from the DFT
    train+valid crystals, and every crystal of
    :data:`HELD_OUT_PROTOTYPES` (checked to match no DFT train/valid crystal). Also recorded: generated
    crystals identical to a DFT *test* crystal, which :func:`queue` leaves out. Returns the written dict.
    """
    dft_seen = dft_crystals("train+valid", data)
    seen_elements = {s for a in dft_seen for s in a.get_chemical_symbols()}
    absent = sorted((ALLOWED_ELEMENTS - seen_elements), key=lambda s: atomic_numbers[s])
    held_elements = held_out_element_choice(absent)
    matches = _prototype_matches(dft_seen)
    for name in HELD_OUT_PROTOTYPES:
        if matches[name]:
            raise DatasetError(f"held-out prototype {name} matches DFT training crystals {matches[name][:5]}")
    generated = _generated(seed, exclude=set())
    base = [a for a in generated if a.info["source"] != "strained"]
    test_dups = _dft_test_duplicates(base, dft_crystals("test", data))
    kept = [a for a in generated if a.info["id"] not in test_dups and a.info.get("parent") not in test_dups]
    ids = sorted(a.info["id"] for a in kept if _is_held_out(a, set(held_elements)))
    from ..io.phdos import resolve_data_dir

    folder = resolve_data_dir(None if data is None else data)
    record = {
        "description": "held-out chemistry set of the teacher labels (issue 13): never trained on",
        "rule": held_out_rule(held_elements, absent),
        "elements_absent_from_dft_train_valid": absent,
        "held_out_elements": held_elements,
        "held_out_prototypes": list(HELD_OUT_PROTOTYPES),
        "count": len(ids),
        "sha256": _ids_sha256(ids),
        "sha256_of": "utf-8 of the sorted ids joined by newlines",
        "seed": seed,
        "dft_data_sha256": _dataset(None if data is None else str(data)).sha256,
        "dft_data_file": (folder / "data.csv").name,
        "prototype_matches_in_dft_train_valid": {k: len(v) for k, v in matches.items()},
        "excluded_dft_test_duplicates": dict(sorted(test_dups.items())),
        "ids": ids,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return record


def read_held_out_split(path: str | Path = SPLIT_PATH) -> dict:
    """The split file as a dict, its id list checked against its count and sha256."""
    record = json.loads(Path(path).read_text())
    ids = record["ids"]
    if len(ids) != record["count"] or _ids_sha256(ids) != record["sha256"]:
        raise DatasetError(f"{path}: id list does not match its count / sha256 (edited by hand?)")
    return record


def held_out_ids(path: str | Path = SPLIT_PATH) -> frozenset[str]:
    """Ids of the held-out chemistry crystals (never trained on), read from the split file."""
    return frozenset(read_held_out_split(path)["ids"])


# ----------------------------------------------------------------------------------------------
# the labelling queue


def _generated(seed: int, exclude: set[str]) -> list[Atoms]:
    elements = elemental_crystals()
    protos = interleave([prototype_crystals([n], seed=seed) for n in PROTOTYPES])
    strained = strained_copies(elements)
    return [a for a in elements + protos + strained if a.info["id"] not in exclude]


def _default_exclude() -> set[str]:
    if SPLIT_PATH.is_file():
        return set(read_held_out_split(SPLIT_PATH).get("excluded_dft_test_duplicates", {}))
    warnings.warn(
        f"no split file {SPLIT_PATH}: generated duplicates of DFT test crystals are not excluded "
        "(python -m ase_dostransformer.teacher.structures --write-split)",
        stacklevel=3,
    )
    return set()


#: Kinds :func:`queue` knows.
QUEUE_KINDS = ("elements", "prototypes", "strained", "generated", "dft")


def queue(
    kind: str = "generated",
    data: str | Path | None = None,
    n_dft_parents: int = 150,
    strains: Sequence[float] = DEFAULT_STRAINS,
    seed: int = SEED,
    exclude: Iterable[str] | None = None,
) -> list[Atoms]:
    """The ordered list of crystals to label.

    ``kind``: "elements"; "prototypes" (round-robin over prototypes, so a partial run is diverse);
    "strained" (copies of ``n_dft_parents`` DFT training crystals and of every elemental crystal,
    alternating parents, the strains of a parent adjacent); "generated" = elements, then prototypes,
    then strained (the default); "dft" = the DFT train and valid crystals, unstrained (never test).
    ``exclude``: ids to leave out; default: the generated crystals that duplicate a DFT test crystal,
    as recorded in the split file. Held-out crystals are queued: they are labelled, never trained on.
    """
    if kind not in QUEUE_KINDS:
        raise OptionError(f"kind must be one of {QUEUE_KINDS}, got {kind!r}")
    skip = _default_exclude() if exclude is None else set(exclude)
    out: list[Atoms] = []
    if kind == "dft":
        out = dft_crystals("train+valid", data)
    if kind in ("elements", "generated"):
        out += elemental_crystals()
    if kind in ("prototypes", "generated"):
        out += interleave([prototype_crystals([n], seed=seed) for n in PROTOTYPES])
    if kind in ("strained", "generated"):
        k = len(strains)
        dft_sets = strained_copies(dft_strain_parents(n_dft_parents, data, seed=seed), strains)
        elem_sets = strained_copies(elemental_crystals(), strains)
        groups = [[a[i : i + k] for i in range(0, len(a), k)] for a in (dft_sets, elem_sets)]
        out += [a for block in interleave(groups) for a in block]  # type: ignore[arg-type]
    return [a for a in out if a.info["id"] not in skip and a.info.get("parent") not in skip]


#: How far :func:`extended_queue` raises each prototype's cap.
EXTENDED_CAP_FACTOR = 3


def extended_queue(factor: int = EXTENDED_CAP_FACTOR, data: str | Path | None = None, seed: int = SEED) -> list[Atoms]:
    """Prototype compounds beyond the caps of :func:`queue`: the generator of ``train/teacher/extended/``.

    Up to ``factor`` times each prototype's cap (round-robin over prototypes), leaving out every crystal
    :func:`queue` already holds, every held-out crystal (the held-out elements and prototypes of the split
    file: they stay measurement-only, and this list is not in the split's id list) and every duplicate of a
    DFT test crystal (checked here with the same matcher as the split). All of it is training material.
    """
    split = read_held_out_split(SPLIT_PATH)
    held_elements = set(split["held_out_elements"])
    queued = {a.info["id"] for a in _generated(seed, exclude=set())}
    groups = []
    for name, proto in PROTOTYPES.items():
        if name in HELD_OUT_PROTOTYPES:
            continue
        more = prototype_crystals([name], max_per_prototype=factor * proto.cap, seed=seed)
        groups.append([a for a in more if a.info["id"] not in queued and not _is_held_out(a, held_elements)])
    candidates = interleave(groups)
    duplicates = _dft_test_duplicates(candidates, dft_crystals("test", data))
    return [a for a in candidates if a.info["id"] not in duplicates]


def more_strained_queue(n_parents: int = 450, data: str | Path | None = None, seed: int = SEED) -> list[Atoms]:
    """Strained copies of further DFT training crystals: the generator of ``train/teacher/strained_more/``.

    The parents are :func:`dft_strain_parents` ``(n_parents)`` less the 150 that :func:`queue` strains
    already; each gets :data:`DEFAULT_STRAINS` (a parent's strains adjacent). Volume dependence over
    many more chemistries, for the student's volume input.
    """
    done = {a.info["id"] for a in dft_strain_parents(150, data, seed=seed)}
    parents = [a for a in dft_strain_parents(n_parents, data, seed=seed) if a.info["id"] not in done]
    return strained_copies(parents, DEFAULT_STRAINS)


def strained_queue() -> list[Atoms]:
    """The strained copies alone (``queue("strained")``): the generator of ``train/teacher/strained/``."""
    return queue("strained")


def summary(atoms_list: Sequence[Atoms]) -> dict[str, object]:
    """Counts of a list: by source, by prototype, with likely modes above 1000 cm^-1, elements used."""
    protos = [a.info.get("prototype") for a in atoms_list if a.info.get("source") == "prototype"]
    return {
        "total": len(atoms_list),
        "by_source": dict(Counter(a.info.get("source") for a in atoms_list)),
        "by_prototype": dict(Counter(protos)),
        "light_bonds": sum(has_light_bonds(a) for a in atoms_list),
        "elements": len({s for a in atoms_list for s in a.get_chemical_symbols()}),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ase_dostransformer.teacher.structures [--write-split] [--check-split] [--summary]``."""
    parser = argparse.ArgumentParser(prog="python -m ase_dostransformer.teacher.structures", description=__doc__)
    parser.add_argument("--write-split", action="store_true", help="(re)write the held-out chemistry split")
    parser.add_argument("--check-split", action="store_true", help="check the split file is what the code gives")
    parser.add_argument("--summary", action="store_true", help="print counts of the generated queue")
    parser.add_argument("--data", default=None, help="DFT phonon dataset folder (default: $DOSTRANSFORMER_PHDOS)")
    parser.add_argument("--out", default=str(SPLIT_PATH), help="split file path")
    args = parser.parse_args(argv)
    if args.write_split:
        rec = write_held_out_split(args.out, args.data)
        print(f"wrote {args.out}: {rec['count']} held-out ids, sha256 {rec['sha256']}")
        print(rec["rule"])
    if args.check_split:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            fresh = write_held_out_split(Path(tmp) / "split.json", args.data)
        stored = read_held_out_split(args.out)
        if stored["sha256"] != fresh["sha256"]:
            print(f"split file differs from the code's: {stored['count']} vs {fresh['count']} ids")
            return 1
        print(f"split file matches the code: {stored['count']} ids")
    if args.summary or not (args.write_split or args.check_split):
        q = queue("generated", args.data)
        print(json.dumps(summary(q), indent=1))
        print("skipped elements:", skipped_elements())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
