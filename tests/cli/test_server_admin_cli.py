"""``modelpack server token ...`` and ``modelpack server permission ...``."""

from __future__ import annotations

import json

import pytest

from modelpack.cli import main
from modelpack.store import auth, open_store


@pytest.fixture
def store_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing lands in the working directory by default
    monkeypatch.delenv("MODELPACK_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'server' / 'modelpack.db'}"


def run(capsys, *argv):
    code = main(["server", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_token_create_prints_the_token_alone_once(capsys, store_uri):
    code, out, err = run(
        capsys, "token", "create", "--user", "alice", "--role", "editor", "--backend-store-uri",
        store_uri,
    )  # fmt: skip
    assert code == 0
    token = out.strip()
    assert token.startswith("mpk_") and "\n" not in token
    assert "shown this once and stored only hashed" in err
    assert "MLFLOW_TRACKING_USERNAME=alice" in err
    store = open_store(store_uri, None, create=False)
    found = auth.find_token(store, token)
    assert (found.user, found.role, found.revoked) == ("alice", "editor", False)

    code, out, _ = run(capsys, "token", "list", "--backend-store-uri", store_uri)
    assert code == 0 and token not in out
    header, row = out.strip().splitlines()
    assert header.split() == ["TOKEN_ID", "USER", "ROLE", "CREATED", "LAST_USED", "REVOKED"]
    assert row.split()[:3] == [found.token_id, "alice", "editor"]
    assert row.split()[-2:] == ["-", "-"]  # never used, not revoked

    code, out, _ = run(capsys, "token", "revoke", found.token_id, "--tracking-uri", store_uri)
    assert code == 0
    assert out.startswith(f"Revoked token {found.token_id} of user 'alice' (role editor) at ")
    assert "running servers see it within 5 seconds" in out
    assert auth.find_token(store, token).revoked

    code, out, _ = run(capsys, "--backend-store-uri", store_uri, "token", "list", "--json")
    [listed] = json.loads(out)["tokens"]
    assert listed["token_id"] == found.token_id and listed["revoked_time"] is not None


def test_token_errors(capsys, store_uri):
    code, _, err = run(capsys, "token", "revoke", "nope", "--backend-store-uri", store_uri)
    assert code == 1 and "error: No tracking store at sqlite:///" in err  # never creates one
    open_store(store_uri, None)
    code, _, err = run(capsys, "token", "revoke", "nope", "--backend-store-uri", store_uri)
    assert code == 1 and "error: No token with id 'nope'" in err
    code, _, err = run(capsys, "token", "create", "--user", "*", "--role", "admin",
                       "--backend-store-uri", store_uri)  # fmt: skip
    assert code == 1 and "error: The user name '*' is reserved" in err
    with pytest.raises(SystemExit) as exit_:
        main(["server", "token", "create", "--user", "a", "--role", "root"])
    assert exit_.value.code == 2
    assert "invalid choice: 'root'" in capsys.readouterr().err
    code, _, err = run(capsys, "token", "list", "--backend-store-uri", "http://localhost:5000")
    assert code == 1 and "is a server; token and permission commands write" in err


def test_permissions(capsys, store_uri):
    store = open_store(store_uri, None)
    experiment = store.create_experiment("churn")
    store.create_registered_model("Churn")
    uri = ("--backend-store-uri", store_uri)
    code, out, _ = run(capsys, "permission", "grant", "--user", "bob", "--experiment", "churn",
                       "--level", "edit", *uri)  # fmt: skip
    assert code == 0
    assert out.startswith(f"Granted EDIT on experiment {experiment} (churn) to user 'bob'")
    code, out, _ = run(capsys, "permission", "grant", "--user", "*", "--model", "Churn",
                       "--level", "NO_PERMISSIONS", *uri)  # fmt: skip
    assert "Granted NO_PERMISSIONS on registered model 'Churn' to everyone without a grant" in out
    code, out, _ = run(capsys, "permission", "default", "--level", "NO_PERMISSIONS",
                       "--resource", "experiment", *uri)  # fmt: skip
    assert out == "experiment: NO_PERMISSIONS\n"
    code, out, _ = run(capsys, "permission", "list", *uri)
    lines = out.strip().splitlines()
    assert lines[0].split() == ["USER", "RESOURCE_TYPE", "RESOURCE", "PERMISSION"]
    assert lines[1:] == [
        "*     experiment        *                                         NO_PERMISSIONS",
        f"bob   experiment        {experiment} (churn)  EDIT",
        "*     registered_model  Churn                                     NO_PERMISSIONS",
        "Defaults for everyone without a grant: experiment NO_PERMISSIONS, registered_model READ",
    ]
    code, out, _ = run(capsys, "permission", "list", "--user", "bob", "--json", *uri)
    assert json.loads(out)["permissions"] == [
        {"user": "bob", "resource_type": "experiment", "resource_id": experiment,
         "permission": "EDIT"},
    ]  # fmt: skip
    code, out, _ = run(capsys, "permission", "revoke", "--user", "bob", "--experiment",
                       experiment, *uri)  # fmt: skip
    assert out.startswith(f"Removed user 'bob''s EDIT on experiment {experiment} (churn)")
    code, _, err = run(capsys, "permission", "revoke", "--user", "bob", "--experiment",
                       experiment, *uri)  # fmt: skip
    assert code == 1 and f"User 'bob' has no grant on experiment '{experiment}'" in err
    code, _, err = run(capsys, "permission", "grant", "--user", "bob", "--experiment", "nope",
                       "--level", "READ", *uri)  # fmt: skip
    assert code == 1 and "No experiment with id or name 'nope' in this store" in err
    code, _, err = run(capsys, "permission", "grant", "--user", "bob", "--model", "Nope",
                       "--level", "READ", *uri)  # fmt: skip
    assert code == 1 and "Registered model 'Nope' does not exist" in err
    code, out, _ = run(capsys, "permission", "grant", "--user", "bob", "--experiment", "0",
                       "--level", "READ", *uri)  # fmt: skip
    assert "on experiment 0 (Default) to user 'bob'" in out
    code, out, _ = run(capsys, "permission", "default", *uri)
    assert out == "experiment: NO_PERMISSIONS\nregistered_model: READ\n"


def test_groups_without_a_verb_print_their_help(capsys):
    assert main(["server", "permission"]) == 2
    assert "grant" in capsys.readouterr().out
