"""The rest of Ductile's pipeline DSL, compiled and planned without I/O.

Ids Ductile gives steps without one, nested ``steps``, ``split``, ``call``,
``on-hook`` with ``notify_on_complete``, ``max_depth`` and the ``config`` root of a
step's ``if:``.  Each expectation cites the Ductile behaviour it follows
(``internal/router/dsl/compiler.go``, ``internal/router/engine.go``,
``internal/dispatch/dispatcher.go``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from test_routing_planner import NOW, by_step, compile_routing, pipeline, problems_of, succeeded

from chamberlain.config import ConfigError, parse_config
from chamberlain.records import JobStatus
from chamberlain.routing.graph import compile_graph, unreachable
from chamberlain.routing.planner import DEPTH_EVENT, MAX_DEPTH, SKIPPED_EVENT


def pipelines_of(*entries: dict[str, Any]) -> Any:
    return parse_config({"pipelines": list(entries)}, base_dir=Path("/srv")).pipelines


def config_problems(*entries: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as info:
        pipelines_of(*entries)
    return info.value.problems


IF_X = {"path": "payload.x", "op": "exists"}

# -- ids and the graph -------------------------------------------------------------------


def test_steps_without_an_id_are_numbered_depth_first_as_ductile_does() -> None:
    (p,) = pipelines_of(
        pipeline(
            "p",
            "a.poll",
            {"uses": "a"},
            {"id": "step_2", "uses": "b"},
            {"split": [{"uses": "b", "if": IF_X}, {"steps": [{"uses": "c"}, {"call": "q"}]}]},
        )
    )
    first, second, split = p.steps
    # step_2 is taken by the explicit id, so the counter skips it.
    assert (first.id, second.id) == ("step_1", "step_2")
    branch_a, branch_b = split.split
    assert (branch_a.id, [s.id for s in branch_b.steps]) == ("step_3", ["step_4", "step_5"])
    assert split.id is None and branch_b.id is None  # no node of their own


def test_a_switch_name_an_if_step_takes_is_skipped_by_the_counter() -> None:
    # Ductile allocates <id>__switch for a step with an if; step_1__switch is not a
    # candidate for the counter, but a step named like it would be a duplicate.
    (p,) = pipelines_of(pipeline("p", "x", {"uses": "a", "if": IF_X}, {"uses": "b"}))
    assert [s.id for s in p.steps] == ["step_1", "step_2"]


def test_the_graph_links_splits_and_nested_sequences() -> None:
    (p,) = pipelines_of(
        pipeline(
            "p",
            "x",
            {"id": "first", "uses": "a"},
            {
                "split": [
                    {"id": "left", "uses": "b"},
                    {"steps": [{"id": "r1", "uses": "c"}, {"id": "r2", "uses": "c"}]},
                ]
            },
            {"id": "last", "uses": "a"},
        )
    )
    graph, problems = compile_graph(p, "pipelines[0]")
    assert problems == []
    assert graph.entries == ("first",)
    assert {n.id: n.successors for n in graph.nodes.values()} == {
        "first": ("left", "r1"),
        "left": ("last",),
        "r1": ("r2",),
        "r2": ("last",),
        "last": (),
    }
    assert graph.nodes["r2"].at == "pipelines[0].steps[1].split[1].steps[1]"


def test_a_split_first_starts_every_branch() -> None:
    (p,) = pipelines_of(pipeline("p", "x", {"split": [{"uses": "a"}, {"uses": "b"}]}))
    graph, _ = compile_graph(p, "pipelines[0]")
    assert graph.entries == ("step_1", "step_2")


def test_duplicate_ids_name_both_places() -> None:
    (p,) = pipelines_of(
        pipeline("p", "x", {"uses": "a"}, {"split": [{"id": "step_1", "uses": "b"}]})
    )
    _, problems = compile_graph(p, "pipelines[0]")
    assert problems == [
        "pipelines[0].steps[1].split[0].id: duplicate step id 'step_1' (also steps[0])"
    ]


def test_steps_after_a_call_are_unreachable() -> None:
    (p,) = pipelines_of(
        pipeline("p", "x", {"uses": "a"}, {"call": "q"}, {"id": "never", "uses": "b"})
    )
    graph, _ = compile_graph(p, "pipelines[0]")
    assert [n.id for n in unreachable(graph)] == ["never"]


@pytest.mark.parametrize(
    ("step", "problem"),
    [
        (
            {"uses": "a", "call": "q"},
            "pipelines[0].steps[0]: give exactly one of uses, call, relay, steps or split;"
            " got uses and call",
        ),
        (
            {"id": "s"},
            "pipelines[0].steps[0]: give exactly one of uses, call, relay, steps or split;"
            " got none",
        ),
        (
            {"call": "q", "with": {"a": 1}},
            "pipelines[0].steps[0]: with belongs to a uses step, not to a call step",
        ),
        (
            {"split": [{"uses": "a"}], "baggage": {"k": "payload.k"}},
            "pipelines[0].steps[0]: baggage belongs to a uses step, not to a split step",
        ),
        (
            {"steps": [{"uses": "a"}], "if": IF_X},
            "pipelines[0].steps[0]: if belongs to a uses, call or relay step, not to a steps step",
        ),
        (
            {"split": []},
            "pipelines[0].steps[0].split: expected a non-empty list of steps, got an empty list",
        ),
        (
            {"steps": [{"relay": {"to": "lab", "event": "e"}}]},
            "pipelines[0].steps[0].steps[0].relay.to: no enabled instance named 'lab'"
            " (no instance is enabled)",
        ),
    ],
)
def test_a_step_gives_exactly_one_action(step: dict[str, Any], problem: str) -> None:
    assert config_problems(pipeline("p", "x", step)) == (problem,)


def test_on_and_on_hook_and_max_depth_are_checked() -> None:
    assert config_problems(
        {"name": "a", "steps": [{"uses": "a"}]},
        {"name": "b", "on": "x", "on-hook": "job.failed", "steps": [{"uses": "a"}]},
        {"name": "c", "on-hook": "job.done", "steps": [{"uses": "a"}]},
        {"name": "d", "on": "x", "max_depth": -1, "steps": [{"uses": "a"}]},
    ) == (
        "pipelines[0]: give exactly one of on and on-hook; got none",
        "pipelines[1]: give exactly one of on and on-hook; got both",
        "pipelines[2].on-hook: unknown signal 'job.done'; expected one of: job.completed,"
        " job.failed, job.timed_out",
        "pipelines[3].max_depth: must be at least 0, got -1",
    )


def test_calls_must_name_a_pipeline_and_not_loop(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        {
            "pipelines": [
                pipeline("p", "x", {"uses": "a"}, {"id": "go", "call": "q"}),
                pipeline("q", "y", {"split": [{"uses": "b"}, {"id": "back", "call": "p"}]}),
                pipeline("r", "z", {"call": "nowhere"}),
            ]
        },
    ) == [
        "pipelines[2].steps[0].call: no pipeline named 'nowhere'",
        "pipelines[1].steps[0].split[1].call: pipelines call each other in a cycle: p -> q -> p",
    ]


def test_nested_steps_are_checked_against_the_plugins(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        {
            "pipelines": [
                pipeline(
                    "p",
                    "x",
                    {
                        "split": [
                            {"uses": "a"},
                            {"steps": [{"uses": "zz", "with": {"v": "{oops}"}}]},
                        ]
                    },
                )
            ]
        },
    ) == [
        "pipelines[0].steps[0].split[1].steps[0].uses: 'zz' is not a loaded plugin[.command]",
        "pipelines[0].steps[0].split[1].steps[0].with: bad path 'oops': expected payload |"
        " event | context followed by .key segments (letters, digits, '_', '-'), e.g."
        " payload.city",
    ]


def test_a_step_after_a_call_is_named_at_start_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="chamberlain.router"):
        compile_routing(
            tmp_path,
            {
                "pipelines": [
                    pipeline("p", "x", {"call": "q"}, {"id": "after", "uses": "b"}),
                    pipeline("q", "y", {"uses": "a"}),
                ]
            },
        )
    assert [r.getMessage() for r in caplog.records] == [
        "pipelines[0].steps[1]: never runs: the steps after a call do not run (as in"
        " Ductile, the called pipeline's last step ends the run)"
    ]


# -- planning: split, nested steps, call -------------------------------------------------

SPLIT = {
    "pipelines": [
        pipeline(
            "p",
            "a.poll",
            {"id": "first", "uses": "a"},
            {
                "split": [
                    {"id": "left", "uses": "b"},
                    {"steps": [{"id": "r1", "uses": "c"}, {"id": "r2", "uses": "c"}]},
                ]
            },
            {"id": "last", "uses": "a"},
        )
    ]
}


def test_a_split_starts_every_branch_on_the_same_input(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, SPLIT)
    plan = routing.plan(
        succeeded(id="f", plugin="a", command="handle", pipeline="p", step_id="first", result="x"),
        NOW,
    )
    steps = by_step(plan)
    assert sorted(k for k in steps if k) == ["left", "r1"]
    assert steps["left"][0].event == steps["r1"][0].event
    assert {j.parent_job_id for j in plan.jobs} == {"f"}


def test_a_branch_goes_on_inside_its_nested_sequence(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, SPLIT)
    plan = routing.plan(
        succeeded(id="r", plugin="c", command="handle", pipeline="p", step_id="r1"), NOW
    )
    assert [(j.plugin, j.step_id) for j in plan.jobs] == [("c", "r2")]


def test_the_step_after_a_split_runs_once_per_finished_branch(tmp_path: Path) -> None:
    # Ductile joins nothing: each branch's last step routes to the next step.
    routing = compile_routing(tmp_path, SPLIT)
    left = routing.plan(
        succeeded(id="l", plugin="b", command="handle", pipeline="p", step_id="left"), NOW
    )
    right = routing.plan(
        succeeded(id="r", plugin="c", command="handle", pipeline="p", step_id="r2"), NOW
    )
    assert [(j.step_id, j.parent_job_id) for j in (*left.jobs, *right.jobs)] == [
        ("last", "l"),
        ("last", "r"),
    ]


def test_a_skipped_branch_hands_its_input_to_the_step_after_the_split(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {
            "pipelines": [
                pipeline(
                    "p",
                    "a.poll",
                    {
                        "split": [
                            {"id": "gated", "uses": "b", "if": IF_X},
                            {"id": "open", "uses": "c"},
                        ]
                    },
                    {"id": "last", "uses": "a"},
                )
            ]
        },
    )
    plan = routing.plan(succeeded(events=[{"type": "t", "payload": {"y": 1}}]), NOW)
    assert [j.step_id for j in plan.jobs] == ["last", "open"]
    assert [(e.type, e.payload["step_id"]) for e in plan.events if e.type == SKIPPED_EVENT] == [
        (SKIPPED_EVENT, "gated")
    ]


CALLS = {
    "pipelines": [
        pipeline("outer", "a.poll", {"id": "prep", "uses": "a"}, {"id": "sub", "call": "inner"}),
        pipeline(
            "inner",
            "inner.start",
            {"id": "one", "uses": "b", "baggage": {"k": "payload.k"}},
            {"id": "two", "uses": "c"},
            from_plugin="c",  # a call does not check the called pipeline's gates
        ),
    ]
}


def test_a_call_runs_the_called_pipelines_steps_in_that_pipeline(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, CALLS)
    prep = succeeded(
        id="prep",
        plugin="a",
        command="handle",
        pipeline="outer",
        step_id="prep",
        context={"kept": True},
        events=[{"type": "t", "payload": {"k": "v"}}],
    )
    plan = routing.plan(prep, NOW)
    (job,) = plan.jobs
    # As Ductile's engine: the dispatch belongs to the called pipeline and its entry.
    assert (job.plugin, job.pipeline, job.step_id, job.parent_job_id) == (
        "b",
        "inner",
        "one",
        "prep",
    )
    assert job.context["kept"] is True  # the caller's context carries on
    called = succeeded(id="one", plugin="b", command="handle", pipeline="inner", step_id="one")
    assert [(j.pipeline, j.step_id) for j in routing.plan(called, NOW).jobs] == [("inner", "two")]


def test_a_call_as_the_first_step_starts_the_called_pipeline(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {
            "pipelines": [
                pipeline("p", "a.poll", {"call": "q"}),
                pipeline("q", "q.go", {"uses": "b"}),
            ]
        },
    )
    plan = routing.start(routing.pipeline("p"), {"n": 1}, submitted_by="api", now=NOW)  # type: ignore[arg-type]
    assert [(j.plugin, j.pipeline, j.step_id) for j in plan.jobs] == [("b", "q", "step_1")]


def test_a_false_if_on_a_call_skips_the_call(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {
            "pipelines": [
                pipeline("p", "a.poll", {"id": "maybe", "call": "q", "if": IF_X}),
                pipeline("q", "q.go", {"uses": "b"}),
            ]
        },
    )
    plan = routing.plan(succeeded(events=[{"type": "t", "payload": {}}]), NOW)
    assert plan.jobs == ()
    assert [e.payload.get("step_id") for e in plan.events if e.type == SKIPPED_EVENT] == ["maybe"]


# -- on-hook -------------------------------------------------------------------------------


def hooks_config(**plugin: Any) -> dict[str, Any]:
    return {
        "plugins": {"a": plugin},
        "pipelines": [
            {"name": "done", "on-hook": "job.completed", "steps": [{"uses": "b"}]},
            {"name": "broken", "on-hook": "job.failed", "steps": [{"uses": "c"}, {"uses": "b"}]},
            {
                "name": "slow",
                "on-hook": "job.timed_out",
                "from_plugin": "b",
                "steps": [{"uses": "c"}],
            },
        ],
    }


def test_a_succeeded_job_of_a_notifying_plugin_fires_job_completed(tmp_path: Path) -> None:
    routing = compile_routing(tmp_path, hooks_config(notify_on_complete=True))
    plan = routing.plan(succeeded(id="root", result={"n": 1}), NOW)
    (hook_event,) = [e for e in plan.events if e.type == "job.completed"]
    assert hook_event.job_id == "root"  # noted on the job whose end fired it
    assert hook_event.payload == {
        "job_id": "root",
        "plugin": "a",
        "command": "poll",
        "status": "succeeded",
        "result": {"n": 1},
    }
    (job,) = plan.jobs
    # A tree of its own, as Ductile enqueues hook jobs as root jobs.
    assert (job.plugin, job.pipeline, job.step_id) == ("b", "done", "step_1")
    assert (job.parent_job_id, job.root_job_id, job.depth) == (None, None, 0)
    assert job.submitted_by == "hook:done"
    assert job.source_event_id == hook_event.event_id
    assert job.event is not None and job.event["type"] == "job.completed"


@pytest.mark.parametrize(
    ("status", "pipeline_name"),
    [(JobStatus.FAILED, "broken"), (JobStatus.DEAD, "broken")],
)
def test_a_failed_or_dead_job_fires_job_failed_with_its_error(
    tmp_path: Path, status: JobStatus, pipeline_name: str
) -> None:
    routing = compile_routing(tmp_path, hooks_config(notify_on_complete=True))
    job = succeeded(id="root", status=status, last_error="boom", result=None)
    plan = routing.plan(job, NOW)
    (hook_event,) = plan.events
    assert hook_event.type == "job.failed"
    assert hook_event.payload == {
        "job_id": "root",
        "plugin": "a",
        "command": "poll",
        "status": status.value,
        "error": "boom",
    }
    assert [(j.pipeline, j.plugin) for j in plan.jobs] == [(pipeline_name, "c")]
    # The hook pipeline runs on past its first step.
    first = succeeded(id="h1", plugin="c", command="handle", pipeline="broken", step_id="step_1")
    assert [j.step_id for j in routing.plan(first, NOW).jobs] == ["step_2"]


def test_hooks_need_notify_on_complete_and_a_job_that_is_no_pipeline_step(
    tmp_path: Path,
) -> None:
    quiet = compile_routing(tmp_path, hooks_config())
    assert quiet.plan(succeeded(status=JobStatus.FAILED), NOW).jobs == ()
    loud = compile_routing(tmp_path, hooks_config(notify_on_complete=True))
    step = succeeded(status=JobStatus.FAILED, pipeline="broken", step_id="step_2")
    assert loud.plan(step, NOW).jobs == ()
    # A cancelled job gives no signal (hookSignalForStatus has none for it).
    assert loud.plan(succeeded(status=JobStatus.CANCELLED), NOW).jobs == ()


def test_a_hooks_from_plugin_and_if_gate_it(tmp_path: Path) -> None:
    config = hooks_config(notify_on_complete=True)
    config["plugins"]["b"] = {"notify_on_complete": True}
    config["pipelines"][0]["if"] = {"path": "payload.plugin", "op": "eq", "value": "b"}
    routing = compile_routing(tmp_path, config)
    timed_out = JobStatus.TIMED_OUT
    assert routing.plan(succeeded(plugin="a", status=timed_out), NOW).jobs == ()
    assert [
        j.pipeline for j in routing.plan(succeeded(plugin="b", status=timed_out), NOW).jobs
    ] == ["slow"]
    assert routing.plan(succeeded(plugin="a"), NOW).jobs == ()  # if: plugin is not b
    assert [j.pipeline for j in routing.plan(succeeded(plugin="b"), NOW).jobs] == ["done"]


def test_a_failed_job_plans_nothing_but_hooks(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {"pipelines": [pipeline("p", "a.poll", {"uses": "b"})], "routes": []},
    )
    failed = succeeded(status=JobStatus.FAILED, events=[{"type": "t"}])
    assert routing.plan(failed, NOW).jobs == () and routing.plan(failed, NOW).events == ()


def test_a_hook_pipeline_cannot_be_synchronous(tmp_path: Path) -> None:
    assert problems_of(
        tmp_path,
        {
            "pipelines": [
                {
                    "name": "h",
                    "on-hook": "job.failed",
                    "execution_mode": "synchronous",
                    "steps": [{"uses": "b"}],
                }
            ]
        },
    ) == [
        "pipelines[0].on-hook: a synchronous pipeline starts from a trigger: write plugin.command"
    ]


# -- max_depth -----------------------------------------------------------------------------


def test_max_depth_replaces_the_global_limit_for_its_pipelines_jobs(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline(
                "short",
                "a.poll",
                {"id": "one", "uses": "a"},
                {"id": "two", "uses": "b"},
                max_depth=2,
            ),
            pipeline(
                "free",
                "b.poll",
                {"id": "one", "uses": "a"},
                {"id": "two", "uses": "b"},
                max_depth=0,
            ),
        ]
    }
    routing = compile_routing(tmp_path, config)
    at_two = succeeded(plugin="a", command="handle", pipeline="short", step_id="one", depth=2)
    plan = routing.plan(at_two, NOW)
    assert plan.jobs == ()
    assert [(e.type, e.payload) for e in plan.events] == [(DEPTH_EVENT, {"depth": 2, "limit": 2})]
    at_one = succeeded(plugin="a", command="handle", pipeline="short", step_id="one", depth=1)
    assert [j.step_id for j in routing.plan(at_one, NOW).jobs] == ["two"]
    deep = succeeded(plugin="a", command="handle", pipeline="free", step_id="one", depth=MAX_DEPTH)
    assert [j.step_id for j in routing.plan(deep, NOW).jobs] == ["two"]


def test_max_depth_is_read_from_the_config(tmp_path: Path) -> None:
    (p,) = pipelines_of(pipeline("p", "x", {"uses": "a"}, max_depth=3))
    assert p.max_depth == 3
    (q,) = pipelines_of(pipeline("q", "x", {"uses": "a"}))
    assert q.max_depth is None


# -- the config root -----------------------------------------------------------------------


def test_a_step_if_reads_its_plugins_config(tmp_path: Path) -> None:
    routing = compile_routing(
        tmp_path,
        {
            "plugins": {"b": {"config": {"mode": "live", "nested": {"on": True}}}},
            "pipelines": [
                pipeline(
                    "p",
                    "a.poll",
                    {
                        "id": "live",
                        "uses": "b",
                        "if": {"path": "config.mode", "op": "eq", "value": "live"},
                    },
                    {
                        "id": "off",
                        "uses": "c",
                        "if": {"path": "config.nested.on", "op": "eq", "value": True},
                    },
                )
            ],
        },
    )
    plan = routing.plan(succeeded(events=[{"type": "t"}]), NOW)
    # b's config holds; c has no config, so config.nested.on is missing and off skipped.
    assert [j.step_id for j in plan.jobs] == ["live"]
    live = succeeded(id="l", plugin="b", command="handle", pipeline="p", step_id="live")
    skipped = routing.plan(live, NOW)
    assert skipped.jobs == ()
    assert [e.payload["step_id"] for e in skipped.events if e.type == SKIPPED_EVENT] == ["off"]


def test_a_config_path_naming_a_secret_is_refused(tmp_path: Path) -> None:
    config = {
        "plugins": {
            "b": {"config": {"token": "${secret:api_token}", "auth": {"key": "k-${secret:k}"}}}
        },
        "pipelines": [
            pipeline(
                "p",
                "a.poll",
                {"uses": "b", "if": {"path": "config.token", "op": "startswith", "value": "a"}},
                {"uses": "b", "if": {"path": "config.auth", "op": "exists"}},
            )
        ],
    }
    assert problems_of(tmp_path, config) == [
        "pipelines[0].steps[0].if: config.token holds a ${secret:...} reference, which a"
        " condition cannot read",
        "pipelines[0].steps[1].if: config.auth holds a ${secret:...} reference, which a"
        " condition cannot read",
    ]


def test_a_pipeline_level_if_has_no_config_root(tmp_path: Path) -> None:
    config = {
        "pipelines": [
            pipeline("p", "a.poll", {"uses": "b"}, **{"if": {"path": "config.x", "op": "exists"}})
        ]
    }
    assert problems_of(tmp_path, config) == [
        "pipelines[0].if.path: bad path 'config.x': config is read in a step's if only (the"
        " step's plugin's config); a pipeline's if has no plugin"
    ]
