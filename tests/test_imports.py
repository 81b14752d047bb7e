"""No import cycles in the package: its import graph, read with ``ast``, is acyclic.

Every ``import`` / ``from ... import`` counts, at module level and inside functions (a lazy import is
still a dependency), with relative imports resolved; imports under ``if TYPE_CHECKING:`` are left
out (they never run). ``from package import name`` points at the submodule ``package.name`` when
there is one, else at the package. Importing ``a.b.c`` also runs ``a/b/__init__.py``, so it counts
as importing ``a.b`` too (unless the importer is itself inside ``a.b``, which Python loaded first).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ase_dostransformer

PACKAGE_DIR = Path(ase_dostransformer.__file__).resolve().parent


def module_names(root: Path) -> dict[str, Path]:
    """Dotted name -> file of every module under the package folder ``root`` (``__init__`` is the package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement under ``node``, at any depth, except in the body of ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            found.append(child)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                found.extend(_import_nodes(ast.Module(body=[other], type_ignores=[])))
        else:
            found.extend(_import_nodes(child))
    return found


def _targets(node: ast.Import | ast.ImportFrom, name: str, is_package: bool, modules: set[str]) -> set[str]:
    """The package modules an import statement of module ``name`` loads."""
    if isinstance(node, ast.Import):
        candidates = [alias.name for alias in node.names]
    else:
        if node.level:
            base = name.split(".") if is_package else name.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        candidates = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
    out = set()
    for candidate in candidates:
        while candidate and candidate not in modules:  # ``import a.b.c`` of a non-module name: its module
            candidate = candidate.rpartition(".")[0]
        if candidate:
            out.add(candidate)
    return out


def _parents(module: str) -> list[str]:
    """The packages above ``module`` below the top-level one: ``a.b.c`` -> ``["a.b"]``."""
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(2, len(parts))]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the package modules it imports (module level and inside functions, TYPE_CHECKING excluded)."""
    files = module_names(root)
    modules = set(files)
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _import_nodes(tree):
            edges |= _targets(node, name, is_package, modules)
        edges |= {p for t in edges for p in _parents(t) if not (name == p or name.startswith(p + "."))}
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``[a, b, ..., a]``) per strongly connected component with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (breadth first)."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = [start]
    while queue:
        v = queue.pop(0)
        for w in sorted(graph[v] & members):
            if w == start:
                path = [v]
                while path[-1] != start:
                    path.append(previous[path[-1]])
                return [start, *reversed(path[:-1]), start] if v != start else [start, start]
            if w not in previous:
                previous[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle in component {component}")  # pragma: no cover


def test_the_scanner_sees_lazy_relative_imports_and_skips_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import thing\n")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .c import C\nelse:\n    import pkg.c\n"
        "def f():\n    from .sub import b\n"
    )
    (pkg / "sub" / "b.py").write_text("thing = 1\ndef g():\n    from .. import a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    graph = import_graph(pkg)
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.c", "pkg.sub", "pkg.sub.b"},
        "pkg.c": set(),
        "pkg.sub": {"pkg.sub.b"},
        "pkg.sub.b": {"pkg.a"},
    }
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.a"]]


def test_package_has_no_import_cycles() -> None:
    graph = import_graph(PACKAGE_DIR)
    assert "ase_dostransformer.graphs.validation" in graph
    assert len(graph) > 40
    cycles = find_cycles(graph)
    for cycle in cycles:
        print("import cycle:", " -> ".join(cycle))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_graphs_do_not_import_the_dataset_readers() -> None:
    """``graphs`` measures crystals; reading datasets is ``io``'s job (io imports graphs, never the reverse)."""
    graph = import_graph(PACKAGE_DIR)
    bad = sorted(
        f"{m} -> {t}"
        for m, targets in graph.items()
        if m.startswith("ase_dostransformer.graphs")
        for t in targets
        if t.startswith(("ase_dostransformer.io.electron", "ase_dostransformer.io.phdos", "ase_dostransformer.kinds"))
    )
    assert not bad


def test_validation_imports_alone_in_a_fresh_interpreter() -> None:
    code = (
        "import ase_dostransformer.graphs.validation as v; "
        "from ase_dostransformer.graphs.validation import InvalidStructureError, validate_crystal; "
        "import numpy as np; "
        "v.validate_crystal(np.eye(3) * 3, np.zeros((1, 3)), np.array([14]), np.array([True] * 3)); "
        "print('ok')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_public_api_from_the_package_root_is_lazy() -> None:
    import subprocess
    import sys

    code = (
        "import sys, ase_dostransformer as d\n"
        "assert 'torch' not in sys.modules, 'importing the package imported torch'\n"
        "from ase_dostransformer import DOSCalculator\n"
        "assert 'torch' not in sys.modules, 'importing DOSCalculator imported torch'\n"
        "from ase_dostransformer import load_model, predict_dos, predict_structures, Prediction\n"
        "from ase_dostransformer.calculator import DOSCalculator as C\n"
        "from ase_dostransformer.pretrained import load_model as L\n"
        "assert DOSCalculator is C and load_model is L\n"
        "assert set(d.__all__) <= set(dir(d))\n"
        "try:\n"
        "    d.no_such_name\n"
        "except AttributeError as e:\n"
        "    assert 'no_such_name' in str(e)\n"
        "else:\n"
        "    raise SystemExit('no AttributeError')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
