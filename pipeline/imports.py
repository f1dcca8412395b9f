"""The repository's Python modules and the imports between them, read from the source with
`ast` (nothing is imported).

Two readers: the fingerprint of the code that Transform and Trainer run, which keys TFX's cache
(`pipeline.pipeline.code_version`: exactly the files their entry points import, directly or
not), and the layering test (tests/test_layering.py: no import points upward, no cycle).

Every import statement counts: module level, inside functions, under `if TYPE_CHECKING:`.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterable
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The repository's top-level packages.
PACKAGES = ("cli", "headwise", "trainer", "components", "pipeline", "serving", "kubeflow",
            "benchmarks")


@dataclass(frozen=True)
class Import:
    file: str  # relative to the repository root, with "/"
    line: int
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (`from a import b` -> "a.b")
    resolved: str | None  # the repository module that target loads (None: not ours)

    def __str__(self) -> str:
        return f"{self.file}:{self.line} imports {self.target}"


def modules(root: str = ROOT) -> dict[str, str]:
    """{dotted module name: path relative to root} for every .py file of PACKAGES."""
    found = {}
    for package in PACKAGES:
        for dirpath, dirnames, filenames in os.walk(os.path.join(root, package)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith(".py"):
                    rel = os.path.relpath(os.path.join(dirpath, name), root)
                    parts = rel[:-len(".py")].split(os.sep)
                    dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
                    found[dotted] = rel.replace(os.sep, "/")
    return found


def resolve(target: str, known: Iterable[str]) -> str | None:
    """The module that importing `target` loads: target itself when it is a module, else the
    module it is an attribute of (`from a import name`); None outside the repository."""
    known = set(known)
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def imports(root: str = ROOT) -> list[Import]:
    """Every import statement of the repository's packages, anywhere in a module."""
    known = modules(root)
    found = []
    for module, rel in known.items():
        is_package = rel.endswith("__init__.py")
        with open(os.path.join(root, rel), encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), rel)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    parts = module.split(".")
                    parts = parts[:len(parts) - node.level + (1 if is_package else 0)]
                    base = ".".join(parts + ([base] if base else []))
                targets = [base if a.name == "*" else f"{base}.{a.name}" for a in node.names]
            found += [Import(rel, node.lineno, module, t, resolve(t, known)) for t in targets]
    return found


def closure(entry_modules: Iterable[str], root: str = ROOT) -> list[str]:
    """The files (relative paths, sorted) that importing `entry_modules` can execute: those
    modules, every repository module they import directly or indirectly, and the packages'
    `__init__.py` files on the way (importing a.b.c runs a/__init__.py and a/b/__init__.py)."""
    known = modules(root)
    edges: dict[str, set[str]] = {}
    for i in imports(root):
        if i.resolved:
            edges.setdefault(i.module, set()).add(i.resolved)
    seen: set[str] = set()
    todo = [m for m in entry_modules]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        if module not in known:
            raise ValueError(f"{module} is not a module of the repository under {root}")
        seen.add(module)
        parts = module.split(".")
        todo += [".".join(parts[:n]) for n in range(1, len(parts))]  # enclosing packages
        todo += sorted(edges.get(module, ()))
    return sorted(known[m] for m in seen)


def _packages_run(importer: str, target: str) -> list[str]:
    """The enclosing packages of `target` whose `__init__` importing it runs, beyond those that
    already enclose the importer (importing a.b.c from x runs a/__init__ and a/b/__init__)."""
    parts = target.split(".")
    return [p for p in (".".join(parts[:n]) for n in range(1, len(parts)))
            if not (importer == p or importer.startswith(p + "."))]


def cycles(found: Iterable[Import]) -> list[list[str]]:
    """The import cycles among repository modules: each strongly connected component of the
    import graph with more than one module (or a module importing itself), sorted. An import
    also reaches the `__init__` of each package it enters (`_packages_run`): a package whose
    `__init__` imports back into the importer is a cycle at run time, whichever module is
    imported first."""
    found = list(found)
    packages = {i.module for i in found} | {i.resolved for i in found if i.resolved}
    graph: dict[str, set[str]] = {}
    for i in found:
        graph.setdefault(i.module, set())
        if i.resolved:
            reached = [i.resolved, *(p for p in _packages_run(i.module, i.resolved)
                                     if p in packages)]
            for target in reached:
                graph[i.module].add(target)
                graph.setdefault(target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(out)
