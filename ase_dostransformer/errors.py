"""Every error and warning the package raises on purpose, with one common base each.

A caller catches everything this package raises for bad input, a bad file or a failed computation
with ``except DOSTransformerError``, and silences or escalates every finding about a prediction
with ``warnings.simplefilter(..., DOSTransformerWarning)``. Errors about a value the user gave are
also :class:`ValueError`, as Python code expects (``InvalidStructureError`` included). The command
line maps these errors (and ``OSError``) to exit status 2 with one line; anything else is a bug and
shows its traceback. Nothing here imports anything heavy.
"""

from __future__ import annotations

__all__ = [
    "CacheWarning",
    "CheckpointError",
    "CustomMassesIgnoredWarning",
    "DOSTransformerError",
    "DOSTransformerWarning",
    "DatasetError",
    "EmptySpectrumWarning",
    "FileIntegrityError",
    "FolderInUseError",
    "InvalidStructureError",
    "ModelFileError",
    "NonFiniteLossError",
    "OptionError",
    "OutOfDomainWarning",
    "PotentialError",
    "PredictionError",
    "SpectrumCutOffWarning",
    "SymmetrySearchWarning",
    "TeacherComputationError",
    "TeacherError",
    "TeacherInputError",
    "TrainOptionsError",
    "UnknownKindError",
    "UnsafeFileError",
    "UnseenCrystalSystemWarning",
    "UnverifiedModelFileWarning",
]


# --- errors -------------------------------------------------------------------------------------


class DOSTransformerError(Exception):
    """Base of every error this package raises on purpose."""


class OptionError(DOSTransformerError, ValueError):
    """An option or argument value that cannot be used (a batch size of 0, an unknown device, ...)."""


class TrainOptionsError(OptionError):
    """A ``dostransformer train`` option (or ``TrainOptions`` field) that cannot be used."""


class UnknownKindError(OptionError):
    """A DOS kind or embedder name that is not registered."""


class InvalidStructureError(DOSTransformerError, ValueError):
    """A structure no model can take: no atoms, unknown elements, non-periodic, overlapping atoms, ..."""


class FileIntegrityError(DOSTransformerError, ValueError):
    """A file this package wrote earlier whose content no longer matches its checksum (damaged or edited)."""


class UnsafeFileError(DOSTransformerError, ValueError):
    """A file holding objects other than tensors and plain values: refused before anything in it runs."""


class ModelFileError(DOSTransformerError, ValueError):
    """A model file or registered model name that is missing, damaged, tampered with, or not ours."""


class CheckpointError(DOSTransformerError, ValueError):
    """A training checkpoint that cannot be resumed (another run's, damaged, or options changed)."""


class DatasetError(DOSTransformerError, ValueError):
    """A dataset, split file, source file, row or label record that cannot be used; the message names it."""


class FolderInUseError(DOSTransformerError, ValueError):
    """An output folder another live run is writing into (``io.locks``, the teacher pipeline), or a file there."""


class NonFiniteLossError(DOSTransformerError, ValueError):
    """Training produced a NaN or infinite loss; the message names the epoch and step."""


class PredictionError(DOSTransformerError, RuntimeError):
    """A model that produced non-finite values for a structure."""


class TeacherError(DOSTransformerError):
    """Base of the errors of the teacher (universal potential + phonopy) labelling."""


class PotentialError(TeacherError):
    """The teacher's universal potential cannot be used: a shipped file missing or altered, unloadable, or no device."""


class TeacherInputError(TeacherError, ValueError):
    """A structure or setting the teacher cannot label."""


class TeacherComputationError(TeacherError, RuntimeError):
    """Relaxation or phonon computation that failed for one crystal (recorded, the run goes on)."""


# --- warnings -----------------------------------------------------------------------------------


class DOSTransformerWarning(UserWarning):
    """Base of every warning this package issues."""


class OutOfDomainWarning(DOSTransformerWarning):
    """A valid structure unlike the model's training data (elements, size, vacuum, bonds, volume)."""


class SpectrumCutOffWarning(DOSTransformerWarning):
    """The predicted spectrum is still high at the top of the model's window: it continues past the grid."""


class UnseenCrystalSystemWarning(DOSTransformerWarning):
    """The structure's crystal system was absent from the training data: the model used its mean prompt."""


class EmptySpectrumWarning(DOSTransformerWarning):
    """The model predicted an all-zero spectrum, which cannot be scaled to a number of states."""


class CacheWarning(DOSTransformerWarning):
    """A graph-cache entry that could not be trusted or written: it is rebuilt, nothing is lost."""


class SymmetrySearchWarning(DOSTransformerWarning):
    """The space group of a very large cell was not searched: the crystal is taken as triclinic (P1)."""


class UnverifiedModelFileWarning(DOSTransformerWarning):
    """A model file of the first format, which carries no content checksum: loaded unverified."""


class CustomMassesIgnoredWarning(DOSTransformerWarning):
    """Atoms given their own masses (isotopes, ``atoms.set_masses``) that the model cannot honour.

    The model learnt each element's mass as that element's own input column, so it was given the
    standard masses; a model trained with ``--mass_scaling`` honours them. In an ensemble mixing the two,
    only the members that learnt each element's mass ignored them: the message says so and names them.
    """
