"""Write the example crystal structures in examples/structures/ (experimental room-temperature lattice parameters).

Run: python examples/make_structures.py
"""

from __future__ import annotations

from pathlib import Path

from ase.build import bulk
from ase.io import write
from ase.spacegroup import crystal


def structures() -> dict:
    """Name -> (ase.Atoms, file format) of the example crystals."""
    rutile = crystal(
        ["Ti", "O"],
        basis=[(0.0, 0.0, 0.0), (0.3048, 0.3048, 0.0)],
        spacegroup=136,
        cellpar=[4.594, 4.594, 2.959, 90, 90, 90],
    )
    return {
        "NaCl.cif": (bulk("NaCl", "rocksalt", a=5.640), "cif"),
        "Si.cif": (bulk("Si", "diamond", a=5.431), "cif"),
        "MgO.cif": (bulk("MgO", "rocksalt", a=4.212), "cif"),
        "GaAs.vasp": (bulk("GaAs", "zincblende", a=5.653), "vasp"),
        "ZnO.cif": (bulk("ZnO", "wurtzite", a=3.250, c=5.207, u=0.382), "cif"),
        "Cu.vasp": (bulk("Cu", "fcc", a=3.615), "vasp"),
        "TiO2_rutile.cif": (rutile, "cif"),
    }


def main(folder: str | Path | None = None) -> None:
    """Write every structure into ``folder`` (default: structures/ beside this script)."""
    out = Path(folder) if folder else Path(__file__).resolve().parent / "structures"
    out.mkdir(parents=True, exist_ok=True)
    for name, (atoms, fmt) in structures().items():
        kwargs = {"direct": True, "sort": True} if fmt == "vasp" else {}
        write(out / name, atoms, format=fmt, **kwargs)
        print(f"{name:<16} {atoms.get_chemical_formula():<8} {len(atoms)} atoms")


if __name__ == "__main__":
    main()
