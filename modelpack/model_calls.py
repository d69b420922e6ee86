"""What ``modelpack.sklearn``, ``.pytorch``, ``.onnx`` and ``.pyfunc`` share: MLflow's
``save_model``/``log_model``/``load_model`` arguments, mapped onto ``modelpack.save``,
``log_model`` and ``load``.

Each MLflow argument is either mapped (``pip_requirements`` -> ``requirements``...) or refused
with an error naming it and what to use instead; none is silently ignored. An argument left at
MLflow's default (``None``, ``step=0``) asks for nothing and is accepted.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelpack.entities import ModelInfo
from modelpack.errors import InvalidArgument, NotFound

__all__ = [
    "COMMON_REFUSED",
    "LOG_REFUSED",
    "check_refused",
    "load_package",
    "log",
    "model_name",
    "requirement_lines",
    "save",
]

# MLflow arguments with no modelpack counterpart: why, and what to use instead.
COMMON_REFUSED: Mapping[str, str] = {
    "conda_env": (
        "modelpack environments are pip-only: pass pip_requirements=[...] (a list of "
        "requirement lines, or the path of a requirements file) instead"
    ),
    "mlflow_model": "modelpack writes its own manifest (and MLmodel file); drop the argument",
    "extra_files": (
        "a package holds only the files its flavor writes; to ship files with a model, save a "
        "modelpack.pyfunc.PythonModel with artifacts={'name': path} (its load_context gets them)"
    ),
}
LOG_REFUSED: Mapping[str, str] = {
    "params": (
        "MLflow 3 logs these on its LoggedModel; log them on the run with modelpack.log_params(...)"
    ),
    "tags": (
        "MLflow 3 sets these on its LoggedModel; set run tags with modelpack.set_tags(...), or "
        "tag a registered version with Client().set_model_version_tag(...)"
    ),
    "model_type": "modelpack has no logged-model type; drop the argument",
    "step": "modelpack links no metric step to a logged model; drop the argument",
    "model_id": (
        "modelpack gives every package its own model_id when it is saved; drop the argument"
    ),
}
# MLflow's defaults for these: passing them asks for nothing.
_DEFAULTS: Mapping[str, Any] = {"step": 0, "save_as_external_data": True}


def check_refused(call: str, given: Mapping[str, Any], refused: Mapping[str, str]) -> None:
    """Raise ``InvalidArgument`` for the first argument of ``given`` that asks for something
    modelpack does not do, ``TypeError`` for one that MLflow's ``call`` does not take either."""
    for key, value in given.items():
        if key in refused:
            if value is None or (key in _DEFAULTS and value == _DEFAULTS[key]):
                continue
            raise InvalidArgument(f"{call}: {key}= is not supported: {refused[key]}.")
        raise TypeError(f"{call}() got an unexpected keyword argument {key!r}")


def model_name(call: str, artifact_path: str | None, name: str | None) -> str:
    """MLflow 3's rule: ``name``, or the deprecated ``artifact_path``; not both."""
    if name is not None and artifact_path is not None:
        raise InvalidArgument(
            f"{call}: both artifact_path (deprecated in MLflow 3) and name were given; pass "
            f"only name."
        )
    chosen = name if name is not None else artifact_path
    if chosen is None:
        raise InvalidArgument(
            f"{call}: pass the model's name in the run, e.g. {call}(model, name='model') (or "
            f"MLflow 2's positional artifact_path: {call}(model, 'model'))."
        )
    if not isinstance(chosen, str) or not chosen.strip("/"):
        raise InvalidArgument(f"{call}: name must be a non-empty path, got {chosen!r}.")
    return chosen


_MAX_NESTING = 10


def _read_requirements(path: Path, what: str, seen: tuple[Path, ...]) -> list[str]:
    if len(seen) > _MAX_NESTING or path.resolve() in seen:
        raise InvalidArgument(f"{what}: {str(path)!r} includes itself (through -r lines).")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFound(f"{what}: the requirements file {str(path)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what}: cannot read {str(path)!r}: {exc}.") from None
    return _expand(text.splitlines(), path.parent, what, (*seen, path.resolve()))


def _expand(lines: Sequence[Any], base: Path, what: str, seen: tuple[Path, ...]) -> list[str]:
    out: list[str] = []
    for line in lines:
        if not isinstance(line, str):
            raise InvalidArgument(f"{what}: expected requirement strings, got {line!r}.")
        text = line.split(" #", 1)[0].strip()
        if not text or text.startswith("#"):
            continue
        for flag in ("-r ", "--requirement ", "--requirement="):
            if text.startswith(flag):
                nested = base / text[len(flag) :].strip()
                out += [r for r in _read_requirements(nested, what, seen) if r not in out]
                break
        else:
            if text.startswith(("-c ", "--constraint")):
                raise InvalidArgument(
                    f"{what}: constraint files ({text!r}) are not supported; pin the versions "
                    f"in the requirement lines themselves."
                )
            if text not in out:
                out.append(text)
    return out


def requirement_lines(value: Any, what: str) -> list[str] | None:
    """MLflow's ``pip_requirements``: a list of lines, or the path of a requirements file
    (``-r`` lines included, as pip reads them). ``None`` stays ``None``."""
    from modelpack.environment import check_requirements

    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        lines = _read_requirements(Path(value), what, ())
    elif isinstance(value, Sequence) or isinstance(value, set | frozenset):
        lines = _expand(list(value), Path.cwd(), what, ())
    else:
        raise InvalidArgument(
            f"{what} must be a list of requirement lines or the path of a requirements file, "
            f"got {type(value).__name__}."
        )
    return check_requirements(lines, what)


def _save_kwargs(
    call: str,
    signature: Any,
    input_example: Any,
    pip_requirements: Any,
    extra_pip_requirements: Any,
    metadata: Any,
    options: Mapping[str, Any],
) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(options)
    if signature is not None:
        kwargs["signature"] = signature
    if input_example is not None:
        kwargs["input_example"] = input_example
    requirements = requirement_lines(pip_requirements, f"{call}: pip_requirements")
    if requirements is not None:
        kwargs["requirements"] = requirements
    extra = requirement_lines(extra_pip_requirements, f"{call}: extra_pip_requirements")
    if extra:
        kwargs["extra_requirements"] = extra
    if metadata is not None:
        kwargs["metadata"] = metadata
    return kwargs


def save(
    call: str,
    model: Any,
    path: str | os.PathLike[str],
    *,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: Any = None,
    **options: Any,
) -> None:
    """``modelpack.save`` with MLflow's argument names (MLflow's ``save_model`` returns None)."""
    from modelpack.package import save as save_package

    kwargs = _save_kwargs(
        call, signature, input_example, pip_requirements, extra_pip_requirements, metadata, options
    )
    save_package(model, path, **kwargs)


def log(
    call: str,
    model: Any,
    name: str,
    *,
    registered_model_name: str | None = None,
    await_registration_for: Any = None,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: Any = None,
    **options: Any,
) -> ModelInfo:
    """The active run's ``log_model`` with MLflow's argument names.

    ``await_registration_for`` is accepted with any value: a registration here is finished
    (copied, hashed, recorded) when ``log_model`` returns, so there is nothing to wait for.
    """
    from modelpack import tracking

    if await_registration_for is not None and (
        isinstance(await_registration_for, bool)
        or not isinstance(await_registration_for, int | float)
        or await_registration_for < 0
    ):
        raise InvalidArgument(
            f"{call}: await_registration_for must be a number of seconds >= 0, got "
            f"{await_registration_for!r}."
        )
    kwargs = _save_kwargs(
        call, signature, input_example, pip_requirements, extra_pip_requirements, metadata, options
    )
    return tracking.log_model(model, name, registered_model_name=registered_model_name, **kwargs)


def load_package(
    call: str, model_uri: Any, flavor: str | None, dst_path: Any = None, **options: Any
) -> Any:
    """``modelpack.load(model_uri, flavor=flavor)``; ``dst_path`` (MLflow's download folder)
    is refused: packages are resolved into modelpack's own verified cache."""
    from modelpack.errors import UnknownFlavor
    from modelpack.package import load

    if dst_path is not None:
        raise InvalidArgument(
            f"{call}: dst_path= is not supported: modelpack resolves a package into its own "
            f"verified cache (MODELPACK_CACHE_DIR). For a copy of a run's model, use "
            f"modelpack.Client().download_artifacts(run_id, path, dst_path)."
        )
    try:
        return load(model_uri, flavor=flavor, **options)
    except UnknownFlavor as exc:
        if flavor is None or exc.name != flavor:
            raise
        stored = ", ".join(exc.available)
        raise UnknownFlavor(
            f"{call}: {model_uri!s} is not a {flavor} model (it stores: {stored}). Load it with "
            f"modelpack.pyfunc.load_model(...) (a predict for any flavor), or the flavor "
            f"namespace of the one it stores.",
            exc.name,
            exc.available,
        ) from None
