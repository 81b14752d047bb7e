"""Property-based fuzzing: any crystal, valid or not, gives a finite non-negative DOS or a ValueError."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase import Atoms
from hypothesis import HealthCheck, find, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ase_dostransformer.calculator import DOSCalculator
from ase_dostransformer.graphs import InvalidStructureError
from ase_dostransformer.inference import predict_phonon_dos
from ase_dostransformer.model import DOSTransformer, ModelConfig

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


torch.manual_seed(0)
MODEL = DOSTransformer(ModelConfig(hidden=32, layers=1, transformer=1, heads=4)).eval()
CALC = DOSCalculator(model=MODEL, device="cpu")
CALC.model.meta = {"train_elements": [8, 11, 14, 17, 29], "train_max_atoms": 4}  # exercise the domain flags


def cell_from_parameters(a: float, b: float, c: float, alpha: float, beta: float, gamma: float) -> np.ndarray:
    """Row-vector cell from lengths and angles (degrees); NaN in c for an impossible angle triple."""
    ca, cb, cg = np.cos(np.radians([alpha, beta, gamma]))
    sg = np.sin(np.radians(gamma))
    cy = (ca - cb * cg) / sg
    with np.errstate(invalid="ignore"):
        cz = np.sqrt(1.0 - cb**2 - cy**2)
    return np.array([[a, 0.0, 0.0], [b * cg, b * sg, 0.0], [c * cb, c * cy, c * cz]])


@st.composite
def plausible_crystals(draw) -> Atoms:
    """Cells from lengths and angles (some angle triples are impossible), random atoms, real elements."""
    a, b, c = (draw(st.floats(1.0, 12.0)) for _ in range(3))
    angles = [draw(st.floats(55.0, 125.0)) for _ in range(3)]
    cell = cell_from_parameters(a, b, c, *angles)
    n = draw(st.integers(1, 8))
    frac = draw(arrays(np.float64, (n, 3), elements=st.floats(0.0, 1.0, exclude_max=True)))
    numbers = draw(arrays(np.int64, (n,), elements=st.integers(1, 118)))
    if not np.isfinite(cell).all():  # an impossible angle triple: a NaN cell, which must be rejected
        return Atoms(numbers=numbers, positions=frac, cell=cell, pbc=True)
    return Atoms(numbers=numbers, scaled_positions=frac, cell=cell, pbc=True)


SPECIAL = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1e-9, -1e-3, 1e6, 1e12])


@st.composite
def hostile_crystals(draw) -> Atoms:
    """Anything: NaN/inf/huge/zero cells and positions, invalid atomic numbers, partial periodicity, no atoms."""
    n = draw(st.integers(0, 6))
    values = st.one_of(st.floats(-15.0, 15.0), SPECIAL)
    cell = draw(arrays(np.float64, (3, 3), elements=values))
    if draw(st.booleans()):  # often a sane diagonal, so that the other faults are reached
        cell = np.diag(draw(arrays(np.float64, (3,), elements=st.floats(0.5, 15.0))))
    positions = draw(arrays(np.float64, (n, 3), elements=st.one_of(st.floats(-30.0, 30.0), SPECIAL)))
    numbers = draw(arrays(np.int64, (n,), elements=st.one_of(st.integers(1, 118), st.sampled_from([0, -1, 119, 300]))))
    pbc = draw(st.one_of(st.just((True, True, True)), st.tuples(st.booleans(), st.booleans(), st.booleans())))
    return Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)


def check_rejection(exc: ValueError) -> str:
    """A refused structure: an InvalidStructureError, or a non-finite prediction, with a message."""
    assert str(exc), "an error without a message"
    assert isinstance(exc, InvalidStructureError) or "non-finite" in str(exc), repr(exc)
    return "rejected"


def check_calculator(atoms: Atoms) -> str:
    """Either a finite, non-negative (51,) DOS, or an InvalidStructureError / ValueError with a message."""
    CALC.reset()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dos = CALC.get_property("phonon_dos", atoms)
    except ValueError as exc:
        return check_rejection(exc)
    assert isinstance(dos, np.ndarray)
    assert dos.shape == (51,)
    assert np.isfinite(dos).all()
    assert (dos >= 0).all()
    assert isinstance(CALC.results["phonon_dos_out_of_domain"], bool)
    assert all(isinstance(m, str) for m in CALC.results["phonon_dos_warnings"])
    return "predicted"


@FUZZ
@given(plausible_crystals())
def test_fuzz_plausible_crystals(atoms: Atoms) -> None:
    check_calculator(atoms)


@FUZZ
@given(hostile_crystals())
def test_fuzz_hostile_inputs(atoms: Atoms) -> None:
    check_calculator(atoms)


@settings(max_examples=15, deadline=None, derandomize=True)
@given(st.lists(st.one_of(plausible_crystals(), hostile_crystals()), min_size=1, max_size=4))
def test_fuzz_batch_api_agrees_with_the_calculator(items: list[Atoms]) -> None:
    """The batch API accepts exactly what the calculator accepts, and gives the same numbers."""
    outcomes = [check_calculator(a) for a in items]
    single = []
    for a, outcome in zip(items, outcomes, strict=True):
        if outcome == "predicted":
            CALC.reset()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                single.append(CALC.get_property("phonon_dos", a))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "rejected" in outcomes:  # the batch is refused, naming the first structure the calculator refused
            with pytest.raises(InvalidStructureError, match=f"^structure {outcomes.index('rejected')}: "):
                predict_phonon_dos(MODEL, items)
            return
        out = predict_phonon_dos(MODEL, items)
    np.testing.assert_allclose(out, np.stack(single), rtol=0, atol=2e-6)


def test_fuzz_strategies_reach_both_outcomes() -> None:
    """The strategies are not vacuous: plausible crystals do get predicted, hostile inputs do get rejected."""
    quick = settings(max_examples=40, deadline=None, database=None, derandomize=True)
    find(plausible_crystals(), lambda a: check_calculator(a) == "predicted", settings=quick)
    find(hostile_crystals(), lambda a: check_calculator(a) == "rejected", settings=quick)
