"""The package's import graph, function-local imports included: no circle, the executors
package in floors that import only downwards, and no module taking another's private names."""

import ast
from pathlib import Path

import mibench

PACKAGE = Path(mibench.__file__).parent


def module_name(path: Path) -> str:
    parts = ["mibench", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or path.is_dir()


def imports() -> dict[str, list[tuple[str, list[str]]]]:
    """For each module of mibench, the mibench modules it imports, with the names it takes."""
    graph = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = []
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
        for node in ast.walk(tree):
            if id(node) in typing_only:         # annotations only: not an import at run time
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.startswith("mibench"):
                    names = [a.name for a in node.names]
                    modules = [n for n in names if is_module(f"{target}.{n}")]     # from . import store
                    others = [n for n in names if n not in modules]
                    edges += [(f"{target}.{n}", []) for n in modules] + ([(target, others)] if others else [])
            elif isinstance(node, ast.Import):
                edges += [(a.name, []) for a in node.names if a.name.startswith("mibench")]
        # a module of a package needs the package's __init__ run first anyway: not an edge
        graph[name] = [(t, n) for t, n in edges if t != name and not name.startswith(t + ".")]
    return graph


def cycles(graph: dict[str, list[tuple[str, list[str]]]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    adj = {m: sorted({t for t, _ in edges if t in graph}) for m, edges in graph.items()}
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in adj:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    assert cycles(imports()) == []


def test_the_cycle_finder_finds_a_circle():
    graph = {"a": [("b", [])], "b": [("c", [])], "c": [("a", [])], "d": [("a", [])]}
    assert cycles(graph) == [["a", "b", "c"]]


FLOORS = [["signals"], ["base"], ["worker", "costs"], ["local", "cluster"], ["__init__", "__main__"]]


def test_the_executors_package_imports_only_downwards():
    floor = {f"mibench.executors.{m}" if m != "__init__" else "mibench.executors": i
             for i, ms in enumerate(FLOORS) for m in ms}
    assert set(floor) == {module_name(p) for p in (PACKAGE / "executors").glob("*.py")}
    up = [(m, t) for m, edges in imports().items() if m in floor
          for t, _ in edges if t in floor and floor[t] >= floor[m] and not (m.endswith("__main__"))]
    assert up == []
    # nothing below the executors imports them (cpu.py held available_cores for them before)
    below = [m for m, edges in imports().items() for t, _ in edges
             if t.startswith("mibench.executors") and m in ("mibench.cpu", "mibench.runner", "mibench.train",
                                                            "mibench.store", "mibench.plan")]
    assert below == []


def test_no_module_imports_another_modules_private_names():
    taken = [(m, t, n) for m, edges in imports().items() for t, names in edges for n in names
             if n.startswith("_") and not n.startswith("__")]
    assert taken == []
