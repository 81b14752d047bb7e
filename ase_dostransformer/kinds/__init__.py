"""The registry of DOS kinds: name -> :class:`~.base.DOSKind`.

``get_kind("phonon")`` and ``get_kind("electron")`` give the two shipped kinds; a legacy name
(``"edos"``, stored as ``task`` in model files written before the rename) maps to its kind. A new
kind is one module with a :class:`~.base.DOSKind` subclass plus one :func:`register_kind` call
(below, for a kind shipped with the package). Importing this package needs only NumPy.
"""

from __future__ import annotations

from ..errors import UnknownKindError
from .base import DOSKind, Finding, TrainingSet
from .electron import ElectronKind
from .phonon import PhononKind

__all__ = ["ALIASES", "KINDS", "DOSKind", "Finding", "TrainingSet", "get_kind", "kind_name", "register_kind"]

#: Registered kinds by name.
KINDS: dict[str, DOSKind] = {}
#: Other accepted names (legacy) -> registered name.
ALIASES: dict[str, str] = {}


def register_kind(kind: DOSKind, *, replace: bool = False) -> DOSKind:
    """Make ``kind`` (and its ``aliases``) known to :func:`get_kind`; returns it.

    A name or alias already taken by another kind raises :class:`~ase_dostransformer.errors.UnknownKindError`
    unless ``replace``.
    """
    if not isinstance(kind, DOSKind) or not kind.name:
        raise UnknownKindError(f"register_kind needs a DOSKind instance with a name, got {kind!r}")
    for name in (kind.name, *kind.aliases):
        taken = KINDS.get(name) or KINDS.get(ALIASES.get(name, ""))
        if taken is not None and taken is not kind and taken.name != kind.name and not replace:
            raise UnknownKindError(f"the kind name {name!r} is already registered for {taken!r}")
    KINDS[kind.name] = kind
    ALIASES.pop(kind.name, None)
    for alias in kind.aliases:
        ALIASES[alias] = kind.name
    return kind


def get_kind(name: str | DOSKind) -> DOSKind:
    """The registered kind called ``name`` (or one of its aliases); a kind passed in is returned as is.

    An unknown name raises :class:`~ase_dostransformer.errors.UnknownKindError` naming the registered kinds.
    """
    if isinstance(name, DOSKind):
        return name
    key = str(name).strip()
    kind = KINDS.get(key) or KINDS.get(ALIASES.get(key, ""))
    if kind is None:
        known = ", ".join(sorted(KINDS))
        aliases = ", ".join(f"{a!r} = {n!r}" for a, n in sorted(ALIASES.items()))
        raise UnknownKindError(
            f"unknown DOS kind {name!r}: registered kinds are {known}" + (f" (aliases: {aliases})" if aliases else "")
        )
    return kind


def kind_name(name: str | DOSKind) -> str:
    """The registered name of a kind name or alias (``"edos"`` -> ``"electron"``)."""
    return get_kind(name).name


register_kind(PhononKind())
register_kind(ElectronKind())
