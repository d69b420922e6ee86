"""The project installs what its tests need, and CI runs the README's test command as written."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).parent.parent


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _dev_distributions() -> set[str]:
    """Every distribution ``pip install -e '.[dev]'`` asks for by name (extras expanded)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    names: set[str] = set()
    pending, seen = [*project["dependencies"], *extras["dev"]], set()
    while pending:
        req = Requirement(pending.pop())
        if _canonical(req.name) == "modelpack":
            for extra in req.extras - seen:
                seen.add(extra)
                pending.extend(extras[extra])
            continue
        names.add(_canonical(req.name))
    return names


def _imported_modules() -> dict[str, set[str]]:
    """Top-level module -> test files importing it, for every absolute import in tests/."""
    local = {p.stem for p in (ROOT / "tests").rglob("*.py")} | {"modelpack", "tests"}
    found: dict[str, set[str]] = {}
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in local:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_module_a_test_imports_is_declared():
    declared = _dev_distributions()
    owners = metadata.packages_distributions()
    undeclared = {}
    for module, files in _imported_modules().items():
        dists = {_canonical(d) for d in owners.get(module, ())}
        if not dists & declared:
            undeclared[module] = (sorted(dists) or ["not installed"], sorted(files))
    assert undeclared == {}, (
        "tests import modules that no distribution declared in pyproject.toml's dev extra "
        f"provides (module: (installed from, imported by)): {undeclared}"
    )


def test_the_declared_check_sees_an_undeclared_module():
    # httpx (not httpx2) was imported by six test modules while only httpx2 was declared.
    assert "httpx" not in _dev_distributions()
    assert "httpx2" in _dev_distributions()


def _readme_commands() -> list[str]:
    return [
        b.strip() for b in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    ]


def test_readme_starts_with_the_quickstart_and_the_test_command():
    quickstart, tests = _readme_commands()[:2]
    assert "examples/quickstart.py" in quickstart
    assert tests.startswith("pip install torch==2.13.0 && pip install -e '.[dev]'")
    assert tests.endswith("python -m pytest -n 2")


def test_ci_runs_the_readme_test_command_in_a_new_virtualenv_outside_the_checkout():
    script = (ROOT / ".ci" / "run").read_text()
    # The command is read from the README's second bash block and run as written...
    assert 'blocks = re.findall(r"```bash\\n(.*?)```"' in script and "blocks[1]" in script
    assert 'eval "$command"' in script
    # ... in a virtualenv made from the machine's Python in a fresh temporary folder.
    assert 'venv=$(mktemp -d "${TMPDIR:-/tmp}/' in script
    assert 'python3 -m venv "$venv"' in script and 'source "$venv/bin/activate"' in script
    # A database that does not answer stops CI with a message, not with skipped tests.
    assert "|| true\n" not in script.split("pg_ctlcluster", 1)[0]
    assert "PostgreSQL does not answer" in script and "exit 1" in script
