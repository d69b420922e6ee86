"""``modelpack models ...``: the model registry from the command line."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from modelpack.cli.common import (
    add_store_options,
    open_client,
    pairs,
    positive_int,
    print_json,
    store_errors,
    table,
    usage,
    when,
)


def add_parsers(commands: Any) -> None:
    models = commands.add_parser("models", help="registered models: versions, stages, aliases")
    models.set_defaults(handler=lambda _args: usage(models))
    sub = models.add_subparsers(dest="models_command", metavar="COMMAND")

    ls = sub.add_parser("list", help="registered models")
    ls.add_argument("--filter", metavar="FILTER", help="e.g. \"name LIKE 'churn%%'\"")
    ls.add_argument("--max-results", type=positive_int, default=100, metavar="N")
    add_store_options(ls)
    ls.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="description, tags, aliases, latest version per stage")
    show.add_argument("name", metavar="NAME")
    add_store_options(show)
    show.set_defaults(handler=cmd_show)

    versions = sub.add_parser("versions", help="versions of one model, or matching a filter")
    versions.add_argument("name", metavar="NAME", nargs="?")
    versions.add_argument(
        "--filter", metavar="FILTER", help="e.g. \"stage = 'Production'\" or \"tags.team = 'ml'\""
    )
    versions.add_argument("--max-results", type=positive_int, default=1000, metavar="N")
    add_store_options(versions)
    versions.set_defaults(handler=cmd_versions)

    register = sub.add_parser("register", help="register a logged model as a new version")
    register.add_argument("model_uri", metavar="MODEL_URI", help="e.g. runs:/<run_id>/model")
    register.add_argument("name", metavar="NAME")
    register.add_argument("--description", metavar="TEXT")
    register.add_argument(
        "--tag", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    add_store_options(register)
    register.set_defaults(handler=cmd_register)

    transition = sub.add_parser("transition", help="move a version to another stage")
    transition.add_argument("name", metavar="NAME")
    transition.add_argument("version", metavar="VERSION")
    transition.add_argument("stage", metavar="STAGE", help="None, Staging, Production, Archived")
    transition.add_argument(
        "--archive-existing",
        action="store_true",
        help="archive the versions now in STAGE (Staging or Production)",
    )
    transition.add_argument("--comment", metavar="TEXT", help="kept in the model's history")
    add_store_options(transition)
    transition.set_defaults(handler=cmd_transition)

    alias = sub.add_parser("alias", help="point an alias at a version, or --delete it")
    alias.add_argument("name", metavar="NAME")
    alias.add_argument("alias", metavar="ALIAS")
    alias.add_argument("version", metavar="VERSION", nargs="?")
    alias.add_argument("--delete", action="store_true", help="remove the alias")
    add_store_options(alias)
    alias.set_defaults(handler=cmd_alias)

    history = sub.add_parser("history", help="stage moves, alias moves, creations, deletions")
    history.add_argument("name", metavar="NAME")
    add_store_options(history)
    history.set_defaults(handler=cmd_history)

    delete = sub.add_parser("delete", help="delete a model (or one --version) and its files")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument("--version", metavar="VERSION", help="only this version")
    delete.add_argument(
        "--force", action="store_true", help="also delete Production versions and aliased ones"
    )
    add_store_options(delete)
    delete.set_defaults(handler=cmd_delete)


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _aliases(version: Any) -> str:
    return ", ".join(version.aliases) or "-"


def _versions_table(versions: Sequence[Any], with_name: bool) -> str:
    headers = [*(["name"] if with_name else []), "version", "stage", "aliases", "created (UTC)"]
    headers += ["user", "run_id", "description"]
    rows = [
        [
            *([v.name] if with_name else []),
            v.version,
            v.stage,
            _aliases(v),
            when(v.created_at),
            v.user_id,
            v.run_id or "-",
            v.description.splitlines()[0] if v.description else "",
        ]
        for v in versions
    ]
    return table(headers, rows)


@store_errors
def cmd_list(args: argparse.Namespace) -> int:
    models = open_client(args).search_registered_models(args.filter, args.max_results)
    if args.json:
        print_json([m.to_dict() for m in models])
        return 0
    if not models:
        print("No registered models.")
        return 0
    rows = []
    for m in models:
        stages = {v.stage: v.version for v in m.latest_versions}
        rows.append(
            [
                m.name,
                max((v.version for v in m.latest_versions), default="-"),
                stages.get("Staging", "-"),
                stages.get("Production", "-"),
                ", ".join(f"{a}@{v}" for a, v in sorted(m.aliases.items())) or "-",
                when(m.updated_at),
            ]
        )
    headers = ("name", "latest", "staging", "production", "aliases", "updated (UTC)")
    print(table(headers, rows))
    if models.token:
        print(f"(first {len(models)} models; raise --max-results for more)")
    return 0


@store_errors
def cmd_show(args: argparse.Namespace) -> int:
    model = open_client(args).get_registered_model(args.name)
    if args.json:
        print_json(model.to_dict())
        return 0
    lines = [
        f"name:         {model.name}",
        f"description:  {model.description or '-'}",
        f"created:      {when(model.created_at)} UTC",
        f"updated:      {when(model.updated_at)} UTC",
        "tags:",
        pairs(model.tags),
        "aliases:",
        pairs({a: f"version {v}" for a, v in model.aliases.items()}),
        "latest version per stage:",
    ]
    rows = [
        (v.stage, v.version, _aliases(v), when(v.created_at), v.source)
        for v in model.latest_versions
    ]
    lines.append(table(("stage", "version", "aliases", "created (UTC)", "source"), rows, "  "))
    print("\n".join(lines))
    return 0


@store_errors
def cmd_versions(args: argparse.Namespace) -> int:
    from modelpack.errors import InvalidArgument

    if args.name is None and args.filter is None:
        raise InvalidArgument("Give a model NAME, or --filter to search every model's versions.")
    client = open_client(args)
    query = args.filter
    if args.name is not None:
        client.get_registered_model(args.name)  # an unknown name is an error, not "no versions"
        query = f"name = {_quoted(args.name)}" + (f" AND ({args.filter})" if args.filter else "")
    versions = client.search_model_versions(query, args.max_results)
    if args.json:
        print_json([v.to_dict() for v in versions])
        return 0
    if not versions:
        print("No versions match." if args.filter else f"{args.name!r} has no versions.")
        return 0
    print(_versions_table(versions, with_name=args.name is None))
    if versions.token:
        print(f"(first {len(versions)} versions; raise --max-results for more)")
    return 0


def _tags(items: Sequence[str]) -> dict[str, str]:
    from modelpack.errors import InvalidArgument

    tags = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"--tag {item!r}: expected KEY=VALUE, e.g. --tag team=risk.")
        tags[key] = value
    return tags


@store_errors
def cmd_register(args: argparse.Namespace) -> int:
    tags = _tags(args.tag)
    # Registering a package from disk may be the first thing a new store sees.
    version = open_client(args, create=True).register_model(
        args.model_uri, args.name, tags=tags, description=args.description
    )
    if args.json:
        print_json(version.to_dict())
        return 0
    print(f"Registered {version.name!r} version {version.version} ({version.uri}).")
    return 0


@store_errors
def cmd_transition(args: argparse.Namespace) -> int:
    from modelpack.entities import canonical_stage

    stage = canonical_stage(args.stage)
    client = open_client(args)
    before = client.get_model_version(args.name, args.version)
    archived = []
    if args.archive_existing and stage in ("Staging", "Production"):
        archived = [
            v.version
            for v in client.search_model_versions(f"name = {_quoted(args.name)}")
            if v.stage == stage and v.version != before.version
        ]
    version = client.transition_model_version_stage(
        args.name,
        before.version,
        stage,
        archive_existing_versions=args.archive_existing,
        comment=args.comment,
    )
    if args.json:
        print_json(version.to_dict())
        return 0
    print(f"{version.name!r} version {version.version}: {before.stage} -> {version.stage}")
    if archived:
        print(f"archived: version {', '.join(map(str, sorted(archived)))} (was {stage})")
    return 0


@store_errors
def cmd_alias(args: argparse.Namespace) -> int:
    from modelpack.errors import InvalidArgument

    if args.delete == (args.version is not None):
        raise InvalidArgument(
            f"Give the VERSION to point alias {args.alias!r} at, or --delete to remove it "
            f"(not both)."
        )
    client = open_client(args)
    if args.delete:
        version = client.get_model_version_by_alias(args.name, args.alias)
        client.delete_registered_model_alias(args.name, args.alias)
        if args.json:
            print_json({"name": args.name, "alias": args.alias, "deleted_from": version.version})
        else:
            print(f"Deleted alias {args.alias!r} of {args.name!r} (was version {version.version}).")
        return 0
    client.set_registered_model_alias(args.name, args.alias, args.version)
    version = client.get_model_version_by_alias(args.name, args.alias)
    if args.json:
        print_json(version.to_dict())
    else:
        print(f"{args.name}@{args.alias} -> version {version.version} ({version.stage})")
    return 0


@store_errors
def cmd_history(args: argparse.Namespace) -> int:
    records = open_client(args).get_model_history(args.name)
    if args.json:
        print_json([r.to_dict() for r in records])
        return 0
    rows = [
        (
            when(r.timestamp),
            r.user_id,
            "-" if r.version is None else r.version,
            r.action,
            f"{r.from_value or '-'} -> {r.to_value or '-'}",
            r.comment or "",
        )
        for r in records
    ]
    print(table(("when (UTC)", "who", "version", "action", "from -> to", "comment"), rows))
    return 0


@store_errors
def cmd_delete(args: argparse.Namespace) -> int:
    from modelpack.errors import InvalidArgument

    client = open_client(args)
    try:
        if args.version is not None:
            client.delete_model_version(args.name, args.version, force=args.force)
        else:
            client.delete_registered_model(args.name, force=args.force)
    except InvalidArgument as exc:
        # The store speaks to Python callers ("pass force=True"); this is the flag for it here.
        raise InvalidArgument(exc.message.replace("force=True", "--force")) from None
    what = f"version {args.version} of {args.name!r}" if args.version else repr(args.name)
    if args.json:
        print_json({"name": args.name, "version": args.version, "deleted": True})
    else:
        print(f"Deleted {what}.")
    return 0
