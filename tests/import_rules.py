"""The project's layering rules, checked on the source with the ``ast`` module (no imports run).

Layers (docs/architecture.md): the core ``blender_gs_addon/`` (no bpy) ← ``scene/`` (Blender-side
logic) ← ``operators/`` ← ``panels/``; ``preferences.py`` sits beside ``scene/``. Rules:

1. the core imports neither bpy (nor Blender's other modules) nor the Blender side; the one
   bridge is :data:`CORE_BRIDGE` (the command line): it checks that bpy imports and loads the
   Blender side by name with ``extension_module`` — no other core module may do either;
2. ``scene/`` imports neither ``operators/`` nor ``panels/``; ``operators/`` does not import
   ``panels/``;
3. no import cycle among the project's modules (function-level imports count: hiding a cycle
   inside a function does not remove it);
4. no private name (``_x``) imported from, or read off, another project module.

:func:`violations` returns one line per broken rule; the test asserts it is empty and that a
planted violation of each rule is reported.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

CORE = "blender_gs_addon"
CORE_BRIDGE = f"{CORE}.cli.blender"
BLENDER_MODULES = {"bpy", "bpy_extras", "mathutils", "bmesh", "addon_utils", "gpu", "blf",
                   "aud", "bl_math", "idprop", "rna_prop_ui"}
BLENDER_SIDE = ("scene", "operators", "panels", "preferences")
LOADERS = {"extension_module", "load_extension"}
SKIP_DIRS = {"tests", "benchmarks", "scripts", "docs", "dist", "out", "build", "__pycache__"}


@dataclass(frozen=True)
class Edge:
    source: str  # importing module
    target: str  # imported project module
    line: int
    names: tuple[str, ...]  # names taken from the target ("from x import a, b")


def project_modules(root: Path) -> dict[str, Path]:
    """Dotted module name → file, for the extension root package (named by its folder) and the
    core; tests, benchmarks and scripts are not product code."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0].startswith(".") or set(rel.parts[:-1]) & SKIP_DIRS:
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts) if parts else "__init__"] = path
    return modules


def _package_of(name: str, path: Path) -> str:
    if name == "__init__":  # the extension's root package: its submodules are top-level here
        return ""
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve(package: str, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    # The repository root is the extension package (Blender imports it under its id), so the
    # Blender side's ``..blender_gs_addon.x`` from ``scene`` is the top-level core module.
    parts = package.split(".") if package else []
    parts = parts[: max(0, len(parts) - (level - 1))]
    return ".".join(p for p in (*parts, module) if p)


def _as_project(name: str, modules: dict[str, Path]) -> str | None:
    return name if name in modules else None


def import_edges(modules: dict[str, Path]) -> tuple[list[Edge], list[str]]:
    """(edges between project modules, imports of Blender's modules as 'module:line name')."""
    edges, blender = [], []
    for name, path in modules.items():
        package = _package_of(name, path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    top = alias.name.split(".")[0]
                    if top in BLENDER_MODULES:
                        blender.append(f"{name}:{node.lineno} {alias.name}")
                    target = _as_project(alias.name, modules)
                    if target:
                        edges.append(Edge(name, target, node.lineno, ()))
            elif isinstance(node, ast.ImportFrom):
                absolute = _resolve(package, node.level, node.module)
                if node.level == 0 and absolute.split(".")[0] in BLENDER_MODULES:
                    blender.append(f"{name}:{node.lineno} {absolute}")
                    continue
                base = _as_project(absolute, modules)
                for alias in node.names:
                    sub = _as_project(f"{absolute}.{alias.name}".strip("."), modules)
                    if sub:
                        edges.append(Edge(name, sub, node.lineno, ()))
                    elif base:
                        edges.append(Edge(name, base, node.lineno, (alias.name,)))
    return edges, blender


def _layer(module: str) -> str:
    top = module.split(".")[0]
    return top if top in (CORE, *BLENDER_SIDE) else "root"


def layering_violations(modules, edges, blender) -> list[str]:
    out = []
    for entry in blender:
        if entry.startswith(CORE) and not entry.startswith(CORE_BRIDGE + ":"):
            out.append(f"the core imports Blender: {entry}")
    allowed_up = {"scene": {"operators", "panels"}, "operators": {"panels"}}
    for e in edges:
        src, dst = _layer(e.source), _layer(e.target)
        if src == CORE and dst != CORE:
            out.append(f"the core imports the Blender side: {e.source}:{e.line} → {e.target}")
        if dst in allowed_up.get(src, ()):
            out.append(f"{src}/ imports {dst}/: {e.source}:{e.line} → {e.target}")
    for name, path in modules.items():
        if not name.startswith(CORE) or name in (CORE_BRIDGE, f"{CORE}.extension"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if called in LOADERS:
                    out.append(f"the core loads the Blender side outside {CORE_BRIDGE}: "
                               f"{name}:{node.lineno} {called}()")
    return out


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        if e.source != e.target:
            graph.setdefault(e.source, set()).add(e.target)
            graph.setdefault(e.target, set())
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    found.append(sorted(component))
    return found


def _is_package_parent(importer: str, target: str) -> bool:
    """A package's ``__init__`` re-exporting its own submodules' names is not a cycle."""
    return target.startswith(importer + ".")


def private_name_violations(modules, edges) -> list[str]:
    out = []
    for e in edges:
        for name in e.names:
            if name.startswith("_") and not name.startswith("__"):
                out.append(f"private name imported: {e.source}:{e.line} {e.target}.{name}")
    by_source: dict[str, dict[str, str]] = {}
    for name, path in modules.items():
        package = _package_of(name, path)
        aliases = {}
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                absolute = _resolve(package, node.level, node.module)
                for alias in node.names:
                    sub = _as_project(f"{absolute}.{alias.name}".strip("."), modules)
                    if sub:
                        aliases[alias.asname or alias.name] = sub
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _as_project(alias.name, modules) and alias.asname:
                        aliases[alias.asname] = alias.name
        by_source[name] = aliases
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                out.append(f"private name used: {name}:{node.lineno} "
                           f"{aliases[node.value.id]}.{node.attr}")
    return out


def violations(root: Path) -> list[str]:
    modules = project_modules(root)
    edges, blender = import_edges(modules)
    out = layering_violations(modules, edges, blender)
    for component in cycles([e for e in edges if not _is_package_parent(e.source, e.target)]):
        out.append("import cycle: " + " → ".join(component))
    return out + private_name_violations(modules, edges)


def long_functions(root: Path, limit: int) -> dict[str, int]:
    """'module:function' → lines, for product functions longer than ``limit`` lines."""
    out = {}
    for name, path in project_modules(root).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > limit:
                    out[f"{name}:{node.name}"] = length
    return out
