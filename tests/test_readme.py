"""The README's two commands: the test command is exactly what CI runs."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_starts_with_the_two_commands() -> None:
    first_lines = (ROOT / "README.md").read_text().splitlines()[:8]
    assert any("dostransformer predict examples/structures" in line for line in first_lines)
    commands = readme_commands()
    assert len(commands) == 2
    assert "dostransformer predict" in commands[0]
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert readme_commands()[1] in ci_lines


def layout_rows() -> dict[str, str]:
    """The README's Layout table: first cell (a module or a package folder) -> the rest of the row."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) >= 2:
            rows[cells[0].strip("`")] = cells[1]
    return rows


def test_readme_layout_names_every_module() -> None:
    rows = layout_rows()
    package = ROOT / "ase_dostransformer"
    missing = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if len(rel.parts) == 1:
            named = rel.name in rows
        else:
            folder = "/".join(rel.parts[:-1]) + "/"
            named = rel.name == "__init__.py" or f"`{rel.name}`" in rows.get(folder, "")
        if not named:
            missing.append(str(rel))
    assert not missing, f"modules the README's Layout section does not name: {missing}"
    for name in rows:  # and it names nothing that is gone
        assert (package / name).exists(), f"the Layout section names {name}, which does not exist"
