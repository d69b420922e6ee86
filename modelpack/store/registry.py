"""The model registry's tables: versions, stages, aliases, tags and the append-only history."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeVar

import sqlalchemy as sa

from modelpack.entities import (
    STAGES,
    HistoryRecord,
    ModelVersion,
    RegisteredModel,
    canonical_stage,
    now_ms,
)
from modelpack.entities import at_ms as _at_ms
from modelpack.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from modelpack.store import schema as t
from modelpack.store import search, validation

MODEL_ATTRIBUTES: Mapping[str, type] = {"name": str}
VERSION_ATTRIBUTES: Mapping[str, type] = {
    "name": str,
    "version_number": int,
    "version": int,
    "run_id": str,
    "source": str,
    "model_id": str,
    "current_stage": str,
    "stage": str,
    "user_id": str,
}
_RETRIES = 50
_REGISTRY_KINDS = ("tag", "attribute")
# The history stores an alias move as "alias@version" in a 256-character column.
MAX_ALIAS = validation.MAX_NAME - len("@2147483647")
T = TypeVar("T")


def version_number(version: Any) -> int:
    try:
        number = int(version)
    except (TypeError, ValueError):
        number = 0
    if isinstance(version, bool) or number < 1 or str(number) != str(version).strip():
        raise InvalidArgument(f"A version is a positive integer, got {version!r}.")
    return number


def alias_name(alias: Any) -> str:
    validation.name(alias, "Alias")
    if len(alias) > MAX_ALIAS:
        raise InvalidArgument(
            f"Alias is {len(alias)} characters long; the limit is {MAX_ALIAS}: {alias[:40]!r}..."
        )
    if alias.lower() == "latest" or re.fullmatch(r"v?\d+", alias, re.IGNORECASE):
        raise InvalidArgument(
            f"Alias {alias!r} is reserved: 'latest' and version-like names (3, v3) would be "
            f"ambiguous in models:/ URIs."
        )
    return str(alias)


class RegistryMixin:
    engine: sa.Engine
    artifact_root: str

    def _begin(self) -> Any: ...

    def _begin_durable(self) -> Any: ...

    def _connect(self) -> Any: ...

    def _write(self, body: Callable[[sa.Connection], T]) -> T:
        raise NotImplementedError  # SqlStore's

    # ------------------------------------------------------------------ rows to entities

    def _rm_row(
        self, conn: sa.Connection, name: str, lock: Literal["row", "key"] | None = None
    ) -> Any:
        """The registered model's row; ``lock`` takes its row lock first (PostgreSQL; SQLite's
        BEGIN IMMEDIATE already serializes every writer).

        Every registry write locks the model's row before it reads or changes anything of the
        model's, so writers of one model take turns and always take rows in the same order
        (the model, then its versions by number, then aliases, tags and history): concurrent
        promotions cannot both see "no other version in Production", and cannot deadlock.
        ``"row"`` (FOR NO KEY UPDATE) leaves registrations free to insert versions; ``"key"``
        (FOR UPDATE) is for renaming or deleting the model itself.
        """
        validation.name(name, "Registered model name")
        query = sa.select(t.registered_models).where(t.registered_models.c.name == name)
        if lock is not None:
            query = query.with_for_update(key_share=lock == "row")
        row = conn.execute(query).one_or_none()
        if row is None:
            raise NotFound(f"Registered model {name!r} does not exist.")
        return row

    def _versions(
        self, conn: sa.Connection, rows: Sequence[Any], names: Mapping[str, str]
    ) -> list[ModelVersion]:
        if not rows:
            return []
        keys = {(r.model, r.version) for r in rows}
        models = list({r.model for r in rows})
        tags: dict[tuple[str, int], dict[str, str]] = {k: {} for k in keys}
        for r in conn.execute(
            sa.select(t.model_version_tags).where(t.model_version_tags.c.model.in_(models))
        ):
            if (r.model, r.version) in tags:
                tags[(r.model, r.version)][r.key] = r.value
        aliases: dict[tuple[str, int], list[str]] = {k: [] for k in keys}
        for r in conn.execute(
            sa.select(t.aliases).where(t.aliases.c.model.in_(models)).order_by(t.aliases.c.alias)
        ):
            if (r.model, r.version) in aliases:
                aliases[(r.model, r.version)].append(r.alias)
        return [
            ModelVersion(
                name=names[r.model],
                version=r.version,
                stage=r.stage,
                aliases=tuple(aliases[(r.model, r.version)]),
                source=r.source,
                run_id=r.run_id,
                model_id=r.model_id,
                description=r.description,
                tags=tags[(r.model, r.version)],
                created_at=_at_ms(r.creation_time),
                updated_at=_at_ms(r.last_updated_time),
                user_id=r.user_id,
                storage_location=r.storage_location,
                manifest_sha256=r.manifest_sha256,
                status=r.status,
            )
            for r in rows
        ]

    def _version_row(self, conn: sa.Connection, rm: Any, version: Any) -> Any:
        number = version_number(version)
        row = conn.execute(
            sa.select(t.model_versions).where(
                t.model_versions.c.model == rm.id, t.model_versions.c.version == number
            )
        ).one_or_none()
        if row is None:
            raise NotFound(
                f"Registered model {rm.name!r} has no version {number}. "
                f"{self._describe_versions(conn, rm)}"
            )
        return row

    def _describe_versions(self, conn: sa.Connection, rm: Any) -> str:
        rows = conn.execute(
            sa.select(t.model_versions.c.version, t.model_versions.c.stage)
            .where(t.model_versions.c.model == rm.id)
            .order_by(t.model_versions.c.version)
        ).all()
        if not rows:
            return "It has no versions."
        return "Versions: " + ", ".join(f"{v} ({s})" for v, s in rows) + "."

    def _registered_model(self, conn: sa.Connection, row: Any) -> RegisteredModel:
        tags = dict(
            conn.execute(
                sa.select(t.registered_model_tags.c.key, t.registered_model_tags.c.value).where(
                    t.registered_model_tags.c.model == row.id
                )
            ).all()
        )
        aliases = dict(
            conn.execute(
                sa.select(t.aliases.c.alias, t.aliases.c.version).where(t.aliases.c.model == row.id)
            ).all()
        )
        latest = self._latest_rows(conn, row, None)
        return RegisteredModel(
            name=row.name,
            description=row.description,
            tags=tags,
            aliases=aliases,
            created_at=_at_ms(row.creation_time),
            updated_at=_at_ms(row.last_updated_time),
            latest_versions=tuple(self._versions(conn, latest, {row.id: row.name})),
        )

    def _history(
        self,
        conn: sa.Connection,
        rm: Any,
        version: int | None,
        action: str,
        before: str | None,
        after: str | None,
        user_id: str,
        comment: str | None = None,
    ) -> None:
        write_history(conn, rm.id, rm.name, version, action, before, after, user_id, comment)

    def _touch(self, conn: sa.Connection, rm: Any, version: int | None = None) -> None:
        stamp = now_ms()
        conn.execute(
            t.registered_models.update()
            .where(t.registered_models.c.id == rm.id)
            .values(last_updated_time=stamp)
        )
        if version is not None:
            conn.execute(
                t.model_versions.update()
                .where(t.model_versions.c.model == rm.id, t.model_versions.c.version == version)
                .values(last_updated_time=stamp)
            )

    # ------------------------------------------------------------------ registered models

    def _insert_model(
        self,
        conn: sa.Connection,
        name: str,
        description: str | None,
        tags: Mapping[str, Any] | None,
    ) -> Any:
        validation.name(name, "Registered model name")
        stamp = now_ms()
        model_id = uuid.uuid4().hex
        conn.execute(
            t.registered_models.insert().values(
                id=model_id,
                name=name,
                description=validation.text(description or "", "Description"),
                creation_time=stamp,
                last_updated_time=stamp,
            )
        )
        for key, value in (tags or {}).items():
            conn.execute(
                t.registered_model_tags.insert().values(
                    model=model_id,
                    key=validation.name(key, "Tag key"),
                    value=validation.text(value, f"Tag {key!r}"),
                )
            )
        return self._rm_row(conn, name)

    def create_registered_model(
        self, name: str, tags: Mapping[str, Any] | None = None, description: str | None = None
    ) -> RegisteredModel:
        def body(conn: sa.Connection) -> RegisteredModel:
            return self._registered_model(conn, self._insert_model(conn, name, description, tags))

        try:
            return self._write(body)
        except sa.exc.IntegrityError:
            raise AlreadyExists(f"Registered model {name!r} already exists.") from None

    def get_registered_model(self, name: str) -> RegisteredModel:
        with self._connect() as conn:
            return self._registered_model(conn, self._rm_row(conn, name))

    def search_registered_models(
        self,
        filter_string: str | None = None,
        max_results: int = 100,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[RegisteredModel], str | None]:
        from modelpack.store.filters import parse_filter

        max_results = search.check_max_results(max_results)
        rm = t.registered_models
        query = sa.select(rm)
        node = parse_filter(filter_string or "", attributes=MODEL_ATTRIBUTES, kinds=_REGISTRY_KINDS)
        if node is not None:
            tag = t.registered_model_tags
            query = query.where(
                search.compile_node(
                    node,
                    {"name": rm.c.name},
                    lambda kind: self._kv(kind, tag, tag.c.model == rm.c.id),
                )
            )
        clauses = []
        for item in order_by or ():
            _, key, ascending = search.parse_order(
                item, {"name": str, "creation_time": int, "last_updated_time": int}
            )
            clauses.append(rm.c[key].asc() if ascending else rm.c[key].desc())
        offset = search.decode_token(page_token)
        with self._connect() as conn:
            rows, token = search.page(
                conn.execute(
                    query.order_by(*clauses, rm.c.name).limit(max_results + 1).offset(offset)
                ).all(),
                offset,
                max_results,
            )
            return [self._registered_model(conn, r) for r in rows], token

    @staticmethod
    def _kv(kind: str, table: Any, joined: Any) -> tuple[Any, Any]:
        if kind != "tag":
            raise InvalidArgument(f"Registry searches filter on attributes and tags, not {kind}s.")
        return table, joined

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        description = validation.text(description, "Description")

        def body(conn: sa.Connection) -> RegisteredModel:
            rm = self._rm_row(conn, name, lock="row")
            conn.execute(
                t.registered_models.update()
                .where(t.registered_models.c.id == rm.id)
                .values(description=description, last_updated_time=now_ms())
            )
            return self._registered_model(conn, self._rm_row(conn, name))

        return self._write(body)

    def rename_registered_model(self, name: str, new_name: str, user_id: str) -> RegisteredModel:
        validation.name(new_name, "New registered model name")

        def body(conn: sa.Connection) -> RegisteredModel:
            rm = self._rm_row(conn, name, lock="key")
            conn.execute(
                t.registered_models.update()
                .where(t.registered_models.c.id == rm.id)
                .values(name=new_name, last_updated_time=now_ms())
            )
            renamed = self._rm_row(conn, new_name)
            self._history(conn, renamed, None, "rename", name, new_name, user_id)
            return self._registered_model(conn, renamed)

        try:
            return self._write(body)
        except sa.exc.IntegrityError:
            raise AlreadyExists(f"Registered model {new_name!r} already exists.") from None

    def set_registered_model_tag(self, name: str, key: str, value: Any) -> None:
        validation.name(key, "Tag key")
        value = validation.text(value, f"Tag {key!r}")
        tag = t.registered_model_tags

        def body(conn: sa.Connection) -> None:
            rm = self._rm_row(conn, name, lock="row")
            conn.execute(tag.delete().where(tag.c.model == rm.id, tag.c.key == key))
            conn.execute(tag.insert().values(model=rm.id, key=key, value=value))

        self._write(body)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        tag = t.registered_model_tags

        def body(conn: sa.Connection) -> None:
            rm = self._rm_row(conn, name, lock="row")
            conn.execute(tag.delete().where(tag.c.model == rm.id, tag.c.key == key))

        self._write(body)

    def delete_registered_model(self, name: str, user_id: str, force: bool = False) -> list[str]:
        """Delete the model and its versions; returns their storage locations to clean up."""

        def body(conn: sa.Connection) -> list[str]:
            rm = self._rm_row(conn, name, lock="key")
            rows = conn.execute(
                sa.select(t.model_versions)
                .where(t.model_versions.c.model == rm.id)
                .order_by(t.model_versions.c.version)
            ).all()
            for row in rows:
                self._check_storage(rm, row)
            if not force:
                for row in rows:
                    self._check_deletable(conn, rm, row)
            for row in rows:
                self._history(conn, rm, row.version, "delete", row.stage, None, user_id)
            self._history(conn, rm, None, "delete", name, None, user_id)
            for table in (
                t.model_version_tags,
                t.aliases,
                t.model_versions,
                t.registered_model_tags,
            ):
                conn.execute(table.delete().where(table.c.model == rm.id))
            conn.execute(t.registered_models.delete().where(t.registered_models.c.id == rm.id))
            return [row.storage_location for row in rows]

        return self._write(body)

    # ------------------------------------------------------------------ versions

    def create_model_version(
        self,
        name: str,
        *,
        source: str,
        run_id: str | None,
        model_id: str,
        manifest_sha256: str,
        storage_location: str,
        user_id: str,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> ModelVersion:
        """Allocate the next version number inside the transaction; retry on a race."""
        validation.name(name, "Registered model name")
        tags = {
            validation.name(k, "Tag key"): validation.text(v, f"Tag {k!r}")
            for k, v in (tags or {}).items()
        }
        description = validation.text(description or "", "Description")
        for attempt in range(_RETRIES):
            try:
                with self._begin_durable() as conn:
                    rm = conn.execute(
                        sa.select(t.registered_models).where(t.registered_models.c.name == name)
                    ).one_or_none()
                    if rm is None:
                        rm = self._insert_model(conn, name, None, None)
                    # The history remembers deleted versions too: numbers are never reused,
                    # so models:/Name/3 can never come to mean a different package.
                    version = 1 + max(
                        conn.execute(
                            sa.select(sa.func.max(t.model_history.c.version)).where(
                                t.model_history.c.model == rm.id
                            )
                        ).scalar()
                        or 0,
                        conn.execute(
                            sa.select(sa.func.max(t.model_versions.c.version)).where(
                                t.model_versions.c.model == rm.id
                            )
                        ).scalar()
                        or 0,
                    )
                    stamp = now_ms()
                    conn.execute(
                        t.model_versions.insert().values(
                            model=rm.id,
                            version=version,
                            stage="None",
                            source=source,
                            run_id=run_id,
                            model_id=model_id,
                            manifest_sha256=manifest_sha256,
                            storage_location=storage_location,
                            description=description,
                            user_id=user_id,
                            status="READY",
                            creation_time=stamp,
                            last_updated_time=stamp,
                        )
                    )
                    for key, value in tags.items():
                        conn.execute(
                            t.model_version_tags.insert().values(
                                model=rm.id, version=version, key=key, value=value
                            )
                        )
                    self._history(conn, rm, version, "create", None, "None", user_id)
                    self._touch(conn, rm)
                    row = self._version_row(conn, rm, version)
                    return self._versions(conn, [row], {rm.id: rm.name})[0]
            except (sa.exc.IntegrityError, Conflict) as exc:
                # A concurrent registration took this number (or the database reported a
                # serialization failure): roll back, wait a little, and count again.
                if attempt == _RETRIES - 1:
                    raise InvalidArgument(
                        f"Could not allocate a version of {name!r} after {_RETRIES} attempts: "
                        f"{type(exc).__name__}."
                    ) from exc
                time.sleep(random.uniform(0.005, 0.05) * (1 + attempt / 5))
        raise AssertionError("unreachable")

    def get_model_version(self, name: str, version: Any) -> ModelVersion:
        with self._connect() as conn:
            rm = self._rm_row(conn, name)
            return self._versions(conn, [self._version_row(conn, rm, version)], {rm.id: rm.name})[0]

    def search_model_versions(
        self,
        filter_string: str | None = None,
        max_results: int = 1000,
        order_by: Sequence[str] | None = None,
        page_token: str | None = None,
    ) -> tuple[list[ModelVersion], str | None]:
        from modelpack.store.filters import parse_filter

        max_results = search.check_max_results(max_results)
        mv, rm = t.model_versions, t.registered_models
        query = sa.select(mv, rm.c.name).join(rm, rm.c.id == mv.c.model)
        node = parse_filter(
            filter_string or "", attributes=VERSION_ATTRIBUTES, kinds=_REGISTRY_KINDS
        )
        columns = {
            "name": rm.c.name,
            "version_number": mv.c.version,
            "version": mv.c.version,
            "run_id": mv.c.run_id,
            "source": mv.c.source,
            "model_id": mv.c.model_id,
            "current_stage": mv.c.stage,
            "stage": mv.c.stage,
            "user_id": mv.c.user_id,
        }
        if node is not None:
            tag = t.model_version_tags
            joined = sa.and_(tag.c.model == mv.c.model, tag.c.version == mv.c.version)
            query = query.where(
                search.compile_node(node, columns, lambda kind: self._kv(kind, tag, joined))
            )
        clauses = []
        for item in order_by or ():
            _, key, ascending = search.parse_order(
                item, {**VERSION_ATTRIBUTES, "creation_time": int}
            )
            column = columns.get(key, mv.c.creation_time)
            clauses.append(column.asc() if ascending else column.desc())
        offset = search.decode_token(page_token)
        with self._connect() as conn:
            rows, token = search.page(
                conn.execute(
                    query.order_by(*clauses, rm.c.name, mv.c.version.desc())
                    .limit(max_results + 1)
                    .offset(offset)
                ).all(),
                offset,
                max_results,
            )
            return self._versions(conn, rows, {r.model: r.name for r in rows}), token

    def _latest_rows(self, conn: sa.Connection, rm: Any, stages: Sequence[str] | None) -> list:
        mv = t.model_versions
        wanted = [canonical_stage(s) for s in stages] if stages else list(STAGES)
        rows = []
        for stage in wanted:
            row = conn.execute(
                sa.select(mv)
                .where(mv.c.model == rm.id, mv.c.stage == stage)
                .order_by(mv.c.version.desc())
                .limit(1)
            ).one_or_none()
            if row is not None:
                rows.append(row)
        return rows

    def get_latest_versions(
        self, name: str, stages: Sequence[str] | None = None
    ) -> list[ModelVersion]:
        with self._connect() as conn:
            rm = self._rm_row(conn, name)
            return self._versions(conn, self._latest_rows(conn, rm, stages), {rm.id: rm.name})

    def get_version_in_stage(self, name: str, stage: str) -> ModelVersion:
        stage = canonical_stage(stage)
        with self._connect() as conn:
            rm = self._rm_row(conn, name)
            rows = self._latest_rows(conn, rm, [stage])
            if not rows:
                raise NotFound(
                    f"Registered model {name!r} has no version in stage {stage!r}. "
                    f"{self._describe_versions(conn, rm)}"
                )
            return self._versions(conn, rows, {rm.id: rm.name})[0]

    def get_newest_version(self, name: str) -> ModelVersion:
        with self._connect() as conn:
            rm = self._rm_row(conn, name)
            row = conn.execute(
                sa.select(t.model_versions)
                .where(t.model_versions.c.model == rm.id)
                .order_by(t.model_versions.c.version.desc())
                .limit(1)
            ).one_or_none()
            if row is None:
                raise NotFound(f"Registered model {name!r} has no versions.")
            return self._versions(conn, [row], {rm.id: rm.name})[0]

    def update_model_version(self, name: str, version: Any, description: str) -> ModelVersion:
        description = validation.text(description, "Description")

        def body(conn: sa.Connection) -> ModelVersion:
            rm = self._rm_row(conn, name, lock="row")
            row = self._version_row(conn, rm, version)
            conn.execute(
                t.model_versions.update()
                .where(t.model_versions.c.model == rm.id, t.model_versions.c.version == row.version)
                .values(description=description)
            )
            self._touch(conn, rm, row.version)
            return self._one_version(conn, rm, row.version)

        return self._write(body)

    def _one_version(self, conn: sa.Connection, rm: Any, version: int) -> ModelVersion:
        return self._versions(conn, [self._version_row(conn, rm, version)], {rm.id: rm.name})[0]

    def set_model_version_tag(self, name: str, version: Any, key: str, value: Any) -> None:
        validation.name(key, "Tag key")
        value = validation.text(value, f"Tag {key!r}")
        tag = t.model_version_tags

        def body(conn: sa.Connection) -> None:
            rm = self._rm_row(conn, name, lock="row")
            row = self._version_row(conn, rm, version)
            where = (tag.c.model == rm.id, tag.c.version == row.version, tag.c.key == key)
            conn.execute(tag.delete().where(*where))
            conn.execute(
                tag.insert().values(model=rm.id, version=row.version, key=key, value=value)
            )

        self._write(body)

    def delete_model_version_tag(self, name: str, version: Any, key: str) -> None:
        tag = t.model_version_tags

        def body(conn: sa.Connection) -> None:
            rm = self._rm_row(conn, name, lock="row")
            row = self._version_row(conn, rm, version)
            conn.execute(
                tag.delete().where(
                    tag.c.model == rm.id, tag.c.version == row.version, tag.c.key == key
                )
            )

        self._write(body)

    def transition_model_version_stage(
        self,
        name: str,
        version: Any,
        stage: str,
        *,
        archive_existing_versions: bool = False,
        comment: str | None = None,
        user_id: str,
    ) -> ModelVersion:
        stage = canonical_stage(stage)
        mv = t.model_versions

        def body(conn: sa.Connection) -> ModelVersion:
            # The lock comes first: "the other versions in this stage" is read after every
            # earlier transition of this model has committed, and none can start before this
            # one commits.
            rm = self._rm_row(conn, name, lock="row")
            row = self._version_row(conn, rm, version)
            if archive_existing_versions and stage in ("Staging", "Production"):
                others = conn.execute(
                    sa.select(mv.c.version)
                    .where(mv.c.model == rm.id, mv.c.stage == stage, mv.c.version != row.version)
                    .order_by(mv.c.version)
                ).scalars()
                for other in others.all():
                    conn.execute(
                        mv.update()
                        .where(mv.c.model == rm.id, mv.c.version == other)
                        .values(stage="Archived", last_updated_time=now_ms())
                    )
                    self._history(
                        conn,
                        rm,
                        other,
                        "stage",
                        stage,
                        "Archived",
                        user_id,
                        f"archived: version {row.version} moved to {stage}",
                    )
            conn.execute(
                mv.update()
                .where(mv.c.model == rm.id, mv.c.version == row.version)
                .values(stage=stage)
            )
            self._history(conn, rm, row.version, "stage", row.stage, stage, user_id, comment)
            self._touch(conn, rm, row.version)
            return self._one_version(conn, rm, row.version)

        return self._write(body)

    def set_registered_model_alias(
        self, name: str, alias: str, version: Any, user_id: str, comment: str | None = None
    ) -> None:
        alias = alias_name(alias)
        aliases = t.aliases

        def body(conn: sa.Connection) -> None:
            rm = self._rm_row(conn, name, lock="row")
            row = self._version_row(conn, rm, version)
            where = (aliases.c.model == rm.id, aliases.c.alias == alias)
            old = conn.execute(sa.select(aliases.c.version).where(*where)).scalar()
            if old == row.version:
                return
            conn.execute(aliases.delete().where(*where))
            conn.execute(aliases.insert().values(model=rm.id, alias=alias, version=row.version))
            self._history(
                conn,
                rm,
                row.version,
                "alias",
                None if old is None else f"{alias}@{old}",
                f"{alias}@{row.version}",
                user_id,
                comment,
            )
            self._touch(conn, rm)

        self._write(body)

    def delete_registered_model_alias(self, name: str, alias: str, user_id: str) -> None:
        aliases = t.aliases

        def body(conn: sa.Connection) -> None:
            rm = self._rm_row(conn, name, lock="row")
            where = (aliases.c.model == rm.id, aliases.c.alias == alias)
            old = conn.execute(sa.select(aliases.c.version).where(*where)).scalar()
            if old is None:
                raise NotFound(f"Registered model {name!r} has no alias {alias!r}.")
            conn.execute(aliases.delete().where(*where))
            self._history(conn, rm, old, "delete_alias", f"{alias}@{old}", None, user_id)
            self._touch(conn, rm)

        self._write(body)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        with self._connect() as conn:
            rm = self._rm_row(conn, name)
            version = conn.execute(
                sa.select(t.aliases.c.version).where(
                    t.aliases.c.model == rm.id, t.aliases.c.alias == alias
                )
            ).scalar()
            if version is None:
                known = conn.execute(
                    sa.select(t.aliases.c.alias, t.aliases.c.version).where(
                        t.aliases.c.model == rm.id
                    )
                ).all()
                listed = ", ".join(f"{a} -> {v}" for a, v in known) or "none"
                raise NotFound(
                    f"Registered model {name!r} has no alias {alias!r}. Aliases: {listed}."
                )
            row = self._version_row(conn, rm, version)
            return self._versions(conn, [row], {rm.id: rm.name})[0]

    def _check_storage(self, rm: Any, row: Any) -> None:
        """Refuse, before anything is deleted, a version whose row names storage outside this
        registry's ``<artifact root>/registry/<id>`` folders: deleting it would remove what
        the row names, and a row can be altered, or written under another artifact root.

        The row is kept too: deleting it alone would leave its files where no garbage
        collection of this root looks, or hide the evidence of a tampered row.
        """
        from modelpack.artifacts import registry_folder

        location = row.storage_location
        if registry_folder(self.artifact_root, location) is not None:
            return
        other = re.fullmatch(r"(?P<root>.+)/registry/[0-9a-f]{32}", str(location))
        how = (
            f"It was registered under the artifact root {other['root']!r}: delete it with "
            f"Client(artifact_root={other['root']!r})."
            if other and other["root"] != self.artifact_root
            else "The row may have been altered; check it before removing anything by hand."
        )
        raise InvalidArgument(
            f"Refusing to delete version {row.version} of {rm.name!r}: its storage location "
            f"{location!r} is not a folder of this registry's storage "
            f"({self.artifact_root}/registry/<id>), so nothing was deleted. {how}"
        )

    def _check_deletable(self, conn: sa.Connection, rm: Any, row: Any) -> None:
        held = (
            conn.execute(
                sa.select(t.aliases.c.alias).where(
                    t.aliases.c.model == rm.id, t.aliases.c.version == row.version
                )
            )
            .scalars()
            .all()
        )
        if row.stage == "Production" or held:
            reasons = (["it is in stage 'Production'"] if row.stage == "Production" else []) + [
                f"alias {a!r} points at it" for a in held
            ]
            raise InvalidArgument(
                f"Refusing to delete version {row.version} of {rm.name!r}: "
                f"{' and '.join(reasons)}. Move the stage or alias first, or pass force=True."
            )

    def delete_model_version(
        self, name: str, version: Any, user_id: str, force: bool = False
    ) -> str:
        """Delete one version; returns its storage location for the caller to clean up."""

        def body(conn: sa.Connection) -> str:
            rm = self._rm_row(conn, name, lock="row")
            row = self._version_row(conn, rm, version)
            self._check_storage(rm, row)
            if not force:
                self._check_deletable(conn, rm, row)
            where = (
                t.model_version_tags.c.model == rm.id,
                t.model_version_tags.c.version == row.version,
            )
            conn.execute(t.model_version_tags.delete().where(*where))
            conn.execute(
                t.aliases.delete().where(
                    t.aliases.c.model == rm.id, t.aliases.c.version == row.version
                )
            )
            conn.execute(
                t.model_versions.delete().where(
                    t.model_versions.c.model == rm.id, t.model_versions.c.version == row.version
                )
            )
            self._history(conn, rm, row.version, "delete", row.stage, None, user_id)
            self._touch(conn, rm)
            return str(row.storage_location)

        return self._write(body)

    def get_model_history(self, name: str) -> list[HistoryRecord]:
        with self._connect() as conn:
            h = t.model_history
            rm = conn.execute(
                sa.select(t.registered_models).where(t.registered_models.c.name == name)
            ).one_or_none()
            where = h.c.model == rm.id if rm is not None else h.c.name == name
            rows = conn.execute(sa.select(h).where(where).order_by(h.c.id)).all()
        if not rows:
            raise NotFound(f"Registered model {name!r} does not exist and has no history.")
        return [
            HistoryRecord(
                name=r.name,
                version=r.version,
                action=r.action,
                from_value=r.from_value,
                to_value=r.to_value,
                user_id=r.user_id,
                timestamp=_at_ms(r.timestamp),
                comment=r.comment,
            )
            for r in rows
        ]


def write_history(
    conn: sa.Connection,
    model: str,
    name: str,
    version: int | None,
    action: str,
    before: str | None,
    after: str | None,
    user_id: str,
    comment: str | None = None,
) -> None:
    """Append one record to the model's audit trail (never updated or deleted), in ``conn``'s
    transaction: ``action`` on ``version`` (or the model), from ``before`` to ``after``."""
    conn.execute(
        t.model_history.insert().values(
            model=model,
            name=name,
            version=version,
            action=action,
            from_value=before,
            to_value=after,
            user_id=user_id,
            timestamp=now_ms(),
            comment=comment,
        )
    )
