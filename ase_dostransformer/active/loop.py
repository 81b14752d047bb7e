"""The active-learning loop: select -> label -> retrain -> evaluate on a fixed test set, until the budget is spent.

Round 0 trains on the initial labels (``LoopConfig.initial``: GPAW result files or folders, anything
``dostransformer dataset build`` reads) and evaluates. Each later round picks a batch from the pool
with the previous round's models (:mod:`.acquisition`), labels it (:mod:`.labeller`), rebuilds the
dataset with the new labels, trains ``members`` models (different seeds; from scratch, or fine-tuned
from the previous round's with ``finetune``), evaluates their mean on the same test crystals, and
appends a row to ``OUT/learning_curve.json``. It stops when ``budget`` crystals have been sent to the
labeller (failures count: they cost DFT time too) or the pool is empty.

**Fixed sets.** ``split`` (a JSON file ``{"valid": [ids], "test": [ids]}``, optionally ``"train"``)
names the validation crystals (model selection) and the test crystals of every round. Without it,
the initial labels that are phonon-dataset test crystals are the test set and those that are
phonon-dataset valid crystals the validation set (the pool never holds phonon test crystals, so the
test set is never chosen); the rest are the initial training labels (``initial_train`` keeps a
seeded random subset of them; the others may then come back through the pool, which is how a
labelled set is replayed as a simulation).

**Energy reference.** Every label goes through ``dataset build``: with a band gap the 0 eV of the
target is the valence-band maximum, for a metal the Fermi level (GPAW eigenvalues;
``properties.band_gap`` says which applies). Labels from other sources must follow the same
convention to be mixed in.

**Files** (``OUT/``): ``state.json`` (config, fixed split, every round's selection, labels and
failures; written atomically after each step), ``learning_curve.json``, ``pool/`` (the frozen pool
and its graphs), ``labels/`` (the labeller's output and ``failures.jsonl``), ``round-NNN/`` (the
round's dataset, split file and one training run per member). A killed loop rerun with the same
config continues where it stopped: a chosen batch is not chosen again, labels are not redone, a
finished member is not retrained (an unfinished one resumes from its last checkpoint). Only
``budget`` and ``threads`` may change on a rerun (raise the budget to continue a finished loop).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import CheckpointError, DatasetError, OptionError
from ..io.atomic import atomic_write_text
from ..io.locks import lock_folder
from .acquisition import ACQUISITIONS, CANDIDATE_FACTOR, diverse_uncertain, random_batch, relative_spread, standardise
from .labeller import Labeller, label_path
from .pool import POOL_FILE, Pool, assemble_pool, load_pool, save_pool

if TYPE_CHECKING:  # pragma: no cover
    from ..electronic import GapPrediction

__all__ = [
    "CURVE_FILE",
    "QUANTITY_KEYS",
    "RESUMABLE_FIELDS",
    "STATE_FILE",
    "LoopConfig",
    "LoopResult",
    "electron_quantities",
    "load_curve",
    "run_loop",
]

STATE_FILE = "state.json"
CURVE_FILE = "learning_curve.json"
STATE_FORMAT = "ase-dostransformer-active-loop"
STATE_VERSION = 1
#: Config fields that may differ when a loop is resumed; every other one must match its state.
RESUMABLE_FIELDS = ("budget", "threads")
#: The electron quantities of a learning-curve row (:func:`electron_quantities`).
QUANTITY_KEYS = (
    "gap_mae_eV",
    "metal_insulator_accuracy",
    "metal_insulator_balanced_accuracy",
    "majority_baseline_accuracy",
    "metals_given_unflagged_gap",
    "metals_dos_at_fermi_positive",
    "gap_within_90_interval",
)


@dataclass
class LoopConfig:
    """Everything a loop needs besides its labeller; stored in ``state.json`` (see the module docstring).

    Training options follow ``train/edos/train.sh`` (value energy encoding, fp32) except ``epochs``,
    ``hidden``, ``lr``, ``batch_size``, ``eval`` (validation every N epochs) and ``es`` (early-stopping
    patience in epochs, 0 for none), which are set here; ``gap_head`` / ``gap_weight`` give the members
    a band-gap head (``dostransformer train --gap_head``), whose figures then head the learning curve;
    ``embedder`` is the members' structure encoder (``foundation``: the universal potential's features,
    computed for every labelled and pool crystal with the loop's graph recipe).
    """

    out: str
    initial: list[str]
    pool: list[str] = field(default_factory=lambda: ["phdos", "teacher"])
    budget: int = 150
    batch: int = 50
    acquisition: str = "uncertainty"
    seed: int = 0
    members: int = 3
    epochs: int = 45
    finetune: bool = False
    hidden: int = 128
    lr: float = 5e-4
    batch_size: int = 8
    eval: int = 3
    es: int = 15
    split: str | None = None
    initial_train: int | None = None
    max_atoms: int | None = None
    candidate_factor: int = CANDIDATE_FACTOR
    threads: int | None = 1
    gap_head: bool = False
    gap_weight: float = 0.1
    embedder: str = "graph_network"

    def __post_init__(self) -> None:
        self.initial = [_absolute(p) for p in self.initial]
        self.pool = [_absolute(p) if Path(p).exists() else str(p) for p in self.pool]
        self.split = _absolute(self.split) if self.split else None
        self.validate()

    def validate(self) -> None:
        """Refuse values that cannot run (:class:`~ase_dostransformer.errors.OptionError` naming the field)."""
        if not self.initial:
            raise OptionError("initial: name the initial label files or folders")
        if not self.pool:
            raise OptionError("pool: name at least one pool source")
        for name, low in (("budget", 0), ("batch", 1), ("members", 1), ("candidate_factor", 1), ("seed", 0)):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low:
                raise OptionError(f"{name} must be an integer >= {low}, got {getattr(self, name)!r}")
        for name in ("initial_train", "max_atoms"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise OptionError(f"{name} must be an integer >= 1 or None, got {value!r}")
        from ..model.embedders import EMBEDDERS

        if self.embedder not in EMBEDDERS:
            raise OptionError(f"embedder must be one of {tuple(EMBEDDERS)}, got {self.embedder!r}")
        if self.acquisition not in ACQUISITIONS:
            raise OptionError(f"acquisition must be one of {ACQUISITIONS}, got {self.acquisition!r}")
        if self.acquisition == "uncertainty" and self.members < 2:
            raise OptionError("acquisition 'uncertainty' needs members >= 2 (their disagreement is the uncertainty)")
        self.train_options(self.out, "data", "split.json", 0)  # the training options are checked now

    def train_options(self, out: str, data: str, split: str, seed: int, init_from: str | None = None) -> Any:
        """The ``TrainOptions`` of one member run."""
        from ..training.options import TrainOptions

        return TrainOptions(
            out=out,
            data=data,
            dataset=split,
            task="electron",
            seed=seed,
            hidden=self.hidden,
            lr=self.lr,
            batch_size=self.batch_size,
            epochs=self.epochs,
            eval=self.eval,
            es=self.es,
            energy_encoding="value",
            precision="32-true",
            threads=self.threads,
            init_from=init_from,
            resume=True,
            gap_head=self.gap_head,
            gap_weight=self.gap_weight,
            embedder=self.embedder,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for ``state.json``)."""
        return dataclasses.asdict(self)


@dataclass
class LoopResult:
    """What :func:`run_loop` did: rounds run in this call, crystals sent to the labeller so far, the learning curve."""

    rounds_run: int
    spent: int
    curve: list[dict[str, Any]]


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def _clean(obj: Any) -> Any:
    """``obj`` with every non-finite float replaced by None (strict JSON)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=1, allow_nan=False) + "\n")


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "n/a" if x is None else format(x, spec)


# ----------------------------------------------------------------------------------- state


def _load_state(out: Path, config: LoopConfig) -> dict[str, Any]:
    path = out / STATE_FILE
    if not path.is_file():
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "config": config.to_dict(), "rounds": []}
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not readable as JSON ({exc})") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise DatasetError(f"{path}: not the state file of an active-learning loop")
    stored = state["config"]
    defaults = {f.name: f.default for f in dataclasses.fields(LoopConfig) if f.default is not dataclasses.MISSING}
    for name, value in config.to_dict().items():
        # a field the stored loop predates holds its default there
        if name not in RESUMABLE_FIELDS and name != "out" and stored.get(name, defaults.get(name)) != value:
            raise OptionError(
                f"{out} holds a loop with {name}={stored.get(name)!r}, not {value!r}: use another --out, "
                f"or the same settings to resume it (only {', '.join(RESUMABLE_FIELDS)} may change)"
            )
    state["config"] = config.to_dict()
    return state


def _save_state(out: Path, state: dict[str, Any]) -> None:
    _write_json(out / STATE_FILE, state)


def _spent(state: dict[str, Any]) -> int:
    return sum(len(r.get("selected", [])) for r in state["rounds"])


def _round_dir(out: Path, r: int) -> Path:
    return out / f"round-{r:03d}"


# ------------------------------------------------------------------------------ datasets


def _build(config: LoopConfig, out: Path, r: int, acquired: list[str], log: Callable[[str], None]) -> Any:
    """The round's dataset: the initial labels plus the acquired label files."""
    from ..io.electron_dataset import build_edos_dataset, load_edos_dataset

    folder = _round_dir(out, r) / "data"
    inputs = [*config.initial, *(str(label_path(out / "labels", i)) for i in acquired)]
    report = build_edos_dataset(inputs, folder)
    log(f"round {r}: dataset of {report.kept} labels ({len(report.skipped)} rows skipped)")
    return load_edos_dataset(folder), {row["id"]: row["reason"] for row in report.skipped if row.get("id")}


def _fixed_split(config: LoopConfig, ids: list[str]) -> dict[str, list[str]]:
    """Initial train, valid and test ids of the loop (see the module docstring)."""
    present = set(ids)
    if config.split:
        spec = json.loads(Path(config.split).read_text(encoding="utf-8"))
        valid, test = list(spec.get("valid", [])), list(spec.get("test", []))
        missing = [i for i in valid + test if i not in present]
        if missing:
            raise DatasetError(f"split {config.split}: {len(missing)} ids have no initial label: {missing[:10]}")
        fixed = set(valid) | set(test)
        train = [i for i in spec.get("train", ids) if i in present and i not in fixed]
    else:
        from ..io.phdos import load_phonon_dataset

        ph = load_phonon_dataset()
        part = {ph.ids[i]: name for name in ("valid", "test") for i in ph.split[name]}
        valid = [i for i in ids if part.get(i) == "valid"]
        test = [i for i in ids if part.get(i) == "test"]
        train = [i for i in ids if i not in part]
    if not valid or not test or not train:
        raise DatasetError(
            f"the initial labels give {len(train)} train, {len(valid)} valid and {len(test)} test crystals: "
            'each must be non-empty; name the fixed sets with split=FILE ({"valid": [...], "test": [...]})'
        )
    if config.initial_train is not None and config.initial_train < len(train):
        keep = np.random.default_rng(config.seed).choice(len(train), config.initial_train, replace=False)
        train = [train[i] for i in sorted(keep)]
    return {"train": train, "valid": valid, "test": test}


# ---------------------------------------------------------------------------------- pool


def _pool(config: LoopConfig, out: Path, state: dict[str, Any], log: Callable[[str], None]) -> tuple[Pool, list]:
    """The frozen pool and its graphs: assembled and featurised once, then read back.

    The pool file is the loop's pool for good (sources such as a running teacher job grow); only
    its graphs are made again when their file is missing, damaged or of another recipe.
    """
    from ..errors import DOSTransformerError
    from ..graphs.electron import ElectronGraphRecipe
    from ..io.torch_files import load_graph_file, save_graph_file

    folder = out / "pool"
    recipe = ElectronGraphRecipe.from_dict(state["recipe"])
    if (folder / POOL_FILE).is_file():
        pool = load_pool(folder / POOL_FILE)
        try:
            header, graphs = load_graph_file(folder / "graphs.pt")
            if header.get("recipe") == recipe.to_dict() and header.get("ids") == pool.ids:
                return pool, [recipe.expand(g) for g in graphs]
        except (DOSTransformerError, OSError):
            pass
    else:
        split = state["split"]
        labelled = [*split["train"], *split["valid"], *split["test"]]
        pool = assemble_pool(config.pool, labelled, None, config.max_atoms, log)
    items, graphs = [], []
    for item in pool.items:
        try:
            graphs.append(recipe.featurise(item.atoms))
        except ValueError as exc:  # an element without an embedding, an invalid cell: no model can take it
            pool.skipped.append({"id": item.id, "source": item.source, "reason": str(exc)})
            continue
        items.append(item)
    pool = Pool(items, pool.skipped)
    if not pool.items:
        raise DatasetError(f"the pool from {config.pool} is empty ({len(pool.skipped)} crystals left out)")
    save_pool(pool, folder / POOL_FILE)
    header = {"recipe": recipe.to_dict(), "ids": pool.ids}
    save_graph_file(folder / "graphs.pt", [recipe.compact(g) for g in graphs], header, private=False)
    log(f"pool: {len(pool)} crystals ({len(pool.skipped)} left out, see {folder / POOL_FILE})")
    return pool, graphs


# ------------------------------------------------------------------------------ training


def _member_runs(out: Path, r: int, members: int) -> list[Path]:
    return [_round_dir(out, r) / f"member-{k}" for k in range(members)]


def _train_members(config: LoopConfig, out: Path, r: int, log: Callable[[str], None]) -> None:
    from ..training.run import train

    data, split = _round_dir(out, r) / "data", _round_dir(out, r) / "split.json"
    previous = _member_runs(out, r - 1, config.members) if r > 0 else []
    for k, run in enumerate(_member_runs(out, r, config.members)):
        if (run / "model.pt").is_file() and (run / "metrics.json").is_file():
            continue
        init = str(previous[k] / "model.pt") if config.finetune and previous else None
        log(f"round {r}: training member {k + 1}/{config.members}" + (" (fine-tuning)" if init else ""))
        options = config.train_options(str(run), str(data), str(split), config.seed * config.members + k, init)
        try:
            train(options)
        except CheckpointError as exc:
            # an unfinished run whose checkpoint no longer fits (the round's dataset was rebuilt by another
            # version of the package, or the checkpoint is damaged): keep it aside and train afresh
            stale = run.with_name(f"{run.name}.stale-{time.strftime('%Y%m%d-%H%M%S')}")
            run.rename(stale)
            log(f"round {r}: member {k + 1} cannot resume ({exc}); moved to {stale.name}, training afresh")
            train(options)


def _load_models(out: Path, r: int, members: int) -> Any:
    from ..model.ensemble import DOSEnsemble
    from ..model.files import load_model_file

    models = [load_model_file(run / "model.pt")[0] for run in _member_runs(out, r, members)]
    return models[0] if len(models) == 1 else DOSEnsemble(models)


# ---------------------------------------------------------------------------- evaluation


def electron_quantities(
    pred: np.ndarray, true: np.ndarray, dft_gap: np.ndarray, gaps: Sequence[GapPrediction] | None = None
) -> dict[str, Any]:
    """Band gap and metal/insulator figures of a model on crystals with DFT gaps (:func:`~..electronic.gap_report`).

    ``pred`` / ``true``: predicted and label spectra; ``dft_gap``: the DFT eigenvalue gaps (eV; NaN where
    unknown, left out); ``gaps``: the model's :func:`~ase_dostransformer.electronic.predict_gap` results
    when it has a gap head (then the headline figures are the head's), else the gap is read off ``pred``.
    A crystal is a metal when its DFT gap is below :data:`~ase_dostransformer.electronic.METAL_GAP`.
    The headline keys (``gap_mae_eV`` on the gapped crystals, ``metal_insulator_accuracy``,
    ``metal_insulator_balanced_accuracy``, ``majority_baseline_accuracy``, ``metals_given_unflagged_gap``,
    ``metals_dos_at_fermi_positive``, ``gap_within_90_interval``) come with ``gap_source`` (``"head"`` or
    ``"dos"``) and ``gap_report``: every figure of the head, of the DOS read of the predictions and of the
    DOS read of the labels (the floor of any DOS-read estimate).
    """
    from ..electronic import gap_report

    report = gap_report(pred, true, dft_gap, gaps)
    main = report["head"] if report["head"] is not None else report["from_dos"]
    keys = QUANTITY_KEYS
    return {
        "gap_source": "dos" if gaps is None else "head",
        "n_gap": main["n_known"],
        "n_metals": main["n_metals"],
        **{k: main[k] for k in keys},
        "gap_report": report,
    }


def _evaluate(model: Any, ds: Any, train_ids: list[str], test_ids: list[str]) -> dict[str, Any]:
    """Test metrics of ``model`` on ``test_ids`` of ``ds``, its graphs made with the model's own recipe."""
    from ..batching import predict_graphs
    from ..electronic import band_gap_targets, has_gap_head, predict_gap
    from ..io.electron_dataset import edos_graphs
    from ..training.metrics import mean_spectrum_baseline, spectrum_metrics

    index = {mid: i for i, mid in enumerate(ds.ids)}
    graphs = edos_graphs(ds, model.graph_recipe)
    test = [index[i] for i in test_ids]
    true = ds.dos[test].astype(np.float64)
    test_graphs = [graphs[i] for i in test]
    pred = predict_graphs(model, test_graphs)
    train_y = ds.dos[[index[i] for i in train_ids]]
    gap = band_gap_targets([ds.rows[i] for i in test])
    head = predict_gap(model, test_graphs) if has_gap_head(model) else None
    return {
        "test": spectrum_metrics(pred, true),
        "test_mean_baseline": spectrum_metrics(mean_spectrum_baseline(train_y, len(test)), true),
        **electron_quantities(pred, true, gap, head),
    }


# ------------------------------------------------------------------------------- selection


def _select(
    config: LoopConfig, out: Path, r: int, pool: Pool, graphs: list, state: dict, k: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """Round ``r``'s batch from the candidates left, with the models of round ``r - 1``."""
    taken = {i for rnd in state["rounds"] for i in rnd.get("selected", [])}
    left = [j for j, mid in enumerate(pool.ids) if mid not in taken]
    if config.acquisition == "random":
        sel = random_batch(len(left), k, config.seed, r)
        extra: dict[str, Any] = {}
    else:
        from ..batching import predict_graphs_members
        from ..io.electron_dataset import edos_graphs, load_edos_dataset

        model = _load_models(out, r - 1, config.members)
        outputs = predict_graphs_members(model, [graphs[j] for j in left])
        u = relative_spread(outputs.members)
        ds = load_edos_dataset(_round_dir(out, r - 1) / "data")
        train_ids = set(json.loads((_round_dir(out, r - 1) / "split.json").read_text())["train"])
        ds_graphs = edos_graphs(ds, model.graph_recipe)
        labelled = predict_graphs_members(
            model, [g for g, mid in zip(ds_graphs, ds.ids, strict=True) if mid in train_ids]
        )
        ref = labelled.representation
        sel = diverse_uncertain(
            u, standardise(outputs.representation, ref), k, standardise(ref, ref), config.candidate_factor
        )
        extra = {"pool_uncertainty_mean": float(u.mean()), "pool_uncertainty_max": float(u.max())}
    ids = [pool.ids[left[j]] for j in sel.indices]
    picks = [
        {"id": mid, "uncertainty": _finite(u_), "distance": _finite(d), "score": _finite(s)}
        for mid, u_, d, s in zip(ids, sel.uncertainty, sel.distance, sel.score, strict=True)
    ]
    log(f"round {r}: selected {len(ids)} of {len(left)} candidates ({config.acquisition})")
    return {"round": r, "selected": ids, "selection": picks, **extra}


# ------------------------------------------------------------------------------------ loop


class _Run:
    """One call of :func:`run_loop`: the state, the pool (loaded when first needed) and the curve."""

    def __init__(self, config: LoopConfig, labeller: Labeller, log: Callable[[str], None]) -> None:
        self.config, self.labeller, self.log = config, labeller, log
        self.out = Path(config.out)
        self.state = _load_state(self.out, config)
        path = self.out / CURVE_FILE
        self.curve: list[dict[str, Any]] = json.loads(path.read_text())["rows"] if path.is_file() else []
        self._pool: tuple[Pool, list] | None = None

    def pool(self) -> tuple[Pool, list]:
        """The frozen pool and its graphs."""
        if self._pool is None:
            self._pool = _pool(self.config, self.out, self.state, self.log)
        return self._pool

    def save(self) -> None:
        """Write the state file (atomically)."""
        _save_state(self.out, self.state)

    def run(self) -> LoopResult:
        """Every round not done yet, until the budget is spent or the pool is empty."""
        rounds_run, r = 0, 0
        while True:
            rnd = self.state["rounds"][r] if r < len(self.state["rounds"]) else None
            if rnd is not None and rnd.get("done"):
                r += 1
                continue
            t0 = time.time()
            if r > 0 and rnd is None:
                rnd = self.select(r)
                if rnd is None:
                    break
            if r > 0 and "labelled" not in rnd:
                self.label(r, rnd)
            self.finish(r, t0)
            rounds_run += 1
            r += 1
        self.log(f"done: {len(self.curve)} rounds, {_spent(self.state)} of the budget of {self.config.budget} spent")
        return LoopResult(rounds_run, _spent(self.state), self.curve)

    def select(self, r: int) -> dict[str, Any] | None:
        """Choose and record round ``r``'s batch; None when the budget is spent or the pool is empty."""
        spent = _spent(self.state)
        if spent >= self.config.budget:
            return None
        pool, graphs = self.pool()
        k = max(0, min(self.config.batch, self.config.budget - spent, len(pool) - spent))
        if k == 0:
            return None
        rnd = _select(self.config, self.out, r, pool, graphs, self.state, k, self.log)
        self.state["rounds"].append(rnd)
        self.save()
        return rnd

    def label(self, r: int, rnd: dict[str, Any]) -> None:
        """Label round ``r``'s batch (what was labelled before a kill is not redone) and record the outcome."""
        items = self.pool()[0].by_id()
        report = self.labeller.label([items[i] for i in rnd["selected"]], self.out / "labels")
        labelled = set(report.labelled)
        rnd["labelled"] = [i for i in rnd["selected"] if i in labelled]
        rnd["failed"] = report.failures
        rnd["labeller"] = getattr(self.labeller, "name", type(self.labeller).__name__)
        self.save()
        self.log(f"round {r}: {len(rnd['labelled'])} labelled, {len(rnd['failed'])} failed")

    def finish(self, r: int, t0: float) -> None:
        """Build round ``r``'s dataset, train its members, evaluate them and add its row to the curve."""
        from ..graphs.foundation import recipe_for_embedder

        config, state = self.config, self.state
        acquired = [i for x in state["rounds"][1 : r + 1] for i in x.get("labelled", [])]
        ds, skipped = _build(config, self.out, r, acquired, self.log)
        if r == 0:
            state["split"] = _fixed_split(config, ds.ids)
            # the loop's graph recipe: the one its members train on (the electron kind's rule)
            state["recipe"] = recipe_for_embedder(ds.recipe, config.embedder).to_dict()
            state["rounds"] = [{"round": 0, "selected": []}]
            self.save()
        rnd, split = state["rounds"][r], state["split"]
        present = set(ds.ids)
        unusable = {i: skipped.get(i, "not in the built dataset") for i in acquired if i not in present}
        train_ids = [*split["train"], *(i for i in acquired if i in present and i not in split["train"])]
        parts = {"train": train_ids, "valid": split["valid"], "test": split["test"]}
        _write_json(_round_dir(self.out, r) / "split.json", parts)
        _train_members(config, self.out, r, self.log)
        metrics = _evaluate(_load_models(self.out, r, config.members), ds, train_ids, split["test"])
        failed = {i for x in state["rounds"][1 : r + 1] for i in x.get("failed", {})}
        row = {
            "round": r,
            "n_labels": len(train_ids),
            "n_acquired": len(train_ids) - len(split["train"]),
            "n_selected": len(rnd["selected"]),
            "spent": _spent(state),
            "n_failed": len(failed) + len(unusable),
            "n_test": len(split["test"]),
            **metrics,
            **{k: rnd[k] for k in ("pool_uncertainty_mean", "pool_uncertainty_max") if k in rnd},
            "seconds": round(time.time() - t0, 1),
        }
        self.curve = [x for x in self.curve if x["round"] != r] + [row]
        _write_json(self.out / CURVE_FILE, {"acquisition": config.acquisition, "seed": config.seed, "rows": self.curve})
        rnd["unusable"] = unusable
        rnd["done"] = True
        self.save()
        m = row["test"]
        self.log(
            f"round {r}: {row['n_labels']} labels, test MSE x10 {m['mse_x10']:.4f} MAE {m['mae']:.4f} "
            f"R^2 {m['r2']:.3f}, gap MAE {_fmt(row['gap_mae_eV'], '.2f')} eV, metal/insulator balanced "
            f"accuracy {_fmt(row['metal_insulator_balanced_accuracy'], '.2f')}"
        )


def run_loop(config: LoopConfig, labeller: Labeller, log: Callable[[str], None] | None = None) -> LoopResult:
    """Run (or continue) the loop of ``config`` with ``labeller``; see the module docstring."""
    with lock_folder(config.out, "dostransformer active"):
        return _Run(config, labeller, log or (lambda msg: print(msg, flush=True))).run()


def load_curve(out: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a loop's ``learning_curve.json``."""
    return json.loads((Path(out) / CURVE_FILE).read_text(encoding="utf-8"))["rows"]
