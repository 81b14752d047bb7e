"""The Lightning module: loss, optimiser, validation metrics of a DOSTransformer."""

from __future__ import annotations

import math
from typing import Any, cast

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DatasetError, NonFiniteLossError
from ..kinds import get_kind
from ..model import ModelConfig, build_model
from ..model.gap import gap_parameters
from .metrics import dostransformer_loss, spectrum_metrics

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def gap_loss_terms(raw: torch.Tensor, target: torch.Tensor, pos_weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(BCE, NLL)`` of a gap head's raw ``(B, 3)`` outputs against DFT gaps ``(B,)`` (eV, NaN unknown).

    BCE: the metal logit against ``gap < METAL_GAP`` (:data:`ase_dostransformer.electronic.METAL_GAP`),
    metals weighted by ``pos_weight``, averaged over the crystals with a known gap. NLL: the Gaussian
    negative log-likelihood of the gap under the head's mean and standard deviation, averaged over the
    insulators. A term with no crystal to average over is 0 (and has no gradient).
    """
    from ..electronic import METAL_GAP

    logit, mean, log_std = gap_parameters(raw.float())
    target = target.view(-1).to(logit.dtype)
    known = torch.isfinite(target)
    safe = torch.where(known, target, torch.zeros_like(target))
    metal = (safe < METAL_GAP).to(logit.dtype)
    weight = torch.tensor(float(pos_weight), dtype=logit.dtype, device=logit.device)
    bce_each = F.binary_cross_entropy_with_logits(logit, metal, pos_weight=weight, reduction="none")
    k = known.to(logit.dtype)
    bce = (bce_each * k).sum() / k.sum().clamp_min(1.0)
    insulator = k * (1.0 - metal)
    nll_each = 0.5 * ((safe - mean) / log_std.exp()) ** 2 + log_std + _LOG_SQRT_2PI
    nll = (nll_each * insulator).sum() / insulator.sum().clamp_min(1.0)
    return bce, nll


#: Added to both heat capacities (per mode, k_B) before their log ratio: below it (stiff crystals at 20 K,
#: where the teacher's 40 A mesh resolves little) a ratio is not worth learning.
THERMO_CV_FLOOR = 2e-3
#: Pairs of one family whose volumes differ by less than this (in ln V) are not compared.
MIN_PAIR_STRAIN = 0.005


def volume_response_error(mean_cm1: torch.Tensor, batch: Any) -> torch.Tensor:
    """Mean over the batch's same-family teacher pairs of ``|gamma_model - gamma_teacher|``; 0 without pairs.

    ``gamma = -(ln<omega>_i - ln<omega>_j) / (ln V_i - ln V_j)`` of two members ``i, j`` of a family
    (``batch.t_family``), from the model's mean frequencies ``mean_cm1`` (B,) and the teacher's
    (``batch.t_mean``), with the volumes per atom of the graphs.
    """
    family = batch.t_family.view(-1)
    tea = batch.has_teacher.view(-1)
    log_v = torch.log(batch.volume_per_atom.view(-1).to(mean_cm1.dtype))
    same = (family[:, None] == family[None, :]) & tea[:, None] & tea[None, :] & (family[:, None] >= 0)
    dv = log_v[:, None] - log_v[None, :]
    pairs = torch.triu(same & (dv.abs() > MIN_PAIR_STRAIN), diagonal=1)
    if not bool(pairs.any()):
        return mean_cm1.new_zeros(())
    lm = torch.log(mean_cm1.clamp_min(1e-3))
    lt = torch.log(batch.t_mean.view(-1).to(mean_cm1.dtype).clamp_min(1e-3))
    safe_dv = dv.masked_fill(~pairs, 1.0)
    gamma_model = -(lm[:, None] - lm[None, :]) / safe_dv
    gamma_teacher = -(lt[:, None] - lt[None, :]) / safe_dv
    return (gamma_model - gamma_teacher).abs()[pairs].mean()


class DOSTransformerModule(L.LightningModule):
    """Trains ``DOSTransformer`` with ``RMSE_global + beta * RMSE_system`` under AdamW.

    Validation reports the paper's per-spectrum metrics of the system branch
    (``val_mse``, ``val_mae``, ``val_r2``) and selects models on ``val_mse``.

    A model with a gap head (electron, ``ModelConfig.gap_head``) adds ``gap_weight x (BCE + NLL)``
    (:func:`gap_loss_terms`; ``gap_pos_weight`` weighs the metals) and logs ``train_gap_loss``,
    ``val_gap_mae`` (eV, the reported gap on the validation crystals with a DFT gap: 0 for those called
    metals) and ``val_metal_balanced_accuracy``; the graphs must carry ``band_gap`` (set by the electron
    kind's ``training_set``).
    """

    def __init__(
        self,
        config: dict[str, Any],
        lr: float = 1e-4,
        weight_decay: float = 1e-2,
        beta: float = 1.0,
        scheduler: str = "cosine",
        warmup_epochs: int = 5,
        max_epochs: int = 500,
        prompt_only: bool = False,
        gap_weight: float = 0.1,
        gap_pos_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = build_model(ModelConfig.from_dict(config))
        if prompt_only:
            keep = {id(p) for p in self.model.prompt_parameters()}
            for p in self.model.parameters():
                p.requires_grad_(id(p) in keep)
        self._val: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._val_gap: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._gap_weight, self._gap_pos_weight = float(gap_weight), float(gap_pos_weight)

    def _gap_target(self, batch: Any) -> torch.Tensor:
        target = getattr(batch, "band_gap", None)
        if target is None:
            raise DatasetError("a model with a gap head trains on graphs that carry band_gap (electron datasets)")
        return target.view(-1)

    def forward(self, batch: Any) -> dict[str, torch.Tensor]:
        """The model's clamped spectra of both branches."""
        return self.model(batch)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """The loss of one batch; a non-finite loss raises :class:`NonFiniteLossError`."""
        out, raw_gap = self.model.spectra_and_gap(batch, raw=True)
        loss = dostransformer_loss(out, batch.y, self.hparams.beta)
        if raw_gap is not None:
            bce, nll = gap_loss_terms(raw_gap, self._gap_target(batch), self._gap_pos_weight)
            gap_loss = bce + nll
            self.log(
                "train_gap_loss", gap_loss, batch_size=batch.num_graphs, on_step=False, on_epoch=True, sync_dist=True
            )
            loss = loss + self._gap_weight * gap_loss
        return self._checked_and_logged(loss, batch, batch_idx)

    def _checked_and_logged(self, loss: torch.Tensor, batch: Any, batch_idx: int) -> torch.Tensor:
        """``loss``, logged as ``train_loss``; :class:`NonFiniteLossError` when it is not finite."""
        if not torch.isfinite(loss):  # one sync per step: cheap next to the model, unlike detect_anomaly
            raise NonFiniteLossError(
                f"the training loss is {float(loss.detach())} at epoch {self.current_epoch}, step {self.global_step} "
                f"(batch {batch_idx}): lower --lr, or check the targets; training stopped"
            )
        self.log("train_loss", loss, batch_size=batch.num_graphs, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Keep the batch's system-branch predictions and targets (and gap outputs) for the epoch's metrics."""
        out, raw_gap = self.model.spectra_and_gap(batch, branches=("system",))
        self._val.append((out["system"].detach().float().cpu(), batch.y.detach().float().cpu()))
        if raw_gap is not None:
            self._val_gap.append((raw_gap.detach().float().cpu(), self._gap_target(batch).detach().float().cpu()))

    def on_validation_epoch_end(self) -> None:
        """Log ``val_mse``, ``val_mae`` and ``val_r2`` over the whole validation set (gathered from every rank)."""
        if not self._val:
            return
        pred = torch.cat([p for p, _ in self._val])
        true = torch.cat([t for _, t in self._val])
        self._val.clear()
        if self.trainer.world_size > 1:  # every rank sees its shard: gather all of them
            pred = self.all_gather(pred.to(self.device)).reshape(-1, pred.shape[-1]).cpu()
            true = self.all_gather(true.to(self.device)).reshape(-1, true.shape[-1]).cpu()
        m = spectrum_metrics(pred.numpy(), true.numpy())
        for k in ("mse", "mae", "r2"):
            self.log(f"val_{k}", m[k], prog_bar=k != "mae", rank_zero_only=False)
        if self._val_gap:
            self._log_gap_metrics()

    def _log_gap_metrics(self) -> None:
        """``val_gap_mae`` and ``val_metal_balanced_accuracy`` of the gathered gap outputs (NaN when undefined).

        The figures of :func:`~ase_dostransformer.electronic.gap_metrics` (the rules users get, without the
        DOS-based flag and the calibration factor, which neither figure reads).
        """
        from ..electronic import gap_metrics, gap_prediction

        raw = torch.cat([r for r, _ in self._val_gap])
        gap = torch.cat([t for _, t in self._val_gap])
        self._val_gap.clear()
        if self.trainer.world_size > 1:
            raw = cast(torch.Tensor, self.all_gather(raw.to(self.device))).reshape(-1, 3).cpu()
            gap = cast(torch.Tensor, self.all_gather(gap.to(self.device))).reshape(-1).cpu()
        logit, mean, log_std = gap_parameters(raw.float())
        values = [t.double().numpy() for t in (torch.sigmoid(logit), mean, log_std.exp())]
        mae = balanced = None
        if all(np.isfinite(v).all() for v in values):
            metrics = gap_metrics(gap.numpy(), [gap_prediction(*v) for v in zip(*values, strict=True)])
            mae, balanced = metrics["gap_mae_eV"], metrics["metal_insulator_balanced_accuracy"]
        self.log("val_gap_mae", float("nan") if mae is None else mae, rank_zero_only=False)
        self.log("val_metal_balanced_accuracy", float("nan") if balanced is None else balanced, rank_zero_only=False)

    def configure_optimizers(self) -> Any:
        """AdamW on the trainable parameters, with the configured learning-rate schedule."""
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.scheduler == "none":
            return opt
        warm, total = self.hparams.warmup_epochs, max(self.hparams.max_epochs, 1)

        def factor(epoch: int) -> float:
            if epoch < warm:
                return (epoch + 1) / (warm + 1)
            progress = (epoch - warm) / max(total - warm, 1)
            return float(0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * min(progress, 1.0))))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


class PhysicalDOSModule(DOSTransformerModule):
    """Trains a physical phonon model (``output="physical"``) on DFT and teacher targets at once.

    Per crystal, averaged over the batch (every crystal counts once, whatever its sources):

    - DFT target (``has_dft``): the DOS at the dataset's 51 frequencies, divided by its maximum,
      against ``y``: ``RMSE_global + beta * RMSE_system`` as the seed's loss;
    - teacher target (``has_teacher``, :mod:`.teacher_data`), times ``teacher_weight``: the RMSE of
      ``p(omega) * omega_top`` on the target's frequencies, divided by the target's maximum (both
      branches, ``beta`` as above), plus ``mean_weight * |log <omega>_model - log <omega>_teacher|``,
      which pins the frequency scale (and so its response to volume) more tightly than the shape does;
    - per batch, times ``pair_weight``: for every two teacher crystals of one family (a crystal and its
      strained copies, ``t_family``, batched together by :class:`~.data_module.FamilySampler`), the
      error of the Grueneisen parameter of the mean frequency, ``-d ln<omega> / d ln V``, model against
      teacher, averaged over the pairs (:func:`volume_response_error`). The absolute frequency scale
      errs by a few % per crystal, as much as a 3% strain moves it; the difference within a family
      does not carry that error. By default (``pair_through="head"``) only the frequency-scale head learns
      from it (the material vector and the shape are detached there); ``"network"`` lets it through to
      every part: at weight 0.3 that brought the Grueneisen error of 13 crystals from 0.50 to 0.14 but
      raised the DFT validation MSE by 40%;
    - per teacher crystal, averaged over the batch, times ``thermo_weight`` (not ``teacher_weight``): the mean
      ``|log ratio|`` of Cv(20 K) and Cv(50 K) (each plus :data:`THERMO_CV_FLOOR`) and of S(300 K), model
      against the teacher's phonopy mode sums (``t_thermo``): what users compute from the DOS, and the
      low-frequency amplitude that the smoothed spectra blur.

    Validation: the paper's metrics on the DFT crystals (``val_mse``, selects the model) and the
    teacher loss of the validation crystals the teacher labelled (``val_teacher``).
    """

    def __init__(
        self,
        config: dict[str, Any],
        teacher_weight: float = 1.0,
        mean_weight: float = 5.0,
        pair_weight: float = 0.0,
        thermo_weight: float = 0.0,
        pair_through: str = "head",
        **kw: Any,
    ) -> None:
        super().__init__(config, **kw)
        self.save_hyperparameters()
        # the DFT labels' grid (the phonon kind's 51 points), where the DFT loss compares
        labels = get_kind("phonon").grid.values
        self.register_buffer("dataset_cm1", torch.as_tensor(labels, dtype=torch.float32), persistent=False)
        self._val_teacher: list[torch.Tensor] = []

    def _losses(
        self, batch: Any, branches: tuple[str, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """``(DFT loss (B,), teacher loss (B,), {branch: 51-point max-normalised DOS}, batch terms ())``.

        The per-crystal losses are 0 where a target is absent; the batch terms are the weighted
        thermodynamic and volume-response terms (0 with ``thermo_weight`` and ``pair_weight`` 0).
        """
        from .teacher_data import TEACHER_POINTS, TEACHER_SPAN

        model = self.model
        f, omega_max, material = model.heads_with_material(batch, branches)
        b = omega_max.shape[0]
        weights = {"global": 1.0, "system": float(self.hparams.beta)}
        dft = batch.has_dft.view(-1).to(omega_max.dtype)
        tea = batch.has_teacher.view(-1).to(omega_max.dtype)
        top = batch.t_top.view(-1).to(omega_max.dtype)
        freqs = (
            torch.linspace(0.0, TEACHER_SPAN, TEACHER_POINTS, device=top.device, dtype=top.dtype)[None] * top[:, None]
        )
        target = batch.t_dos.view(b, -1).to(omega_max.dtype)
        scale = target.amax(dim=-1).clamp_min(1e-6)
        loss_dft = torch.zeros(b, device=omega_max.device, dtype=omega_max.dtype)
        loss_t = torch.zeros_like(loss_dft)
        on_grid = {}
        # both targets' frequencies in one evaluation: the normalisation integral is computed once per branch
        n_dft = self.dataset_cm1.numel()
        both = torch.cat([self.dataset_cm1.to(freqs).expand(b, -1), freqs], dim=1)
        for name, fb in f.items():
            p_both = model.density(fb, omega_max, both)
            p, q = p_both[:, :n_dft], p_both[:, n_dft:] * top[:, None]
            pred = p / p.amax(dim=-1, keepdim=True).clamp_min(1e-12)
            on_grid[name] = pred
            rmse_dft = torch.sqrt(((pred - batch.y.view(b, -1)) ** 2).mean(dim=-1) + 1e-12)
            rmse_t = torch.sqrt(((q - target) ** 2).mean(dim=-1) + 1e-12) / scale
            loss_dft = loss_dft + weights[name] * dft * rmse_dft
            loss_t = loss_t + weights[name] * tea * rmse_t
        mean = model.mean_frequency(next(iter(f.values())), omega_max)
        log_err = torch.abs(torch.log(mean.clamp_min(1e-3)) - torch.log(batch.t_mean.view(-1).clamp_min(1e-3)))
        loss_t = loss_t + self.hparams.mean_weight * tea * log_err
        extra = loss_dft.new_zeros(())  # the batch-level terms, weighted
        if self.hparams.get("thermo_weight", 0.0) > 0:
            from .teacher_data import THERMO_CV_TEMPERATURES, THERMO_S_TEMPERATURE

            first = next(iter(f.values()))
            thermo = model.mode_thermodynamics(first, omega_max, THERMO_CV_TEMPERATURES, THERMO_S_TEMPERATURE)
            floor = torch.tensor([THERMO_CV_FLOOR] * len(THERMO_CV_TEMPERATURES) + [0.0], device=thermo.device)
            target = batch.t_thermo.view(b, -1).to(thermo.dtype)
            err = torch.abs(torch.log((thermo + floor).clamp_min(1e-9) / (target + floor).clamp_min(1e-9)))
            extra = extra + self.hparams.thermo_weight * (tea * err.mean(dim=-1)).mean()
        if self.hparams.get("pair_weight", 0.0) > 0:
            # "head": the frequency-scale head alone learns the volume response (material vector and shape
            # detached); "network": every part does
            whole = self.hparams.get("pair_through", "head") == "network"
            omega_pair = omega_max if whole else model.omega_max(batch, material.detach())
            for name, fb in f.items():
                shape = fb if whole else fb.detach()
                pair = volume_response_error(model.mean_frequency(shape, omega_pair), batch)
                extra = extra + self.hparams.pair_weight * weights[name] * pair
        return loss_dft, loss_t, on_grid, extra

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        """The mean per-crystal loss plus the batch terms; a non-finite loss raises :class:`NonFiniteLossError`."""
        loss_dft, loss_t, _, extra = self._losses(batch, ("global", "system"))
        loss = (loss_dft + self.hparams.teacher_weight * loss_t).mean() + extra
        return self._checked_and_logged(loss, batch, batch_idx)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Keep the DFT crystals' 51-point predictions and targets, and the teacher loss of the others."""
        with torch.no_grad():
            _, loss_t, on_grid, _ = self._losses(batch, ("system",))
        dft = batch.has_dft.view(-1)
        y = batch.y.view(batch.num_graphs, -1)[dft]
        self._val.append((on_grid["system"][dft].detach().float().cpu(), y.float().cpu()))
        self._val_teacher.append(loss_t[batch.has_teacher.view(-1)].detach().float().cpu())

    def on_validation_epoch_end(self) -> None:
        """Log the DFT metrics (:class:`DOSTransformerModule`) and ``val_teacher``."""
        super().on_validation_epoch_end()
        if self._val_teacher:
            t = torch.cat(self._val_teacher)
            self._val_teacher.clear()
            if len(t):
                self.log("val_teacher", float(t.mean()), rank_zero_only=False)
