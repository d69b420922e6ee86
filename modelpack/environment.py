"""The environment a package needs: pinned pip requirements and the Python version.

Requirements are found without running anything: the flavor names its framework, and a bounded
walk over the model object collects the top-level modules its classes and functions come from,
mapped to installed distributions with ``importlib.metadata``.
"""

from __future__ import annotations

import functools
import sys
import types
from collections.abc import Iterable
from typing import Any

from modelpack.errors import InvalidArgument

__all__ = ["infer_requirements", "pin", "python_env", "python_version"]

_WALK_LIMIT = 50_000
# Objects of these types hold no references worth walking.
_LEAVES = (str, bytes, bytearray, int, float, complex, bool, type(None), range)


def python_version() -> str:
    return ".".join(map(str, sys.version_info[:3]))


@functools.lru_cache(maxsize=1)
def _module_distributions() -> dict[str, list[str]]:
    from importlib.metadata import packages_distributions

    return dict(packages_distributions())


def _top(module_name: str | None) -> str | None:
    if not module_name or not isinstance(module_name, str):
        return None
    top = module_name.split(".", 1)[0]
    if top in sys.stdlib_module_names or top in ("__main__", "builtins", "modelpack"):
        return None
    return top


def _modules_of_function(fn: types.FunctionType, out: set[str]) -> Iterable[Any]:
    if (top := _top(fn.__module__)) is not None:
        out.add(top)
    globs = fn.__globals__
    for name in fn.__code__.co_names:
        value = globs.get(name)
        if isinstance(value, types.ModuleType):
            if (top := _top(value.__name__)) is not None:
                out.add(top)
        elif value is not None:
            yield value
    yield from (c.cell_contents for c in (fn.__closure__ or ()) if _cell_full(c))


def _cell_full(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def modules_of(obj: Any, limit: int = _WALK_LIMIT) -> set[str]:
    """Top-level third-party module names the object graph of ``obj`` refers to."""
    found: set[str] = set()
    seen: set[int] = set()
    stack = [obj]
    seen_types: set[type] = set()
    while stack and len(seen) < limit:
        o = stack.pop()
        if id(o) in seen or isinstance(o, _LEAVES):
            continue
        seen.add(id(o))
        t = type(o)
        if t not in seen_types:
            seen_types.add(t)
            for klass in t.__mro__:
                if (top := _top(klass.__module__)) is not None:
                    found.add(top)
        if isinstance(o, types.ModuleType):
            if (top := _top(o.__name__)) is not None:
                found.add(top)
            continue
        if isinstance(o, type):
            for klass in o.__mro__:
                if (top := _top(klass.__module__)) is not None:
                    found.add(top)
            continue
        if isinstance(o, types.FunctionType):
            stack.extend(_modules_of_function(o, found))
            continue
        if isinstance(o, types.MethodType):
            stack.append(o.__func__)
            stack.append(o.__self__)
            continue
        if isinstance(o, dict):
            stack.extend(o.values())
        elif isinstance(o, list | tuple | set | frozenset):
            stack.extend(o)
        d = getattr(o, "__dict__", None)
        if isinstance(d, dict):
            stack.extend(d.values())
    return found


def pin(names: Iterable[str]) -> list[str]:
    """``name==installed_version`` for each distribution name that is installed."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.utils import canonicalize_name

    pinned: dict[str, str] = {}
    for name in names:
        key = canonicalize_name(name)
        if key in pinned:
            continue
        try:
            pinned[key] = f"{name}=={version(name)}"
        except PackageNotFoundError:
            continue
    return [pinned[k] for k in sorted(pinned)]


# Import names that differ from their distribution's name, for the common frameworks: looking
# these up directly spares a scan of every installed distribution's file list (~150 ms).
_KNOWN = {
    "sklearn": "scikit-learn",
    "skl2onnx": "skl2onnx",
    "yaml": "PyYAML",
    "PIL": "Pillow",
    "cv2": "opencv-python",
    "google": "protobuf",
    "dateutil": "python-dateutil",
    "lightgbm": "lightgbm",
    "xgboost": "xgboost",
    "catboost": "catboost",
}


def _distributions_of(module: str) -> list[str]:
    """The installed distributions that provide top-level ``module``."""
    from importlib.metadata import PackageNotFoundError, distribution

    name = _KNOWN.get(module, module)
    try:
        dist = distribution(name)
    except PackageNotFoundError:
        return list(_module_distributions().get(module, ()))
    top_level = dist.read_text("top_level.txt")
    if top_level is None or module in top_level.split():
        return [dist.metadata["Name"] or name]
    return list(_module_distributions().get(module, ()))


def infer_requirements(obj: Any, flavor_requirements: Iterable[str]) -> list[str]:
    """Pinned requirements: the flavor's own, plus the distributions ``obj`` is made of."""
    dists = list(flavor_requirements)
    for top in sorted(modules_of(obj)):
        dists.extend(_distributions_of(top))
    return pin(dists)


def check_requirements(lines: Iterable[str], what: str) -> list[str]:
    """Validate user-given requirement lines; raise ``InvalidArgument`` naming a bad one."""
    from packaging.requirements import InvalidRequirement, Requirement

    out = []
    for line in lines:
        if not isinstance(line, str):
            raise InvalidArgument(f"{what}: expected requirement strings, got {line!r}.")
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if not text.startswith("-"):
            try:
                Requirement(text)
            except InvalidRequirement as exc:
                raise InvalidArgument(
                    f"{what}: {text!r} is not a valid requirement ({exc})."
                ) from None
        out.append(text)
    return out


def python_env() -> dict[str, Any]:
    """The contents of ``python_env.yaml``: Python version, build tools, requirements file."""
    return {
        "python": python_version(),
        "build_dependencies": pin(["pip", "setuptools", "wheel"]),
        "dependencies": ["-r requirements.txt"],
    }
