"""``modelpack runs list | search | show``: read runs from a tracking store."""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence
from typing import Any

from modelpack.cli.common import (
    add_store_options,
    duration,
    fmt,
    open_client,
    pairs,
    positive_int,
    print_json,
    store_errors,
    table,
    usage,
    when,
)

# How many metric columns a run table shows; `runs show` lists them all.
KEY_METRICS = 4
ARTIFACT_LIMIT = 200


# ---------------------------------------------------------------------------- parsers


def add_parsers(commands: Any) -> None:
    runs = commands.add_parser("runs", help="list, search and show tracked runs")
    runs.set_defaults(handler=lambda _args: usage(runs))
    sub = runs.add_subparsers(dest="runs_command", metavar="COMMAND")

    ls = sub.add_parser("list", help="runs, newest first")
    ls.add_argument(
        "--experiment", action="extend", nargs="+", metavar="NAME", help="only these experiments"
    )
    ls.add_argument("--max-results", type=positive_int, default=100, metavar="N")
    view = ls.add_mutually_exclusive_group()
    view.add_argument("--deleted", action="store_true", help="only deleted runs")
    view.add_argument("--all", action="store_true", help="active and deleted runs")
    add_store_options(ls)
    ls.set_defaults(handler=cmd_list)

    search = sub.add_parser("search", help="runs matching a filter, in a chosen order")
    search.add_argument(
        "--filter",
        metavar="FILTER",
        help="e.g. \"metrics.acc > 0.9 OR params.depth = '5'\" (AND, OR, parentheses, LIKE, IN)",
    )
    search.add_argument(
        "--order-by",
        action="extend",
        nargs="+",
        metavar="KEY",
        help="e.g. 'metrics.acc DESC' 'start_time'",
    )
    search.add_argument(
        "--experiment", action="extend", nargs="+", metavar="NAME", help="only these experiments"
    )
    search.add_argument("--max-results", type=positive_int, default=100, metavar="N")
    search.add_argument("--page-token", metavar="TOKEN", help="the token a previous page printed")
    add_store_options(search)
    search.set_defaults(handler=cmd_search)

    show = sub.add_parser("show", help="a run's info, params, metrics, tags and artifacts")
    show.add_argument("run_id", metavar="RUN_ID")
    add_store_options(show)
    show.set_defaults(handler=cmd_show)


# ---------------------------------------------------------------------------- commands


def _metric_keys(filter_string: str | None, order_by: Sequence[str] | None) -> list[str]:
    """Metrics the user asked about, in the order named, so a search shows what it ranked."""
    from modelpack.store.filters import And, Comparison, Or, parse_filter
    from modelpack.store.search import RUN_ATTRIBUTES, parse_order

    keys: list[str] = []
    for item in order_by or ():
        kind, key, _ = parse_order(item, RUN_ATTRIBUTES)
        if kind == "metric":
            keys.append(key)
    stack: list[Any] = [parse_filter(filter_string or "", attributes=RUN_ATTRIBUTES)]
    while stack:
        node = stack.pop(0)
        if isinstance(node, And | Or):
            stack.extend(node.items)
        elif isinstance(node, Comparison) and node.kind == "metric":
            keys.append(node.key)
    return list(dict.fromkeys(keys))


def _runs_table(runs: Sequence[Any], experiments: dict[str, str], first: Sequence[str]) -> str:
    counts = Counter(k for run in runs for k in run.data.metrics)
    common = sorted(counts, key=lambda k: (-counts[k], k))
    metrics = list(dict.fromkeys([*first, *common]))[: max(KEY_METRICS, len(first))]
    many = len({run.info.experiment_id for run in runs}) > 1
    headers = ["run_id", "name", *(["experiment"] if many else []), "status", "start (UTC)"]
    headers += ["duration", *metrics]
    rows = []
    for run in runs:
        info = run.info
        status = info.status if info.lifecycle_stage == "active" else f"{info.status} (deleted)"
        rows.append(
            [
                info.run_id,
                info.run_name,
                *([experiments.get(info.experiment_id, info.experiment_id)] if many else []),
                status,
                when(info.start_time),
                duration(info.start_time, info.end_time),
                *(fmt(run.data.metrics[k]) if k in run.data.metrics else "-" for k in metrics),
            ]
        )
    return table(headers, rows)


@store_errors
def cmd_list(args: argparse.Namespace) -> int:
    client = open_client(args)
    view = "DELETED_ONLY" if args.deleted else "ALL" if args.all else "ACTIVE_ONLY"
    runs = client.search_runs(
        run_view_type=view, max_results=args.max_results, experiment_names=args.experiment
    )
    if args.json:
        print_json([run.to_dict() for run in runs])
        return 0
    if not runs:
        print("No runs.")
        return 0
    names = {e.experiment_id: e.name for e in client.search_experiments()}
    print(_runs_table(runs, names, ()))
    if runs.token:
        print(f"(first {len(runs)} runs; raise --max-results or page with `runs search`)")
    return 0


@store_errors
def cmd_search(args: argparse.Namespace) -> int:
    client = open_client(args)
    runs = client.search_runs(
        filter_string=args.filter,
        max_results=args.max_results,
        order_by=args.order_by,
        page_token=args.page_token,
        experiment_names=args.experiment,
    )
    if args.json:
        print_json({"runs": [run.to_dict() for run in runs], "next_page_token": runs.token})
        return 0
    if not runs:
        print("No runs match.")
    else:
        names = {e.experiment_id: e.name for e in client.search_experiments()}
        print(_runs_table(runs, names, _metric_keys(args.filter, args.order_by)))
    if runs.token:
        print(f"next page: --page-token {runs.token}")
    return 0


def _walk_artifacts(client: Any, run_id: str) -> tuple[list[Any], bool]:
    """Every artifact file and folder of the run, depth first, up to ``ARTIFACT_LIMIT``."""
    found: list[Any] = []
    pending = [""]
    while pending:
        for entry in client.list_artifacts(run_id, pending.pop()):
            if len(found) == ARTIFACT_LIMIT:
                return sorted(found, key=lambda f: f.path), True
            found.append(entry)
            if entry.is_dir:
                pending.append(entry.path)
    return sorted(found, key=lambda f: f.path), False


@store_errors
def cmd_show(args: argparse.Namespace) -> int:
    import dataclasses

    client = open_client(args)
    run = client.get_run(args.run_id)
    artifacts, more = _walk_artifacts(client, run.info.run_id)
    if args.json:
        out = run.to_dict()
        out["artifacts"] = [dataclasses.asdict(f) for f in artifacts]
        out["artifacts_truncated"] = more
        print_json(out)
        return 0
    info = run.info
    experiment = f"{client.get_experiment(info.experiment_id).name} ({info.experiment_id})"
    lines = [
        f"run_id:      {info.run_id}",
        f"name:        {info.run_name}",
        f"experiment:  {experiment}",
        f"status:      {info.status}" + ("" if info.lifecycle_stage == "active" else " (deleted)"),
        f"user:        {info.user_id}",
        f"start:       {when(info.start_time)} UTC",
        f"end:         {when(info.end_time)}" + (" UTC" if info.end_time else ""),
        f"duration:    {duration(info.start_time, info.end_time)}",
        f"artifacts:   {info.artifact_uri}",
    ]
    if info.parent_run_id:
        lines.append(f"parent:      {info.parent_run_id}")
    lines += ["params:", pairs(run.data.params), "metrics (latest):", pairs(run.data.metrics)]
    lines += ["tags:", pairs(run.data.tags), "artifact files:"]
    rows = [(f.path + ("/" if f.is_dir else ""), "" if f.is_dir else f.size) for f in artifacts]
    lines.append(table(None, rows, "  "))
    if more:
        lines.append(f"  ... (the first {ARTIFACT_LIMIT} entries)")
    print("\n".join(lines))
    return 0
