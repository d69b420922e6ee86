"""Search filters and orderings, compiled to SQL (the parser is ``filters.py``), and paging:
one guard for ``max_results`` and one page-token format for every search."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from modelpack.errors import InvalidArgument
from modelpack.store import schema as t
from modelpack.store.filters import And, Comparison, Or, parse_filter

RUN_ATTRIBUTES: Mapping[str, type] = {
    "run_id": str,
    "run_name": str,
    "status": str,
    "user_id": str,
    "artifact_uri": str,
    "experiment_id": str,
    "start_time": int,
    "end_time": int,
    "created": int,
}
_RUN_COLUMN_NAMES = {"created": "start_time"}
_KV_TABLES = {"metric": t.latest_metrics, "param": t.params, "tag": t.tags}

KeyValue = Callable[[str], tuple[Any, Any]]  # kind -> (table, condition joining it to the row)
# MLflow's servers are "guaranteed to support" 50,000 results a page: so is every search here.
MAX_RESULTS = 50_000


def check_max_results(max_results: Any) -> int:
    if not isinstance(max_results, int) or not 0 < max_results <= MAX_RESULTS:
        raise InvalidArgument(
            f"max_results must be between 1 and {MAX_RESULTS}, got {max_results!r}."
        )
    return max_results


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_token(token: str | None) -> int:
    """The offset a page token stands for (0 for the first page)."""
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
        if isinstance(offset, int) and offset >= 0:
            return offset
    except (ValueError, KeyError, TypeError):
        pass
    raise InvalidArgument(f"Invalid page_token {token!r}: pass the token a search returned.")


def page(rows: Sequence[Any], offset: int, max_results: int) -> tuple[Sequence[Any], str | None]:
    """The rows of this page, and the next page's token (rows holds up to max_results + 1)."""
    more = len(rows) > max_results
    return rows[:max_results], encode_token(offset + max_results) if more else None


def _apply(column: Any, op: str, value: Any) -> Any:
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op == "LIKE":
        return column.like(value, escape="\\")
    if op == "ILIKE":
        return column.ilike(value, escape="\\")
    if op == "NOT LIKE":
        return column.not_like(value, escape="\\")
    if op == "NOT ILIKE":
        return column.not_ilike(value, escape="\\")
    if op == "IN":
        return column.in_(list(value))
    if op == "NOT IN":
        return column.not_in(list(value))
    if op == "IS NULL":
        return column.is_(None)
    if op == "IS NOT NULL":
        return column.is_not(None)
    raise InvalidArgument(f"Unsupported comparator {op!r}.")


def compile_node(node: Any, columns: Mapping[str, Any], key_values: KeyValue) -> Any:
    """SQL for a parsed filter: ``columns`` maps attributes, ``key_values`` the prefixed kinds."""
    if isinstance(node, And):
        return sa.and_(*(compile_node(n, columns, key_values) for n in node.items))
    if isinstance(node, Or):
        return sa.or_(*(compile_node(n, columns, key_values) for n in node.items))
    assert isinstance(node, Comparison)
    if node.kind == "attribute":
        return _apply(columns[node.key], node.op, node.value)
    table, joined = key_values(node.kind)
    match = sa.select(sa.literal(1)).where(joined, table.c.key == node.key)
    if node.op == "IS NULL":
        return ~match.exists()
    if node.op == "IS NOT NULL":
        return match.exists()
    return match.where(_apply(table.c.value, node.op, node.value)).exists()


def run_condition(filter_string: str | None) -> Any:
    node = parse_filter(filter_string or "", attributes=RUN_ATTRIBUTES)
    if node is None:
        return None
    columns = {k: t.runs.c[_RUN_COLUMN_NAMES.get(k, k)] for k in RUN_ATTRIBUTES}

    def key_values(kind: str) -> tuple[Any, Any]:
        table = _KV_TABLES[kind]
        return table, table.c.run_id == t.runs.c.run_id

    return compile_node(node, columns, key_values)


_ORDER = re.compile(r"^\s*(?P<key>.+?)(?:\s+(?P<dir>asc|desc))?\s*$", re.IGNORECASE)
_PREFIXES = {
    "metric": "metric",
    "metrics": "metric",
    "param": "param",
    "params": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
}


def parse_order(item: str, attributes: Mapping[str, Any]) -> tuple[str, str, bool]:
    """``"metrics.acc DESC"`` -> ``("metric", "acc", False)`` (kind, key, ascending)."""
    m = _ORDER.match(item) if isinstance(item, str) else None
    if not m:
        raise InvalidArgument(f"Invalid order_by clause {item!r}: use e.g. 'metrics.acc DESC'.")
    key, ascending = m["key"], (m["dir"] or "asc").lower() == "asc"
    kind = "attribute"
    if "." in key and key.split(".", 1)[0].lower() in _PREFIXES:
        prefix, key = key.split(".", 1)
        kind = _PREFIXES[prefix.lower()]
    key = key.strip().strip('`"')
    if kind == "attribute" and key not in attributes:
        raise InvalidArgument(
            f"Invalid order_by clause {item!r}: unknown attribute {key!r}. Known: "
            f"{', '.join(attributes)}."
        )
    return kind, key, ascending


def order_runs(query: Any, order_by: Sequence[str] | None) -> Any:
    clauses = []
    for i, item in enumerate(order_by or ()):
        kind, key, ascending = parse_order(item, RUN_ATTRIBUTES)
        if kind == "attribute":
            column = t.runs.c[_RUN_COLUMN_NAMES.get(key, key)]
        else:
            table = _KV_TABLES[kind].alias(f"order_{i}")
            query = query.outerjoin(
                table, sa.and_(table.c.run_id == t.runs.c.run_id, table.c.key == key)
            )
            column = table.c.value
        clauses.append((column.asc() if ascending else column.desc()).nulls_last())
    return query.order_by(*clauses, t.runs.c.start_time.desc(), t.runs.c.run_id)
