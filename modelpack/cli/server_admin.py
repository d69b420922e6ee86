"""``modelpack server token ...`` and ``modelpack server permission ...``: the server's tokens
and grants, written straight into its store (run it where the store is reachable; a running
server sees a change within a few seconds).

```
modelpack server token create --user alice --role editor     # prints the token, once
modelpack server token list
modelpack server token revoke 3f9c2a1b7d4e5f60
modelpack server permission grant --user bob --experiment 12ab... --level EDIT
modelpack server permission grant --user bob --model Churn --level READ
modelpack server permission default --level NO_PERMISSIONS   # everyone without a grant
modelpack server permission list --user bob
```
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelpack.cli.common import print_json, store_errors, table, usage, when

LEVELS = ("READ", "EDIT", "MANAGE", "NO_PERMISSIONS")
ROLES = ("reader", "editor", "admin")
RESOURCES = ("experiment", "registered_model")
CACHE_NOTE = "running servers see it within 5 seconds"


def add_parsers(subcommands: Any) -> None:
    """Add ``token`` and ``permission`` to ``modelpack server``'s subcommands."""
    token = subcommands.add_parser("token", help="create, list and revoke the server's tokens")
    token.set_defaults(handler=lambda _args: usage(token))
    verbs = token.add_subparsers(dest="token_command", metavar="COMMAND")

    create = verbs.add_parser("create", help="create a token (printed once, stored hashed)")
    create.add_argument("--user", required=True, metavar="NAME", help="whose token it is")
    create.add_argument("--role", required=True, choices=ROLES, help="what the token may do")
    _store_options(create)
    create.set_defaults(handler=cmd_token_create)

    listing = verbs.add_parser("list", help="list tokens (never their values)")
    listing.add_argument("--user", metavar="NAME", help="only this user's")
    _store_options(listing)
    listing.set_defaults(handler=cmd_token_list)

    revoke = verbs.add_parser("revoke", help="revoke a token: it stops authenticating")
    revoke.add_argument("token_id", metavar="TOKEN_ID", help="the id `token list` shows")
    _store_options(revoke)
    revoke.set_defaults(handler=cmd_token_revoke)

    permission = subcommands.add_parser(
        "permission", help="grant, revoke and list permissions on experiments and models"
    )
    permission.set_defaults(handler=lambda _args: usage(permission))
    verbs = permission.add_subparsers(dest="permission_command", metavar="COMMAND")

    grant = verbs.add_parser("grant", help="give a user a level on an experiment or a model")
    grant.add_argument("--user", required=True, metavar="NAME", help="the user ('*': everyone)")
    _resource_options(grant, required=True)
    grant.add_argument("--level", required=True, type=str.upper, choices=LEVELS)
    _store_options(grant)
    grant.set_defaults(handler=cmd_grant)

    revoke = verbs.add_parser("revoke", help="remove a user's grant (the defaults apply again)")
    revoke.add_argument("--user", required=True, metavar="NAME")
    _resource_options(revoke, required=True)
    _store_options(revoke)
    revoke.set_defaults(handler=cmd_revoke)

    listing = verbs.add_parser("list", help="list grants and the defaults")
    listing.add_argument("--user", metavar="NAME", help="only this user's grants")
    _resource_options(listing, required=False)
    _store_options(listing)
    listing.set_defaults(handler=cmd_list)

    default = verbs.add_parser(
        "default", help="the level of everyone without a grant (MLflow's default: READ)"
    )
    default.add_argument(
        "--level", type=str.upper, choices=LEVELS, help="set it (without: print it)"
    )
    default.add_argument(
        "--resource", choices=RESOURCES, help="only for experiments or registered models"
    )
    _store_options(default)
    default.set_defaults(handler=cmd_default)


def _store_options(parser: argparse.ArgumentParser) -> None:
    # Its own dest: `modelpack server --backend-store-uri` (the parent's) must not be reset by
    # this subcommand's default.
    parser.add_argument(
        "--backend-store-uri",
        "--tracking-uri",
        dest="admin_store_uri",
        metavar="URI",
        help="the server's store (default: $MODELPACK_TRACKING_URI, else ./modelpack-store)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _resource_options(parser: argparse.ArgumentParser, required: bool) -> None:
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument(
        "--experiment", metavar="ID", help="an experiment's id (0: Default) or name; '*': every one"
    )
    group.add_argument("--model", metavar="NAME", help="a registered model's name; '*': every one")


def _store(args: argparse.Namespace, create: bool) -> Any:
    from modelpack.store import default_tracking_uri, open_store

    uri = (
        getattr(args, "admin_store_uri", None)
        or getattr(args, "backend_store_uri", None)
        or default_tracking_uri()
    )
    args.tracking_uri = uri  # what store_errors names if the driver fails
    if uri.startswith(("http://", "https://")):
        from modelpack.errors import InvalidArgument

        raise InvalidArgument(
            f"{uri} is a server; token and permission commands write the server's store. Give "
            f"it with --backend-store-uri (the URI the server was started with), or use the "
            f"admin API (/api/2.0/modelpack/tokens/..., /permissions/...) with an admin token."
        )
    return open_store(uri, None, create)


def _resource(store: Any, args: argparse.Namespace) -> tuple[str, str, str] | None:
    """``(resource type, stored id, how to show it)`` of --experiment / --model."""
    from modelpack.errors import NotFound
    from modelpack.experiments import DEFAULT_EXPERIMENT

    if args.experiment is not None:
        given = args.experiment
        if given == "*":
            return "experiment", "*", "every experiment"
        if given == "0":
            default = store.get_or_create_experiment(DEFAULT_EXPERIMENT)
            return "experiment", default.experiment_id, f"experiment 0 ({DEFAULT_EXPERIMENT})"
        try:
            found = store.get_experiment(given)
        except NotFound:
            found = store.get_experiment_by_name(given)
        if found is None:
            raise NotFound(
                f"No experiment with id or name {given!r} in this store; give the id the "
                f"server shows (0 for Default) or the exact name, and check --backend-store-uri."
            )
        return "experiment", found.experiment_id, f"experiment {found.experiment_id} ({found.name})"
    if args.model is not None:
        if args.model == "*":
            return "registered_model", "*", "every registered model"
        store.get_registered_model(args.model)  # NotFound naming it
        return "registered_model", args.model, f"registered model {args.model!r}"
    return None


def _who(user: str) -> str:
    return "everyone without a grant ('*')" if user == "*" else f"user {user!r}"


@store_errors
def cmd_token_create(args: argparse.Namespace) -> int:
    from modelpack.store import auth

    token, secret = auth.create_token(_store(args, create=True), args.user, args.role)
    if args.json:
        print_json({"token_info": token.to_dict(), "token": secret})
        return 0
    print(secret)
    print(
        f"Token {token.token_id} for user {token.user!r} (role {token.role}). It is shown this "
        f"once and stored only hashed: hand it over now. Clients send it as "
        f"MODELPACK_TRACKING_TOKEN or MLFLOW_TRACKING_TOKEN (or MLFLOW_TRACKING_USERNAME="
        f"{token.user} with MLFLOW_TRACKING_PASSWORD=<token>).",
        file=sys.stderr,
    )
    return 0


@store_errors
def cmd_token_list(args: argparse.Namespace) -> int:
    from modelpack.store import auth

    tokens = auth.list_tokens(_store(args, create=False), args.user)
    if args.json:
        print_json({"tokens": [t.to_dict() for t in tokens]})
        return 0
    print(
        table(
            ("TOKEN_ID", "USER", "ROLE", "CREATED", "LAST_USED", "REVOKED"),
            [
                (
                    t.token_id,
                    t.user,
                    t.role,
                    when(t.creation_time),
                    when(t.last_used_time),
                    when(t.revoked_time),
                )
                for t in tokens
            ],
        )
    )
    return 0


@store_errors
def cmd_token_revoke(args: argparse.Namespace) -> int:
    from modelpack.store import auth

    token = auth.revoke_token(_store(args, create=False), args.token_id)
    if args.json:
        print_json({"token_info": token.to_dict()})
        return 0
    print(
        f"Revoked token {token.token_id} of user {token.user!r} (role {token.role}) at "
        f"{when(token.revoked_time)} UTC; {CACHE_NOTE}."
    )
    return 0


@store_errors
def cmd_grant(args: argparse.Namespace) -> int:
    from modelpack.store import auth

    store = _store(args, create=True)
    found = _resource(store, args)
    assert found is not None
    kind, stored, shown = found
    grant = auth.grant(store, args.user, kind, stored, args.level)
    if args.json:
        print_json({"permission": grant.to_dict()})
        return 0
    print(f"Granted {grant.permission} on {shown} to {_who(grant.user)}; {CACHE_NOTE}.")
    return 0


@store_errors
def cmd_revoke(args: argparse.Namespace) -> int:
    from modelpack.store import auth

    store = _store(args, create=False)
    found = _resource(store, args)
    assert found is not None
    kind, stored, shown = found
    grant = auth.revoke_grant(store, args.user, kind, stored)
    if args.json:
        print_json({"permission": grant.to_dict()})
        return 0
    print(
        f"Removed {_who(grant.user)}'s {grant.permission} on {shown}; the defaults apply "
        f"again; {CACHE_NOTE}."
    )
    return 0


@store_errors
def cmd_list(args: argparse.Namespace) -> int:
    from modelpack.store import auth

    store = _store(args, create=False)
    found = _resource(store, args)
    kind, stored = (found[0], found[1]) if found is not None else (None, None)
    grants = auth.list_grants(store, args.user, kind, stored)
    defaults = auth.defaults(store)
    if args.json:
        print_json({"permissions": [g.to_dict() for g in grants], "defaults": defaults})
        return 0
    names = {e.experiment_id: e.name for e in store.search_experiments()}

    def shown(g: Any) -> str:
        if g.resource_id == "*":
            return "*"
        if g.resource_type == "experiment" and g.resource_id in names:
            return f"{g.resource_id} ({names[g.resource_id]})"
        return g.resource_id

    print(
        table(
            ("USER", "RESOURCE_TYPE", "RESOURCE", "PERMISSION"),
            [(g.user, g.resource_type, shown(g), g.permission) for g in grants],
        )
    )
    print(
        "Defaults for everyone without a grant: "
        + ", ".join(f"{kind} {level}" for kind, level in defaults.items())
    )
    return 0


@store_errors
def cmd_default(args: argparse.Namespace) -> int:
    from modelpack.store import auth

    store = _store(args, create=args.level is not None)
    if args.level is not None:
        auth.set_default(store, args.level, args.resource)
    defaults = auth.defaults(store)
    if args.json:
        print_json({"defaults": defaults})
        return 0
    for kind, level in defaults.items():
        if args.resource in (None, kind):
            print(f"{kind}: {level}")
    if args.level is not None:
        print(f"({CACHE_NOTE})", file=sys.stderr)
    return 0
