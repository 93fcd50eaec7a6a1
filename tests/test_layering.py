"""The package's layering, read from the source: imports at the top of a file tell the truth about what it
uses, and data flows down without climbing back.

- An ``omniembed`` module is imported inside a function only in the places listed in ``LAZY`` (model
  modules load their ML stack on first use; an optional extra or the web framework is imported where it is
  entered), each with its reason. Imports under ``if TYPE_CHECKING:`` are module-level and count as
  imports for the rest of these checks.
- No import circle among modules, and none among the package's parts (``api``, ``cli``, ``geo``, ``ray``,
  ``service``, ...): a part's files never import a part that imports it back, so the parts stack in floors.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "omniembed"

LAZY: dict[str, str] = {
    "omniembed/models/": "model modules build their network (and import its ML stack) when first loaded",
    "omniembed/service/__init__.py": "create_app: `import omniembed` (the Client needs the schemas) loads no "
    "web framework",
    "omniembed/cli/serve.py": "the web framework is loaded by `omniembed serve` only, not by every command",
}
"""Files (or folders, ending in ``/``) allowed to import an ``omniembed`` module inside a function."""


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _targets(node: ast.Import | ast.ImportFrom, modules: set[str]) -> Iterator[str]:
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name in modules)
    elif node.module and node.level == 0:
        for alias in node.names:
            full = f"{node.module}.{alias.name}"
            yield full if full in modules else node.module


def _imports(path: Path, modules: set[str]) -> tuple[set[str], list[tuple[int, str]]]:
    """(every omniembed module ``path`` imports, the in-function ones with their lines)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    inside: list[tuple[int, str]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                names = [t for t in _targets(child, modules) if t.split(".")[0] == "omniembed"]
                found.update(names)
                if in_function and names:
                    inside.append((child.lineno, ", ".join(dict.fromkeys(names))))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found, inside


def _graph() -> tuple[dict[str, set[str]], dict[str, list[tuple[int, str]]]]:
    files = _files()
    modules = {_module(p) for p in files}
    edges: dict[str, set[str]] = {}
    lazy: dict[str, list[tuple[int, str]]] = {}
    for path in files:
        name = _module(path)
        found, inside = _imports(path, modules)
        edges[name] = {m for m in found if m != name and m in modules}
        if inside:
            lazy[path.relative_to(SRC).as_posix()] = inside
    return edges, lazy


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return out


def _part(module: str) -> str:
    """The part of the package a module belongs to: ``omniembed.geo.export.ray`` -> ``geo``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_in_function_import_of_an_omniembed_module_outside_the_allowed_places() -> None:
    _, lazy = _graph()
    allowed = tuple(LAZY)
    offenders = {f: lines for f, lines in lazy.items() if not f.startswith(allowed)}
    assert not offenders, "import these at the top of the file (or list the place in LAZY with its reason):\n" + \
        "\n".join(f"{f}:{line}: {names}" for f, lines in offenders.items() for line, names in lines)


def test_every_allowed_place_is_used() -> None:
    """An entry of LAZY that no file needs any more is removed, so the list stays the truth."""
    _, lazy = _graph()
    unused = [place for place in LAZY if not any(f.startswith(place) for f in lazy)]
    assert not unused


def test_no_import_circle_between_modules() -> None:
    edges, _ = _graph()
    assert _circles(edges) == []


def test_no_import_circle_between_the_parts_of_the_package() -> None:
    edges, _ = _graph()
    parts: dict[str, set[str]] = {}
    for module, targets in edges.items():
        parts.setdefault(_part(module), set()).update(_part(t) for t in targets if _part(t) != _part(module))
    circles = _circles(parts)
    ties = {f"{a} -> {b}": sorted(m for m, t in edges.items() if _part(m) == a and any(_part(x) == b for x in t))
            for group in circles for a in group for b in group if b in parts.get(a, ())}
    assert circles == [], ties


@pytest.mark.parametrize("finder", [_circles])
def test_the_circle_finder_finds_a_circle(finder: object) -> None:
    """The checks above cannot pass vacuously: a made-up loop is found."""
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _part("omniembed.geo.export.ray") == "geo" and _part("omniembed") == "__init__"
