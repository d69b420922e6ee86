"""The fluent tracking API: ``start_run``, ``log_param``, ``log_metric``, ``log_model``...

The active run is context-local (``contextvars``): each thread and each asyncio task has its
own, so concurrent training loops never log into each other's runs. ``set_tracking_uri`` and
``set_experiment`` are process-wide, exactly like setting ``MODELPACK_TRACKING_URI`` and
``MODELPACK_EXPERIMENT_NAME`` (or ``MODELPACK_EXPERIMENT_ID``).

Logging with no active run starts one, as MLflow does, ended when the process exits; an ended
run takes no more logging (``start_run(run_id=...)`` resumes it).

``log_metric``, ``log_param(s)``, ``set_tag(s)`` and ``log_metrics`` return at once: the points
queue and a background thread writes them (``modelpack.log_queue``). ``end_run``,
``modelpack.flush()`` and process exit write what is queued; a write that failed raises
``NotStored`` at the run's next logging call or at its ``end_run``. ``synchronous=True`` (or
``MODELPACK_SYNC_LOGGING=1``) writes before returning.
"""

from __future__ import annotations

import contextvars
import os
import sys
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from modelpack import log_queue, run_context
from modelpack.client import Client, MlflowClient, PagedList, check_synchronous, runs_frame
from modelpack.entities import Metric, ModelInfo, ModelVersion, Run, RunStatus, ViewType
from modelpack.errors import InvalidArgument, NotFound
from modelpack.experiments import current_experiment
from modelpack.uris import redact

__all__ = [
    "ActiveRun",
    "MlflowClient",
    "active_run",
    "delete_tag",
    "end_run",
    "flush",
    "get_artifact_uri",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_model",
    "log_param",
    "log_params",
    "register_model",
    "require_run",
    "search_runs",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]

PARENT_TAG = "modelpack.parentRunId"
NOTE_TAG = "modelpack.note.content"  # MLflow's mlflow.note.content: the run's description
_active: contextvars.ContextVar[tuple[ActiveRun, ...]] = contextvars.ContextVar(
    "modelpack_active_runs", default=()
)
_last: contextvars.ContextVar[tuple[Client, str] | None] = contextvars.ContextVar(
    "modelpack_last_run", default=None
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

    @property
    def inputs(self) -> Any:
        return self.client.get_run(self._run.info.run_id).inputs

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
            try:
                while stack and stack[-1] is not self:  # nested runs left open end with it
                    end_run(status)
                    stack = _active.get()
                end_run(status)
            except log_queue.NotStored as lost:
                if exc is None:
                    raise
                # The block's own exception is the one to see; what was lost rides along.
                exc.add_note(f"modelpack: {lost}")

    def __repr__(self) -> str:
        return f"<ActiveRun {self._run.info.run_id} {self._run.info.run_name!r}>"


def set_tracking_uri(uri: str) -> None:
    """Use this store for the rest of the process (same as ``MODELPACK_TRACKING_URI``)."""
    if isinstance(uri, os.PathLike):
        uri = os.fspath(uri)
    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"Expected a tracking URI, got {uri!r}.")
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme not in ("sqlite", "postgresql", "postgres", "http", "https"):
        raise InvalidArgument(
            f"Tracking URI {redact(uri)!r}: modelpack's tracking store is SQLite, PostgreSQL "
            f"or a modelpack server (sqlite:///path/modelpack.db, postgresql://user@host/db, "
            f"http://host:5000). MLflow would have accepted a folder or file: URI here; to "
            f"bring such a store over, run "
            f"`modelpack import-mlflow --from {redact(uri)} --to sqlite:///modelpack.db`."
        )
    os.environ["MODELPACK_TRACKING_URI"] = uri


def get_tracking_uri() -> str:
    from modelpack.store import default_tracking_uri

    return default_tracking_uri()


def active_run() -> ActiveRun | None:
    """The innermost run started in this thread or task, or ``None``."""
    stack = _active.get()
    return stack[-1] if stack else None


def last_active_run() -> Run | None:
    """The active run, else the run this thread or task ended last (as it is now), else None."""
    run = active_run()
    if run is not None:
        return run.client.get_run(run.info.run_id)
    last = _last.get()
    return None if last is None else last[0].get_run(last[1])


def _client() -> Client:
    run = active_run()
    return run.client if run else Client()


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
    *,
    experiment: str | None = None,
) -> ActiveRun:
    """Start a run, or resume the run ``run_id``, and make it the active one in this thread or
    task. MLflow's arguments; ``experiment=`` names the experiment (created on first use).

    Raises:
        NotFound: ``run_id`` or ``experiment_id`` names nothing.
        InvalidArgument: a run is active already and ``nested`` is False.

    Example:
        >>> with modelpack.start_run(experiment="churn") as run:
        ...     modelpack.log_metric("accuracy", 0.93)
    """
    if log_system_metrics:
        raise InvalidArgument(
            "modelpack does not collect system metrics (MLflow would have logged CPU, memory "
            "and GPU use as system/* metrics): leave log_system_metrics out, and log what you "
            "need with log_metrics."
        )
    stack = _active.get()
    if stack and not nested and parent_run_id is None:
        raise InvalidArgument(
            f"Run {stack[-1].info.run_id} is already active. End it with end_run(), or pass "
            f"nested=True to start a child run."
        )
    if parent_run_id is not None and stack and stack[-1].info.run_id != parent_run_id:
        raise InvalidArgument(
            f"parent_run_id {parent_run_id!r} is not the active run {stack[-1].info.run_id!r}: "
            f"a child run starts under the active run."
        )
    client = stack[-1].client if stack else Client()
    extra = {str(k): v for k, v in (tags or {}).items()}
    if description is not None:
        extra[NOTE_TAG] = description
    if run_id is not None:
        run = _resume(client, stack, run_id, experiment_id, experiment, run_name, extra)
    else:
        run = _create(client, stack, experiment_id, experiment, run_name, parent_run_id, extra)
    active = ActiveRun(run, client)
    _active.set((*stack, active))
    return active


def _resume(
    client: Client,
    stack: tuple[ActiveRun, ...],
    run_id: str,
    experiment_id: str | None,
    experiment: str | None,
    run_name: str | None,
    tags: Mapping[str, Any],
) -> Run:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidArgument(f"run_id must be a run's id (a string), got {run_id!r}.")
    if any(a.info.run_id == run_id for a in stack):
        raise InvalidArgument(f"Run {run_id!r} is already active in this thread or task.")
    try:
        existing = client.get_run(run_id)
    except NotFound:
        raise NotFound(
            f"No run with id {run_id!r} to resume. start_run's first argument is the id of a run "
            f"to resume, as in MLflow; to start a new run in an experiment, pass "
            f"experiment_id=... or experiment={run_id!r} (or call set_experiment first)."
        ) from None
    if experiment_id is not None and experiment_id != existing.info.experiment_id:
        raise InvalidArgument(
            f"Run {run_id!r} belongs to experiment {existing.info.experiment_id!r}, not "
            f"{experiment_id!r}; leave experiment_id out to resume it."
        )
    if experiment is not None:
        found = client.get_experiment(existing.info.experiment_id)
        if found.name != experiment:
            raise InvalidArgument(
                f"Run {run_id!r} belongs to experiment {found.name!r}, not {experiment!r}; "
                f"leave experiment out to resume it."
            )
    run = client.resume_run(run_id, run_name)
    if not tags:
        return run
    client.log_batch(run_id, tags=tags)
    return client.get_run(run_id)


def _create(
    client: Client,
    stack: tuple[ActiveRun, ...],
    experiment_id: str | None,
    experiment: str | None,
    run_name: str | None,
    parent_run_id: str | None,
    tags: Mapping[str, Any],
) -> Run:
    if experiment_id is not None and experiment is not None:
        raise InvalidArgument("Pass experiment_id or experiment (a name), not both.")
    parent = parent_run_id or (stack[-1].info.run_id if stack else None)
    if parent is not None and not stack:
        client.get_run(parent)  # NotFound names a mistyped parent
    all_tags = {**_source_tags(), **tags}
    if parent:
        all_tags[PARENT_TAG] = parent
    if experiment_id is not None:
        return client.create_run(
            client.get_experiment(str(experiment_id)).experiment_id,
            run_name=run_name, tags=all_tags, parent_run_id=parent,
        )  # fmt: skip
    key = (client.tracking_uri, experiment, *_experiment_variables())
    cached = _experiment_ids.get(key)
    if cached is not None:
        try:
            return client.create_run(cached, run_name=run_name, tags=all_tags, parent_run_id=parent)
        except (InvalidArgument, NotFound):  # deleted since: look it up again, and say so
            _experiment_ids.pop(key, None)
    if experiment is not None:
        exp = client.store.get_or_create_experiment(experiment)
    else:
        exp = current_experiment(client)
    run = client.create_run(
        exp.experiment_id, run_name=run_name, tags=all_tags, parent_run_id=parent
    )
    if len(_experiment_ids) >= 64:
        _experiment_ids.clear()
    _experiment_ids[key] = exp.experiment_id
    return run


# Caches that keep a sweep of start_run calls from paying the same lookups each time:
# the experiment id per (store, experiment named), and the source tags per script.
_experiment_ids: dict[tuple[str | None, ...], str] = {}
_sources: dict[tuple[str | None, ...], dict[str, str]] = {}


def _experiment_variables() -> tuple[str | None, str | None]:
    from modelpack.experiments import ID_VARIABLE, NAME_VARIABLE

    return os.environ.get(ID_VARIABLE), os.environ.get(NAME_VARIABLE)


def _source_tags() -> dict[str, str]:
    """``run_context.source_tags()``, computed once per script: finding the script and asking
    git for its commit (a subprocess) would otherwise cost each run several milliseconds. A
    run started from a runner (pytest, a notebook kernel) looks again each time, since the
    caller's file is the source then."""
    main = getattr(sys.modules.get("__main__"), "__file__", None)
    key = (main, os.getcwd(), os.environ.get("MODELPACK_USER"))
    cached = _sources.get(key)
    if cached is not None:
        return dict(cached)
    tags = run_context.source_tags()
    if main is not None and tags.get("modelpack.source.name") == str(_resolved(main)):
        if len(_sources) >= 16:
            _sources.clear()
        _sources[key] = dict(tags)
    return tags


def _resolved(path: str) -> str:
    from pathlib import Path

    try:
        return str(Path(path).resolve())
    except OSError:
        return path


def end_run(status: str = RunStatus.FINISHED) -> None:
    """End the active run with ``status`` (FINISHED, FAILED or KILLED); no-op with none.
    What was logged to it is written first.

    Raises:
        NotStored: items logged to the run were not stored (the run is ended all the same).
    """
    stack = _active.get()
    if not stack:
        return
    top = stack[-1]
    try:
        top.client.set_terminated(top.info.run_id, status)
    except log_queue.NotStored:
        _ended(stack, top)
        raise
    _ended(stack, top)


def _ended(stack: tuple[ActiveRun, ...], top: ActiveRun) -> None:
    _active.set(stack[:-1])
    _autostarted[:] = [(run, end) for run, end in _autostarted if run is not top]
    _last.set((top.client, top.info.run_id))


def flush() -> None:
    """Write everything this process logged (to every store) and wait for it.

    Raises:
        NotStored: items logged earlier were not stored (named in the message; dropped).
    """
    log_queue.flush_all()


def require_run() -> ActiveRun:
    """The active run; with none, a new one is started, as MLflow's fluent calls do.

    A run started this way is ended when the process exits: FINISHED, or FAILED if an
    exception ended the program (MLflow would end it FINISHED either way).
    """
    run = active_run()
    if run is None:
        run = start_run()
        _end_at_exit(run)
    return run


# Runs the fluent calls started on their own, with the status each ends with at exit.
_autostarted: list[tuple[ActiveRun, str]] = []


def _end_at_exit(run: ActiveRun) -> None:
    import atexit
    import sys

    if not _autostarted:
        previous = sys.excepthook

        def hook(*args: Any) -> None:
            _autostarted[:] = [(started, RunStatus.FAILED) for started, _ in _autostarted]
            previous(*args)

        sys.excepthook = hook
        atexit.register(_end_autostarted)
    _autostarted.append((run, RunStatus.FINISHED))


def _end_autostarted() -> None:
    for run, status in _autostarted:
        try:
            if run.client.get_run(run.info.run_id).info.status == RunStatus.RUNNING:
                run.client.set_terminated(run.info.run_id, status)
        except log_queue.NotStored as exc:  # the process is exiting: stderr is all there is
            sys.stderr.write(f"modelpack: {exc}\n")
        except Exception:  # noqa: BLE001 - the process is exiting: no one to tell
            pass


def _target(run_id: str | None) -> tuple[Client, str]:
    """The client and run a call with an optional ``run_id=`` logs to."""
    if run_id is None:
        run = require_run()
        return run.client, run.info.run_id
    return _client(), run_id


def get_run(run_id: str) -> Run:
    """The run ``run_id``, with its data and inputs as they are now."""
    return _client().get_run(run_id)


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    """Log one param of the active run; returns ``value``, as MLflow does."""
    run = require_run()
    return run.client.log_param(run.info.run_id, key, value, synchronous)


def log_params(
    params: Mapping[str, Any], synchronous: bool | None = None, run_id: str | None = None
) -> None:
    check_synchronous(synchronous)
    client, target = _target(run_id)
    client.log_batch(target, params=params, synchronous=synchronous)


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
) -> None:
    """Log one point of a metric (MLflow's argument order: ``synchronous`` before
    ``timestamp``); ``step`` defaults to 0 and ``timestamp`` (epoch ms) to now. Returns at
    once: the point is written in the background (``synchronous=True``: before returning)."""
    check_synchronous(synchronous)
    client, target = _target(run_id)
    client.log_metric(target, key, value, timestamp, step, synchronous)


def log_metrics(
    metrics: Mapping[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
) -> None:
    """Log several metrics at one step, stored together (one transaction)."""
    check_synchronous(synchronous)
    if not isinstance(metrics, Mapping):
        raise InvalidArgument(
            f"log_metrics takes a dict of name to value, got {type(metrics).__name__}."
        )
    client, target = _target(run_id)
    stamp = timestamp or int(time.time() * 1000)
    client.log_batch(
        target,
        metrics=[Metric(k, v, stamp, step or 0) for k, v in metrics.items()],
        synchronous=synchronous,
    )


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    run = require_run()
    run.client.set_tag(run.info.run_id, key, value, synchronous)


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> None:
    check_synchronous(synchronous)
    run = require_run()
    run.client.log_batch(run.info.run_id, tags=tags, synchronous=synchronous)


def delete_tag(key: str) -> None:
    """Remove a tag of the active run (``NotFound`` if it has none by that key)."""
    run = require_run()
    run.client.delete_tag(run.info.run_id, key)


def log_artifact(
    local_path: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    client, target = _target(run_id)
    client.log_artifact(target, local_path, artifact_path)


def log_artifacts(
    local_dir: str | os.PathLike[str], artifact_path: str | None = None, run_id: str | None = None
) -> None:
    client, target = _target(run_id)
    client.log_artifacts(target, local_dir, artifact_path)


def get_artifact_uri(artifact_path: str | None = None) -> str:
    """The URI of the active run's artifacts, or of ``artifact_path`` inside them."""
    run = require_run()
    root = run.info.artifact_uri.rstrip("/")
    if not artifact_path:
        return root
    from modelpack.paths import check_relative

    check_relative(artifact_path, "Artifact path")
    return f"{root}/{artifact_path.lstrip('/')}"


def log_model(
    model: Any, name: str, *, registered_model_name: str | None = None, **save_kwargs: Any
) -> ModelInfo:
    """Save ``model`` as a package into the active run's artifacts (and register it if asked)."""
    run = require_run()
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
    experiment_ids: Sequence[str] | None = None,
    filter_string: str = "",
    run_view_type: str | int = ViewType.ACTIVE_ONLY,
    max_results: int = 100_000,
    order_by: Sequence[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: Sequence[str] | None = None,
) -> Any:
    """Runs matching ``filter_string``, as MLflow's fluent ``search_runs``: a pandas DataFrame
    (``run_id``, ``experiment_id``, ``status``, ``artifact_uri``, ``start_time``,
    ``end_time``, ``run_name``, ``user_id``, ``metrics.*``, ``params.*``, ``tags.*``), or a list
    of ``Run`` with ``output_format="list"``.

    Default experiments: the current one (``set_experiment``), or every active one with
    ``search_all_experiments=True``. An experiment name that does not exist matches nothing.
    """
    if output_format not in ("pandas", "list"):
        raise InvalidArgument(f"output_format must be 'pandas' or 'list', got {output_format!r}.")
    if experiment_ids and experiment_names:
        raise InvalidArgument("Pass experiment_ids or experiment_names, not both.")
    if isinstance(experiment_ids, str) or isinstance(experiment_names, str):
        raise InvalidArgument(
            'experiment_ids and experiment_names are lists: write ["..."] around one.'
        )
    if isinstance(max_results, bool) or not isinstance(max_results, int) or max_results < 1:
        raise InvalidArgument(f"max_results must be a positive integer, got {max_results!r}.")
    client = _client()
    if experiment_names:
        found = [client.get_experiment_by_name(n) for n in experiment_names]
        ids = [e.experiment_id for e in found if e is not None]
    elif experiment_ids:
        ids = [str(i) for i in experiment_ids]
    elif search_all_experiments:
        ids = [e.experiment_id for e in client.store.search_experiments()]
    else:
        ids = [current_experiment(client).experiment_id]
    runs: list[Run] = []
    token = None
    while ids and len(runs) < max_results:
        page = client.search_runs(
            ids,
            filter_string,
            run_view_type,
            min(max_results - len(runs), 50_000),
            order_by,
            token,
        )
        runs.extend(page)
        token = page.token
        if token is None:
            break
    if output_format == "list":
        return PagedList(runs, None)
    return runs_frame(runs)


def log_input(
    dataset: Any, context: str | None = None, tags: Mapping[str, Any] | None = None
) -> None:
    """Record that the active run used ``dataset`` (from ``modelpack.data.from_pandas`` or
    ``from_numpy``): its name, digest, schema, profile and source, and ``context`` (e.g.
    "training") as the input's ``mlflow.data.context`` tag. The data itself is not copied."""
    run = require_run()
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
