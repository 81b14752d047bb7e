"""ase-dostransformer: density of states of crystals from a prompt-guided multimodal transformer."""

from __future__ import annotations


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
