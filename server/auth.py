"""Authentication and authorization: one check for every route.

``authenticate(headers, path)`` runs for every request before its route (401 ``Unauthenticated``
unless the path is one of the security layer's ``PUBLIC_PATHS``: /health, /version);
``authorize(call)`` runs before every handler and checks the endpoint's ``Access`` (403
``PermissionDenied``).

With ``--auth none`` every caller is ``ANONYMOUS``, an admin, and ``call.user`` is what the
client says it is. With ``--auth token``:

- A token is accepted as ``Authorization: Bearer <token>`` (``MODELPACK_TRACKING_TOKEN``,
  MLflow's ``MLFLOW_TRACKING_TOKEN``) or as HTTP Basic with the token as the password (MLflow's
  ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``). With Basic, the username must be
  the token's user: a mismatch is refused rather than ignored, so a script never believes it
  acts as someone it does not (the store records the token's user, never the claimed one).
- Roles cap what grants can give: a ``reader`` never writes, whatever it was granted; an
  ``editor`` may create experiments and registered models (and gets MANAGE on what it creates,
  through ``record_creator``); an ``admin`` may do everything, the admin API included.
- A permission check (``Access("permission", ...)``) takes the user's level on the resource
  (``modelpack.store.auth``'s order: their grant, their grant on every resource, everyone's,
  the server default, else READ) and caps it by the role.

Lookups are cached for a few seconds (tokens ``TOKEN_TTL_S``, levels ``PERMISSION_TTL_S``), so a
request costs no query in steady state. A change made through this process (admin API,
``record_creator``) takes effect at once; one made elsewhere (the CLI, another worker) within
those seconds: a revoked token keeps working for at most ``TOKEN_TTL_S`` in other processes.
A token's last use is written at most once a minute (``TOUCH_EVERY_S``), from ``authorize``
(a worker thread), never on the event loop.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from modelpack.errors import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from modelpack.server.endpoints import (
    ADMIN,
    LOGIN,
    Call,
    Endpoint,
    Principal,
    on_experiment,
    on_model,
)
from modelpack.server.security import PUBLIC_PATHS
from modelpack.server.wire import optional_text, text

if TYPE_CHECKING:
    from modelpack.server.state import ServerState

__all__ = [
    "ANONYMOUS",
    "ENDPOINTS",
    "NOBODY",
    "Authorizer",
    "authorizer",
    "forget_resource",
    "readable_experiments",
    "readable_models",
    "record_creator",
    "rename_resource",
]

log = logging.getLogger("modelpack.server")

ANONYMOUS = Principal(user=None, role="admin", authenticated=False)  # --auth none
NOBODY = Principal(user=None, role="none", authenticated=False)  # a public path, no token read
TOKEN_TTL_S = 5.0
PERMISSION_TTL_S = 5.0
TOUCH_EVERY_S = 60.0
ROLE_CAP = {"reader": "READ", "editor": "MANAGE", "admin": "MANAGE"}
_LEVELS = ("NO_PERMISSIONS", "READ", "EDIT", "MANAGE")  # as modelpack.store.auth.LEVELS
_WHAT = {"experiment": "experiment", "registered_model": "registered model"}
_FLAG = {"experiment": "--experiment", "registered_model": "--model"}

HOW_TO_AUTHENTICATE = (
    "Send 'Authorization: Bearer <token>' (set MODELPACK_TRACKING_TOKEN or MLFLOW_TRACKING_TOKEN), "
    "or HTTP Basic with the token as the password (MLFLOW_TRACKING_USERNAME=<its user>, "
    "MLFLOW_TRACKING_PASSWORD=<token>). An admin creates tokens with: "
    "modelpack server token create --user NAME --role reader|editor|admin"
)


def _rank(level: str) -> int:
    return _LEVELS.index(level)


class _Cache:
    """A small map whose entries expire ``ttl`` seconds after they were put (thread-safe;
    ``ttl`` may change at any time); past ``limit`` entries it starts over rather than grow."""

    def __init__(self, ttl: float, limit: int = 10_000) -> None:
        self.ttl, self.limit = ttl, limit
        self._data: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        now = time.monotonic()
        with self._lock:
            found = self._data.get(key)
        if found is not None and now - found[0] < self.ttl:
            return found[1]
        value = make()
        with self._lock:
            if len(self._data) >= self.limit:
                self._data.clear()
            self._data[key] = (now, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()


class Authorizer:
    """The one check of every request (see the module's docstring)."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.enabled = state.options.auth == "token"
        self._tokens = _Cache(TOKEN_TTL_S)
        self._levels = _Cache(PERMISSION_TTL_S)
        self._readable = _Cache(PERMISSION_TTL_S)
        self.touch_every = TOUCH_EVERY_S
        self._lock = threading.Lock()
        self._touched: dict[str, float] = {}  # token id -> when its last use was written
        self._due: set[str] = set()

    # ------------------------------------------------------------------ authentication

    def authenticate(self, headers: Any, path: str) -> Principal:
        """The caller of a request with these headers to ``path``.

        Raises:
            Unauthenticated: no credentials, or a token that is malformed, unknown, revoked,
                or sent with another user's name.
        """
        if not self.enabled:
            return ANONYMOUS
        if self.is_public(path):
            return NOBODY
        header = headers.get("authorization") if headers is not None else None
        if not header:
            raise Unauthenticated(f"This server needs a token. {HOW_TO_AUTHENTICATE}.")
        secret, claimed = _credentials(header)
        from modelpack.store import auth as store_auth

        token = self._tokens.get(
            store_auth.hash_token(secret), lambda: store_auth.find_token(self.state.store, secret)
        )
        if token is None:
            raise Unauthenticated(
                "The token sent is not one of this server's (mistyped, cut short, or from "
                f"another server). {HOW_TO_AUTHENTICATE}."
            )
        if token.revoked:
            raise Unauthenticated(
                f"Token {token.token_id} of user {token.user!r} was revoked on "
                f"{token.revoked_time:%Y-%m-%d %H:%M:%S} UTC; ask an admin for a new one "
                f"(modelpack server token create --user {token.user} --role {token.role})."
            )
        if claimed is not None and claimed != token.user:
            raise Unauthenticated(
                f"The token belongs to user {token.user!r}, but the Basic credentials name "
                f"{claimed[:100]!r}; set MLFLOW_TRACKING_USERNAME={token.user}."
            )
        self._note_use(token.token_id)
        return Principal(user=token.user, role=token.role, authenticated=True)

    def is_public(self, path: str) -> bool:
        """Whether ``path`` needs no token: the security layer's public paths (/health,
        /version), which it answers without asking; anything else needs one, whatever an
        endpoint declares (fail closed)."""
        return path in PUBLIC_PATHS

    def _note_use(self, token_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._touched.get(token_id)
            if last is None or now - last >= self.touch_every:
                self._touched[token_id] = now
                self._due.add(token_id)

    def _write_uses(self) -> None:
        with self._lock:
            due, self._due = self._due, set()
        if not due:
            return
        from modelpack.entities import now_ms
        from modelpack.store import auth as store_auth

        for token_id in sorted(due):
            try:
                store_auth.touch_token(
                    self.state.store, token_id, now_ms(), round(self.touch_every * 1000)
                )
            except Exception as exc:  # noqa: BLE001 - a busy store must not fail the request
                log.warning("could not record the use of token %s: %s", token_id, exc)

    # ------------------------------------------------------------------ authorization

    def authorize(self, call: Call) -> None:
        """Raise unless ``call.principal`` may make ``call``.

        Raises:
            Unauthenticated: a route that needs a token reached without one.
            PermissionDenied: the caller lacks the role or the permission the call needs,
                named in the message with who can grant it.
        """
        access = call.endpoint.access
        if access.kind == "public" or not self.enabled:
            return
        principal = call.principal
        if not principal.authenticated or not principal.user:
            raise Unauthenticated(f"This server needs a token. {HOW_TO_AUTHENTICATE}.")
        self._write_uses()
        if access.kind == "login":
            return
        if access.kind == "admin":
            if not principal.is_admin:
                raise PermissionDenied(
                    f"User {principal.user!r} (role {principal.role}) may not "
                    f"{_action(call)}: that needs an admin's token (an admin makes one with "
                    f"modelpack server token create --user NAME --role admin)."
                )
            return
        known = access.resource in _WHAT and access.level in _LEVELS
        if access.kind == "permission" and known and access.locate is not None:
            self.check(call, access.resource, access.level, access.locate(call))
            return
        raise PermissionDenied(  # fail closed on an Access this check does not know
            f"The server cannot check the access {access.kind!r} that {_action(call)} "
            f"declares; this is a bug in the server, please report it."
        )

    def check(self, call: Call, resource_type: str, level: str, resource_id: str | None) -> None:
        """``level`` on the resource (None: a new one, which needs the role editor or admin)."""
        principal = call.principal
        if not self.enabled or principal.is_admin:
            return
        what, user = _WHAT[resource_type], principal.user or ""
        if resource_id is None:
            if principal.role == "editor":
                return
            raise PermissionDenied(
                f"User {user!r} has a {principal.role} token, which may not create "
                f"{_article(what)} ({_action(call)}): creating needs the role editor or "
                f"admin. Ask an admin for one: modelpack server token create --user {user} "
                f"--role editor"
            )
        have, source = self.level_of(
            user, resource_type, self._stored_id(resource_type, resource_id)
        )
        cap = ROLE_CAP.get(principal.role, "NO_PERMISSIONS")
        if _rank(min(have, cap, key=_rank)) >= _rank(level):
            return
        if _rank(level) > _rank(cap):  # no grant would do: the role forbids it
            raise PermissionDenied(
                f"User {user!r} has a {principal.role} token, which can at most {cap}: "
                f"{_action(call)} needs {level} on {what} {resource_id!r}. Ask an admin for an "
                f"editor token: modelpack server token create --user {user} --role editor"
            )
        raise PermissionDenied(
            f"User {user!r} needs {level} on {what} {resource_id!r} to {_action(call)}, and has "
            f"{have} ({source}). An admin can grant it: modelpack server permission grant "
            f"--user {user} {_FLAG[resource_type]} {resource_id} --level {level}; so can a user "
            f"with MANAGE on it, through MLflow's permissions API."
        )

    def level_of(self, user: str, resource_type: str, resource_id: str) -> tuple[str, str]:
        """``user``'s level on the stored resource before the role's cap, and its source."""
        from modelpack.store import auth as store_auth

        def look() -> tuple[str, str]:
            rows = store_auth.lookup(self.state.store, user, resource_type, resource_id)
            return store_auth.resolve(rows, user, resource_id)

        return self._levels.get((user, resource_type, resource_id), look)

    def readable(self, call: Call, resource_type: str) -> set[str] | None:
        """What the caller may read of ``resource_type`` (stored experiment ids, or model
        names), None for everything."""
        principal = call.principal
        if not self.enabled or principal.is_admin:
            return None
        if not principal.authenticated or not principal.user:
            return set()
        from modelpack.store import auth as store_auth

        user = principal.user
        found = self._readable.get(
            (user, resource_type),
            lambda: store_auth.readable_ids(self.state.store, user, resource_type),
        )
        return None if found is None else set(found)

    def readable_experiments(self, call: Call) -> set[str] | None:
        """``readable(call, "experiment")``: the stored ids, None for every one."""
        return self.readable(call, "experiment")

    def readable_models(self, call: Call) -> set[str] | None:
        """``readable(call, "registered_model")``: the names, None for every one."""
        return self.readable(call, "registered_model")

    def record_creator(self, call: Call, resource_type: str, resource_id: str) -> None:
        """The module's ``record_creator``."""
        record_creator(call, resource_type, resource_id)

    def changed(self) -> None:
        """Forget cached levels (grants changed here; tokens keep their own cache)."""
        self._levels.clear()
        self._readable.clear()

    def forget_token(self) -> None:
        self._tokens.clear()

    def _stored_id(self, resource_type: str, resource_id: str) -> str:
        if resource_type == "experiment":
            return self.state.experiment_in(resource_id)
        return resource_id


def authorizer(state: ServerState) -> Authorizer:
    """The server's authorizer (``--auth none``: everyone is an anonymous admin)."""
    return Authorizer(state)


def _credentials(header: str) -> tuple[str, str | None]:
    """``(token, claimed user)`` of an Authorization header (Bearer: no claimed user)."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value, None
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        user, sep, password = decoded.partition(":")
        if not sep or not password:
            raise Unauthenticated(
                "The Basic credentials are not base64 of 'user:token'. Set "
                "MLFLOW_TRACKING_USERNAME to the token's user and MLFLOW_TRACKING_PASSWORD to "
                "the token."
            )
        return password, user
    raise Unauthenticated(
        f"Unsupported Authorization header (scheme {scheme[:20]!r}). {HOW_TO_AUTHENTICATE}."
    )


def _article(what: str) -> str:
    return f"an {what}" if what[0] in "aeiou" else f"a {what}"


def _action(call: Call) -> str:
    try:
        return f"{call.request.method} {call.request.url.path}"
    except AttributeError:  # a Call built without a request (tests of a handler alone)
        return call.endpoint.summary or call.endpoint.path


# ---------------------------------------------------------------------- for handlers


def readable_experiments(call: Call) -> set[str] | None:
    """The stored ids of the experiments the caller may read (a search filters by them), or
    None when they may read every one."""
    return call.state.auth.readable(call, "experiment")


def readable_models(call: Call) -> set[str] | None:
    """The names of the registered models the caller may read, or None for every one."""
    return call.state.auth.readable(call, "registered_model")


def record_creator(call: Call, resource_type: str, resource_id: str) -> None:
    """Give the caller MANAGE on what they just created (an experiment by its id, wire or
    stored; a registered model by name). Without a token (``--auth none``) there is no one
    to record."""
    principal = call.principal
    if not principal.authenticated or not principal.user:
        return
    from modelpack.store import auth as store_auth

    auth = call.state.auth
    store_auth.grant(
        call.state.store,
        principal.user,
        resource_type,
        auth._stored_id(resource_type, resource_id),
        "MANAGE",
    )
    auth.changed()


def rename_resource(call: Call, resource_type: str, old: str, new: str) -> None:
    """Move the grants of a renamed registered model to its new name (with or without
    ``--auth token``: grants outlive a restart in either mode)."""
    from modelpack.store import auth as store_auth

    store_auth.rename_resource(call.state.store, resource_type, old, new)
    call.state.auth.changed()


def forget_resource(call: Call, resource_type: str, resource_id: str) -> None:
    """Drop the grants of a deleted registered model, so a new model of that name starts with
    none."""
    from modelpack.store import auth as store_auth

    store_auth.forget_resource(
        call.state.store, resource_type, call.state.auth._stored_id(resource_type, resource_id)
    )
    call.state.auth.changed()


# ---------------------------------------------------------------------- the admin API


def _store_auth() -> Any:
    from modelpack.store import auth as store_auth

    return store_auth


def _resource(call: Call, *, required: bool = True) -> tuple[str, str] | None:
    """``(resource_type, stored id)`` named by ``experiment_id`` or ``registered_model_name``
    (``*``: every one); the resource must exist."""
    experiment = optional_text(call.params, "experiment_id")
    model = optional_text(call.params, "registered_model_name")
    if experiment is not None and model is not None:
        raise InvalidArgument("Give experiment_id or registered_model_name, not both.")
    if experiment is not None:
        return "experiment", _existing(call, "experiment", experiment)
    if model is not None:
        return "registered_model", _existing(call, "registered_model", model)
    if required:
        raise InvalidArgument(
            "Missing value for parameter 'experiment_id' or 'registered_model_name': name the "
            "experiment or registered model of the grant ('*' for every one)."
        )
    return None


def _existing(call: Call, resource_type: str, resource_id: str) -> str:
    store = call.state.store
    if resource_id == "*":
        return resource_id
    if resource_type == "experiment":
        stored = call.state.experiment_in(resource_id)
        store.get_experiment(stored)  # NotFound naming it
        return stored
    store.get_registered_model(resource_id)
    return resource_id


def _wire_grant(call: Call, grant: Any) -> dict[str, str]:
    out = grant.to_dict()
    if grant.resource_type == "experiment" and grant.resource_id != "*":
        out["resource_id"] = call.state.experiment_out(grant.resource_id)
    return out


def _user(call: Call, key: str = "user") -> str:
    return _store_auth().check_user(text(call.params, key), everyone=True)


def create_token_handler(call: Call) -> dict[str, Any]:
    token, secret = _store_auth().create_token(
        call.state.store, text(call.params, "user"), text(call.params, "role")
    )
    return {"token_info": token.to_dict(), "token": secret}


def list_tokens_handler(call: Call) -> dict[str, Any]:
    tokens = _store_auth().list_tokens(call.state.store, optional_text(call.params, "user"))
    return {"tokens": [token.to_dict() for token in tokens]}


def revoke_token_handler(call: Call) -> dict[str, Any]:
    token = _store_auth().revoke_token(call.state.store, text(call.params, "token_id"))
    call.state.auth.forget_token()
    return {"token_info": token.to_dict()}


def grant_handler(call: Call) -> dict[str, Any]:
    found = _resource(call)
    assert found is not None
    grant = _store_auth().grant(
        call.state.store, _user(call), *found, text(call.params, "permission")
    )
    call.state.auth.changed()
    return {"permission": _wire_grant(call, grant)}


def revoke_grant_handler(call: Call) -> dict[str, Any]:
    found = _resource(call)
    assert found is not None
    grant = _store_auth().revoke_grant(call.state.store, _user(call), *found)
    call.state.auth.changed()
    return {"permission": _wire_grant(call, grant)}


def list_grants_handler(call: Call) -> dict[str, Any]:
    found = _resource(call, required=False)
    user = optional_text(call.params, "user")
    grants = _store_auth().list_grants(
        call.state.store, user, *(found if found is not None else (None, None))
    )
    return {
        "permissions": [_wire_grant(call, g) for g in grants],
        "defaults": _store_auth().defaults(call.state.store),
    }


def default_handler(call: Call) -> dict[str, Any]:
    store_auth = _store_auth()
    if call.request.method == "POST":
        store_auth.set_default(
            call.state.store,
            text(call.params, "permission"),
            optional_text(call.params, "resource_type"),
        )
        call.state.auth.changed()
    return {"defaults": store_auth.defaults(call.state.store)}


def whoami_handler(call: Call) -> dict[str, Any]:
    principal = call.principal
    return {
        "user": principal.user,
        "role": principal.role,
        "auth": "token" if call.state.auth.enabled else "none",
    }


# ---------------------------------------------------------------------- MLflow 2.x's API

# MLflow's basic-auth app: (username, experiment_id | name, permission) per user. Its user_id
# (an integer there) is the user name here, where users exist only as their tokens' names.
_MLFLOW_KINDS = {
    "experiment": ("experiment_id", "experiment_permission"),
    "registered_model": ("name", "registered_model_permission"),
}


def _mlflow_handler(resource_type: str, verb: str) -> Callable[[Call], dict[str, Any]]:
    key, field = _MLFLOW_KINDS[resource_type]

    def handle(call: Call) -> dict[str, Any]:
        store_auth, store = _store_auth(), call.state.store
        wire_id = text(call.params, key)
        stored = _existing(call, resource_type, wire_id)
        user = _user(call, "username")
        current = store_auth.get_grant(store, user, resource_type, stored)
        what = f"{_WHAT[resource_type]} {wire_id!r}"
        if verb == "create" and current is not None:
            raise AlreadyExists(
                f"User {user!r} already has {current.permission} on {what}; change it with "
                f"the permissions/update call."
            )
        if verb != "create" and current is None:
            raise NotFound(
                f"User {user!r} has no permission of their own on {what} (the default applies)."
            )
        if verb in ("create", "update"):
            current = store_auth.grant(
                store, user, resource_type, stored, text(call.params, "permission")
            )
            call.state.auth.changed()
        elif verb == "delete":
            store_auth.revoke_grant(store, user, resource_type, stored)
            call.state.auth.changed()
            return {}
        assert current is not None
        return {field: {key: wire_id, "user_id": user, "permission": current.permission}}

    return handle


def _param(key: str) -> Callable[[Call], str]:
    return lambda call: text(call.params, key)


def _mlflow_endpoints() -> list[Endpoint]:
    found = []
    for resource_type, base, access in (
        ("experiment", "/mlflow/experiments/permissions", on_experiment),
        ("registered_model", "/mlflow/registered-models/permissions", on_model),
    ):
        key = _MLFLOW_KINDS[resource_type][0]
        for verb, method in (
            ("create", "POST"),
            ("get", "GET"),
            ("update", "PATCH"),
            ("delete", "DELETE"),
        ):
            found.append(
                Endpoint(
                    (method,),
                    f"{base}/{verb}",
                    _mlflow_handler(resource_type, verb),
                    access("MANAGE", _param(key)),
                    f"MLflow's {verb} of a user's permission on a {_WHAT[resource_type]}",
                    request_fields=(key, "username", "permission"),
                )
            )
    return found


def _admin(methods: tuple[str, ...], path: str, handler: Any, summary: str, *fields: str) -> Any:
    return Endpoint(methods, f"/modelpack{path}", handler, ADMIN, summary, request_fields=fields)


ENDPOINTS: list[Endpoint] = [
    _admin(
        ("POST",), "/tokens/create", create_token_handler, "Create a token (shown once)",
        "user", "role",
    ),
    _admin(("GET",), "/tokens/list", list_tokens_handler, "List tokens (not their values)", "user"),
    _admin(("POST",), "/tokens/revoke", revoke_token_handler, "Revoke a token", "token_id"),
    _admin(
        ("POST",), "/permissions/grant", grant_handler, "Grant a user a permission",
        "user", "experiment_id", "registered_model_name", "permission",
    ),
    _admin(
        ("POST",), "/permissions/revoke", revoke_grant_handler, "Remove a user's grant",
        "user", "experiment_id", "registered_model_name",
    ),
    _admin(
        ("GET",), "/permissions/list", list_grants_handler, "List grants and the defaults",
        "user", "experiment_id", "registered_model_name",
    ),
    _admin(
        ("GET", "POST"), "/permissions/default", default_handler,
        "The permission of everyone without a grant", "permission", "resource_type",
    ),
    Endpoint(("GET",), "/modelpack/auth/whoami", whoami_handler, LOGIN, "Who the token is"),
    *_mlflow_endpoints(),
]  # fmt: skip
