"""The flavor contract, and finding flavors by name or by object.

A flavor is a module with the same five verbs for one framework (see ``Flavor``). Built-in
flavors live in ``modelpack.flavors``; third-party ones register in the ``modelpack.flavors``
entry-point group. Nothing is registered at import: the table below is constant and modules are
imported only when asked for.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

from modelpack.errors import InvalidArgument, ModelpackError, UnknownFlavor

if TYPE_CHECKING:
    from modelpack.enforcement import Columns

__all__ = [
    "BUILTIN_FLAVORS",
    "Columns",
    "Flavor",
    "Predict",
    "available_flavors",
    "flavor_for",
    "get_flavor",
]

Predict = Callable[[Any, Mapping[str, Any]], Any]

BUILTIN_FLAVORS: Mapping[str, str] = {
    "mlflow_pyfunc": "modelpack.flavors.mlflow_pyfunc",  # load-only: MLflow's PythonModels
    "onnx": "modelpack.flavors.onnx",
    "python": "modelpack.flavors.python",
    "sklearn": "modelpack.flavors.sklearn",
    "torch": "modelpack.flavors.torch",
}
# python first: a PythonModel may wrap anything; sklearn last: it duck-types.
MATCH_ORDER = ("python", "torch", "onnx", "sklearn")
ENTRY_POINT_GROUP = "modelpack.flavors"


class Flavor(Protocol):
    """What a flavor module provides. Modules satisfy it structurally.

    ``save`` writes under ``dest / "model"`` and returns the flavor's config (its ``path`` is
    relative to the package root). ``example`` is the input example, when one was given.
    ``predictor`` returns ``predict(data, params)``; ``data`` has already been checked against
    the signature: ``Columns`` for a column signature, a numpy array or a dict of them for a
    tensor signature, or the caller's data as given when the package has no signature.
    ``requirements`` names the distributions loading needs, given the object and the config
    ``save`` returned (which says how it was stored, e.g. pickled or with skops).
    """

    NAME: str

    def matches(self, obj: Any) -> bool: ...

    def save(self, obj: Any, dest: Path, *, example: Any = None, **options: Any) -> dict: ...

    def load(self, src: Path, config: Mapping[str, Any], **options: Any) -> Any: ...

    def predictor(self, native: Any, config: Mapping[str, Any]) -> Predict: ...

    def requirements(self, obj: Any, config: Mapping[str, Any]) -> list[str]: ...


@functools.cache
def _entry_points() -> dict[str, Any]:
    """Installed third-party flavors (read once per process: scanning costs milliseconds)."""
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_flavors() -> list[str]:
    """Names of every flavor: built-in and installed through entry points."""
    return sorted({*BUILTIN_FLAVORS, *_entry_points()})


def get_flavor(name: str) -> Flavor:
    """The flavor module called ``name``.

    Raises:
        UnknownFlavor: no flavor has that name; the message lists those that exist.
    """
    if not isinstance(name, str):
        raise InvalidArgument(f"flavor must be a flavor name, got {name!r}.")
    if name in BUILTIN_FLAVORS:
        return cast(Flavor, importlib.import_module(BUILTIN_FLAVORS[name]))
    ep = _entry_points().get(name)
    if ep is None:
        available = available_flavors()
        raise UnknownFlavor(
            f"No flavor named {name!r}. Available: {', '.join(available)}.", name, available
        )
    return cast(Flavor, ep.load())


def flavor_for(obj: Any) -> Flavor:
    """The first flavor whose ``matches`` accepts ``obj``.

    Raises:
        UnknownFlavor: none does; the message says how to save it anyway.
    """
    names = [*MATCH_ORDER, *sorted(set(_entry_points()) - set(BUILTIN_FLAVORS))]
    for name in names:
        try:
            module = get_flavor(name)
        except ModelpackError:
            continue
        if module.matches(obj):
            return module
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    raise UnknownFlavor(
        f"Cannot save an object of type {kind}: no flavor recognizes it. Available flavors: "
        f"{', '.join(available_flavors())}. To save custom code, subclass "
        f"modelpack.PythonModel (or pass a plain function); to support a new framework, "
        f"write a flavor module and register it in the {ENTRY_POINT_GROUP!r} entry-point group.",
        kind,
        available_flavors(),
    )


def require(module: str, flavor: str, extra: str, package: str | None = None) -> Any:
    """Import ``module`` for ``flavor``, or raise ``MissingDependency`` naming the extra."""
    from modelpack.errors import MissingDependency

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependency(
            f"The {flavor!r} flavor needs {package or module}. Install it with: "
            f"pip install 'modelpack[{extra}]'",
            flavor,
            extra,
        ) from None


def check_options(flavor: str, verb: str, options: Mapping[str, Any], allowed: tuple[str, ...]):
    """Raise ``InvalidArgument`` for an option ``flavor``'s ``verb`` does not take."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        takes = ", ".join(allowed) if allowed else "no options"
        raise InvalidArgument(
            f"The {flavor!r} flavor's {verb} does not take {unknown[0]!r}. It takes: {takes}."
        )


def __getattr__(name: str) -> Any:
    # Columns (what a column signature hands a flavor's predict) needs numpy: imported on
    # first use, so importing the flavor contract stays cheap.
    if name == "Columns":
        from modelpack.enforcement import Columns

        return Columns
    raise AttributeError(f"module 'modelpack.flavor' has no attribute {name!r}")
