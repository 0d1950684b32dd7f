"""Pipeline planning and its start-up checks, called directly: no actors, no store.

:meth:`Routing.plan` answers, for one succeeded job, which events to store and which
jobs to create; :meth:`Routing.start` does the same for a pipeline started from
outside.  Ids come from an injected counter, so every id in a plan is predictable.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from fakes import EPOCH, fake_plugin, stored_job

from chamberlain.config import Config, ConfigError, parse_config
from chamberlain.plugins.binding import BoundPlugin, bind_plugins
from chamberlain.plugins.registry import Discovery
from chamberlain.records import Job, JobStatus, NewJob, RoutePlan, StoredEvent, rfc3339
from chamberlain.routing.planner import (
    MAX_DEPTH,
    Routing,
    build_routing,
    routing_error,
    split_target,
)

NOW = EPOCH + 100.0


def counter() -> Callable[[], str]:
    """``id1``, ``id2``, ... in the order the planner asks for them."""
    numbers = itertools.count(1)
    return lambda: f"id{next(numbers)}"


def loaded(
    tmp_path: Path, config: dict[str, Any], plugins: tuple[str, ...]
) -> tuple[Config, dict[str, BoundPlugin]]:
    """The parsed config and fake plugins called ``plugins``, bound to it."""
    cfg = parse_config(config, base_dir=tmp_path)
    found = {n: fake_plugin(tmp_path, n) for n in plugins}
    return cfg, bind_plugins(cfg, Discovery(plugins=found, skipped=()))


def compile_routing(
    tmp_path: Path, config: dict[str, Any], plugins: tuple[str, ...] = ("a", "b", "c")
) -> Routing:
    """The config's routes and pipelines, checked against fake plugins ``plugins``."""
    cfg, bound = loaded(tmp_path, config, plugins)
    return attrs.evolve(build_routing(cfg.routes, cfg.pipelines, bound), new_id=counter())


def problems_of(
    tmp_path: Path, config: dict[str, Any], plugins: tuple[str, ...] = ("a", "b", "c")
) -> list[str]:
    with pytest.raises(ConfigError) as info:
        compile_routing(tmp_path, config, plugins)
    return list(info.value.problems)


def succeeded(*, events: list[Any] | None = None, result: Any = None, **changes: Any) -> Job:
    """A job that succeeded with a plugin response of ``events`` and ``result``."""
    response: dict[str, Any] = {"status": "ok", "result": result}
    if events is not None:
        response["events"] = events
    defaults: dict[str, Any] = {
        "id": "job",
        "plugin": "a",
        "command": "poll",
        "status": JobStatus.SUCCEEDED,
        "completed_at": NOW,
        "result": response,
    }
    return stored_job(**{**defaults, **changes})


def pipeline(name: str, on: str, *steps: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "on": on, "steps": list(steps), **extra}


def by_step(plan: RoutePlan) -> dict[str | None, list[NewJob]]:
    out: dict[str | None, list[NewJob]] = {}
    for job in plan.jobs:
        out.setdefault(job.step_id, []).append(job)
    return out


# -- events ------------------------------------------------------------------------------


def test_emitted_events_become_stored_events_with_injected_ids(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, {})
    job = succeeded(
        events=[
            {"type": "a.ping", "payload": {"x": 1}, "dedupe_key": "k1"},
            {"type": "a.bare"},
            {"type": "a.odd", "payload": ["not", "a", "mapping"], "dedupe_key": 5},
        ]
    )
    plan = routing.plan(job, NOW)
    assert plan.events == (
        StoredEvent(
            event_id="id1",
            job_id="job",
            type="a.ping",
            source="a",
            payload={"x": 1},
            dedupe_key="k1",
            created_at=NOW,
        ),
        StoredEvent(
            event_id="id2",
            job_id="job",
            type="a.bare",
            source="a",
            payload={},
            dedupe_key=None,
            created_at=NOW,
        ),
        StoredEvent(
            event_id="id3",
            job_id="job",
            type="a.odd",
            source="a",
            payload={},
            dedupe_key=None,
            created_at=NOW,
        ),
    )
    # Nothing is configured: the events are kept for the record and go no further.
    assert plan.jobs == ()
    assert not routing.active


def test_a_job_without_events_plans_nothing(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path, {"routes": [{"from": "a", "event_type": "a.ping", "to": "b"}]}
    )
    assert routing.plan(succeeded(result={"n": 1}), NOW) == RoutePlan()
    assert routing.plan(succeeded(result="text", events=[]), NOW) == RoutePlan()


# -- routes ------------------------------------------------------------------------------


ROUTES = {
    "plugins": {"b": {"retry": {"max_attempts": 7}}},
    "routes": [
        {"from": "a", "event_type": "a.ping", "to": "b"},
        {"from": "a", "event_type": "a.ping", "to": "c.poll"},
        {"from": "a", "event_type": "a.other", "to": "b"},
        {"from": "b", "event_type": "a.ping", "to": "c"},
    ],
}


def test_routes_fan_out_to_every_matching_plugin(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, ROUTES)
    job = succeeded(
        events=[{"type": "a.ping", "payload": {"x": 1}}, {"type": "a.unrouted"}],
        context={"kept": True},
        depth=2,
        root_job_id="root",
    )
    plan = routing.plan(job, NOW)
    ping = plan.events[0].envelope()
    assert ping == {
        "type": "a.ping",
        "payload": {"x": 1},
        "event_id": "id1",
        "source": "a",
        "timestamp": rfc3339(NOW),
    }
    # As in Ductile, a routed event's payload names where it came from.
    routed = {"x": 1, "ductile_upstream_plugin": "a"}
    common: dict[str, Any] = {
        "payload": routed,
        # The source's context, one hop further on.
        "context": {"kept": True, "ductile": {"route_depth": 1}},
        "submitted_by": "route:a",
        "parent_job_id": "job",
        "source_event_id": "id1",
        "root_job_id": "root",
        "depth": 3,
        "pipeline": None,
        "step_id": None,
        "dedupe_key": None,
        "error": None,
    }
    assert plan.jobs == (
        NewJob(
            id="id3",
            plugin="b",
            command="handle",
            max_attempts=7,
            event={**ping, "payload": routed},
            **common,
        ),
        # Only a handle job is sent an event.
        NewJob(id="id4", plugin="c", command="poll", max_attempts=4, event=None, **common),
    )


def test_a_routed_child_of_a_root_job_has_that_job_as_its_root(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, ROUTES)
    plan = routing.plan(succeeded(events=[{"type": "a.other"}]), NOW)
    (child,) = plan.jobs
    assert (child.plugin, child.root_job_id, child.depth) == ("b", "job", 1)


def test_routes_match_the_emitting_plugin_and_the_exact_type(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, ROUTES)
    from_b = routing.plan(succeeded(plugin="b", events=[{"type": "a.ping"}]), NOW)
    assert [(j.plugin, j.command) for j in from_b.jobs] == [("c", "handle")]
    near_miss = routing.plan(succeeded(events=[{"type": "a.ping2"}, {"type": "A.PING"}]), NOW)
    assert near_miss.jobs == ()


def test_routed_jobs_carry_the_events_dedupe_key(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, ROUTES)
    plan = routing.plan(
        succeeded(
            events=[
                {"type": "a.other", "dedupe_key": "k1"},
                {"type": "a.other", "dedupe_key": "k2"},
                {"type": "a.other"},
            ]
        ),
        NOW,
    )
    assert [j.dedupe_key for j in plan.jobs] == ["k1", "k2", None]
    assert plan.jobs[0].event is not None and plan.jobs[0].event["dedupe_key"] == "k1"


# -- pipelines ---------------------------------------------------------------------------


THREE = {
    "plugins": {"c": {"retry": {"max_attempts": 2}}},
    "pipelines": [
        pipeline(
            "three",
            "a.poll",
            {
                "id": "first",
                "uses": "b",
                "with": {"n": "{payload.n}", "label": "n={payload.n}", "kind": "{event.type}"},
            },
            {"id": "second", "uses": "a.handle", "baggage": {"who": "{payload.who}"}},
            {"id": "third", "uses": "c.poll", "with": {"by": "{context.who}"}},
        )
    ],
}


def test_a_root_trigger_starts_step_one_with_each_event(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, THREE)
    job = succeeded(
        events=[
            {"type": "a.polled", "payload": {"n": 7}},
            {"type": "a.polled", "payload": {"n": 8}},
        ]
    )
    plan = routing.plan(job, NOW)
    first = by_step(plan)["first"]
    # with: adds its keys to the input's payload, as Ductile's does.
    assert [j.payload for j in first] == [
        {"n": 7, "label": "n=7", "kind": "a.polled", "ductile_upstream_plugin": "a"},
        {"n": 8, "label": "n=8", "kind": "a.polled", "ductile_upstream_plugin": "a"},
    ]
    one = first[0]
    event = plan.events[0].envelope()
    assert one == NewJob(
        id="id4",
        plugin="b",
        command="handle",
        payload={"n": 7, "label": "n=7", "kind": "a.polled", "ductile_upstream_plugin": "a"},
        event={**event, "payload": {"n": 7, "ductile_upstream_plugin": "a"}},
        # Each event starts a run of its own (instance id3, the second id5); a run's
        # depth limit is its number of steps.
        context={
            "ductile": {"pipeline_instance_id": "id3", "route_depth": 1, "route_max_depth": 3}
        },
        submitted_by="pipeline:three",
        max_attempts=4,
        parent_job_id="job",
        source_event_id="id1",
        pipeline="three",
        step_id="first",
        root_job_id="job",
        depth=1,
    )
    assert first[1].source_event_id == "id2"
    assert first[1].context["ductile"]["pipeline_instance_id"] == "id5"


def test_a_root_without_events_hands_its_result_to_step_one(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, THREE)
    plan = routing.plan(succeeded(result={"n": 3}), NOW)
    assert plan.events == ()
    (first,) = plan.jobs
    routed = {"n": 3, "ductile_upstream_plugin": "a"}
    assert first.payload == {**routed, "label": "n=3", "kind": "a.poll.result"}
    assert first.event == {
        "type": "a.poll.result",
        "payload": routed,
        "source": "a",
        "timestamp": rfc3339(NOW),
        "event_id": "id1",
    }
    assert first.source_event_id is None  # an id, but not a stored event
    assert first.id == "id3"


@pytest.mark.parametrize("result", [[1, 2], "text", 5, None])
def test_a_result_that_is_not_an_object_is_wrapped(tmp_path: Path, result: Any) -> None:
    routing = compile_routing(
        tmp_path, {"pipelines": [pipeline("p", "a.poll", {"id": "s", "uses": "b"})]}
    )
    (step,) = routing.plan(succeeded(result=result), NOW).jobs
    assert step.payload == {"result": result, "ductile_upstream_plugin": "a"}


def test_step_n_succeeding_starts_step_n_plus_one(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, THREE)
    first = succeeded(
        id="first-job",
        plugin="b",
        command="handle",
        pipeline="three",
        step_id="first",
        root_job_id="root",
        depth=1,
        context={
            "ductile": {"pipeline_instance_id": "run", "route_depth": 1, "route_max_depth": 3}
        },
        events=[{"type": "b.done", "payload": {"who": "me", "extra": 1}, "dedupe_key": "d"}],
    )
    plan = routing.plan(first, NOW)
    (second,) = plan.jobs
    routed = {
        "who": "me",
        "extra": 1,
        "ductile_upstream_plugin": "b",
        "ductile_upstream_pipeline": "three",
        "ductile_upstream_step_id": "first",
    }
    assert second == NewJob(
        id="id2",
        plugin="a",
        command="handle",
        # no with: the input's payload as it came
        payload=routed,
        event={**plan.events[0].envelope(), "payload": routed},
        # The same run, one hop further, and the step's baggage claim.
        context={
            "ductile": {"pipeline_instance_id": "run", "route_depth": 2, "route_max_depth": 3},
            "who": "me",
        },
        submitted_by="pipeline:three",
        max_attempts=4,
        dedupe_key="d",
        parent_job_id="first-job",
        source_event_id="id1",
        pipeline="three",
        step_id="second",
        root_job_id="root",
        depth=2,
    )


def test_baggage_reaches_later_steps_and_their_with(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, THREE)
    second = succeeded(
        id="second-job",
        command="handle",
        pipeline="three",
        step_id="second",
        root_job_id="root",
        depth=2,
        context={
            "ductile": {"pipeline_instance_id": "run", "route_depth": 2, "route_max_depth": 3},
            "who": "me",
        },
        result={"ok": True},
    )
    (third,) = routing.plan(second, NOW).jobs
    assert (third.plugin, third.command, third.step_id) == ("c", "poll", "third")
    # A step without events hands on Ductile's step-succeeded event.
    assert third.payload == {
        "result": {"ok": True},
        "ductile_upstream_plugin": "a",
        "ductile_upstream_pipeline": "three",
        "ductile_upstream_step_id": "second",
        "by": "me",
    }
    assert third.context == {
        "ductile": {"pipeline_instance_id": "run", "route_depth": 3, "route_max_depth": 3},
        "who": "me",
    }
    assert third.max_attempts == 2
    assert third.event is None  # c.poll is not a handle command


def test_each_event_of_a_step_gets_its_own_next_step(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, THREE)
    first = succeeded(
        plugin="b",
        command="handle",
        pipeline="three",
        step_id="first",
        root_job_id="root",
        depth=1,
        events=[{"type": "b.done", "payload": {"who": w}} for w in ("x", "y")],
    )
    plan = routing.plan(first, NOW)
    assert [(j.step_id, j.context["who"]) for j in plan.jobs] == [("second", "x"), ("second", "y")]


def test_the_last_step_ends_the_pipeline(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, THREE)
    last = succeeded(
        plugin="c", pipeline="three", step_id="third", root_job_id="root", result={"done": 1}
    )
    assert routing.plan(last, NOW) == RoutePlan()


@pytest.mark.parametrize(("name", "step"), [("three", "gone"), ("renamed", "first")])
def test_a_step_no_longer_in_the_config_goes_no_further(
    tmp_path: Path, name: str, step: str
) -> None:
    # A job queued before a config change names a pipeline or step that is gone.
    routing = compile_routing(tmp_path, THREE)
    job = succeeded(plugin="b", command="handle", pipeline=name, step_id=step, result={})
    assert routing.plan(job, NOW).jobs == ()


def test_a_pipelines_own_step_never_restarts_it(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline("p", "a.poll", {"id": "s", "uses": "b"}, {"id": "again", "uses": "a.poll"})
        ]
    }
    # Start-up refuses this as a cycle; the planner does not rely on that check.
    assert problems_of(tmp_path, config) == [
        "pipelines[0]: pipelines start each other in a cycle: p -> p"
    ]
    cfg, plugins = loaded(tmp_path, config, ("a", "b"))
    unchecked = Routing(routes=(), pipelines=cfg.pipelines, plugins=plugins, new_id=counter())
    again = succeeded(pipeline="p", step_id="again", root_job_id="root", depth=2, result={})
    assert unchecked.plan(again, NOW) == RoutePlan()


def test_a_step_of_one_pipeline_can_start_another(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {
            "pipelines": [
                pipeline("p", "a.poll", {"id": "s", "uses": "b"}),
                pipeline("q", "b.handle", {"id": "t", "uses": "a.handle"}),
            ]
        },
    )
    p_step = succeeded(
        plugin="b",
        command="handle",
        pipeline="p",
        step_id="s",
        root_job_id="r",
        context={"ductile": {"pipeline_instance_id": "p-run", "route_depth": 1}, "bag": 1},
        result={},
    )
    (q_step,) = routing.plan(p_step, NOW).jobs
    assert (q_step.pipeline, q_step.step_id, q_step.root_job_id) == ("q", "t", "r")
    # A run of its own, one hop past p's step: p's baggage stays behind, as in Ductile.
    assert q_step.context == {
        "ductile": {"pipeline_instance_id": "id2", "route_depth": 2, "route_max_depth": 1}
    }


def test_an_event_of_a_pipelines_own_on_type_does_not_restart_it(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path, {"pipelines": [pipeline("p", "loop.event", {"id": "s", "uses": "b"})]}
    )
    step = succeeded(
        plugin="b",
        command="handle",
        pipeline="p",
        step_id="s",
        root_job_id="r",
        events=[{"type": "loop.event"}],
    )
    assert routing.plan(step, NOW).jobs == ()


def test_an_event_type_starts_a_pipeline_with_a_fresh_context(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {"pipelines": [pipeline("on_event", "weather.changed", {"id": "s", "uses": "c"})]},
    )
    job = succeeded(
        events=[{"type": "weather.changed", "payload": {"c": 1}}, {"type": "noise"}],
        context={"leak": "no"},
        root_job_id="root",
        depth=4,
    )
    plan = routing.plan(job, NOW)
    (step,) = plan.jobs
    assert step.payload == {"c": 1, "ductile_upstream_plugin": "a"}
    assert step.context == {
        "ductile": {"pipeline_instance_id": "id3", "route_depth": 1, "route_max_depth": 1}
    }
    assert (step.parent_job_id, step.root_job_id, step.depth) == ("job", "root", 5)
    assert step.source_event_id == plan.events[0].event_id


def test_a_trigger_that_emits_its_own_on_type_starts_the_pipeline_once(tmp_path: Path) -> None:
    # The worked example of docs/PIPELINES.md: echo.poll emits an echo.poll event.
    routing = compile_routing(
        tmp_path, {"pipelines": [pipeline("hello", "a.poll", {"id": "greet", "uses": "b"})]}
    )
    plan = routing.plan(succeeded(events=[{"type": "a.poll", "payload": {"m": 1}}]), NOW)
    assert [(j.step_id, j.payload) for j in plan.jobs] == [
        ("greet", {"m": 1, "ductile_upstream_plugin": "a"})
    ]


def test_routes_and_pipelines_both_act_on_one_event(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {
            "routes": [{"from": "a", "event_type": "a.ping", "to": "b"}],
            "pipelines": [pipeline("p", "a.ping", {"id": "s", "uses": "c"})],
        },
    )
    plan = routing.plan(succeeded(events=[{"type": "a.ping", "dedupe_key": "k"}]), NOW)
    assert [(j.plugin, j.pipeline, j.dedupe_key) for j in plan.jobs] == [
        ("b", None, "k"),
        ("c", "p", "k"),
    ]


# -- if: and with: -----------------------------------------------------------------------


GATED = {
    "pipelines": [
        pipeline(
            "gated",
            "a.poll",
            {"id": "big", "uses": "b", "if": {"path": "payload.n", "op": "gt", "value": 10}},
            {"id": "named", "uses": "b", "if": {"path": "payload.name", "op": "exists"}},
            {"id": "always", "uses": "c"},
        )
    ]
}


def test_a_false_if_skips_the_step_with_a_note(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, GATED)
    plan = routing.plan(succeeded(events=[{"type": "t", "payload": {"n": 3}}]), NOW)
    (always,) = plan.jobs
    assert always.step_id == "always"
    # the same input the skipped steps had
    assert always.payload == {"n": 3, "ductile_upstream_plugin": "a"}
    assert always.parent_job_id == "job"
    assert always.source_event_id == "id1"
    assert [e.type for e in plan.events[:1]] == ["t"]
    notes = list(plan.events[1:])  # (id2 names the run)
    assert notes == [
        StoredEvent(
            event_id="id3",
            job_id="job",
            type="pipeline.step_skipped",
            source="chamberlain",
            payload={
                "pipeline": "gated",
                "step_id": "big",
                "reason": "if: payload.n gt 10 is false",
            },
            dedupe_key=None,
            created_at=NOW,
        ),
        StoredEvent(
            event_id="id4",
            job_id="job",
            type="pipeline.step_skipped",
            source="chamberlain",
            payload={
                "pipeline": "gated",
                "step_id": "named",
                "reason": "if: payload.name exists None is false",
            },
            dedupe_key=None,
            created_at=NOW,
        ),
    ]


def test_a_true_if_runs_the_step(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, GATED)
    plan = routing.plan(succeeded(events=[{"type": "t", "payload": {"n": 11}}]), NOW)
    assert [j.step_id for j in plan.jobs] == ["big"]
    assert [e.type for e in plan.events] == ["t"]


def test_a_false_if_after_a_step_skips_to_the_one_after(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, GATED)
    big = succeeded(
        plugin="b",
        command="handle",
        pipeline="gated",
        step_id="big",
        root_job_id="root",
        depth=1,
        result={"n": 11},
    )
    plan = routing.plan(big, NOW)
    assert [j.step_id for j in plan.jobs] == ["always"]
    (note,) = plan.events
    assert note.payload["step_id"] == "named" and note.job_id == big.id


def test_when_every_remaining_step_is_skipped_only_notes_remain(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "p",
                "a.poll",
                {"id": "s", "uses": "b", "if": {"path": "payload.go", "op": "eq", "value": True}},
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    plan = routing.plan(succeeded(result={"go": False}), NOW)
    assert plan.jobs == ()
    assert [(e.type, e.payload["step_id"]) for e in plan.events] == [("pipeline.step_skipped", "s")]


def test_with_renders_from_the_previous_result(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "p",
                "a.poll",
                {
                    "id": "s",
                    "uses": "b",
                    "with": {
                        "total": "{payload.total}",
                        "line": "total {payload.total} from {event.source}",
                        "items": ["{payload.items.0}", {"deep": "{payload.items}"}],
                        "fixed": 1,
                    },
                },
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    (step,) = routing.plan(succeeded(result={"total": 42, "items": ["x", "y"]}), NOW).jobs
    assert step.payload == {
        "total": 42,
        "line": "total 42 from a",
        "items": ["x", {"deep": ["x", "y"]}],
        "fixed": 1,
        # with: adds to the input's payload (Ductile's rule), it does not replace it
        "ductile_upstream_plugin": "a",
    }
    assert step.error is None


def test_a_missing_with_path_makes_a_failed_job_naming_it(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline("p", "a.poll", {"id": "s", "uses": "b", "with": {"city": "{payload.city}"}})
        ]
    }
    routing = compile_routing(tmp_path, config)
    (step,) = routing.plan(succeeded(result={"town": "x"}), NOW).jobs
    assert step.error == "pipeline p step s: with: {payload.city}: the input has no payload.city"
    assert step.payload == {}
    assert (step.pipeline, step.step_id, step.parent_job_id) == ("p", "s", "job")


def test_an_if_comparing_the_wrong_types_makes_a_failed_job_naming_it(tmp_path: Path) -> None:
    # As in Ductile, a type mismatch fails the step instead of skipping it.
    config = {
        "pipelines": [
            pipeline(
                "p",
                "a.poll",
                {"id": "s", "uses": "b", "if": {"path": "payload.n", "op": "gt", "value": 1}},
                {"id": "t", "uses": "c"},
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    plan = routing.plan(succeeded(result={"n": "3"}), NOW)
    (step,) = plan.jobs
    assert step.error == (
        "pipeline p step s: if: operator 'gt' cannot compare payload.n, a string, with 1, a number"
    )
    assert (step.pipeline, step.step_id, step.parent_job_id) == ("p", "s", "job")
    assert step.payload == {}
    assert plan.events == ()  # not a skip
    (fine,) = routing.plan(succeeded(result={"n": 3}), NOW).jobs
    assert (fine.step_id, fine.error) == ("s", None)


def test_a_false_composite_if_skips_the_step_spelling_the_tree_out(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "p",
                "a.poll",
                {
                    "id": "s",
                    "uses": "b",
                    "if": {
                        "any": [
                            {"path": "payload.kind", "op": "startswith", "value": "VID"},
                            {"not": {"path": "payload.kind", "op": "neq", "value": "audio"}},
                        ]
                    },
                },
                {"id": "t", "uses": "c"},
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    plan = routing.plan(succeeded(result={"kind": "text"}), NOW)
    assert [j.step_id for j in plan.jobs] == ["t"]
    (note,) = plan.events
    assert note.payload["reason"] == (
        "if: any(payload.kind startswith 'VID', not(payload.kind neq 'audio')) is false"
    )
    for kind in ("Video", "audio"):
        (ran,) = routing.plan(succeeded(result={"kind": kind}), NOW).jobs
        assert ran.step_id == "s"


TRIGGER_GATES = {
    "pipelines": [
        pipeline(
            "for-admin",
            "work.ready",
            {"id": "s", "uses": "b"},
            **{"if": {"path": "context.role", "op": "eq", "value": "admin"}},
        ),
        pipeline("from-a", "work.ready", {"id": "s", "uses": "b"}, from_plugin="a"),
        pipeline("from-c", "work.ready", {"id": "s", "uses": "b"}, from_plugin="c"),
        pipeline(
            "big-polls",
            "a.poll",
            {"id": "s", "uses": "c"},
            **{"if": {"path": "payload.n", "op": "gt", "value": 10}},
        ),
    ]
}


def test_a_pipeline_level_if_gates_its_start_on_input_and_context(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, TRIGGER_GATES)
    event = {"type": "work.ready", "payload": {"n": 1}}
    admin = routing.plan(succeeded(events=[event], context={"role": "admin"}), NOW)
    assert sorted(j.pipeline or "" for j in admin.jobs) == ["for-admin", "from-a"]
    guest = routing.plan(succeeded(events=[event], context={"role": "guest"}), NOW)
    assert [j.pipeline for j in guest.jobs] == ["from-a"]
    # A pipeline rooted at a plugin.command is gated the same way.
    assert [j.pipeline for j in routing.plan(succeeded(result={"n": 11}), NOW).jobs] == [
        "big-polls"
    ]
    assert routing.plan(succeeded(result={"n": 3}), NOW).jobs == ()


def test_from_plugin_starts_a_pipeline_only_from_that_plugins_jobs(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, TRIGGER_GATES)
    event = {"type": "work.ready", "payload": {}}
    from_c = routing.plan(succeeded(plugin="c", command="handle", events=[event]), NOW)
    assert [j.pipeline for j in from_c.jobs] == ["from-c"]


def test_a_pipeline_level_if_that_cannot_be_evaluated_leaves_a_routing_error(
    tmp_path: Path,
) -> None:
    routing = compile_routing(tmp_path, TRIGGER_GATES)
    plan = routing.plan(succeeded(result={"n": "many"}), NOW)
    assert plan.jobs == ()
    (note,) = plan.events
    assert (note.type, note.job_id, note.source) == ("routing.error", "job", "chamberlain")
    assert note.payload == {
        "pipeline": "big-polls",
        "error": "pipeline big-polls: if: operator 'gt' cannot compare payload.n,"
        " a string, with 10, a number",
    }


def test_trigger_gates_are_checked_at_start_up(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "p",
                "t",
                {"id": "s", "uses": "b"},
                from_plugin="nope",
                **{"if": {"all": [{"path": "state.x", "op": "exists"}]}},
            )
        ]
    }
    assert problems_of(tmp_path, config) == [
        f"pipelines[0].if.all[0].path: bad path 'state.x': {BAD_PATH}",
        "pipelines[0].from_plugin: no loaded plugin named 'nope'",
    ]


# -- input schemas ------------------------------------------------------------------------

SEAT_SCHEMA = {
    "type": "object",
    "properties": {"seats": {"type": "integer"}},
    "required": ["seats"],
}


def schema_routing(tmp_path: Path, config: dict[str, Any]) -> Routing:
    """Routing over plugins a and c, and b whose ``handle`` requires an integer ``seats``."""
    cfg = parse_config(config, base_dir=tmp_path)
    found = {n: fake_plugin(tmp_path, n) for n in ("a", "c")}
    found["b"] = fake_plugin(tmp_path, "b", handle_schema=SEAT_SCHEMA)
    bound = bind_plugins(cfg, Discovery(plugins=found, skipped=()))
    return attrs.evolve(build_routing(cfg.routes, cfg.pipelines, bound), new_id=counter())


def test_a_step_payload_breaking_the_input_schema_makes_a_failed_job(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline("p", "a.poll", {"id": "s", "uses": "b", "with": {"seats": "{payload.n}"}})
        ]
    }
    routing = schema_routing(tmp_path, config)
    (good,) = routing.plan(succeeded(result={"n": 3}), NOW).jobs
    assert good.error is None and good.payload["seats"] == 3
    (bad,) = routing.plan(succeeded(result={"n": "three"}), NOW).jobs
    assert bad.error == (
        "pipeline p step s: b/handle: input_schema refuses the payload:"
        " payload.seats: 'three' is not of type 'integer'"
    )
    # What the step would have been given is kept, for the record and for a retry.
    assert bad.payload["seats"] == "three"


def test_a_routed_event_breaking_the_input_schema_makes_a_failed_job(tmp_path: Path) -> None:
    routing = schema_routing(
        tmp_path, {"routes": [{"from": "a", "event_type": "a.ping", "to": "b"}]}
    )
    (bad,) = routing.plan(succeeded(events=[{"type": "a.ping", "payload": {}}]), NOW).jobs
    assert bad.error == (
        "b/handle: input_schema refuses the payload: payload: 'seats' is a required property"
    )
    (good,) = routing.plan(
        succeeded(events=[{"type": "a.ping", "payload": {"seats": 2}}]), NOW
    ).jobs
    assert good.error is None


def test_a_schedule_payload_breaking_the_input_schema_is_a_config_error(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "plugins": {
                "b": {
                    "schedules": [
                        {"id": "fine", "every": "1h", "command": "handle", "payload": {"seats": 1}},
                        {
                            "id": "bad",
                            "every": "1h",
                            "command": "handle",
                            "payload": {"seats": "x"},
                        },
                    ]
                }
            }
        },
        base_dir=tmp_path,
    )
    found = {"b": fake_plugin(tmp_path, "b", handle_schema=SEAT_SCHEMA)}
    with pytest.raises(ConfigError) as info:
        bind_plugins(cfg, Discovery(plugins=found, skipped=()))
    assert info.value.problems == (
        "plugins.b.schedules[1].payload.seats: 'x' is not of type 'integer'",
    )


def test_a_missing_baggage_path_names_baggage(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "p",
                "a.poll",
                {
                    "id": "s",
                    "uses": "b",
                    "with": {"n": "{payload.n}"},
                    "baggage": {"w": "{payload.who}"},
                },
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    (step,) = routing.plan(succeeded(result={"n": 1}), NOW).jobs
    assert step.error == "pipeline p step s: baggage: {payload.who}: the input has no payload.who"


# -- the depth limit ---------------------------------------------------------------------


def test_a_job_just_below_the_limit_still_routes(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, ROUTES)
    plan = routing.plan(succeeded(events=[{"type": "a.other"}], depth=MAX_DEPTH - 1), NOW)
    (child,) = plan.jobs
    assert child.depth == MAX_DEPTH


def test_past_the_depth_limit_events_are_kept_with_a_note(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, ROUTES)
    plan = routing.plan(succeeded(events=[{"type": "a.other"}], depth=MAX_DEPTH), NOW)
    assert plan.jobs == ()
    assert plan.events == (
        StoredEvent(
            event_id="id1",
            job_id="job",
            type="a.other",
            source="a",
            payload={},
            dedupe_key=None,
            created_at=NOW,
        ),
        StoredEvent(
            event_id="id2",
            job_id="job",
            type="routing.depth_exceeded",
            source="chamberlain",
            payload={"depth": MAX_DEPTH, "limit": MAX_DEPTH},
            dedupe_key=None,
            created_at=NOW,
        ),
    )


def test_past_the_depth_limit_a_pipeline_stops_with_a_note(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, THREE)
    first = succeeded(
        plugin="b",
        command="handle",
        pipeline="three",
        step_id="first",
        root_job_id="root",
        depth=MAX_DEPTH,
        result={},
    )
    plan = routing.plan(first, NOW)
    assert plan.jobs == ()
    assert [e.type for e in plan.events] == ["routing.depth_exceeded"]


def test_past_the_depth_limit_with_nothing_configured_nothing_is_noted(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, {})
    assert routing.plan(succeeded(result={}, depth=MAX_DEPTH + 5), NOW) == RoutePlan()


# -- pipelines started from outside ------------------------------------------------------


def test_a_pipeline_started_by_hand_gets_a_trigger_event(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, THREE)
    three = routing.pipeline("three")
    assert three is not None
    plan = routing.start(three, {"n": 2}, submitted_by="api_key", now=NOW)
    trigger = {
        "type": "a.poll",  # the pipeline's on, as in Ductile
        "payload": {"n": 2},
        "event_id": "id1",
        "source": "api",
        "timestamp": rfc3339(NOW),
    }
    assert plan == RoutePlan(
        jobs=(
            NewJob(
                id="id3",
                plugin="b",
                command="handle",
                # Started from outside: no upstream job to name.
                payload={"n": 2, "label": "n=2", "kind": "a.poll"},
                event=trigger,
                # The first job is its own tree's root: lineage has none.
                context={
                    "ductile": {
                        "pipeline_instance_id": "id2",
                        "route_depth": 1,
                        "route_max_depth": 3,
                    }
                },
                submitted_by="api_key",
                max_attempts=4,
                source_event_id="id1",
                pipeline="three",
                step_id="first",
            ),
        )
    )


def test_a_pipeline_started_by_a_webhook_delivery_gets_that_event(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "hook",
                "github.push",
                {
                    "id": "s",
                    "uses": "b",
                    "with": {"ref": "{payload.ref}", "delivery": "{event.delivery_id}"},
                },
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    hook = routing.pipeline("hook")
    assert hook is not None
    event: dict[str, Any] = {
        "type": "push",
        "payload": {"ref": "main"},
        "event_id": "ev-1",
        "source": "webhook:/hooks/gh",
        "timestamp": rfc3339(NOW),
        "delivery_id": "d-1",
        "headers": {},
    }
    plan = routing.start(
        hook, event["payload"], submitted_by="webhook:/hooks/gh", now=NOW, event=event
    )
    assert plan.events == ()
    (job,) = plan.jobs
    assert job.id == "id2"  # no trigger event is made up (id1 names the run)
    assert job.event == event
    assert job.source_event_id == "ev-1"
    assert job.payload == {"ref": "main", "delivery": "d-1"}
    assert job.context["ductile"]["pipeline_instance_id"] == "id1"
    assert (job.submitted_by, job.parent_job_id, job.root_job_id, job.depth) == (
        "webhook:/hooks/gh",
        None,
        None,
        0,
    )


def test_steps_skipped_before_the_first_job_are_noted_on_it(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, GATED)
    gated = routing.pipeline("gated")
    assert gated is not None
    plan = routing.start(gated, {"n": 1}, submitted_by="api_key", now=NOW)
    (always,) = plan.jobs
    assert always.id == "id5"
    assert [(e.job_id, e.payload["step_id"]) for e in plan.events] == [
        ("id5", "big"),
        ("id5", "named"),
    ]


def test_a_start_whose_every_step_is_skipped_creates_no_job(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline("p", "a.poll", {"id": "s", "uses": "b", "if": {"path": "payload.go"}})
        ]
    }
    routing = compile_routing(tmp_path, config)
    p = routing.pipeline("p")
    assert p is not None
    plan = routing.start(p, {"go": "yes"}, submitted_by="api_key", now=NOW)
    assert plan.jobs == ()
    assert [(e.type, e.job_id) for e in plan.events] == [("pipeline.step_skipped", "")]


# -- lookups -----------------------------------------------------------------------------


def test_pipeline_and_synchronous_lookups(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {
            "pipelines": [
                pipeline("slow", "a.poll", {"id": "s", "uses": "b"}),
                pipeline("sync", "a.poll", {"id": "s", "uses": "b"}, execution_mode="synchronous"),
                pipeline("other", "b.poll", {"id": "s", "uses": "c"}),
            ]
        },
    )
    assert routing.active
    sync = routing.pipeline("sync")
    assert sync is not None and sync.name == "sync"
    assert routing.pipeline("missing") is None
    assert routing.synchronous_for("a", "poll") is sync
    assert routing.synchronous_for("b", "poll") is None
    assert routing.synchronous_for("a", "handle") is None


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("b", ("b", "handle")),
        ("b.poll", ("b", "poll")),
        ("b.handle", ("b", "handle")),
        ("acme.weather", ("acme.weather", "handle")),  # a dotted plugin name
        ("acme.weather.poll", ("acme.weather", "poll")),
        ("b.nope", None),
        ("ghost", None),
        ("ghost.poll", None),
    ],
)
def test_resolve_target(tmp_path: Path, target: str, expected: tuple[str, str] | None) -> None:
    routing = compile_routing(tmp_path, {}, plugins=("b", "acme.weather"))
    assert routing.resolve_target(target) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [("b", ("b", "handle")), ("b.poll", ("b", "poll")), ("x.y.poll", ("x.y", "poll"))],
)
def test_split_target(target: str, expected: tuple[str, str]) -> None:
    assert split_target(target) == expected


# -- routing_error -----------------------------------------------------------------------


def test_routing_error_notes_why_a_plan_failed() -> None:
    note = routing_error(succeeded(), RuntimeError("disk full"), NOW)
    assert note.job_id == "job"
    assert note.type == "routing.error"
    assert note.source == "chamberlain"
    assert note.payload == {"error": "RuntimeError: disk full"}
    assert note.dedupe_key is None
    assert note.created_at == NOW
    other = routing_error(succeeded(), RuntimeError("disk full"), NOW)
    assert note.event_id and other.event_id != note.event_id


# -- start-up checks ---------------------------------------------------------------------


def one_step(**step: Any) -> dict[str, Any]:
    return {"pipelines": [pipeline("p", "a.poll", {"id": "s", "uses": "b", **step})]}


BAD_PATH = (
    "expected payload | event | context followed by .key segments"
    " (letters, digits, '_', '-'), e.g. payload.city"
)
#: A step's ``if:`` also reads its plugin's ``config``.
BAD_STEP_IF_PATH = BAD_PATH.replace("context followed", "context | config followed")


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        pytest.param(
            {"routes": [{"from": "ghost", "event_type": "x", "to": "b"}]},
            "routes[0].from: no loaded plugin named 'ghost'",
            id="route-from-plugin",
        ),
        pytest.param(
            {"routes": [{"from": "a", "event_type": "x", "to": "ghost"}]},
            "routes[0].to: 'ghost' is not a loaded plugin[.command]",
            id="route-to-plugin",
        ),
        pytest.param(
            {
                "routes": [
                    {"from": "a", "event_type": "x", "to": "b"},
                    {"from": "a", "event_type": "x", "to": "b.nope"},
                ]
            },
            "routes[1].to: 'b.nope' is not a loaded plugin[.command]",
            id="route-to-command",
        ),
        pytest.param(
            one_step(uses="ghost"),
            "pipelines[0].steps[0].uses: 'ghost' is not a loaded plugin[.command]",
            id="uses-plugin",
        ),
        pytest.param(
            one_step(uses="b.nope"),
            "pipelines[0].steps[0].uses: 'b.nope' is not a loaded plugin[.command]",
            id="uses-command",
        ),
        pytest.param(
            one_step(**{"with": {"x": {"y": ["{payload..x}"]}}}),
            f"pipelines[0].steps[0].with: bad path 'payload..x': {BAD_PATH}",
            id="with-path",
        ),
        pytest.param(
            one_step(**{"with": {"x": "{payload.x"}}),
            "pipelines[0].steps[0].with: unbalanced brace in '{payload.x'"
            " (write {{ or }} for a literal)",
            id="with-brace",
        ),
        pytest.param(
            one_step(baggage={"who": "{who}"}),
            f"pipelines[0].steps[0].baggage.who: bad path 'who': {BAD_PATH}",
            id="baggage-path",
        ),
        pytest.param(
            one_step(**{"if": {"path": "payload x", "op": "eq", "value": 1}}),
            f"pipelines[0].steps[0].if.path: bad path 'payload x': {BAD_STEP_IF_PATH}",
            id="if-path",
        ),
        pytest.param(
            one_step(**{"if": {"path": "payload.x\n", "op": "exists"}}),
            f"pipelines[0].steps[0].if.path: bad path 'payload.x\\n': {BAD_STEP_IF_PATH}",
            id="if-path-trailing-newline",
        ),
        pytest.param(
            one_step(
                **{
                    "if": {
                        "any": [
                            {"path": "payload.ok", "op": "exists"},
                            {"not": {"path": "state.flag", "op": "eq", "value": True}},
                        ]
                    }
                }
            ),
            f"pipelines[0].steps[0].if.any[1].not.path: bad path 'state.flag': {BAD_STEP_IF_PATH}",
            id="if-nested-path",
        ),
        pytest.param(
            {
                "pipelines": [
                    pipeline("p", "a.poll", {"id": "s", "uses": "b"}),
                    pipeline("p", "b.poll", {"id": "s", "uses": "c"}),
                ]
            },
            "pipelines[1].name: duplicate pipeline name 'p' (also pipelines[0])",
            id="duplicate-name",
        ),
        pytest.param(
            {
                "pipelines": [
                    pipeline(
                        "p",
                        "a.poll",
                        {"id": "s", "uses": "b"},
                        {"id": "t", "uses": "b"},
                        {"id": "s", "uses": "c"},
                    )
                ]
            },
            "pipelines[0].steps[2].id: duplicate step id 's' (also steps[0])",
            id="duplicate-step",
        ),
        pytest.param(
            {"pipelines": [pipeline("p", "a.poll")]},
            "pipelines[0].steps: a pipeline needs at least one step",
            id="no-steps",
        ),
        pytest.param(
            {
                "pipelines": [
                    pipeline(
                        "p",
                        "manual",
                        {"id": "s", "uses": "b"},
                        execution_mode="synchronous",
                    )
                ]
            },
            "pipelines[0].on: a synchronous pipeline starts from a trigger: write plugin.command",
            id="synchronous-on-without-command",
        ),
    ],
)
def test_each_start_up_problem_names_its_yaml_path(
    tmp_path: Path, config: dict[str, Any], problem: str
) -> None:
    assert problems_of(tmp_path, config) == [problem]


def test_every_problem_is_reported_at_once_with_the_file_name(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "routes": [{"from": "ghost", "event_type": "x", "to": "b"}],
            "pipelines": [pipeline("p", "a.poll", {"id": "s", "uses": "zz"})],
        },
        base_dir=tmp_path,
    )
    plugins = bind_plugins(cfg, Discovery(plugins={"b": fake_plugin(tmp_path, "b")}, skipped=()))
    with pytest.raises(ConfigError) as info:
        build_routing(cfg.routes, cfg.pipelines, plugins, source=Path("chamberlain.yaml"))
    assert str(info.value) == (
        "chamberlain.yaml: 2 problems:"
        "\n  routes[0].from: no loaded plugin named 'ghost'"
        "\n  pipelines[0].steps[0].uses: 'zz' is not a loaded plugin[.command]"
    )


def test_a_good_config_compiles(tmp_path: Path) -> None:
    config = {
        "routes": ROUTES["routes"],
        "pipelines": [*THREE["pipelines"], *GATED["pipelines"]],
    }
    routing = compile_routing(tmp_path, config)
    assert [p.name for p in routing.pipelines] == ["three", "gated"]
    assert len(routing.routes) == 4


def test_two_pipelines_that_start_each_other_are_a_cycle(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        {
            "pipelines": [
                pipeline("ping", "a.poll", {"id": "s", "uses": "b.poll"}),
                pipeline("pong", "b.poll", {"id": "s", "uses": "a.poll"}),
            ]
        },
    )
    assert problems == ["pipelines[0]: pipelines start each other in a cycle: ping -> pong -> ping"]


def test_a_longer_cycle_is_named_hop_by_hop(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        {
            "pipelines": [
                pipeline("one", "a.poll", {"id": "s", "uses": "b.poll"}),
                pipeline("two", "b.poll", {"id": "s", "uses": "c.poll"}),
                pipeline(
                    "three", "c.poll", {"id": "x", "uses": "b"}, {"id": "y", "uses": "a.poll"}
                ),
            ]
        },
    )
    assert problems == [
        "pipelines[0]: pipelines start each other in a cycle: one -> two -> three -> one"
    ]


def test_a_pipeline_reaching_another_by_two_ways_is_no_cycle(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {
            "pipelines": [
                pipeline(
                    "top", "a.poll", {"id": "x", "uses": "b.poll"}, {"id": "y", "uses": "c.poll"}
                ),
                pipeline("left", "b.poll", {"id": "s", "uses": "c.poll"}),
                pipeline("bottom", "c.poll", {"id": "s", "uses": "a.handle"}),
            ]
        },
    )
    assert len(routing.pipelines) == 3


def test_a_cycle_through_a_dotted_plugin_name_is_found(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline("fetch", "acme.weather.handle", {"id": "s", "uses": "b.poll"}),
            pipeline("store", "b.poll", {"id": "s", "uses": "acme.weather"}),
        ]
    }
    plugins = ("acme.weather", "b")
    # Unchecked, a store step (an acme.weather.handle job) starts fetch again: a loop.
    cfg, bound = loaded(tmp_path, config, plugins)
    unchecked = Routing(routes=(), pipelines=cfg.pipelines, plugins=bound, new_id=counter())
    store_step = succeeded(
        plugin="acme.weather",
        command="handle",
        pipeline="store",
        step_id="s",
        root_job_id="r",
        result={},
    )
    assert [j.pipeline for j in unchecked.plan(store_step, NOW).jobs] == ["fetch"]
    problems = problems_of(tmp_path, config, plugins)
    assert problems == [
        "pipelines[0]: pipelines start each other in a cycle: fetch -> store -> fetch"
    ]
