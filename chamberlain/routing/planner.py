"""What a finished job sets in motion: its events, the routes they match, next steps.

:class:`Routing` is compiled once from the config.  :meth:`Routing.plan` looks at one
succeeded job and answers, without I/O, which events to store and which jobs to
create; the JobStore applies that answer in the same transaction that marks the job
routed, so a crash can neither lose nor repeat a step.

A pipeline starts in two ways:

* a job of ``plugin.command`` equal to its ``on`` succeeds: that job is the root, and
  step one gets its events (or its result, when it emitted none);
* a job emits an event whose type equals ``on``: step one gets that event.

A pipeline with ``from_plugin`` starts only from that plugin's jobs, and one with a
pipeline-level ``if:`` only when it holds on the input and the finished job's
context; both gate starts by a job only, not ``POST /pipeline/{name}`` or webhooks.

Each later step gets the previous step's events, one job per event (or one job with
the result when there were none).  A step whose ``if:`` does not hold is skipped and
the next step gets the same input.  A step whose ``with:`` names a path the input
lacks, or whose ``if:`` compares values of the wrong types
(:mod:`chamberlain.routing.conditions`), is recorded as a failed job, so the failure
shows in the tree.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from chamberlain.config import (
    ConditionConfig,
    ConfigError,
    PipelineConfig,
    RouteConfig,
    StepConfig,
)
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.records import Job, NewJob, RoutePlan, StoredEvent, rfc3339
from chamberlain.routing.conditions import ConditionError, evaluate
from chamberlain.routing.templates import TemplateError, check_path, check_template, render

log = logging.getLogger("chamberlain.router")

#: Hops from a tree's root after which nothing more is routed: a guard against
#: plugins whose events feed each other forever.
MAX_DEPTH = 32
DEFAULT_COMMAND = "handle"
SKIPPED_EVENT = "pipeline.step_skipped"
DEPTH_EVENT = "routing.depth_exceeded"
CORE_SOURCE = "chamberlain"
ROUTING_ERROR = "routing.error"


def split_target(target: str) -> tuple[str, str]:
    """``plugin`` -> (plugin, handle); ``plugin.command`` -> (plugin, command).

    Plugin names may contain dots, so the command is what follows the last dot only
    when the whole string is not itself a plugin name; callers check against the
    loaded plugins with :meth:`Routing.resolve_target`.
    """
    plugin, _, command = target.rpartition(".")
    if not plugin:
        return target, DEFAULT_COMMAND
    return plugin, command


@attrs.frozen(kw_only=True)
class _Input:
    """What a step receives: an event envelope (real, or made from a result)."""

    event: Mapping[str, Any]
    #: The id of the stored event it came from; None for a result turned into input.
    event_id: str | None
    dedupe_key: str | None = None


@attrs.define(eq=False)
class Routing:
    """Routes and pipelines, checked against the loaded plugins."""

    routes: tuple[RouteConfig, ...]
    pipelines: tuple[PipelineConfig, ...]
    plugins: Mapping[str, BoundPlugin]
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    _by_name: dict[str, PipelineConfig] = attrs.field(init=False)
    _by_on: dict[str, list[PipelineConfig]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._by_name = {p.name: p for p in self.pipelines}
        self._by_on = {}
        for pipeline in self.pipelines:
            self._by_on.setdefault(pipeline.on, []).append(pipeline)

    # -- questions the API asks ------------------------------------------------------

    def pipeline(self, name: str) -> PipelineConfig | None:
        """The pipeline called ``name``."""
        return self._by_name.get(name)

    def synchronous_for(self, plugin: str, command: str) -> PipelineConfig | None:
        """The synchronous pipeline a trigger of ``plugin.command`` starts, if any."""
        for pipeline in self._by_on.get(f"{plugin}.{command}", ()):
            if pipeline.synchronous:
                return pipeline
        return None

    @property
    def active(self) -> bool:
        """False when there is nothing to route (no routes, no pipelines)."""
        return bool(self.routes or self.pipelines)

    def resolve_target(self, target: str) -> tuple[str, str] | None:
        """(plugin, command) for ``plugin`` or ``plugin.command``, if both exist."""
        if target in self.plugins:
            plugin, command = target, DEFAULT_COMMAND
        else:
            plugin, command = split_target(target)
        bound = self.plugins.get(plugin)
        if bound is None or bound.command(command) is None:
            return None
        return plugin, command

    # -- planning ----------------------------------------------------------------------

    def start(
        self,
        pipeline: PipelineConfig,
        payload: Mapping[str, Any],
        *,
        submitted_by: str,
        now: float,
        event: Mapping[str, Any] | None = None,
    ) -> RoutePlan:
        """Jobs for a pipeline started from outside: ``POST /pipeline/{name}`` (step one
        gets a ``pipeline.trigger`` event with ``payload``) or a webhook delivery
        (step one gets the delivery's ``event``)."""
        if event is None:
            event = StoredEvent(
                event_id=self.new_id(),
                job_id="",
                type="pipeline.trigger",
                source="api",
                payload=dict(payload),
                dedupe_key=None,
                created_at=now,
            ).envelope()
        source = _Input(event=event, event_id=event.get("event_id"))
        jobs, skips = self._step_jobs(
            pipeline, 0, source, parent=None, context={}, submitted_by=submitted_by, now=now
        )
        if jobs:
            # Steps skipped before the first job are told about on that job, the root.
            skips = [attrs.evolve(s, job_id=jobs[0].id) for s in skips]
        return RoutePlan(events=tuple(skips), jobs=tuple(jobs))

    def plan(self, job: Job, now: float) -> RoutePlan:
        """Everything the succeeded ``job`` sets in motion."""
        response = job.result if isinstance(job.result, Mapping) else {}
        events = tuple(
            StoredEvent(
                event_id=self.new_id(),
                job_id=job.id,
                type=str(raw.get("type")),
                source=job.plugin,
                payload=_mapping(raw.get("payload")),
                dedupe_key=raw["dedupe_key"] if isinstance(raw.get("dedupe_key"), str) else None,
                created_at=now,
            )
            for raw in response.get("events") or ()
            if isinstance(raw, Mapping)
        )
        if job.depth + 1 > MAX_DEPTH:
            if not events and not self.active:
                return RoutePlan()
            note = self._note(job, DEPTH_EVENT, {"depth": job.depth, "limit": MAX_DEPTH}, now)
            return RoutePlan(events=(*events, note))
        inputs = [
            _Input(event=e.envelope(), event_id=e.event_id, dedupe_key=e.dedupe_key) for e in events
        ]
        if not inputs:
            inputs = [_result_input(job, now)]
        jobs: list[NewJob] = []
        notes: list[StoredEvent] = []
        started: set[str] = set()
        # The next step of the pipeline this job is a step of.
        if job.pipeline is not None and job.step_id is not None:
            pipeline = self._by_name.get(job.pipeline)
            index = _step_index(pipeline, job.step_id) if pipeline else None
            if pipeline is not None and index is not None:
                for source in inputs:
                    more, skips = self._step_jobs(
                        pipeline,
                        index + 1,
                        source,
                        parent=job,
                        context=job.context,
                        submitted_by=f"pipeline:{pipeline.name}",
                        now=now,
                    )
                    jobs.extend(more)
                    notes.extend(skips)
        # Pipelines rooted at this plugin.command.
        for pipeline in self._by_on.get(f"{job.plugin}.{job.command}", ()):
            if pipeline.name == job.pipeline:
                continue  # a pipeline's own step never restarts it
            started.add(pipeline.name)
            for source in inputs:
                if not self._admits(pipeline, job, source, notes, now):
                    continue
                more, skips = self._step_jobs(
                    pipeline,
                    0,
                    source,
                    parent=job,
                    context={},
                    submitted_by=f"pipeline:{pipeline.name}",
                    now=now,
                )
                jobs.extend(more)
                notes.extend(skips)
        for event, source in zip(events, inputs, strict=False):
            matched = False
            # Routes: exact type match, fan-out to every match.
            for route in self.routes:
                if route.source != job.plugin or route.event_type != event.type:
                    continue
                target = self.resolve_target(route.to)
                if target is None:
                    continue  # refused at start-up; kept safe here anyway
                matched = True
                jobs.append(
                    self._child(
                        job,
                        target,
                        payload=event.payload,
                        source=source,
                        context=job.context,
                        submitted_by=f"route:{job.plugin}",
                    )
                )
            # Pipelines whose `on` is this event type.
            for pipeline in self._by_on.get(event.type, ()):
                if pipeline.name in started or pipeline.name == job.pipeline:
                    continue
                matched = True
                if not self._admits(pipeline, job, source, notes, now):
                    continue
                more, skips = self._step_jobs(
                    pipeline,
                    0,
                    source,
                    parent=job,
                    context={},
                    submitted_by=f"pipeline:{pipeline.name}",
                    now=now,
                )
                jobs.extend(more)
                notes.extend(skips)
            if not matched:
                # Not an error: most events are only kept for the record.  Debug level,
                # since a plugin that emits on every run would flood the log.
                log.debug(
                    "event %s matched no route or pipeline",
                    event.type,
                    extra={"component": "router", "job_id": job.id, "event_id": event.event_id},
                )
        return RoutePlan(events=(*events, *notes), jobs=tuple(jobs))

    # -- internals ---------------------------------------------------------------------

    def _admits(
        self,
        pipeline: PipelineConfig,
        job: Job,
        source: _Input,
        notes: list[StoredEvent],
        now: float,
    ) -> bool:
        """Whether ``job``'s output ``source`` starts ``pipeline``: its ``from_plugin``
        names the job's plugin and its ``if`` holds on the input and the job's context.

        An ``if`` that cannot be evaluated starts nothing and leaves a
        ``routing.error`` note on ``job`` naming the pipeline.
        """
        if pipeline.from_plugin is not None and pipeline.from_plugin != job.plugin:
            return False
        if pipeline.if_ is None:
            return True
        scope = {
            "payload": source.event.get("payload", {}),
            "event": source.event,
            "context": job.context,
        }
        try:
            return evaluate(pipeline.if_, scope)
        except ConditionError as exc:
            error = f"pipeline {pipeline.name}: if: {exc}"
            notes.append(
                self._note(job, ROUTING_ERROR, {"pipeline": pipeline.name, "error": error}, now)
            )
            return False

    def _note(self, job: Job, kind: str, payload: Mapping[str, Any], now: float) -> StoredEvent:
        return StoredEvent(
            event_id=self.new_id(),
            job_id=job.id,
            type=kind,
            source=CORE_SOURCE,
            payload=dict(payload),
            dedupe_key=None,
            created_at=now,
        )

    def _step_jobs(
        self,
        pipeline: PipelineConfig,
        index: int,
        source: _Input,
        *,
        parent: Job | None,
        context: Mapping[str, Any],
        submitted_by: str,
        now: float,
    ) -> tuple[list[NewJob], list[StoredEvent]]:
        """The job for step ``index`` (or a later one, past skipped steps)."""
        skips: list[StoredEvent] = []
        while index < len(pipeline.steps):
            step = pipeline.steps[index]
            scope = {
                "payload": source.event.get("payload", {}),
                "event": source.event,
                "context": context,
            }
            condition_error = None
            try:
                skipped = step.if_ is not None and not evaluate(step.if_, scope)
            except ConditionError as exc:
                skipped, condition_error = (
                    False,
                    f"pipeline {pipeline.name} step {step.id}: if: {exc}",
                )
            if skipped:
                assert step.if_ is not None
                skips.append(
                    StoredEvent(
                        event_id=self.new_id(),
                        job_id=parent.id if parent else "",
                        type=SKIPPED_EVENT,
                        source=CORE_SOURCE,
                        payload={
                            "pipeline": pipeline.name,
                            "step_id": step.id,
                            "reason": f"if: {step.if_.describe()} is false",
                        },
                        dedupe_key=None,
                        created_at=now,
                    )
                )
                index += 1
                continue
            return [
                self._step_job(
                    pipeline,
                    step,
                    source,
                    scope,
                    parent,
                    context,
                    submitted_by,
                    condition_error=condition_error,
                )
            ], skips
        return [], skips

    def _step_job(
        self,
        pipeline: PipelineConfig,
        step: StepConfig,
        source: _Input,
        scope: Mapping[str, Any],
        parent: Job | None,
        context: Mapping[str, Any],
        submitted_by: str,
        *,
        condition_error: str | None = None,
    ) -> NewJob:
        """The job for ``step``; born failed when its ``if:``, ``with:`` or ``baggage:``
        cannot be worked out from the input (``condition_error`` is the first)."""
        target = self.resolve_target(step.uses)
        assert target is not None, "validated at start-up"
        error = condition_error
        payload: Mapping[str, Any] = source.event.get("payload", {})
        baggage: dict[str, Any] = {}
        key = "with"  # the YAML key being rendered: the error must name the right one
        try:
            if error is not None:
                payload = {}
            elif step.with_ is not None:
                payload = render(step.with_, scope)
            key = "baggage"
            if error is None and step.baggage:
                baggage = render(step.baggage, scope)
        except TemplateError as exc:
            error = f"pipeline {pipeline.name} step {step.id}: {key}: {exc}"
            payload = {}
        job_id = self.new_id()
        root = (parent.root_job_id or parent.id) if parent else job_id
        step_context = {
            **context,
            **baggage,
            "pipeline": pipeline.name,
            "step_id": step.id,
            "root_job_id": root,
        }
        return self._child(
            parent,
            target,
            payload=payload,
            source=source,
            context=step_context,
            submitted_by=submitted_by,
            pipeline=pipeline.name,
            step_id=step.id,
            error=error,
            job_id=job_id,
        )

    def _child(
        self,
        parent: Job | None,
        target: tuple[str, str],
        *,
        payload: Mapping[str, Any],
        source: _Input,
        context: Mapping[str, Any],
        submitted_by: str,
        pipeline: str | None = None,
        step_id: str | None = None,
        error: str | None = None,
        job_id: str | None = None,
    ) -> NewJob:
        plugin, command = target
        if error is None:
            error = self.plugins[plugin].payload_problem(command, payload)
            if error is not None and pipeline is not None:
                error = f"pipeline {pipeline} step {step_id}: {error}"
        return NewJob(
            id=job_id or self.new_id(),
            plugin=plugin,
            command=command,
            payload=dict(payload),
            event=dict(source.event),
            context=dict(context),
            submitted_by=submitted_by,
            max_attempts=self.plugins[plugin].max_attempts,
            dedupe_key=source.dedupe_key,
            parent_job_id=parent.id if parent else None,
            source_event_id=source.event_id,
            pipeline=pipeline,
            step_id=step_id,
            root_job_id=(parent.root_job_id or parent.id) if parent else None,
            depth=parent.depth + 1 if parent else 0,
            error=error,
        )


def routing_error(job: Job, exc: Exception, now: float) -> StoredEvent:
    """The note left on a job whose plan could not be applied."""
    return StoredEvent(
        event_id=str(uuid.uuid4()),
        job_id=job.id,
        type=ROUTING_ERROR,
        source=CORE_SOURCE,
        payload={"error": f"{type(exc).__name__}: {exc}"},
        dedupe_key=None,
        created_at=now,
    )


def _result_input(job: Job, now: float) -> _Input:
    """A job that emitted no events hands its result on, as an event of its own."""
    response = job.result if isinstance(job.result, Mapping) else {}
    result = response.get("result")
    payload = dict(result) if isinstance(result, Mapping) else {"result": result}
    return _Input(
        event={
            "type": f"{job.plugin}.{job.command}.result",
            "payload": payload,
            "source": job.plugin,
            "timestamp": rfc3339(now),
        },
        event_id=None,
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _step_index(pipeline: PipelineConfig, step_id: str) -> int | None:
    for index, step in enumerate(pipeline.steps):
        if step.id == step_id:
            return index
    return None


# -- start-up validation ---------------------------------------------------------------


def build_routing(
    routes: Sequence[RouteConfig],
    pipelines: Sequence[PipelineConfig],
    plugins: Mapping[str, BoundPlugin],
    *,
    source: Any = None,
) -> Routing:
    """Check routes and pipelines against the loaded plugins and compile them.

    Every problem names its YAML path: unknown plugins or commands, bad paths in
    ``with:``/``if:``/``baggage:``, duplicate names and step ids, and pipelines that
    would start each other in a cycle.
    """
    routing = Routing(routes=tuple(routes), pipelines=tuple(pipelines), plugins=plugins)
    problems: list[str] = []
    for i, route in enumerate(routes):
        where = f"routes[{i}]"
        if route.source not in plugins:
            problems.append(f"{where}.from: no loaded plugin named {route.source!r}")
        if routing.resolve_target(route.to) is None:
            problems.append(f"{where}.to: {route.to!r} is not a loaded plugin[.command]")
    seen: dict[str, int] = {}
    for i, pipeline in enumerate(pipelines):
        where = f"pipelines[{i}]"
        if pipeline.name in seen:
            problems.append(
                f"{where}.name: duplicate pipeline name {pipeline.name!r}"
                f" (also pipelines[{seen[pipeline.name]}])"
            )
        seen.setdefault(pipeline.name, i)
        if not pipeline.steps:
            problems.append(f"{where}.steps: a pipeline needs at least one step")
        if pipeline.synchronous and "." not in pipeline.on:
            problems.append(
                f"{where}.on: a synchronous pipeline starts from a trigger: write plugin.command"
            )
        step_ids: dict[str, int] = {}
        for j, step in enumerate(pipeline.steps):
            at = f"{where}.steps[{j}]"
            if step.id in step_ids:
                problems.append(
                    f"{at}.id: duplicate step id {step.id!r} (also steps[{step_ids[step.id]}])"
                )
            step_ids.setdefault(step.id, j)
            if routing.resolve_target(step.uses) is None:
                problems.append(f"{at}.uses: {step.uses!r} is not a loaded plugin[.command]")
            if step.with_ is not None:
                problems.extend(f"{at}.with: {p}" for p in check_template(step.with_))
            problems.extend(f"{at}.baggage: {p}" for p in check_template(step.baggage))
            if step.if_ is not None:
                problems.extend(_condition_paths(step.if_, f"{at}.if"))
        if pipeline.if_ is not None:
            problems.extend(_condition_paths(pipeline.if_, f"{where}.if"))
        if pipeline.from_plugin is not None and pipeline.from_plugin not in plugins:
            problems.append(f"{where}.from_plugin: no loaded plugin named {pipeline.from_plugin!r}")
    problems.extend(_cycles(pipelines, routing))
    if problems:
        raise ConfigError(problems, source=source)
    return routing


def _condition_paths(condition: ConditionConfig, at: str) -> list[str]:
    """Problems with the paths of ``condition`` and of the conditions it holds."""
    if condition.path is not None:
        try:
            check_path(condition.path)
        except TemplateError as exc:
            return [f"{at}.path: {exc}"]
        return []
    problems: list[str] = []
    for key, children in (("all", condition.all_), ("any", condition.any_)):
        for i, child in enumerate(children):
            problems.extend(_condition_paths(child, f"{at}.{key}[{i}]"))
    if condition.not_ is not None:
        problems.extend(_condition_paths(condition.not_, f"{at}.not"))
    return problems


def _cycles(pipelines: Sequence[PipelineConfig], routing: Routing) -> list[str]:
    """Pipelines that start one another in a loop (through their steps' ``uses``)."""
    starts: dict[str, list[int]] = {}
    for i, pipeline in enumerate(pipelines):
        starts.setdefault(pipeline.on, []).append(i)

    def successors(i: int) -> list[int]:
        found: list[int] = []
        for step in pipelines[i].steps:
            # Resolved as the planner will run it: a dotted plugin name is not split.
            target = routing.resolve_target(step.uses)
            if target is not None:  # an unknown target is reported on its own
                found.extend(starts.get(".".join(target), ()))
        return found

    problems: list[str] = []
    state: dict[int, str] = {}

    def visit(i: int, trail: list[int]) -> None:
        state[i] = "open"
        for nxt in successors(i):
            if state.get(nxt) == "open":
                loop = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [i, nxt]
                names = " -> ".join(pipelines[k].name for k in loop)
                problems.append(f"pipelines[{nxt}]: pipelines start each other in a cycle: {names}")
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[i] = "done"

    for i in range(len(pipelines)):
        if i not in state:
            visit(i, [i])
    return problems
