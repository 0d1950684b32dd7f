"""What a job's request carries, built by Ductile's rules so its plugins run unchanged.

Ductile plugins read ``event.payload`` in ``handle`` and the ``ductile_*`` keys of
``context``; they rely on the gateway having merged the pipeline context into the
event, applied the step's ``with:`` on top, and claimed baggage as nested maps.
This module holds those rules as pure functions. The planner uses them when it
creates a job (baggage, the ``ductile`` control block, ``with:``), and the Runner
when it encodes the request (the derived context keys, the merge into the event),
so the two can never disagree about what a step sees.

The rules follow Ductile's dispatcher (``internal/dispatch``: ``loadRequestContext``,
``executeJob``, ``routeEventsWithOptions``), its baggage claims
(``internal/baggage``) and its context store's accretion (``internal/state``);
docs/DUCTILE.md lists each one.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

__all__ = [
    "CONTROL_NAMESPACE",
    "BaggageConflict",
    "accrete",
    "control",
    "handle_event",
    "next_depth",
    "request_context",
    "request_payload",
    "set_path",
    "with_control",
]

#: The reserved baggage namespace holding a pipeline run's control values
#: (``pipeline_instance_id``, ``route_depth``, ``route_max_depth``), as in Ductile.
CONTROL_NAMESPACE = "ductile"
_INSTANCE = "pipeline_instance_id"
_DEPTH = "route_depth"
_MAX_DEPTH = "route_max_depth"


class BaggageConflict(ValueError):
    """A step claims a baggage path an earlier step already set to another value.

    Ductile treats claimed baggage as immutable for the rest of a pipeline run, so a
    later step cannot silently rewrite what an earlier one recorded.
    """


def control(context: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``ductile`` control block of an accumulated context (empty when absent)."""
    block = context.get(CONTROL_NAMESPACE)
    return block if isinstance(block, Mapping) else {}


def next_depth(context: Mapping[str, Any]) -> int:
    """The ``route_depth`` one hop past a job of ``context``: 1 when it has none."""
    depth = control(context).get(_DEPTH)
    return depth + 1 if isinstance(depth, int) and not isinstance(depth, bool) else 1


def with_control(
    context: Mapping[str, Any],
    *,
    instance_id: str | None = None,
    depth: int | None = None,
    max_depth: int | None = None,
) -> dict[str, Any]:
    """``context`` with the given control values set in its ``ductile`` block.

    A zero or absent ``max_depth`` is not recorded: Ductile reads it as "no limit".
    """
    block = dict(control(context))
    if instance_id is not None:
        block[_INSTANCE] = instance_id
    if depth is not None:
        block[_DEPTH] = depth
    if max_depth:
        block[_MAX_DEPTH] = max_depth
    return {**context, CONTROL_NAMESPACE: block}


def request_context(
    *, plugin: str, pipeline: str | None, step_id: str | None, context: Mapping[str, Any]
) -> dict[str, Any]:
    """The request's ``context``: the accumulated context and the keys derived from it.

    As Ductile's ``loadRequestContext``: ``ductile_plugin`` first (baggage may
    shadow it), then the accumulated values, then ``ductile_pipeline``,
    ``ductile_step_id`` and, from the control block, ``ductile_pipeline_instance_id``,
    ``ductile_route_depth`` and ``ductile_route_max_depth`` when they are set.
    """
    out: dict[str, Any] = {"ductile_plugin": plugin, **copy.deepcopy(dict(context))}
    if pipeline:
        out["ductile_pipeline"] = pipeline
    if step_id:
        out["ductile_step_id"] = step_id
    block = control(context)
    instance = block.get(_INSTANCE)
    if isinstance(instance, str) and instance.strip():
        out["ductile_pipeline_instance_id"] = instance.strip()
    for key, name in ((_DEPTH, "ductile_route_depth"), (_MAX_DEPTH, "ductile_route_max_depth")):
        value = block.get(key)
        if _positive_int(value):
            out[name] = value
    return out


def handle_event(
    event: Mapping[str, Any], payload: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """The request's ``event`` for a ``handle`` job.

    ``event`` is the event the job was created for and ``payload`` its payload once
    the step's ``with:`` was applied. Every key of the request ``context`` the
    payload lacks is merged in ("immediate event data wins"), so a plugin finds
    the pipeline's baggage in ``event.payload`` as in Ductile.
    """
    merged = dict(payload)
    for key, value in context.items():
        merged.setdefault(key, value)
    return {**event, "payload": merged}


def request_payload(
    command: str, payload: Mapping[str, Any], event: Mapping[str, Any] | None
) -> Mapping[str, Any] | None:
    """The request's ``payload``, or None to leave the key out.

    Ductile stores a ``handle`` job's event as the job's payload and sends that
    back as ``payload``; other commands get the payload they were given. An empty
    payload is left out, as Ductile's ``omitempty`` does.
    """
    if command == "handle" and event is not None:
        return event
    return payload or None


def set_path(target: dict[str, Any], path: str, value: Any) -> None:
    """Write ``value`` at the dotted ``path`` of ``target``, making maps on the way.

    Raises :class:`BaggageConflict` when a segment on the way is already a value
    that is not a map.
    """
    parts = path.split(".")
    current = target
    for i, part in enumerate(parts[:-1]):
        child = current.setdefault(part, {})
        if not isinstance(child, dict):
            prefix = ".".join(parts[: i + 1])
            raise BaggageConflict(
                f"baggage path {path!r} runs through {prefix!r}, which is a value"
            )
        current = child
    current[parts[-1]] = copy.deepcopy(value)


def accrete(base: Mapping[str, Any], claims: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with the baggage ``claims`` merged in, deeply and without rewriting.

    Maps merge key by key; a value already present may be claimed again only with
    an equal value. The one exception is the run's ``ductile.route_depth``, which
    every hop advances. Raises :class:`BaggageConflict` naming the path otherwise.
    """
    out = copy.deepcopy(dict(base))
    _accrete_into(out, claims, "")
    return out


def _accrete_into(target: dict[str, Any], claims: Mapping[str, Any], prefix: str) -> None:
    for key, value in claims.items():
        path = f"{prefix}{key}"
        if key not in target or target[key] == value or path == f"{CONTROL_NAMESPACE}.{_DEPTH}":
            target[key] = copy.deepcopy(value)
        elif isinstance(target[key], dict) and isinstance(value, Mapping):
            _accrete_into(target[key], value, f"{path}.")
        else:
            raise BaggageConflict(
                f"baggage {path!r} is already {target[key]!r} in this pipeline run and"
                f" cannot become {value!r}"
            )


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
