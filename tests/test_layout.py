"""The package's layout: no module imports one that imports it back, none is long.

Every import counts, wherever it is written: at the top, inside a function, under
``if TYPE_CHECKING``, absolute or relative, ``importlib.import_module`` of a literal
name. A cycle that only a lazy import closes still ties two modules into one (neither
can be read, tested or moved without the other), and becomes an ImportError the day
someone hoists the import. Importing ``a.b.c`` also runs the packages ``a`` and
``a.b`` (their ``__init__``), so those count too, except where they already enclose
the importer (Python has begun them before it).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jaxae"
MAX_LINES = 450


def modules(package: Path) -> dict[str, Path]:
    """Every module under ``package`` by dotted name; a package is its ``__init__.py``."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that module ``name`` (the file ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    named: set[str] = set()  # modules the import reads from
    passed: set[str] = set()  # packages Python runs on the way to them
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, *([node.module] if node.module else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                if submodule in known:  # from a.b import c, c a module: runs a.b, reads c
                    named.add(submodule)
                    passed.add(base)
                else:  # a name defined in a.b: reads a.b
                    named.add(base)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            named.add(node.args[0].value)
    enclosing = set(_parents(name))
    passed.update(parent for target in named for parent in _parents(target))
    found = {m for m in named if m in known}
    found |= {p for p in passed if p in known and p not in enclosing}
    found.discard(name)
    return found


def import_graph(package: Path) -> dict[str, set[str]]:
    known = modules(package)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle through each module that lies on a cycle, found by a
    breadth-first search back to it; each cycle reported once."""
    seen: set[frozenset[str]] = set()
    found = []
    for start in sorted(graph):
        back: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in back:
            following = []
            for module in frontier:
                for target in sorted(graph[module]):
                    if target not in back:
                        back[target] = module
                        following.append(target)
            frontier = following
        if start not in back:
            continue
        path = [start]
        while back[path[-1]] != start:
            path.append(back[path[-1]])
        path = [start, *reversed(path[1:]), start]
        if frozenset(path) not in seen:
            seen.add(frozenset(path))
            found.append(path)
    return found


def test_no_module_of_jaxae_imports_one_that_imports_it_back():
    found = cycles(import_graph(PACKAGE))
    assert not found, "import cycles (each import, lazy or not, counts):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found
    )


def test_every_module_of_jaxae_is_at_most_450_lines():
    lines = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text(encoding="utf-8").splitlines())
        for path in modules(PACKAGE).values()
    }
    long = {path: n for path, n in lines.items() if n > MAX_LINES}
    assert len(lines) > 50 and not long, f"modules over {MAX_LINES} lines: {long}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_checker_sees_lazy_relative_and_package_imports(tmp_path):
    """Each way a cycle can hide: inside a function, ``from . import``, ``from ..x
    import``, a literal ``import_module``, and a package's ``__init__`` run on the way."""
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "def f():\n    from pkg import b\n",
            "pkg/b.py": "from . import a\n",
            "pkg/sub/__init__.py": "from pkg.sub import deep\n",
            "pkg/sub/deep.py": "from ..c import thing\n",
            "pkg/c.py": "import importlib\nimportlib.import_module('pkg.d')\nthing = 1\n",
            "pkg/d.py": "import pkg.sub.deep\n",
            "pkg/e.py": "from pkg.sub import deep\n",
            "pkg/f.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.g\n",
            "pkg/g.py": "from pkg.f import x\n",
        },
    )
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.a"}
    # pkg.d imports pkg.sub.deep, which runs pkg.sub's __init__ first.
    assert graph["pkg.d"] == {"pkg.sub", "pkg.sub.deep"}
    # Inside pkg.sub, its own package is already running: deep -> c only.
    assert graph["pkg.sub.deep"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.d"}
    found = cycles(graph)
    assert ["pkg.a", "pkg.b", "pkg.a"] in found and ["pkg.f", "pkg.g", "pkg.f"] in found
    assert ["pkg.sub", "pkg.sub.deep", "pkg.c", "pkg.d", "pkg.sub"] in found
    # pkg.e imports pkg.sub, but nothing imports pkg.e.
    on_a_cycle = {module for cycle in found for module in cycle}
    assert on_a_cycle == set(graph) - {"pkg", "pkg.e"}


def test_the_checker_leaves_a_package_importing_its_own_submodules_alone(tmp_path):
    """``pkg/__init__`` importing ``pkg.x``, and ``pkg.x`` importing its sibling
    ``pkg.y`` (which runs ``pkg``'s ``__init__`` only where it already runs), is no cycle."""
    package = _write(
        tmp_path,
        {
            "pkg/__init__.py": "from pkg.x import f\nfrom pkg import y\n",
            "pkg/x.py": "from pkg.y import g\n\ndef f():\n    return g\n",
            "pkg/y.py": "def g():\n    return 1\n",
        },
    )
    assert cycles(import_graph(package)) == []
