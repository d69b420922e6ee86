"""MLflow 3's LoggedModels in the SQL store: the models an MLflow 3 client creates before it
uploads a model's files (``mlflow.<flavor>.log_model``), with their params and tags.

These are MLflow's records, kept beside modelpack's own ``logged_models`` table (a run's
packages, by artifact path): an id ``m-<32 hex>``, a status (``LOGGED_MODEL_PENDING`` until the
client finalizes it READY or UPLOAD_FAILED), and the folder its files go to,
``<experiment artifact location>/models/<model_id>/artifacts``. Deleting one is a soft delete
(``lifecycle_stage`` "deleted"), as in MLflow; its files stay where they are.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from modelpack.entities import now_ms
from modelpack.errors import InvalidArgument, NotFound
from modelpack.store import schema as t
from modelpack.store import search, validation

__all__ = [
    "LOGGED_MODEL_ATTRIBUTES",
    "LOGGED_MODEL_STATUSES",
    "LoggedModelsMixin",
    "MlflowLoggedModel",
    "check_logged_model_id",
]

T = TypeVar("T")
_ID = re.compile(r"m-[0-9a-f]{32}")
LOGGED_MODEL_STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")
ACTIVE, DELETED = "active", "deleted"
# What a search filters on (MLflow's attribute names and ours), besides tags.* and params.*.
LOGGED_MODEL_ATTRIBUTES: Mapping[str, type] = {
    "name": str,
    "model_id": str,
    "status": str,
    "model_type": str,
    "source_run_id": str,
    "creation_timestamp": int,
    "creation_time": int,
    "last_updated_timestamp": int,
}
_ORDER_FIELDS = {
    "name": "name",
    "model_id": "model_id",
    "status": "status",
    "creation_timestamp": "creation_time",
    "creation_time": "creation_time",
    "last_updated_timestamp": "last_update_time",
}


def check_logged_model_id(model_id: Any) -> str:
    """``model_id`` if it is a LoggedModel id (``m-`` and 32 lowercase hex digits).

    Checked before the id reaches a query or names a folder.

    Raises:
        InvalidArgument: naming the expected form.
    """
    if not isinstance(model_id, str) or not _ID.fullmatch(model_id):
        shown = repr(model_id) if len(repr(model_id)) <= 60 else repr(model_id)[:57] + "..."
        raise InvalidArgument(
            f"Invalid logged model id {shown}: expected 'm-' followed by 32 lowercase hex "
            f"digits, as POST /mlflow/logged-models returns."
        )
    return model_id


@dataclass(frozen=True)
class MlflowLoggedModel:
    """One MLflow LoggedModel (times in epoch milliseconds, MLflow's unit)."""

    model_id: str
    experiment_id: str
    name: str
    artifact_location: str
    status: str
    status_message: str | None
    creator_id: str | None
    model_type: str | None
    source_run_id: str | None
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    params: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)


def _pairs(values: Mapping[str, Any] | None, what: str) -> dict[str, str]:
    return {
        validation.name(k, f"{what} key"): validation.text(v, f"{what} {k!r}")
        for k, v in (values or {}).items()
    }


class LoggedModelsMixin:
    """The ``mlflow_logged_models`` tables; mixed into ``SqlStore``."""

    def _connect(self) -> Any: ...

    def _write(self, body: Callable[[Any], T]) -> T:
        raise NotImplementedError  # SqlStore's

    # ------------------------------------------------------------------ rows

    def _mlm_row(self, conn: Any, model_id: str, allow_deleted: bool = False) -> Any:
        import sqlalchemy as sa

        check_logged_model_id(model_id)
        m = t.mlflow_logged_models
        row = conn.execute(sa.select(m).where(m.c.model_id == model_id)).one_or_none()
        if row is None or (row.lifecycle_stage == DELETED and not allow_deleted):
            gone = "" if row is None else " (it was deleted)"
            raise NotFound(f"Logged model {model_id!r} does not exist{gone}.")
        return row

    def _mlm_entities(self, conn: Any, rows: Sequence[Any]) -> list[MlflowLoggedModel]:
        import sqlalchemy as sa

        if not rows:
            return []
        ids = [r.model_id for r in rows]
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        tables = ((t.mlflow_logged_model_params, params), (t.mlflow_logged_model_tags, tags))
        for table, into in tables:
            for r in conn.execute(
                sa.select(table).where(table.c.model_id.in_(ids)).order_by(table.c.key)
            ):
                into[r.model_id][r.key] = r.value
        return [
            MlflowLoggedModel(
                model_id=r.model_id,
                experiment_id=r.experiment_id,
                name=r.name,
                artifact_location=r.artifact_location,
                status=r.status,
                status_message=r.status_message,
                creator_id=r.creator_id,
                model_type=r.model_type,
                source_run_id=r.source_run_id,
                lifecycle_stage=r.lifecycle_stage,
                creation_time=r.creation_time,
                last_update_time=r.last_update_time,
                params=params[r.model_id],
                tags=tags[r.model_id],
            )
            for r in rows
        ]

    def _mlm_touch(self, conn: Any, model_id: str) -> None:
        m = t.mlflow_logged_models
        conn.execute(m.update().where(m.c.model_id == model_id).values(last_update_time=now_ms()))

    # ------------------------------------------------------------------ calls

    def create_mlflow_logged_model(
        self,
        experiment_id: str,
        name: str | None = None,
        *,
        model_type: str | None = None,
        source_run_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        creator_id: str | None = None,
    ) -> MlflowLoggedModel:
        """A new PENDING LoggedModel in the (active) experiment ``experiment_id``; its files
        go to ``<experiment artifact location>/models/<model_id>/artifacts``.

        Raises:
            NotFound: no such experiment, or no such source run.
            InvalidArgument: the experiment is deleted, or a name, param or tag is invalid.
        """
        import sqlalchemy as sa

        model_id = f"m-{uuid.uuid4().hex}"
        name = validation.name(name, "Logged model name") if name else model_id
        if model_type is not None:
            model_type = validation.name(model_type, "Logged model type")
        param_values, tag_values = _pairs(params, "Param"), _pairs(tags, "Tag")

        def body(conn: Any) -> MlflowLoggedModel:
            e = t.experiments
            experiment = conn.execute(
                sa.select(e).where(e.c.experiment_id == str(experiment_id))
            ).one_or_none()
            if experiment is None:
                raise NotFound(f"No experiment with id {experiment_id!r}.")
            if experiment.lifecycle_stage != ACTIVE:
                raise InvalidArgument(
                    f"Experiment {experiment.name!r} is deleted; restore it before logging a "
                    f"model to it."
                )
            if source_run_id is not None:
                run = conn.execute(
                    sa.select(t.runs.c.run_id).where(t.runs.c.run_id == source_run_id)
                ).one_or_none()
                if run is None:
                    raise NotFound(f"No run with id {source_run_id!r} (source_run_id).")
            stamp = now_ms()
            conn.execute(
                t.mlflow_logged_models.insert().values(
                    model_id=model_id,
                    experiment_id=experiment.experiment_id,
                    name=name,
                    artifact_location=(
                        f"{experiment.artifact_location.rstrip('/')}/models/{model_id}/artifacts"
                    ),
                    status="LOGGED_MODEL_PENDING",
                    status_message=None,
                    creator_id=creator_id,
                    model_type=model_type,
                    source_run_id=source_run_id,
                    lifecycle_stage=ACTIVE,
                    creation_time=stamp,
                    last_update_time=stamp,
                )
            )
            for table, values in (
                (t.mlflow_logged_model_params, param_values),
                (t.mlflow_logged_model_tags, tag_values),
            ):
                for key, value in values.items():
                    conn.execute(table.insert().values(model_id=model_id, key=key, value=value))
            return self._mlm_entities(conn, [self._mlm_row(conn, model_id)])[0]

        return self._write(body)

    def get_mlflow_logged_model(
        self, model_id: str, allow_deleted: bool = False
    ) -> MlflowLoggedModel:
        with self._connect() as conn:
            return self._mlm_entities(conn, [self._mlm_row(conn, model_id, allow_deleted)])[0]

    def finalize_mlflow_logged_model(
        self, model_id: str, status: str, status_message: str | None = None
    ) -> MlflowLoggedModel:
        """Set the status the client reports once its upload is done (READY or UPLOAD_FAILED)."""
        if status not in LOGGED_MODEL_STATUSES[1:]:
            raise InvalidArgument(
                f"Invalid logged model status {status!r}: finalize with "
                f"{' or '.join(LOGGED_MODEL_STATUSES[1:])}."
            )
        m = t.mlflow_logged_models

        def body(conn: Any) -> MlflowLoggedModel:
            self._mlm_row(conn, model_id)
            conn.execute(
                m.update()
                .where(m.c.model_id == model_id)
                .values(status=status, status_message=status_message, last_update_time=now_ms())
            )
            return self._mlm_entities(conn, [self._mlm_row(conn, model_id)])[0]

        return self._write(body)

    def delete_mlflow_logged_model(self, model_id: str) -> None:
        """Mark it deleted (MLflow's soft delete): gets and searches no longer find it."""
        m = t.mlflow_logged_models

        def body(conn: Any) -> None:
            self._mlm_row(conn, model_id)
            conn.execute(
                m.update()
                .where(m.c.model_id == model_id)
                .values(lifecycle_stage=DELETED, last_update_time=now_ms())
            )

        self._write(body)

    def set_mlflow_logged_model_tags(self, model_id: str, tags: Mapping[str, Any]) -> None:
        values = _pairs(tags, "Tag")
        tag = t.mlflow_logged_model_tags

        def body(conn: Any) -> None:
            self._mlm_row(conn, model_id)
            for key, value in values.items():
                conn.execute(tag.delete().where(tag.c.model_id == model_id, tag.c.key == key))
                conn.execute(tag.insert().values(model_id=model_id, key=key, value=value))
            self._mlm_touch(conn, model_id)

        self._write(body)

    def delete_mlflow_logged_model_tag(self, model_id: str, key: str) -> None:
        tag = t.mlflow_logged_model_tags

        def body(conn: Any) -> None:
            self._mlm_row(conn, model_id)
            gone = conn.execute(tag.delete().where(tag.c.model_id == model_id, tag.c.key == key))
            if gone.rowcount == 0:
                raise NotFound(f"Logged model {model_id!r} has no tag {key!r}.")
            self._mlm_touch(conn, model_id)

        self._write(body)

    def log_mlflow_logged_model_params(self, model_id: str, params: Mapping[str, Any]) -> None:
        """Add params; a param is immutable: logging it again with the same value is a no-op,
        with another value an error (as for runs)."""
        import sqlalchemy as sa

        values = _pairs(params, "Param")
        param = t.mlflow_logged_model_params

        def body(conn: Any) -> None:
            self._mlm_row(conn, model_id)
            old = dict(
                conn.execute(
                    sa.select(param.c.key, param.c.value).where(
                        param.c.model_id == model_id, param.c.key.in_(list(values))
                    )
                ).all()
            )
            for key, value in values.items():
                if key in old:
                    if old[key] != value:
                        raise InvalidArgument(
                            f"Param {key!r} of logged model {model_id!r} is already "
                            f"{old[key]!r}; params cannot change (tried {value!r})."
                        )
                    continue
                conn.execute(param.insert().values(model_id=model_id, key=key, value=value))
            self._mlm_touch(conn, model_id)

        self._write(body)

    def search_mlflow_logged_models(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        max_results: int = 50,
        order_by: Sequence[tuple[str, bool]] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[MlflowLoggedModel], str | None]:
        """Active LoggedModels of the experiments, newest first unless ``order_by`` says
        otherwise (``(field, ascending)`` pairs; fields: name, model_id, status,
        creation_timestamp, last_updated_timestamp).

        The filter is modelpack's search syntax (MLflow's, plus OR and parentheses) over the
        attributes ``name``, ``model_id``, ``status``, ``model_type``, ``source_run_id``,
        ``creation_timestamp``, ``last_updated_timestamp``, and ``tags.<key>`` /
        ``params.<key>``; metrics are not searchable here.
        """
        import sqlalchemy as sa

        from modelpack.store.filters import parse_filter

        max_results = search.check_max_results(max_results)
        m = t.mlflow_logged_models
        query = sa.select(m).where(
            m.c.experiment_id.in_([str(i) for i in experiment_ids]), m.c.lifecycle_stage == ACTIVE
        )
        node = parse_filter(
            filter_string or "",
            attributes=LOGGED_MODEL_ATTRIBUTES,
            kinds=("tag", "param", "attribute"),
        )
        if node is not None:
            columns = {
                "name": m.c.name,
                "model_id": m.c.model_id,
                "status": m.c.status,
                "model_type": m.c.model_type,
                "source_run_id": m.c.source_run_id,
                "creation_timestamp": m.c.creation_time,
                "creation_time": m.c.creation_time,
                "last_updated_timestamp": m.c.last_update_time,
            }

            def key_values(kind: str) -> tuple[Any, Any]:
                table = t.mlflow_logged_model_tags
                if kind == "param":
                    table = t.mlflow_logged_model_params
                return table, table.c.model_id == m.c.model_id

            query = query.where(search.compile_node(node, columns, key_values))
        clauses = []
        for field_name, ascending in order_by or ():
            column = _ORDER_FIELDS.get(field_name)
            if column is None:
                raise InvalidArgument(
                    f"Cannot order logged models by {field_name!r}: use one of "
                    f"{', '.join(sorted(_ORDER_FIELDS))}."
                )
            clauses.append(m.c[column].asc() if ascending else m.c[column].desc())
        if not clauses:
            clauses = [m.c.creation_time.desc()]
        offset = search.decode_token(page_token)
        with self._connect() as conn:
            rows, token = search.page(
                conn.execute(
                    query.order_by(*clauses, m.c.model_id).limit(max_results + 1).offset(offset)
                ).all(),
                offset,
                max_results,
            )
            return self._mlm_entities(conn, rows), token

    def mlflow_logged_model_registrations(self, model_id: str) -> list[tuple[str, int]]:
        """``(registered model name, version)`` of every version registered from
        ``models:/<model_id>`` (the source an MLflow 3 client sends)."""
        import sqlalchemy as sa

        from modelpack.uris import logged_model_uri

        check_logged_model_id(model_id)
        mv, rm = t.model_versions, t.registered_models
        with self._connect() as conn:
            rows = conn.execute(
                sa.select(rm.c.name, mv.c.version)
                .join(rm, rm.c.id == mv.c.model)
                .where(
                    mv.c.source.in_([logged_model_uri(model_id), logged_model_uri(model_id) + "/"])
                )
                .order_by(rm.c.name, mv.c.version)
            ).all()
        return [(r.name, r.version) for r in rows]
