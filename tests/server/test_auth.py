"""Tokens, roles and permissions of ``modelpack server --auth token``, through HTTP.

Most tests mount a few endpoints of their own (each declaring its ``Access`` as the server's
handlers do) beside the real admin API, so the rules are tested apart from any one handler;
the last ones use the server's own app.
"""

from __future__ import annotations

import base64

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from modelpack.server import auth
from modelpack.server.app import routes
from modelpack.server.config import ServerOptions
from modelpack.server.endpoints import LOGIN, Access, Endpoint, on_experiment, on_model
from modelpack.server.state import ServerState
from modelpack.server.wire import text
from modelpack.store import auth as store_auth


def _experiment(call):
    return text(call.params, "experiment_id")


def _model(call):
    return text(call.params, "name")


def create_experiment(call):
    experiment_id = call.state.store.create_experiment(text(call.params, "name"))
    auth.record_creator(call, "experiment", experiment_id)
    return {"experiment_id": experiment_id}


def create_model(call):
    name = text(call.params, "name")
    call.state.store.create_registered_model(name)
    auth.record_creator(call, "registered_model", name)
    return {"name": name}


def rename_model(call):
    name, new = _model(call), text(call.params, "new_name")
    call.state.store.rename_registered_model(name, new, call.user)
    auth.rename_resource(call, "registered_model", name, new)
    return {"name": new}


def delete_model(call):
    call.state.store.delete_registered_model(_model(call), call.user)
    auth.forget_resource(call, "registered_model", _model(call))
    return {}


def search(call):
    experiments, models = auth.readable_experiments(call), auth.readable_models(call)
    return {
        "experiments": None if experiments is None else sorted(experiments),
        "models": None if models is None else sorted(models),
    }


def whoami(call):
    return {"user": call.user}


def done(call):
    return {"user": call.user}


TEST_ENDPOINTS = [
    Endpoint(("POST",), "/t/experiments/create", create_experiment, on_experiment("EDIT", lambda c: None), "create"),  # noqa: E501
    Endpoint(("GET",), "/t/experiments/get", done, on_experiment("READ", _experiment), "read"),
    Endpoint(("POST",), "/t/experiments/write", done, on_experiment("EDIT", _experiment), "write"),
    Endpoint(("POST",), "/t/experiments/delete", done, on_experiment("MANAGE", _experiment), "delete"),  # noqa: E501
    Endpoint(("POST",), "/t/models/create", create_model, on_model("EDIT", lambda c: None), "create"),  # noqa: E501
    Endpoint(("GET",), "/t/models/get", done, on_model("READ", _model), "read"),
    Endpoint(("POST",), "/t/models/write", done, on_model("EDIT", _model), "write"),
    Endpoint(("POST",), "/t/models/rename", rename_model, on_model("MANAGE", _model), "rename"),
    Endpoint(("POST",), "/t/models/delete", delete_model, on_model("MANAGE", _model), "delete"),
    Endpoint(("GET",), "/t/search", search, LOGIN, "search"),
    Endpoint(("POST",), "/t/whoami", whoami, LOGIN, "whoami"),
    Endpoint(("GET",), "/t/odd/kind", done, Access("permission", "run", "READ", _experiment), "?"),
    Endpoint(("GET",), "/t/odd/locate", done, Access("permission", "experiment", "READ"), "?"),
    Endpoint(("GET",), "/t/odd/access", done, Access("owner"), "?"),
]  # fmt: skip

API = "/api/2.0"


class Server:
    """A test app on a fresh SQLite store, with helpers to make tokens and calls."""

    def __init__(self, tmp_path, mode="token"):
        options = ServerOptions.build(
            backend_store_uri=f"sqlite:///{tmp_path / 'store.db'}",
            artifact_root=str(tmp_path / "artifacts"),
            auth=mode,
        )
        self.state = ServerState(options)
        app = Starlette(routes=routes(self.state, [*TEST_ENDPOINTS, *auth.ENDPOINTS]))
        self.http = TestClient(app, base_url="http://localhost")
        self.admin = self.token("root", "admin")

    def token(self, user, role):
        return store_auth.create_token(self.state.store, user, role)[1]

    def call(self, method, path, token=None, **kwargs):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.http.request(method, API + path, headers=headers, **kwargs)


@pytest.fixture
def server(tmp_path):
    return Server(tmp_path)


def denied(response, *phrases):
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error_code"] == "PERMISSION_DENIED"
    for phrase in phrases:
        assert phrase in body["message"], body["message"]
    return body["message"]


def test_no_token_unknown_token_and_bad_headers_are_401(server):
    for headers, phrase in [
        ({}, "This server needs a token. Send 'Authorization: Bearer <token>'"),
        ({"Authorization": "Bearer mpk_nope"}, "not one of this server's"),
        ({"Authorization": "Bearer " + server.admin[:-1]}, "not one of this server's"),
        ({"Authorization": "Token abc"}, "Unsupported Authorization header (scheme 'Token')"),
        ({"Authorization": "Basic !!!"}, "not base64 of 'user:token'"),
        (
            {"Authorization": "Basic " + base64.b64encode(b"root").decode()},
            "not base64 of 'user:token'",
        ),
    ]:
        response = server.http.post(f"{API}/t/whoami", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="modelpack"'
        assert response.json()["error_code"] == "UNAUTHENTICATED"
        assert phrase in response.json()["message"]


def test_basic_auth_takes_the_token_as_password_and_its_user_as_username(server):
    token = server.token("alice", "editor")
    ok = server.http.post(f"{API}/t/whoami", auth=("alice", token), json={"user_id": "mallory"})
    assert ok.status_code == 200 and ok.json() == {"user": "alice"}
    wrong = server.http.post(f"{API}/t/whoami", auth=("bob", token))
    assert wrong.status_code == 401
    assert wrong.json()["message"] == (
        "The token belongs to user 'alice', but the Basic credentials name 'bob'; "
        "set MLFLOW_TRACKING_USERNAME=alice."
    )


def test_the_actor_is_the_tokens_user_never_the_one_the_client_claims(server):
    token = server.token("alice", "editor")
    claimed = server.call("POST", "/t/whoami", token, json={"user_id": "mallory"})
    assert claimed.json() == {"user": "alice"}


def test_without_auth_everyone_is_an_anonymous_admin_named_as_they_say(tmp_path):
    open_server = Server(tmp_path, mode="none")
    assert open_server.call("POST", "/t/whoami", json={"user_id": "dana"}).json() == {
        "user": "dana"
    }
    assert open_server.call("POST", "/t/whoami").json() == {"user": "unknown"}
    made = open_server.call("POST", "/t/experiments/create", json={"name": "x"})
    assert made.status_code == 200
    assert store_auth.list_grants(open_server.state.store) == []  # nobody to record
    assert open_server.call("GET", "/t/search").json() == {"experiments": None, "models": None}
    assert open_server.call("GET", "/modelpack/auth/whoami").json() == {
        "user": None,
        "role": "admin",
        "auth": "none",
    }


def test_a_reader_reads_but_never_writes_even_with_a_grant(server):
    owner = server.token("olga", "editor")
    experiment = server.call("POST", "/t/experiments/create", owner, json={"name": "e"}).json()
    reader = server.token("rita", "reader")
    params = {"experiment_id": experiment["experiment_id"]}
    assert server.call("GET", "/t/experiments/get", reader, params=params).status_code == 200
    before = denied(server.call("POST", "/t/experiments/write", reader, json=params))
    server.call(
        "POST",
        "/modelpack/permissions/grant",
        server.admin,
        json={"user": "rita", **params, "permission": "EDIT"},
    ).raise_for_status()
    message = denied(server.call("POST", "/t/experiments/write", reader, json=params))
    assert message == before
    assert message == (
        f"User 'rita' has a reader token, which can at most READ: POST /api/2.0/t/experiments/"
        f"write needs EDIT on experiment '{params['experiment_id']}'. Ask an admin for an "
        f"editor token: modelpack server token create --user rita --role editor"
    )
    denied(
        server.call("POST", "/t/experiments/create", reader, json={"name": "mine"}),
        "User 'rita' has a reader token, which may not create an experiment",
        "creating needs the role editor or admin",
    )


def test_an_editor_manages_what_it_creates_and_nothing_else_without_a_grant(server):
    alice, bob = server.token("alice", "editor"), server.token("bob", "editor")
    mine = server.call("POST", "/t/experiments/create", alice, json={"name": "a"}).json()
    params = {"experiment_id": mine["experiment_id"]}
    for path in ("/t/experiments/write", "/t/experiments/delete"):
        assert server.call("POST", path, alice, json=params).json() == {"user": "alice"}
    assert (
        store_auth.get_grant(
            server.state.store, "alice", "experiment", mine["experiment_id"]
        ).permission
        == "MANAGE"
    )
    denied(server.call("POST", "/t/experiments/write", bob, json=params), "User 'bob' needs EDIT")
    grant = {"user": "bob", **params, "permission": "EDIT"}
    granted = server.call("POST", "/modelpack/permissions/grant", server.admin, json=grant)
    assert granted.json() == {"permission": {"user": "bob", "resource_type": "experiment",
                                             "resource_id": mine["experiment_id"],
                                             "permission": "EDIT"}}  # fmt: skip
    assert server.call("POST", "/t/experiments/write", bob, json=params).status_code == 200
    denied(server.call("POST", "/t/experiments/delete", bob, json=params), "needs MANAGE")
    revoke = {"user": "bob", **params}
    server.call("POST", "/modelpack/permissions/revoke", server.admin, json=revoke)
    denied(server.call("POST", "/t/experiments/write", bob, json=params), "has READ")


def test_grants_per_registered_model_follow_renames_and_end_with_deletion(server):
    alice, bob = server.token("alice", "editor"), server.token("bob", "editor")
    server.call("POST", "/t/models/create", alice, json={"name": "Churn"}).raise_for_status()
    server.call("POST", "/t/models/create", alice, json={"name": "Other"}).raise_for_status()
    grant = {"user": "bob", "registered_model_name": "Churn", "permission": "EDIT"}
    server.call("POST", "/modelpack/permissions/grant", server.admin, json=grant)
    assert server.call("POST", "/t/models/write", bob, json={"name": "Churn"}).status_code == 200
    denied(
        server.call("POST", "/t/models/write", bob, json={"name": "Other"}),
        "User 'bob' needs EDIT on registered model 'Other'",
        "--user bob --model Other --level EDIT",
    )
    renamed = server.call(
        "POST", "/t/models/rename", alice, json={"name": "Churn", "new_name": "C2"}
    )
    assert renamed.status_code == 200
    assert server.call("POST", "/t/models/write", bob, json={"name": "C2"}).status_code == 200
    server.call("POST", "/t/models/delete", alice, json={"name": "C2"}).raise_for_status()
    assert store_auth.list_grants(server.state.store, resource_id="C2") == []
    server.call("POST", "/t/models/create", bob, json={"name": "C2"}).raise_for_status()
    denied(server.call("POST", "/t/models/write", alice, json={"name": "C2"}), "'alice' needs EDIT")


def test_the_default_permission_hides_what_nobody_granted(server):
    alice, bob = server.token("alice", "editor"), server.token("bob", "reader")
    mine = server.call("POST", "/t/experiments/create", alice, json={"name": "a"}).json()
    server.call("POST", "/t/models/create", alice, json={"name": "M"}).raise_for_status()
    params = {"experiment_id": mine["experiment_id"]}
    assert server.call("GET", "/t/search", bob).json() == {"experiments": None, "models": None}
    assert server.call("GET", "/t/experiments/get", bob, params=params).status_code == 200
    answer = server.call(
        "POST",
        "/modelpack/permissions/default",
        server.admin,
        json={"permission": "NO_PERMISSIONS"},
    )
    assert answer.json() == {
        "defaults": {"experiment": "NO_PERMISSIONS", "registered_model": "NO_PERMISSIONS"}
    }
    denied(
        server.call("GET", "/t/experiments/get", bob, params=params),
        "has NO_PERMISSIONS (the server default)",
    )
    denied(server.call("GET", "/t/models/get", bob, params={"name": "M"}), "needs READ")
    assert server.call("GET", "/t/search", bob).json() == {"experiments": [], "models": []}
    assert server.call("GET", "/t/search", alice).json() == {
        "experiments": [mine["experiment_id"]],
        "models": ["M"],
    }
    assert server.call("GET", "/t/search", server.admin).json() == {
        "experiments": None,
        "models": None,
    }
    everyone = {"user": "*", **params, "permission": "READ"}
    server.call("POST", "/modelpack/permissions/grant", server.admin, json=everyone)
    assert server.call("GET", "/t/experiments/get", bob, params=params).status_code == 200
    listed = server.call("GET", "/modelpack/permissions/list", server.admin, params=params)
    assert [(g["user"], g["permission"]) for g in listed.json()["permissions"]] == [
        ("*", "READ"),
        ("alice", "MANAGE"),
    ]


def test_experiment_zero_is_the_default_experiment(server):
    bob = server.token("bob", "editor")
    params = {"experiment_id": "0"}
    denied(server.call("POST", "/t/experiments/write", bob, json=params), "experiment '0'")
    grant = {"user": "bob", **params, "permission": "EDIT"}
    answer = server.call("POST", "/modelpack/permissions/grant", server.admin, json=grant)
    assert answer.json()["permission"]["resource_id"] == "0"
    stored = store_auth.list_grants(server.state.store, user="bob")[0].resource_id
    assert stored == server.state.default_experiment_id
    assert server.call("POST", "/t/experiments/write", bob, json=params).status_code == 200


def test_admin_api_needs_an_admin_and_checks_what_it_is_given(server):
    editor = server.token("alice", "editor")
    denied(
        server.call("GET", "/modelpack/tokens/list", editor),
        "User 'alice' (role editor) may not GET /api/2.0/modelpack/tokens/list",
        "needs an admin's token",
    )
    for body, code, phrase in [
        ({"user": "bob", "experiment_id": "nope", "permission": "READ"}, 404, "'nope'"),
        ({"user": "bob", "registered_model_name": "Nope", "permission": "READ"}, 404, "'Nope'"),
        ({"user": "bob", "experiment_id": "0", "permission": "ALL"}, 400, "Unknown permission"),
        ({"user": "bob", "permission": "READ"}, 400, "'experiment_id' or 'registered_model_name'"),
    ]:
        answer = server.call("POST", "/modelpack/permissions/grant", server.admin, json=body)
        assert answer.status_code == code and phrase in answer.json()["message"], answer.text


def test_tokens_through_the_api_a_revoked_one_is_refused_at_once(server):
    made = server.call(
        "POST", "/modelpack/tokens/create", server.admin, json={"user": "bob", "role": "editor"}
    ).json()
    token, info = made["token"], made["token_info"]
    assert token.startswith("mpk_") and info["user"] == "bob" and info["role"] == "editor"
    assert server.call("POST", "/t/whoami", token).json() == {"user": "bob"}
    listed = server.call("GET", "/modelpack/tokens/list", server.admin, params={"user": "bob"})
    [row] = listed.json()["tokens"]
    assert row["token_id"] == info["token_id"] and row["last_used_time"] is not None
    assert token not in listed.text
    revoked = server.call(
        "POST", "/modelpack/tokens/revoke", server.admin, json={"token_id": info["token_id"]}
    )
    assert revoked.json()["token_info"]["revoked_time"] is not None
    refused = server.call("POST", "/t/whoami", token)
    assert refused.status_code == 401
    assert f"Token {info['token_id']} of user 'bob' was revoked on" in refused.json()["message"]


def test_mlflow_permission_api_for_managers(server):
    alice, bob = server.token("alice", "editor"), server.token("bob", "editor")
    experiment = server.call("POST", "/t/experiments/create", alice, json={"name": "e"}).json()
    eid = experiment["experiment_id"]
    body = {"experiment_id": eid, "username": "bob", "permission": "EDIT"}
    path = "/mlflow/experiments/permissions"
    denied(server.call("POST", f"{path}/create", bob, json=body), "needs MANAGE")
    created = server.call("POST", f"{path}/create", alice, json=body)
    assert created.json() == {
        "experiment_permission": {"experiment_id": eid, "user_id": "bob", "permission": "EDIT"}
    }
    again = server.call("POST", f"{path}/create", alice, json=body)
    assert again.status_code == 400 and again.json()["error_code"] == "RESOURCE_ALREADY_EXISTS"
    assert server.call("POST", "/t/experiments/write", bob, json={"experiment_id": eid}).is_success
    query = {"experiment_id": eid, "username": "bob"}
    got = server.call("GET", f"{path}/get", alice, params=query)
    assert got.json()["experiment_permission"]["permission"] == "EDIT"
    server.call("PATCH", f"{path}/update", alice, json={**query, "permission": "READ"})
    denied(server.call("POST", "/t/experiments/write", bob, json={"experiment_id": eid}))
    assert server.call("DELETE", f"{path}/delete", alice, json=query).json() == {}
    missing = server.call("GET", f"{path}/get", alice, params=query)
    assert missing.status_code == 404 and "the default applies" in missing.json()["message"]

    server.call("POST", "/t/models/create", alice, json={"name": "M"}).raise_for_status()
    model = {"name": "M", "username": "bob", "permission": "MANAGE"}
    answer = server.call("POST", "/mlflow/registered-models/permissions/create", alice, json=model)
    assert answer.json() == {
        "registered_model_permission": {"name": "M", "user_id": "bob", "permission": "MANAGE"}
    }
    assert server.call("POST", "/t/models/delete", bob, json={"name": "M"}).is_success


# ---------------------------------------------------------------------- the server's own app


@pytest.fixture
def real(tmp_path):
    from modelpack.server import create_app

    app = create_app(
        backend_store_uri=f"sqlite:///{tmp_path / 'store.db'}",
        artifact_root=str(tmp_path / "artifacts"),
        auth="token",
    )
    state = app.state.server
    with TestClient(app, base_url="http://localhost") as http:

        def call(method, path, user=None, **kwargs):
            if user is not None:
                kwargs["headers"] = {"Authorization": f"Bearer {tokens[user]}"}
            return http.request(method, API + path, **kwargs)

        tokens = {
            user: store_auth.create_token(state.store, user, role)[1]
            for user, role in (("root", "admin"), ("alice", "editor"), ("bob", "reader"))
        }
        yield call


def test_the_registry_history_records_the_authenticated_user(real):
    made = real("POST", "/mlflow/registered-models/create", "alice", json={"name": "Churn"})
    assert made.status_code == 200, made.text
    renamed = real(
        "POST",
        "/mlflow/registered-models/rename",
        "alice",
        json={"name": "Churn", "new_name": "Churn2", "user_id": "mallory"},
    )
    assert renamed.status_code == 200, renamed.text
    history = real("GET", "/modelpack/registered-models/history", "bob", params={"name": "Churn2"})
    assert [(r["action"], r["user_id"]) for r in history.json()["history"]] == [("rename", "alice")]
    denied(
        real("POST", "/mlflow/registered-models/rename", "bob",
             json={"name": "Churn2", "new_name": "Mine"}),
        "User 'bob' has a reader token",
    )  # fmt: skip


def test_searches_show_only_what_the_caller_may_read(real):
    for name in ("A", "B"):
        real("POST", "/mlflow/registered-models/create", "alice", json={"name": name})
    experiments = [
        real("POST", "/mlflow/experiments/create", "root", json={"name": n}).json()["experiment_id"]
        for n in ("x", "y")
    ]
    real("POST", "/modelpack/permissions/default", "root", json={"permission": "NO_PERMISSIONS"})
    real(
        "POST",
        "/modelpack/permissions/grant",
        "root",
        json={"user": "bob", "experiment_id": experiments[1], "permission": "READ"},
    )

    def models(user):
        answer = real("GET", "/mlflow/registered-models/search", user)
        return sorted(m["name"] for m in answer.json().get("registered_models", []))

    def experiment_ids(user):
        answer = real("POST", "/mlflow/experiments/search", user, json={"max_results": 100})
        return sorted(e["experiment_id"] for e in answer.json().get("experiments", []))

    assert models("alice") == ["A", "B"] and models("bob") == [] and models("root") == ["A", "B"]
    assert experiment_ids("bob") == [experiments[1]]
    assert experiment_ids("root") == sorted(["0", *experiments])


def test_steady_state_requests_cost_no_query_and_the_cache_window_bounds_a_revoke(server):
    import sqlalchemy as sa

    authorizer = server.state.auth
    for cache in (authorizer._tokens, authorizer._levels, authorizer._readable):
        cache.ttl = 3600.0  # no expiry during the test, however slow the machine
    authorizer.touch_every = 3600.0
    alice = server.token("alice", "editor")
    experiment = server.call("POST", "/t/experiments/create", alice, json={"name": "e"}).json()
    params = {"experiment_id": experiment["experiment_id"]}
    server.call("POST", "/t/experiments/write", alice, json=params).raise_for_status()  # warm
    server.call("GET", "/t/search", alice).raise_for_status()
    statements = []
    engine = server.state.store.engine

    def count(*args):
        statements.append(args[2])

    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        for _ in range(5):
            assert server.call("POST", "/t/experiments/write", alice, json=params).is_success
            assert server.call("GET", "/t/search", alice).is_success
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert [s[:70] for s in statements] == []
    token = store_auth.find_token(server.state.store, alice)
    assert token.last_used_time is not None  # written once, on first use

    store_auth.revoke_token(server.state.store, token.token_id)  # as the CLI does, elsewhere
    assert server.call("POST", "/t/whoami", alice).is_success  # cached: within the window
    authorizer._tokens.ttl = 0.0  # the window has passed
    assert server.call("POST", "/t/whoami", alice).status_code == 401


def test_an_access_the_check_does_not_know_is_refused(server):
    for path in ("/t/odd/kind", "/t/odd/locate", "/t/odd/access"):
        denied(
            server.call(
                "GET", path, server.token("alice", "editor"), params={"experiment_id": "0"}
            ),
            "this is a bug in the server",
        )


def test_an_editor_writes_runs_in_the_experiment_it_created_through_mlflows_api(tmp_path):
    from modelpack.server import create_app

    app = create_app(
        backend_store_uri=f"sqlite:///{tmp_path / 'store.db'}",
        artifact_root=str(tmp_path / "artifacts"),
        auth="token",
    )
    with TestClient(app, base_url="http://localhost") as http:
        store = app_state(app).store
        alice = store_auth.create_token(store, "alice", "editor")[1]
        bob = store_auth.create_token(store, "bob", "editor")[1]

        def call(path, token, body):
            headers = {"Authorization": f"Bearer {token}"}
            return http.post(f"{API}/mlflow/{path}", headers=headers, json=body)

        experiment_id = call("experiments/create", alice, {"name": "mine"}).json()["experiment_id"]
        run = call("runs/create", alice, {"experiment_id": experiment_id})
        assert run.status_code == 200, run.text
        assert run.json()["run"]["info"]["user_id"] == "alice"
        denied(call("runs/create", bob, {"experiment_id": experiment_id}), "User 'bob' needs EDIT")


def app_state(app):
    """The ServerState behind ``create_app``'s app (the security layer wraps it)."""
    while not hasattr(getattr(app, "state", None), "server"):
        app = app.app
    return app.state.server
