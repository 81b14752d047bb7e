"""An ensemble of DOSTransformers trained with different seeds: the mean of their spectra.

It quacks like one :class:`DOSTransformer` (``cfg``, ``seen_systems``, ``forward``) so the
calculator, the batch API and ``evaluate`` take it unchanged, and saves into one model file.
:meth:`DOSEnsemble.spread` (and :func:`member_outputs` for any model) gives, from the same single
pass, the members' spectra and each crystal's learned representation, which the uncertainty and the
domain score (:mod:`.uncertainty`) are made of, and (electron models with a gap head) each member's
raw gap outputs, which :func:`ase_dostransformer.electronic.predict_gap` combines.

Masses: an ensemble with a mass-scaled member builds its graphs with the atoms' own masses (isotopes), which
each mass-scaled member honours; a member that learnt each element's mass is given the standard masses
(:attr:`DOSEnsemble.standard_mass_members`, :func:`.masses.with_standard_masses`), as on its own, and the
prediction says it ignored them in part (:class:`~ase_dostransformer.errors.CustomMassesIgnoredWarning`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import nn
from torch_geometric.data import Batch

from ..errors import OptionError
from .config import ModelConfig
from .domain import DescribedModel
from .dostransformer import DOSTransformer
from .masses import with_standard_masses

__all__ = ["DOSEnsemble", "MemberOutputs", "member_outputs"]


@dataclass(frozen=True)
class MemberOutputs:
    """What each member of a model computed for a batch in one forward pass.

    ``spectra``: ``(n_members, B, L)`` system-branch spectra, unclamped (their mean, clamped at 0, is
    the model's prediction). ``representation``: ``(B, n_members * hidden)``, each member's mean-pooled
    atom embedding (the vector its material layer reads, before any global features), concatenated in
    member order. ``gap``: ``(n_members, B, 3)``, each member's raw gap-head outputs (:mod:`.gap`), when
    every member has a gap head; None otherwise.
    """

    spectra: torch.Tensor
    representation: torch.Tensor
    gap: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        """The model's prediction ``(B, L)``: the members' mean spectrum clamped at 0."""
        return self.spectra.mean(dim=0).clamp_min(0.0)


def _members(model: Any) -> list[DOSTransformer]:
    """The DOSTransformers that make up ``model`` (itself for a single model)."""
    return model.models if isinstance(model, DOSEnsemble) else [cast(DOSTransformer, model)]


def _member_inputs(model: Any, batch: Batch) -> list[tuple[DOSTransformer, Batch]]:
    """Each member of ``model`` with the batch it reads.

    ``batch`` itself, or for the members in :attr:`DOSEnsemble.standard_mass_members` the same graphs with
    the standard masses (made once, shared by them).
    """
    members = _members(model)
    standard = set(model.standard_mass_members) if isinstance(model, DOSEnsemble) else set()
    plain = with_standard_masses(batch) if standard else batch
    return [(m, plain if k in standard else batch) for k, m in enumerate(members)]


def member_outputs(model: Any, batch: Batch, energies: torch.Tensor | None = None) -> MemberOutputs:
    """Member spectra and pooled representations of a batch, from one forward pass of each member.

    ``model``: a :class:`DOSEnsemble` or a single :class:`DOSTransformer` (then ``n_members`` is 1).
    The representation is read off each member's material layer by a forward hook, so nothing is
    computed twice; the gap heads read the same vector. Each member reads the batch of :func:`_member_inputs`.
    """
    spectra, pooled, gaps = [], [], []
    inputs = _member_inputs(model, batch)
    with_gap = all(m.gap_head is not None for m, _ in inputs)
    for member, member_batch in inputs:
        seen: list[torch.Tensor] = []
        hidden = member.cfg.hidden
        handle = member.material.register_forward_hook(lambda _m, args, _out, seen=seen: seen.append(args[0]))
        try:
            spectra.append(member(member_batch, energies=energies, raw=True, branches=("system",))["system"])
        finally:
            handle.remove()
        pooled.append(seen[-1][:, :hidden])
        if with_gap and member.gap_head is not None:
            gaps.append(member.gap_head(seen[-1]))
    return MemberOutputs(torch.stack(spectra), torch.cat(pooled, dim=-1), torch.stack(gaps) if gaps else None)


def _check_compatible(cfg: ModelConfig, ref: ModelConfig, i: int) -> None:
    """Members must predict the same thing on the same grid from graphs of one recipe family."""
    if cfg.task != ref.task or cfg.grid != ref.grid:
        raise OptionError(f"ensemble member {i} has another config than the others (task or grid differ)")
    a, b = dict(cfg.recipe), dict(ref.recipe)
    a.pop("element_features", None)
    b.pop("element_features", None)
    if a != b or cfg.edge_dim != ref.edge_dim or cfg.node_dim > ref.node_dim:
        raise OptionError(f"ensemble member {i} has another config than the others (graph recipe differs)")


class DOSEnsemble(DescribedModel, nn.Module):
    """Average of several DOSTransformers (the mean is taken before the clamp).

    Members may differ in architecture and in whether their phonon nodes carry element
    descriptors (those columns follow the seed's one-hot, so the others read a prefix), and in whether
    they are mass-scaled. Its ``graph_recipe`` is the richest member's, taking the atoms' own masses
    when any member is mass-scaled: those members honour them, the others are given the standard masses
    (:attr:`standard_mass_members`). ``cfg.mass_scaling`` is True only when every member is mass-scaled
    (the whole ensemble honours the masses). ``training_domain`` comes from the ensemble file's meta.
    """

    def __init__(self, members: Sequence[DOSTransformer]) -> None:
        super().__init__()
        self._init_description()
        if len(members) < 2:
            raise OptionError(f"an ensemble needs at least 2 members, got {len(members)}")
        richest = max(members, key=lambda m: m.cfg.node_dim)
        for i, m in enumerate(members):
            _check_compatible(m.cfg, richest.cfg, i)
        self.members = nn.ModuleList(members)
        # graphs are built with the richest recipe; members of the seed recipe read its first columns
        self.cfg = richest.cfg
        if not all(m.cfg.mass_scaling for m in members):  # not every member honours the atoms' own masses
            self.cfg = replace(richest.cfg, mass_scaling=False)

    @property
    def standard_mass_members(self) -> tuple[int, ...]:
        """Positions of the members given the standard masses while the others honour the atoms' own.

        The members that are not mass-scaled, when at least one member is (the ensemble's graphs then carry
        the atoms' own masses); empty when every member or none is mass-scaled.
        """
        scaled = [m.cfg.mass_scaling for m in self.models]
        return tuple(k for k, s in enumerate(scaled) if not s) if any(scaled) else ()

    def _make_recipe(self) -> Any:
        """The richest member's recipe, taking the atoms' own masses when any member is mass-scaled."""
        recipe = super()._make_recipe()
        return replace(recipe, own_masses=True) if self.standard_mass_members else recipe

    @property
    def models(self) -> list[DOSTransformer]:
        """The members, typed (``members`` is the ``nn.ModuleList`` that registers them)."""
        return [cast(DOSTransformer, m) for m in self.members]  # __init__ takes DOSTransformers only

    @property
    def seen_systems(self) -> torch.Tensor:
        """Crystal systems any member saw in training."""
        return torch.stack([m.seen_systems for m in self.models]).any(dim=0)

    def forward(
        self,
        batch: Batch,
        energies: torch.Tensor | None = None,
        raw: bool = False,
        branches: tuple[str, ...] = ("global", "system"),
    ) -> dict[str, torch.Tensor]:
        """Mean of the members' spectra (the branches asked for), each from its batch of :func:`_member_inputs`."""
        outs = [m(b, energies=energies, raw=True, branches=branches) for m, b in _member_inputs(self, batch)]
        mean = {k: torch.stack([o[k] for o in outs]).mean(dim=0) for k in outs[0]}
        return mean if raw else {k: v.clamp_min(0.0) for k, v in mean.items()}

    def spread(self, batch: Batch, energies: torch.Tensor | None = None) -> MemberOutputs:
        """The members' system-branch spectra and pooled representations, in one pass (:func:`member_outputs`)."""
        return member_outputs(self, batch, energies)
