"""The import graph of the product: no cycle between files, no upward import between layers.

Every .py file under cases/, viewer/, analysis/ and config/ is parsed (nothing is imported) and
every import statement is collected, including those deferred into functions: a deferred
import is still a dependency, it only hides a cycle from the interpreter.

Layers, lowest first (a layer may import only those below it):
    analysis/core   the science: no Django, nothing of the project outside analysis/core
    cases           the base app: Case, Slide, SlideAlignment, AuditEvent, audit, roles
    analysis        the Django side of the science: jobs, runs, scores (never viewer)
    viewer          the web product: pages, API, tiles, overlays, review, board, websockets
    config          settings, URLs, ASGI, Celery: wires everything
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cases", "viewer", "analysis", "config")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module (of any origin) that the file imports, at any depth of its code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            out.add(source)
            for alias in node.names:  # `from pkg import module` imports pkg.module
                if f"{source}.{alias.name}" in MODULES:
                    out.add(f"{source}.{alias.name}")
    return out


def _project_target(module: str) -> str | None:
    """The project file an imported name resolves to (the longest known prefix), or None."""
    parts = module.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}
EDGES = {
    name: {t for t in (_project_target(m) for m in imported) if t and t != name and not MODULES[t].name == "__init__.py"}
    for name, imported in IMPORTS.items()
}


def _layer(module: str) -> str:
    if module == "analysis.core" or module.startswith("analysis.core."):
        return "analysis.core"
    return module.split(".")[0]


ALLOWED = {
    "analysis.core": {"analysis.core"},
    "cases": {"cases"},
    "analysis": {"analysis", "analysis.core", "cases"},
    "viewer": {"viewer", "analysis", "analysis.core", "cases"},
    "config": {"config", "viewer", "analysis", "analysis.core", "cases"},
}


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one file (Tarjan, iterative)."""
    index, low, on_stack, stack, result = {}, {}, set(), [], []
    counter = 0
    for start in sorted(EDGES):
        if start in index:
            continue
        work = [(start, iter(sorted(EDGES[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(EDGES[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        result.append(sorted(component))
    return result


def test_every_package_is_seen():
    assert {"cases.models", "viewer.tiles.asgi", "analysis.core.pipeline", "config.settings"} <= set(MODULES)
    assert len(MODULES) > 100


def test_no_import_cycle_between_files():
    cycles = _cycles()
    assert not cycles, "import cycles (deferred imports included):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_upward_import_between_layers():
    upward = defaultdict(list)
    for name, targets in EDGES.items():
        for target in targets:
            if _layer(target) not in ALLOWED[_layer(name)]:
                upward[name].append(target)
    assert not upward, "upward imports:\n" + "\n".join(f"{k} -> {', '.join(sorted(v))}" for k, v in sorted(upward.items()))


def test_science_core_imports_no_django():
    offenders = {name: sorted(m for m in imported if m.split(".")[0] in {"django", "rest_framework", "channels", "celery"})
                 for name, imported in IMPORTS.items() if _layer(name) == "analysis.core"}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"analysis/core must run without Django: {offenders}"


@pytest.mark.parametrize("module", ["analysis.core.files", "analysis.core.pipeline"])
def test_core_modules_parse(module):
    assert module in MODULES
