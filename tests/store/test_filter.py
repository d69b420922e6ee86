"""Search filters: parsing, in-memory evaluation and error messages (store/filters.py)."""

from __future__ import annotations

import pickle
import re

import pytest

from modelpack.errors import InvalidArgument
from modelpack.store.filters import (
    And,
    Comparison,
    FilterError,
    Or,
    like_to_regex,
    matches,
    parse_filter,
)

RUN = {"status": str, "run_name": str, "start_time": int, "duration": float}


def metric(key, op, value=None):
    return Comparison("metric", key, op, value)


def param(key, op, value=None):
    return Comparison("param", key, op, value)


def tag(key, op, value=None):
    return Comparison("tag", key, op, value)


def attr(key, op, value=None):
    return Comparison("attribute", key, op, value)


A, B, C, D = (attr(name, "=", 1) for name in "abcd")


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize("text", ["", " ", "\n\t  ", None])
def test_empty_filter_is_none(text):
    assert parse_filter(text) is None
    assert parse_filter(text, attributes=RUN) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.x > 1", metric("x", ">", 1)),
        ("metric.x > 1", metric("x", ">", 1)),
        ("METRICS.x > 1", metric("x", ">", 1)),
        ("params.p = 'v'", param("p", "=", "v")),
        ("param.p = 'v'", param("p", "=", "v")),
        ("parameters.p = 'v'", param("p", "=", "v")),
        ("Params.p = 'v'", param("p", "=", "v")),
        ("tags.t = 'v'", tag("t", "=", "v")),
        ("tag.t = 'v'", tag("t", "=", "v")),
        ("attributes.status = 'v'", attr("status", "=", "v")),
        ("attribute.status = 'v'", attr("status", "=", "v")),
        ("attr.status = 'v'", attr("status", "=", "v")),
        ("run.status = 'v'", attr("status", "=", "v")),
        ("status = 'v'", attr("status", "=", "v")),
    ],
)
def test_every_prefix_alias(text, expected):
    assert parse_filter(text, attributes=RUN) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.x = 1", metric("x", "=", 1)),
        ("metrics.x != 1", metric("x", "!=", 1)),
        ("metrics.x <> 1", metric("x", "!=", 1)),
        ("metrics.x < 1", metric("x", "<", 1)),
        ("metrics.x <= 1", metric("x", "<=", 1)),
        ("metrics.x > 1", metric("x", ">", 1)),
        ("metrics.x >= 1", metric("x", ">=", 1)),
        ("metrics.x>=1", metric("x", ">=", 1)),
        ("metrics.x=-1", metric("x", "=", -1)),
        ("tags.t LIKE 'a%'", tag("t", "LIKE", "a%")),
        ("tags.t ILIKE 'a%'", tag("t", "ILIKE", "a%")),
        ("tags.t NOT LIKE 'a%'", tag("t", "NOT LIKE", "a%")),
        ("tags.t NOT ILIKE 'a%'", tag("t", "NOT ILIKE", "a%")),
        ("tags.t IN ('a')", tag("t", "IN", ("a",))),
        ("tags.t IN ('a', 'b')", tag("t", "IN", ("a", "b"))),
        ("tags.t NOT IN ('a','b' , 'c')", tag("t", "NOT IN", ("a", "b", "c"))),
        ("metrics.x IN (1, 2.5, -3)", metric("x", "IN", (1, 2.5, -3))),
        ("start_time NOT IN (1)", attr("start_time", "NOT IN", (1,))),
        ("tags.t IS NULL", tag("t", "IS NULL")),
        ("tags.t IS NOT NULL", tag("t", "IS NOT NULL")),
        ("metrics.x IS NULL", metric("x", "IS NULL")),
        ("params.p IS NOT NULL", param("p", "IS NOT NULL")),
        ("status IS NULL", attr("status", "IS NULL")),
        ("params.p = 'a' ", param("p", "=", "a")),
        ("params.p != 'a'", param("p", "!=", "a")),
        ("run_name LIKE 'x_'", attr("run_name", "LIKE", "x_")),
        ("duration < 2", attr("duration", "<", 2)),
        ("start_time >= 1.5", attr("start_time", ">=", 1.5)),
    ],
)
def test_every_comparator(text, expected):
    assert parse_filter(text, attributes=RUN) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tags.t like 'a'", tag("t", "LIKE", "a")),
        ("tags.t Like 'a'", tag("t", "LIKE", "a")),
        ("tags.t iLiKe 'a'", tag("t", "ILIKE", "a")),
        ("tags.t not like 'a'", tag("t", "NOT LIKE", "a")),
        ("tags.t Not  ILike 'a'", tag("t", "NOT ILIKE", "a")),
        ("tags.t in ('a')", tag("t", "IN", ("a",))),
        ("tags.t not in ('a')", tag("t", "NOT IN", ("a",))),
        ("tags.t is null", tag("t", "IS NULL")),
        ("tags.t Is Not Null", tag("t", "IS NOT NULL")),
        ("a = 1 and b = 1", And((A, B))),
        ("a = 1 And b = 1", And((A, B))),
        ("a = 1 or b = 1", Or((A, B))),
        ("a = 1 oR b = 1", Or((A, B))),
    ],
)
def test_keywords_are_case_insensitive(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.`val loss` < 1", metric("val loss", "<", 1)),
        ('metrics."val loss" < 1', metric("val loss", "<", 1)),
        ("tags.\"mlflow.user\" = 'x'", tag("mlflow.user", "=", "x")),
        ("tags.`mlflow.user` = 'x'", tag("mlflow.user", "=", "x")),
        ("tags.mlflow.user = 'x'", tag("mlflow.user", "=", "x")),
        ("metrics.`a``b` = 1", metric("a`b", "=", 1)),
        ('tags."say ""hi""" = \'x\'', tag('say "hi"', "=", "x")),
        ('tags."a\\"b" = \'x\'', tag('a"b', "=", "x")),
        ("metrics.`and` = 1", metric("and", "=", 1)),
        ("metrics.and = 1", metric("and", "=", 1)),
        ("metrics.1st = 1", metric("1st", "=", 1)),
        ("metrics.acc_top1 = 1", metric("acc_top1", "=", 1)),
        ("metrics.précision = 1", metric("précision", "=", 1)),
        ("`run name` = 'x'", attr("run name", "=", "x")),
        ("\"run name\" = 'x'", attr("run name", "=", "x")),
        ("run_id = 'abc'", attr("run_id", "=", "abc")),
    ],
)
def test_key_quoting_and_dots(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("5", 5),
        ("0", 0),
        ("-7", -7),
        ("+2", 2),
        ("5.", 5.0),
        ("0.9", 0.9),
        ("-0.5", -0.5),
        (".5", 0.5),
        ("1e-3", 0.001),
        ("1E3", 1000.0),
        ("-1.5e+2", -150.0),
        ("12345678901234567890", 12345678901234567890),
    ],
)
def test_number_formats(literal, expected):
    node = parse_filter(f"metrics.x = {literal}")
    assert node == metric("x", "=", expected)
    assert type(node.value) is type(expected)


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("'plain'", "plain"),
        ('"double"', "double"),
        ("''", ""),
        ("'  spaced  '", "  spaced  "),
        ("'it''s'", "it's"),
        ("'it\\'s'", "it's"),
        ('"say ""hi"""', 'say "hi"'),
        ('"say \\"hi\\""', 'say "hi"'),
        ("'a\"b'", 'a"b'),
        ('"a\'b"', "a'b"),
        ("'back\\\\slash'", "back\\slash"),
        ("'ends with \\\\'", "ends with \\"),
        ("'C:\\temp'", "C:\\temp"),
        ("'AND OR (x)'", "AND OR (x)"),
        ("'naïve ✓'", "naïve ✓"),
        ("'two\nlines'", "two\nlines"),
    ],
)
def test_string_literals_and_escapes(literal, expected):
    assert parse_filter(f"params.p = {literal}") == param("p", "=", expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = 1 OR b = 1 AND c = 1", Or((A, And((B, C))))),
        ("a = 1 AND b = 1 OR c = 1", Or((And((A, B)), C))),
        ("a = 1 AND b = 1 OR c = 1 AND d = 1", Or((And((A, B)), And((C, D))))),
        ("(a = 1 OR b = 1) AND c = 1", And((Or((A, B)), C))),
        ("a = 1 AND (b = 1 OR c = 1)", And((A, Or((B, C))))),
        ("a = 1 AND b = 1 AND c = 1", And((A, B, C))),
        ("a = 1 OR b = 1 OR c = 1", Or((A, B, C))),
        ("(a = 1 AND b = 1) AND (c = 1 AND d = 1)", And((A, B, C, D))),
        ("((a = 1 OR b = 1) OR c = 1) OR d = 1", Or((A, B, C, D))),
        ("a = 1 AND (b = 1 AND (c = 1 AND d = 1))", And((A, B, C, D))),
        ("(a = 1 OR b = 1) AND (c = 1 OR d = 1)", And((Or((A, B)), Or((C, D))))),
        ("(a = 1)", A),
        ("((( a = 1 )))", A),
        ("(a=1)AND(b=1)", And((A, B))),
        ("a = 1\n  AND\tb = 1\r\n", And((A, B))),
    ],
)
def test_precedence_parentheses_and_flattening(text, expected):
    assert parse_filter(text) == expected


def test_the_full_mlflow_example():
    text = (
        "metrics.x > 0.9 and params.depth = '5' and tags.team LIKE 'ml%' "
        "and attributes.status = 'FINISHED'"
    )
    assert parse_filter(text, attributes=RUN) == And(
        (
            metric("x", ">", 0.9),
            param("depth", "=", "5"),
            tag("team", "LIKE", "ml%"),
            attr("status", "=", "FINISHED"),
        )
    )


def test_nodes_are_frozen_and_hashable():
    node = parse_filter("a = 1 AND (b = 1 OR c = 1)")
    with pytest.raises(AttributeError):
        node.items = ()  # type: ignore[misc]
    assert hash(node) == hash(parse_filter("a=1 and (b=1 or c=1)"))


def test_untyped_attributes_accept_any_value_and_typed_numbers_accept_int_or_float():
    assert parse_filter("anything = 'x'") == attr("anything", "=", "x")
    assert parse_filter("anything = 5") == attr("anything", "=", 5)
    assert parse_filter("x IN ('a', 'b')") == attr("x", "IN", ("a", "b"))
    assert parse_filter("duration > 1", attributes=RUN) == attr("duration", ">", 1)
    assert parse_filter("start_time IN (1, 2.0)", attributes=RUN).value == (1, 2.0)


def test_an_attribute_named_like_a_prefix_can_be_declared():
    assert parse_filter("run = 'x'", attributes={"run": str}) == attr("run", "=", "x")


def test_registry_searches_restrict_kinds():
    kinds = ("tag", "attribute")
    got = parse_filter(
        "name LIKE 'Ch%' AND tags.team = 'risk'", attributes={"name": str}, kinds=kinds
    )
    assert got == And((attr("name", "LIKE", "Ch%"), tag("team", "=", "risk")))
    versions = {"name": str, "version_number": int, "run_id": str}
    assert parse_filter("version_number > 2", attributes=versions) == attr("version_number", ">", 2)


# ------------------------------------------------------------------ errors

KEY = "expected a key such as metrics.acc, params.lr, tags.team or an attribute, got"
ERRORS = [
    # (filter, attributes, message, position)
    (
        "metrics.x > 0.9 foo",
        None,
        "Malformed filter at position 16: expected AND, OR or the end of the filter, got 'foo'.",
        16,
    ),
    (
        "metrics.x foo 0.9",
        None,
        "Malformed filter at position 10: expected a comparator (=, !=, <, <=, >, >=, LIKE, "
        "ILIKE, IN, NOT IN, IS), got 'foo'.",
        10,
    ),
    (
        "metrics.x",
        None,
        "Malformed filter at position 9: expected a comparator (=, !=, <, <=, >, >=, LIKE, "
        "ILIKE, IN, NOT IN, IS), got the end of the filter.",
        9,
    ),
    (
        "metricz.x > 1",
        None,
        "Invalid filter at position 0: unknown prefix 'metricz'; "
        "use metrics., params., tags. or attributes.",
        0,
    ),
    (
        "a = 1 AND foo.bar = 1",
        None,
        "Invalid filter at position 10: unknown prefix 'foo'; "
        "use metrics., params., tags. or attributes.",
        10,
    ),
    (
        "metrics. > 1",
        None,
        "Malformed filter at position 8: empty key after 'metrics.'; "
        "name one, as in metrics.acc or metrics.`val loss`.",
        8,
    ),
    (
        "metrics.`` > 1",
        None,
        "Malformed filter at position 8: empty key after 'metrics.'",
        8,
    ),
    ("tags.'x' = 'y'", None, "Malformed filter at position 5: empty key after 'tags.'", 5),
    ("tags. `x` = 'y'", None, "Malformed filter at position 5: empty key after 'tags.'", 5),
    ("metrics.x. > 1", None, "Malformed filter at position 10: empty key after 'metrics.x.'", 10),
    ("metrics > 1", None, "Malformed filter at position 7: empty key after 'metrics'", 7),
    (
        "metrics.x = '0.9'",
        None,
        "Invalid filter at position 12: metrics.x compares with numbers, got the string '0.9'; "
        "remove the quotes: 0.9.",
        12,
    ),
    (
        "metric.x = 'high'",
        None,
        "Invalid filter at position 11: metric.x compares with numbers, got the string 'high'.",
        11,
    ),
    (
        "params.depth = 5",
        None,
        "Invalid filter at position 15: params.depth compares with strings (params are stored "
        "as strings), got the number 5; quote it: '5'.",
        15,
    ),
    (
        "tags.t = 1.5",
        None,
        "Invalid filter at position 9: tags.t compares with strings, got the number 1.5; "
        "quote it: '1.5'.",
        9,
    ),
    (
        "status = 1",
        RUN,
        "Invalid filter at position 9: status compares with strings, got the number 1; "
        "quote it: '1'.",
        9,
    ),
    (
        "start_time > '5'",
        RUN,
        "Invalid filter at position 13: start_time compares with numbers, got the string '5'; "
        "remove the quotes: 5.",
        13,
    ),
    (
        "statuz = 'x'",
        RUN,
        "Invalid filter at position 0: unknown attribute 'statuz'. Known attributes: duration, "
        "run_name, start_time, status. Did you mean metrics.statuz, params.statuz or "
        "tags.statuz?",
        0,
    ),
    (
        "attributes.statuz = 'x'",
        RUN,
        "Invalid filter at position 0: unknown attribute 'statuz'. Known attributes: duration, "
        "run_name, start_time, status.\n",
        0,
    ),
    (
        "x = 1",
        {},
        "Invalid filter at position 0: unknown attribute 'x'. Known attributes: (none).",
        0,
    ),
    (
        "metrics.x LIKE 'a%'",
        None,
        "Invalid filter at position 10: LIKE compares strings, but metrics.x is a number; "
        "use =, !=, <, <=, >, >=, IN or NOT IN.",
        10,
    ),
    (
        "start_time NOT ILIKE 'a'",
        RUN,
        "Invalid filter at position 11: NOT ILIKE compares strings, but start_time is a number",
        11,
    ),
    (
        "params.p > '1'",
        None,
        "Invalid filter at position 9: > compares numbers, but params.p is a string; "
        "use =, !=, LIKE, ILIKE, IN or NOT IN.",
        9,
    ),
    (
        "run_name <= 'b'",
        RUN,
        "Invalid filter at position 9: <= compares numbers, but run_name is a string",
        9,
    ),
    (
        "a LIKE 5",
        None,
        "Invalid filter at position 7: LIKE compares with strings, got the number 5; "
        "quote it: '5'.",
        7,
    ),
    (
        "a > 'x'",
        None,
        "Invalid filter at position 4: > compares with numbers, got the string 'x'.",
        4,
    ),
    (
        "a IN ('x', 1)",
        None,
        "Invalid filter at position 11: this IN list compares with strings, got the number 1; "
        "quote it: '1'.",
        11,
    ),
    (
        "metrics.x IN (1, 'b')",
        None,
        "Invalid filter at position 17: metrics.x compares with numbers, got the string 'b'.",
        17,
    ),
    (
        "tags.t IN ()",
        None,
        "Invalid filter at position 11: the IN list is empty; give at least one value.",
        11,
    ),
    (
        "tags.t NOT IN ( )",
        None,
        "Invalid filter at position 16: the NOT IN list is empty; give at least one value.",
        16,
    ),
    (
        "tags.t IN 'a'",
        None,
        "Malformed filter at position 10: expected '(' and a list after IN, got the string 'a'.",
        10,
    ),
    (
        "tags.t IN ('a' 'b')",
        None,
        "Malformed filter at position 15: expected ',' or ')' in the IN list, got the string 'b'.",
        15,
    ),
    (
        "tags.t IN ('a',",
        None,
        "Malformed filter at position 15: expected a value (a quoted string or a number), "
        "got the end of the filter.",
        15,
    ),
    (
        "tags.t IN ('a', )",
        None,
        "Malformed filter at position 16: expected a value (a quoted string or a number), got ')'.",
        16,
    ),
    (
        "tags.t IN ('a'",
        None,
        "Malformed filter at position 10: unbalanced parenthesis; this '(' is never closed.",
        10,
    ),
    (
        "(a = 1",
        None,
        "Malformed filter at position 0: unbalanced parenthesis; this '(' is never closed.",
        0,
    ),
    (
        "((a = 1)",
        None,
        "Malformed filter at position 0: unbalanced parenthesis; this '(' is never closed.",
        0,
    ),
    (
        "(a = 1) AND (b = 2",
        None,
        "Malformed filter at position 12: unbalanced parenthesis; this '(' is never closed.",
        12,
    ),
    (
        "a = 1)",
        None,
        "Malformed filter at position 5: unbalanced parenthesis; this ')' has no matching '('.",
        5,
    ),
    (
        "(a = 1 b = 2)",
        None,
        "Malformed filter at position 7: expected AND, OR or ')', got 'b'.",
        7,
    ),
    (
        "a = 'x",
        None,
        "Malformed filter at position 4: the string that starts here is never closed; "
        "add a closing '.",
        4,
    ),
    (
        'a = "x',
        None,
        "Malformed filter at position 4: the string that starts here is never closed; "
        'add a closing ".',
        4,
    ),
    (
        "a = 'x\\'",
        None,
        "Malformed filter at position 4: the string that starts here is never closed",
        4,
    ),
    (
        "metrics.`x > 1",
        None,
        "Malformed filter at position 8: the quoted key that starts here is never closed; "
        "add a closing `.",
        8,
    ),
    (
        "a = 1 AND",
        None,
        "Malformed filter at position 9: expected a key such as metrics.acc, params.lr, "
        "tags.team or an attribute, got the end of the filter.",
        9,
    ),
    ("AND a = 1", None, "Malformed filter at position 0: expected a key such as", 0),
    ("a = 1 OR OR b = 2", None, f"at position 9: {KEY} 'OR'.", 9),
    ("= 1", None, f"at position 0: {KEY} '='.", 0),
    ("'x' = 1", None, f"at position 0: {KEY} the string 'x'.", 0),
    ("()", None, f"at position 1: {KEY} ')'.", 1),
    (
        "a =",
        None,
        "Malformed filter at position 3: expected a value (a quoted string or a number), "
        "got the end of the filter.",
        3,
    ),
    (
        "status = FINISHED",
        None,
        "Malformed filter at position 9: expected a value (a quoted string or a number), "
        "got 'FINISHED'; quote strings, as in 'FINISHED'.",
        9,
    ),
    (
        "a = null",
        None,
        "Malformed filter at position 4: expected a value (a quoted string or a number), "
        "got 'null'; test for a missing value with IS NULL or IS NOT NULL.",
        4,
    ),
    ("a == 1", None, "Malformed filter at position 2: '==' is not a comparator; use =.", 2),
    (
        "a = 1 && b = 2",
        None,
        "Malformed filter at position 6: unexpected character '&'; write AND.",
        6,
    ),
    ("a = 1 || b = 2", None, "at position 6: unexpected character '|'; write OR.", 6),
    ("a ! 1", None, "at position 2: unexpected character '!'; write != or NOT.", 2),
    ("a = 1; drop", None, "at position 5: unexpected character ';'.", 5),
    ("a = 1 # x", None, "at position 6: unexpected character '#'.", 6),
    ("a - 1", None, "at position 2: unexpected character '-'.", 2),
    (
        "a = 0.9x",
        None,
        "Malformed filter at position 4: malformed number; write it as 5, -0.5, 1.5e-3 "
        "or quote it.",
        4,
    ),
    ("a = 1e", None, "at position 4: malformed number", 4),
    ("a = 1.2.3", None, "at position 4: malformed number", 4),
    ("a = 1_000", None, "at position 4: malformed number", 4),
    ("a = " + "9" * 5000, None, "Malformed filter at position 4: the number is too long.", 4),
    (
        "a IS 5",
        None,
        "Malformed filter at position 5: expected NULL or NOT NULL after IS, got the number 5.",
        5,
    ),
    (
        "a IS NOT 'x'",
        None,
        "Malformed filter at position 9: expected NULL after IS NOT, got the string 'x'.",
        9,
    ),
    (
        "a NOT NULL",
        None,
        "Malformed filter at position 6: expected LIKE, ILIKE or IN after NOT, got 'NULL'.",
        6,
    ),
    (
        "tags.t LIKE 'abc\\\\'",
        None,
        "Invalid filter at position 12: the LIKE pattern ends with a lone escape character \\; "
        "write \\\\ for one.",
        12,
    ),
]


@pytest.mark.parametrize(
    ("text", "attributes", "message", "position"), ERRORS, ids=[e[0][:40] for e in ERRORS]
)
def test_error_messages_name_the_position(text, attributes, message, position):
    with pytest.raises(FilterError, match=re.escape(message)) as info:
        parse_filter(text, attributes=attributes)
    assert info.value.position == position
    assert info.value.filter_string == text


def test_error_shows_the_filter_with_a_caret():
    with pytest.raises(FilterError) as info:
        parse_filter("metrics.x foo 0.9")
    assert str(info.value) == (
        "Malformed filter at position 10: expected a comparator (=, !=, <, <=, >, >=, LIKE, "
        "ILIKE, IN, NOT IN, IS), got 'foo'.\n"
        "  metrics.x foo 0.9\n"
        "            ^"
    )


def test_caret_marks_the_end_when_the_filter_stops_short():
    with pytest.raises(FilterError) as info:
        parse_filter("a =")
    assert str(info.value).endswith("\n  a =\n     ^")


def test_caret_in_a_multiline_filter_shows_only_the_line_at_fault():
    text = "a = 1\n\tAND b = 2\nAND c ~ 3"
    with pytest.raises(FilterError, match="position 23: unexpected character '~'") as info:
        parse_filter(text)
    assert info.value.position == text.index("~")
    assert str(info.value).endswith("\n  AND c ~ 3\n        ^")


def test_tabs_keep_the_caret_aligned():
    with pytest.raises(FilterError) as info:
        parse_filter("a\t=\tFOO")
    assert str(info.value).endswith("\n  a = FOO\n      ^")


def test_kinds_a_search_does_not_support_are_errors():
    message = "Invalid filter at position 14: this search has no metrics; filter on tags. or "
    kinds = ("tag", "attribute")
    with pytest.raises(FilterError, match=re.escape(message + "attributes.\n")) as info:
        parse_filter("name = 'x' OR metrics.x > 1", attributes={"name": str}, kinds=kinds)
    assert info.value.position == 14
    with pytest.raises(FilterError, match="this search has no attributes; filter on metrics."):
        parse_filter("status = 'x'", kinds=("metric",))


def test_unknown_names_suggest_only_the_kinds_the_search_supports():
    kinds = ("tag", "attribute")
    message = "unknown attribute 'team'. Known attributes: name. Did you mean tags.team?"
    with pytest.raises(FilterError, match=re.escape(message)):
        parse_filter("team = 'risk'", attributes={"name": str}, kinds=kinds)
    with pytest.raises(FilterError, match=r"prefix 'metricz'; use tags\. or attributes\.\n"):
        parse_filter("metricz.x > 1", kinds=kinds)


def test_nesting_is_bounded():
    assert parse_filter("(" * 50 + "a = 1" + ")" * 50) == A
    with pytest.raises(FilterError, match="position 50: parentheses nest deeper than 50 levels."):
        parse_filter("(" * 1000 + "a = 1" + ")" * 1000)


def test_filter_error_is_an_invalid_argument_and_a_value_error_and_pickles():
    with pytest.raises(FilterError) as info:
        parse_filter("a = 'x")
    error = info.value
    assert isinstance(error, InvalidArgument)
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (str(copy), copy.position, copy.filter_string) == (str(error), 4, "a = 'x")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: parse_filter(3), TypeError, "Expected a filter string, got int."),
        (
            lambda: parse_filter("a = 1", attributes={"a": bool}),
            TypeError,
            "Attribute 'a' has type <class 'bool'>; use str, int or float.",
        ),
        (
            lambda: parse_filter("a = 1", kinds=("metric", "run")),
            ValueError,
            "kinds must be a non-empty subset of ('metric', 'param', 'tag', 'attribute'), "
            "got ('metric', 'run').",
        ),
        (
            lambda: parse_filter("a = 1", kinds=()),
            ValueError,
            "kinds must be a non-empty subset",
        ),
        (lambda: matches("a = 1", lambda kind, key: None), TypeError, "got str."),
    ],
)
def test_api_misuse(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


# ------------------------------------------------------------------ LIKE


@pytest.mark.parametrize(
    ("pattern", "text", "case_insensitive", "expected"),
    [
        ("abc", "abc", False, True),
        ("abc", "abcd", False, False),
        ("abc", "xabc", False, False),
        ("a%", "a", False, True),
        ("a%", "abc", False, True),
        ("%c", "abc", False, True),
        ("%b%", "abc", False, True),
        ("%", "", False, True),
        ("%%", "anything", False, True),
        ("%x%", "abc", False, False),
        ("a_c", "abc", False, True),
        ("a_c", "ac", False, False),
        ("a_c", "abbc", False, False),
        ("___", "abc", False, True),
        ("a%", "a\nb", False, True),
        ("a_b", "a\nb", False, True),
        ("ABC", "abc", False, False),
        ("ABC", "abc", True, True),
        ("ml%", "ML-core", True, True),
        ("straße", "STRASSE", True, False),
        ("a.c", "abc", False, False),
        ("a.c", "a.c", False, True),
        ("a*", "aaa", False, False),
        ("a*", "a*", False, True),
        ("a+b?", "a+b?", False, True),
        ("(x|y)", "(x|y)", False, True),
        ("(x|y)", "x", False, False),
        ("[ab]", "a", False, False),
        ("[ab]", "[ab]", False, True),
        ("^a$", "^a$", False, True),
        ("{1}", "{1}", False, True),
        ("\\d", "d", False, True),
        ("\\d", "5", False, False),
        ("100\\%", "100%", False, True),
        ("100\\%", "1000", False, False),
        ("a\\_b", "a_b", False, True),
        ("a\\_b", "axb", False, False),
        ("a\\\\b", "a\\b", False, True),
        ("a\\\\%", "a\\anything", False, True),
        ("end\\", "end\\", False, True),
    ],
)
def test_like_to_regex(pattern, text, case_insensitive, expected):
    regex = like_to_regex(pattern, case_insensitive)
    assert (regex.match(text) is not None) is expected
    assert (regex.search(text) is not None) is expected  # anchored both ends


def test_like_to_regex_does_not_backtrack_on_runs_of_percent():
    assert like_to_regex("%" * 50 + "x").match("a" * 5000) is None


# ------------------------------------------------------------------ evaluation

RECORD = {
    "metric": {"acc": 0.95, "loss": 0.2, "n": 3},
    "param": {"depth": "5", "lr": "0.01"},
    "tag": {"team": "ml-core", "note": "100% (a.b)*", "user": "Ann"},
    "attribute": {"status": "FINISHED", "start_time": 1000, "run_name": "r1"},
}


def get(kind, key):
    return RECORD[kind].get(key)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.acc > 0.9", True),
        ("metrics.acc > 0.95", False),
        ("metrics.acc >= 0.95", True),
        ("metrics.acc < 0.95", False),
        ("metrics.acc <= 0.95", True),
        ("metrics.acc = 0.95", True),
        ("metrics.acc != 0.95", False),
        ("metrics.acc <> 0.9", True),
        ("metrics.n = 3.0", True),
        ("metrics.n IN (1, 2, 3)", True),
        ("metrics.n NOT IN (1, 2, 3)", False),
        ("params.depth = '5'", True),
        ("params.depth != '5'", False),
        ("params.depth IN ('4', '6')", False),
        ("params.depth NOT IN ('4', '6')", True),
        ("attributes.status IN ('FINISHED', 'FAILED')", True),
        ("status NOT IN ('FINISHED', 'FAILED')", False),
        ("start_time >= 1000 AND start_time < 2000", True),
        ("tags.team LIKE 'ml%'", True),
        ("tags.team LIKE 'ML%'", False),
        ("tags.team ILIKE 'ML%'", True),
        ("tags.team NOT LIKE 'ml%'", False),
        ("tags.team NOT LIKE 'ML%'", True),
        ("tags.team NOT ILIKE 'ML%'", False),
        ("tags.team LIKE 'ml_core'", True),
        ("tags.team LIKE 'ml_cor'", False),
        ("tags.team LIKE 'ml'", False),
        ("tags.team LIKE '%core'", True),
        ("tags.team LIKE '%'", True),
        ("tags.note LIKE '100\\% (a.b)*'", True),
        ("tags.note LIKE '100\\% (a_b)_'", True),
        ("tags.note LIKE '%(a.b)*'", True),
        ("tags.note LIKE '%(aXb)*'", False),
        ("tags.note LIKE '100\\%%'", True),
        ("tags.note LIKE '1000%'", False),
        ("tags.user = 'Ann'", True),
        ("tags.user = 'ann'", False),
        ("tags.user ILIKE 'ann'", True),
        # a missing key fails every comparison but IS NULL, as NULL does in SQL
        ("metrics.missing > 0", False),
        ("metrics.missing != 1", False),
        ("tags.missing NOT IN ('x')", False),
        ("tags.missing NOT LIKE 'x'", False),
        ("tags.missing IS NULL", True),
        ("tags.missing IS NOT NULL", False),
        ("tags.team IS NULL", False),
        ("tags.team IS NOT NULL", True),
        ("params.depth IS NOT NULL", True),
        ("metrics.acc IS NULL", False),
        # boolean structure
        ("metrics.acc > 0.99 OR params.depth = '5'", True),
        ("metrics.acc > 0.99 OR params.depth = '6'", False),
        ("metrics.acc > 0.9 AND params.depth = '6'", False),
        ("(metrics.acc > 0.99 OR params.depth = '5') AND tags.user = 'Ann'", True),
        ("(metrics.acc > 0.99 OR params.depth = '5') AND tags.user = 'ann'", False),
        # AND binds tighter: true OR (true AND false), not (true OR true) AND false
        ("params.depth = '5' OR metrics.acc > 0.9 AND tags.user = 'nobody'", True),
        ("(params.depth = '5' OR metrics.acc > 0.9) AND tags.user = 'nobody'", False),
        # untyped attributes compared with the wrong type never match
        ("run_name > 5", False),
        ("run_name = 5", False),
        ("start_time LIKE '1%'", False),
    ],
)
def test_matches(text, expected):
    assert matches(parse_filter(text), get) is expected


def test_matches_without_a_filter_is_true():
    assert matches(None, get) is True
    assert matches(parse_filter("  "), get) is True


def test_matches_asks_only_for_the_keys_it_needs():
    asked = []

    def spy(kind, key):
        asked.append((kind, key))
        return get(kind, key)

    assert matches(parse_filter("metrics.acc > 0.9 OR tags.team = 'x'"), spy)
    assert asked == [("metric", "acc")]
