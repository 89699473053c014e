"""The shape of the package: no import loops among dsforge's modules (lazy imports inside functions
count too: a loop that only closes at run time is still a loop to read)."""

import ast
import graphlib
from pathlib import Path

import dsforge


def import_graph(package_dir: Path) -> dict[str, set[str]]:
    """{module: modules of the same package it imports}, relative imports resolved; `from p import m`
    points at the submodule p.m when there is one, else at p (its __init__)."""
    root = package_dir.parent
    files = {}
    for path in package_dir.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        files[".".join(parts)] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            else:
                continue
            for t in targets:
                while t and t not in files:   # dsforge.x.func -> dsforge.x; outside modules vanish
                    t = t.rpartition(".")[0]
                if t and t != name:
                    graph[name].add(t)
    return graph


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of `graph` (its modules in order, the first repeated at the end), or None."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        return err.args[1]
    return None


def test_the_cycle_finder_finds_a_loop_through_a_lazy_relative_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import os\nfrom .. import sub\n")
    graph = import_graph(pkg)
    assert graph["pkg.a"] == {"pkg.sub.b"} and graph["pkg.sub.b"] == {"pkg.sub"} and cycle(graph) is None
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..a import g\n")
    assert set(cycle(import_graph(pkg))) == {"pkg.a", "pkg.sub.b"}


def test_no_import_loops_in_dsforge():
    graph = import_graph(Path(dsforge.__file__).parent)
    assert "dsforge.judge.core" in graph and graph["dsforge.judge.audit"] >= {"dsforge.judge.core"}
    loop = cycle(graph)
    assert loop is None, "import loop: " + " -> ".join(loop)
