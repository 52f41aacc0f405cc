"""The house rule: dependencies run one way. Every import of s2snets (function-level ones included) goes to the same
floor or a lower one, and no module reaches itself again through imports (docs/architecture.md).

Run alone: ``pytest tests/test_architecture.py -q`` (it reads the source, imports nothing).
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "s2snets"

# Bottom to top. A module is on the floor of its longest matching prefix.
FLOORS = [
    ["s2snets.errors", "s2snets.names", "s2snets.version"],
    ["s2snets.config", "s2snets.runtime", "s2snets.checkpoint"],
    ["s2snets.rundir", "s2snets.data", "s2snets.layers"],
    ["s2snets.models", "s2snets.metrics"],
    ["s2snets.train"],
    ["s2snets.zoo"],
    ["s2snets.experiments"],
    ["s2snets.report"],
    ["s2snets.api", "s2snets.attribution"],
    ["s2snets.cli", "s2snets.__main__", "s2snets"],
]
# The command line imports every command's module inside the command: --help and the config checks stay torch-free.
LAZY_BY_DESIGN = {"s2snets.cli"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in SRC.rglob("*.py"):
        name = ".".join(f.relative_to(SRC.parent).with_suffix("").parts).removesuffix(".__init__")
        out[name] = f
    return out


def _floor(name: str) -> int:
    best, floor = -1, None
    for i, prefixes in enumerate(FLOORS):
        for p in prefixes:
            if (name == p or name.startswith(p + ".")) and len(p) > best:
                best, floor = len(p), i
    assert floor is not None, f"{name} is on no floor: add it to FLOORS"
    return floor


def _imports(modules: dict[str, Path]) -> dict[str, set[tuple[str, bool]]]:
    """module -> {(imported module, at function level)}."""

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[tuple[str, bool]]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            lazy = getattr(node, "col_offset", 0) > 0
            if isinstance(node, ast.Import):
                found |= {(resolve(a.name), lazy) for a in node.names if a.name.startswith("s2snets")}
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("s2snets"):
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    found.add((resolve(full) if full in modules else resolve(node.module), lazy))
        edges[name] = {(t, lazy) for t, lazy in found if t and t != name}
    return edges


def test_every_import_runs_down_or_across_never_up():
    modules = _modules()
    upward = [f"{src} -> {dst}" for src, targets in _imports(modules).items() for dst, _ in targets if _floor(dst) > _floor(src)]
    assert not upward, upward


def test_no_import_circle():
    modules = _modules()
    graph = {src: {dst for dst, _ in targets} for src, targets in _imports(modules).items()}
    # The package __init__ is every module's parent: Python imports it first, whatever the module imports.
    graph = {k: {d for d in v if d != "s2snets"} for k, v in graph.items()}
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
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
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


def test_function_level_imports_are_few_and_said_why():
    modules = _modules()
    lazy = sorted(f"{src} -> {dst}" for src, targets in _imports(modules).items() if src not in LAZY_BY_DESIGN
                  for dst, is_lazy in targets if is_lazy)  # fmt: skip
    # numba loads only when a CPU nMI is computed; matplotlib only when a result is plotted
    assert lazy == [
        "s2snets.api -> s2snets.report.figures",
        "s2snets.attribution -> s2snets.report.figures",
        "s2snets.metrics.nmi -> s2snets.metrics.joint_counts",
    ], lazy


# The few functions allowed past ~60 lines in the upper floors, each said why in docs/architecture.md.
LONG_BY_DESIGN = {"s2snets.train.train_stage": 100, "s2snets.report.html._hypothesis_section": 70}
SHORT_FLOORS = ("s2snets.train", "s2snets.experiments", "s2snets.cli", "s2snets.report")


def test_functions_in_the_upper_floors_read_at_once():
    too_long = []
    for name, path in _modules().items():
        if not name.startswith(SHORT_FLOORS):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONG_BY_DESIGN.get(f"{name}.{node.name}", 60):
                    too_long.append(f"{name}.{node.name}: {lines} lines")
    assert not too_long, too_long
