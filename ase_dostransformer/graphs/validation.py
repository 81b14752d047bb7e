"""Every check a structure goes through before a model sees it, in one place.

Two kinds of findings:

- **Errors** (:class:`InvalidStructureError`, a ``ValueError``): inputs the model cannot take or that
  would give a silently wrong answer. :func:`validate_crystal` raises them; ``crystal_arrays`` calls it
  for every structure, so the calculator, :func:`~ase_dostransformer.inference.predict_phonon_dos`,
  ``dostransformer predict`` and training all apply the same rules:

  ========================================  =====================================================
  empty structure                            "empty structure: no atoms"
  no periodic cell / partly periodic         "no periodic cell ..." / "partly periodic ..."
  NaN or infinite cell or positions          names the cell vector or the atom
  dummy atom ``X`` (Z=0), Z outside 1..118   names the atom, its symbol and Z
  zero-length or linearly dependent cell     "singular cell ..." naming the vector
  volume below :data:`MIN_VOLUME_PER_ATOM`   "near-zero cell volume ..." (Bohr or nm input?)
  two atoms closer than :data:`MIN_DISTANCE` names both atoms, their elements and the distance,
                                             periodic images included (an atom can overlap its
                                             own image when the cell is too small)
  ========================================  =====================================================

  A model that takes the atoms' own masses (a mass-scaled phonon model: isotopes set with
  ``atoms.set_masses``) also needs each of them finite and positive (:func:`check_masses`, naming the atom).

- **Warnings** (:class:`DomainCheck`): inputs the model can take but was not trained for. The
  prediction is made and flagged (``results["phonon_dos_warnings"]`` of the calculator,
  ``out_of_domain`` and ``warnings`` in ``dostransformer predict``'s summary, an
  :class:`OutOfDomainWarning` from the batch API):

  - elements absent from the training set (model meta ``train_elements``): *out of domain*;
  - more atoms in the cell than the largest training cell (meta ``train_max_atoms``): *out of domain*.
    The prediction is still well defined (the graph network and the atom pooling are per-atom means),
    but such cells are usually defective or disordered supercells the model has never seen;
  - an empty layer wider than :data:`MAX_BULK_VACUUM` along a cell vector (a slab, wire or molecule in
    a vacuum box, from the graph's ``vacuum`` value): *out of domain*. The model was trained on bulk
    crystals, whose widest such layer in the phonon data is :data:`WIDEST_BULK_VACUUM` (Cs2O);
  - a shortest interatomic distance (periodic images included) or a volume per atom outside the range
    of the training crystals (model meta ``train_shortest_bond`` and ``train_volume_per_atom``, each
    ``[min, max]``; measured by :func:`training_geometry`): *out of domain*, with the numbers. A cell
    squeezed to 0.3x its lattice constant or given in Bohr or nm is caught here;
  - atoms with no neighbour within the graph cutoff (4 A): a warning only. Such an atom keeps its self
    loop, so it still gets an embedding from its own element, it just sees no environment. It is not
    an error because real crystals have such atoms: eight materials of the phonon training set (Cs and
    Rb in iodides and bromides such as Cs2HfI6) have an atom whose nearest neighbour is beyond 4 A.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidStructureError, OutOfDomainWarning
from .arrays import read_crystal
from .neighbours import periodic_pairs

__all__ = [
    "MAX_BULK_VACUUM",
    "MIN_DISTANCE",
    "DomainCheck",
    "InvalidStructureError",
    "OutOfDomainWarning",
    "check_domain",
    "check_masses",
    "graph_shortest_bond",
    "graphs_shortest_bond",
    "shortest_bond",
    "training_geometry",
    "vacuum_gap",
    "validate_crystal",
    "volume_per_atom",
]

#: Two atoms (or an atom and a periodic image) closer than this (Angstrom) are an error. The closest
#: pair in the phonon training data is 0.97 A apart, the H2 bond is 0.74 A; below 0.5 A the input is
#: almost surely overlapping or duplicated atoms (or a cell in the wrong unit).
MIN_DISTANCE = 0.5
#: Cells with less volume per atom than this (A^3) are an error: the densest solids have about 4-6
#: A^3 per atom (diamond 5.7, the phonon training set's minimum 5.6); far below that the cell is
#: almost surely in Bohr or nm, or degenerate.
MIN_VOLUME_PER_ATOM = 0.5
#: Cell vectors whose normalised triple product |a.(b x c)| / (|a||b||c|) falls below this are
#: treated as linearly dependent (a flat cell).
MIN_CELL_FLATNESS = 1e-6
#: The widest empty layer (no atom centre) along a cell vector in the 1521 bulk crystals of the
#: phonon data (A; Cs2O, tested on the data).
WIDEST_BULK_VACUUM = 3.9
#: An empty layer wider than this (A) marks a slab, wire or molecule in a vacuum box.
MAX_BULK_VACUUM = 6.0


#: Relative slack of the training-range checks (bonds come from float32 graph vectors).
RANGE_TOLERANCE = 1e-4


def _symbol(z: int) -> str:
    from ase.data import chemical_symbols

    return chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}"


def _atom(i: int, numbers: np.ndarray) -> str:
    return f"atom {i} ({_symbol(int(numbers[i]))})"


def validate_crystal(cell: np.ndarray, positions: np.ndarray, numbers: np.ndarray, pbc: np.ndarray) -> None:
    """Raise :class:`InvalidStructureError` naming the fault when the arrays are not a valid 3D crystal.

    ``cell`` is (3, 3) in Angstrom (row vectors), ``positions`` (N, 3) Cartesian, ``numbers`` (N,)
    atomic numbers, ``pbc`` (3,) booleans. The checks run cheapest first.
    """
    cell = np.asarray(cell, dtype=float)
    positions = np.asarray(positions, dtype=float)
    numbers = np.asarray(numbers)
    pbc = np.asarray(pbc, dtype=bool).reshape(-1)
    if len(numbers) == 0:
        raise InvalidStructureError("empty structure: no atoms")
    if positions.shape != (len(numbers), 3):
        raise InvalidStructureError(f"positions must have shape ({len(numbers)}, 3), got {positions.shape}")
    if cell.shape != (3, 3):
        raise InvalidStructureError(f"cell must be 3x3, got shape {cell.shape}")
    if pbc.size == 1:
        pbc = np.repeat(pbc, 3)
    if not pbc.any():
        raise InvalidStructureError(
            f"no periodic cell (pbc={pbc.tolist()}): molecules and clusters are not supported; "
            "the model needs a crystal periodic in all three directions (set a cell and pbc=True)"
        )
    if not pbc.all():
        raise InvalidStructureError(
            f"partly periodic structure (pbc={pbc.tolist()}): slabs and wires are not supported; "
            "the model needs a crystal periodic in all three directions"
        )
    for k in range(3):
        if not np.isfinite(cell[k]).all():
            raise InvalidStructureError(f"cell vector {'abc'[k]} contains NaN or infinite values: {cell[k].tolist()}")
    bad = np.flatnonzero(~np.isfinite(positions).all(axis=1))
    if bad.size:
        i = int(bad[0])
        more = f" (and {bad.size - 1} more atoms)" if bad.size > 1 else ""
        raise InvalidStructureError(f"{_atom(i, numbers)} has a NaN or infinite position {positions[i].tolist()}{more}")
    _check_elements(numbers)
    _check_cell(cell, len(numbers))
    _check_distances(cell, positions, numbers)


def check_masses(masses: np.ndarray, numbers: np.ndarray) -> None:
    """Raise :class:`InvalidStructureError` naming the first atom whose mass (u) is not a finite positive number."""
    masses = np.asarray(masses, dtype=float)
    bad = np.flatnonzero(~(np.isfinite(masses) & (masses > 0)))
    if bad.size:
        i = int(bad[0])
        more = f" (and {bad.size - 1} more atoms)" if bad.size > 1 else ""
        raise InvalidStructureError(
            f"{_atom(i, numbers)} has mass {masses[i]:g} u{more}: atomic masses must be finite and positive "
            "(atoms.set_masses)"
        )


def _check_elements(numbers: np.ndarray) -> None:
    dummy = np.flatnonzero(numbers == 0)
    if dummy.size:
        raise InvalidStructureError(
            f"atom {int(dummy[0])} is a dummy atom 'X' (Z=0): the model needs real elements (Z 1..118)"
        )
    bad = np.flatnonzero((numbers < 1) | (numbers > 118))
    if bad.size:
        i = int(bad[0])
        raise InvalidStructureError(f"atom {i} has atomic number {int(numbers[i])}, outside 1..118")


def _check_cell(cell: np.ndarray, natoms: int) -> None:
    lengths = np.linalg.norm(cell, axis=1)
    for k in range(3):
        if lengths[k] < 1e-8:
            raise InvalidStructureError(
                f"singular cell: cell vector {'abc'[k]} has zero length (cell {cell.tolist()}); was a cell set?"
            )
    volume = abs(float(np.linalg.det(cell)))
    if volume < MIN_CELL_FLATNESS * float(np.prod(lengths)):
        raise InvalidStructureError(
            f"singular cell: the cell vectors are (nearly) linearly dependent, volume {volume:.3g} A^3 "
            f"for vector lengths {np.round(lengths, 4).tolist()} A"
        )
    if volume < MIN_VOLUME_PER_ATOM * natoms:
        raise InvalidStructureError(
            f"near-zero cell volume: {volume:.3g} A^3 for {natoms} atoms ({volume / natoms:.3g} A^3 per atom, "
            f"minimum {MIN_VOLUME_PER_ATOM} A^3); singular cell, or a cell not in Angstrom?"
        )


def _check_distances(cell: np.ndarray, positions: np.ndarray, numbers: np.ndarray) -> None:
    centre, neighbour, _, dist = periodic_pairs(positions, cell, MIN_DISTANCE)
    if len(dist) == 0:
        return
    k = int(np.argmin(dist))
    i, j, d = int(centre[k]), int(neighbour[k]), float(dist[k])
    if i == j:
        raise InvalidStructureError(
            f"{_atom(i, numbers)} is {d:.3g} A from its own periodic image, closer than the minimum "
            f"{MIN_DISTANCE} A: the cell is too small"
        )
    i, j = min(i, j), max(i, j)
    raise InvalidStructureError(
        f"atoms {i} ({_symbol(int(numbers[i]))}) and {j} ({_symbol(int(numbers[j]))}) are {d:.3g} A apart "
        f"(periodic images included), closer than the minimum {MIN_DISTANCE} A: overlapping or duplicated atoms?"
    )


def vacuum_gap(cell: np.ndarray, scaled_positions: np.ndarray) -> float:
    """The widest empty layer between atomic planes along any cell vector (A; periodic, vectorised).

    Along vector ``i`` the layers are the gaps between the sorted fractional coordinates ``s_i``
    (with the wrap-around), times the spacing of the lattice planes, ``1 / |b_i|``.
    """
    frac = np.sort(np.mod(scaled_positions, 1.0), axis=0)
    gaps = np.diff(np.vstack([frac, frac[:1] + 1.0]), axis=0).max(axis=0)
    spacing = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=0)  # columns of inv(cell) are the b_i
    return float((gaps * spacing).max())


def shortest_bond(cell: np.ndarray, positions: np.ndarray, start: float = 4.0, limit: float = 64.0) -> float | None:
    """The shortest distance between two atoms of a crystal (A, periodic images included).

    Searched within ``start`` A, then twice as far until a pair is found or ``limit`` is passed
    (None then: every atom is more than ``limit`` A from every other and from its own images).
    """
    radius = float(start)
    while radius <= limit:
        _, _, _, dist = periodic_pairs(positions, cell, radius)
        if len(dist):
            return float(dist.min())
        radius *= 2.0
    return None


def graph_shortest_bond(graph: Any) -> float | None:
    """The shortest edge of a featurised graph (A; self loops left out); None when it has no other edge."""
    vec = getattr(graph, "edge_vec", None)
    if vec is None:
        return None
    r = np.linalg.norm(vec.detach().cpu().numpy().astype(np.float64), axis=1)
    r = r[r > 0]
    return float(r.min()) if len(r) else None


def training_geometry(structures: Any) -> dict[str, list[float]]:
    """``{"train_shortest_bond": [min, max], "train_volume_per_atom": [min, max]}`` of crystals (A, A^3).

    ``structures``: ASE ``Atoms`` or pymatgen ``Structure`` objects (the training crystals). The
    result goes into a model file's meta, where :func:`check_domain` reads it. Each structure is
    validated as :func:`~ase_dostransformer.graphs.structure.crystal_arrays` does.
    """
    bonds, volumes = [], []
    for structure in structures:
        crystal, pbc = read_crystal(structure)
        validate_crystal(crystal.cell, crystal.positions, crystal.numbers, pbc)
        bond = shortest_bond(crystal.cell, crystal.positions)
        if bond is not None:
            bonds.append(bond)
        volumes.append(volume_per_atom(structure))
    if not volumes:
        return {}
    out = {"train_volume_per_atom": [min(volumes), max(volumes)]}
    if bonds:
        out["train_shortest_bond"] = [min(bonds), max(bonds)]
    return out


def volume_per_atom(structure: Any) -> float:
    """Cell volume per atom (A^3) of an ASE ``Atoms`` or pymatgen ``Structure`` (not validated again)."""
    if hasattr(structure, "get_cell"):
        cell, natoms = np.asarray(structure.get_cell()[:], dtype=float), len(structure)
    else:
        cell, natoms = np.asarray(structure.lattice.matrix, dtype=float), len(structure)
    return abs(float(np.linalg.det(cell))) / max(natoms, 1)


def graphs_shortest_bond(graphs: Any) -> dict[str, list[float]]:
    """``{"train_shortest_bond": [min, max]}`` from featurised training graphs (their shortest edges, A).

    For ``dostransformer train``, which has graphs but not cells; crystals with no edge (every atom
    isolated) are left out. The volume per atom needs the structures: :func:`training_geometry`.
    """
    bonds = [b for b in (graph_shortest_bond(g) for g in graphs) if b is not None]
    return {"train_shortest_bond": [min(bonds), max(bonds)]} if bonds else {}


def _range(value: Any) -> tuple[float, float] | None:
    """A ``[min, max]`` pair from model meta, or None when absent or malformed."""
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        return None
    return (low, high) if np.isfinite(low) and np.isfinite(high) and low <= high else None


@dataclass(frozen=True)
class DomainCheck:
    """How a valid structure relates to the model's training data (see the module docstring)."""

    natoms: int
    unseen_elements: tuple[str, ...] = ()
    train_max_atoms: int | None = None
    isolated_atoms: tuple[int, ...] = ()
    cutoff: float = 4.0
    isolated_symbols: tuple[str, ...] = field(default=(), repr=False)
    vacuum: float | None = None  # widest empty layer along a cell vector (A), when the graph records it
    shortest_bond: float | None = None  # A; None: no other atom within ``cutoff`` (or unknown)
    volume_per_atom: float | None = None  # A^3, when the structure was given
    train_shortest_bond: tuple[float, float] | None = None  # [min, max] over the training crystals (A)
    train_volume_per_atom: tuple[float, float] | None = None  # [min, max] over the training crystals (A^3)

    @property
    def bond_outside(self) -> bool:
        """The shortest interatomic distance is outside the training range (all atoms isolated counts as longer)."""
        if self.train_shortest_bond is None:
            return False
        low, high = self.train_shortest_bond
        if self.shortest_bond is None:  # no neighbour within the cutoff at all
            return self.isolated_all and high < self.cutoff
        slack = RANGE_TOLERANCE * self.shortest_bond  # graphs hold float32 vectors
        return self.shortest_bond < low - slack or self.shortest_bond > high + slack

    @property
    def isolated_all(self) -> bool:
        """No atom has a neighbour within the cutoff."""
        return len(self.isolated_atoms) == self.natoms

    @property
    def volume_outside(self) -> bool:
        """The volume per atom is outside the training range."""
        if self.train_volume_per_atom is None or self.volume_per_atom is None:
            return False
        low, high = self.train_volume_per_atom
        slack = RANGE_TOLERANCE * self.volume_per_atom
        return not low - slack <= self.volume_per_atom <= high + slack

    @property
    def in_vacuum(self) -> bool:
        """A slab, wire or molecule in a vacuum box rather than a bulk crystal."""
        return self.vacuum is not None and self.vacuum > MAX_BULK_VACUUM

    @property
    def too_large(self) -> bool:
        """More atoms than the largest training cell."""
        return self.train_max_atoms is not None and self.natoms > self.train_max_atoms

    @property
    def out_of_domain(self) -> bool:
        """Unseen elements, a cell larger than any in training, vacuum in the cell, bonds or density unlike training."""
        return (
            bool(self.unseen_elements) or self.too_large or self.in_vacuum or self.bond_outside or self.volume_outside
        )

    def messages(self) -> list[str]:
        """One human-readable line per finding (empty when there is nothing to say)."""
        out = []
        if self.unseen_elements:
            out.append(
                f"out of domain: element(s) {', '.join(self.unseen_elements)} never seen in training; "
                "treat the prediction with caution"
            )
        if self.too_large:
            out.append(
                f"out of domain: {self.natoms} atoms in the cell, more than the largest training cell "
                f"({self.train_max_atoms} atoms)"
            )
        if self.in_vacuum:
            out.append(
                f"out of domain: an empty layer {self.vacuum:.1f} A wide along a cell vector (bulk crystals "
                f"in training: at most {WIDEST_BULK_VACUUM} A): a slab, wire or molecule in a vacuum box, "
                "not a bulk crystal"
            )
        if self.bond_outside and self.train_shortest_bond is not None:
            low, high = self.train_shortest_bond
            found = (
                f"{self.shortest_bond:.3g} A"
                if self.shortest_bond is not None
                else f"over {self.cutoff:g} A (no two atoms within the graph cutoff)"
            )
            out.append(
                f"out of domain: shortest interatomic distance {found}, outside the training range "
                f"{low:.3g}..{high:.3g} A (a compressed or expanded cell, or one not in Angstrom?)"
            )
        if self.volume_outside and self.train_volume_per_atom is not None:
            low, high = self.train_volume_per_atom
            out.append(
                f"out of domain: {self.volume_per_atom:.3g} A^3 per atom, outside the training range "
                f"{low:.3g}..{high:.3g} A^3 (a compressed or expanded cell, or one not in Angstrom?)"
            )
        if self.isolated_atoms:
            pairs = zip(self.isolated_atoms[:5], self.isolated_symbols[:5], strict=True)
            shown = ", ".join(f"{i} ({s})" for i, s in pairs)
            more = f" and {len(self.isolated_atoms) - 5} more" if len(self.isolated_atoms) > 5 else ""
            out.append(
                f"atom(s) {shown}{more} have no neighbour within {self.cutoff:g} A: only their own element "
                "(self loop) informs them"
            )
        return out


def check_domain(
    graph: Any, meta: dict[str, Any] | None = None, cutoff: float = 4.0, structure: Any = None
) -> DomainCheck:
    """Out-of-domain findings for a featurised graph, given a model's ``meta`` (may be empty or None).

    Uses ``meta["train_elements"]``, ``meta["train_max_atoms"]``, ``meta["train_shortest_bond"]`` and
    ``meta["train_volume_per_atom"]`` when present (written by ``dostransformer train``); isolated atoms
    and the shortest bond are found from the graph's edges (self loops excluded). ``structure`` (the
    ``Atoms`` / ``Structure`` the graph was made from) gives the volume per atom.
    """
    meta = meta or {}
    z = graph.z.detach().cpu().numpy().astype(int)
    n = len(z)
    unseen: tuple[str, ...] = ()
    seen = meta.get("train_elements")
    if seen:
        known = {int(v) for v in seen}
        unseen = tuple(_symbol(int(v)) for v in sorted(set(z.tolist()) - known))
    max_atoms = meta.get("train_max_atoms")
    src, dst = graph.edge_index.detach().cpu().numpy()
    vec = getattr(graph, "edge_vec", None)
    # with no vectors stored, a self loop is an edge from an atom to itself
    real = np.linalg.norm(vec.detach().cpu().numpy(), axis=1) > 0 if vec is not None else src != dst
    has_neighbour = np.zeros(n, dtype=bool)
    has_neighbour[dst[real]] = True
    isolated = np.flatnonzero(~has_neighbour)
    return DomainCheck(
        natoms=n,
        unseen_elements=unseen,
        train_max_atoms=int(max_atoms) if max_atoms is not None else None,
        isolated_atoms=tuple(int(i) for i in isolated),
        cutoff=float(cutoff),
        isolated_symbols=tuple(_symbol(int(z[i])) for i in isolated),
        vacuum=float(graph.vacuum.reshape(-1)[0]) if getattr(graph, "vacuum", None) is not None else None,
        shortest_bond=graph_shortest_bond(graph),
        volume_per_atom=None if structure is None else volume_per_atom(structure),
        train_shortest_bond=_range(meta.get("train_shortest_bond")),
        train_volume_per_atom=_range(meta.get("train_volume_per_atom")),
    )
