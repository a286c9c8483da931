"""The package's floors: no import cycles, the diffusion family never reaches the weight
converters, no family reaches the loader on the top floor, and files stay readable."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmgen"
FAMILIES = ("nn", "cnn", "clip", "diffusion", "vae", "gan", "dit", "data", "train")
TOP_FLOOR = ("mmgen.hub", "mmgen.recipes", "mmgen.cli")  # packages: their submodules too


def _on_top_floor(module: str) -> bool:
    return any(module == top or module.startswith(top + ".") for top in TOP_FLOOR)


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """mmgen modules that ``name`` imports anywhere in its file (function bodies included:
    a lazy import is still a dependency); ``from pkg import x`` counts as ``pkg.x`` when
    that is a module."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports(graph):
    assert "mmgen.registry" in graph["mmgen.diffusion.unet"]
    assert "mmgen.diffusion.pipeline" in graph["mmgen.interop.stable_diffusion"]
    assert "mmgen.interop.stable_diffusion" in graph["mmgen.hub"]  # a lazy import counts
    assert "mmgen.cli.generate" in graph["mmgen.cli"]  # the CLI is a package of commands
    assert "mmgen.diffusion.pipeline" in graph["mmgen.cli.generate"]


def test_top_floor_covers_packages():
    assert all(_on_top_floor(m) for m in ("mmgen.cli", "mmgen.cli.generate", "mmgen.recipes.t2i"))
    assert not any(_on_top_floor(m) for m in ("mmgen.client", "mmgen.hubs", "mmgen.registry"))


def test_no_import_cycles(graph):
    assert _cycles(graph) == []
    # The checker itself finds a cycle.
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_floors(graph):
    for module, deps in graph.items():
        family = module.split(".")[1] if module.count(".") else ""
        if family == "diffusion":
            assert not {d for d in deps if d.startswith("mmgen.interop")}, module
        if family in FAMILIES or module in ("mmgen.registry", "mmgen.pipeline"):
            assert not {d for d in deps if _on_top_floor(d)}, module


def test_files_stay_readable():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 500}
    assert long == {}
