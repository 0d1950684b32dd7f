"""Ductile's request envelope rules, one at a time, without a daemon.

The request a plugin reads is built from the job by `chamberlain.plugins.envelope`
(at encode time) and from a step's config by the planner (at plan time); Ductile's
code paths are named on each test.  The golden tests in test_ductile_envelope.py
check the same rules end to end through a real daemon.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from test_routing_planner import NOW, compile_routing, pipeline, succeeded

from chamberlain.plugins.envelope import (
    BaggageConflict,
    accrete,
    handle_event,
    request_context,
    request_payload,
    with_control,
)
from chamberlain.routing.templates import TemplateError, check_baggage, claim_baggage

# -- the request context (loadRequestContext) ------------------------------------------


def test_a_job_outside_a_pipeline_gets_only_its_plugin_name() -> None:
    assert request_context(plugin="echo", pipeline=None, step_id=None, context={}) == {
        "ductile_plugin": "echo"
    }


def test_a_step_gets_its_pipeline_step_and_run_keys_beside_its_baggage() -> None:
    accumulated = {
        "repo": {"name": "r"},
        "ductile": {"pipeline_instance_id": "run-1", "route_depth": 2, "route_max_depth": 3},
    }
    assert request_context(
        plugin="fabric", pipeline="web", step_id="summarize", context=accumulated
    ) == {
        "ductile_plugin": "fabric",
        "repo": {"name": "r"},
        "ductile": accumulated["ductile"],
        "ductile_pipeline": "web",
        "ductile_step_id": "summarize",
        "ductile_pipeline_instance_id": "run-1",
        "ductile_route_depth": 2,
        "ductile_route_max_depth": 3,
    }


@pytest.mark.parametrize("bad", [0, -1, True, "2", None])
def test_depths_that_are_not_positive_integers_are_left_out(bad: object) -> None:
    context = {"ductile": {"route_depth": bad, "route_max_depth": bad}}
    found = request_context(plugin="p", pipeline=None, step_id=None, context=context)
    assert "ductile_route_depth" not in found and "ductile_route_max_depth" not in found


def test_baggage_may_shadow_the_plugin_name_as_in_ductile() -> None:
    found = request_context(
        plugin="p", pipeline=None, step_id=None, context={"ductile_plugin": "other"}
    )
    assert found["ductile_plugin"] == "other"


def test_a_zero_max_depth_means_no_limit_and_is_not_recorded() -> None:
    assert with_control({}, instance_id="i", depth=1, max_depth=0) == {
        "ductile": {"pipeline_instance_id": "i", "route_depth": 1}
    }


# -- payload and event (executeJob) ------------------------------------------------------


def test_the_context_is_merged_into_the_event_payload_and_the_event_data_wins() -> None:
    event = {"type": "t", "payload": {"a": 1}, "event_id": "e"}
    context = {"ductile_plugin": "p", "a": "from context", "b": 2}
    assert handle_event(event, {"a": 1, "w": "with"}, context) == {
        "type": "t",
        "payload": {"a": 1, "w": "with", "ductile_plugin": "p", "b": 2},
        "event_id": "e",
    }
    assert event["payload"] == {"a": 1}  # the job's own record is not changed


def test_a_handle_job_is_sent_its_event_as_payload() -> None:
    event = {"type": "api.trigger", "payload": {"n": 1}}
    assert request_payload("handle", {"n": 1}, event) == event


@pytest.mark.parametrize(("payload", "sent"), [({"n": 1}, {"n": 1}), ({}, None)])
def test_other_commands_get_their_payload_and_an_empty_one_is_left_out(
    payload: dict[str, Any], sent: dict[str, Any] | None
) -> None:
    assert request_payload("poll", payload, None) == sent
    assert request_payload("handle", payload, None) == sent  # a handle job without an event


# -- baggage (internal/baggage, internal/state) ------------------------------------------


SCOPE = {"payload": {"repo_name": "r", "meta": {"a": 1}, "n": 2}, "context": {"who": "me"}}


def test_a_bare_path_claims_the_value_with_its_type_under_a_nested_key() -> None:
    claims = claim_baggage({"repo.name": "payload.repo_name", "count": "payload.n"}, SCOPE)
    assert claims == {"repo": {"name": "r"}, "count": 2}


def test_templates_and_literals_are_chamberlains_own_form() -> None:
    claims = claim_baggage({"label": "n={payload.n}", "fixed": 3, "by": "{context.who}"}, SCOPE)
    assert claims == {"label": "n=2", "fixed": 3, "by": "me"}


def test_from_and_namespace_import_a_whole_object() -> None:
    assert claim_baggage({"from": "payload.meta", "namespace": "m.x"}, SCOPE) == {
        "m": {"x": {"a": 1}}
    }


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"x": "payload.missing"}, "the input has no payload.missing"),
        ({"from": "payload.n", "namespace": "m"}, "from: payload.n is not an object"),
        ({"a": "payload.n", "a.b": "payload.n"}, "runs through 'a', which is a value"),
    ],
)
def test_a_claim_that_cannot_be_made_is_an_error(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        claim_baggage(spec, SCOPE)


def test_start_up_checks_of_a_baggage_map() -> None:
    assert check_baggage({"namespace": "m"}) == [
        "namespace: needs from: (the object to import under it)"
    ]
    assert check_baggage({"from": "payload", "x..y": "payload.n", "z": "{bad path}"}) == [
        "from: needs namespace: (the key to import the object under)",
        "x..y: a baggage key has no empty segments (write a.b, not a..b)",
        "z: bad path 'bad path': expected payload | event | context followed by .key"
        " segments (letters, digits, '_', '-'), e.g. payload.city",
    ]


def test_claimed_baggage_accretes_and_cannot_be_rewritten() -> None:
    base = {"repo": {"name": "r"}, "ductile": {"route_depth": 1}}
    grown = accrete(base, {"repo": {"url": "u"}, "ductile": {"route_depth": 2}})
    assert grown == {"repo": {"name": "r", "url": "u"}, "ductile": {"route_depth": 2}}
    assert accrete(grown, {"repo": {"name": "r"}}) == grown  # the same value again is fine
    with pytest.raises(BaggageConflict, match=re.escape("'repo.name' is already 'r'")):
        accrete(grown, {"repo": {"name": "other"}})
    assert base == {"repo": {"name": "r"}, "ductile": {"route_depth": 1}}


# -- what the planner builds (routeEventsWithOptions, contextUpdatesForDispatch) --------


NOTIFY = {
    "pipelines": [
        pipeline(
            "p",
            "a.done",
            {"id": "first", "uses": "b", "baggage": {"repo.name": "payload.repo"}},
            {
                "id": "second",
                "uses": "c",
                "with": {"message": "{context.repo.name}: {payload.result}"},
            },
        )
    ]
}


def test_a_string_result_is_injected_into_the_events_a_step_emits(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, NOTIFY)
    first = succeeded(
        plugin="b",
        command="handle",
        pipeline="p",
        step_id="first",
        context={"repo": {"name": "r"}, "ductile": {"pipeline_instance_id": "i", "route_depth": 1}},
        events=[{"type": "b.done", "payload": {}}, {"type": "b.done", "payload": {"result": 1}}],
        result="3 files",
    )
    plan = routing.plan(first, NOW)
    # The stored events are what the plugin emitted; the dispatches carry the result.
    assert [e.payload for e in plan.events] == [{}, {"result": 1}]
    assert [j.payload["message"] for j in plan.jobs] == ["r: 3 files", "r: 1"]
    assert plan.jobs[0].payload["ductile_upstream_step_id"] == "first"


def test_an_object_result_is_not_injected(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, NOTIFY)
    first = succeeded(
        plugin="b",
        command="handle",
        pipeline="p",
        step_id="first",
        context={"repo": {"name": "r"}, "ductile": {"pipeline_instance_id": "i", "route_depth": 1}},
        events=[{"type": "b.done", "payload": {"k": 1}}],
        result={"not": "a string"},
    )
    (second,) = routing.plan(first, NOW).jobs
    assert second.error is not None and "payload.result" in second.error


def test_a_step_without_events_hands_on_ductiles_step_succeeded_event(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, NOTIFY)
    first = succeeded(
        plugin="b",
        command="handle",
        pipeline="p",
        step_id="first",
        context={"repo": {"name": "r"}, "ductile": {"pipeline_instance_id": "i", "route_depth": 1}},
        result="done",
    )
    (second,) = routing.plan(first, NOW).jobs
    assert second.payload == {
        "result": "done",
        "ductile_upstream_plugin": "b",
        "ductile_upstream_pipeline": "p",
        "ductile_upstream_step_id": "first",
        "message": "r: done",
    }


def test_baggage_is_claimed_from_the_steps_input_and_reaches_its_own_context(
    tmp_path: Path,
) -> None:
    routing = compile_routing(tmp_path, NOTIFY)
    plan = routing.plan(succeeded(events=[{"type": "a.done", "payload": {"repo": "r"}}]), NOW)
    (first,) = plan.jobs
    assert first.context == {
        "ductile": {"pipeline_instance_id": "id2", "route_depth": 1, "route_max_depth": 2},
        "repo": {"name": "r"},
    }


def test_a_step_rewriting_claimed_baggage_is_born_failed(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "p",
                "a.done",
                {"id": "first", "uses": "b", "baggage": {"who": "payload.who"}},
                {"id": "second", "uses": "c", "baggage": {"who": "payload.who"}},
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    first = succeeded(
        plugin="b",
        command="handle",
        pipeline="p",
        step_id="first",
        context={"who": "me", "ductile": {"pipeline_instance_id": "i", "route_depth": 1}},
        events=[{"type": "b.done", "payload": {"who": "you"}}],
    )
    (second,) = routing.plan(first, NOW).jobs
    assert second.error == (
        "pipeline p step second: baggage: baggage 'who' is already 'me' in this pipeline run"
        " and cannot become 'you'"
    )


def test_with_sees_the_payload_as_the_plugin_will_and_the_request_context(
    tmp_path: Path,
) -> None:
    config = {
        "pipelines": [
            pipeline(
                "p",
                "a.done",
                {
                    "id": "s",
                    "uses": "b",
                    "with": {
                        "who": "{payload.ductile_plugin}",
                        "step": "{context.ductile_step_id}",
                    },
                },
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    (step,) = routing.plan(succeeded(events=[{"type": "a.done", "payload": {}}]), NOW).jobs
    assert (step.payload["who"], step.payload["step"]) == ("b", "s")


def test_the_branches_a_run_starts_with_share_its_instance_id(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "p",
                "a.done",
                {"split": [{"id": "left", "uses": "b"}, {"id": "right", "uses": "c"}]},
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    plan = routing.plan(succeeded(events=[{"type": "a.done"}, {"type": "a.done"}]), NOW)
    runs = [j.context["ductile"]["pipeline_instance_id"] for j in plan.jobs]
    # One run per event, both branches of each in it.
    assert len(runs) == 4 and runs[0] == runs[1] and runs[2] == runs[3] != runs[0]


def test_a_steps_if_sees_the_context_its_plugin_would_be_sent(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "p",
                "a.done",
                {
                    "id": "s",
                    "uses": "b",
                    "baggage": {"repo.name": "payload.repo"},
                    "if": {
                        "all": [
                            {"path": "context.ductile_step_id", "op": "eq", "value": "s"},
                            {"path": "context.ductile_route_depth", "op": "eq", "value": 1},
                            {"path": "context.repo.name", "op": "eq", "value": "r"},
                        ]
                    },
                },
            )
        ]
    }
    routing = compile_routing(tmp_path, config)
    ran = routing.plan(succeeded(events=[{"type": "a.done", "payload": {"repo": "r"}}]), NOW)
    assert [j.step_id for j in ran.jobs] == ["s"]
    skipped = routing.plan(succeeded(events=[{"type": "a.done", "payload": {"repo": "x"}}]), NOW)
    assert skipped.jobs == ()
