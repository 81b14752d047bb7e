"""A phonon DOS with its physics built in: the head of the ``output="physical"`` DOSTransformer.

The DOSTransformer body is unchanged: energy tokens attend to the atoms, guided by the crystal-system
prompts. What changes is what its head means. The energy tokens sit on a *scaled* axis
``x = omega / omega_max`` (``cfg.scaled_points`` points on [0, 1]); a small head predicts the crystal's
frequency scale ``omega_max`` from the material vector and the volume per atom; the DOS is

    g(omega) = 3N * s(omega / omega_max) / (omega_max * Z),   s(x) = x^2 * softplus(f(x)) * taper(x),

where ``f`` is the attention head's output, linearly interpolated between the scaled points and held
at its value at ``x = 0.05`` below it (:data:`DEBYE_FRACTION`),
``Z = integral_0^1 s(x) dx`` and ``taper`` a half cosine from 1 at ``x = 0.9`` to 0 at ``x = 1``.
By construction:

- ``g(0) = 0`` and ``g = a omega^2`` exactly below 5% of ``omega_max`` (a Debye onset; with ``f = 0``
  the whole DOS is Debye's), whatever the weights;
- the integral is exactly 3N (``Z`` is computed on a fine scaled grid, and the exported file is scaled to
  3N on its own grid: :func:`~ase_dostransformer.spectra.phonon_dos_to_phonopy`);
- no fixed upper cut-off: the support ends at the predicted ``omega_max``, which can lie anywhere up to the
  top of the output grid (4000 cm^-1, :data:`~ase_dostransformer.spectra.WIDE_PHONON_GRID`);
- volume moves frequencies: ``log omega_max`` is a function of the material vector and of
  ``log(volume per atom)``, and the frozen foundation features themselves change with the bond lengths;
- with ``cfg.mass_scaling``, masses move frequencies exactly as ``m^-1/2``: ``omega_max`` carries the factor
  ``(m_h / MASS_REF)^(-1/2)`` of the harmonic-mean mass and the atoms see only their mass ratios
  (:mod:`.masses`), so an element never trained on still has the right mass.

The DOS can be evaluated at any frequencies (:meth:`PhysicalDOSTransformer.density`): training compares
it with teacher spectra on each crystal's own range and with the DFT labels' 51 points; ``forward``
gives it on the model's grid, divided by its maximum, like every other phonon model of the package.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.data import Batch

from ..errors import OptionError
from ..spectra import CM1_TO_THZ
from ..thermo import THZ_TO_KELVIN
from .config import ModelConfig
from .dostransformer import DOSTransformer
from .masses import MASS_REF, harmonic_mean_mass

__all__ = ["PhysicalDOSTransformer", "scaled_shape"]

#: ``omega_max`` (cm^-1) of an untrained head: about the highest mode of a typical crystal of the dataset.
OMEGA_SCALE_CM1 = 600.0
#: The range ``omega_max`` is kept in (cm^-1), smoothly (a sigmoid in log space): below, the DOS would
#: fall between the output grid's first points; above, past its top. The lightest crystals (LiH, diamond,
#: hydroxides) reach about 3500-4000 cm^-1 (the top of the output grid); heavy soft ones (Cs, Pb) about 50-100.
OMEGA_RANGE_CM1 = (20.0, 4000.0)
#: Sharpness (per unit of log omega) of the soft clamp of a mass-scaled frequency scale to OMEGA_RANGE_CM1.
CLAMP_SHARPNESS = 10.0
#: Volume per atom (A^3) about which ``log(V/N)`` enters the frequency-scale head.
VOLUME_SCALE = 15.0
#: Below this fraction of ``omega_max`` the DOS is exactly Debye's ``a omega^2`` (the head's ``f`` is held
#: constant there): the long-wavelength acoustic regime, a few % of the band for most crystals.
DEBYE_FRACTION = 0.05
#: Where the taper that brings the DOS to zero at ``omega_max`` starts (scaled axis).
TAPER_START = 0.9
#: Points of the scaled grid on which the normalisation integral ``Z`` is taken (trapezoid).
NORM_POINTS = 512
#: hc / k_B in cm K: x = HC_OVER_KB * omega[cm^-1] / T.
HC_OVER_KB = THZ_TO_KELVIN * CM1_TO_THZ
#: Largest x = h c omega / k_B T used (c(x) ~ x^2 e^-x is 3e-23 there); sinh beyond ~89 overflows float32,
#: and an infinite sinh gives a NaN gradient.
THERMO_X_MAX = 60.0
#: Points of the quadratic grid (dense at low frequency) of :meth:`PhysicalDOSTransformer.mode_thermodynamics`.
THERMO_POINTS = 257


def scaled_shape(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``s(x) = x^2 softplus(f(x)) taper(x)`` for head outputs ``f`` ``(B, K)`` at scaled positions ``x`` ``(B, M)``.

    ``f`` is interpolated linearly between its ``K`` points on [0, 1] and held constant below
    :data:`DEBYE_FRACTION`; ``s`` is 0 outside [0, 1].
    """
    k = f.shape[-1]
    xc = x.clamp(0.0, 1.0)
    pos = xc.clamp_min(DEBYE_FRACTION) * (k - 1)  # f held at its value at DEBYE_FRACTION below it: pure x^2
    i0 = pos.floor().long().clamp(max=k - 2)
    w = pos - i0.to(pos.dtype)
    fi = f.gather(-1, i0) * (1.0 - w) + f.gather(-1, i0 + 1) * w
    t = ((xc - TAPER_START) / (1.0 - TAPER_START)).clamp(0.0, 1.0)
    taper = 0.5 * (1.0 + torch.cos(math.pi * t))
    s = xc * xc * F.softplus(fi) * taper
    return torch.where((x >= 0.0) & (x < 1.0), s, torch.zeros_like(s))


class PhysicalDOSTransformer(DOSTransformer):
    """DOSTransformer whose head yields a physical phonon DOS (see the module docstring)."""

    def __init__(self, cfg: ModelConfig) -> None:
        if cfg.output != "physical":
            raise OptionError(f"PhysicalDOSTransformer needs cfg.output='physical', got {cfg.output!r}")
        super().__init__(cfg)
        d = cfg.hidden
        self.scale_head = nn.Sequential(nn.Linear(d + 1, d), nn.GELU(), nn.Linear(d, 1))
        nn.init.zeros_(self.scale_head[-1].weight)
        nn.init.zeros_(self.scale_head[-1].bias)
        self.register_buffer("scaled_axis", torch.linspace(0.0, 1.0, cfg.scaled_points), persistent=False)
        self.register_buffer("norm_axis", torch.linspace(0.0, 1.0, NORM_POINTS), persistent=False)
        grid = cfg.grid
        self.register_buffer(
            "grid_cm1", torch.linspace(float(grid.start), float(grid.stop), grid.npoints), persistent=False
        )

    def omega_max(self, batch: Batch, g: torch.Tensor) -> torch.Tensor:
        """The frequency scale ``(B,)`` in cm^-1 from the material vector and ``log(volume per atom)``."""
        volume = getattr(batch, "volume_per_atom", None)
        if volume is None:
            raise OptionError("a physical phonon model needs graphs made with the recipe's volume=True")
        # in float32 with autocast off: under bf16 the exponent (about 6.4) resolves only 0.03, 3% in omega_max
        with torch.autocast(device_type=g.device.type, enabled=False):
            g32 = g.float()
            lv = torch.log(volume.float().view(-1, 1) / VOLUME_SCALE)
            low, high = (math.log(w) for w in OMEGA_RANGE_CM1)
            h = self.scale_head(torch.cat([g32, lv], dim=-1)).squeeze(-1)
            if self.cfg.mass_scaling:
                # exact omega ~ m_h^-1/2 (model/masses.py), kept in the range by a soft clamp that is the
                # identity (slope > 0.99) from 1.6x the lower bound to 1/1.6 of the upper one
                u = h + math.log(OMEGA_SCALE_CM1) - 0.5 * torch.log(harmonic_mean_mass(batch) / MASS_REF)
                u = low + F.softplus(u - low, beta=CLAMP_SHARPNESS)
                return torch.exp(high - F.softplus(high - u, beta=CLAMP_SHARPNESS))
            start = (math.log(OMEGA_SCALE_CM1) - low) / (high - low)  # the untrained head's position in the range
            h = h + math.log(start / (1.0 - start))
            return torch.exp(low + (high - low) * torch.sigmoid(h))

    def heads(
        self, batch: Batch, branches: tuple[str, ...] = ("global", "system")
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """``({branch: f (B, K)}, omega_max (B,))``: the head's outputs on the scaled axis and the frequency scale."""
        f, omega_max, _ = self.heads_with_material(batch, branches)
        return f, omega_max

    def heads_with_material(
        self, batch: Batch, branches: tuple[str, ...] = ("global", "system")
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """:meth:`heads` and the material vector ``g`` (B, hidden) that the frequency scale was computed from."""
        g, atoms, mask = self.encode(batch)
        f = self.branch_outputs(batch, g, atoms, mask, self.energy(self.scaled_axis), branches)
        return f, self.omega_max(batch, g), g

    def density(self, f: torch.Tensor, omega_max: torch.Tensor, freqs_cm1: torch.Tensor) -> torch.Tensor:
        """DOS per cm^-1 normalised to 1 (times 3N: states per cm^-1 per cell) at ``freqs_cm1`` (B, M) or (M,)."""
        with torch.autocast(device_type=f.device.type, enabled=False):  # float32, as omega_max
            f, omega_max = f.float(), omega_max.float()
            freqs = freqs_cm1.float() if freqs_cm1.dim() == 2 else freqs_cm1.float().expand(f.shape[0], -1)
            s = scaled_shape(f, freqs / omega_max[:, None])
            return s / (self.norm(f) * omega_max)[:, None]

    def norm(self, f: torch.Tensor) -> torch.Tensor:
        """``Z = integral_0^1 s(x) dx`` per crystal ``(B,)`` (trapezoid on :data:`NORM_POINTS` points)."""
        x = self.norm_axis.to(f.dtype).expand(f.shape[0], -1)
        return torch.trapezoid(scaled_shape(f, x), x, dim=-1)

    def mean_frequency(self, f: torch.Tensor, omega_max: torch.Tensor) -> torch.Tensor:
        """The first moment of the DOS ``(B,)`` in cm^-1."""
        x = self.norm_axis.to(f.dtype).expand(f.shape[0], -1)
        s = scaled_shape(f, x)
        return omega_max * torch.trapezoid(x * s, x, dim=-1) / torch.trapezoid(s, x, dim=-1)

    def mode_thermodynamics(
        self, f: torch.Tensor, omega_max: torch.Tensor, cv_temperatures: tuple[float, ...], s_temperature: float
    ) -> torch.Tensor:
        """``(B, len(cv_temperatures) + 1)``: harmonic Cv at each of ``cv_temperatures`` and S at ``s_temperature``.

        Per mode, in k_B (phonopy's mode sums divided by 3N k_B): ``integral p(omega) c(x) d omega`` with
        ``c = x^2 e^x / (e^x - 1)^2`` and ``s = x / (e^x - 1) - ln(1 - e^-x)``, ``x = h c omega / k_B T``, on
        the frequencies ``omega_max u^2`` (``u`` uniform on [0, 1]: dense where low temperatures look).
        Differentiable: the thermodynamic term of training compares them with the teacher's.
        """
        with torch.autocast(device_type=f.device.type, enabled=False):
            f, omega_max = f.float(), omega_max.float()
            u = torch.linspace(0.0, 1.0, THERMO_POINTS, device=f.device)
            freqs = omega_max[:, None] * u[None] ** 2
            p = self.density(f, omega_max, freqs)
            out = []
            for t in cv_temperatures:
                x = (HC_OVER_KB * freqs / t).clamp(1e-6, THERMO_X_MAX)
                c = (0.5 * x / torch.sinh(0.5 * x)) ** 2
                out.append(torch.trapezoid(p * c, freqs, dim=-1))
            x = (HC_OVER_KB * freqs / s_temperature).clamp(1e-6, THERMO_X_MAX)
            s_mode = x / torch.expm1(x) - torch.log(-torch.expm1(-x))
            out.append(torch.trapezoid(p * s_mode, freqs, dim=-1))
            return torch.stack(out, dim=-1)

    def forward(
        self,
        batch: Batch,
        energies: torch.Tensor | None = None,
        raw: bool = False,
        branches: tuple[str, ...] = ("global", "system"),
    ) -> dict[str, torch.Tensor]:
        """The DOS on the model's grid (or at ``energies``, positions 0..1 in its window), each divided by its maximum.

        ``raw`` is accepted for the interface; the output is non-negative by construction either way.
        """
        f, omega_max = self.heads(batch, branches)
        if energies is None:
            freqs = self.grid_cm1
        else:
            grid = self.cfg.grid
            freqs = float(grid.start) + energies.to(self.grid_cm1) * float(grid.stop - grid.start)
        out = {}
        for name, fb in f.items():
            p = self.density(fb, omega_max, freqs)
            out[name] = p / p.amax(dim=-1, keepdim=True).clamp_min(torch.finfo(p.dtype).tiny)
        return out
