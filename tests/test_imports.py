"""The import graph inside ``app/``: no cycles, and no private name imported across modules.

How imports are counted (the rules this test enforces):

* Every ``import app.x`` / ``from app.x import y`` counts, at module level **and inside
  functions**: a function-local import defers a cycle to the first call, it does not remove
  it, so it is no way around this test.  Function-local imports remain the right tool for
  heavy or optional third-party libraries (torch, mlx, PySide6), which this test ignores.
* Imports under ``if TYPE_CHECKING:`` never run; they are left out of the graph.
* ``from app.pkg import name`` is an edge to ``app.pkg.name`` when that is a module, else to
  the package ``app.pkg`` (its ``__init__``).  The implicit import of a parent package that
  Python performs is not an edge (a package's ``__init__`` may re-export its modules).
* A name starting with one underscore (``_helper``) is private to its module: importing it
  from another module, or reaching it through an imported module (``llama_cpp._helper``),
  fails the test; make it public (and documented) instead.  A private attribute of an
  *object* from another module (``model._lock``) cannot be seen without types: that is for
  review.
* The tests hold to the same rule: no test imports or reaches an ``app`` module's private name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app"

# Cycles and private imports still to remove (none now).  Each cycle is the sorted module list
# of one strongly connected component.  The test fails when an entry is gone, so that it is
# deleted here too.
KNOWN_CYCLES: set[tuple[str, ...]] = set()
KNOWN_PRIVATE: set[str] = set()


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(APP.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (TYPE_CHECKING blocks skipped)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _imports_in(child))
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        yield from _imports(node)


def _imports_in(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _imports(node)


def _absolute(name: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def edges_and_privates(name: str, text: str | None = None) -> tuple[set[str], set[str]]:
    """The app modules ``name`` imports, and its uses of other modules' private names."""
    tree = ast.parse(MODULES[name].read_text() if text is None else text, str(MODULES[name]))
    targets: set[str] = set()
    private: set[str] = set()
    aliases: dict[str, str] = {}  # local name -> the app module it is bound to
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in MODULES:
                    targets.add(a.name)
                    if a.asname:
                        aliases[a.asname] = a.name
            continue
        source = _absolute(name, node)
        if source.split(".")[0] != "app":
            continue
        for alias in node.names:
            sub = f"{source}.{alias.name}"
            if sub in MODULES:
                targets.add(sub)
                aliases[alias.asname or alias.name] = sub
                continue
            targets.add(source)
            if _private(alias.name):
                private.add(f"{name} imports {alias.name} from {source}")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and _private(node.attr)):
            private.add(f"{name} uses {node.attr} of {aliases[node.value.id]}")
    targets.discard(name)
    return targets, private


GRAPH: dict[str, set[str]] = {}
PRIVATE: set[str] = set()
for _name in MODULES:
    GRAPH[_name], found = edges_and_privates(_name)
    PRIVATE |= found


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
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
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_walk_sees_real_imports() -> None:
    assert "app.providers.base" in GRAPH["app.providers.remote"]
    assert "app.providers.remote_compat" in GRAPH["app.providers.remote"]
    assert len(GRAPH) == len(MODULES) > 50


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [("a", "b", "c")]


def test_no_import_cycles_inside_app() -> None:
    found = set(cycles(GRAPH))
    assert found <= KNOWN_CYCLES, f"import cycles: {sorted(found - KNOWN_CYCLES)}"
    assert not KNOWN_CYCLES - found, f"gone, delete from KNOWN_CYCLES: {KNOWN_CYCLES - found}"


def test_no_private_name_is_used_across_modules() -> None:
    new = sorted(PRIVATE - KNOWN_PRIVATE)
    assert not new, "make these public (or keep them in their module):\n" + "\n".join(new)
    assert not KNOWN_PRIVATE - PRIVATE, f"gone, delete from KNOWN_PRIVATE: {KNOWN_PRIVATE - PRIVATE}"


def test_the_walk_reads_every_kind_of_import() -> None:
    text = """
from typing import TYPE_CHECKING
from app.providers.base import _hidden, ChatModel
from . import llama_cpp
import app.keystore as ks
if TYPE_CHECKING:
    from app.settings import ModelRow
def later():
    from app.server import errors
    return llama_cpp._secret, ks._other, errors.ApiError
"""
    targets, private = edges_and_privates("app.providers.remote", text)
    assert targets == {"app.providers.base", "app.providers.llama_cpp", "app.keystore",
                       "app.server.errors"}
    assert private == {"app.providers.remote imports _hidden from app.providers.base",
                       "app.providers.remote uses _secret of app.providers.llama_cpp",
                       "app.providers.remote uses _other of app.keystore"}


def test_tests_use_no_private_name_of_the_app() -> None:
    """The suite holds to the same rule: what a test needs from a module is that module's
    public surface (an object's private state, ``model._lock``, is again for review)."""
    found: list[str] = []
    for path in sorted((ROOT / "tests").rglob("*.py")):
        if path.name == "test_imports.py":  # its fixture text imports privates on purpose
            continue
        tree = ast.parse(path.read_text(), str(path))
        aliases: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "app":
                for alias in node.names:
                    if f"{node.module}.{alias.name}" in MODULES:
                        aliases.add(alias.asname or alias.name)
                    elif _private(alias.name):
                        found.append(f"{path.relative_to(ROOT)} imports {alias.name} from {node.module}")
            elif isinstance(node, ast.Import):
                aliases |= {a.asname for a in node.names if a.asname and a.name in MODULES}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and _private(node.attr)):
                found.append(f"{path.relative_to(ROOT)} uses {node.value.id}.{node.attr}")
    assert not found, "use the public name (make it public if a test needs it):\n" + "\n".join(found)
