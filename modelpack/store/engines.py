"""Engines for the store's databases, and the one-time, locked schema upgrade."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import functools
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from modelpack.errors import Conflict, InvalidArgument, ModelpackError, NotFound
from modelpack.uris import redact

MIGRATIONS = Path(__file__).parent / "migrations"
# A write that loses a deadlock or a serialization check is run again, this many times in all,
# after a jittered pause that doubles from 10-25 ms up to 10-200 ms: long enough for the winner
# to commit, short enough that a user waits well under a second in all.
ATTEMPTS = 5
_RETRIED = {"40P01": "deadlock detected", "40001": "serialization failure"}
# Any constant works: it only has to be the same in every process that upgrades.
_PG_LOCK_KEY = 0x6D6F64656C7061


def make_engine(url: str) -> sa.Engine:
    """An engine for ``sqlite:///path`` or ``postgresql://...``; no connection is made yet."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise InvalidArgument(
            f"Not a database URL: {redact(url)!r}. Use sqlite:///path/to/modelpack.db or "
            f"postgresql://user@host:5432/db."
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": 60})
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return sa.create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 10})
    raise InvalidArgument(
        f"Unsupported store URL {redact(url)!r}: use sqlite:/// or postgresql://."
    )


def _configure_sqlite(engine: sa.Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE: writers queue on the lock
        # (busy_timeout) instead of failing when a read transaction tries to upgrade.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def connect_error(engine: sa.Engine, exc: Exception) -> ModelpackError:
    reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0] if str(exc) else type(exc)
    return ModelpackError(
        f"Cannot open the tracking store at {redact(engine.url)}: {reason}. Check that the "
        f"database is running and the URL is right."
    )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0].strip() if lines else type(exc).__name__


def _driver_error(exc: BaseException) -> BaseException:
    return exc.orig if isinstance(exc, sa.exc.DBAPIError) and exc.orig is not None else exc


def retryable(exc: BaseException) -> str | None:
    """Why the database refused a write that may succeed if run again, or None.

    SQLite's "database is locked" is not retried: it surfaces only after the busy timeout
    (60 s) has already waited for the lock, so running the write again would only wait again.
    """
    return _RETRIED.get(str(getattr(_driver_error(exc), "sqlstate", None) or ""))


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: jittered, so the losers spread out."""
    return random.uniform(0.01, min(0.2, 0.025 * 2 ** (attempt - 1)))


def db_error(engine: sa.Engine, exc: BaseException, attempts: int = 1) -> ModelpackError:
    """The modelpack error for a database error (SQLAlchemy's or the driver's) that escapes."""
    where = f"The tracking store at {redact(engine.url)}"
    orig = _driver_error(exc)
    reason = _first_line(orig)
    conflict = retryable(exc)
    if conflict is not None or "database is locked" in reason:
        conflict = conflict or "database is locked"
        tries = f" on all {attempts} attempts" if attempts > 1 else ""
        return Conflict(
            f"{where} could not apply this write: concurrent writes to the same records got in "
            f"the way ({conflict}){tries}; nothing was changed. Try again.",
            reason=conflict,
            attempts=attempts,
        )
    dbapi = engine.dialect.loaded_dbapi
    if isinstance(exc, sa.exc.DataError) or isinstance(orig, dbapi.DataError):
        return InvalidArgument(f"{where} cannot store a value: {reason}.")
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or isinstance(
        orig, dbapi.OperationalError | dbapi.InterfaceError
    ):
        return ModelpackError(
            f"{where} failed: {reason}. Check that the database is running and reachable."
        )
    return ModelpackError(f"{where} failed: {type(orig).__name__}: {reason}.")


@contextlib.contextmanager
def translated(engine: sa.Engine) -> Iterator[None]:
    """Turn the database errors raised inside into modelpack's (see ``db_error``).

    IntegrityError passes through: the caller knows what a taken name or number means.
    """
    try:
        yield
    except sa.exc.IntegrityError:
        raise
    except (sa.exc.DBAPIError, engine.dialect.loaded_dbapi.Error) as exc:
        if isinstance(exc, engine.dialect.loaded_dbapi.IntegrityError):
            raise
        raise db_error(engine, exc) from exc


@contextlib.contextmanager
def _upgrade_guard(engine: sa.Engine, conn: sa.Connection) -> Iterator[None]:
    """Hold a lock that every process upgrading this database takes."""
    if engine.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        yield
        return
    database = engine.url.database
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    from alembic.script import ScriptDirectory

    return str(ScriptDirectory(str(MIGRATIONS)).get_current_head())


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine) -> str:
    """Bring the schema to the newest revision, under a lock; returns that revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as conn:
            with _upgrade_guard(engine, conn):
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
    except sa.exc.DBAPIError as exc:
        raise connect_error(engine, exc) from None
    return head_revision()


def ensure_schema(engine: sa.Engine) -> None:
    """On opening a store: upgrade the schema if it is behind (the upgrade itself is locked
    and re-checks, so concurrent first opens migrate once)."""
    try:
        current = current_revision(engine)
    except sa.exc.DBAPIError as exc:
        raise connect_error(engine, exc) from None
    if current != head_revision():
        upgrade(engine)


# One engine (one connection pool) per database URL for the life of the process, like a
# logging configuration: every Client of the same store shares it, so opening a Client is
# free and warm URI resolution takes a millisecond. dispose() releases one (tests do).
_engines: dict[str, sa.Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str, create: bool = True) -> sa.Engine:
    """The shared engine for ``url``, its schema upgraded on first use.

    Args:
        create: make the store if there is none (a new SQLite file, or the schema in an empty
            database); when False, a store that does not exist raises ``NotFound`` instead.
    """
    engine = _engines.get(url)
    if engine is not None:
        return engine
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            if not create:
                _check_exists(url)
            engine = make_engine(url)
            if not create:
                try:
                    revision = current_revision(engine)
                except sa.exc.DBAPIError as exc:
                    engine.dispose()
                    raise connect_error(engine, exc) from None
                if revision is None:
                    engine.dispose()
                    raise NotFound(_missing(url, "the database has no modelpack tables"))
            ensure_schema(engine)
            _engines[url] = engine
    return engine


def _missing(url: str, why: str) -> str:
    return (
        f"No tracking store at {redact(url)}: {why}. Check --tracking-uri or "
        f"MODELPACK_TRACKING_URI (the default is ./modelpack-store in the current folder); a "
        f"store is created when the first run is logged, or by `modelpack db upgrade URI`."
    )


def _check_exists(url: str) -> None:
    """Raise ``NotFound`` if ``url`` names an SQLite file that is not there (reading it
    would create an empty one)."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return  # make_engine explains what a URL should look like
    database = parsed.database
    if parsed.get_backend_name() == "sqlite" and database and database != ":memory:":
        if not Path(database).is_file():
            raise NotFound(_missing(url, f"{Path(database).absolute()} does not exist"))


def dispose(url: str | None = None) -> None:
    """Close the pooled connections of one store (or of all)."""
    with _engines_lock:
        for key in [url] if url is not None else list(_engines):
            engine = _engines.pop(key, None)
            if engine is not None:
                engine.dispose()


atexit.register(dispose)
