"""Small electron-DOS source files in the real formats, with smooth Gaussian-peak spectra, for the eDOS tests.

The formats: MP-style JSON, pymatgen Dos JSON, vasprun.xml and DFT result JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.geometry import cellpar_to_cell

ENERGIES = np.linspace(-20.0, 15.0, 1401)  # 25 meV, absolute eV


def crystals() -> list[tuple[str, Atoms]]:
    """Twelve small crystals: all seven crystal systems but trigonal, 1 to 3 species."""
    out = [
        ("si", bulk("Si", "diamond", a=5.43)),
        ("cu", bulk("Cu", "fcc", a=3.61)),
        ("mono", Atoms("Al", cell=cellpar_to_cell([3.0, 3.5, 4.0, 90, 100, 90]), pbc=True)),
        ("tric", Atoms("Al", cell=cellpar_to_cell([3.0, 3.4, 3.8, 80, 95, 105]), pbc=True)),
        ("mg", bulk("Mg", "hcp", a=3.21, c=5.21)),
        ("nacl", bulk("NaCl", "rocksalt", a=5.64)),
        ("gaas", bulk("GaAs", "zincblende", a=5.65)),
        ("zno", bulk("ZnO", "wurtzite", a=3.25, c=5.21)),
        ("mgo", bulk("MgO", "rocksalt", a=4.21)),
        ("sn", bulk("Sn", "bct", a=5.83, c=3.18)),
    ]
    srtio3 = Atoms(
        "SrTiO3",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
        cell=[3.905, 3.905, 3.905],
        pbc=True,
    )
    out.append(("srtio3", srtio3))
    rutile = Atoms(
        "Ti2O4",
        scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.3, 0], [0.7, 0.7, 0], [0.8, 0.2, 0.5], [0.2, 0.8, 0.5]],
        cell=[4.59, 4.59, 2.96],
        pbc=True,
    )
    out.append(("tio2", rutile))
    return out


def spectrum(i: int, energies: np.ndarray = ENERGIES, efermi: float = 0.0) -> np.ndarray:
    """Two Gaussian bands around the Fermi level, shapes varying with ``i`` (states/eV)."""
    e = energies - efermi
    lo = -2.0 - 0.3 * (i % 5)
    hi = 1.5 + 0.25 * (i % 4)
    return 3.0 * np.exp(-(((e - lo) / 1.2) ** 2)) + (1.0 + 0.2 * i) * np.exp(-(((e - hi) / 0.8) ** 2))


def atoms_dict(atoms: Atoms) -> dict:
    """ASE-style structure dict."""
    return {
        "numbers": atoms.numbers.tolist(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell[:].tolist(),
        "pbc": [True, True, True],
    }


def write_mp_json(path: Path, rows: list[tuple[str, Atoms, float, int]]) -> Path:
    """A list of MP-style rows: pymatgen structure dict, dos {energies, densities by spin, efermi}."""
    from pymatgen.io.ase import AseAtomsAdaptor

    docs = []
    for mid, atoms, efermi, i in rows:
        dens = spectrum(i, ENERGIES, efermi)
        docs.append(
            {
                "material_id": mid,
                "structure": AseAtomsAdaptor.get_structure(atoms).as_dict(),
                "energy_per_atom": -4.0 - 0.1 * i,
                "formation_energy_per_atom": -0.5 + 0.01 * i,
                "dos": {
                    "energies": ENERGIES.tolist(),
                    "densities": {"1": (dens / 2).tolist(), "-1": (dens / 2).tolist()},
                    "efermi": efermi,
                },
            }
        )
    path.write_text(json.dumps(docs))
    return path


def write_pymatgen_dos(path: Path, atoms: Atoms, efermi: float, i: int, complete: bool = True) -> Path:
    """``json.dump(CompleteDos.as_dict())`` (or a plain ``Dos`` without structure)."""
    from pymatgen.electronic_structure.core import Spin
    from pymatgen.electronic_structure.dos import CompleteDos, Dos
    from pymatgen.io.ase import AseAtomsAdaptor

    dos = Dos(efermi, ENERGIES, {Spin.up: spectrum(i, ENERGIES, efermi)})
    if complete:
        dos = CompleteDos(AseAtomsAdaptor.get_structure(atoms), dos, {})
    path.write_text(json.dumps(dos.as_dict()))
    return path


def write_dft_result(path: Path, atoms: Atoms, efermi: float, nbands_above: int = 6) -> Path:
    """A gpaw_runner-style result: random eigenvalues on 8 k-points, bands reaching far above efermi."""
    rng = np.random.default_rng(len(atoms))
    nk, nb = 8, 4 + nbands_above
    eps = np.sort(efermi + rng.uniform(-8.0, 2.0 * nbands_above, size=(1, nk, nb)), axis=-1)
    eps[..., -1] = efermi + 6.0 + rng.uniform(0, 1, size=(1, nk))
    result = {
        "format": "ase-dostransformer-dft-result",
        "version": 1,
        "id": path.name.split(".")[0],
        "structure": atoms_dict(atoms),
        "efermi": efermi,
        "eigenvalues": eps.tolist(),
        "weights": (np.ones(nk) / nk).tolist(),
        "energy_per_atom": -3.0,
        "settings": {"code": "synthetic"},
        "seconds": 0.0,
    }
    path.write_text(json.dumps(result))
    return path


def _v(values) -> str:
    return "<v>" + " ".join(f"{x:16.8f}" for x in values) + " </v>"


def _structure_xml(atoms: Atoms, name: str | None) -> str:
    attr = f' name="{name}"' if name else ""
    cell = atoms.cell[:]
    rec = np.linalg.inv(cell).T
    return (
        f'<structure{attr}>\n<crystal>\n<varray name="basis">\n'
        + "\n".join(_v(r) for r in cell)
        + f'\n</varray>\n<i name="volume">{atoms.get_volume():.8f}</i>\n<varray name="rec_basis">\n'
        + "\n".join(_v(r) for r in rec)
        + '\n</varray>\n</crystal>\n<varray name="positions">\n'
        + "\n".join(_v(r) for r in atoms.get_scaled_positions())
        + "\n</varray>\n</structure>"
    )


def write_vasprun(path: Path, atoms: Atoms, efermi: float, i: int) -> Path:
    """A minimal but valid ``vasprun.xml`` (one ionic step, a total DOS) that pymatgen's ``Vasprun`` reads."""
    symbols = atoms.get_chemical_symbols()
    kinds = list(dict.fromkeys(symbols))
    atom_rows = "\n".join(f"<rc><c>{s}</c><c>{kinds.index(s) + 1}</c></rc>" for s in symbols)
    type_rows = "\n".join(
        f"<rc><c>{symbols.count(s)}</c><c>{s}</c><c>1.0</c><c>4.0</c><c>PAW_PBE {s} 01Jan2000</c></rc>" for s in kinds
    )
    dens = spectrum(i, ENERGIES, efermi)
    integ = np.cumsum(dens) * (ENERGIES[1] - ENERGIES[0])
    dos_rows = "\n".join(
        f"<r>{e:12.4f} {d:12.4f} {n:12.4f} </r>" for e, d, n in zip(ENERGIES, dens, integ, strict=True)
    )
    energy = (
        '<energy>\n<i name="e_fr_energy">-10.0</i>\n<i name="e_wo_entrp">-10.0</i>\n'
        '<i name="e_0_energy">-10.0</i>\n</energy>'
    )
    zeros = "\n".join(_v([0.0, 0.0, 0.0]) for _ in symbols)
    xml = f"""<?xml version="1.0" encoding="ISO-8859-1"?>
<modeling>
<generator>
<i name="program" type="string">vasp </i>
<i name="version" type="string">6.4.2 </i>
</generator>
<incar>
<i type="string" name="PREC">accurate</i>
<i name="ENCUT">520.0</i>
<i type="int" name="ISPIN">1</i>
</incar>
<kpoints>
<generation param="Gamma">
<v type="int" name="divisions">4 4 4 </v>
</generation>
<varray name="kpointlist">
{_v([0.0, 0.0, 0.0])}
</varray>
<varray name="weights">
{_v([1.0])}
</varray>
</kpoints>
<parameters>
<separator name="electronic">
<i type="string" name="PREC">accurate</i>
<i name="ENCUT">520.0</i>
<i type="int" name="ISPIN">1</i>
<i type="int" name="NELM">60</i>
</separator>
</parameters>
<atominfo>
<atoms>{len(symbols)}</atoms>
<types>{len(kinds)}</types>
<array name="atoms">
<dimension dim="1">ion</dimension>
<field type="string">element</field>
<field type="int">atomtype</field>
<set>
{atom_rows}
</set>
</array>
<array name="atomtypes">
<dimension dim="1">type</dimension>
<field type="int">atomspertype</field>
<field type="string">element</field>
<field>mass</field>
<field>valence</field>
<field type="string">pseudopotential</field>
<set>
{type_rows}
</set>
</array>
</atominfo>
{_structure_xml(atoms, "initialpos")}
<calculation>
<scstep>
{energy}
</scstep>
{_structure_xml(atoms, None)}
<varray name="forces">
{zeros}
</varray>
<varray name="stress">
{_v([0.0, 0.0, 0.0])}
{_v([0.0, 0.0, 0.0])}
{_v([0.0, 0.0, 0.0])}
</varray>
{energy}
<dos>
<i name="efermi">{efermi:.8f}</i>
<total>
<array>
<dimension dim="1">gridpoints</dimension>
<dimension dim="2">spin</dimension>
<field>energy</field>
<field>total</field>
<field>integrated</field>
<set>
<set comment="spin 1">
{dos_rows}
</set>
</set>
</array>
</total>
</dos>
</calculation>
{_structure_xml(atoms, "finalpos")}
</modeling>
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(xml)
    return path


def write_sources(folder: Path) -> dict[str, list[str]]:
    """Twelve good materials across four formats plus bad files; returns ``{"good": ids, "bad": ids}``."""
    folder.mkdir(parents=True, exist_ok=True)
    cs = crystals()
    efermi = [0.5 * (k % 3) - 0.5 for k in range(len(cs))]
    good = []
    rows = [(f"mp-{k}", cs[k][1], efermi[k], k) for k in range(5)]
    write_mp_json(folder / "mp_batch.json", rows)
    good += [r[0] for r in rows]
    for k in (5, 6, 7):
        write_pymatgen_dos(folder / f"{cs[k][0]}.json", cs[k][1], efermi[k], k)
        good.append(cs[k][0])
    for k in (8, 9):
        write_vasprun(folder / cs[k][0] / "vasprun.xml", cs[k][1], efermi[k], k)
        good.append(cs[k][0])
    for k in (10, 11):
        write_dft_result(folder / f"{cs[k][0]}.json", cs[k][1], efermi[k])
        good.append(cs[k][0])
    # bad inputs, each for another reason
    (folder / "broken.json").write_text('{"structure": {"lattice": ')  # truncated JSON
    bad_rows = [
        ("mp-narrow", cs[0][1], 0.0, 0),  # DOS does not cover the window (fixed below)
        ("mp-nofermi", cs[1][1], 0.0, 1),
    ]
    write_mp_json(folder / "mp_zbad.json", bad_rows)
    docs = json.loads((folder / "mp_zbad.json").read_text())
    docs[0]["dos"]["energies"] = docs[0]["dos"]["energies"][700:760]
    for spin in ("1", "-1"):
        docs[0]["dos"]["densities"][spin] = docs[0]["dos"]["densities"][spin][700:760]
    del docs[1]["dos"]["efermi"]
    docs.append({"material_id": "mp-0", "structure": docs[0]["structure"], "dos": docs[0]["dos"]})  # duplicate id
    docs.append({"material_id": "mp-nostructure", "dos": {"energies": [0, 1], "densities": [1, 1], "efermi": 0}})
    (folder / "mp_zbad.json").write_text(json.dumps(docs))
    write_pymatgen_dos(folder / "plain_dos.json", cs[0][1], 0.0, 3, complete=False)  # no structure anywhere
    write_dft_result(folder / "few_bands.json", cs[2][1], 0.0, nbands_above=0)
    few = json.loads((folder / "few_bands.json").read_text())
    eps = np.asarray(few["eigenvalues"])
    eps[..., -1] = 2.0  # top band only 2 eV above the Fermi level
    few["eigenvalues"] = eps.tolist()
    (folder / "few_bands.json").write_text(json.dumps(few))
    (folder / "damaged").mkdir(exist_ok=True)
    (folder / "damaged" / "vasprun.xml").write_text("<?xml version='1.0'?><modeling><generator>")
    bad = [
        "broken",
        "mp-narrow",
        "mp-nofermi",
        "mp-0 (duplicate)",
        "mp-nostructure",
        "plain_dos",
        "few_bands",
        "damaged",
    ]
    return {"good": good, "bad": bad}
