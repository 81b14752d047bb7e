"""``dostransformer train``: build graphs, fit on Lightning, keep the best model, report metrics."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint

from ..electronic import GAP_STD_SCALE_KEY, GapPrediction, calibrate_gap_std, has_gap_head, predict_gap_and_dos
from ..graphs.validation import graphs_shortest_bond, training_geometry
from ..io.atomic import atomic_write_text
from ..io.locks import lock_run_folder
from ..io.torch_files import safe_torch_load
from ..kinds import get_kind
from ..model import ModelConfig, save_model_file
from ..model.domain import TrainingDomain
from ..model.files import merge_training_domains, read_model_file
from .data_module import GraphDataModule
from .evaluate import evaluate_split, format_report
from .lightning_module import DOSTransformerModule, PhysicalDOSModule
from .options import TrainOptions
from .precision import resolve_precision
from .provenance import code_version
from .resume import (
    AtomicCheckpointIO,
    RNGStateCallback,
    RunIdentityCallback,
    check_resume_checkpoint,
    check_resume_identity,
    remove_stale_temporaries,
    run_identity,
)
from .tasks import describe_init, prepare_module, task_data


class EpochLog(Callback):
    """One line per validation: epoch, train loss, val metrics, elapsed seconds (rank 0 only)."""

    def __init__(self) -> None:
        self.t0 = time.time()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Print the line on rank 0 after an epoch that ran validation."""
        if trainer.global_rank != 0 or (trainer.current_epoch + 1) % trainer.check_val_every_n_epoch:
            return
        m = {k: float(v) for k, v in trainer.callback_metrics.items()}
        gap = (
            f"gap_loss {m['train_gap_loss']:.4f}  val_gap_mae {m.get('val_gap_mae', float('nan')):.3f}  "
            f"val_metal_bacc {m.get('val_metal_balanced_accuracy', float('nan')):.3f}  "
            if "train_gap_loss" in m
            else ""
        )
        print(
            f"epoch {trainer.current_epoch:4d}  train_loss {m.get('train_loss', float('nan')):.4f}  "
            f"val_mse_x10 {10 * m.get('val_mse', float('nan')):.4f}  val_mae {m.get('val_mae', float('nan')):.4f}  "
            f"val_r2 {m.get('val_r2', float('nan')):.4f}  {gap}{time.time() - self.t0:.0f}s",
            flush=True,
        )


def dataset_geometry(opts: TrainOptions, rows: Any, graphs: list) -> dict[str, list[float]]:
    """Shortest-bond and volume-per-atom ranges of the training crystals (rows ``rows`` of ``opts.data``).

    The run keeps graphs, not cells: the kind reads the structures again. When they cannot be read,
    the bond range comes from ``graphs`` alone. Rows past the dataset (teacher-only crystals of a
    physical model) widen both ranges from their graphs (shortest edge, ``volume_per_atom``).
    """
    try:
        structures = get_kind(opts.task).dataset_structures(opts.data)
        inside = [(int(i), g) for i, g in zip(rows, graphs, strict=True) if int(i) < len(structures)]
        geometry = training_geometry([structures[i] for i, _ in inside])
    except Exception:  # the run's graphs were made from it; a dataset moved away since still has them
        return graphs_shortest_bond(graphs)
    beyond = [g for i, g in zip(rows, graphs, strict=True) if int(i) >= len(structures)]
    extra = graphs_shortest_bond(beyond)
    volumes = [float(g.volume_per_atom) for g in beyond if getattr(g, "volume_per_atom", None) is not None]
    if volumes:
        extra["train_volume_per_atom"] = [min(volumes), max(volumes)]
    for key, (low, high) in extra.items():
        have = geometry.get(key, [low, high])
        geometry[key] = [min(have[0], low), max(have[1], high)]
    return geometry


def gap_std_calibration(
    model: Any, valid_graphs: list, init_from: str | None, predictions: list[GapPrediction] | None = None
) -> dict[str, Any]:
    """The meta entry of a gap head's std factor (empty for a model without a head), and a printed line.

    Fitted on the validation graphs (:func:`~ase_dostransformer.electronic.calibrate_gap_std`: 90% of
    their gaps inside +- 1.64 std; ``predictions``: the model's gap predictions of them, when already
    made); with too few gapped validation crystals (a few-shot split), a fine-tuned model keeps its
    starting file's factor, else it has none (factor 1).
    """
    if not has_gap_head(model):
        return {}
    scale = calibrate_gap_std(model, valid_graphs, predictions=predictions)
    if scale is not None:
        print(f"gap head: standard deviations x {scale:.3f}, fitted on the validation crystals", flush=True)
        return {GAP_STD_SCALE_KEY: scale}
    start = (read_model_file(init_from).get("meta") or {}).get(GAP_STD_SCALE_KEY) if init_from else None
    if start is not None:
        print(f"gap head: too few gapped validation crystals to fit on; the starting file's factor {start:.3f} is kept")
        return {GAP_STD_SCALE_KEY: float(start)}
    print("gap head: too few gapped validation crystals to calibrate the standard deviations (factor 1)", flush=True)
    return {}


def fine_tuned_domain(own: dict[str, Any], start_meta: dict[str, Any]) -> dict[str, Any]:
    """The training domain of a model fine-tuned from a file with meta ``start_meta``.

    The union of the run's own domain and the starting file's effective one (a shipped file without the
    geometry record gets its model's from ``pretrained/training_domain.json``, as at prediction time),
    over the keys the run measured itself: a key the run could not measure stays unknown rather than
    taking the starting file's narrower or wider range alone.
    """
    start = TrainingDomain.from_meta(start_meta).to_meta()
    merged = merge_training_domains([own, start], require_all=False)
    return {k: v for k, v in merged.items() if k in own}


def gap_settings(opts: TrainOptions, graphs: list, split: dict[str, np.ndarray]) -> dict[str, float]:
    """The gap head's loss settings; ``opts.gap_pos_weight`` from the training split when not given.

    Sets ``opts.gap_head`` (a model from ``--init_from`` may bring its head) and ``opts.gap_pos_weight``
    (insulators / metals of the training crystals with a known gap,
    :func:`~ase_dostransformer.electronic.metal_pos_weight`), so ``metrics.json`` and the resume check
    record what the run used.
    """
    from ..electronic import metal_pos_weight

    opts.gap_head = True
    if opts.gap_pos_weight is None:
        gaps = [float(getattr(graphs[i], "band_gap", torch.tensor([float("nan")]))[0]) for i in split["train"]]
        opts.gap_pos_weight = metal_pos_weight(gaps)
    return {"gap_weight": opts.gap_weight, "gap_pos_weight": opts.gap_pos_weight}


def train(opts: TrainOptions) -> dict[str, Any]:
    """Train a DOSTransformer of ``opts.task``; returns the report written to ``out/metrics.json``."""
    opts.validate()  # again: the options may have been changed since they were made
    if opts.threads:
        torch.set_num_threads(opts.threads)
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    _lock = lock_run_folder(out, "dostransformer train")  # noqa: F841  # held until train() returns; a 2nd run fails
    L.seed_everything(opts.seed, workers=True, verbose=False)
    data = task_data(opts)  # phonon or electron DOS; with --init_from, the starting model's architecture
    graphs, split, cfg = data.graphs, data.split, data.cfg
    module_type = PhysicalDOSModule if cfg.output == "physical" else DOSTransformerModule
    extra: dict[str, Any] = (
        {
            "teacher_weight": opts.teacher_weight,
            "mean_weight": opts.mean_weight,
            "pair_weight": opts.pair_weight,
            "pair_through": opts.pair_through,
            "thermo_weight": opts.thermo_weight,
        }
        if cfg.output == "physical"
        else {}
    )
    if cfg.gap_head:
        extra |= gap_settings(opts, graphs, split)
    module = module_type(
        cfg.to_dict(),
        **extra,
        lr=opts.lr,
        weight_decay=opts.weight_decay,
        beta=opts.beta,
        scheduler=opts.scheduler,
        warmup_epochs=opts.warmup_epochs,
        max_epochs=opts.epochs,
        prompt_only=opts.prompt_only,
    )
    prepare_module(module, opts, data)  # --init_from weights, crystal systems seen in training
    # the volume-response term needs a crystal's strained copies in one batch
    dm = GraphDataModule(graphs, split, batch_size=opts.batch_size, seed=opts.seed, families=opts.pair_weight > 0)
    ckpt_dir = out / "checkpoints"
    remove_stale_temporaries(ckpt_dir)
    best = ModelCheckpoint(
        dirpath=ckpt_dir,
        filename="best",
        monitor="val_mse",
        mode="min",
        save_top_k=1,
        enable_version_counter=False,
    )
    # last.ckpt after every training epoch, improved or not (Lightning's save_last writes it only with a new
    # best): a run killed on a plateau loses at most one epoch
    every_epoch = ModelCheckpoint(
        dirpath=ckpt_dir, filename="last", save_top_k=1, save_on_train_epoch_end=True, enable_version_counter=False
    )
    identity = run_identity(opts, data.sha256, split)
    callbacks: list[Callback] = [best, every_epoch, EpochLog(), RNGStateCallback(), RunIdentityCallback(identity)]
    if opts.es > 0:
        callbacks.append(EarlyStopping(monitor="val_mse", mode="min", patience=max(1, opts.es // opts.eval)))
    precision = resolve_precision(opts.precision, opts.accelerator)
    trainer = L.Trainer(
        max_epochs=opts.epochs,
        accelerator=opts.accelerator,
        devices=opts.devices,
        strategy=opts.strategy,
        num_nodes=opts.num_nodes,
        precision=precision,
        check_val_every_n_epoch=opts.eval,
        callbacks=callbacks,
        default_root_dir=str(out),
        logger=L.pytorch.loggers.CSVLogger(str(out), name="logs"),
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=opts.accelerator == "cpu",
        num_sanity_val_steps=0,
        plugins=[AtomicCheckpointIO()],
    )
    last = ckpt_dir / "last.ckpt"
    resume_from, resumed = None, {}
    if opts.resume and last.is_file():
        ckpt = check_resume_checkpoint(last, cfg.to_dict())  # damaged, or another model: refused
        check_resume_identity(ckpt, last, identity | {"world_size": int(trainer.world_size)})  # other data/options
        resume_from = str(last)
        resumed = {"resumed_after_epoch": int(ckpt["epoch"])}  # metrics.json says which epochs ran before
    t0 = time.time()
    trainer.fit(module, datamodule=dm, ckpt_path=resume_from, weights_only=True)  # never unpickle objects
    fit_seconds = time.time() - t0
    if trainer.global_rank != 0:
        return {}
    run_info = {
        "epochs_run": int(trainer.current_epoch),
        "fit_seconds": round(fit_seconds, 1),
        "world_size": trainer.world_size,
        "effective_batch_size": opts.batch_size * trainer.world_size,
        "precision": precision,
    }
    run_info.update(describe_init(opts))
    run_info.update(resumed)
    return export_run(opts, best.best_model_path or str(last), run_info, data.sha256, graphs, split)


def export_run(
    opts: TrainOptions,
    ckpt_path: str | os.PathLike,
    run_info: dict[str, Any],
    data_sha256: str,
    graphs: list,
    split: dict[str, np.ndarray],
) -> dict[str, Any]:
    """Evaluate the checkpoint, write ``model.pt`` and ``metrics.json`` into ``opts.out``."""
    out = Path(opts.out)
    ckpt = safe_torch_load(ckpt_path, "checkpoint")  # tensors and plain values only
    hparams = ckpt["hyper_parameters"]
    physical = ModelConfig.from_dict(hparams["config"]).output == "physical"
    module = (PhysicalDOSModule if physical else DOSTransformerModule)(**hparams)
    module.load_state_dict(ckpt["state_dict"])
    model = module.model.eval()
    valid_graphs = [graphs[i] for i in split.get("valid", ())]
    predicted: dict[str, np.ndarray] = {}
    valid_gaps = None
    if has_gap_head(model) and valid_graphs:  # one pass over the validation part: its metrics and the gap calibration
        valid_gaps, predicted["valid"] = predict_gap_and_dos(model, valid_graphs, device="cpu")
    report = evaluate_split(model, graphs, split, device="cpu", predicted=predicted)
    summary = {
        "command": " ".join(["dostransformer", *sys.argv[1:]])
        if sys.argv and "dostransformer" in sys.argv[0]
        else None,
        "options": dict(vars(opts)),
        "seed": opts.seed,
        "data_sha256": data_sha256,
        "split_sizes": {k: int(len(v)) for k, v in split.items()},
        "best_checkpoint": os.path.basename(str(ckpt_path)),
        "best_epoch": int(ckpt["epoch"]),
        "threads": torch.get_num_threads(),
        "code": code_version(),  # which code trained it (package version, git commit)
        **run_info,
        "metrics": report,
    }
    gap_calibration = gap_std_calibration(model, valid_graphs, opts.init_from, valid_gaps)
    summary.update(gap_calibration)
    meta_keys = ("seed", "data_sha256", "split_sizes", "best_epoch", "metrics", "options", "code")
    train_graphs = [graphs[i] for i in split["train"]]
    domain = {
        # what the model has seen: inputs outside it are flagged as out of domain at prediction time
        "train_elements": sorted({int(z) for g in train_graphs for z in g.z.tolist()}),
        "train_max_atoms": max(int(g.num_nodes) for g in train_graphs),
        # shortest bond and volume per atom: outside their training range a structure is flagged
        **dataset_geometry(opts, split["train"], train_graphs),
    }
    if opts.init_from:  # a fine-tuned model still carries what its starting weights saw
        domain = fine_tuned_domain(domain, read_model_file(opts.init_from).get("meta") or {})
    save_model_file(model, out / "model.pt", meta={k: summary[k] for k in meta_keys} | domain | gap_calibration)
    atomic_write_text(out / "metrics.json", json.dumps(summary, indent=2))
    print(format_report(report), flush=True)
    return summary
