"""The package's modules import each other one way: no cycle, counting imports inside functions too.

A lazy import inside a function hides a cycle from Python but not from a reader (engines.targets once
imported engines.tensorrt, which imported engines.precision, which imported engines.targets).
"""

from __future__ import annotations

import ast
from pathlib import Path

from lutfuse_deploy.paths import REPO_ROOT

PACKAGE = REPO_ROOT / "lutfuse_deploy"


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
    return name.removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its body.

    ``from pkg import sub`` counts as importing ``pkg.sub`` only, so a package ``__init__`` that
    re-exports its submodules lazily is not a cycle with them.
    """
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
                targets = subs or [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path (first module repeated at the end), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_find_cycle_finds_a_lazy_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert "lutfuse_deploy.engines.tensorrt" in graph["lutfuse_deploy.engines.local_gpu"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_targets_are_data() -> None:
    """Deployment targets know nothing of TensorRT, GPUs or the rest of engines/."""
    imports = import_graph()["lutfuse_deploy.engines.targets"]
    assert not [m for m in imports if m.startswith("lutfuse_deploy.engines")], imports
