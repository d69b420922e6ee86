"""``modelpack db upgrade | current``: the tracking store's schema, migrated explicitly."""

from __future__ import annotations

import argparse
from typing import Any

from modelpack.cli.common import add_store_options, print_json, store_errors, usage
from modelpack.uris import redact


def add_parsers(commands: Any) -> None:
    db = commands.add_parser("db", help="upgrade or inspect the tracking store's schema")
    db.set_defaults(handler=lambda _args: usage(db))
    sub = db.add_subparsers(dest="db_command", metavar="COMMAND")
    for name, handler, text in (
        ("upgrade", cmd_upgrade, "migrate the schema to the newest revision"),
        ("current", cmd_current, "print the schema revision the database is at"),
    ):
        parser = sub.add_parser(name, help=text)
        parser.add_argument(
            "uri", metavar="URI", nargs="?", help="the database (default: --tracking-uri's)"
        )
        add_store_options(parser, artifact_root=False)
        parser.set_defaults(handler=handler)


def _open(args: argparse.Namespace, create: bool) -> Any:
    """An engine for the URI given; ``create=False`` refuses to make a new SQLite file."""
    from pathlib import Path

    import sqlalchemy as sa

    from modelpack.errors import NotFound
    from modelpack.store import default_tracking_uri, engines

    uri = args.uri or args.tracking_uri or default_tracking_uri()
    args.tracking_uri = uri  # the store that store_errors names if the driver fails
    if not create:
        try:
            url = sa.make_url(uri)
        except sa.exc.ArgumentError:
            url = None  # make_engine explains what a URL should look like
        if url is not None and url.get_backend_name() == "sqlite":
            database = url.database
            if database and database != ":memory:" and not Path(database).exists():
                raise NotFound(
                    f"No database at {database}. Create it with: modelpack db upgrade {uri}"
                )
    return engines.make_engine(uri)


def _current(engine: Any) -> str | None:
    import sqlalchemy as sa

    from modelpack.store import engines

    try:
        return engines.current_revision(engine)
    except sa.exc.OperationalError as exc:
        raise engines.connect_error(engine, exc) from None


@store_errors
def cmd_upgrade(args: argparse.Namespace) -> int:
    from modelpack.store import engines

    engine = _open(args, create=True)
    try:
        before = _current(engine)
        revision = engines.upgrade(engine)
    finally:
        engine.dispose()
    url = redact(args.tracking_uri)  # as the user wrote it, password hidden
    if args.json:
        print_json({"url": url, "previous": before, "revision": revision})
    elif before == revision:
        print(f"{url}: already at revision {revision} (head)")
    else:
        print(f"{url}: upgraded {before or '(empty)'} -> {revision} (head)")
    return 0


@store_errors
def cmd_current(args: argparse.Namespace) -> int:
    from modelpack.store import engines

    engine = _open(args, create=False)
    try:
        current = _current(engine)
    finally:
        engine.dispose()
    head = engines.head_revision()
    url = redact(args.tracking_uri)  # as the user wrote it, password hidden
    if args.json:
        print_json({"url": url, "revision": current, "head": head, "up_to_date": current == head})
    elif current is None:
        print(f"{url}: no schema yet (head is {head}); create it with `modelpack db upgrade`")
    elif current == head:
        print(f"{url}: {current} (head)")
    else:
        print(f"{url}: {current}, behind head {head}; migrate with `modelpack db upgrade`")
    return 0
