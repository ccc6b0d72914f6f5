"""The import graph of critic/ and adjudication/ has no cycles, counting imports inside functions.

An edge is `module -> the module it names` (`from a.b import c` names `a.b.c` when that is a
module, else `a.b`). Importing a submodule also runs its package's `__init__`, but a package that
imports its own submodules (a registry like `critic.tasks`) is not a cycle, so parents do not
count. Imports under `if TYPE_CHECKING:` do not run and do not count either.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("critic", "adjudication")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if any(part in ("prompts", "constitutions") for part in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Line numbers of imports inside `if TYPE_CHECKING:` blocks."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                for sub in ast.walk(inner):
                    if isinstance(sub, ast.Import | ast.ImportFrom):
                        lines.add(sub.lineno)
    return lines


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    """Each module of critic/ and adjudication/ and the modules of those it imports."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_only(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if getattr(node, "lineno", None) in skip:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{alias.name}" for alias in node.names]
                targets = [t if t in modules else base for t in targets]
            for target in targets:
                resolved = _resolve(target, modules)
                if resolved is not None and resolved != name:
                    graph[name].add(resolved)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_function_level_and_relative_imports() -> None:
    graph = import_graph()
    assert "critic.store" in graph["critic.cli.data"]  # imported inside a command
    assert "adjudication.errors" in graph["adjudication.store"]  # `from .errors import ...`


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_adjudication_never_imports_critic() -> None:
    graph = import_graph()
    leaks = {m: sorted(t for t in ts if t.startswith("critic")) for m, ts in graph.items()
             if m.startswith("adjudication")}  # fmt: skip
    assert {m: ts for m, ts in leaks.items() if ts} == {}


def test_no_module_imports_private_names_of_another() -> None:
    private = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                private += [
                    f"{name}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert private == []


def test_no_module_over_900_lines() -> None:
    long = {
        name: lines
        for name, path in _modules().items()
        if (lines := len(path.read_text().splitlines())) > 900
    }
    assert long == {}


def test_store_mixins_define_each_private_method_once():
    """`Store` is composed of mixins (claims, gold, accounts, settings, bulk, listing, ...); two
    of them defining the same name would silently shadow one by the order of the bases (a
    merge once gave the settings' `_count(conn, query)` precedence over the item list's
    `_count(conn, q, filters, terms, hide)`)."""
    from adjudication.store import Store

    owners: dict[str, list[str]] = {}
    for base in Store.__mro__:
        if base is object:
            continue
        for name in vars(base):
            if not name.startswith("__"):
                owners.setdefault(name, []).append(base.__name__)
    shadowed = {name: where for name, where in owners.items() if len(where) > 1}
    assert shadowed == {}
