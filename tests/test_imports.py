"""The import graph of lieconv_core: no circles (every import counted, function-level ones
included), the layers (library, tasks, application, tooling) import only downwards, the adapter is
primitives only, and no framework is imported and no library's name tested outside the backend
registry."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "lieconv_core"
#: the subpackages above the library (see docs/architecture.md); every other module is the library
LAYERS = ("tasks", "app", "tools")
#: layer -> the layers it must not import
FORBIDDEN = {"library": {"tasks", "app", "tools"}, "tasks": {"app", "tools"}}


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                cands = [target] + [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
            else:
                continue
            deps.update(c for c in cands if c in mods and c != name)
        graph[name] = deps
    return graph


def _circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_circles():
    mods = _modules()
    graph = _graph(mods)
    assert {"lieconv_core.adapter", "lieconv_core.neighbourhoods.search"} <= set(graph)
    assert _circles(graph) == []
    # control: the checker finds a circle where there is one (the adapter imports rows)
    graph["lieconv_core.rows"] = graph["lieconv_core.rows"] | {"lieconv_core.adapter"}
    assert any("lieconv_core.adapter" in c for c in _circles(graph))


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "library"


def _layer_violations(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(importer, imported) pairs where a layer imports one it must not."""
    return sorted((mod, dep) for mod, deps in graph.items() for dep in deps
                  if _layer(dep) in FORBIDDEN.get(_layer(mod), set()))


def test_the_layers_import_only_downwards():
    """The library (groups, nn, neighbourhoods, arrays, random, ...) imports nothing from the
    tasks, the application or the tooling; the tasks import nothing from the application or the
    tooling."""
    graph = _graph(_modules())
    assert {_layer(m) for m in graph} == {"library", *LAYERS}
    assert _layer_violations(graph) == []
    # control: the check fails where the library or a task reaches up
    graph["lieconv_core.nn.lieconv"] = graph["lieconv_core.nn.lieconv"] | {
        "lieconv_core.app.training.engine"}
    graph["lieconv_core.tasks.qm9"] = graph["lieconv_core.tasks.qm9"] | {
        "lieconv_core.app.training.rundir", "lieconv_core.tools.consistency"}
    assert _layer_violations(graph) == [
        ("lieconv_core.nn.lieconv", "lieconv_core.app.training.engine"),
        ("lieconv_core.tasks.qm9", "lieconv_core.app.training.rundir"),
        ("lieconv_core.tasks.qm9", "lieconv_core.tools.consistency")]


def test_the_adapter_is_primitives_only():
    """The adapter modules import nothing from the neighbourhoods package, and no adapter (the
    reference, numpy's, the backends') carries sampling or neighbour selection: the
    neighbourhoods package owns those and asks an adapter for primitives and native kernels."""
    graph = _graph(_modules())
    for mod in ("lieconv_core.adapter", "lieconv_core.rows"):
        assert not [d for d in graph[mod] if d.startswith("lieconv_core.neighbourhoods")], mod
    from lieconv_core._backend import adapter_for, namespace_for

    adapters = [adapter_for(namespace_for("numpy"))]
    for mod in ("lieconv_torch.adapter", "lieconv_jax.adapter", "lieconv_cupy.adapter"):
        try:
            adapters.append(importlib.import_module(mod).ADAPTER)
        except ImportError:
            continue
    selection = ("fps", "fps_distance", "neighbourhood", "chunked_neighbourhood",
                 "dense_neighbourhood")
    for ad in adapters:
        assert [n for n in selection if hasattr(ad, n)] == [], type(ad).__name__
    # control: the check sees a selection method where a class has one
    assert hasattr(type("Overrides", (type(adapters[0]),), {"fps": None})(), "fps")


def test_no_framework_import_or_library_name_test_outside_the_registry():
    allowed = {"lieconv_core._backend"}  # the registry: names and namespace checks
    pattern = re.compile(r"^\s*(import|from)\s+(torch|jax|cupy)\b|is_(numpy|torch|jax|cupy|"
                         r"array_api_strict)_namespace", re.M)
    offenders = [name for name, path in _modules().items()
                 if name not in allowed and pattern.search(path.read_text())]
    assert offenders == []
