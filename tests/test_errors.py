"""One error hierarchy: every error and warning class lives in ``errors.py``, under two common bases."""

from __future__ import annotations

import ast
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

import ase_dostransformer
from ase_dostransformer import errors

PACKAGE = Path(ase_dostransformer.__file__).resolve().parent
ERROR_LIKE = re.compile(r"(Error|Warning|Exception)$")


def test_every_listed_class_exists_and_has_a_common_base() -> None:
    assert sorted(errors.__all__) == errors.__all__ == sorted(set(errors.__all__))
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert isinstance(cls, type), name
        assert issubclass(cls, (errors.DOSTransformerError, errors.DOSTransformerWarning)), name
        assert cls.__doc__, f"{name} has no docstring"
        assert cls.__doc__.strip(), f"{name} has no docstring"


def test_errors_module_lists_every_class_it_defines() -> None:
    tree = ast.parse((PACKAGE / "errors.py").read_text(encoding="utf-8"))
    defined = sorted(node.name for node in tree.body if isinstance(node, ast.ClassDef))
    assert defined == sorted(errors.__all__)


@pytest.mark.parametrize(
    "name",
    [
        "OptionError",
        "TrainOptionsError",
        "UnknownKindError",
        "InvalidStructureError",
        "DatasetError",
        "CheckpointError",
        "FileIntegrityError",
        "ModelFileError",
        "FolderInUseError",
        "TeacherInputError",
    ],
)
def test_errors_about_a_value_are_value_errors(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, ValueError)
    assert issubclass(cls, errors.DOSTransformerError)
    with pytest.raises(ValueError, match="bad value"):  # what plain-Python callers catch
        raise cls("bad value")


def test_warnings_are_user_warnings_under_one_base() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore")
        warnings.simplefilter("always", errors.DOSTransformerWarning)
        warnings.warn("flagged", errors.OutOfDomainWarning, stacklevel=1)
        warnings.warn("not ours", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["flagged"]


def _error_like_classes(path: Path, root: Path = PACKAGE.parent) -> list[str]:
    """``file:line name`` of every class named *Error / *Warning / *Exception defined in ``path`` (nested too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(root)}:{node.lineno} {node.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef) and ERROR_LIKE.search(node.name)
    ]


def test_no_error_or_warning_class_outside_errors_py() -> None:
    found = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "errors.py"
        for hit in _error_like_classes(path)
    ]
    assert not found, "error/warning classes defined outside errors.py:\n" + "\n".join(found)


def test_the_scan_finds_a_stray_class(tmp_path: Path) -> None:
    """The scan above is not vacuous: a nested class named like an error is found, others are not."""
    stray = tmp_path / "stray.py"
    stray.write_text("class Fine:\n    pass\n\n\ndef f():\n    class LocalError(ValueError):\n        pass\n")
    assert _error_like_classes(stray, tmp_path) == ["stray.py:6 LocalError"]


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("ase_dostransformer.graphs", "InvalidStructureError"),
        ("ase_dostransformer.graphs", "OutOfDomainWarning"),
        ("ase_dostransformer.graphs.structure", "InvalidStructureError"),
        ("ase_dostransformer.graphs.validation", "InvalidStructureError"),
        ("ase_dostransformer.graphs.validation", "OutOfDomainWarning"),
        ("ase_dostransformer.graphs.cache", "CacheWarning"),
        ("ase_dostransformer.graphs.crystal_system", "SymmetrySearchWarning"),
        ("ase_dostransformer.io.locks", "FolderInUseError"),
        ("ase_dostransformer.training.resume", "CheckpointError"),
        ("ase_dostransformer.training.lightning_module", "NonFiniteLossError"),
        ("ase_dostransformer.teacher.potential", "PotentialError"),
    ],
)
def test_old_import_paths_give_the_one_class(module: str, name: str) -> None:
    import importlib

    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


def test_package_code_raises_the_package_errors(tmp_path: Path) -> None:
    """A few user-facing faults of the modules moved onto ``errors``: each raises the documented class."""
    from ase import Atoms

    from ase_dostransformer.graphs import crystal_arrays
    from ase_dostransformer.graphs.crystal_system import crystal_system_from_spacegroup
    from ase_dostransformer.io.atoms_json import atoms_from_dict
    from ase_dostransformer.io.electron_dataset import process_edos
    from ase_dostransformer.io.electron_sources import read_edos_source
    from ase_dostransformer.teacher.records import record_files

    with pytest.raises(errors.InvalidStructureError, match="no periodic cell"):
        crystal_arrays(Atoms("Si", positions=[[0, 0, 0]]))
    with pytest.raises(errors.OptionError, match="1..230"):
        crystal_system_from_spacegroup(231)
    with pytest.raises(errors.DatasetError, match=r"row 2: structure lacks \['cell'\]"):
        atoms_from_dict({"numbers": [14], "positions": [[0, 0, 0]]}, "row 2")
    with pytest.raises(errors.DatasetError, match="strictly increasing"):
        process_edos(np.linspace(9, -9, 50), np.ones(50), 0.0)
    with pytest.raises(errors.OptionError, match="format must be one of"):
        next(read_edos_source(tmp_path / "x.json", fmt="nonsense"))
    with pytest.raises(errors.DatasetError, match="not a folder"):
        record_files(tmp_path / "missing")
