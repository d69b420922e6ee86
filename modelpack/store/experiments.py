"""Experiment searches and changes (delete, restore, rename, tags), mixed into ``SqlStore``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from modelpack.entities import Experiment, ViewType, now_ms
from modelpack.errors import AlreadyExists, InvalidArgument, NotFound
from modelpack.store import schema as t
from modelpack.store import search, validation

__all__ = ["EXPERIMENT_ATTRIBUTES", "ExperimentsMixin"]

EXPERIMENT_ATTRIBUTES: Mapping[str, type] = {
    "name": str,
    "experiment_id": str,
    "creation_time": int,
    "last_update_time": int,
}
ACTIVE, DELETED = "active", "deleted"


class ExperimentsMixin:
    """Needs ``_begin``, ``_connect`` and ``_experiment`` from ``SqlStore``."""

    def _begin(self) -> Any: ...

    def _connect(self) -> Any: ...

    def _experiment(self, conn: sa.Connection, row: Any) -> Experiment:
        raise NotImplementedError  # SqlStore's

    def search_experiments_page(
        self,
        view_type: str | int = ViewType.ACTIVE_ONLY,
        max_results: int = 1000,
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[Experiment], str | None]:
        """Experiments matching ``filter_string`` (attributes ``name``, ``creation_time``,
        ``last_update_time``, and ``tags.<key>``), ordered like MLflow (newest first)."""
        from modelpack.store.filters import parse_filter

        view_type = ViewType.check(view_type)
        max_results = search.check_max_results(max_results)
        e = t.experiments
        query = sa.select(e)
        if view_type == ViewType.ACTIVE_ONLY:
            query = query.where(e.c.lifecycle_stage == ACTIVE)
        elif view_type == ViewType.DELETED_ONLY:
            query = query.where(e.c.lifecycle_stage == DELETED)
        node = parse_filter(
            filter_string or "", attributes=EXPERIMENT_ATTRIBUTES, kinds=("tag", "attribute")
        )
        if node is not None:
            tag = t.experiment_tags

            def key_values(kind: str) -> tuple[Any, Any]:
                if kind != "tag":
                    raise InvalidArgument(
                        f"Experiment searches filter on attributes and tags, not {kind}s."
                    )
                return tag, tag.c.experiment_id == e.c.experiment_id

            columns = {k: e.c[k] for k in EXPERIMENT_ATTRIBUTES}
            query = query.where(search.compile_node(node, columns, key_values))
        clauses = []
        for item in order_by or ():
            _, key, ascending = search.parse_order(item, EXPERIMENT_ATTRIBUTES)
            clauses.append(e.c[key].asc() if ascending else e.c[key].desc())
        if not order_by:
            clauses.append(e.c.creation_time.desc())
        offset = search.decode_token(page_token)
        with self._connect() as conn:
            rows, token = search.page(
                conn.execute(
                    query.order_by(*clauses, e.c.experiment_id)
                    .limit(max_results + 1)
                    .offset(offset)
                ).all(),
                offset,
                max_results,
            )
            return [self._experiment(conn, r) for r in rows], token

    def _experiment_row(self, conn: sa.Connection, experiment_id: str) -> Any:
        row = conn.execute(
            sa.select(t.experiments).where(t.experiments.c.experiment_id == experiment_id)
        ).one_or_none()
        if row is None:
            raise NotFound(f"No experiment with id {experiment_id!r}.")
        return row

    def set_experiment_lifecycle(self, experiment_id: str, stage: str) -> None:
        """Delete (``"deleted"``) or restore (``"active"``) an experiment and its runs, as
        MLflow does: a deleted experiment's runs leave searches with it."""
        with self._begin() as conn:
            row = self._experiment_row(conn, experiment_id)
            if row.lifecycle_stage == stage:
                word = "deleted" if stage == DELETED else "active"
                raise InvalidArgument(f"Experiment {row.name!r} is already {word}.")
            conn.execute(
                t.experiments.update()
                .where(t.experiments.c.experiment_id == experiment_id)
                .values(lifecycle_stage=stage, last_update_time=now_ms())
            )
            conn.execute(
                t.runs.update()
                .where(t.runs.c.experiment_id == experiment_id)
                .values(lifecycle_stage=stage)
            )

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        validation.name(new_name, "Experiment name")
        try:
            with self._begin() as conn:
                self._experiment_row(conn, experiment_id)
                conn.execute(
                    t.experiments.update()
                    .where(t.experiments.c.experiment_id == experiment_id)
                    .values(name=new_name, last_update_time=now_ms())
                )
        except sa.exc.IntegrityError:
            raise AlreadyExists(f"Experiment {new_name!r} already exists.") from None

    def set_experiment_tag(self, experiment_id: str, key: str, value: Any) -> None:
        validation.name(key, "Tag key")
        text = validation.text(value, f"Tag {key!r}")
        with self._begin() as conn:
            self._experiment_row(conn, experiment_id)
            et = t.experiment_tags
            updated = conn.execute(
                et.update()
                .where(et.c.experiment_id == experiment_id, et.c.key == key)
                .values(value=text)
            ).rowcount
            if not updated:
                conn.execute(et.insert().values(experiment_id=experiment_id, key=key, value=text))
