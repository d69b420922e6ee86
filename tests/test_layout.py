"""The shape of the tree: no import cycles, no arrow from the core to serving, the server or the
CLI, and public names for every module another package imports (DESIGN.md §1).

Every import counts, at module level or inside a function; only ``if TYPE_CHECKING:`` blocks,
which never run, are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import modelpack
import modelpack.flavors
import modelpack.server
import modelpack.serving

# The folders the distribution installs, and the package name each is installed as.
ROOTS = {
    "modelpack": Path(modelpack.__file__).parent,
    "modelpack.flavors": Path(modelpack.flavors.__file__).parent,
    "modelpack.serving": Path(modelpack.serving.__file__).parent,
    "modelpack.server": Path(modelpack.server.__file__).parent,
}
OUTSIDE_THE_CORE = ("modelpack.serving", "modelpack.server", "modelpack.cli")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            if name == "modelpack" and parts and parts[0] in ("flavors", "serving", "server"):
                continue  # an editable install may map these folders inside modelpack/
            found[".".join([name, *parts])] = path
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    """The package a module belongs to (a package's __init__ belongs to itself)."""
    return module if MODULES[module].name == "__init__.py" else module.rsplit(".", 1)[0]


def _imports(module: str) -> set[str]:
    """The project modules ``module`` imports, anywhere but under ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    class Visitor(ast.NodeVisitor):
        def visit_If(self, node: ast.If) -> None:
            if "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    self.visit(child)
                return
            self.generic_visit(node)

        def visit_Import(self, node: ast.Import) -> None:
            found.update(alias.name for alias in node.names)

        def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
            base = node.module or ""
            if node.level:
                package = _package_of(module).split(".")
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            submodules = {f"{base}.{a.name}" for a in node.names} & MODULES.keys()
            found.update(submodules)
            if len(submodules) < len(node.names):  # names from the module itself
                found.add(base)

    Visitor().visit(ast.parse(MODULES[module].read_text()))
    return {name for name in found if name in MODULES and name != module}


GRAPH = {module: _imports(module) for module in MODULES}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
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
                    components.append(sorted(component))
    return components


def _top(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_graph_sees_the_tree():
    assert {"modelpack.package", "modelpack.flavors.sklearn", "modelpack.serving.app"} <= set(
        MODULES
    )
    assert "modelpack.manifest" in GRAPH["modelpack.package"]
    assert "modelpack.store.sql" in GRAPH["modelpack.store"]  # an import inside a function


def test_no_import_cycle():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_core_never_imports_serving_the_server_or_the_cli():
    arrows = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        if _top(module) not in OUTSIDE_THE_CORE
        for target in targets
        if _top(target) in OUTSIDE_THE_CORE
    )
    assert arrows == []


def test_a_module_another_package_imports_has_a_public_name():
    private = sorted(
        f"{module} -> {target}"
        for module, targets in GRAPH.items()
        for target in targets
        if target.rsplit(".", 1)[-1].startswith("_")
        and not target.endswith("._version")
        and _package_of(module) != target.rsplit(".", 1)[0]
    )
    assert private == []


@pytest.mark.parametrize(
    "old", ["batch", "_batch_io", "_batch_input", "_batch_sink", "_batch_worker"]
)
def test_batch_scoring_is_a_subpackage(old):
    assert (ROOTS["modelpack"] / "batch" / "__init__.py").is_file()
    assert not (ROOTS["modelpack"] / f"{old}.py").exists()


def test_no_models_uri_is_built_or_parsed_outside_the_uri_module():
    offenders = []
    for module, path in MODULES.items():
        if module == "modelpack.uris":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value
                if text.startswith(("models:/", "runs:/")) and len(text) < 40:
                    offenders.append(f"{module}: {text!r}")
            elif isinstance(node, ast.JoinedStr):
                head = node.values[0] if node.values else None
                if isinstance(head, ast.Constant) and str(head.value).startswith(
                    ("models:/", "runs:/")
                ):
                    offenders.append(f"{module}: {ast.unparse(node)}")
    assert offenders == []
