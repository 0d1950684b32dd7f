"""Paths, ``with:`` templates and ``if:`` conditions of the pipeline DSL, called directly.

The pipeline tests reach this code through the actor tree; here every path form,
template form and condition operator is checked on its own, with the text a user
reads when one is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chamberlain.config import ConditionConfig, ConfigError, parse_config
from chamberlain.routing.conditions import ConditionError, evaluate
from chamberlain.routing.templates import (
    TemplateError,
    check_path,
    check_template,
    render,
    resolve,
)

SCOPE: dict[str, Any] = {
    "payload": {
        "city": "Oslo",
        "n": 7,
        "temp": -3.5,
        "flag": True,
        "nothing": None,
        "word": "café",
        "tags": ["rain", "wind"],
        "items": [{"name": "first"}, {"name": "second"}],
        "nested": {"a": 1, "b": [1, 2]},
        "digits": {"0": "zero key"},
        "dash-key": "d",
        "under_key": "u",
    },
    "event": {"type": "weather.changed", "event_id": "ev1", "source": "weather"},
    "context": {"pipeline": "forecast", "step_id": "fetch", "who": "me"},
}


def bad_path_message(path: str) -> str:
    return (
        f"bad path {path!r}: expected payload | event | context followed by .key segments"
        " (letters, digits, '_', '-'), e.g. payload.city"
    )


# -- path syntax -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "payload",
        "event",
        "context",
        "payload.city",
        "event.type",
        "context.root_job_id",
        "payload.items.0.name",
        "payload.dash-key",
        "payload.under_key",
        "payload.0",
        "payload.A9",
    ],
)
def test_well_formed_paths_pass(path: str) -> None:
    check_path(path)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("", id="empty"),
        pytest.param("city", id="no-root"),
        pytest.param("nowhere.y", id="unknown-root"),
        pytest.param("payloads.city", id="root-prefix-only"),
        pytest.param("Payload.city", id="root-is-case-sensitive"),
        pytest.param("payload..city", id="empty-segment"),
        pytest.param("payload.", id="trailing-dot"),
        pytest.param(".payload", id="leading-dot"),
        pytest.param("payload city", id="space"),
        pytest.param(" payload.city", id="leading-space"),
        pytest.param("payload.a/b", id="slash"),
        pytest.param("payload[0]", id="brackets"),
        pytest.param("payload.ville-é", id="non-ascii"),
        pytest.param("payload.city\n", id="trailing-newline"),
    ],
)
def test_malformed_paths_are_refused_with_a_readable_reason(path: str) -> None:
    with pytest.raises(TemplateError) as info:
        check_path(path)
    assert str(info.value) == bad_path_message(path)


def test_template_error_is_a_value_error() -> None:
    # Callers that only know ValueError (config loading) still catch it.
    assert issubclass(TemplateError, ValueError)


# -- resolving a path --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("payload.city", "Oslo"),
        ("payload.n", 7),
        ("payload.nothing", None),
        ("payload.items.1.name", "second"),
        ("payload.tags.0", "rain"),
        ("payload.nested.b.1", 2),
        ("payload.digits.0", "zero key"),  # a digit segment is a key in a mapping
        ("event.type", "weather.changed"),
        ("context.who", "me"),
        ("payload.nested", {"a": 1, "b": [1, 2]}),
    ],
)
def test_resolve_walks_keys_and_list_indexes(path: str, expected: Any) -> None:
    assert resolve(path, SCOPE) == expected


@pytest.mark.parametrize(
    ("path", "missing"),
    [
        ("payload.town", "payload.town"),
        ("payload.items.5.name", "payload.items.5"),  # index past the end
        ("payload.tags.first", "payload.tags.first"),  # a key on a list
        ("payload.n.digits", "payload.n.digits"),  # descending into a number
        ("payload.nothing.x", "payload.nothing.x"),  # descending into null
        ("payload.city.0", "payload.city.0"),  # strings are not indexed
        ("payload.tags.-1", "payload.tags.-1"),  # no negative indexes
    ],
)
def test_resolve_names_the_first_missing_segment(path: str, missing: str) -> None:
    with pytest.raises(TemplateError) as info:
        resolve(path, SCOPE)
    assert str(info.value) == f"{{{path}}}: the input has no {missing}"


def test_resolve_refuses_a_malformed_path() -> None:
    with pytest.raises(TemplateError, match="bad path"):
        resolve("payload..city", SCOPE)


# -- checking templates at start-up ------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{payload.city}",
        "{ payload.city }",  # spaces around a reference are allowed
        "Forecast for {payload.city} ({event.type})",
        "no references at all",
        "{{literal}} braces",
        "{{payload.city}}",  # escaped: not a reference, so not checked
        "",
        7,
        None,
        True,
        {"a": "{payload.city}", "b": ["{context.who}", {"c": "x {event.type}"}]},
        [],
        {},
    ],
)
def test_good_templates_have_no_problems(template: Any) -> None:
    assert check_template(template) == []


def test_a_bad_reference_is_reported_with_the_path_message() -> None:
    assert check_template("Hi {payload..city}") == [bad_path_message("payload..city")]


def test_an_empty_reference_is_a_bad_path() -> None:
    assert check_template("x{}y") == [bad_path_message("")]


@pytest.mark.parametrize("template", ["{open", "close}", "a { b", "{payload.city}}x{"])
def test_unbalanced_braces_are_reported(template: str) -> None:
    problems = check_template(template)
    assert problems == [f"unbalanced brace in {template!r} (write {{{{ or }}}} for a literal)"]


def test_every_problem_of_a_nested_template_is_collected_in_order() -> None:
    template = {
        "x": "{payload..x}",
        "list": ["fine {payload.city}", "{nowhere.y}", {"deep": "{open"}],
        "n": 3,
        "two": "{event.} and {Context.a}",
    }
    assert check_template(template) == [
        bad_path_message("payload..x"),
        bad_path_message("nowhere.y"),
        "unbalanced brace in '{open' (write {{ or }} for a literal)",
        bad_path_message("event."),
        bad_path_message("Context.a"),
    ]


def test_mapping_keys_are_not_templates() -> None:
    # Keys are taken as written, so a brace in a key is neither checked nor rendered.
    template = {"{odd key}": "{payload.city}"}
    assert check_template(template) == []
    assert render(template, SCOPE) == {"{odd key}": "Oslo"}


# -- rendering with: ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{payload.n}", 7),
        ("{payload.temp}", -3.5),
        ("{payload.flag}", True),
        ("{payload.nothing}", None),
        ("{payload.tags}", ["rain", "wind"]),
        ("{payload.nested}", {"a": 1, "b": [1, 2]}),
        ("{payload.city}", "Oslo"),
        ("{ payload.n }", 7),
        ("{event}", SCOPE["event"]),
    ],
)
def test_a_bare_reference_keeps_its_type(template: str, expected: Any) -> None:
    assert render(template, SCOPE) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Forecast for {payload.city}", "Forecast for Oslo"),
        ("n={payload.n}", "n=7"),
        ("t={payload.temp}", "t=-3.5"),
        ("flag={payload.flag}", "flag=true"),
        ("none={payload.nothing}", "none=null"),
        ("tags={payload.tags}", 'tags=["rain", "wind"]'),
        ("obj={payload.nested}", 'obj={"a": 1, "b": [1, 2]}'),
        ("word={payload.word}", "word=café"),  # not escaped to \\u00e9
        ("{payload.city}-{payload.n}", "Oslo-7"),  # two references are text, not a value
        (" {payload.n}", " 7"),
        ("{payload.items.0.name}/{context.who}/{event.type}", "first/me/weather.changed"),
    ],
)
def test_mixed_text_interpolates(template: str, expected: str) -> None:
    assert render(template, SCOPE) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{", "{"),
        ("}}", "}"),
        ("{{payload.city}}", "{payload.city}"),
        ("{{{payload.city}}}", "{Oslo}"),
        ('{{"city": "{payload.city}"}}', '{"city": "Oslo"}'),
        ("plain text", "plain text"),
        ("", ""),
    ],
)
def test_doubled_braces_are_literal(template: str, expected: str) -> None:
    assert render(template, SCOPE) == expected


@pytest.mark.parametrize("value", [7, 2.5, None, True, False])
def test_non_string_values_pass_through(value: Any) -> None:
    assert render(value, SCOPE) is value


def test_nested_dicts_and_lists_render_throughout() -> None:
    template = {
        "city": "{payload.city}",
        "n": "{payload.n}",
        "fixed": 3,
        "inner": {"names": ["{payload.items.0.name}", "{payload.items.1.name}"], "z": None},
        "lines": ["for {payload.city}", ["{context.who}"]],
    }
    assert render(template, SCOPE) == {
        "city": "Oslo",
        "n": 7,
        "fixed": 3,
        "inner": {"names": ["first", "second"], "z": None},
        "lines": ["for Oslo", ["me"]],
    }


def test_render_leaves_its_template_unchanged() -> None:
    template = {"a": ["{payload.n}"]}
    render(template, SCOPE)
    assert template == {"a": ["{payload.n}"]}


@pytest.mark.parametrize(
    "template",
    [
        "{payload.town}",
        "Weather in {payload.town}",
        {"outer": {"inner": "{payload.town}"}},
        ["ok {payload.city}", "{payload.town}"],
    ],
)
def test_a_missing_path_fails_the_render_naming_it(template: Any) -> None:
    with pytest.raises(TemplateError) as info:
        render(template, SCOPE)
    assert str(info.value) == "{payload.town}: the input has no payload.town"


def test_a_null_value_is_present_not_missing() -> None:
    assert render({"x": "{payload.nothing}"}, SCOPE) == {"x": None}


# -- if: conditions ----------------------------------------------------------------------


def holds(path: str, op: str, value: Any, scope: dict[str, Any]) -> bool:
    """Whether the condition ``path op value`` holds in ``scope``."""
    return evaluate(ConditionConfig(path=path, op=op, value=value), scope)


@pytest.mark.parametrize(
    ("path", "op", "value"),
    [
        ("payload.n", "eq", 7),
        ("payload.city", "eq", "Oslo"),
        ("payload.nothing", "eq", None),
        ("payload.tags", "eq", ["rain", "wind"]),
        ("payload.n", "ne", 8),
        ("payload.n", "ne", "7"),  # a string is never equal to a number
        ("payload.nothing", "ne", 0),
        ("payload.n", "gt", 6),
        ("payload.temp", "gt", -4),
        ("payload.city", "gt", "Bergen"),  # strings compare as text
        ("payload.n", "gte", 7),
        ("payload.n", "gte", 6.5),
        ("payload.temp", "lt", 0),
        ("payload.n", "lt", 7.5),
        ("payload.n", "lte", 7),
        ("payload.temp", "lte", -3.5),
        ("payload.city", "contains", "sl"),
        ("payload.tags", "contains", "wind"),
        ("payload.nested", "contains", "a"),  # a mapping contains its keys
        ("payload.city", "in", ["Oslo", "Bergen"]),
        ("payload.city", "in", "Oslo, Bergen"),
        ("payload.city", "in", {"Oslo": 1}),
        ("payload.n", "in", [1, 7]),
        ("payload.city", "exists", True),
        ("payload.city", "exists", None),  # `if: {path, op: exists}` with no value
        ("payload.nothing", "exists", True),  # null is present
        ("payload.town", "exists", False),
        ("event.type", "eq", "weather.changed"),
        ("context.who", "eq", "me"),
        ("payload.items.0.name", "eq", "first"),
    ],
)
def test_conditions_that_hold(path: str, op: str, value: Any) -> None:
    assert holds(path, op, value, SCOPE) is True


@pytest.mark.parametrize(
    ("path", "op", "value"),
    [
        ("payload.n", "eq", 8),
        ("payload.n", "eq", "7"),  # no coercion between strings and numbers
        ("payload.nothing", "eq", 0),
        ("payload.city", "eq", "oslo"),  # case matters
        ("payload.n", "ne", 7),
        ("payload.nothing", "ne", None),
        ("payload.n", "gt", 7),
        ("payload.n", "gte", 8),
        ("payload.n", "lt", 7),
        ("payload.n", "lte", 6),
        ("payload.city", "contains", "x"),
        ("payload.tags", "contains", "sun"),
        ("payload.tags", "contains", "rai"),  # list membership, not substring
        ("payload.nested", "contains", 1),  # values are not keys
        ("payload.city", "in", ["Bergen"]),
        ("payload.city", "in", "Bergen"),
        ("payload.city", "in", {"Bergen": 1}),
        ("payload.city", "exists", False),
        ("payload.nothing", "exists", False),
        ("payload.town", "exists", True),
        ("payload.town", "exists", None),
    ],
)
def test_conditions_that_do_not_hold(path: str, op: str, value: Any) -> None:
    assert holds(path, op, value, SCOPE) is False


@pytest.mark.parametrize("path", ["payload.town", "payload.items.9.name", "payload.n.x"])
def test_a_missing_path_reads_as_null(path: str) -> None:
    # Issue 15 changed this (it was false for every operator): as in Ductile, a
    # missing path is null for every operator but `exists`.
    assert holds(path, "eq", None, SCOPE) is True
    values: tuple[Any, ...] = (0, "x", [], {})
    for value in values:
        assert holds(path, "eq", value, SCOPE) is False
        assert holds(path, "ne", value, SCOPE) is True
    assert holds(path, "in", ["a", None], SCOPE) is True
    assert holds(path, "in", ["a", 0], SCOPE) is False
    for op in ("gt", "gte", "lt", "lte", "contains"):
        with pytest.raises(ConditionError, match=r"\(missing\)"):
            holds(path, op, 0, SCOPE)


@pytest.mark.parametrize(
    ("path", "op", "value"),
    [
        ("payload.city", "gt", 5),
        ("payload.n", "gt", "5"),
        ("payload.n", "gte", "7"),
        ("payload.n", "lt", "8"),
        ("payload.n", "lte", "7"),
        ("payload.nothing", "gt", 0),
        ("payload.nothing", "lt", 0),
        ("payload.n", "gte", None),
        ("payload.tags", "lt", 3),
        ("payload.nested", "gt", {"a": 0}),
    ],
)
def test_ordering_across_types_or_null_is_an_error(path: str, op: str, value: Any) -> None:
    # Issue 15 changed this (it was a false condition): a type mismatch fails the
    # job, as in Ductile.
    with pytest.raises(ConditionError, match=f"operator '{op}' cannot compare {path}"):
        holds(path, op, value, SCOPE)


@pytest.mark.parametrize(
    ("path", "op", "value"),
    [
        ("payload.n", "contains", 7),  # a number contains nothing
        ("payload.nothing", "contains", None),
        ("payload.flag", "contains", True),
        ("payload.city", "contains", 1),  # a number inside a string
        ("payload.nested", "contains", ["a"]),  # an unhashable key
        ("payload.city", "in", 5),  # nothing is in a number
        ("payload.city", "in", None),
        ("payload.n", "in", "17"),  # a number inside a string
        ("payload.tags", "in", {"rain": 1}),  # an unhashable key
    ],
)
def test_membership_on_the_wrong_types_is_an_error(path: str, op: str, value: Any) -> None:
    # Issue 15 changed this (it was a false condition), as above.
    with pytest.raises(ConditionError, match=f"operator '{op}' cannot compare {path}"):
        holds(path, op, value, SCOPE)


def test_an_unknown_operator_is_an_error() -> None:
    with pytest.raises(ConditionError) as info:
        holds("payload.n", "like", 7, SCOPE)
    assert str(info.value) == "unknown operator 'like'"


def test_holds_refuses_a_malformed_path_as_a_missing_one() -> None:
    # Paths are checked at start-up; at run time a bad one simply does not hold.
    assert holds("payload..n", "eq", 7, SCOPE) is False
    assert holds("payload..n", "exists", False, SCOPE) is True


def step_condition(condition: object) -> tuple[str, str, Any]:
    """The (path, op, value) the config loader makes of one ``if:`` mapping."""
    cfg = parse_config(
        {
            "pipelines": [
                {
                    "name": "p",
                    "on": "a.poll",
                    "steps": [{"id": "s", "uses": "b", "if": condition}],
                }
            ]
        },
        base_dir=Path("."),
    )
    if_ = cfg.pipelines[0].steps[0].if_
    assert if_ is not None and if_.path is not None
    return if_.path, if_.op, if_.value


@pytest.mark.parametrize(
    ("op", "value"),
    [
        ("eq", 7),
        ("ne", 8),
        ("neq", 8),
        ("gt", 6),
        ("gte", 7),
        ("lt", 8),
        ("lte", 7),
        ("contains", "7"),
        ("startswith", "7"),
        ("endswith", "7"),
        ("regex", "[0-9]"),
        ("in", [7, "7"]),
        ("exists", True),
    ],
)
def test_every_operator_the_config_accepts_can_be_evaluated(op: str, value: Any) -> None:
    path, parsed_op, parsed_value = step_condition({"path": "payload.n", "op": op, "value": value})
    # The string operators need a string; the others are given the number.
    n = "7" if op in ("contains", "startswith", "endswith", "regex") else 7
    scope = {"payload": {"n": n}, "event": {}, "context": {}}
    assert holds(path, parsed_op, parsed_value, scope) is True


def test_the_default_operator_is_eq_against_null() -> None:
    path, op, value = step_condition({"path": "payload.nothing"})
    assert (op, value) == ("eq", None)
    assert holds(path, op, value, SCOPE) is True
    assert holds("payload.city", op, value, SCOPE) is False


def test_the_config_refuses_an_unknown_operator_listing_the_known_ones() -> None:
    with pytest.raises(ConfigError) as info:
        step_condition({"path": "payload.n", "op": "like", "value": 7})
    assert info.value.problems == (
        "pipelines[0].steps[0].if.op: unknown operator 'like';"
        " expected one of: eq, ne, neq, gt, gte, lt, lte, contains, startswith, endswith,"
        " regex, in, exists",
    )


def test_a_step_takes_one_condition_not_a_list() -> None:
    # Several conditions are combined with all/any, not written as a list.
    with pytest.raises(ConfigError) as info:
        step_condition([{"path": "payload.n"}, {"path": "payload.city"}])
    assert info.value.problems == ("pipelines[0].steps[0].if: expected a mapping, got a list",)
