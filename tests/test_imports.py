"""The modules' layers, drawn from the source as a newcomer would draw them: every `from .x
import y` (at module level or inside a function) is an edge, and the edges go downward only.
The zones: model (network, arbitrary, formats, registry, padding) below use (images, stylize,
tiling, metrics, paintings); the other modules build on them."""

import ast
from pathlib import Path

import pytest

from stylemirror import registry
from stylemirror.errors import UserError

SOURCE = Path(__file__).resolve().parents[1] / "src" / "stylemirror"
BASE = {"stylemirror", "errors", "paths", "atomic", "cache", "tensorfiles"}  # below every zone
MODEL = {"network", "arbitrary", "formats", "registry", "padding"}
USE = {"images", "stylize", "tiling", "metrics", "paintings"}
# The longest import chain, in modules.
MAX_FLOORS = 7


def module_name(path: Path) -> str:
    """"formats", "bench.quality", "bench" (a package's __init__), "stylemirror" (the top's)."""
    parts = path.relative_to(SOURCE).with_suffix("").parts
    parts = parts[:-1] if parts[-1] == "__init__" else parts
    return ".".join(parts) or "stylemirror"


def import_graph() -> dict[str, set[str]]:
    """{module: the modules of the package it imports}, by the names above."""
    files = {module_name(f): f for f in SOURCE.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        package = [] if name == "stylemirror" else name.split(".")[:None if path.name == "__init__.py" else -1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level:
                continue
            base = package[:len(package) - node.level + 1] + ([node.module] if node.module else [])
            target = ".".join(base) or "stylemirror"
            for alias in node.names:
                sub = f"{target}.{alias.name}" if base else alias.name
                deps.add(sub if sub in files else target)
        graph[name] = deps - {name}
    return graph


def circles(graph) -> list[list[str]]:
    """Every import circle that a depth-first walk meets, as the chain that closes it."""
    found, done = [], set()

    def walk(module, chain):
        if module in chain:
            found.append(chain[chain.index(module):] + [module])
            return
        if module in done:
            return
        for dep in sorted(graph[module]):
            walk(dep, chain + [module])
        done.add(module)

    for module in sorted(graph):
        walk(module, [])
    return found


def floors(graph) -> dict[str, int]:
    """Each module's floor: 1 for one that imports none of the package, else one above the
    highest it imports. `__main__` (the one-line `python -m` entry) is left out."""
    graph = {m: deps - {"__main__"} for m, deps in graph.items() if m != "__main__"}
    floor = {}

    def of(module):
        if module not in floor:
            floor[module] = 0  # a circle (test_no_import_circle) ends here
            floor[module] = 1 + max((of(dep) for dep in graph[module]), default=0)
        return floor[module]

    for module in graph:
        of(module)
    return floor


def below(graph, module) -> set[str]:
    """Every module that `module` imports, directly or through others."""
    seen, todo = set(), [module]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_graph_sees_function_level_imports():
    graph = import_graph()
    assert "network" in graph["tiling"] and "formats" in graph["stylize"]  # the latter inside Stylizer
    assert {"bench.common", "train"} <= graph["bench.quality"]


def test_no_import_circle():
    assert circles(import_graph()) == []


def test_floors():
    graph = import_graph()
    floor = floors(graph)
    top = max(floor.values())
    chain = [max(floor, key=floor.get)]
    while floor[chain[-1]] > 1:  # down the highest import each time: one longest chain
        chain.append(max(graph[chain[-1]] - {"__main__"}, key=floor.get))
    print(f"{top} floors, e.g. {' -> '.join(chain)}")
    assert top <= MAX_FLOORS, " -> ".join(chain)


@pytest.mark.parametrize("zone, allowed", [(MODEL, BASE | MODEL), (USE, BASE | MODEL | USE)])
def test_zones_import_downward_only(zone, allowed):
    graph = import_graph()
    for module in zone:
        assert graph[module] <= allowed, f"{module} imports {sorted(graph[module] - allowed)}"


@pytest.mark.parametrize("lower, upper", [("formats", "registry"), ("tiling", "stylize"), ("padding", "stylize"),
                                          ("images", "stylize"), ("stylize", "metrics"), ("network", "formats")])
def test_lower_modules_never_reach_upper_ones(lower, upper):
    assert upper not in below(import_graph(), lower)


def test_open_model_still_takes_a_published_name(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLEMIRROR_CACHE", str(tmp_path))
    with pytest.raises(UserError, match="^model 'wave' is not downloaded yet: run `stylemirror models pull wave`$"):
        registry.open_model("wave")
    with pytest.raises(UserError, match="^no-such-style: no such model file or folder, and not a published style "
                                        r"\(wave, udnie, "):
        registry.open_model("no-such-style")
