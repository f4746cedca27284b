"""The layering rules of docs/architecture.md, checked over the import graph of the source tree.

The graph is built with the standard library's ``ast`` from every ``import`` statement in
``app/``, ``worker/`` and ``contract/`` — imports inside functions included (a lazy import still
couples two modules), imports under ``if TYPE_CHECKING:`` excluded (they never run).
"""

from __future__ import annotations

import ast
import sys
import textwrap
from collections.abc import Iterator
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("app", "worker", "contract")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


@cache
def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "_assets" not in path.parts:  # app/_assets holds copies made for the wheel
                found[_module_name(path)] = path
    return found


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run (``if TYPE_CHECKING:`` blocks are skipped)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _imports(ast.Module(body=node.orelse, type_ignores=[]))
        else:
            yield from _imports(node)


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The names an import statement reaches (``from a import b`` may import module ``a.b``)."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    base = node.module or ""
    if node.level:
        package = module.split(".")
        if _modules()[module].name != "__init__.py":
            package = package[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    return {base} | {f"{base}.{alias.name}" for alias in node.names}


@cache
def _raw_imports() -> dict[str, frozenset[str]]:
    """Module -> every dotted name it imports (ours and third-party)."""
    graph = {}
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(), filename=str(path))
        names: set[str] = set()
        for node in _imports(tree):
            names |= _targets(module, node)
        graph[module] = frozenset(names)
    return graph


def _own(name: str) -> str | None:
    """The module of ours that ``name`` lives in (``app.errors.Conflict`` -> ``app.errors``)."""
    while name and name not in _modules():
        name = name.rpartition(".")[0]
    return name or None


@cache
def _graph() -> dict[str, frozenset[str]]:
    return {
        module: frozenset(
            own for name in names if (own := _own(name)) is not None and own != module
        )
        for module, names in _raw_imports().items()
    }


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {
        "a": frozenset({"b"}),
        "b": frozenset({"c"}),
        "c": frozenset({"a"}),
        "d": frozenset({"a"}),
    }
    assert _cycles(graph) == [["a", "b", "c"]]
    assert _cycles({"a": frozenset({"b"}), "b": frozenset()}) == []


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    tree = ast.parse(
        textwrap.dedent("""
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from app.db.models import Project
        def f():
            from app.errors import Conflict
    """)
    )
    reached = set().union(*(_targets("app.main", node) for node in _imports(tree)))
    assert "app.errors.Conflict" in reached and "app.db.models" not in reached


def test_there_is_no_import_cycle_in_app_worker_or_contract() -> None:
    assert len(_modules()) > 150  # the walk found the source tree
    assert _cycles(_graph()) == []


def test_the_contract_imports_only_the_standard_library() -> None:
    outside = {
        module: sorted(
            name
            for name in names
            if name.partition(".")[0] not in {*sys.stdlib_module_names, "contract"}
        )
        for module, names in _raw_imports().items()
        if module.partition(".")[0] == "contract"
    }
    assert outside and {module: names for module, names in outside.items() if names} == {}


def test_the_web_reaches_the_worker_only_through_the_celery_app() -> None:
    """``app`` sends jobs by name (``contract.tasks``) through the Celery app; it never imports a
    task module or the ML core, so the web process stays free of numpy and torch."""
    crossings = {
        (module, own)
        for module, targets in _graph().items()
        if module.startswith("app.")
        for own in targets
        if own.partition(".")[0] == "worker" and own != "worker.celery_app"
    }
    assert crossings == set()


FORBIDDEN: dict[str, tuple[str, ...]] = {
    # layer -> what it must not import (docs/architecture.md, "Layers")
    "app.db": ("app.domain", "app.web", "app.api", "worker", "numpy", "torch"),
    "app.errors": ("app", "worker", "fastapi", "starlette"),
    "app.domain": ("app.web", "app.api", "worker", "numpy", "torch"),
    "worker.celery_app": ("worker.tasks", "worker.ml"),
    "worker.ml": ("app", "celery", "sqlalchemy", "worker.tasks", "worker.simulate"),
    "worker.simulate": ("app.db", "app.domain", "sqlalchemy", "worker.tasks"),
}


def _is_under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_each_layer_keeps_out_of_what_it_must_not_import() -> None:
    crossings = {
        (module, name)
        for layer, forbidden in FORBIDDEN.items()
        for module, names in _raw_imports().items()
        if _is_under(module, layer)
        for name in names
        if any(_is_under(name, prefix) for prefix in forbidden)
    }
    assert crossings == set()


def test_the_architecture_page_names_only_modules_that_exist() -> None:
    """Every dotted name of ours in docs/architecture.md is a module or a name in one."""
    import importlib
    import re

    text = (REPO / "docs" / "architecture.md").read_text()
    names = set(re.findall(r"`((?:app|worker|contract)\.[A-Za-z_.]+)`", text))
    assert len(names) > 20
    missing = []
    for name in sorted(names):
        module = _own(name)
        if module is None:
            missing.append(name)
            continue
        rest = name[len(module) + 1 :] if name != module else ""
        if rest and "." not in rest and not hasattr(importlib.import_module(module), rest):
            missing.append(name)
    assert missing == []


def test_the_worker_registers_exactly_the_contract_task_names() -> None:
    import worker.tasks  # noqa: F401  (registers every task)
    from contract.tasks import TASK_NAMES
    from worker.celery_app import celery_app

    registered = {name for name in celery_app.tasks if not name.startswith("celery.")}
    assert registered == TASK_NAMES


_IMPORT_EACH_FIRST = """
import importlib, json, sys
failed = {}
for name in json.loads(sys.argv[1]):
    for loaded in [m for m in sys.modules if m.split(".")[0] in ("app", "worker", "contract")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception as error:  # noqa: BLE001 - reported, not raised
        failed[name] = repr(error)[:300]
print(json.dumps(failed))
"""


def test_every_module_imports_when_it_is_imported_first() -> None:
    """A cycle through a package's ``__init__`` slips past the graph above (``from a.b import c``
    runs ``a/__init__.py`` too) and only breaks when a process happens to import the modules in
    one order, e.g. a Celery worker loading its task modules. Import each module first, on a
    clean slate of the project's modules (third-party ones stay loaded: seconds, not minutes)."""
    import json
    import subprocess

    names = sorted(n for n in _modules() if not n.endswith("__main__"))
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_EACH_FIRST, json.dumps(names)],
        capture_output=True, text=True, timeout=600, check=False,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {}
