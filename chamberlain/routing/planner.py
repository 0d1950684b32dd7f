"""What a finished job sets in motion: its events, the routes they match, next steps.

:class:`Routing` is compiled once from the config.  :meth:`Routing.plan` looks at one
ended job and answers, without I/O, which events to store and which jobs to
create; the JobStore applies that answer in the same transaction that marks the job
routed, so a crash can neither lose nor repeat a step.

A pipeline starts in two ways:

* a job of ``plugin.command`` equal to its ``on`` succeeds: that job is the root, and
  step one gets its events (or its result, when it emitted none);
* a job emits an event whose type equals ``on``: step one gets that event.

A pipeline with ``from_plugin`` starts only from that plugin's jobs, and one with a
pipeline-level ``if:`` only when it holds on the input and the finished job's
context; both gate starts by a job only, not ``POST /pipeline/{name}`` or webhooks.

A pipeline's steps are compiled into a graph of nodes (:mod:`chamberlain.routing.graph`:
nested ``steps``, ``split`` branches and ``call`` as Ductile compiles them).  Each node
after the first gets its predecessor's events, one job per event (or one job with
the result when there were none); after a ``split``, the next step runs once per
branch that finishes.  A step whose ``if:`` does not hold is skipped and the steps
after it get the same input.  A step whose ``with:`` names a path the input
lacks, or whose ``if:`` compares values of the wrong types
(:mod:`chamberlain.routing.conditions`), is recorded as a failed job, so the failure
shows in the tree.

A pipeline with ``on-hook`` starts when a job that is not a pipeline step ends and
its plugin has ``notify_on_complete``: ``job.completed`` when it succeeded,
``job.failed`` when it failed or is dead, ``job.timed_out`` when it timed out (as
Ductile's ``maybeFireHooks``).  Its first step gets an event of that type whose
payload names the job (``job_id``, ``plugin``, ``command``, ``status``, and its
``result`` or ``error``); the run is a tree of its own.  A job that did not succeed
is routed for its hooks only, in the same transaction that marks it routed.

A ``relay`` step becomes a job of the built-in ``core.relay`` plugin whose payload
is the instance it goes to and the envelope it delivers, worked out here
(:func:`chamberlain.relay_rules.build_envelope`); the delivery itself, retried as
any job is, is :mod:`chamberlain.actors.relay_sender`'s. A relayed event accepted
from a peer starts the pipelines whose ``on`` is its type (:meth:`Routing.start`
with the event and the baggage the peer may seed).

Nothing is routed from a job more than :data:`MAX_DEPTH` hops from its tree's root,
or past its pipeline's ``max_depth`` when that is set (0: no limit).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from chamberlain.config import (
    HOOK_SIGNALS,
    ConditionConfig,
    ConfigError,
    PipelineConfig,
    RetryConfig,
    RouteConfig,
    StepConfig,
)
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.envelope import (
    BaggageConflict,
    accrete,
    control,
    handle_event,
    next_depth,
    request_context,
    with_control,
)
from chamberlain.plugins.input_schema import InvalidSchema, compile_input_schema
from chamberlain.records import Job, JobStatus, NewJob, RoutePlan, StoredEvent, rfc3339
from chamberlain.relay_rules import RELAY_COMMAND, RELAY_PLUGIN, build_envelope
from chamberlain.routing.conditions import (
    ConditionError,
    check_condition_path,
    evaluate,
    secret_paths,
    visible_config,
)
from chamberlain.routing.graph import (
    Graph,
    call_problems,
    compile_graph,
    route_depths,
    unreachable,
)
from chamberlain.routing.templates import (
    TemplateError,
    check_baggage,
    check_template,
    claim_baggage,
    render,
)
from chamberlain.runs import ApprovalSpec, StepGate, Verdict

log = logging.getLogger("chamberlain.router")

#: Hops from a tree's root after which nothing more is routed: a guard against
#: plugins whose events feed each other forever.
MAX_DEPTH = 32
DEFAULT_COMMAND = "handle"
SKIPPED_EVENT = "pipeline.step_skipped"
#: What a pipeline step that emitted no events hands the next step (Ductile's name).
STEP_SUCCEEDED_EVENT = "ductile.step.succeeded"
DEPTH_EVENT = "routing.depth_exceeded"
CORE_SOURCE = "chamberlain"
ROUTING_ERROR = "routing.error"
#: The event ``POST /pipeline/{name}`` starts a pipeline without ``on`` with.
API_PIPELINE_EVENT = "api.pipeline.trigger"
#: The hook signal a job's end gives, by the status it ended with.
_SIGNAL_OF: dict[str, str] = {
    status: signal for signal, statuses in HOOK_SIGNALS.items() for status in statuses
}


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


@attrs.frozen(kw_only=True)
class Shaped:
    """An approved step's job as it runs: its payload and the event it is sent, or
    why it cannot run (``error``)."""

    payload: Mapping[str, Any]
    event: Mapping[str, Any] | None
    error: str | None = None


@attrs.define(eq=False)
class Routing:
    """Routes and pipelines, checked against the loaded plugins."""

    routes: tuple[RouteConfig, ...]
    pipelines: tuple[PipelineConfig, ...]
    plugins: Mapping[str, BoundPlugin]
    new_id: Callable[[], str] = lambda: str(uuid.uuid4())
    #: This gateway's name (``service.name``): the origin of what it relays.
    service: str = "chamberlain"
    _by_name: dict[str, PipelineConfig] = attrs.field(init=False)
    _by_on: dict[str, list[PipelineConfig]] = attrs.field(init=False)
    _by_hook: dict[str, list[PipelineConfig]] = attrs.field(init=False)
    _graphs: dict[str, Graph] = attrs.field(init=False)
    _route_depths: dict[str, int] = attrs.field(init=False)
    _gates: dict[tuple[str, str], StepGate] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._by_name = {p.name: p for p in self.pipelines}
        self._by_on, self._by_hook = {}, {}
        self._graphs = {}
        self._gates = {}
        for i, pipeline in enumerate(self.pipelines):
            if pipeline.on is not None:
                self._by_on.setdefault(pipeline.on, []).append(pipeline)
            if pipeline.on_hook is not None:
                self._by_hook.setdefault(pipeline.on_hook, []).append(pipeline)
            # Problems are build_routing's to report; the first of a name wins.
            self._graphs.setdefault(pipeline.name, compile_graph(pipeline, f"pipelines[{i}]")[0])
        for name, graph in self._graphs.items():
            for node_id, node in graph.nodes.items():
                if node.step.gated:
                    self._gates[(name, node_id)] = step_gate(node.step)
        self._route_depths = route_depths(self._graphs)

    # -- questions the API asks ------------------------------------------------------

    def pipeline(self, name: str) -> PipelineConfig | None:
        """The pipeline called ``name``."""
        return self._by_name.get(name)

    def step_ids(self, name: str) -> tuple[str, ...]:
        """The ids of pipeline ``name``'s steps that run a job, in the config's order
        (a ``call`` step stands for the called pipeline's; empty for an unknown name)."""
        graph = self._graphs.get(name)
        if graph is None:
            return ()
        return tuple(i for i, node in graph.nodes.items() if node.step.call is None)

    def gate_of(self, pipeline: str, step_id: str) -> StepGate | None:
        """The run control of step ``step_id`` of ``pipeline`` (None: it has none, or
        there is no such step)."""
        return self._gates.get((pipeline, step_id))

    def approved_payload(self, job: Job, approval: Mapping[str, Any]) -> Shaped:
        """``job`` (a step that awaited ``approval``, as :meth:`Approval.to_json` gives
        it) shaped now: its ``with:`` applied, reading ``{approval.…}`` too, and its
        input event dropped unless it is a ``handle`` job (only those are sent one);
        or why it cannot be (the job then fails)."""
        routed = dict(job.payload)
        sent = job.event if job.command == DEFAULT_COMMAND else None
        graph = self._graphs.get(job.pipeline or "")
        node = graph.nodes.get(job.step_id) if graph is not None and job.step_id else None
        if node is None or job.step_id is None or job.pipeline is None:
            return Shaped(payload=routed, event=sent)
        step = node.step
        bound = self.plugins.get(job.plugin)
        event = job.event if job.event is not None else {"payload": routed}
        seen = request_context(
            plugin=job.plugin, pipeline=job.pipeline, step_id=job.step_id, context=job.context
        )
        payload: dict[str, Any] = routed
        where = f"pipeline {job.pipeline} step {job.step_id}"
        if step.with_ is not None:
            scope = {
                "event": event,
                "context": seen,
                "config": visible_config(bound.settings.config) if bound is not None else {},
                "approval": dict(approval),
            }
            try:
                payload = _apply_with(step.with_, routed, event, scope)
            except TemplateError as exc:
                return Shaped(payload={}, event=sent, error=f"{where}: with: {exc}")
        problem = bound.payload_problem(job.command, payload) if bound is not None else None
        if problem is not None:
            return Shaped(payload={}, event=sent, error=f"{where}: {problem}")
        return Shaped(payload=payload, event=sent)

    def pipelines_on(self, event_type: str) -> tuple[PipelineConfig, ...]:
        """The pipelines whose ``on`` is ``event_type``, in the order of the config."""
        return tuple(self._by_on.get(event_type, ()))

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

    def resolve_target(self, target: str | None) -> tuple[str, str] | None:
        """(plugin, command) for ``plugin`` or ``plugin.command``, if both exist."""
        if target is None:
            return None
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
        context: Mapping[str, Any] | None = None,
    ) -> RoutePlan:
        """Jobs for a pipeline started from outside: ``POST /pipeline/{name}`` (step one
        gets an event with ``payload``, typed as the pipeline's ``on``, or
        ``api.pipeline.trigger`` for an ``on-hook`` pipeline, as in Ductile), a
        webhook delivery or a relayed event (step one gets that ``event``).
        ``context`` seeds the run's baggage (a relay peer's admitted baggage)."""
        if event is None:
            event = StoredEvent(
                event_id=self.new_id(),
                job_id="",
                type=pipeline.on or API_PIPELINE_EVENT,
                source="api",
                payload=dict(payload),
                dedupe_key=None,
                created_at=now,
            ).envelope()
        key = event.get("dedupe_key")
        source = _Input(
            event=event,
            event_id=event.get("event_id"),
            dedupe_key=key if isinstance(key, str) and key else None,
        )
        jobs, skips = self._step_jobs(
            pipeline,
            self._graphs[pipeline.name].entries,
            source,
            parent=None,
            context=dict(context or {}),
            submitted_by=submitted_by,
            now=now,
        )
        if jobs:
            # Steps skipped before the first job are told about on that job, the root.
            skips = [attrs.evolve(s, job_id=jobs[0].id) for s in skips]
        return RoutePlan(events=tuple(skips), jobs=tuple(jobs))

    def plan(self, job: Job, now: float) -> RoutePlan:
        """Everything the ended ``job`` sets in motion: for a job that did not
        succeed, its hooks only."""
        hooks = self._hooks(job, now)
        if job.status is not JobStatus.SUCCEEDED:
            return hooks
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
        limit = self._depth_limit(job)
        if limit and job.depth + 1 > limit:
            if not events and not self.active:
                return RoutePlan()
            note = self._note(job, DEPTH_EVENT, {"depth": job.depth, "limit": limit}, now)
            return RoutePlan(events=(*events, note, *hooks.events), jobs=hooks.jobs)
        inputs = [_routed(e, job, response.get("result")) for e in events]
        if not inputs:
            inputs = [_result_input(job, now, self.new_id())]
        jobs: list[NewJob] = []
        notes: list[StoredEvent] = []
        started: set[str] = set()
        # The next step of the pipeline this job is a step of.
        if job.pipeline is not None and job.step_id is not None:
            pipeline = self._by_name.get(job.pipeline)
            node = self._graphs[pipeline.name].nodes.get(job.step_id) if pipeline else None
            if pipeline is not None and node is not None:
                for source in inputs:
                    more, skips = self._step_jobs(
                        pipeline,
                        node.successors,
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
                if not self._admits(pipeline, job, source, job.context, notes, now):
                    continue
                more, skips = self._step_jobs(
                    pipeline,
                    self._graphs[pipeline.name].entries,
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
                        payload=source.event.get("payload", {}),
                        source=source,
                        context=_one_hop_on(job),
                        submitted_by=f"route:{job.plugin}",
                    )
                )
            # Pipelines whose `on` is this event type.
            for pipeline in self._by_on.get(event.type, ()):
                if pipeline.name in started or pipeline.name == job.pipeline:
                    continue
                matched = True
                if not self._admits(pipeline, job, source, job.context, notes, now):
                    continue
                more, skips = self._step_jobs(
                    pipeline,
                    self._graphs[pipeline.name].entries,
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
        return RoutePlan(events=(*events, *notes, *hooks.events), jobs=(*jobs, *hooks.jobs))

    # -- internals ---------------------------------------------------------------------

    def _depth_limit(self, job: Job) -> int:
        """How many hops from its root ``job`` may be and still route (0: no limit):
        its pipeline's ``max_depth`` when set, :data:`MAX_DEPTH` otherwise."""
        pipeline = self._by_name.get(job.pipeline) if job.pipeline is not None else None
        if pipeline is not None and pipeline.max_depth is not None:
            return pipeline.max_depth
        return MAX_DEPTH

    def _hooks(self, job: Job, now: float) -> RoutePlan:
        """The ``on-hook`` pipelines the end of ``job`` starts, each a tree of its own.

        As in Ductile's ``maybeFireHooks``: only a job that is not a pipeline step
        (so a hook pipeline's own jobs start no hooks), only when its plugin has
        ``notify_on_complete``, and each pipeline's ``from_plugin`` and ``if`` are
        checked against the hook's payload with an empty context.  The hook event is
        stored on ``job``, so its tree shows that hooks fired.
        """
        signal = _SIGNAL_OF.get(job.status.value)
        bound = self.plugins.get(job.plugin)
        if (
            signal is None
            or job.pipeline is not None
            or bound is None
            or not bound.settings.notify_on_complete
            or signal not in self._by_hook
        ):
            return RoutePlan()
        payload: dict[str, Any] = {
            "job_id": job.id,
            "plugin": job.plugin,
            "command": job.command,
            "status": job.status.value,
        }
        if job.status is JobStatus.SUCCEEDED:
            response = job.result if isinstance(job.result, Mapping) else {}
            payload["result"] = response.get("result")
        elif job.last_error is not None:
            payload["error"] = job.last_error
        event = StoredEvent(
            event_id=self.new_id(),
            job_id=job.id,
            type=signal,
            source=CORE_SOURCE,
            payload=payload,
            dedupe_key=None,
            created_at=now,
        )
        source = _Input(event=event.envelope(), event_id=event.event_id)
        notes: list[StoredEvent] = []
        jobs: list[NewJob] = []
        for pipeline in self._by_hook[signal]:
            if not self._admits(pipeline, job, source, {}, notes, now):
                continue
            started = self.start(
                pipeline, payload, submitted_by=f"hook:{pipeline.name}", now=now, event=source.event
            )
            notes.extend(started.events)
            jobs.extend(started.jobs)
        if not jobs and not notes:
            return RoutePlan()
        return RoutePlan(events=(event, *notes), jobs=tuple(jobs))

    def _admits(
        self,
        pipeline: PipelineConfig,
        job: Job,
        source: _Input,
        context: Mapping[str, Any],
        notes: list[StoredEvent],
        now: float,
    ) -> bool:
        """Whether ``job``'s output ``source`` starts ``pipeline``: its ``from_plugin``
        names the job's plugin and its ``if`` holds on the input and ``context``.

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
            "context": context,
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
        node_ids: Sequence[str],
        source: _Input,
        *,
        parent: Job | None,
        context: Mapping[str, Any],
        submitted_by: str,
        now: float,
    ) -> tuple[list[NewJob], list[StoredEvent]]:
        """The jobs of nodes ``node_ids`` of ``pipeline``, each on ``source``.

        A node whose ``if:`` does not hold is skipped with a note, and the nodes after
        it get the same input; a ``call`` node stands for the called pipeline's first
        nodes, whose jobs are steps of that pipeline and keep this run's context.
        """
        graph = self._graphs[pipeline.name]
        jobs: list[NewJob] = []
        skips: list[StoredEvent] = []
        if not control(context).get("pipeline_instance_id"):
            # A start: one run, whichever nodes it begins with (Ductile draws one
            # instance id per pipeline for each event that starts it).
            context = with_control(context, instance_id=self.new_id())
        for node_id in node_ids:
            step = graph.nodes[node_id].step
            target = self.resolve_target(step.uses)
            bound = self.plugins.get(target[0]) if target is not None else None
            scope: dict[str, Any] = {
                "payload": source.event.get("payload", {}),
                "event": source.event,
                "context": context,
                "config": visible_config(bound.settings.config) if bound is not None else {},
            }
            step_context: Mapping[str, Any] = context
            claim_error = None
            if step.relay is not None:
                step_context = self._run_context(pipeline, parent, context)
                scope["context"] = request_context(
                    plugin=RELAY_PLUGIN,
                    pipeline=pipeline.name,
                    step_id=step.id,
                    context=step_context,
                )
            elif target is not None:
                # As in Ductile, a step's if: sees the context its plugin would be
                # sent: the run's baggage with this step's claims, and the ductile_*
                # keys.
                step_context, claim_error = self._claims(pipeline, step, scope, parent, context)
                scope["context"] = request_context(
                    plugin=target[0], pipeline=pipeline.name, step_id=step.id, context=step_context
                )
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
                onward, following = pipeline, graph.nodes[node_id].successors
            elif step.call is not None:
                if condition_error is not None:
                    # No plugin to record a failed job of: the reason is a note.
                    skips.append(self._error_note(parent, pipeline, condition_error, now))
                    continue
                onward, following = self._by_name[step.call], self._graphs[step.call].entries
            elif step.relay is not None:
                jobs.append(
                    self._relay_job(
                        pipeline,
                        step,
                        source,
                        scope,
                        parent,
                        step_context,
                        submitted_by,
                        error=condition_error,
                    )
                )
                continue
            else:
                jobs.append(
                    self._step_job(
                        pipeline,
                        step,
                        source,
                        scope,
                        parent,
                        step_context,
                        submitted_by,
                        error=condition_error or claim_error,
                    )
                )
                continue
            more, more_skips = self._step_jobs(
                onward,
                following,
                source,
                parent=parent,
                context=context,
                submitted_by=submitted_by,
                now=now,
            )
            jobs.extend(more)
            skips.extend(more_skips)
        return jobs, skips

    def _error_note(
        self, parent: Job | None, pipeline: PipelineConfig, error: str, now: float
    ) -> StoredEvent:
        return StoredEvent(
            event_id=self.new_id(),
            job_id=parent.id if parent else "",
            type=ROUTING_ERROR,
            source=CORE_SOURCE,
            payload={"pipeline": pipeline.name, "error": error},
            dedupe_key=None,
            created_at=now,
        )

    def _claims(
        self,
        pipeline: PipelineConfig,
        step: StepConfig,
        scope: Mapping[str, Any],
        parent: Job | None,
        context: Mapping[str, Any],
    ) -> tuple[Mapping[str, Any], str | None]:
        """The step's context, and the reason it could not be worked out (or None).

        That is ``context`` (the run's accumulated baggage; empty when this step
        starts a run) with the run's control block for this hop and the step's
        ``baggage:`` claims accreted onto it, as Ductile's
        ``contextUpdatesForDispatch`` does. Claims read the step's input and the
        run's baggage so far.
        """
        step_context = self._run_context(pipeline, parent, context)
        if not step.baggage:
            return step_context, None
        try:
            claims = claim_baggage(step.baggage, {**scope, "context": context})
            return accrete(step_context, claims), None
        except (TemplateError, BaggageConflict) as exc:
            return step_context, f"pipeline {pipeline.name} step {step.id}: baggage: {exc}"

    def _step_job(
        self,
        pipeline: PipelineConfig,
        step: StepConfig,
        source: _Input,
        scope: Mapping[str, Any],
        parent: Job | None,
        step_context: Mapping[str, Any],
        submitted_by: str,
        *,
        error: str | None = None,
    ) -> NewJob:
        """The job for ``step``, with the context :meth:`_claims` worked out; born
        failed with ``error`` (its ``if:`` or ``baggage:`` could not be worked out)
        or when its ``with:`` cannot be.

        Its payload is the input event's payload with ``with:`` applied on top, each
        key rendered against the payload as the plugin will see it (the request
        context merged in) and the request context (``scope["context"]``).
        """
        target = self.resolve_target(step.uses)
        assert target is not None, "validated at start-up"
        routed: Mapping[str, Any] = source.event.get("payload", {})
        payload: Mapping[str, Any] = routed
        # A step awaiting approval may read it in its with:, which is not given yet:
        # its job is stored with its input, held, and shaped once it is approved
        # (approved_payload).
        deferred = error is None and _awaits_approval(step)
        if error is None and not deferred and step.with_ is not None:
            try:
                payload = _apply_with(step.with_, routed, source.event, scope)
            except TemplateError as exc:
                error = f"pipeline {pipeline.name} step {step.id}: with: {exc}"
        if error is not None:
            payload = {}
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
            checked=not deferred,
        )

    def _relay_job(
        self,
        pipeline: PipelineConfig,
        step: StepConfig,
        source: _Input,
        scope: Mapping[str, Any],
        parent: Job | None,
        step_context: Mapping[str, Any],
        submitted_by: str,
        *,
        error: str | None = None,
    ) -> NewJob:
        """The ``core.relay`` job of relay ``step``: its payload names the instance and
        holds the envelope, built now from the step's input so that every retry sends
        the same one. Born failed with ``error``, or when the envelope cannot be built
        (a path the input lacks)."""
        relay = step.relay
        assert relay is not None
        job_id = self.new_id()
        payload: dict[str, Any] = {}
        if error is None:
            given = source.dedupe_key or source.event.get("dedupe_key")
            try:
                envelope = build_envelope(
                    event=relay.event.strip(),
                    with_=relay.with_,
                    dedupe_key=relay.dedupe_key,
                    baggage=relay.baggage,
                    scope=scope,
                    input_dedupe_key=given if isinstance(given, str) else None,
                    instance=self.service,
                    job_id=job_id,
                    event_id=source.event.get("event_id"),
                )
                payload = {"to": relay.to.strip(), "envelope": envelope}
            except TemplateError as exc:
                error = f"pipeline {pipeline.name} step {step.id}: {exc}"
        bound = self.plugins.get(RELAY_PLUGIN)
        return NewJob(
            id=job_id,
            plugin=RELAY_PLUGIN,
            command=RELAY_COMMAND,
            payload=payload,
            # No event: the runner then hands the relay sender this payload.
            event=None,
            context=dict(step_context),
            submitted_by=submitted_by,
            max_attempts=bound.max_attempts if bound is not None else RetryConfig().max_attempts,
            dedupe_key=source.dedupe_key,
            parent_job_id=parent.id if parent else None,
            source_event_id=source.event_id,
            pipeline=pipeline.name,
            step_id=step.id,
            root_job_id=(parent.root_job_id or parent.id) if parent else None,
            depth=parent.depth + 1 if parent else 0,
            error=error,
        )

    def _run_context(
        self, pipeline: PipelineConfig, parent: Job | None, context: Mapping[str, Any]
    ) -> dict[str, Any]:
        """``context`` with the run's control block for one more hop, as Ductile's
        ``resolveCompiledRoute`` and ``contextUpdatesForDispatch`` set it.

        The run's ``pipeline_instance_id`` is already in ``context``
        (:meth:`_step_jobs` draws it when a run starts). Every step is one
        ``route_depth`` past the job it came from (a job outside any run is at 0,
        so a run's first step is at 1, or further when another run's step started
        it). ``route_max_depth`` is the one of the job it came from, when it has
        one, or else this pipeline's
        (:meth:`route_max_depth`). The values are what plugins read; the depth
        limits that stop routing are the planner's own (see ``_depth_limit``).
        """
        before = parent.context if parent is not None else {}
        limit = control(before).get("route_max_depth") or self.route_max_depth(pipeline)
        return with_control(context, depth=next_depth(before), max_depth=limit)

    def route_max_depth(self, pipeline: PipelineConfig) -> int:
        """The ``route_max_depth`` a run of ``pipeline`` starts with: its ``max_depth``
        when set (0: no limit, not recorded), otherwise its longest path of steps."""
        if pipeline.max_depth is not None:
            return pipeline.max_depth
        return self._route_depths.get(pipeline.name, 1)

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
        checked: bool = True,
    ) -> NewJob:
        plugin, command = target
        if error is None and checked:
            error = self.plugins[plugin].payload_problem(command, payload)
            if error is not None and pipeline is not None:
                error = f"pipeline {pipeline} step {step_id}: {error}"
        return NewJob(
            id=self.new_id(),
            plugin=plugin,
            command=command,
            payload=dict(payload),
            # As in Ductile, only a handle job is sent an event; a job shaped after
            # its approval keeps its input event to be shaped from.
            event=dict(source.event) if command == DEFAULT_COMMAND or not checked else None,
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


def _result_input(job: Job, now: float, event_id: str) -> _Input:
    """A job that emitted no events hands its result on, as an event of its own.

    A pipeline step's is Ductile's ``ductile.step.succeeded`` with
    ``{"result": result}``; any other job's is ``<plugin>.<command>.result``, whose
    payload is an object result itself (or ``{"result": result}``).
    """
    response = job.result if isinstance(job.result, Mapping) else {}
    result = response.get("result")
    if job.pipeline is not None:
        kind, payload = STEP_SUCCEEDED_EVENT, {"result": result}
    else:
        kind = f"{job.plugin}.{job.command}.result"
        payload = dict(result) if isinstance(result, Mapping) else {"result": result}
    # Ductile gives it an id as it routes it; it is not a stored event, so the jobs
    # it starts name no source event.
    return _Input(
        event={
            "type": kind,
            "payload": _from_upstream(payload, job),
            "source": job.plugin,
            "timestamp": rfc3339(now),
            "event_id": event_id,
        },
        event_id=None,
    )


def _routed(event: StoredEvent, job: Job, result: object) -> _Input:
    """What the dispatch of ``event``, emitted by ``job``, carries, as Ductile builds it:
    a string ``result`` of the response in the payload (unless it has one) and the
    ``ductile_upstream_*`` keys naming where it came from."""
    payload = dict(event.payload)
    if isinstance(result, str) and result.strip():
        payload.setdefault("result", result)
    envelope = {**event.envelope(), "payload": _from_upstream(payload, job)}
    return _Input(event=envelope, event_id=event.event_id, dedupe_key=event.dedupe_key)


def _one_hop_on(job: Job) -> dict[str, Any]:
    """A routed job's context: its source's, one ``route_depth`` further on, as
    Ductile's ``contextUpdatesForDispatch`` records it for a dispatch in no pipeline."""
    return with_control(job.context, depth=next_depth(job.context))


def _from_upstream(payload: Mapping[str, Any], job: Job) -> dict[str, Any]:
    out = dict(payload)
    out.setdefault("ductile_upstream_plugin", job.plugin)
    if job.pipeline:
        out.setdefault("ductile_upstream_pipeline", job.pipeline)
    if job.step_id:
        out.setdefault("ductile_upstream_step_id", job.step_id)
    return out


def _apply_with(
    with_: Mapping[str, Any],
    routed: Mapping[str, Any],
    event: Mapping[str, Any],
    scope: Mapping[str, Any],
) -> dict[str, Any]:
    """``routed`` (a step's input payload) with ``with_`` applied on top, each key
    rendered against ``scope`` and the payload as the plugin will see it (the
    request context, ``scope["context"]``, merged in)."""
    seen = scope["context"]
    with_scope = {**scope, "payload": handle_event(event, routed, seen)["payload"]}
    return {**routed, **render(with_, with_scope)}


def _awaits_approval(step: StepConfig) -> bool:
    return step.approval is not None and step.approval.required


def step_gate(step: StepConfig) -> StepGate:
    """A step's run control (``approval``, ``check``, ``wait_for``) as the run rules
    read it."""
    approval = None
    if step.approval is not None:
        approval = ApprovalSpec(
            required=step.approval.required,
            timeout=step.approval.timeout,
            on_timeout=Verdict(step.approval.on_timeout),
            inputs_schema=step.approval.inputs_schema,
        )
    return StepGate(
        approval=approval,
        check=step.check.uses if step.check is not None else None,
        wait_for_ci=step.wait_for == "ci",
    )


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# -- start-up validation ---------------------------------------------------------------


def build_routing(
    routes: Sequence[RouteConfig],
    pipelines: Sequence[PipelineConfig],
    plugins: Mapping[str, BoundPlugin],
    *,
    source: Any = None,
    service: str = "chamberlain",
) -> Routing:
    """Check routes and pipelines against the loaded plugins and compile them.

    Every problem names its YAML path: unknown plugins or commands, bad paths in
    ``with:``/``if:``/``baggage:``, duplicate names and step ids, and pipelines that
    would start each other in a cycle.
    """
    routing = Routing(
        routes=tuple(routes), pipelines=tuple(pipelines), plugins=plugins, service=service
    )
    problems: list[str] = []
    for i, route in enumerate(routes):
        where = f"routes[{i}]"
        if route.source not in plugins:
            problems.append(f"{where}.from: no loaded plugin named {route.source!r}")
        if routing.resolve_target(route.to) is None:
            problems.append(f"{where}.to: {route.to!r} is not a loaded plugin[.command]")
    seen: dict[str, int] = {}
    graphs: dict[str, Graph] = {}
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
        if pipeline.synchronous and (pipeline.on is None or "." not in pipeline.on):
            key = "on" if pipeline.on is not None else "on-hook"
            problems.append(
                f"{where}.{key}: a synchronous pipeline starts from a trigger: write plugin.command"
            )
        graph, graph_problems = compile_graph(pipeline, where)
        graphs.setdefault(pipeline.name, graph)
        problems.extend(graph_problems)
        for node in (*graph.nodes.values(), *graph.shadowed):
            step, at = node.step, node.at
            target = routing.resolve_target(step.uses)
            if step.uses is not None and target is None:
                problems.append(f"{at}.uses: {step.uses!r} is not a loaded plugin[.command]")
            if step.with_ is not None:
                problems.extend(
                    f"{at}.with: {p}"
                    for p in check_template(step.with_, approval=_awaits_approval(step))
                )
            problems.extend(f"{at}.baggage.{p}" for p in check_baggage(step.baggage))
            problems.extend(_control_problems(routing, step, at))
            if step.relay is not None:
                relay = step.relay
                for key, value in sorted((relay.with_ or {}).items()):
                    problems.extend(f"{at}.relay.with.{key}: {p}" for p in check_template(value))
                if relay.dedupe_key is not None:
                    problems.extend(
                        f"{at}.relay.dedupe_key: {p}" for p in check_template(relay.dedupe_key)
                    )
                problems.extend(f"{at}.relay.baggage.{p}" for p in check_baggage(relay.baggage))
            if step.if_ is not None:
                problems.extend(_condition_paths(step.if_, f"{at}.if", config=True))
                config = plugins[target[0]].settings.config if target is not None else {}
                problems.extend(
                    f"{at}.if: {path} holds a ${{secret:...}} reference, which a condition"
                    " cannot read"
                    for path in secret_paths(step.if_, config)
                )
        for node in unreachable(graph):
            log.warning(
                "%s: never runs: the steps after a call do not run (as in Ductile, the"
                " called pipeline's last step ends the run)",
                node.at,
                extra={"component": "router", "pipeline": pipeline.name},
            )
        if pipeline.if_ is not None:
            problems.extend(_condition_paths(pipeline.if_, f"{where}.if", config=False))
        if pipeline.from_plugin is not None and pipeline.from_plugin not in plugins:
            problems.append(f"{where}.from_plugin: no loaded plugin named {pipeline.from_plugin!r}")
    problems.extend(call_problems(graphs))
    problems.extend(_cycles(pipelines, routing))
    if problems:
        raise ConfigError(problems, source=source)
    return routing


def _control_problems(routing: Routing, step: StepConfig, at: str) -> list[str]:
    """What is wrong with a step's run control: a check that is no loaded
    ``plugin.command``, an approval's ``inputs_schema`` that is no JSON Schema."""
    problems = []
    if step.check is not None and routing.resolve_target(step.check.uses) is None:
        problems.append(f"{at}.check.uses: {step.check.uses!r} is not a loaded plugin[.command]")
    if step.approval is not None and step.approval.inputs_schema is not None:
        try:
            compile_input_schema(step.approval.inputs_schema)
        except InvalidSchema as exc:
            problems.append(f"{at}.approval.inputs_schema: {exc}")
        required = step.approval.inputs_schema.get("required")
        if step.approval.on_timeout == "approve" and step.approval.timeout and required:
            # The timeout's approve carries no inputs: the step would fail each time.
            problems.append(
                f"{at}.approval.on_timeout: approve gives no inputs, but inputs_schema"
                f" requires {', '.join(map(str, required))}"
            )
    return problems


def _condition_paths(condition: ConditionConfig, at: str, *, config: bool) -> list[str]:
    """Problems with the paths of ``condition`` and of the conditions it holds;
    ``config`` allows the ``config`` root (a step's ``if:``)."""
    if condition.path is not None:
        try:
            check_condition_path(condition.path, config=config)
        except TemplateError as exc:
            return [f"{at}.path: {exc}"]
        return []
    problems: list[str] = []
    for key, children in (("all", condition.all_), ("any", condition.any_)):
        for i, child in enumerate(children):
            problems.extend(_condition_paths(child, f"{at}.{key}[{i}]", config=config))
    if condition.not_ is not None:
        problems.extend(_condition_paths(condition.not_, f"{at}.not", config=config))
    return problems


def _cycles(pipelines: Sequence[PipelineConfig], routing: Routing) -> list[str]:
    """Pipelines that start one another in a loop (through their steps' ``uses``,
    nested ones included; loops through ``call`` are :func:`call_problems`')."""
    starts: dict[str, list[int]] = {}
    for i, pipeline in enumerate(pipelines):
        if pipeline.on is not None:
            starts.setdefault(pipeline.on, []).append(i)

    def successors(i: int) -> list[int]:
        found: list[int] = []
        graph, _ = compile_graph(pipelines[i], f"pipelines[{i}]")
        for node in graph.nodes.values():
            # Resolved as the planner will run it: a dotted plugin name is not split.
            target = routing.resolve_target(node.step.uses)
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
