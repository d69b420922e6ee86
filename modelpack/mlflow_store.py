"""``import_mlflow``: copy an MLflow tracking store and registry into a modelpack store.

Experiments, runs (with every metric point, params, tags and artifacts), registered models,
versions (their MLflow models converted to modelpack packages), stages, aliases, tags and
descriptions are copied; run ids and version numbers are kept, experiment ids where the
destination has them free. Each object is copied in one destination transaction (a run's
artifacts first, then its rows), and what the destination already holds is left alone, so a
second import copies nothing and an import killed midway is finished by the next one.

Example:
    >>> report = import_mlflow("./mlruns", Client("sqlite:///store.db"))  # doctest: +SKIP
    >>> print(report.table())  # doctest: +SKIP
"""

from __future__ import annotations

import re
import sys
import tempfile
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from modelpack.errors import InvalidArgument, ModelpackError
from modelpack.uris import redact

if TYPE_CHECKING:
    from modelpack.client import Client
    from modelpack.mlflow_readers import Reader, SourceModel, SourceRun, SourceVersion

__all__ = ["KINDS", "Counts", "ImportReport", "import_mlflow", "open_reader"]

KINDS = ("experiments", "runs", "registered models", "model versions", "aliases")
SINGULAR = {
    "experiments": "experiment",
    "runs": "run",
    "registered models": "registered model",
    "model versions": "model version",
    "aliases": "alias",
}


@dataclass
class Counts:
    source: int = 0
    copied: int = 0
    existing: int = 0
    failed: int = 0


@dataclass
class ImportReport:
    """What an import found in the source and what it did with each kind of object."""

    source: str
    counts: dict[str, Counts] = field(default_factory=lambda: {k: Counts() for k in KINDS})
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # kind, what, why
    metric_points: int = 0
    artifact_files: int = 0

    @property
    def copied(self) -> int:
        return sum(c.copied for c in self.counts.values())

    def _count(self, kind: str, outcome: str, what: str = "", why: str = "") -> None:
        counts = self.counts[kind]
        counts.source += 1
        setattr(counts, outcome, getattr(counts, outcome) + 1)
        if outcome == "failed":
            self.failures.append((kind, what, why))

    def table(self) -> str:
        """The count table, then each failure with its reason."""
        cells = [["kind", "source", "copied", "already there", "failed"]]
        cells += [
            [k, str(c.source), str(c.copied), str(c.existing), str(c.failed)]
            for k, c in self.counts.items()
        ]
        widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            for row in cells
        ]
        failed = sum(c.failed for c in self.counts.values())
        if self.metric_points or self.artifact_files:
            lines.append(
                f"Copied {self.metric_points} metric points and {self.artifact_files} "
                f"artifact files."
            )
        if not self.copied:
            lines.append(
                f"Nothing to copy: everything else is already there; {failed} could not be "
                f"copied (below)."
                if failed
                else "Nothing to copy: the destination has everything the source has."
            )
        lines += [f"failed: {SINGULAR[kind]} {what}: {why}" for kind, what, why in self.failures]
        return "\n".join(lines)


def import_mlflow(
    source: str,
    client: Client,
    *,
    artifacts_destination: str | None = None,
    progress: bool | None = None,
    stream: TextIO | None = None,
) -> ImportReport:
    """Copy the MLflow store at ``source`` into ``client``'s store and artifact root.

    Args:
        source: an ``mlruns`` folder or ``file:`` URI, ``sqlite:///mlflow.db``,
            ``postgresql://...``, or a tracking server's ``http://host:port``.
        artifacts_destination: the MLflow server's ``--artifacts-destination``, for reading
            ``mlflow-artifacts:/`` URIs from its database or folder without the server.
        progress: a bar on ``stream`` (default stderr); default: when it is a terminal.

    Returns:
        The report: per kind, how many the source has, how many were copied, were there
        already or failed (with why). One object that fails does not stop the others.
    """
    from modelpack import gc
    from modelpack.store import is_remote

    store = client.store
    if is_remote(store):
        raise InvalidArgument(
            f"import-mlflow writes the store's database directly (keeping MLflow's ids), so it "
            f"cannot write through the server {redact(client.tracking_uri)}: import into "
            f"the server's own store instead (--to postgresql://... or sqlite:///..., the URI "
            f"the server was started with)."
        )
    reader = open_reader(source, artifacts_destination)
    report = ImportReport(reader.description)
    experiments = reader.experiments()
    runs = [(e, r) for e in experiments for r in reader.runs(e)]
    models = reader.registered_models()
    bar = _bar(progress, stream, len(runs) + sum(len(m.versions) for m in models))
    try:
        places = _experiments(experiments, store, report)
        for experiment, run in runs:
            bar(f"run {run.run_id[:8]}")
            if experiment.experiment_id not in places:
                report._count("runs", "failed", run.run_id, "its experiment was not imported")
                continue
            _run(reader, store, run, places[experiment.experiment_id], report)
        gc.collect_registrations(client)  # copies of registrations killed before
        for model in models:
            _model(reader, client, model, report, bar)
    finally:
        bar(None)
    return report


def open_reader(uri: str, artifacts_destination: str | None = None) -> Reader:
    """The reader for the MLflow store at ``uri``.

    Args:
        artifacts_destination: where a server's ``mlflow-artifacts:/`` URIs point (its
            ``--artifacts-destination``), for reading its database or folder directly.

    Raises:
        InvalidArgument: ``uri`` names no kind of MLflow store this can read.
        NotFound: a folder that does not exist or is not an MLflow file store.
    """
    from modelpack.mlflow_readers import FileReader
    from modelpack.mlflow_rest import RestReader
    from modelpack.mlflow_sql import SqlReader

    if not isinstance(uri, str) or not uri:
        raise InvalidArgument(f"Expected an MLflow store URI, got {uri!r}.")
    scheme = uri.split(":", 1)[0].lower() if re.match(r"^[a-zA-Z][\w+.-]*:", uri) else ""
    if scheme in ("http", "https"):
        return RestReader(uri)
    if scheme.split("+")[0] in ("sqlite", "postgresql", "postgres", "mysql", "mssql"):
        return SqlReader(uri, artifacts_destination)
    if scheme in ("", "file"):
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(uri).path) if scheme else uri)
        return FileReader(path, artifacts_destination)
    raise InvalidArgument(
        f"Cannot read an MLflow store at {redact(uri)!r} (scheme {scheme!r}). Supported: a "
        f"./mlruns folder or file: URI, sqlite:///mlflow.db, postgresql://..., http://host:port."
    )


# ---------------------------------------------------------------------------- progress


def _bar(enabled: bool | None, stream: TextIO | None, total: int) -> Callable[[str | None], None]:
    """``step(label)`` advances a tqdm bar (``step(None)`` closes it); a no-op without one."""
    stream = stream or sys.stderr
    if enabled is None:
        enabled = stream.isatty()
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a nicety; the table still comes
        enabled = False
    if not enabled:
        return lambda _label: None
    bar = tqdm(total=total, unit=" objects", file=stream, dynamic_ncols=True, mininterval=0.2)

    def step(label: str | None) -> None:
        if label is None:
            bar.close()
            return
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    return step


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_EXPECTED = (ModelpackError, OSError, ValueError, KeyError)


# ---------------------------------------------------------------------------- tracking


def _experiments(
    experiments: list[Any], store: Any, report: ImportReport
) -> dict[str, tuple[str, str]]:
    """Copy the experiments; returns ``{source id: (destination id, artifact location)}``."""
    from modelpack.store import imports

    places: dict[str, tuple[str, str]] = {}
    for e in experiments:
        try:
            found = imports.experiment_by_name(store.engine, e.name)
            if found is not None:
                places[e.experiment_id] = (found, store.get_experiment(found).artifact_location)
                report._count("experiments", "existing")
                continue
            new_id = e.experiment_id
            if len(new_id) > 32 or imports.experiment_id_taken(store.engine, new_id):
                new_id = uuid.uuid4().hex
            location = f"{store.artifact_root}/{new_id}"
            imports.insert_experiment(
                store.engine,
                imports.ExperimentRecord(
                    experiment_id=new_id,
                    name=e.name,
                    artifact_location=location,
                    lifecycle_stage=e.lifecycle_stage,
                    creation_time=e.creation_time,
                    last_update_time=e.last_update_time,
                    tags=dict(e.tags),
                ),
            )
            places[e.experiment_id] = (new_id, location)
            report._count("experiments", "copied")
        except _EXPECTED as exc:
            report._count("experiments", "failed", repr(e.name), _reason(exc))
    return places


def _run(
    reader: Reader, store: Any, run: SourceRun, place: tuple[str, str], report: ImportReport
) -> None:
    from modelpack.artifacts import artifact_store
    from modelpack.store import imports

    experiment_id, location = place
    try:
        if imports.existing_run_ids(store.engine, [run.run_id]):
            report._count("runs", "existing")
            return
        points = [p for key in run.metric_keys for p in reader.metric_history(run, key)]
        artifacts = artifact_store(location)
        prefix = f"{run.run_id}/artifacts"
        # A run killed between its artifacts and its rows is redone from a clean folder.
        artifacts.delete(prefix)
        with tempfile.TemporaryDirectory(prefix="modelpack-import-") as tmp:
            local = Path(tmp, "artifacts")
            local.mkdir()
            reader.download_run_artifacts(run, local)
            files = [p for p in local.rglob("*") if p.is_file()]
            if files:
                artifacts.put_dir(local, prefix)
        imports.insert_run(
            store.engine,
            imports.RunRecord(
                run_id=run.run_id,
                experiment_id=experiment_id,
                run_name=run.run_name,
                user_id=run.user_id,
                status=run.status,
                start_time=run.start_time,
                end_time=run.end_time,
                lifecycle_stage=run.lifecycle_stage,
                artifact_uri=f"{location.rstrip('/')}/{prefix}",
                parent_run_id=run.tags.get("mlflow.parentRunId"),
                params=dict(run.params),
                tags=dict(run.tags),
                metrics=points,
            ),
        )
    except _EXPECTED as exc:
        report._count("runs", "failed", run.run_id, _reason(exc))
        return
    report.metric_points += len(points)
    report.artifact_files += len(files)
    report._count("runs", "copied")


# ---------------------------------------------------------------------------- registry


def _model(
    reader: Reader,
    client: Client,
    model: SourceModel,
    report: ImportReport,
    bar: Callable[[str | None], None],
) -> None:
    from modelpack.store import imports

    engine = _engine(client)
    try:
        model_id = imports.registered_model_id(engine, model.name)
        if model_id is not None:
            report._count("registered models", "existing")
        else:
            model_id = imports.insert_registered_model(
                engine,
                model.name,
                description=model.description,
                creation_time=model.creation_time,
                last_updated_time=model.last_updated_time,
                tags=dict(model.tags),
            )
            report._count("registered models", "copied")
    except _EXPECTED as exc:
        report._count("registered models", "failed", repr(model.name), _reason(exc))
        for v in model.versions:
            bar(f"{model.name} v{v.version}")
            report._count("model versions", "failed", _label(v), "its model was not imported")
        return
    for version in model.versions:
        bar(f"{model.name} v{version.version}")
        _version(reader, client, model_id, model, version, report)
    _aliases(engine, model_id, model, report)


def _label(v: SourceVersion) -> str:
    return f"{v.name!r} v{v.version}"


def _version(
    reader: Reader,
    client: Client,
    model_id: str,
    model: SourceModel,
    v: SourceVersion,
    report: ImportReport,
) -> None:
    from modelpack.store import imports

    engine = _engine(client)
    try:
        there = imports.version_sources(engine, model_id)
        if v.version in there:
            if there[v.version] != v.source:
                raise InvalidArgument(
                    f"the destination's version {v.version} of {v.name!r} has another source "
                    f"({there[v.version]!r}); rename one of the models and import again"
                )
            report._count("model versions", "existing")
            return
        from modelpack.entities import canonical_stage

        stage = canonical_stage(v.stage)
        _register(reader, client, model_id, model, v, stage)
    except (*_EXPECTED, ImportError) as exc:
        report._count("model versions", "failed", _label(v), _reason(exc))
        return
    report._count("model versions", "copied")


def _register(
    reader: Reader,
    client: Client,
    model_id: str,
    model: SourceModel,
    v: SourceVersion,
    stage: str,
) -> None:
    """Convert the version's MLflow model into a package, copy it into registry storage (as
    ``Client.register_model`` does) and record the version under its own number."""
    from modelpack import gc
    from modelpack.artifacts import artifact_store
    from modelpack.client import current_user, manifest_sha256
    from modelpack.mlflow_models import convert
    from modelpack.store import imports

    with tempfile.TemporaryDirectory(prefix="modelpack-import-") as tmp:
        src, package = Path(tmp, "mlflow"), Path(tmp, "package")
        src.mkdir()
        reader.download_version(v, src)
        if not any(src.iterdir()):
            raise ModelpackError(f"its source {v.source!r} holds no files")
        manifest = convert(src, package)
        sha = manifest_sha256(package)
        relative = f"registry/{uuid.uuid4().hex}"
        root = artifact_store(client.artifact_root)
        marker = gc.mark_registration(client, relative)
        try:
            root.put_dir(package, relative)
            imports.insert_version(
                _engine(client),
                model_id,
                model.name,
                imports.VersionRecord(
                    version=v.version,
                    stage=stage,
                    source=v.source,
                    run_id=v.run_id,
                    model_id=manifest.model_id,
                    manifest_sha256=sha,
                    storage_location=f"{client.artifact_root.rstrip('/')}/{relative}",
                    description=v.description,
                    user_id=v.user_id,
                    status="READY",
                    creation_time=v.creation_time,
                    last_updated_time=v.last_updated_time,
                    tags=dict(v.tags),
                ),
                user_id=current_user(),
                reserved=model.deleted_versions,
            )
        except BaseException:
            root.delete(relative)
            raise
        finally:
            if marker is not None:
                marker.unlink(missing_ok=True)


def _aliases(engine: Any, model_id: str, model: SourceModel, report: ImportReport) -> None:
    from modelpack.client import current_user
    from modelpack.store import imports
    from modelpack.store.registry import alias_name

    there = imports.model_aliases(engine, model_id)
    versions = set(imports.version_sources(engine, model_id))
    for alias, number in sorted(model.aliases.items()):
        what = f"{model.name!r}@{alias}"
        try:
            if alias in there:
                if there[alias] != number:
                    raise InvalidArgument(
                        f"the destination's alias points at version {there[alias]}, the "
                        f"source's at {number}"
                    )
                report._count("aliases", "existing")
                continue
            if number not in versions:
                raise InvalidArgument(f"version {number} was not imported")
            imports.insert_alias(
                engine, model_id, model.name, alias_name(alias), number, user_id=current_user()
            )
        except _EXPECTED as exc:
            report._count("aliases", "failed", what, _reason(exc))
            continue
        report._count("aliases", "copied")


def _engine(client: Client) -> Any:
    """The SQL engine of ``client``'s store (``import_mlflow`` refused a server's at the start)."""
    from modelpack.store.sql import SqlStore

    store = client.store
    if not isinstance(store, SqlStore):
        raise InvalidArgument("import-mlflow needs a database store, not a server.")
    return store.engine
