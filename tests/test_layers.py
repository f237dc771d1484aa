"""One way down: every import of a rethink module (lazy ones inside functions included) goes to a module on the
same floor or below it (docs/architecture.md), and no modules import each other in a circle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "rethink"
FLOORS = {  # docs/architecture.md's table: a package or top-level module -> its floor
    "errors": 0, "checks": 0, "compose": 0, "regularizers": 0, "plots": 0, "system": 0,
    "data": 1, "corrupt": 2, "models": 3, "measures": 3, "training": 4, "run": 5, "jobs": 6, "theory": 6,
    "sweep": 7, "report": 8, "ui": 8, "__main__": 9, "__init__": 0,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = ROOT.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


def imports(path: Path) -> set[str]:
    """The rethink modules `path` imports anywhere in its body (module level, functions, TYPE_CHECKING blocks)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rethink"):
            # `from rethink.report import overfit` imports the submodule, not the package's own names
            subs = {f"{node.module}.{a.name}" for a in node.names if is_module(f"{node.module}.{a.name}")}
            out |= subs
            if len(subs) < len(node.names):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("rethink")}
    return out


def floor(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return FLOORS[top]


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def test_every_package_has_a_floor():
    assert sorted({m.split(".")[1] for m in MODULES if "." in m} - set(FLOORS)) == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_down(module):
    up = sorted(t for t in imports(MODULES[module]) if t != "rethink" and floor(t) > floor(module))
    assert up == [], f"{module} (floor {floor(module)}) imports from a higher floor: {up}"


def test_no_import_circles():
    graph = {m: {t for t in imports(p) if t in MODULES and t != m} for m, p in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in graph[m]:
            if state.get(t) == 1:
                raise AssertionError("import circle: " + " -> ".join(path[path.index(t):] + [t]) if t in path
                                     else f"import circle through {t}")
            if t not in state:
                visit(t, path + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])
