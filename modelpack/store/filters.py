"""Search filters: MLflow's ``search_runs`` syntax, plus ``OR`` and parentheses.

``metrics.acc > 0.9 and (params.depth = '5' or tags.team LIKE 'ml%')`` parses into a small
tree of `Comparison`, `And` and `Or` that a store turns into SQL or evaluates with `matches`.

- Keys: ``metrics.``/``metric.``, ``params.``/``param.``/``parameters.``, ``tags.``/``tag.``,
  ``attributes.``/``attribute.``/``attr.``/``run.``; a bare name is an attribute. Quote a key
  with backticks or double quotes: ``metrics.`val loss```, ``tags."mlflow.user"``.
- Comparators: ``= != <> < <= > >= LIKE ILIKE NOT LIKE NOT ILIKE IN NOT IN IS [NOT] NULL``.
  Keywords are case-insensitive; AND binds tighter than OR.
- Strings take single or double quotes; ``''`` (or ``""``), ``\\'``, ``\\"`` and ``\\\\`` are
  escapes, any other backslash stays as written. In a LIKE pattern ``%`` is any run of
  characters, ``_`` one character, and a backslash makes the next character literal (SQL
  backends pass ``escape="\\\\"`` to agree with `like_to_regex`).
- Metrics compare with numbers, params and tags with strings, attributes with the type the
  caller declares. LIKE needs a string key; ``<``, ``<=``, ``>``, ``>=`` need a number key.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from modelpack.errors import InvalidArgument

__all__ = [
    "KINDS",
    "And",
    "Comparison",
    "FilterError",
    "Node",
    "Or",
    "like_to_regex",
    "matches",
    "parse_filter",
]

KINDS = ("metric", "param", "tag", "attribute")
# fmt: off
_PREFIXES = {
    "metrics": "metric", "metric": "metric",
    "params": "param", "param": "param", "parameters": "param",
    "tags": "tag", "tag": "tag",
    "attributes": "attribute", "attribute": "attribute", "attr": "attribute", "run": "attribute",
}
# fmt: on
_CANONICAL = {"metric": "metrics.", "param": "params.", "tag": "tags.", "attribute": "attributes."}
_KEYWORDS = frozenset({"AND", "OR", "LIKE", "ILIKE", "IN", "NOT", "IS", "NULL"})
_LIKES = frozenset({"LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"})
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_SYMBOLS = ("<=", ">=", "<>", "!=", "==", "=", "<", ">")  # longest first
_SPACE = re.compile(r"\s*")
_NAME = re.compile(r"[^\W\d]\w*(?:\.\w+)*\.?")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_MAX_DEPTH = 50
_COMPARATORS = "=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN, IS"


@dataclass(frozen=True)
class Comparison:
    """``kind``'s ``key`` compared with ``value`` (a tuple for IN, ``None`` for IS NULL)."""

    kind: str
    key: str
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    """True when every item is (two or more, none of them an `And`)."""

    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    """True when any item is (two or more, none of them an `Or`)."""

    items: tuple[Node, ...]


Node = Comparison | And | Or


class FilterError(InvalidArgument):
    """A filter that does not parse, or names a key or value the search cannot use.

    Attributes:
        position: the 0-based character offset of the fault in ``filter_string``.
        filter_string: the filter as given.
    """

    def __init__(self, message: str, position: int = 0, filter_string: str = "") -> None:
        super().__init__(message)
        self.position = position
        self.filter_string = filter_string

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.message, self.position, self.filter_string)


def parse_filter(
    text: str | None,
    *,
    attributes: Mapping[str, type] | None = None,
    kinds: Collection[str] = KINDS,
) -> Node | None:
    """The tree for a filter string; ``None`` when it is empty or only whitespace.

    Args:
        attributes: the searchable attributes and their types (``str``, ``int`` or ``float``);
            an unknown attribute is an error. ``None`` accepts any attribute and any value.
        kinds: the kinds of key this search supports, a subset of `KINDS`.

    Raises:
        FilterError: with the position and a caret under the fault.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        raise TypeError(f"Expected a filter string, got {type(text).__name__}.")
    for name, kind in (attributes or {}).items():
        if kind not in (str, int, float):
            raise TypeError(f"Attribute {name!r} has type {kind!r}; use str, int or float.")
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"kinds must be a non-empty subset of {KINDS}, got {tuple(kinds)}.")
    if not text.strip():
        return None
    return _Parser(text, attributes, tuple(k for k in KINDS if k in kinds)).parse()


def like_to_regex(pattern: str, case_insensitive: bool = False) -> re.Pattern[str]:
    """A regex that matches a whole string exactly when SQL ``LIKE pattern`` would.

    ``%`` is any run of characters, ``_`` is one, ``\\`` makes the next character literal (a
    trailing one is a literal backslash); everything else, regex syntax included, is literal.
    """
    parts: list[str] = []
    chars = iter(pattern)
    for ch in chars:
        if ch == "%":
            if not parts or parts[-1] != ".*":  # runs of % would backtrack for nothing
                parts.append(".*")
        elif ch == "_":
            parts.append(".")
        else:
            parts.append(re.escape(next(chars, "\\") if ch == "\\" else ch))
    flags = re.DOTALL | (re.IGNORECASE if case_insensitive else 0)
    return re.compile(r"\A(?:" + "".join(parts) + r")\Z", flags)


def matches(node: Node | None, get: Callable[[str, str], Any]) -> bool:
    """Whether a record passes the filter; ``get(kind, key)`` returns ``None`` when missing.

    A missing key fails every comparison but IS NULL, as SQL's NULL does.
    """
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(item, get) for item in node.items)
    if isinstance(node, Or):
        return any(matches(item, get) for item in node.items)
    if not isinstance(node, Comparison):
        raise TypeError(f"Expected a filter node, got {type(node).__name__}.")
    actual, op, value = get(node.kind, node.key), node.op, node.value
    if op in ("IS NULL", "IS NOT NULL"):
        return (actual is None) == (op == "IS NULL")
    if actual is None:
        return False
    if op in ("IN", "NOT IN"):
        return (actual in value) == (op == "IN")
    if op in _LIKES:
        if not isinstance(actual, str):
            return False
        found = like_to_regex(value, "ILIKE" in op).match(actual) is not None
        return found != op.startswith("NOT")
    if op in ("=", "!="):
        return (actual == value) == (op == "=")
    try:
        return bool(_ORDER[op](actual, value))
    except TypeError:  # a string attribute against a number: SQL would not match either
        return False


class _Token(NamedTuple):
    kind: str  # name, key (backticks), string, number, op, "(", ")", ",", end
    value: Any
    pos: int
    end: int


class _Parser:
    def __init__(self, text: str, attributes: Mapping[str, type] | None, kinds: tuple) -> None:
        self.text, self.attributes, self.kinds = text, attributes, kinds
        self.depth = 0
        self.tok = self._scan(0)

    # ------------------------------------------------------------------ scanning

    def fail(self, pos: int, detail: str, headline: str = "Malformed filter") -> FilterError:
        start = self.text.rfind("\n", 0, pos) + 1
        stop = self.text.find("\n", pos)
        line = self.text[start : len(self.text) if stop < 0 else stop]
        line = line.replace("\t", " ").replace("\r", " ")
        caret = f"  {line}\n  {' ' * (pos - start)}^"
        return FilterError(f"{headline} at position {pos}: {detail}\n{caret}", pos, self.text)

    def advance(self) -> _Token:
        tok, self.tok = self.tok, self._scan(self.tok.end)
        return tok

    def _scan(self, i: int) -> _Token:
        text = self.text
        space = _SPACE.match(text, i)
        pos = space.end() if space else i
        if pos == len(text):
            return _Token("end", None, pos, pos)
        ch = text[pos]
        if ch in "(),":
            return _Token(ch, ch, pos, pos + 1)
        if ch in "'\"`":
            value, end = self._quoted(pos)
            return _Token("key" if ch == "`" else "string", value, pos, end)
        for symbol in _SYMBOLS:
            if text.startswith(symbol, pos):
                return _Token("op", symbol, pos, pos + len(symbol))
        if number := _NUMBER.match(text, pos):
            end = number.end()
            if end < len(text) and (text[end].isalnum() or text[end] in "._"):
                raise self.fail(pos, "malformed number; write it as 5, -0.5, 1.5e-3 or quote it.")
            literal = number.group()
            try:
                parsed = float(literal) if any(c in literal for c in ".eE") else int(literal)
            except ValueError:  # more digits than int() accepts from a string
                raise self.fail(pos, "the number is too long.") from None
            return _Token("number", parsed, pos, end)
        if name := _NAME.match(text, pos):
            return _Token("name", name.group(), pos, name.end())
        hint = {"&": "; write AND", "|": "; write OR", "!": "; write != or NOT"}.get(ch, "")
        raise self.fail(pos, f"unexpected character {ch!r}{hint}.")

    def _quoted(self, pos: int) -> tuple[str, int]:
        text, quote = self.text, self.text[pos]
        out: list[str] = []
        i = pos + 1
        while i < len(text):
            ch = text[i]
            if ch == quote and text.startswith(quote, i + 1):
                out.append(quote)
                i += 2
            elif ch == quote:
                return "".join(out), i + 1
            elif ch == "\\" and quote != "`" and i + 1 < len(text) and text[i + 1] in "'\"\\":
                out.append(text[i + 1])
                i += 2
            else:
                out.append(ch)
                i += 1
        what = "quoted key" if quote == "`" else "string"
        raise self.fail(pos, f"the {what} that starts here is never closed; add a closing {quote}.")

    def describe(self, tok: _Token) -> str:
        source = self.text[tok.pos : tok.end]
        if tok.kind == "end":
            return "the end of the filter"
        return f"the {tok.kind} {source}" if tok.kind in ("string", "number") else repr(source)

    def keyword(self, *words: str) -> str | None:
        word = self.tok.value.upper() if self.tok.kind == "name" else None
        return word if word in words else None

    # ------------------------------------------------------------------ grammar

    def parse(self) -> Node:
        node = self.disjunction()
        if self.tok.kind == ")":
            raise self.fail(self.tok.pos, "unbalanced parenthesis; this ')' has no matching '('.")
        if self.tok.kind != "end":
            got = self.describe(self.tok)
            raise self.fail(self.tok.pos, f"expected AND, OR or the end of the filter, got {got}.")
        return node

    def disjunction(self) -> Node:
        items = [self.conjunction()]
        while self.keyword("OR"):
            self.advance()
            items.append(self.conjunction())
        return _join(Or, items)

    def conjunction(self) -> Node:
        items = [self.atom()]
        while self.keyword("AND"):
            self.advance()
            items.append(self.atom())
        return _join(And, items)

    def atom(self) -> Node:
        if self.tok.kind != "(":
            return self.comparison()
        opening = self.advance()
        self.depth += 1
        if self.depth > _MAX_DEPTH:  # a RecursionError would reach a server as a 500
            raise self.fail(opening.pos, f"parentheses nest deeper than {_MAX_DEPTH} levels.")
        node = self.disjunction()
        self.depth -= 1
        if self.tok.kind == "end":
            raise self.fail(opening.pos, "unbalanced parenthesis; this '(' is never closed.")
        if self.tok.kind != ")":
            raise self.fail(
                self.tok.pos, f"expected AND, OR or ')', got {self.describe(self.tok)}."
            )
        self.advance()
        return node

    def comparison(self) -> Comparison:
        key_tok = self.tok
        kind, key, source = self.key()
        key_type = self.key_type(kind, key, source, key_tok.pos)
        op_tok = self.tok
        op = self.comparator()
        if op.startswith("IS"):
            return Comparison(kind, key, op, None)
        if op in _LIKES and key_type == "number":
            uses = "=, !=, <, <=, >, >=, IN or NOT IN"
            detail = f"{op} compares strings, but {source} is a number; use {uses}."
            raise self.fail(op_tok.pos, detail, "Invalid filter")
        if op in _ORDER and key_type == "str":
            uses = "=, !=, LIKE, ILIKE, IN or NOT IN"
            detail = f"{op} compares numbers, but {source} is a string; use {uses}."
            raise self.fail(op_tok.pos, detail, "Invalid filter")
        subject, expected = source, key_type
        if expected is None and (op in _LIKES or op in _ORDER):
            subject, expected = op, "str" if op in _LIKES else "number"
        if op in ("IN", "NOT IN"):
            return Comparison(kind, key, op, self.values(op, expected, subject, kind))
        value_tok = self.tok
        value = self.value(expected, subject, kind)
        if op in _LIKES and (len(value) - len(value.rstrip("\\"))) % 2:
            detail = f"the {op} pattern ends with a lone escape character \\; write \\\\ for one."
            raise self.fail(value_tok.pos, detail, "Invalid filter")
        return Comparison(kind, key, op, value)

    def key(self) -> tuple[str, str, str]:
        tok = self.tok
        quoted = tok.kind == "key" or (tok.kind == "string" and self.text[tok.pos] == '"')
        if quoted and tok.value:
            self.advance()
            return "attribute", tok.value, self.text[tok.pos : tok.end]
        if tok.kind != "name" or tok.value.upper() in _KEYWORDS:
            examples = "metrics.acc, params.lr, tags.team or an attribute"
            raise self.fail(
                tok.pos, f"expected a key such as {examples}, got {self.describe(tok)}."
            )
        self.advance()
        head, dot, rest = tok.value.partition(".")
        kind = _PREFIXES.get(head.lower())
        if not dot and (kind is None or head in (self.attributes or ())):
            return "attribute", head, head
        if kind is None:
            detail = f"unknown prefix {head!r}; use {_either(self.prefixes())}"
            raise self.fail(tok.pos, detail, "Invalid filter")
        after = self.tok
        if dot and not rest and after.pos == tok.end and after.value:
            if after.kind == "key" or (after.kind == "string" and self.text[after.pos] == '"'):
                self.advance()
                return kind, after.value, self.text[tok.pos : after.end]
        if not rest or rest.endswith("."):
            example = f"{head}.acc or {head}.`val loss`"
            detail = f"empty key after {tok.value!r}; name one, as in {example}."
            raise self.fail(tok.end, detail)
        return kind, rest, tok.value

    def prefixes(self) -> list[str]:
        return [_CANONICAL[kind] for kind in self.kinds]

    def key_type(self, kind: str, key: str, source: str, pos: int) -> str | None:
        if kind not in self.kinds:
            detail = f"this search has no {kind}s; filter on {_either(self.prefixes())}"
            raise self.fail(pos, detail, "Invalid filter")
        if kind != "attribute":
            return "number" if kind == "metric" else "str"
        if self.attributes is None:
            return None
        if key not in self.attributes:
            known = ", ".join(sorted(self.attributes)) or "(none)"
            detail = f"unknown attribute {key!r}. Known attributes: {known}."
            if "." not in source and "`" not in source:
                others = [_CANONICAL[k] + key for k in self.kinds if k != "attribute"]
                detail += f" Did you mean {_either(others)}?" if others else ""
            raise self.fail(pos, detail, "Invalid filter")
        return "str" if self.attributes[key] is str else "number"

    def comparator(self) -> str:
        tok = self.tok
        if tok.kind == "op":
            self.advance()
            if tok.value == "==":
                raise self.fail(tok.pos, "'==' is not a comparator; use =.")
            return "!=" if tok.value == "<>" else tok.value
        word = self.keyword("LIKE", "ILIKE", "IN", "NOT", "IS")
        if word in ("LIKE", "ILIKE", "IN"):
            self.advance()
            return word
        if word == "NOT":
            self.advance()
            if second := self.keyword("LIKE", "ILIKE", "IN"):
                self.advance()
                return f"NOT {second}"
            got = self.describe(self.tok)
            raise self.fail(self.tok.pos, f"expected LIKE, ILIKE or IN after NOT, got {got}.")
        if word == "IS":
            self.advance()
            negated = self.keyword("NOT") is not None
            if negated:
                self.advance()
            if self.keyword("NULL"):
                self.advance()
                return "IS NOT NULL" if negated else "IS NULL"
            wanted = "NULL after IS NOT" if negated else "NULL or NOT NULL after IS"
            raise self.fail(self.tok.pos, f"expected {wanted}, got {self.describe(self.tok)}.")
        got = self.describe(tok)
        raise self.fail(tok.pos, f"expected a comparator ({_COMPARATORS}), got {got}.")

    def values(self, op: str, expected: str | None, subject: str, kind: str) -> tuple:
        opening = self.tok
        if opening.kind != "(":
            got = self.describe(opening)
            raise self.fail(opening.pos, f"expected '(' and a list after {op}, got {got}.")
        self.advance()
        if self.tok.kind == ")":
            detail = f"the {op} list is empty; give at least one value."
            raise self.fail(self.tok.pos, detail, "Invalid filter")
        values = []
        while True:
            values.append(self.value(expected, subject, kind))
            if expected is None:  # an untyped attribute: the first value sets the type
                expected = "str" if isinstance(values[0], str) else "number"
                subject = f"this {op} list"
            tok = self.advance()
            if tok.kind == ")":
                return tuple(values)
            if tok.kind == "end":
                raise self.fail(opening.pos, "unbalanced parenthesis; this '(' is never closed.")
            if tok.kind != ",":
                got = self.describe(tok)
                raise self.fail(tok.pos, f"expected ',' or ')' in the {op} list, got {got}.")

    def value(self, expected: str | None, subject: str, kind: str) -> Any:
        tok = self.tok
        source = self.text[tok.pos : tok.end]
        if tok.kind not in ("string", "number"):
            hint = ""
            if tok.kind == "name":
                hint = f"; quote strings, as in '{source}'"
                if source.upper() == "NULL":
                    hint = "; test for a missing value with IS NULL or IS NOT NULL"
            got = self.describe(tok)
            detail = f"expected a value (a quoted string or a number), got {got}{hint}."
            raise self.fail(tok.pos, detail)
        self.advance()
        got = "str" if tok.kind == "string" else "number"
        if expected is None or got == expected:
            return tok.value
        if got == "str":
            detail = f"{subject} compares with numbers, got the string {source}"
            if _NUMBER.fullmatch(tok.value.strip()):
                detail += f"; remove the quotes: {tok.value.strip()}"
        else:
            why = " (params are stored as strings)" if kind == "param" else ""
            detail = f"{subject} compares with strings{why}, got the number {source}; "
            detail += f"quote it: '{source}'"
        raise self.fail(tok.pos, detail + ".", "Invalid filter")


def _join(cls: type[And] | type[Or], items: list[Node]) -> Node:
    if len(items) == 1:
        return items[0]
    flat: list[Node] = []
    for item in items:
        flat.extend(item.items if isinstance(item, cls) else (item,))
    return cls(tuple(flat))


def _either(words: list[str]) -> str:
    return " or ".join(filter(None, (", ".join(words[:-1]), words[-1])))
