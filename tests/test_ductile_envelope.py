"""Golden tests: the request a plugin reads is the one Ductile's dispatcher would build.

Each test runs a small pipeline (or trigger) of Ductile's form through one shared
daemon, with recording stand-ins as its plugins, and compares each recorded request,
whole, with a literal of what Ductile builds for the same step.  The literals follow
Ductile's Go source (``mattjoyce/senechal-gw``); each cites the function it follows:

* ``internal/dispatch/dispatcher.go``: ``executeJob`` (the request, ``payload``,
  ``event``, the context merge, ``with:``, ``payload.result``, the synthetic
  ``ductile.step.succeeded`` event, state and facts), ``loadRequestContext`` (the
  ``ductile_*`` context keys), ``routeEventsWithOptions`` (event ids, ``source``,
  ``ductile_upstream_*``), ``contextUpdatesForDispatch`` (baggage, depths);
* ``internal/dispatch/with.go`` (``applyWithRemap``), ``internal/baggage/baggage.go``
  (``ApplyClaims``), ``internal/state/context_store.go`` (``deepAccreteRawMap``),
  ``internal/state/pipeline_instance.go`` (the reserved ``ductile`` namespace);
* ``internal/router/engine.go`` (``Next``, ``resolveCompiledRoute``) and
  ``internal/router/dsl/compiler.go`` (``assignPipelineMaxRouteDepths``: a linear
  pipeline's route max depth is its number of steps);
* ``internal/api/handlers.go`` (``handlePluginTrigger``, ``handlePipelineTrigger``).

Only volatile values are normalized (:func:`ductile_fixtures.normalize`): job ids,
deadlines, event ids, timestamps and pipeline instance ids.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ductile_fixtures import (
    DEADLINE,
    EVENT_ID,
    INSTANCE,
    JOB_ID,
    TIMESTAMP,
    SharedDaemon,
    Waiter,
    base_config,
    instance_id,
    normalize,
    read_records,
    start_daemon,
    trigger,
    write_recorder,
)

pytestmark = pytest.mark.e2e

SOURCE = "ductile_source"
#: What Chamberlain's own API events carry beyond Ductile's (docs/DUCTILE.md,
#: "Differences that remain"): an id, so the job names its source event, and where
#: it came from.
API_EVENT_EXTRAS = {"event_id": EVENT_ID, "source": "api"}

#: Recorders that answer the same way every time (handle jobs of pipeline steps).
ANSWERS: dict[str, dict[str, Any]] = {
    "rec_b1": {
        "status": "ok",
        "result": "b1 done",
        "events": [
            {"type": "b1.out", "payload": {"n": 1}},
            {"type": "b1.out", "payload": {"n": 2, "result": "mine"}},
        ],
    },
    "rec_q1": {"status": "ok", "result": "q1 said"},
    "rec_m1": {
        "status": "ok",
        "result": "m1 done",
        "events": [
            {"type": "m1.out", "payload": {"region": "south", "ductile_step_id": "spoofed"}}
        ],
    },
    "rec_g1": {
        "status": "ok",
        "result": "g1 done",
        "events": [
            {
                "type": "g1.out",
                "payload": {"repo_name": "widget", "branch": "main", "meta": {"lang": "go"}},
            }
        ],
    },
    "rec_i1": {
        "status": "ok",
        "result": "i1 done",
        "events": [{"type": "i1.out", "payload": {"repo_name": "other"}}],
    },
}
RECORDERS = [
    *ANSWERS,
    "rec_b2",
    "rec_q2",
    "rec_w1",
    "rec_m2",
    "rec_g2",
    "rec_i2",
    "rec_a1",
    "rec_route",
    "rec_api",
    "rec_state",
]

FACT = {"when": {"command": "poll"}, "from": "state_updates"}

PIPELINES: list[dict[str, Any]] = [
    {
        "name": "p-basic",
        "on": "basic.start",
        "steps": [{"id": "s1", "uses": "rec_b1"}, {"id": "s2", "uses": "rec_b2"}],
    },
    {
        "name": "p-quiet",
        "on": "quiet.start",
        "steps": [{"id": "q1", "uses": "rec_q1"}, {"id": "q2", "uses": "rec_q2"}],
    },
    {
        "name": "p-with",
        "on": "with.start",
        "steps": [
            {
                "id": "w1",
                "uses": "rec_w1",
                "with": {
                    "greeting": "hello {payload.name}",
                    "name": "{payload.name} lovelace",
                    "count": "{payload.count}",
                    "step": "{context.ductile_step_id}",
                    "plugin": "{payload.ductile_plugin}",
                },
            }
        ],
    },
    {
        "name": "p-merge",
        "on": "merge.start",
        "steps": [
            {"id": "m1", "uses": "rec_m1", "baggage": {"region": "payload.region"}},
            {"id": "m2", "uses": "rec_m2"},
        ],
    },
    {
        "name": "p-bag",
        "on": "bag.start",
        "steps": [
            {
                "id": "g1",
                "uses": "rec_g1",
                "baggage": {"repo.name": "payload.repo_name", "repo.owner": "payload.owner"},
                "with": {"title": "repo {context.repo.name}"},
            },
            {
                "id": "g2",
                "uses": "rec_g2",
                "baggage": {
                    # The same value again is allowed; a new path joins the object.
                    "repo.name": "payload.repo_name",
                    "repo.branch": "payload.branch",
                    "from": "payload.meta",
                    "namespace": "meta",
                },
            },
        ],
    },
    {
        "name": "p-immut",
        "on": "immut.start",
        "steps": [
            {"id": "i1", "uses": "rec_i1", "baggage": {"repo.name": "payload.repo_name"}},
            {"id": "i2", "uses": "rec_i2", "baggage": {"repo.name": "payload.repo_name"}},
        ],
    },
    {"name": "p-api", "on": "api.start", "steps": [{"id": "a1", "uses": "rec_a1"}]},
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SharedDaemon, Waiter]]:
    tmp = tmp_path_factory.mktemp("ductile-envelope")
    plugins, records = tmp / "plugins", tmp / "records"
    records.mkdir()
    write_recorder(plugins, SOURCE, records=records)
    for name in RECORDERS:
        answer = ANSWERS.get(name)
        write_recorder(
            plugins, name, records=records, responses={"handle": answer} if answer else {}
        )
    write_recorder(
        plugins,
        "rec_mirror",
        records=records,
        manifest_extra={
            "fact_outputs": [
                {**FACT, "fact_type": "rec_mirror.snapshot", "compatibility_view": "mirror_object"}
            ]
        },
    )
    write_recorder(
        plugins,
        "rec_fact",
        records=records,
        manifest_extra={"fact_outputs": [{**FACT, "fact_type": "rec_fact.snapshot"}]},
    )
    names = [SOURCE, *RECORDERS, "rec_mirror", "rec_fact"]
    config = {
        **base_config(tmp, [plugins]),
        # Every job runs once: a failure is an answer here, not something to wait out.
        "plugins": {name: {"retry": {"max_attempts": 1}} for name in names},
        "routes": [{"from": SOURCE, "event_type": "routed.ping", "to": "rec_route"}],
        "pipelines": PIPELINES,
    }
    daemon = start_daemon(tmp, config)
    try:
        yield daemon, Waiter(daemon=daemon, records=records)
    finally:
        daemon.stop()


async def emit(
    gw: tuple[SharedDaemon, Waiter], event_type: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """Trigger the source's poll, answering with one event and the result "source done"."""
    daemon, _ = gw
    respond = {
        "status": "ok",
        "result": "source done",
        "events": [{"type": event_type, "payload": payload}],
    }
    return await trigger(daemon, f"/plugin/{SOURCE}/poll", {"payload": {"respond": respond}})


async def new_requests(
    gw: tuple[SharedDaemon, Waiter], name: str, before: int, count: int
) -> list[dict[str, Any]]:
    """The ``count`` requests ``name`` reads after its first ``before``."""
    _, waiter = gw
    found = await waiter.requests(name, before + count)
    return found[before:]


def seen(gw: tuple[SharedDaemon, Waiter], name: str) -> int:
    return len(read_records(gw[1].records, name))


# -- a pipeline step's handle job -------------------------------------------------------


async def test_a_step_gets_the_routed_event_as_payload_and_an_enriched_event(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    before = seen(gw, "rec_b1")
    await emit(gw, "basic.start", {"name": "ada"})
    (request,) = await new_requests(gw, "rec_b1", before, 1)
    # routeEventsWithOptions: the event gets an id, a timestamp, its source and
    # ductile_upstream_plugin, then the whole event is the job's stored payload;
    # executeJob unmarshals that same JSON into `payload` and into `event`, then
    # merges loadRequestContext's map into event.payload where keys are absent.
    # The source's result ("source done") was injected by executeJob before routing.
    # Context: loadRequestContext over contextUpdatesForDispatch's accumulated map
    # (route depth 1 of a two-step pipeline, assignPipelineMaxRouteDepths).
    context = {
        "ductile_plugin": "rec_b1",
        "ductile": {"pipeline_instance_id": INSTANCE, "route_depth": 1, "route_max_depth": 2},
        "ductile_pipeline": "p-basic",
        "ductile_step_id": "s1",
        "ductile_pipeline_instance_id": INSTANCE,
        "ductile_route_depth": 1,
        "ductile_route_max_depth": 2,
    }
    routed = {"name": "ada", "result": "source done", "ductile_upstream_plugin": SOURCE}
    assert normalize(request) == {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "handle",
        "config": {},
        "state": {},
        "payload": {
            "type": "basic.start",
            "payload": routed,
            "source": SOURCE,
            "timestamp": TIMESTAMP,
            "event_id": EVENT_ID,
        },
        "context": context,
        "event": {
            "type": "basic.start",
            "payload": {**routed, **context},
            "source": SOURCE,
            "timestamp": TIMESTAMP,
            "event_id": EVENT_ID,
        },
        "deadline_at": DEADLINE,
    }


async def test_emitted_events_carry_the_upstream_result_and_the_upstream_step(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    before = seen(gw, "rec_b2")
    await emit(gw, "basic.start", {"name": "ada"})
    requests = await new_requests(gw, "rec_b2", before, 2)
    requests.sort(key=lambda r: str(r.get("event", {}).get("payload", {}).get("n")))
    # executeJob: response.result fills payload.result of each emitted event that has
    # none (an event's own "result" stays); routeEventsWithOptions adds
    # ductile_upstream_plugin/_pipeline/_step_id, as the source job is a step.
    context = {
        "ductile_plugin": "rec_b2",
        "ductile": {"pipeline_instance_id": INSTANCE, "route_depth": 2, "route_max_depth": 2},
        "ductile_pipeline": "p-basic",
        "ductile_step_id": "s2",
        "ductile_pipeline_instance_id": INSTANCE,
        "ductile_route_depth": 2,
        "ductile_route_max_depth": 2,
    }
    upstream = {
        "ductile_upstream_plugin": "rec_b1",
        "ductile_upstream_pipeline": "p-basic",
        "ductile_upstream_step_id": "s1",
    }
    expected = []
    for emitted in ({"n": 1, "result": "b1 done"}, {"n": 2, "result": "mine"}):
        event = {
            "type": "b1.out",
            "payload": {**emitted, **upstream},
            "source": "rec_b1",
            "timestamp": TIMESTAMP,
            "event_id": EVENT_ID,
        }
        expected.append(
            {
                "protocol": 2,
                "job_id": JOB_ID,
                "command": "handle",
                "config": {},
                "state": {},
                "payload": event,
                "context": context,
                "event": {**event, "payload": {**emitted, **upstream, **context}},
                "deadline_at": DEADLINE,
            }
        )
    assert [normalize(r) for r in requests] == expected


async def test_a_step_that_emits_nothing_hands_on_a_step_succeeded_event(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    before = seen(gw, "rec_q2")
    await emit(gw, "quiet.start", {"k": "v"})
    (request,) = await new_requests(gw, "rec_q2", before, 1)
    # executeJob: no events from a job that has an event context -> the synthetic
    # {"type": "ductile.step.succeeded", "payload": {"result": <result>}}, routed
    # by routeEventsWithOptions like any event (id, timestamp, source, upstream keys).
    payload = {
        "result": "q1 said",
        "ductile_upstream_plugin": "rec_q1",
        "ductile_upstream_pipeline": "p-quiet",
        "ductile_upstream_step_id": "q1",
    }
    context = {
        "ductile_plugin": "rec_q2",
        "ductile": {"pipeline_instance_id": INSTANCE, "route_depth": 2, "route_max_depth": 2},
        "ductile_pipeline": "p-quiet",
        "ductile_step_id": "q2",
        "ductile_pipeline_instance_id": INSTANCE,
        "ductile_route_depth": 2,
        "ductile_route_max_depth": 2,
    }
    event = {
        "type": "ductile.step.succeeded",
        "payload": payload,
        "source": "rec_q1",
        "timestamp": TIMESTAMP,
        "event_id": EVENT_ID,
    }
    assert normalize(request) == {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "handle",
        "config": {},
        "state": {},
        "payload": event,
        "context": context,
        "event": {**event, "payload": {**payload, **context}},
        "deadline_at": DEADLINE,
    }


async def test_one_run_keeps_one_pipeline_instance_id_and_each_run_gets_its_own(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    runs = []
    for _ in range(2):
        q1, q2 = seen(gw, "rec_q1"), seen(gw, "rec_q2")
        await emit(gw, "quiet.start", {"k": "v"})
        (first,) = await new_requests(gw, "rec_q1", q1, 1)
        (second,) = await new_requests(gw, "rec_q2", q2, 1)
        runs.append((first, second))
    ids = [(instance_id(a), instance_id(b)) for a, b in runs]
    # Router.Next: a root trigger draws one uuid per pipeline start;
    # contextUpdatesForDispatch carries it to every later step of that run.
    for first, second in runs:
        assert first["context"]["ductile"]["pipeline_instance_id"] == instance_id(first)
        assert second["context"]["ductile"]["pipeline_instance_id"] == instance_id(second)
    assert all(a is not None and a == b for a, b in ids), ids
    assert ids[0][0] != ids[1][0]


# -- with: ----------------------------------------------------------------------------


async def test_with_rewrites_event_payload_from_the_merged_payload_and_the_context(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    before = seen(gw, "rec_w1")
    await emit(gw, "with.start", {"name": "ada", "count": 3})
    (request,) = await new_requests(gw, "rec_w1", before, 1)
    # executeJob: context is merged into event.payload first, then applyWithRemap
    # evaluates every key against that merged payload (`{payload.ductile_plugin}`
    # resolves) and the request context, all against the payload as it was before
    # any key was rewritten (`who`-style keys read the old `name`), and a whole
    # `{path}` keeps its type. `payload` stays the routed event as stored.
    context = {
        "ductile_plugin": "rec_w1",
        "ductile": {"pipeline_instance_id": INSTANCE, "route_depth": 1, "route_max_depth": 1},
        "ductile_pipeline": "p-with",
        "ductile_step_id": "w1",
        "ductile_pipeline_instance_id": INSTANCE,
        "ductile_route_depth": 1,
        "ductile_route_max_depth": 1,
    }
    routed = {
        "name": "ada",
        "count": 3,
        "result": "source done",
        "ductile_upstream_plugin": SOURCE,
    }
    event = {
        "type": "with.start",
        "payload": routed,
        "source": SOURCE,
        "timestamp": TIMESTAMP,
        "event_id": EVENT_ID,
    }
    rewritten = {
        **routed,
        **context,
        "greeting": "hello ada",
        "name": "ada lovelace",
        "count": 3,
        "step": "w1",
        "plugin": "rec_w1",
    }
    assert normalize(request) == {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "handle",
        "config": {},
        "state": {},
        "payload": event,
        "context": context,
        "event": {**event, "payload": rewritten},
        "deadline_at": DEADLINE,
    }


# -- context merged into the event -------------------------------------------------------


async def test_immediate_event_data_wins_over_the_merged_context(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    before = seen(gw, "rec_m2")
    await emit(gw, "merge.start", {"region": "north"})
    (request,) = await new_requests(gw, "rec_m2", before, 1)
    # executeJob's hybrid merge copies a context key into event.payload only where
    # the payload lacks it: the emitted region and even a ductile_step_id stay;
    # the context itself is untouched (loadRequestContext sets ductile_step_id last).
    context = {
        "ductile_plugin": "rec_m2",
        "ductile": {"pipeline_instance_id": INSTANCE, "route_depth": 2, "route_max_depth": 2},
        "region": "north",
        "ductile_pipeline": "p-merge",
        "ductile_step_id": "m2",
        "ductile_pipeline_instance_id": INSTANCE,
        "ductile_route_depth": 2,
        "ductile_route_max_depth": 2,
    }
    routed = {
        "region": "south",
        "ductile_step_id": "spoofed",
        "result": "m1 done",
        "ductile_upstream_plugin": "rec_m1",
        "ductile_upstream_pipeline": "p-merge",
        "ductile_upstream_step_id": "m1",
    }
    event = {
        "type": "m1.out",
        "payload": routed,
        "source": "rec_m1",
        "timestamp": TIMESTAMP,
        "event_id": EVENT_ID,
    }
    assert normalize(request) == {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "handle",
        "config": {},
        "state": {},
        "payload": event,
        "context": context,
        "event": {**event, "payload": {**context, **routed}},
        "deadline_at": DEADLINE,
    }


# -- baggage -----------------------------------------------------------------------------


async def test_baggage_paths_nest_and_accumulate_across_steps(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    g1, g2 = seen(gw, "rec_g1"), seen(gw, "rec_g2")
    await emit(gw, "bag.start", {"repo_name": "widget", "owner": "ada"})
    (first,) = await new_requests(gw, "rec_g1", g1, 1)
    (second,) = await new_requests(gw, "rec_g2", g2, 1)
    # contextUpdatesForDispatch -> baggage.ApplyClaims: `repo.name: payload.repo_name`
    # is a bare path read from the event entering the step, written with setPath as
    # nested maps, and visible in that step's own context (so its with: reads
    # `{context.repo.name}`).
    context1 = {
        "ductile_plugin": "rec_g1",
        "ductile": {"pipeline_instance_id": INSTANCE, "route_depth": 1, "route_max_depth": 2},
        "repo": {"name": "widget", "owner": "ada"},
        "ductile_pipeline": "p-bag",
        "ductile_step_id": "g1",
        "ductile_pipeline_instance_id": INSTANCE,
        "ductile_route_depth": 1,
        "ductile_route_max_depth": 2,
    }
    routed1 = {
        "repo_name": "widget",
        "owner": "ada",
        "result": "source done",
        "ductile_upstream_plugin": SOURCE,
    }
    event1 = {
        "type": "bag.start",
        "payload": routed1,
        "source": SOURCE,
        "timestamp": TIMESTAMP,
        "event_id": EVENT_ID,
    }
    assert normalize(first) == {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "handle",
        "config": {},
        "state": {},
        "payload": event1,
        "context": context1,
        "event": {**event1, "payload": {**routed1, **context1, "title": "repo widget"}},
        "deadline_at": DEADLINE,
    }
    # ApplyClaims: `from:` + `namespace:` imports the object under `meta`; the same
    # repo.name again is no change, repo.branch joins the repo object
    # (deepAccreteRawMap merges objects key by key).
    context2 = {
        "ductile_plugin": "rec_g2",
        "ductile": {"pipeline_instance_id": INSTANCE, "route_depth": 2, "route_max_depth": 2},
        "repo": {"name": "widget", "owner": "ada", "branch": "main"},
        "meta": {"lang": "go"},
        "ductile_pipeline": "p-bag",
        "ductile_step_id": "g2",
        "ductile_pipeline_instance_id": INSTANCE,
        "ductile_route_depth": 2,
        "ductile_route_max_depth": 2,
    }
    routed2 = {
        "repo_name": "widget",
        "branch": "main",
        "meta": {"lang": "go"},
        "result": "g1 done",
        "ductile_upstream_plugin": "rec_g1",
        "ductile_upstream_pipeline": "p-bag",
        "ductile_upstream_step_id": "g1",
    }
    event2 = {
        "type": "g1.out",
        "payload": routed2,
        "source": "rec_g1",
        "timestamp": TIMESTAMP,
        "event_id": EVENT_ID,
    }
    assert normalize(second) == {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "handle",
        "config": {},
        "state": {},
        "payload": event2,
        "context": context2,
        "event": {**event2, "payload": {**context2, **routed2}},
        "deadline_at": DEADLINE,
    }


async def test_a_baggage_path_once_set_cannot_change(gw: tuple[SharedDaemon, Waiter]) -> None:
    _, waiter = gw
    i1, i2 = seen(gw, "rec_i1"), seen(gw, "rec_i2")
    await emit(gw, "immut.start", {"repo_name": "widget"})
    (first,) = await new_requests(gw, "rec_i1", i1, 1)
    job = await waiter.job(first["job_id"])
    # deepAccreteRawMap refuses a different value for an inherited path
    # (BaggagePathImmutableError); routeEventsWithOptions returns the error and
    # executeJob fails the upstream job with it, so the next step never runs.
    # Documented difference (docs/DUCTILE.md): the job that cannot be given its
    # baggage fails, not the upstream one, whose own work succeeded; the next step
    # never runs either way.
    assert job["status"] == "succeeded", job
    refused = await waiter.tree_job(first["job_id"], "i2")
    assert refused["status"] == "failed", refused
    assert refused["started_at"] is None  # born failed: rec_i2 never ran for it
    assert "baggage 'repo.name' is already 'widget'" in (refused["last_error"] or "")
    assert seen(gw, "rec_i2") == i2


# -- triggers from the API, routes --------------------------------------------------------


async def test_a_handle_trigger_gets_an_api_trigger_event(gw: tuple[SharedDaemon, Waiter]) -> None:
    daemon, _ = gw
    before = seen(gw, "rec_api")
    await trigger(daemon, "/plugin/rec_api/handle", {"payload": {"x": 1}})
    (request,) = await new_requests(gw, "rec_api", before, 1)
    # handlePluginTrigger stores protocol.Event{Type: "api.trigger", Payload: p}
    # (no source, no event id; its zero timestamp is still marshalled); executeJob
    # reads it back as `payload` and as `event`, merging the context (only
    # ductile_plugin: no event context) into event.payload. Chamberlain's event also
    # has an id and a source (a documented difference).
    assert normalize(request) == {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "handle",
        "config": {},
        "state": {},
        "payload": {
            "type": "api.trigger",
            "payload": {"x": 1},
            "timestamp": TIMESTAMP,
            **API_EVENT_EXTRAS,
        },
        "context": {"ductile_plugin": "rec_api"},
        "event": {
            "type": "api.trigger",
            "payload": {"x": 1, "ductile_plugin": "rec_api"},
            "timestamp": TIMESTAMP,
            **API_EVENT_EXTRAS,
        },
        "deadline_at": DEADLINE,
    }


async def test_a_poll_trigger_leaves_payload_out_when_empty(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    daemon, waiter = gw
    before = seen(gw, "rec_api")
    bodies: list[dict[str, Any] | None] = [None, {"payload": {}}, {"payload": {"a": 1}}]
    for body in bodies:
        answer = await trigger(daemon, "/plugin/rec_api/poll", body)
        await waiter.job(answer["job_id"])
    requests = await new_requests(gw, "rec_api", before, 3)
    # executeJob: `payload` is `omitempty` (an absent or empty object is left out);
    # `event` is only for handle; the context is loadRequestContext's ductile_plugin.
    # A scheduled poll stores `{}` (scheduler.enqueueScheduledJob): left out too.
    bare = {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "poll",
        "config": {},
        "state": {},
        "context": {"ductile_plugin": "rec_api"},
        "deadline_at": DEADLINE,
    }
    assert [normalize(r) for r in requests] == [bare, bare, {**bare, "payload": {"a": 1}}]


async def test_a_pipeline_started_through_the_api(gw: tuple[SharedDaemon, Waiter]) -> None:
    daemon, _ = gw
    before = seen(gw, "rec_a1")
    await trigger(daemon, "/pipeline/p-api", {"payload": {"k": "v"}})
    (request,) = await new_requests(gw, "rec_a1", before, 1)
    # handlePipelineTrigger: the event is {Type: <the pipeline's on>, Payload: p}
    # (no source, no event id); createPipelineInstanceContext and
    # createPipelineEntryContext seed the instance id and depths.
    context = {
        "ductile_plugin": "rec_a1",
        "ductile": {"pipeline_instance_id": INSTANCE, "route_depth": 1, "route_max_depth": 1},
        "ductile_pipeline": "p-api",
        "ductile_step_id": "a1",
        "ductile_pipeline_instance_id": INSTANCE,
        "ductile_route_depth": 1,
        "ductile_route_max_depth": 1,
    }
    assert normalize(request) == {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "handle",
        "config": {},
        "state": {},
        "payload": {
            "type": "api.start",
            "payload": {"k": "v"},
            "timestamp": TIMESTAMP,
            **API_EVENT_EXTRAS,
        },
        "context": context,
        "event": {
            "type": "api.start",
            "payload": {"k": "v", **context},
            "timestamp": TIMESTAMP,
            **API_EVENT_EXTRAS,
        },
        "deadline_at": DEADLINE,
    }


async def test_a_routed_job_gets_the_event_as_a_pipeline_step_would(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    before = seen(gw, "rec_route")
    await emit(gw, "routed.ping", {"n": 7})
    (request,) = await new_requests(gw, "rec_route", before, 1)
    # Ductile parses `routes:` but never dispatches them (internal/config/types.go:
    # "Not in MVP"); this is routeEventsWithOptions applied to a dispatch with no
    # pipeline: upstream plugin key, a context holding only the route depth
    # (contextUpdatesForDispatch, loadRequestContext), and no pipeline keys.
    context = {
        "ductile_plugin": "rec_route",
        "ductile": {"route_depth": 1},
        "ductile_route_depth": 1,
    }
    routed = {"n": 7, "result": "source done", "ductile_upstream_plugin": SOURCE}
    event = {
        "type": "routed.ping",
        "payload": routed,
        "source": SOURCE,
        "timestamp": TIMESTAMP,
        "event_id": EVENT_ID,
    }
    assert normalize(request) == {
        "protocol": 2,
        "job_id": JOB_ID,
        "command": "handle",
        "config": {},
        "state": {},
        "payload": event,
        "context": context,
        "event": {**event, "payload": {**routed, **context}},
        "deadline_at": DEADLINE,
    }


# -- plugin state --------------------------------------------------------------------------


async def run_in_turn(
    gw: tuple[SharedDaemon, Waiter], plugin: str, steps: list[tuple[str, dict[str, Any] | None]]
) -> list[dict[str, Any]]:
    """Trigger ``plugin`` once per (command, state_updates), each after the last ended;
    return each request's ``state``."""
    daemon, waiter = gw
    before = seen(gw, plugin)
    for i, (command, updates) in enumerate(steps):
        respond: dict[str, Any] = {"status": "ok", "result": f"run {i}"}
        if updates is not None:
            respond["state_updates"] = updates
        answer = await trigger(
            daemon, f"/plugin/{plugin}/{command}", {"payload": {"respond": respond}}
        )
        job = await waiter.job(answer["job_id"])
        assert job["status"] == "succeeded", job
    return [r["state"] for r in await new_requests(gw, plugin, before, len(steps))]


async def test_state_updates_are_merged_shallowly(gw: tuple[SharedDaemon, Waiter]) -> None:
    # executeJob -> state.ShallowMerge: top-level keys replaced, others kept.
    states = await run_in_turn(
        gw,
        "rec_state",
        [("poll", {"a": 1, "b": {"x": 1}}), ("poll", {"b": {"y": 2}}), ("poll", None)],
    )
    assert states == [{}, {"a": 1, "b": {"x": 1}}, {"a": 1, "b": {"y": 2}}]


async def test_a_mirror_object_fact_output_replaces_the_state(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    # pluginFactsFromStateUpdates: a fact_outputs rule for the command records a fact
    # and, with compatibility_view mirror_object (mirrorFactAsCompatibilityState),
    # the state becomes the update itself; a command without a rule merges shallowly.
    states = await run_in_turn(
        gw,
        "rec_mirror",
        [
            ("poll", {"a": 1, "b": 1}),
            ("poll", {"b": 2}),
            ("handle", {"c": 3}),
            ("poll", None),
        ],
    )
    assert states == [{}, {"a": 1, "b": 1}, {"b": 2}, {"b": 2, "c": 3}]


async def test_a_fact_output_without_a_view_leaves_the_state(
    gw: tuple[SharedDaemon, Waiter],
) -> None:
    # executeJob: handledByFacts skips ShallowMerge; with no compatibility view,
    # RecordFact writes the fact only, so the state stays as it was.
    states = await run_in_turn(gw, "rec_fact", [("poll", {"a": 1}), ("poll", None)])
    assert states == [{}, {}]
