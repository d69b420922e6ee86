"""The fluent tracking API: ``start_run``, ``log_param``, ``log_metric``, ``log_model``...

The active run is context-local (``contextvars``): each thread and each asyncio task has its
own, so concurrent training loops never log into each other's runs. ``set_tracking_uri`` and
``set_experiment`` are process-wide, exactly like setting ``MODELPACK_TRACKING_URI`` and
``MODELPACK_EXPERIMENT_NAME``.
"""

from __future__ import annotations

import contextvars
import os
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from modelpack import run_context
from modelpack.client import Client
from modelpack.entities import Metric, ModelInfo, ModelVersion, Run, RunStatus
from modelpack.errors import InvalidArgument

__all__ = [
    "ActiveRun",
    "active_run",
    "end_run",
    "get_run",
    "get_tracking_uri",
    "log_artifact",
    "log_artifacts",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "register_model",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]

DEFAULT_EXPERIMENT = "Default"
_active: contextvars.ContextVar[tuple[ActiveRun, ...]] = contextvars.ContextVar(
    "modelpack_active_runs", default=()
)


class ActiveRun:
    """The run ``start_run`` began; a context manager that ends it (FAILED if the block raised)."""

    def __init__(self, run: Run, client: Client) -> None:
        self._run = run
        self.client = client

    @property
    def info(self) -> Any:
        return self._run.info

    @property
    def data(self) -> Any:
        return self.client.get_run(self._run.info.run_id).data

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        status = RunStatus.FINISHED if exc_type is None else RunStatus.FAILED
        if exc_type is KeyboardInterrupt:
            status = RunStatus.KILLED
        stack = _active.get()
        if self in stack:
            while stack and stack[-1] is not self:  # nested runs left open end with this one
                end_run(status)
                stack = _active.get()
            end_run(status)

    def __repr__(self) -> str:
        return f"<ActiveRun {self._run.info.run_id} {self._run.info.run_name!r}>"


def set_tracking_uri(uri: str) -> None:
    """Use this store for the rest of the process (same as ``MODELPACK_TRACKING_URI``)."""
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"Expected a tracking URI, got {uri!r}.")
    os.environ["MODELPACK_TRACKING_URI"] = uri


def get_tracking_uri() -> str:
    from modelpack.store import default_tracking_uri

    return default_tracking_uri()


def set_experiment(name: str) -> None:
    """Log new runs into experiment ``name`` (created on first use)."""
    from modelpack.store.validation import name as check_name

    os.environ["MODELPACK_EXPERIMENT_NAME"] = check_name(name, "Experiment name")


def active_run() -> ActiveRun | None:
    """The innermost run started in this thread or task, or ``None``."""
    stack = _active.get()
    return stack[-1] if stack else None


def start_run(
    experiment: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    tags: Mapping[str, Any] | None = None,
) -> ActiveRun:
    """Start a run and make it the active one in this thread or task.

    Example:
        >>> with modelpack.start_run(experiment="churn") as run:
        ...     modelpack.log_metric("accuracy", 0.93)
    """
    stack = _active.get()
    if stack and not nested:
        raise InvalidArgument(
            f"Run {stack[-1].info.run_id} is already active. End it with end_run(), or pass "
            f"nested=True to start a child run."
        )
    client = stack[-1].client if stack else Client()
    name = experiment or os.environ.get("MODELPACK_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
    exp = client.store.get_or_create_experiment(name)
    all_tags = {**run_context.source_tags(), **{str(k): v for k, v in (tags or {}).items()}}
    parent = stack[-1].info.run_id if stack else None
    if parent:
        all_tags["modelpack.parentRunId"] = parent
    run = client.create_run(
        exp.experiment_id, run_name=run_name, tags=all_tags, parent_run_id=parent
    )
    active = ActiveRun(run, client)
    _active.set((*stack, active))
    return active


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End the active run with ``status`` (FINISHED, FAILED or KILLED)."""
    stack = _active.get()
    if not stack:
        return
    top = stack[-1]
    _active.set(stack[:-1])
    top.client.set_terminated(top.info.run_id, status)


def _require_run() -> ActiveRun:
    run = active_run()
    if run is None:
        raise InvalidArgument(
            "No active run: call modelpack.start_run() first (or use a Client with a run_id)."
        )
    return run


def log_param(key: str, value: Any) -> None:
    run = _require_run()
    run.client.log_param(run.info.run_id, key, value)


def log_params(params: Mapping[str, Any]) -> None:
    run = _require_run()
    run.client.log_batch(run.info.run_id, params=params)


def log_metric(
    key: str, value: float, step: int | None = None, timestamp: int | None = None
) -> None:
    run = _require_run()
    run.client.log_batch(run.info.run_id, metrics=[(key, value, timestamp, step or 0)])


def log_metrics(
    metrics: Mapping[str, float], step: int | None = None, timestamp: int | None = None
) -> None:
    """Log several metrics at one step, in one transaction."""
    run = _require_run()
    stamp = timestamp or int(time.time() * 1000)
    run.client.log_batch(
        run.info.run_id, metrics=[Metric(k, v, stamp, step or 0) for k, v in metrics.items()]
    )


def set_tag(key: str, value: Any) -> None:
    run = _require_run()
    run.client.set_tag(run.info.run_id, key, value)


def set_tags(tags: Mapping[str, Any]) -> None:
    run = _require_run()
    run.client.log_batch(run.info.run_id, tags=tags)


def log_artifact(local_path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    run = _require_run()
    run.client.log_artifact(run.info.run_id, local_path, artifact_path)


def log_artifacts(local_dir: str | os.PathLike[str], artifact_path: str | None = None) -> None:
    run = _require_run()
    run.client.log_artifacts(run.info.run_id, local_dir, artifact_path)


def log_model(
    model: Any, name: str, *, registered_model_name: str | None = None, **save_kwargs: Any
) -> ModelInfo:
    """Save ``model`` as a package into the active run's artifacts (and register it if asked)."""
    run = _require_run()
    return run.client.log_model(
        run.info.run_id, model, name, registered_model_name=registered_model_name, **save_kwargs
    )


def register_model(
    model_uri: str, name: str, tags: Mapping[str, Any] | None = None, description: str | None = None
) -> ModelVersion:
    """Register the package at ``model_uri`` as a new version of ``name``."""
    run = active_run()
    client = run.client if run else Client()
    return client.register_model(model_uri, name, tags=tags, description=description)


def search_runs(
    experiment_names: Sequence[str] | None = None, filter_string: str | None = None, **kwargs: Any
) -> Any:
    """``Client().search_runs`` over experiments by name (default: the current experiment)."""
    if experiment_names is None and "experiment_ids" not in kwargs:
        experiment_names = [os.environ.get("MODELPACK_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT]
    return Client().search_runs(
        experiment_names=experiment_names, filter_string=filter_string, **kwargs
    )


def log_input(
    dataset: Any, context: str | None = None, tags: Mapping[str, Any] | None = None
) -> None:
    """Record that the active run used ``dataset`` (from ``modelpack.data.from_pandas`` or
    ``from_numpy``): its name, digest, schema, profile and source, and ``context`` (e.g.
    "training") as the input's ``mlflow.data.context`` tag. The data itself is not copied."""
    run = _require_run()
    run.client.log_inputs(run.info.run_id, [input_of(dataset, context, tags)])


def input_of(dataset: Any, context: str | None, tags: Mapping[str, Any] | None) -> Any:
    """The ``DatasetInput`` record ``log_input`` writes."""
    from modelpack.data import CONTEXT_TAG, Dataset
    from modelpack.entities import DatasetInput, InputTag

    if not isinstance(dataset, Dataset):
        raise InvalidArgument(
            f"log_input needs a dataset from modelpack.data.from_pandas(df) or "
            f"modelpack.data.from_numpy(array), got {type(dataset).__name__}."
        )
    all_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    if context is not None:
        if not isinstance(context, str) or not context:
            raise InvalidArgument(
                f"context is a non-empty string such as 'training', got {context!r}."
            )
        all_tags[CONTEXT_TAG] = context
    return DatasetInput(dataset.to_entity(), tuple(InputTag(k, v) for k, v in all_tags.items()))


def get_run(run_id: str) -> Run:
    """The run ``run_id``, with its data and inputs as they are now."""
    run = active_run()
    return (run.client if run else Client()).get_run(run_id)
