"""The package's layers (ARCHITECTURE.md): each imports only from the stages before it, with no import cycle."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import oltr_bench

PACKAGE = Path(oltr_bench.__file__).resolve().parent
# Pipeline order: a module may import its own layer and the layers before it.
LAYERS = ("errors", "oltr_bench", "utils", "log", "paths", "protocols", "formats", "config", "registry", "splits", "data",
          "models", "method", "metrics", "engine", "report", "suite", "api", "cli", "__main__")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(("oltr_bench", *path.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
        yield name, ast.parse(path.read_text(encoding="utf-8"))


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "oltr_bench"


def _imports(tree: ast.AST, module_level_only: bool) -> set[str]:
    nodes = tree.body if module_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("oltr_bench"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # "from oltr_bench import formats"
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("oltr_bench"))
    return found


def test_every_import_goes_to_an_earlier_stage():
    known = set(LAYERS) | {"baselines", "splits_data", "leaderboard_data"}
    wrong = []
    for name, tree in _modules():
        src = _layer(name)
        assert src in known, f"{name}: layer {src!r} is not in LAYERS; place it in the pipeline"
        for target in _imports(tree, module_level_only=False):
            dst = _layer(target)
            if dst in LAYERS and LAYERS.index(dst) > LAYERS.index(src):
                wrong.append(f"{name} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_report_does_not_depend_on_the_engine():
    users = [name for name, tree in _modules() if name.startswith("oltr_bench.report")
             for target in _imports(tree, module_level_only=False) if target.startswith("oltr_bench.engine")]
    assert users == []


def test_no_import_cycle_between_modules():
    names = {name for name, _ in _modules()}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, tree in _modules():
        for target in _imports(tree, module_level_only=True):
            while target and target not in names:
                target = target.rpartition(".")[0]  # an attribute of a module: the module
            if target and target != name:
                graph[name].add(target)
    seen, stack, cycles = set(), [], []

    def visit(node: str) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node):] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        stack.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        stack.pop()

    for node in sorted(names):
        visit(node)
    # A package's __init__ importing its own submodules is not a cycle of layers.
    real = [c for c in cycles if not all(m == c[0].rpartition(".")[0] or m.startswith(c[0] + ".") for m in c[1:-1])]
    assert not real, " -> ".join(real[0])
