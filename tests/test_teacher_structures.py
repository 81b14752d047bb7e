"""The crystals the teacher labels: elements, prototypes, strained copies, the held-out chemistry split."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest
from ase.data import atomic_numbers

from ase_dostransformer.teacher import structures as st

REQUIRED_PROTOTYPES = (
    "rocksalt", "CsCl", "zincblende", "wurtzite", "NiAs", "fluorite", "antifluorite", "rutile", "CdI2",
    "pyrite", "perovskite", "heusler", "half-heusler", "spinel", "L12", "A15", "ReO3", "antiperovskite",
)  # fmt: skip


@pytest.fixture(scope="module")
def elements():
    return st.elemental_crystals()


@pytest.fixture(scope="module")
def prototypes():
    return st.prototype_crystals()


@pytest.fixture(scope="module")
def generated_queue():
    return st.queue("generated")


def test_elemental_crystals(elements) -> None:
    symbols = [a.info["formula"] for a in elements]
    assert len(set(symbols)) >= 60
    assert len(symbols) == len(set(symbols))
    for a in elements:
        s = a.info["formula"]
        assert set(a.get_chemical_symbols()) == {s}
        assert a.info["id"] == f"elem-{s}-{a.info['prototype']}"
        assert a.info["source"] == "element"
        assert a.info["relax_cell"] is True
        assert all(a.pbc)
    kinds = Counter(a.info["prototype"] for a in elements)
    assert {"fcc", "bcc", "hcp", "diamond"} <= set(kinds)
    metals = {"Cu", "Fe", "Al", "W", "Na", "Ti", "Au", "Pt", "Mg", "Zn"}
    assert metals <= set(symbols)
    skipped = st.skipped_elements()
    assert {"H", "N", "O"} <= set(skipped)
    assert not set(skipped) & set(symbols)


def test_prototypes_cover_the_issue_and_ids_are_unique(prototypes) -> None:
    counts = Counter(a.info["prototype"] for a in prototypes)
    assert all(counts[p] >= 10 for p in REQUIRED_PROTOTYPES), counts
    assert 2000 <= len(prototypes) <= 6000
    ids = [a.info["id"] for a in prototypes]
    assert len(ids) == len(set(ids))
    for a in prototypes:
        assert a.info["id"] == f"proto-{a.info['prototype']}-{a.info['formula']}"
        assert a.info["source"] == "prototype"
        assert a.info["relax_cell"] is True
    for known in ("proto-rocksalt-MgO", "proto-rocksalt-LiH", "proto-rutile-MgH2", "proto-zincblende-BN",
                  "proto-wurtzite-BN", "proto-zincblende-SiC", "proto-rocksalt-TiC", "proto-rocksalt-TiN",
                  "proto-wurtzite-AlN", "proto-perovskite-SrTiO3", "proto-heusler-Co2MnSi", "proto-spinel-MgAl2O4",
                  "proto-pyrite-FeS2", "proto-L12-Ni3Al", "proto-A15-Nb3Sn", "proto-AlB2-MgB2"):  # fmt: skip
        assert known in ids, known


def test_only_allowed_elements_and_no_close_atoms(elements, prototypes) -> None:
    for a in elements + prototypes:
        syms = set(a.get_chemical_symbols())
        assert syms <= st.ALLOWED_ELEMENTS, a.info["id"]
        assert all(atomic_numbers[s] <= 83 or s in ("Th", "U") for s in syms)
        assert st.min_distance(a) >= 1.0, a.info["id"]
        assert 4.0 < a.get_volume() / len(a) < 130.0, a.info["id"]  # Cs bcc: 117 A^3/atom


def test_charge_balance(prototypes) -> None:
    """Every ionic crystal sums to zero with the charges it records, and a sample is confirmed by pymatgen."""
    from pymatgen.core import Composition

    ionic = [a for a in prototypes if a.info["ionic"]]
    assert len(ionic) > 1000
    for a in ionic:
        ox = a.info["oxidation_states"]
        assert sum(ox[s] for s in a.get_chemical_symbols()) == 0, a.info["id"]
    sample: list = []
    for name in st.PROTOTYPES:
        sample += [a for a in ionic if a.info["prototype"] == name][:3]
    for a in sample:
        ox = a.info["oxidation_states"]
        guesses = Composition(a.get_chemical_formula()).oxi_state_guesses()
        assert any(all((g[e] > 0) == (q > 0) for e, q in ox.items()) for g in guesses), (a.info["id"], guesses)


def test_light_elements_are_well_represented(prototypes) -> None:
    n = {x: sum(x in a.get_chemical_symbols() for a in prototypes) for x in ("H", "B", "C", "N")}
    assert n["H"] >= 100, n
    assert n["B"] >= 50, n
    assert n["C"] >= 50, n
    assert n["N"] >= 100, n
    assert sum(st.has_light_bonds(a) for a in prototypes) >= 150
    by_id = {a.info["id"]: a for a in prototypes}
    assert st.has_light_bonds(by_id["proto-zincblende-BN"])
    assert not st.has_light_bonds(by_id["proto-rocksalt-NaCl"])


def test_determinism(prototypes, elements) -> None:
    st._prototype_cached.cache_clear()
    st._elemental_cached.cache_clear()
    again = st.prototype_crystals()
    assert [a.info["id"] for a in again] == [a.info["id"] for a in prototypes]
    for a, b in zip(again, prototypes, strict=True):
        assert np.array_equal(a.numbers, b.numbers)
        assert np.allclose(a.cell[:], b.cell[:])
        assert np.allclose(a.positions, b.positions)
    assert [a.info["id"] for a in st.elemental_crystals()] == [a.info["id"] for a in elements]
    other = st.prototype_crystals(["heusler"], seed=st.SEED + 1)
    mine = [a for a in prototypes if a.info["prototype"] == "heusler"]
    assert [a.info["id"] for a in other] != [a.info["id"] for a in mine]
    assert len(st.prototype_crystals(max_count=50)) == 50


def test_strained_copies(elements) -> None:
    parents = elements[:5]
    copies = st.strained_copies(parents)
    assert len(copies) == 5 * len(st.DEFAULT_STRAINS)
    for k, a in enumerate(copies):
        parent = parents[k // len(st.DEFAULT_STRAINS)]
        s = st.DEFAULT_STRAINS[k % len(st.DEFAULT_STRAINS)]
        assert a.info["id"] == f"{parent.info['id']}-v{s:+.2f}"
        assert a.info["source"] == "strained"
        assert a.info["parent"] == parent.info["id"]
        assert a.info["volume_strain"] == s
        assert a.info["relax_cell"] is False
        assert a.get_volume() == pytest.approx((1 + s) * parent.get_volume(), rel=1e-12)
        assert np.allclose(a.get_scaled_positions(), parent.get_scaled_positions())
        cp = a.cell.cellpar()
        assert np.allclose(cp[3:], parent.cell.cellpar()[3:])  # isotropic: angles kept
    assert "elem-Cu-fcc-v+0.02" in {a.info["id"] for a in st.strained_copies(elements)}
    with pytest.raises(ValueError, match="volume strain -1.0 of .* would give a non-positive volume"):
        st.strained_copies(parents[:1], strains=(-1.0,))


def test_queue_order_and_contents(generated_queue) -> None:
    q = generated_queue
    ids = [a.info["id"] for a in q]
    assert len(ids) == len(set(ids))
    sources = [a.info["source"] for a in q]
    n_el, n_pr = sources.count("element"), sources.count("prototype")
    assert sources == ["element"] * n_el + ["prototype"] * n_pr + ["strained"] * sources.count("strained")
    first = [a.info["prototype"] for a in q[n_el : n_el + len(st.PROTOTYPES)]]
    assert len(set(first)) >= len(st.PROTOTYPES) - 3  # round-robin (less the DFT-test duplicates left out)
    strained = [a for a in q if a.info["source"] == "strained"]
    from_dft = [a for a in strained if a.info["parent_source"] == "dft"]
    assert len(from_dft) >= 400
    assert len({a.info["parent"] for a in from_dft}) >= 100
    assert all(a.info["relax_cell"] is False for a in strained)
    for i in range(0, len(strained), 4):  # the strains of one parent are adjacent
        assert len({a.info["parent"] for a in strained[i : i + 4]}) == 1
    excluded = set(json.loads(st.SPLIT_PATH.read_text())["excluded_dft_test_duplicates"])
    assert not excluded & set(ids)


def test_dft_crystals() -> None:
    train = st.dft_crystals("train")
    assert len(train) > 1000
    assert all(a.info["id"].startswith("mp-") and a.info["source"] == "dft" for a in train)
    assert all(a.info["relax_cell"] is False for a in train)
    test_ids = {a.info["id"] for a in st.dft_crystals("test")}
    assert not test_ids & {a.info["id"] for a in st.queue("dft")}
    with pytest.raises(ValueError, match="part must be one of .*, got 'everything'"):
        st.dft_crystals("everything")


def test_held_out_split(generated_queue) -> None:
    record = json.loads(st.SPLIT_PATH.read_text())
    held = st.held_out_ids()
    assert len(held) == record["count"] >= 200
    assert hashlib.sha256("\n".join(sorted(held)).encode()).hexdigest() == record["sha256"]
    by_id = {a.info["id"]: a for a in generated_queue}
    assert held <= set(by_id), "held-out ids the code no longer generates: regenerate with --write-split"
    # disjoint from the DFT crystals and from anything built from them
    dft = st.dft_crystals("train+valid")
    seen = {s for a in dft for s in a.get_chemical_symbols()}
    built_from_dft = {a.info["id"] for a in generated_queue if a.info.get("parent_source") == "dft"}
    assert not held & ({a.info["id"] for a in dft} | built_from_dft)
    # the rule, checked both ways on the queue
    elements = set(record["held_out_elements"])
    assert elements
    assert not elements & seen
    assert set(record["held_out_prototypes"]) <= set(st.PROTOTYPES)
    assert all(record["prototype_matches_in_dft_train_valid"][p] == 0 for p in record["held_out_prototypes"])
    for i, a in by_id.items():
        rule = bool(set(a.get_chemical_symbols()) & elements) or a.info.get("prototype") in st.HELD_OUT_PROTOTYPES
        rule = rule and a.info.get("parent_source") != "dft"
        assert rule == (i in held), i
    assert record["dft_data_sha256"] == st._dataset(None).sha256, "DFT data changed: regenerate the split"


def test_extended_queue_adds_only_new_training_crystals(generated_queue) -> None:
    extended = st.extended_queue()
    ids = [a.info["id"] for a in extended]
    assert len(ids) == len(set(ids)) >= 1000
    assert not set(ids) & {a.info["id"] for a in generated_queue}
    held_elements = set(json.loads(st.SPLIT_PATH.read_text())["held_out_elements"])
    for a in extended:
        assert a.info["source"] == "prototype"
        assert a.info["prototype"] not in st.HELD_OUT_PROTOTYPES
        assert not set(a.get_chemical_symbols()) & held_elements, a.info["id"]
    # round-robin: the first crystals come from many prototypes
    assert len({a.info["prototype"] for a in extended[:20]}) >= 8
    # at most factor x cap per prototype, counting the ones queue() holds
    counts = Counter(a.info["prototype"] for a in extended) + Counter(
        a.info.get("prototype") for a in generated_queue if a.info["source"] == "prototype"
    )
    for name, n in counts.items():
        assert n <= st.EXTENDED_CAP_FACTOR * st.PROTOTYPES[name].cap, name


def test_more_strained_queue_strains_other_dft_training_crystals(generated_queue) -> None:
    more = st.more_strained_queue()
    first_parents = {a.info["parent"] for a in generated_queue if a.info.get("parent_source") == "dft"}
    parents = [a.info["parent"] for a in more]
    assert len(set(parents)) == len(more) // len(st.DEFAULT_STRAINS) >= 250
    assert not set(parents) & first_parents
    assert {a.info["split"] for a in more} == {"train"}
    for i in range(0, len(more), len(st.DEFAULT_STRAINS)):  # a parent's strains adjacent, in order
        block = more[i : i + len(st.DEFAULT_STRAINS)]
        assert [a.info["volume_strain"] for a in block] == list(st.DEFAULT_STRAINS)
        assert len({a.info["parent"] for a in block}) == 1
