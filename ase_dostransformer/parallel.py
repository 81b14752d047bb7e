"""Prediction across worker processes: the CPU route to more structures per second.

Most of a phonon prediction's CPU time is the featurisation (the foundation potential's forward pass,
one crystal at a time, about two thirds of it; ``benchmarks/RESULTS.md``), and one crystal's graph is
too small for torch's intra-op threads to share well: on 2 cores, 2 threads gave 1.2x one thread.
Separate processes, one thread each, share nothing and scale with the cores. Each worker receives the
model once (pickled: a few MB) and then batches of structures, and runs the ordinary
:func:`~ase_dostransformer.pipeline.predict_structures` on them, so findings, errors and uncertainties are
exactly those of a single-process run. The batches come back in input order.

Workers are started with ``spawn``: safe whatever threads the parent's torch has started, on every
platform, at a start-up cost of a few seconds per worker (imports and the potential's first load), which
a run of a few hundred structures repays. CPU only: one GPU is best driven by one process.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

from .errors import InvalidStructureError, OptionError
from .pipeline import ON_INVALID, Prediction, predict_structures

__all__ = ["check_threads", "check_workers", "predict_in_batches"]

#: The worker process's model, set once by :func:`_start_worker`.
_WORKER_MODEL: Any = None
#: Batches queued per worker beyond the one it is computing: keeps every worker busy without pickling
#: the whole input up front.
_AHEAD = 2


def check_workers(workers: Any) -> int:
    """``workers`` as an int >= 1; :class:`OptionError` otherwise."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise OptionError(f"workers must be an integer >= 1, got {workers!r}")
    return workers


def check_threads(threads: Any) -> int:
    """``threads`` (torch threads per worker) as an int >= 1; :class:`OptionError` otherwise."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise OptionError(f"threads must be an integer >= 1, got {threads!r}")
    return threads


def _start_worker(model: Any, threads: int) -> None:
    import torch

    global _WORKER_MODEL
    torch.set_num_threads(threads)
    _WORKER_MODEL = model


def _batch(model: Any, structures: list[Any], options: dict[str, Any], device: Any = "cpu") -> list[Prediction]:
    """One batch through the pipeline, errors kept per structure (this process or a worker)."""
    return predict_structures(model, structures, device=device, on_invalid="keep", **options)


def _worker_batch(structures: list[Any], options: dict[str, Any]) -> list[Prediction]:
    return _batch(_WORKER_MODEL, structures, options)


def _reindexed(predictions: list[Prediction], offset: int) -> list[Prediction]:
    return [dataclasses.replace(p, index=p.index + offset) for p in predictions]


def _raise_first_error(predictions: Sequence[Prediction]) -> None:
    """What ``on_invalid="raise"`` does in one process: the first failure, naming its input position."""
    for p in predictions:
        if p.error is None:
            continue
        if isinstance(p.error, InvalidStructureError):
            raise InvalidStructureError(f"structure {p.index}: {p.error}") from p.error
        raise p.error


def predict_in_batches(
    model: Any,
    structures: Sequence[Any],
    *,
    batch_size: int = 64,
    workers: int = 1,
    threads: int = 1,
    device: Any = None,
    on_invalid: str = "raise",
    **options: Any,
) -> Iterator[list[Prediction]]:
    """The :class:`Prediction` of every structure, one list per batch of ``batch_size``, in input order.

    ``workers`` 1: this process, on ``device``. More: that many CPU processes of ``threads`` torch threads
    each, each given the model once; ``device`` must then be None (the CPU, even where a GPU is) or the
    CPU. ``options`` are :func:`~ase_dostransformer.pipeline.predict_structures`'s (``cut_off_threshold``,
    ``symprec``).
    Each prediction's ``index`` is its position in ``structures``. ``on_invalid`` as there: with
    ``"raise"``, the first failed structure raises once its batch is back (the batches before it have
    been yielded).
    """
    workers, threads = check_workers(workers), check_threads(threads)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch_size must be >= 1, got {batch_size}")
    if on_invalid not in ON_INVALID:
        raise OptionError(f"on_invalid must be one of {ON_INVALID}, got {on_invalid!r}")
    items = list(structures)
    starts = range(0, len(items), batch_size)
    options = {**options, "batch_size": batch_size}
    if workers == 1:
        for start in starts:
            batch = _reindexed(_batch(model, items[start : start + batch_size], options, device), start)
            if on_invalid == "raise":
                _raise_first_error(batch)
            yield batch
        return
    import torch

    if device is not None and torch.device(device).type != "cpu":
        raise OptionError(f"workers > 1 run on the CPU; got device {device!r} (use one process for a GPU)")
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(model, threads)) as pool:
        pending: deque[tuple[int, Future[list[Prediction]]]] = deque()
        queue = iter(starts)
        try:
            for start in queue:
                pending.append((start, pool.submit(_worker_batch, items[start : start + batch_size], options)))
                if len(pending) >= workers * (1 + _AHEAD):
                    break
            while pending:
                start, future = pending.popleft()
                batch = _reindexed(future.result(), start)
                following = next(queue, None)
                if following is not None:
                    chunk = items[following : following + batch_size]
                    pending.append((following, pool.submit(_worker_batch, chunk, options)))
                if on_invalid == "raise":
                    _raise_first_error(batch)
                yield batch
        finally:
            for _, future in pending:
                future.cancel()
