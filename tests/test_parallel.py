"""Prediction in worker processes (``ase_dostransformer.parallel``): the same answers as one process."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from ase_dostransformer.errors import InvalidStructureError, OptionError
from ase_dostransformer.parallel import check_workers, predict_in_batches
from ase_dostransformer.pipeline import predict_structures


def _structures() -> list[Atoms]:
    crystals = [bulk("NaCl", "rocksalt", a=5.6), bulk("Si", "diamond", a=5.43), bulk("Cu", "fcc", a=3.61)]
    crystals += [bulk("MgO", "rocksalt", a=4.21), bulk("GaAs", "zincblende", a=5.65)]
    broken = bulk("Cu", "fcc", a=3.61)
    broken.cell[:] = 0.0  # no cell: cannot be featurised
    broken.pbc = False
    return crystals[:3] + [broken] + crystals[3:] + [bulk("Al", "fcc", a=4.05)]


def test_workers_give_the_single_process_predictions(model):
    structures = _structures()
    alone = [p for batch in predict_in_batches(model, structures, batch_size=3, on_invalid="keep") for p in batch]
    batches = list(predict_in_batches(model, structures, batch_size=3, workers=2, on_invalid="keep"))
    pooled = [p for batch in batches for p in batch]
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [p.index for p in pooled] == list(range(len(structures)))
    direct = predict_structures(model, structures, batch_size=3, on_invalid="keep")
    for a, b, c in zip(alone, pooled, direct, strict=True):
        assert (a.error is None) == (b.error is None) == (c.error is None)
        if a.error is not None:
            assert type(b.error) is type(a.error) is InvalidStructureError
            assert str(b.error) == str(a.error)
            continue
        # another process may round differently in the last bit (float32), nothing more
        np.testing.assert_allclose(b.dos, a.dos, rtol=1e-6, atol=1e-7 * float(a.dos.max()))
        np.testing.assert_allclose(c.dos, a.dos, rtol=1e-6, atol=1e-7 * float(a.dos.max()))
        assert (a.crystal_system, a.space_group, a.messages) == (b.crystal_system, b.space_group, b.messages)
    assert pooled[3].error is not None
    assert pooled[2].error is None


def test_workers_raise_naming_the_input_position(model):
    batches = predict_in_batches(model, _structures(), batch_size=2, workers=2)
    first = next(batches)  # structures 0 and 1 are fine
    assert [p.index for p in first] == [0, 1]
    with pytest.raises(InvalidStructureError, match="^structure 3: "):
        next(batches)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_bad_worker_counts_are_refused(model, bad):
    with pytest.raises(OptionError, match="workers must be an integer >= 1"):
        check_workers(bad)
    with pytest.raises(OptionError, match="workers must be an integer >= 1"):
        list(predict_in_batches(model, _structures(), workers=bad))


def test_workers_refuse_a_gpu(model):
    with pytest.raises(OptionError, match="workers > 1 run on the CPU"):
        list(predict_in_batches(model, _structures(), workers=2, device="cuda"))
