"""The one cattrs converter, and how its errors become ``path: problem`` lines.

A single module-level converter means every record obeys the same rules: strict
scalar types, unknown keys are errors, ``null`` sections mean "defaults", and a
field's ``Annotated`` rule (:mod:`chamberlain.config.values`) replaces its type's
default handling. Lists and mappings get hooks of their own so a problem names the
index or key it belongs to. cattrs' detailed validation gathers errors per field;
:func:`walk` turns them into YAML paths (named as written: ``from``, not ``source``)
and :func:`render_path` spells those paths out, instead of cattrs' ``$.a['b']``.
"""

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from difflib import get_close_matches
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, TypeVar, get_args, get_origin

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn, override

from chamberlain.config.checks import POST_CHECKS
from chamberlain.config.problems import Invalid, YamlPath, describe
from chamberlain.config.sections import RENAMED
from chamberlain.config.values import NonEmpty, Rule, parse_bool, parse_int, parse_path, parse_str

_M = TypeVar("_M", Rule, NonEmpty)

converter: Final = cattrs.Converter(forbid_extra_keys=True)
_Hook = Callable[[Any, Any], Any]


class _KeyNote(str):
    """Names the mapping key an error belongs to (cattrs' note cannot tell 1 from [1])."""

    key: object

    def __new__(cls, key: object) -> "_KeyNote":
        note = super().__new__(cls, f"Structuring mapping @ key {key!r}")
        note.key = key
        return note


def _noted(exc: Exception, note: str) -> Exception:
    exc.add_note(note)
    return exc


def _metadata(tp: Any, kind: type[_M]) -> _M | None:
    if get_origin(tp) is not Annotated:
        return None
    return next((meta for meta in tp.__metadata__ if isinstance(meta, kind)), None)


def _make_rule_hook(tp: Any) -> _Hook:
    rule = _metadata(tp, Rule)
    assert rule is not None
    parse = rule.parse
    return lambda value, _: parse(value)


def _make_non_empty_hook(tp: Any) -> _Hook:
    non_empty = _metadata(tp, NonEmpty)
    assert non_empty is not None
    message = non_empty.message
    inner_type = get_args(tp)[0]  # the annotated type, without its metadata
    inner = converter.get_structure_hook(inner_type)

    def structure(value: object, _: object) -> Any:
        result = inner(value, inner_type)
        if not result:
            raise Invalid(message)
        return result

    return structure


def _is_attrs_class(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp)


def _make_attrs_hook(cl: type) -> _Hook:
    renamed = {attr: override(rename=key) for attr, key in RENAMED.get(cl, {}).items()}
    inner: _Hook = make_dict_structure_fn(cl, converter, **renamed)  # type: ignore[arg-type]
    check = POST_CHECKS.get(cl)

    def structure(value: object, _: object) -> Any:
        if value is None:  # an empty section (`service:`) means "all defaults"
            value = {}
        if not isinstance(value, Mapping):
            raise Invalid(f"expected a mapping, got {describe(value)}")
        result = inner(value, cl)
        if check is not None:
            check(result)
        return result

    return structure


def _is_homogeneous_tuple(tp: Any) -> bool:
    args = get_args(tp)
    return get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis


def _make_tuple_hook(tp: Any) -> _Hook:
    item_type = get_args(tp)[0]
    item_hook = converter.get_structure_hook(item_type)

    def structure(value: object, _: object) -> tuple[Any, ...]:
        if value is None:
            return ()
        # Iterating a string or mapping "works" in Python and would give nonsense.
        if not isinstance(value, list | tuple):
            raise Invalid(f"expected a list, got {describe(value)}")
        items: list[Any] = []
        errors: list[Exception] = []
        for index, raw in enumerate(value):
            try:
                items.append(item_hook(raw, item_type))
            except Exception as exc:
                note = IterableValidationNote(f"Structuring item @ index {index}", index, item_type)
                errors.append(_noted(exc, note))
        if errors:
            raise IterableValidationError("invalid list", errors, tp)
        return tuple(items)

    return structure


def _is_mapping(tp: Any) -> bool:
    return get_origin(tp) is Mapping


def _make_mapping_hook(tp: Any) -> _Hook:
    key_type, value_type = get_args(tp)
    key_hook = converter.get_structure_hook(key_type)
    value_hook = converter.get_structure_hook(value_type)

    def structure(value: object, _: object) -> Mapping[Any, Any]:
        if value is None:
            return MappingProxyType({})
        if not isinstance(value, Mapping):
            raise Invalid(f"expected a mapping, got {describe(value)}")
        result: dict[Any, Any] = {}
        errors: list[Exception] = []
        for raw_key, raw_value in value.items():
            # Check the key and the value both, so a bad name does not hide a bad body.
            errors_before = len(errors)
            try:
                key = key_hook(raw_key, key_type)
            except Exception as exc:
                errors.append(_noted(exc, _KeyNote(raw_key)))
            try:
                item = value_hook(raw_value, value_type)
            except Exception as exc:
                errors.append(_noted(exc, _KeyNote(raw_key)))
            if len(errors) == errors_before:
                result[key] = item
        if errors:
            raise IterableValidationError("invalid mapping", errors, tp)
        return MappingProxyType(result)

    return structure


converter.register_structure_hook(str, lambda value, _: parse_str(value))
converter.register_structure_hook(int, lambda value, _: parse_int(value))
converter.register_structure_hook(bool, lambda value, _: parse_bool(value))
converter.register_structure_hook(Path, lambda value, _: parse_path(value))
converter.register_structure_hook_factory(_is_attrs_class, _make_attrs_hook)
converter.register_structure_hook_factory(_is_homogeneous_tuple, _make_tuple_hook)
converter.register_structure_hook_factory(_is_mapping, _make_mapping_hook)
converter.register_structure_hook_factory(
    lambda tp: _metadata(tp, Rule) is not None, _make_rule_hook
)
converter.register_structure_hook_factory(
    lambda tp: _metadata(tp, NonEmpty) is not None, _make_non_empty_hook
)


def render_path(path: YamlPath) -> str:
    """A YAML path as messages show it: ``plugins.echo.retry``, ``routes[0].to``."""
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", segment):
            text += f".{segment}" if text else segment
        else:
            text += f"[{segment!r}]"
    return text


def _note_segments(exc: BaseException) -> YamlPath:
    for note in getattr(exc, "__notes__", ()):
        if isinstance(note, AttributeValidationNote):
            return (note.name,)
        if isinstance(note, _KeyNote):
            return (str(note.key),)
        if isinstance(note, IterableValidationNote):
            return (note.index,) if isinstance(note.index, int) else (str(note.index),)
    return ()


def _unknown_key_message(key: object, allowed: Sequence[str]) -> str:
    close = get_close_matches(str(key), allowed, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return f"unknown key (expected one of: {', '.join(sorted(allowed))})"


def walk(exc: BaseException, path: YamlPath) -> Iterator[tuple[YamlPath, str, bool]]:
    """Turn a (possibly nested) structuring error into ``(path, problem, about_value)``.

    ``about_value`` is False for problems with the key itself (unknown keys), which
    stand whatever the value holds.
    """
    if isinstance(exc, BaseValidationError):
        # Name keys as written in YAML (``from``), not as the attribute (``source``).
        cl = getattr(exc, "cl", None)
        renamed = RENAMED.get(cl, {}) if isinstance(cl, type) else {}
        for sub in exc.exceptions:
            segments = tuple(
                renamed.get(s, s) if isinstance(s, str) else s for s in _note_segments(sub)
            )
            yield from walk(sub, (*path, *segments))
    elif isinstance(exc, ForbiddenExtraKeysError):
        renamed = RENAMED.get(exc.cl, {})
        allowed = [renamed.get(field.name, field.name) for field in attrs.fields(exc.cl)]
        for key in sorted(exc.extra_fields, key=str):
            yield (*path, str(key)), _unknown_key_message(key, allowed), False
    elif isinstance(exc, KeyError):
        yield path, "required key is missing", False
    elif isinstance(exc, Invalid):
        yield (*path, *exc.at), str(exc), True
    else:
        yield path, str(exc) or type(exc).__name__, True
