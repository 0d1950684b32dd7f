"""The fast JSON encoder says what the standard library said, in every corner."""

from __future__ import annotations

import json
import math
from types import MappingProxyType
from typing import Any

import pytest

from chamberlain import jsoncodec

VALUES: list[Any] = [
    {},
    [],
    {"payload": {"k": "v", "n": 1, "f": 1.5, "t": True, "z": None, "l": [1, "2", [3]]}},
    {"unicode": "héllo ✓ 日本", "escapes": 'quote " backslash \\ newline \n tab \t \x01'},
    {"ints": [0, -1, 2**63 - 1, -(2**63)], "floats": [0.1, -2.5e-8, 1e300]},
    {"nested": [[[[{"deep": [1]}]]]]},
    {"bigint": 2**64, "negative": -(2**70)},
    {1: "int key", None: "none key", 2.5: "float key"},
    ("a", "tuple", 1),
    "just a string",
    12345678901234567890123,
]


@pytest.mark.parametrize("value", VALUES)
def test_the_value_is_what_the_standard_library_wrote(value: Any) -> None:
    expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = jsoncodec.dumps(value)
    assert jsoncodec.dumps_bytes(value) == text.encode("utf-8")
    # The same JSON value, integers of any size and floats to the last bit.
    assert json.loads(text) == json.loads(expected)
    # Byte for byte too, but for how an exponent is spelt (1e-08 or 1e-8).
    if "e-0" not in expected:
        assert text == expected


def test_default_converts_what_json_has_no_type_for() -> None:
    value = {"state": MappingProxyType({"a": 1})}
    assert jsoncodec.dumps(value, default=dict) == '{"state":{"a":1}}'


def test_what_nothing_converts_is_the_usual_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsoncodec.dumps({"x": object()})

    def refuse(value: object) -> Any:
        raise TypeError(f"no {type(value).__name__}")

    with pytest.raises(TypeError, match="no object"):
        jsoncodec.dumps([object()], default=refuse)


def test_a_cycle_is_the_usual_value_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match=r"[Cc]ircular"):
        jsoncodec.dumps(loop)


def test_nan_and_infinity_become_null_which_json_parsers_accept() -> None:
    text = jsoncodec.dumps({"nan": math.nan, "inf": math.inf, "ninf": -math.inf})
    assert text == '{"nan":null,"inf":null,"ninf":null}'
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON {c}")) is not None


# -- loads: the rules JSON from outside follows ------------------------------------------


def test_loads_reads_what_dumps_writes() -> None:
    for value in VALUES[:7]:
        assert jsoncodec.loads(jsoncodec.dumps(value), max_depth=64) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": "\\ud800"}', "a lone surrogate (U+D800) at a is not valid Unicode"),
        ('{"a": {"b": ["x", "\\uDFFF"]}}', "a lone surrogate (U+DFFF) at a.b[1]"),
        ('{"a b": {"\\udc00": 1}}', 'in a key of ["a b"]'),
        ('{"\\ud800": 1}', "in a key of the top-level object"),
        ('"\\ud83d"', "a lone surrogate (U+D83D) at the top level"),
        ('"\\ude00\\ud83d"', "(U+DE00)"),  # a pair in the wrong order is two lone ones
        ('{"n": 1e400}', "number at n is out of range"),
        ("[-1e400]", "number at [0] is out of range"),
        ("1e400", "number at the top level is out of range"),
        ('{"n": NaN}', "NaN is not valid JSON"),
        ('{"n": Infinity}', "Infinity is not valid JSON"),
        ('{"a": 1, "b": {"c": 1, "c": 2}}', 'duplicate key "c" in an object'),
        ("[" + "1" * 4301 + "]", "integer too long: more than 4300 digits"),
        ("[" * 65 + "]" * 65, "nested more than 64 levels deep"),
        ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep"),
    ],
)
def test_loads_refuses_what_could_not_be_kept_and_says_where(text: str, message: str) -> None:
    with pytest.raises(jsoncodec.JsonRefused) as refused:
        jsoncodec.loads(text, max_depth=64)
    assert message in str(refused.value)
    # A refusal can always be sent back as JSON: it never quotes the surrogate itself
    # (encoding would raise).
    assert str(refused.value).encode("utf-8")
    assert "set_int_max_str_digits" not in str(refused.value)


def test_loads_counts_arrays_and_objects_alike_for_depth() -> None:
    assert jsoncodec.loads('[[{"a": 1}]]', max_depth=3) == [[{"a": 1}]]
    with pytest.raises(jsoncodec.JsonRefused):
        jsoncodec.loads('[[{"a": []}]]', max_depth=3)
    assert jsoncodec.loads('"flat"', max_depth=0) == "flat"


def test_loads_accepts_what_is_valid_unicode_and_in_range() -> None:
    assert jsoncodec.loads('{"face": "\\ud83d\\ude00", "back": "\\\\ud800"}', max_depth=2) == {
        "face": "\U0001f600",
        "back": "\\ud800",  # an escaped backslash, then text
    }
    assert jsoncodec.loads("[" + "7" * 4300 + ", 1e308, 1e-400]", max_depth=1) == [
        int("7" * 4300),
        1e308,
        0.0,
    ]


def test_loads_may_let_duplicates_and_non_finite_numbers_through() -> None:
    value = jsoncodec.loads(
        '{"a": 1, "a": 2, "n": NaN, "i": 1e400}',
        max_depth=1,
        unique_keys=False,
        finite_numbers=False,
    )
    assert value["a"] == 2
    assert math.isnan(value["n"])
    assert value["i"] == math.inf


def test_loads_leaves_text_that_is_not_json_to_the_parser() -> None:
    with pytest.raises(json.JSONDecodeError):
        jsoncodec.loads('{"a": ', max_depth=64)
