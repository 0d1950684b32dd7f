"""``if:`` conditions, called directly: Ductile's operators, case rules, null and
missing values, ``all``/``any``/``not``, and the load-time checks of a condition.

The golden tables re-express the cases of Ductile's own tests
(``internal/router/conditions/eval_test.go`` and ``validate_test.go``) against
Chamberlain's config and evaluator.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chamberlain.config import ConditionConfig, ConfigError, parse_config
from chamberlain.routing.conditions import ConditionError, evaluate, same


def condition(raw: object) -> ConditionConfig:
    """The condition the config loader makes of one step's ``if:``."""
    cfg = parse_config(
        {
            "pipelines": [
                {"name": "p", "on": "a.poll", "steps": [{"id": "s", "uses": "b", "if": raw}]}
            ]
        },
        base_dir=Path("."),
    )
    found = cfg.pipelines[0].steps[0].if_
    assert found is not None
    return found


def problems(raw: object) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        condition(raw)
    return info.value.problems


def scope(**payload: Any) -> dict[str, Any]:
    return {"payload": payload, "event": {}, "context": {}}


# -- Ductile's golden cases --------------------------------------------------------------

DUCTILE_SCOPE = scope(status="Error: YouTube URL", count=3, kind="video.mp4", code="AbC-123")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"path": "payload.status", "op": "exists"}, True),
        ({"path": "payload.missing", "op": "exists"}, False),
        ({"path": "payload.kind", "op": "eq", "value": "video.mp4"}, True),
        ({"path": "payload.status", "op": "neq", "value": "ok"}, True),
        ({"path": "payload.kind", "op": "in", "value": ["audio", "video.mp4"]}, True),
        ({"path": "payload.count", "op": "gt", "value": 2}, True),
        ({"path": "payload.count", "op": "gte", "value": 3}, True),
        ({"path": "payload.count", "op": "lt", "value": 4}, True),
        ({"path": "payload.count", "op": "lte", "value": 3}, True),
        ({"path": "payload.status", "op": "contains", "value": "youtube"}, True),
        ({"path": "payload.status", "op": "startswith", "value": "error:"}, True),
        ({"path": "payload.kind", "op": "endswith", "value": ".MP4"}, True),
        ({"path": "payload.code", "op": "regex", "value": r"(?i)^[a-z]{3}-\d{3}$"}, True),
    ],
)
def test_ductile_atomic_operators(raw: dict[str, Any], expected: bool) -> None:
    assert evaluate(condition(raw), DUCTILE_SCOPE) is expected


def test_ductile_composite_conditions() -> None:
    video = scope(kind="video", duration_sec=45)
    assert evaluate(
        condition(
            {
                "all": [
                    {"path": "payload.kind", "op": "eq", "value": "video"},
                    {"path": "payload.duration_sec", "op": "gte", "value": 30},
                ]
            }
        ),
        video,
    )
    assert evaluate(
        condition(
            {
                "any": [
                    {"path": "payload.kind", "op": "eq", "value": "audio"},
                    {"path": "payload.duration_sec", "op": "gte", "value": 30},
                ]
            }
        ),
        video,
    )
    assert evaluate(
        condition({"not": {"path": "payload.kind", "op": "eq", "value": "audio"}}), video
    )


@pytest.mark.parametrize(
    ("raw", "payload", "message"),
    [
        (
            {"path": "payload.count", "op": "gt", "value": 1},
            {"count": "3"},
            "operator 'gt' cannot compare payload.count, a string, with 1, a number",
        ),
        (
            {"path": "payload.count", "op": "contains", "value": "3"},
            {"count": 3},
            "operator 'contains' cannot compare payload.count, a number, with '3', a string",
        ),
    ],
)
def test_ductile_type_mismatch_is_an_error(
    raw: dict[str, Any], payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConditionError) as info:
        evaluate(condition(raw), scope(**payload))
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"path": "payload.status", "op": "wat", "value": "x"},
            "pipelines[0].steps[0].if.op: unknown operator 'wat'",
        ),
        (
            {"op": "eq", "value": "x"},
            "pipelines[0].steps[0].if: give exactly one of path (with op and value), all, any"
            " or not; got none",
        ),
        (
            {"path": "payload.status", "op": "regex", "value": 123},
            "pipelines[0].steps[0].if: value must be a string for operator 'regex'",
        ),
        (
            {"path": "payload.code", "op": "regex", "value": "("},
            "pipelines[0].steps[0].if: invalid regex pattern '(': missing ), unterminated"
            " subpattern at position 0",
        ),
        (
            {"not": {"not": {"not": {"path": "payload.status", "op": "eq", "value": "x"}}}},
            "pipelines[0].steps[0].if: conditions nest deeper than 3 levels",
        ),
        (
            {"all": [{"path": "payload.status", "op": "eq", "value": "x"}] * 21},
            "pipelines[0].steps[0].if: a condition holds more than 20 predicates",
        ),
    ],
)
def test_ductile_validation_failures_are_config_errors(raw: dict[str, Any], problem: str) -> None:
    (found,) = problems(raw)
    assert found.startswith(problem)


@pytest.mark.parametrize(
    "raw",
    [
        {"path": "payload.text", "op": "contains", "value": "needle"},
        {"path": "payload.text", "op": "startswith", "value": "http"},
        {"path": "payload.text", "op": "endswith", "value": ".pdf"},
        {"path": "payload.text", "op": "regex", "value": "(?i)foo.+bar"},
        {"all": [{"path": "payload.status", "op": "eq", "value": "x"}] * 19},
        {"not": {"not": {"path": "payload.status", "op": "eq", "value": "x"}}},
    ],
)
def test_ductile_valid_conditions_load(raw: dict[str, Any]) -> None:
    condition(raw)


# -- case rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "value", "expected"),
    [
        ("contains", "OSLO", True),
        ("startswith", "oS", True),
        ("endswith", "LO", True),
        ("eq", "oslo", False),  # equality is exact
        ("neq", "oslo", True),
        ("in", ["oslo"], False),
        ("regex", "oslo", False),  # a regex is case-sensitive unless it says (?i)
        ("regex", "(?i)oslo", True),
        ("regex", "Os", False),  # it must match the whole string
        ("regex", "Os.*", True),
    ],
)
def test_case_rules_per_operator(op: str, value: Any, expected: bool) -> None:
    assert (
        evaluate(condition({"path": "payload.city", "op": op, "value": value}), scope(city="Oslo"))
        is expected
    )


# -- null, missing and types -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"path": "payload.gone", "op": "neq", "value": "x"}, True),
        ({"path": "payload.gone", "op": "eq", "value": "x"}, False),
        ({"path": "payload.gone", "op": "in", "value": ["x"]}, False),
        ({"path": "payload.none", "op": "exists"}, True),  # null is present
        ({"path": "payload.gone", "op": "exists"}, False),
        ({"path": "payload.gone", "op": "exists", "value": False}, True),
        ({"path": "payload.none", "op": "neq", "value": "x"}, True),
        ({"path": "payload.flag", "op": "eq", "value": 1}, False),  # true is not 1
        ({"path": "payload.one", "op": "eq", "value": 1.0}, True),  # numbers by value
        ({"path": "payload.one", "op": "in", "value": [True]}, False),
        ({"path": "payload.one.deeper", "op": "neq", "value": 1}, True),  # below a number
    ],
)
def test_null_and_missing_values(raw: dict[str, Any], expected: bool) -> None:
    values = scope(none=None, flag=True, one=1)
    assert evaluate(condition(raw), values) is expected


@pytest.mark.parametrize(
    "op", ["gt", "gte", "lt", "lte", "contains", "startswith", "endswith", "regex"]
)
@pytest.mark.parametrize("path", ["payload.gone", "payload.none"])
def test_null_or_missing_fails_operators_that_need_a_type(op: str, path: str) -> None:
    value = 1 if op in ("gt", "gte", "lt", "lte") else "x"
    with pytest.raises(ConditionError, match=f"operator '{op}' cannot compare {path}, a null"):
        evaluate(condition({"path": path, "op": op, "value": value}), scope(none=None))


@pytest.mark.parametrize("op", ["startswith", "endswith", "regex"])
@pytest.mark.parametrize("found", [3, True, ["x"], {"x": 1}])
def test_string_operators_need_a_string(op: str, found: Any) -> None:
    with pytest.raises(ConditionError, match=f"operator '{op}' cannot compare payload.v"):
        evaluate(condition({"path": "payload.v", "op": op, "value": "x"}), scope(v=found))


def test_same_compares_by_json_type() -> None:
    assert same({"a": [1, "x"]}, {"a": [1.0, "x"]})
    assert not same({"a": [True]}, {"a": [1]})
    assert not same({"a": 1}, {"a": 1, "b": 2})
    assert not same("1", 1)
    assert same(None, None)


# -- composition -------------------------------------------------------------------------


def test_all_and_any_nest() -> None:
    raw = {
        "all": [
            {"path": "payload.kind", "op": "startswith", "value": "VID"},
            {
                "any": [
                    {"path": "payload.tags", "op": "contains", "value": "hd"},
                    {"path": "payload.draft", "op": "neq", "value": True},
                ]
            },
        ]
    }
    cond = condition(raw)
    assert evaluate(cond, scope(kind="video", tags=["hd"], draft=True))
    assert evaluate(cond, scope(kind="video", tags=[]))
    assert not evaluate(cond, scope(kind="video", tags=[], draft=True))
    assert not evaluate(cond, scope(kind="audio", tags=["hd"]))


def test_all_stops_at_the_first_false_and_any_at_the_first_true() -> None:
    # The second condition would be a type mismatch; it is never reached.
    mismatch = {"path": "payload.n", "op": "gt", "value": 1}
    values = scope(n="text", k="x")
    assert not evaluate(
        condition({"all": [{"path": "payload.k", "op": "eq", "value": "y"}, mismatch]}), values
    )
    assert evaluate(
        condition({"any": [{"path": "payload.k", "op": "eq", "value": "x"}, mismatch]}), values
    )
    with pytest.raises(ConditionError):
        evaluate(
            condition({"all": [{"path": "payload.k", "op": "eq", "value": "x"}, mismatch]}), values
        )
    with pytest.raises(ConditionError):
        evaluate(condition({"not": mismatch}), values)


def test_describe_and_as_data_spell_a_tree_out() -> None:
    cond = condition(
        {
            "any": [
                {"path": "payload.a", "op": "eq", "value": 1},
                {"not": {"path": "payload.b", "op": "exists"}},
            ]
        }
    )
    assert cond.describe() == "any(payload.a eq 1, not(payload.b exists None))"
    assert cond.as_data() == {
        "any": [
            {"path": "payload.a", "op": "eq", "value": 1},
            {"not": {"path": "payload.b", "op": "exists", "value": None}},
        ]
    }


# -- load-time checks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (
            {"path": "payload.a", "all": [{"path": "payload.b"}]},
            "pipelines[0].steps[0].if: give exactly one of path (with op and value), all,"
            " any or not; got path and all",
        ),
        (
            {"all": [{"path": "payload.b"}], "op": "gt"},
            "pipelines[0].steps[0].if: op and value belong to a path condition, not to all",
        ),
        (
            {"all": []},
            "pipelines[0].steps[0].if.all: expected a non-empty list of conditions,"
            " got an empty list",
        ),
        (
            {"any": {"path": "payload.b"}},
            "pipelines[0].steps[0].if.any: expected a non-empty list of conditions, got a mapping",
        ),
        (
            {"any": [{"path": "payload.b"}, {"path": "payload.c", "op": "like"}]},
            "pipelines[0].steps[0].if.any[1].op: unknown operator 'like'",
        ),
        (
            {"not": {"path": "payload.c", "op": "regex", "value": "[a-"}},
            "pipelines[0].steps[0].if.not: invalid regex pattern '[a-'",
        ),
        (
            {"not": {"path": "payload.c", "colour": 1}},
            "pipelines[0].steps[0].if.not.colour: unknown key",
        ),
        (
            {"path": "payload.c", "op": "startswith", "value": 1},
            "pipelines[0].steps[0].if: value must be a string for operator 'startswith'",
        ),
        (
            {"path": "payload.c", "op": "gt", "value": [1]},
            "pipelines[0].steps[0].if: value must be a number or a string for operator 'gt'",
        ),
        (
            {"path": "payload.c", "op": "in", "value": 3},
            "pipelines[0].steps[0].if: value must be a list (or a string or mapping)",
        ),
        (
            {"path": "payload.c", "op": "exists", "value": "yes"},
            "pipelines[0].steps[0].if: value must be true or false (or left out)",
        ),
        (
            {"path": "payload.c", "op": "contains"},
            "pipelines[0].steps[0].if: value is required for operator 'contains'",
        ),
    ],
)
def test_a_malformed_condition_is_a_config_error_naming_its_path(
    raw: dict[str, Any], problem: str
) -> None:
    (found,) = problems(raw)
    assert found.startswith(problem), found
