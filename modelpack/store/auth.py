"""The server's tokens and permissions, in the store's ``api_tokens`` and ``permissions`` tables.

A token is ``mpk_`` + 43 random URL-safe characters (``secrets.token_urlsafe(32)``, 256 bits).
It is shown once, when it is created; the store keeps only its sha256, so a token is found by
the hash of what a client sends (a lookup by an unguessable key: nothing to compare in variable
time) and a stolen database holds no usable token. A revoked token keeps its row, so ``token
list`` still shows who had access and until when.

A grant gives one user a level (``NO_PERMISSIONS`` < ``READ`` < ``EDIT`` < ``MANAGE``, MLflow's)
on one experiment (by the store's id) or one registered model (by name). Two wildcards:
the user ``*`` is everyone without a grant of their own, and the resource ``*`` is every
resource of that type. A user's level on a resource is the first of: their grant on it, their
grant on ``*``, everyone's grant on it, everyone's grant on ``*`` (the server-wide default, set
by ``modelpack server permission default``), else ``READ`` (MLflow's default).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from modelpack.entities import from_ms, now_ms
from modelpack.errors import InvalidArgument, NotFound
from modelpack.store import schema as t
from modelpack.store import validation

if TYPE_CHECKING:
    from modelpack.store.sql import SqlStore

__all__ = [
    "ANY",
    "DEFAULT_LEVEL",
    "EVERYONE",
    "LEVELS",
    "RESOURCE_TYPES",
    "ROLES",
    "TOKEN_PREFIX",
    "Grant",
    "Token",
    "create_token",
    "defaults",
    "find_token",
    "forget_resource",
    "get_grant",
    "get_token",
    "grant",
    "hash_token",
    "level_rank",
    "list_grants",
    "list_tokens",
    "lookup",
    "readable_ids",
    "rename_resource",
    "resolve",
    "revoke_grant",
    "revoke_token",
    "set_default",
    "touch_token",
]

ROLES = ("reader", "editor", "admin")
LEVELS = (
    "NO_PERMISSIONS",
    "READ",
    "EDIT",
    "MANAGE",
)  # weakest first; each includes the ones before
RESOURCE_TYPES = ("experiment", "registered_model")
EVERYONE = "*"  # the user of a grant that holds for everyone without one of their own
ANY = "*"  # the resource of a grant that holds for every resource of its type
DEFAULT_LEVEL = "READ"  # MLflow's default_permission
TOKEN_PREFIX = "mpk_"
_MAX_TOKEN = 200  # far above a real token's 47 characters; longer is not ours, unhashed


def level_rank(level: str) -> int:
    """The position of ``level`` in ``LEVELS`` (a ValueError for anything else)."""
    return LEVELS.index(level)


def check_level(level: Any) -> str:
    """``level`` as a permission name (case-insensitive), or InvalidArgument naming the four."""
    name = level.upper() if isinstance(level, str) else level
    if name not in LEVELS:
        raise InvalidArgument(f"Unknown permission {level!r}; choose one of: {', '.join(LEVELS)}.")
    return str(name)


def check_role(role: Any) -> str:
    name = role.lower() if isinstance(role, str) else role
    if name not in ROLES:
        raise InvalidArgument(f"Unknown role {role!r}; choose one of: {', '.join(ROLES)}.")
    return str(name)


def check_resource_type(kind: Any) -> str:
    if kind not in RESOURCE_TYPES:
        raise InvalidArgument(
            f"Unknown resource type {kind!r}; choose one of: {', '.join(RESOURCE_TYPES)}."
        )
    return str(kind)


def check_user(user: Any, everyone: bool = False) -> str:
    """A user name; ``*`` (everyone) only where ``everyone`` allows it."""
    validation.name(user, "User name")
    if user != user.strip():
        raise InvalidArgument(f"User name {user!r} starts or ends with spaces; remove them.")
    if user == EVERYONE and not everyone:
        raise InvalidArgument(
            "The user name '*' is reserved: it stands for everyone without a grant of their own."
        )
    return str(user)


# ---------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class Token:
    """A token's row (never the token itself: only its hash is stored)."""

    token_id: str
    user: str
    role: str
    creation_time: dt.datetime
    last_used_time: dt.datetime | None
    revoked_time: dt.datetime | None

    @property
    def revoked(self) -> bool:
        return self.revoked_time is not None

    def to_dict(self) -> dict[str, Any]:
        """The wire form: times as epoch milliseconds (MLflow's), None where unset."""

        def ms(moment: dt.datetime | None) -> int | None:
            return None if moment is None else round(moment.timestamp() * 1000)

        return {
            "token_id": self.token_id,
            "user": self.user,
            "role": self.role,
            "creation_time": ms(self.creation_time),
            "last_used_time": ms(self.last_used_time),
            "revoked_time": ms(self.revoked_time),
        }


def hash_token(secret: str) -> str:
    """The sha256 (hex) a token is stored and found by."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _token(row: Any) -> Token:
    return Token(
        token_id=row.token_id,
        user=row.user_name,
        role=row.role,
        creation_time=from_ms(row.creation_time),  # type: ignore[arg-type]
        last_used_time=from_ms(row.last_used_time),
        revoked_time=from_ms(row.revoked_time),
    )


def create_token(store: SqlStore, user: str, role: str) -> tuple[Token, str]:
    """A new token for ``user`` with ``role``: its row and the token itself, which exists
    nowhere else afterwards (show it to the user once)."""
    user, role = check_user(user), check_role(role)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token_id = secrets.token_hex(8)
    stamp = now_ms()

    def body(conn: sa.Connection) -> None:
        conn.execute(
            t.api_tokens.insert().values(
                token_id=token_id,
                user_name=user,
                role=role,
                sha256=hash_token(secret),
                creation_time=stamp,
                last_used_time=None,
                revoked_time=None,
            )
        )

    store._write(body)
    return get_token(store, token_id), secret


def find_token(store: SqlStore, secret: str) -> Token | None:
    """The token whose hash is ``secret``'s (revoked ones too: the caller says why it fails),
    None if there is none; a string that cannot be a token is not looked up."""
    if not secret.startswith(TOKEN_PREFIX) or len(secret) > _MAX_TOKEN:
        return None
    with store._connect() as conn:
        row = conn.execute(
            sa.select(t.api_tokens).where(t.api_tokens.c.sha256 == hash_token(secret))
        ).one_or_none()
    return None if row is None else _token(row)


def get_token(store: SqlStore, token_id: str) -> Token:
    with store._connect() as conn:
        row = conn.execute(
            sa.select(t.api_tokens).where(t.api_tokens.c.token_id == token_id)
        ).one_or_none()
    if row is None:
        raise NotFound(
            f"No token with id {token_id!r}. List them with: modelpack server token list"
        )
    return _token(row)


def list_tokens(store: SqlStore, user: str | None = None) -> list[Token]:
    """Every token (revoked ones too), oldest first; only ``user``'s when given."""
    query = sa.select(t.api_tokens).order_by(t.api_tokens.c.creation_time, t.api_tokens.c.token_id)
    if user is not None:
        query = query.where(t.api_tokens.c.user_name == user)
    with store._connect() as conn:
        return [_token(row) for row in conn.execute(query)]


def revoke_token(store: SqlStore, token_id: str) -> Token:
    """Mark the token revoked (from now on it authenticates nobody); a token revoked already
    keeps its first revocation time."""
    get_token(store, token_id)  # NotFound naming the command that lists them
    stamp = now_ms()

    def body(conn: sa.Connection) -> None:
        conn.execute(
            t.api_tokens.update()
            .where(t.api_tokens.c.token_id == token_id, t.api_tokens.c.revoked_time.is_(None))
            .values(revoked_time=stamp)
        )

    store._write(body)
    return get_token(store, token_id)


def touch_token(store: SqlStore, token_id: str, when_ms: int, every_ms: int = 60_000) -> bool:
    """Record that the token was used at ``when_ms``, unless its last use on record is less
    than ``every_ms`` older (so many server processes write at most about once a ``every_ms``
    each). Returns whether a row changed."""
    column = t.api_tokens.c.last_used_time
    with store._begin() as conn:
        result = conn.execute(
            t.api_tokens.update()
            .where(
                t.api_tokens.c.token_id == token_id,
                sa.or_(column.is_(None), column <= when_ms - every_ms),
            )
            .values(last_used_time=when_ms)
        )
    return bool(result.rowcount)


# ---------------------------------------------------------------------- grants


@dataclass(frozen=True)
class Grant:
    """One row of ``permissions``: ``user`` (``*``: everyone) has ``permission`` on
    ``resource_id`` (``*``: every one) of ``resource_type``."""

    user: str
    resource_type: str
    resource_id: str
    permission: str

    def to_dict(self) -> dict[str, str]:
        return {
            "user": self.user,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "permission": self.permission,
        }


def _upsert(conn: sa.Connection, values: Mapping[str, str]) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(t.permissions).values(**values)
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["user_name", "resource_type", "resource_id"],
            set_={"permission": statement.excluded.permission},
        )
    )


def _where(user: str, resource_type: str, resource_id: str) -> Any:
    c = t.permissions.c
    return sa.and_(
        c.user_name == user, c.resource_type == resource_type, c.resource_id == resource_id
    )


def grant(store: SqlStore, user: str, resource_type: str, resource_id: str, level: str) -> Grant:
    """Give ``user`` ``level`` on the resource, replacing the grant they had on it."""
    found = Grant(
        check_user(user, everyone=True),
        check_resource_type(resource_type),
        validation.name(resource_id, "Resource id"),
        check_level(level),
    )
    values = {
        "user_name": found.user,
        "resource_type": found.resource_type,
        "resource_id": found.resource_id,
        "permission": found.permission,
    }
    store._write(lambda conn: _upsert(conn, values))
    return found


def get_grant(store: SqlStore, user: str, resource_type: str, resource_id: str) -> Grant | None:
    with store._connect() as conn:
        row = conn.execute(
            sa.select(t.permissions).where(_where(user, resource_type, resource_id))
        ).one_or_none()
    return None if row is None else _grant(row)


def _grant(row: Any) -> Grant:
    return Grant(row.user_name, row.resource_type, row.resource_id, row.permission)


def revoke_grant(store: SqlStore, user: str, resource_type: str, resource_id: str) -> Grant:
    """Remove ``user``'s grant on the resource (their level falls back to the defaults)."""
    found = get_grant(store, user, resource_type, resource_id)
    if found is None:
        who = "everyone ('*')" if user == EVERYONE else f"user {user!r}"
        raise NotFound(
            f"{who[0].upper()}{who[1:]} has no grant on {resource_type} {resource_id!r}. "
            f"List the grants with: modelpack server permission list"
        )
    store._write(
        lambda conn: conn.execute(
            t.permissions.delete().where(_where(user, resource_type, resource_id))
        )
    )
    return found


def list_grants(
    store: SqlStore,
    user: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
) -> list[Grant]:
    """The grants matching every filter given, by resource then user."""
    c = t.permissions.c
    query = sa.select(t.permissions).order_by(c.resource_type, c.resource_id, c.user_name)
    for column, value in (
        (c.user_name, user),
        (c.resource_type, resource_type),
        (c.resource_id, resource_id),
    ):
        if value is not None:
            query = query.where(column == value)
    with store._connect() as conn:
        return [_grant(row) for row in conn.execute(query)]


def set_default(store: SqlStore, level: str, resource_type: str | None = None) -> list[Grant]:
    """The server-wide default (everyone's grant on ``*``), for one resource type or both."""
    kinds = RESOURCE_TYPES if resource_type is None else (check_resource_type(resource_type),)
    return [grant(store, EVERYONE, kind, ANY, level) for kind in kinds]


def defaults(store: SqlStore) -> dict[str, str]:
    """The server-wide default level of each resource type."""
    c = t.permissions.c
    with store._connect() as conn:
        rows = conn.execute(
            sa.select(c.resource_type, c.permission).where(
                c.user_name == EVERYONE, c.resource_id == ANY
            )
        ).all()
    found = dict(rows)
    return {kind: found.get(kind, DEFAULT_LEVEL) for kind in RESOURCE_TYPES}


def lookup(
    store: SqlStore, user: str, resource_type: str, resource_id: str
) -> dict[tuple[str, str], str]:
    """The grants that decide ``user``'s level on the resource, keyed ``(user, resource)``
    (at most four rows: theirs and everyone's, on it and on ``*``), in one query."""
    c = t.permissions.c
    with store._connect() as conn:
        rows = conn.execute(
            sa.select(c.user_name, c.resource_id, c.permission).where(
                c.resource_type == resource_type,
                c.user_name.in_(sorted({user, EVERYONE})),
                c.resource_id.in_(sorted({resource_id, ANY})),
            )
        ).all()
    return {(row.user_name, row.resource_id): row.permission for row in rows}


def resolve(rows: Mapping[tuple[str, str], str], user: str, resource_id: str) -> tuple[str, str]:
    """``user``'s level on ``resource_id`` from ``lookup``'s rows, and where it comes from:
    ``"granted"``, ``"granted on every one"``, ``"everyone's"``, ``"the server default"``,
    ``"MLflow's default"``."""
    for key, source in (
        ((user, resource_id), "granted"),
        ((user, ANY), "granted on every one"),
        ((EVERYONE, resource_id), "everyone's"),
        ((EVERYONE, ANY), "the server default"),
    ):
        if key in rows:
            return rows[key], source
    return DEFAULT_LEVEL, "MLflow's default"


def readable_ids(store: SqlStore, user: str, resource_type: str) -> set[str] | None:
    """The ids (experiments) or names (registered models) ``user`` may read, or None when they
    may read every one (nothing to filter: the common case, answered without listing)."""
    c = t.permissions.c
    with store._connect() as conn:
        rows = conn.execute(
            sa.select(c.user_name, c.resource_id, c.permission).where(
                c.resource_type == check_resource_type(resource_type),
                c.user_name.in_(sorted({user, EVERYONE})),
            )
        ).all()
        grants = {(row.user_name, row.resource_id): row.permission for row in rows}
        read = level_rank("READ")
        named = {rid for _, rid in grants if rid != ANY}
        levels = {rid: resolve(grants, user, rid)[0] for rid in named}
        if level_rank(resolve(grants, user, ANY)[0]) < read:  # the default denies
            return {rid for rid, level in levels.items() if level_rank(level) >= read}
        denied = {rid for rid, level in levels.items() if level_rank(level) < read}
        if not denied:
            return None
        column = (
            t.experiments.c.experiment_id
            if resource_type == "experiment"
            else t.registered_models.c.name
        )
        return set(conn.execute(sa.select(column)).scalars()) - denied


def rename_resource(store: SqlStore, resource_type: str, old: str, new: str) -> int:
    """Move every grant on ``old`` to ``new`` (a registered model renamed); returns how many."""
    c = t.permissions.c

    def body(conn: sa.Connection) -> int:
        conn.execute(  # grants left on the new name by a deleted namesake are not inherited
            t.permissions.delete().where(c.resource_type == resource_type, c.resource_id == new)
        )
        result = conn.execute(
            t.permissions.update()
            .where(c.resource_type == resource_type, c.resource_id == old)
            .values(resource_id=new)
        )
        return int(result.rowcount)

    return store._write(body)


def forget_resource(store: SqlStore, resource_type: str, resource_id: str) -> int:
    """Delete every grant on the resource (a registered model deleted: a new model of that name
    must not inherit them); returns how many."""
    c = t.permissions.c

    def body(conn: sa.Connection) -> int:
        result = conn.execute(
            t.permissions.delete().where(
                c.resource_type == resource_type, c.resource_id == resource_id
            )
        )
        return int(result.rowcount)

    return store._write(body)
