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
