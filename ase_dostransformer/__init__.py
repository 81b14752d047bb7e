"""ase-dostransformer: density of states of crystals from a prompt-guided multimodal transformer.

The public API, imported lazily (``import ase_dostransformer`` loads neither torch nor the models):

- :class:`DOSCalculator`: the ASE calculator (phonon and electron DOS, thermodynamics, screening);
- :func:`load_model`: a shipped model by name, or a model file;
- :func:`predict_dos`: spectra of many structures at once;
- :func:`predict_structures` and :class:`Prediction`: the prediction pipeline with its findings and
  uncertainties.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["DOSCalculator", "Prediction", "__version__", "load_model", "predict_dos", "predict_structures"]

#: Public name -> the module that defines it.
_LAZY = {
    "DOSCalculator": ".calculator",
    "load_model": ".pretrained",
    "predict_dos": ".inference",
    "predict_structures": ".pipeline",
    "Prediction": ".pipeline",
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'ase_dostransformer' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _package_version() -> str:
    """The installed distribution's version (pyproject.toml is its one source); read from there if not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ase-dostransformer")
    except PackageNotFoundError:  # a source tree on sys.path that pip never installed
        import re
        from pathlib import Path

        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        found = re.search(r'(?m)^version\s*=\s*"([^"]+)"', pyproject.read_text()) if pyproject.is_file() else None
        return found.group(1) if found else "0+unknown"


__version__ = _package_version()
