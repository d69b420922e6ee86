"""The server's tokens and grants in the store (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from modelpack.errors import InvalidArgument, NotFound
from modelpack.store import auth
from modelpack.store import schema as t


@pytest.fixture
def store(client):
    return client.store


def test_a_token_is_random_shown_once_and_stored_only_as_its_hash(store):
    first, secret = auth.create_token(store, "alice", "editor")
    second, other = auth.create_token(store, "alice", "editor")
    assert secret.startswith("mpk_") and len(secret) == 4 + 43
    assert secret != other and first.token_id != second.token_id
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(t.api_tokens)).mappings().all()
    stored = " ".join(str(v) for row in rows for v in row.values())
    assert secret not in stored and secret[4:] not in stored
    assert hashlib.sha256(secret.encode()).hexdigest() in stored
    assert (first.user, first.role, first.last_used_time, first.revoked_time) == (
        "alice",
        "editor",
        None,
        None,
    )
    assert auth.find_token(store, secret) == first
    assert auth.find_token(store, secret + "x") is None
    assert auth.find_token(store, "not-ours") is None
    assert {tok.token_id for tok in auth.list_tokens(store, "alice")} == {
        first.token_id,
        second.token_id,
    }
    assert auth.list_tokens(store, "nobody") == []


def test_revoked_tokens_keep_their_row_and_first_revocation(store):
    token, secret = auth.create_token(store, "bob", "reader")
    revoked = auth.revoke_token(store, token.token_id)
    assert revoked.revoked and revoked.revoked_time >= token.creation_time
    assert auth.revoke_token(store, token.token_id).revoked_time == revoked.revoked_time
    assert auth.find_token(store, secret).revoked
    with pytest.raises(NotFound, match="No token with id 'nope'.*modelpack server token list"):
        auth.revoke_token(store, "nope")


def test_last_use_is_written_at_most_once_a_minute(store):
    token, _ = auth.create_token(store, "carol", "admin")
    base = 1_800_000_000_000
    assert auth.touch_token(store, token.token_id, base)
    assert not auth.touch_token(store, token.token_id, base + 59_000)
    assert auth.touch_token(store, token.token_id, base + 60_000)
    used = auth.get_token(store, token.token_id).last_used_time
    assert round(used.timestamp() * 1000) == base + 60_000


def test_tokens_refuse_bad_roles_and_reserved_users(store):
    with pytest.raises(InvalidArgument, match="Unknown role 'root'; choose one of: reader"):
        auth.create_token(store, "alice", "root")
    with pytest.raises(InvalidArgument, match="'\\*' is reserved"):
        auth.create_token(store, "*", "reader")
    with pytest.raises(InvalidArgument, match="spaces"):
        auth.create_token(store, "alice ", "reader")


def test_grants_resolve_in_order_and_replace_each_other(store):
    assert auth.resolve(auth.lookup(store, "bob", "experiment", "e1"), "bob", "e1") == (
        "READ",
        "MLflow's default",
    )
    auth.set_default(store, "NO_PERMISSIONS", "experiment")
    assert auth.defaults(store) == {"experiment": "NO_PERMISSIONS", "registered_model": "READ"}
    steps = [
        (("*", "e1", "read"), ("READ", "everyone's")),
        (("bob", "*", "EDIT"), ("EDIT", "granted on every one")),
        (("bob", "e1", "READ"), ("READ", "granted")),
        (("bob", "e1", "MANAGE"), ("MANAGE", "granted")),
    ]
    for (user, resource, level), expected in steps:
        auth.grant(store, user, "experiment", resource, level)
        rows = auth.lookup(store, "bob", "experiment", "e1")
        assert auth.resolve(rows, "bob", "e1") == expected
    assert len(auth.list_grants(store, user="bob")) == 2
    removed = auth.revoke_grant(store, "bob", "experiment", "e1")
    assert removed.permission == "MANAGE"
    assert auth.resolve(auth.lookup(store, "bob", "experiment", "e1"), "bob", "e1")[0] == "EDIT"
    with pytest.raises(NotFound, match="User 'bob' has no grant on experiment 'e1'"):
        auth.revoke_grant(store, "bob", "experiment", "e1")
    with pytest.raises(InvalidArgument, match="Unknown permission 'WRITE'"):
        auth.grant(store, "bob", "experiment", "e1", "WRITE")
    with pytest.raises(InvalidArgument, match="Unknown resource type 'run'"):
        auth.grant(store, "bob", "run", "r1", "READ")


def test_readable_ids(client, store):
    ids = [client.create_experiment(name) for name in ("a", "b", "c")]
    assert auth.readable_ids(store, "bob", "experiment") is None  # READ for all: no filter
    auth.grant(store, "bob", "experiment", ids[0], "NO_PERMISSIONS")
    with store.engine.connect() as conn:
        everything = set(conn.execute(sa.select(t.experiments.c.experiment_id)).scalars())
    assert auth.readable_ids(store, "bob", "experiment") == everything - {ids[0]}
    assert auth.readable_ids(store, "alice", "experiment") is None
    auth.set_default(store, "NO_PERMISSIONS")
    auth.grant(store, "alice", "experiment", ids[1], "EDIT")
    auth.grant(store, "*", "experiment", ids[2], "READ")
    assert auth.readable_ids(store, "alice", "experiment") == {ids[1], ids[2]}
    assert auth.readable_ids(store, "bob", "experiment") == {ids[2]}
    assert auth.readable_ids(store, "bob", "registered_model") == set()


def test_grants_follow_a_renamed_model_and_die_with_a_deleted_one(store):
    auth.grant(store, "bob", "registered_model", "Churn", "EDIT")
    auth.grant(store, "carol", "registered_model", "Churn2", "MANAGE")  # a stale namesake's
    assert auth.rename_resource(store, "registered_model", "Churn", "Churn2") == 1
    assert [g.to_dict() for g in auth.list_grants(store, resource_id="Churn2")] == [
        {
            "user": "bob",
            "resource_type": "registered_model",
            "resource_id": "Churn2",
            "permission": "EDIT",
        }
    ]
    assert auth.forget_resource(store, "registered_model", "Churn2") == 1
    assert auth.list_grants(store) == []
