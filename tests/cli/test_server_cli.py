"""``modelpack server``: its options (with MLflow's spellings), the refusal to serve other
machines without authentication, and real servers in subprocesses (one worker and two)."""

from __future__ import annotations

import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

import pytest

from modelpack.cli import build_parser, main
from modelpack.cli.server import options_of
from modelpack.server.app import all_endpoints
from modelpack.server.main import check_exposure, from_environment, to_environment

READY_S = 60  # a cold interpreter on a busy CI machine


def parse(*argv: str):
    return build_parser().parse_args(["server", *argv])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_help_lists_the_options(capsys):
    with pytest.raises(SystemExit) as e:
        main(["server", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for flag in (
        "--backend-store-uri",
        "--artifact-root",
        "--default-artifact-root",
        "--artifacts-destination",
        "--serve-artifacts, --no-serve-artifacts",
        "--workers",
        "--auth {none,token}",
        "--insecure-no-auth",
        "--allowed-hosts",
        "--cors-origins",
        "--max-body-bytes",
        "--log-level",
    ):
        assert flag in out, flag


def test_options_and_mlflow_spellings():
    opts = options_of(parse())
    assert (opts.host, opts.port, opts.workers, opts.auth) == ("127.0.0.1", 5000, 1, "none")
    assert opts.serve_artifacts is True and opts.cors_origins == ()
    assert opts.allowed_hosts is None and opts.max_body_bytes == 16 * 1024**2
    opts = options_of(
        parse(
            "--port", "5001", "--backend-store-uri", "sqlite:////tmp/x.db",
            "--default-artifact-root", "s3://bucket/art", "--cors-allowed-origins",
            "https://a.example, https://b.example", "--no-serve-artifacts", "-w", "3",
            "--allowed-hosts", "models.internal", "--max-body-bytes", "1MiB",
        )
    )  # fmt: skip
    assert opts.port == 5001 and opts.workers == 3
    assert opts.backend_store_uri == "sqlite:////tmp/x.db"
    assert opts.artifact_root == "s3://bucket/art"
    assert opts.cors_origins == ("https://a.example", "https://b.example")
    assert opts.serve_artifacts is False
    assert opts.allowed_hosts == ("models.internal",)
    assert opts.max_body_bytes == 1024**2
    assert options_of(parse("--artifacts-destination", "/a")).artifact_root == "/a"
    assert options_of(parse("--tracking-uri", "sqlite:///y.db")).backend_store_uri.endswith("y.db")
    same = parse("--artifact-root", "/a", "--artifacts-destination", "/a")
    assert options_of(same).artifact_root == "/a"


def test_conflicting_artifact_roots_are_refused(capsys):
    code = main(["server", "--default-artifact-root", "/a", "--artifacts-destination", "/b"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --default-artifact-root and --artifacts-destination name ")
    assert "Give one of them." in err


def test_options_travel_to_workers():
    opts = options_of(parse("--cors-origins", "https://a.example", "--allowed-hosts", "a,b"))
    assert from_environment(to_environment(opts)) == opts


def test_a_wide_address_without_auth_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for host in ("0.0.0.0", "::", "10.1.2.3"):
        assert main(["server", "--host", host]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1
        assert err[0].startswith(f"error: Refusing to listen on {host} without authentication")
        assert "--auth token" in err[0] and "--insecure-no-auth" in err[0]
    assert not (tmp_path / "modelpack-store").exists()  # refused before anything was opened
    check_exposure(options_of(parse("--host", "0.0.0.0", "--auth", "token")))
    check_exposure(options_of(parse("--host", "0.0.0.0", "--insecure-no-auth")))
    check_exposure(options_of(parse("--host", "localhost")))


def test_a_port_in_use_is_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["server", "--port", str(port)]) == 1
    assert capsys.readouterr().err == (
        f"error: Port {port} on 127.0.0.1 is already in use by another process. Stop it, or "
        f"choose another port with --port.\n"
    )


# ---------------------------------------------------------------------- real servers


class Server:
    """``modelpack server`` in a subprocess, on a fresh SQLite store in ``tmp_path``."""

    def __init__(self, tmp_path, *args: str) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODELPACK_")}
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "modelpack.cli", "server", "--port", str(self.port),
                "--backend-store-uri", f"sqlite:///{tmp_path}/db.sqlite",
                "--artifact-root", str(tmp_path / "artifacts"), "--log-level", "warning", *args,
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        self.ready = self._first_line()

    def _first_line(self) -> str:
        deadline = time.monotonic() + READY_S
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.5)
            if ready:
                return self.process.stdout.readline().strip()
            if self.process.poll() is not None:
                break
        self.process.kill()
        raise AssertionError(f"no ready line; stderr: {self.process.stderr.read()}")

    def get(self, path: str, host: str | None = None) -> tuple[int, str]:
        for _ in range(100):  # workers may still be starting: connections wait, or are refused
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.putrequest("GET", path, skip_host=host is not None)
                if host is not None:
                    conn.putheader("Host", host)
                conn.endheaders()
                response = conn.getresponse()
                return response.status, response.read().decode()
            except ConnectionError:
                time.sleep(0.1)
            finally:
                conn.close()
        raise AssertionError(f"the server on port {self.port} never answered")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process.stdout.close()
            self.process.stderr.close()


@pytest.fixture
def start(tmp_path):
    started: list[Server] = []

    def start_(*args: str) -> Server:
        server = Server(tmp_path, *args)
        started.append(server)
        return server

    yield start_
    for server in started:
        if server.process.poll() is None:
            server.stop()


def test_a_real_server_answers_and_stops_on_sigterm(start):
    server = start()
    url = f"http://127.0.0.1:{server.port}"
    assert server.ready.startswith(f"modelpack server ready at {url} ")
    assert f"MLFLOW_TRACKING_URI={url}" in server.ready
    assert server.get("/health") == (200, "OK")
    status, body = server.get("/api/3.0/mlflow/server-info")
    assert status == 200 and json.loads(body)["store_type"] == "SqlStore"
    status, body = server.get("/api/3.0/mlflow/server-info", host="evil.example")
    assert status == 400 and "--allowed-hosts" in body
    assert server.get("/health", host="evil.example") == (200, "OK")
    assert server.get("/version", host=f"localhost:{server.port}")[0] == 200
    assert server.stop() == 0


def test_experiment_zero_over_http(start):
    if not any(e.path == "/mlflow/experiments/get" for e in all_endpoints()):
        pytest.skip("the tracking endpoints are not mounted yet (server/tracking.py)")
    server = start()
    status, body = server.get("/api/2.0/mlflow/experiments/get?experiment_id=0")
    assert status == 200, body
    experiment = json.loads(body)["experiment"]
    assert (experiment["experiment_id"], experiment["name"]) == ("0", "Default")
    assert server.stop() == 0


def test_two_workers_share_the_port(start):
    server = start("--workers", "2")
    assert server.ready.startswith(f"modelpack server ready at http://127.0.0.1:{server.port}")
    for _ in range(6):
        assert server.get("/health") == (200, "OK")
        status, body = server.get("/api/3.0/mlflow/server-info")
        assert status == 200 and json.loads(body)["modelpack_version"]
    status, body = server.get("/api/3.0/mlflow/server-info", host="evil.example")
    assert status == 400  # the workers got the options, the Host allowlist with them
    assert server.stop() == 0


def test_admin_subcommands_and_server_options_parse_as_typed(monkeypatch):
    """``modelpack server token create ...`` reaches server_admin's parser; without a
    subcommand the options run the server."""
    import types

    def add_parsers(subcommands):
        token = subcommands.add_parser("token").add_subparsers(dest="token_command")
        create = token.add_parser("create")
        create.add_argument("--user", required=True)
        create.add_argument("--role", choices=["reader", "editor", "admin"])
        create.set_defaults(handler=lambda args: 0)

    fake = types.ModuleType("modelpack.cli.server_admin")
    fake.add_parsers = add_parsers
    monkeypatch.setitem(sys.modules, "modelpack.cli.server_admin", fake)
    args = parse("token", "create", "--user", "ann", "--role", "editor")
    assert (args.server_command, args.user, args.role) == ("token", "ann", "editor")
    assert args.handler(args) == 0
    args = parse("--port", "5001")
    assert args.server_command is None and args.port == 5001
    assert args.handler.__name__ == "cmd_server"
    args = parse("--port", "5001", "token", "create", "--user", "bob")
    assert (args.port, args.user) == (5001, "bob")
