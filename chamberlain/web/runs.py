"""Runs: ``GET /runs``, ``GET /runs/{run_id}``, its events, and its control.

Every invocation of a pipeline is a run: ``POST /pipeline/{name}``, a job of its
``on`` that succeeded, an event of its ``on`` type, a webhook delivery.  Its id is
the ``pipeline_instance_id`` every job of its steps carries (``run_id`` on each
job); its steps are the pipeline's, in the config's order, each with its jobs and a
status read from them and from its record (:mod:`chamberlain.runs`).
``GET /job/{id}/tree`` still shows the jobs as a tree.

The actions (``POST /runs/{id}/pause`` ...) and a step's approval or reject are
decided by the store, in the transaction that reads the run: a 409 says why the
run's state does not allow it.  Approval inputs are checked here against the
step's ``inputs_schema`` before anything is asked of the store.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from chamberlain.plugins.input_schema import InvalidPayload, compile_input_schema
from chamberlain.records import JobMessage, rfc3339
from chamberlain.runs import (
    Approval,
    PipelineRun,
    Refused,
    RunAction,
    RunStatus,
    StepProgress,
    StepStatus,
    Unchanged,
    Verdict,
)
from chamberlain.web.auth import JOBS_RO, JOBS_RW, Scoped
from chamberlain.web.errors import ApiError, bad_request, error_body, not_found
from chamberlain.web.handler import Call, Handler, Reply
from chamberlain.web.intake import (
    DISK_FULL,
    NO_QUERY,
    TOO_LARGE,
    UNAVAILABLE,
    decode_json_object,
    refuse_unknown_fields,
)
from chamberlain.web.jobs import int_param, single_param
from chamberlain.web.spec import BodySpec, Param, ResponseSpec, Route, object_schema

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
_STATUSES: Final = tuple(status.value for status in RunStatus)


def run_json(run: PipelineRun, step_ids: tuple[str, ...]) -> dict[str, Any]:
    """A run as ``GET /runs/{id}`` shows it: its steps in order, each with its jobs."""
    return {
        "run_id": run.run_id,
        "pipeline": run.pipeline,
        "status": run.status.value,
        "created_at": rfc3339(run.created_at),
        "started_at": rfc3339(run.started_at),
        "completed_at": rfc3339(run.completed_at),
        "paused": run.paused,
        "steps": [_step_json(step) for step in run.steps(step_ids)],
    }


def _step_json(step: StepProgress) -> dict[str, Any]:
    out: dict[str, Any] = {
        "step_id": step.step_id,
        "status": step.status.value,
        "job_ids": list(step.job_ids),
        "started_at": rfc3339(step.started_at),
        "completed_at": rfc3339(step.completed_at),
    }
    record = step.record
    if record is not None and (record.approval is not None or record.awaiting_since is not None):
        approval = None if record.approval is None else record.approval.to_json()
        if approval is not None:
            approval["at"] = rfc3339(approval["at"])
        out["approval"] = {
            "awaiting_since": rfc3339(record.awaiting_since),
            "timeout_at": rfc3339(record.timeout_at),
            "decision": approval,
        }
    if record is not None and record.gate is not None:
        gate = record.gate.to_json()
        gate["at"] = rfc3339(gate["at"])
        out[record.gate.kind.value] = gate
    return out


class RunConflict(ApiError):
    """409 with the run's status, so a client need not ask again."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(409, message)
        self.run_status = status

    def body(self) -> dict[str, Any]:
        """``{"error": ..., "status": <the run's status>}``."""
        return error_body(self.message, status=self.run_status)


async def _run_or_404(call: Call, run_id: str) -> PipelineRun:
    run = await call.gateway.get_run(run_id)
    if run is None:
        raise not_found(f"unknown run {run_id!r}")
    return run


def _action_handler(action: RunAction) -> Handler:
    async def act(call: Call) -> Reply:
        run_id = call.path["run_id"]
        identity = call.require(JOBS_RW, action=f"{action.value} a run")
        body = decode_json_object(await call.read_body())
        refuse_unknown_fields(body, ("stop_running",) if action is RunAction.PAUSE else ())
        stop_running = body.get("stop_running", False)
        if not isinstance(stop_running, bool):
            raise bad_request("stop_running must be true or false")
        done = await call.gateway.act_on_run(
            run_id, action, actor=identity.submitted_by, stop_running=stop_running
        )
        outcome = done.answer
        if outcome is None or done.status is None:
            raise not_found(f"unknown run {run_id!r}")
        if isinstance(outcome, Refused):
            raise RunConflict(
                f"cannot {action.value} run {run_id}: {outcome.reason}", status=done.status.value
            )
        return Reply({"run_id": run_id, "status": done.status.value, "message": outcome.message})

    return act


def _decision_handler(verdict: Verdict) -> Handler:
    word_name = "approve" if verdict is Verdict.APPROVE else "reject"

    async def decide(call: Call) -> Reply:
        run_id, step_id = call.path["run_id"], call.path["step_id"]
        identity = call.require(JOBS_RW, action=f"{word_name} a step of a run")
        body = decode_json_object(await call.read_body())
        refuse_unknown_fields(
            body, ("comment", "inputs") if verdict is Verdict.APPROVE else ("comment",)
        )
        comment = body.get("comment", "")
        if not isinstance(comment, str):
            raise bad_request("comment must be a string")
        inputs = body.get("inputs", {})
        if not isinstance(inputs, dict):
            raise bad_request("inputs must be a JSON object")
        run = await _run_or_404(call, run_id)
        routing = call.gateway.routing
        if step_id not in routing.step_ids(run.pipeline):
            raise not_found(f"run {run_id} has no step {step_id!r}")
        gate = routing.gate_of(run.pipeline, step_id)
        if verdict is Verdict.APPROVE and gate is not None and gate.approval is not None:
            schema = gate.approval.inputs_schema
            if schema is not None:
                try:
                    compile_input_schema(schema).check(inputs, path="inputs")
                except InvalidPayload as exc:
                    raise bad_request(str(exc)) from None
        word = Approval(
            verdict=verdict,
            by=identity.submitted_by,
            at=call.site.now(),
            comment=comment,
            inputs=inputs,
        )
        done = await call.gateway.decide_step(run_id, step_id, word)
        outcome = done.answer
        if outcome is None or done.status is None:
            raise not_found(f"unknown run {run_id!r} or step {step_id!r}")
        if isinstance(outcome, Refused):
            raise RunConflict(
                f"cannot {word_name} step {step_id} of run {run_id}: {outcome.reason}",
                status=done.status.value,
            )
        changed = not isinstance(outcome, Unchanged)
        decision = outcome.approval if isinstance(outcome, Unchanged) else outcome
        shown = decision.to_json()
        shown["at"] = rfc3339(shown["at"])
        said = "approved" if decision.verdict is Verdict.APPROVE else "rejected"
        return Reply(
            {
                "run_id": run_id,
                "step_id": step_id,
                "status": done.status.value,
                "message": (
                    f"step {step_id} {said}" if changed else f"step {step_id} was {said} already"
                ),
                "changed": changed,
                "approval": shown,
            }
        )

    return decide


#: The kinds of a run's events.
EVENT_KINDS: Final = (
    "run.created",
    "run.status",
    "step.status",
    "action",
    "approval.awaited",
    "approval",
    "check.awaited",
    "check",
    "ci.awaited",
    "ci",
)


def event_json(message: JobMessage) -> dict[str, Any]:
    """A run's event as ``GET /runs/{id}/events`` lists it."""
    detail = dict(message.detail or {})
    return {
        "id": message.id,
        "at": rfc3339(message.ts),
        "kind": detail.pop("kind", None),
        "actor": detail.pop("actor", None),
        "step_id": detail.pop("step_id", None),
        "job_id": message.job_id,
        "text": message.text,
        "detail": _event_times({key: value for key, value in detail.items() if key != "run_id"}),
    }


def _event_times(detail: dict[str, Any]) -> dict[str, Any]:
    """The times an event's detail holds (stored as epoch seconds), as the API writes
    every time: RFC 3339."""
    if isinstance(detail.get("timeout_at"), (int, float)):
        detail["timeout_at"] = rfc3339(detail["timeout_at"])
    approval = detail.get("approval")
    if isinstance(approval, dict) and isinstance(approval.get("at"), (int, float)):
        detail["approval"] = {**approval, "at": rfc3339(approval["at"])}
    return detail


async def run_events(call: Call) -> Reply:
    """``GET /runs/{run_id}/events``: what happened to a run, oldest first."""
    run_id = call.path["run_id"]
    query = call.query
    kinds: set[str] = set()
    for value in query.get("kind", ()):
        for part in value.split(","):
            if part.strip() not in EVENT_KINDS:
                raise bad_request(
                    f"unknown kind {part.strip()!r}; expected one of: {', '.join(EVENT_KINDS)}"
                )
            kinds.add(part.strip())
    limit = int_param(query, "limit", MAX_LIMIT, 1, 5000)
    after = int_param(query, "after", 0, 0, 2**62)
    await _run_or_404(call, run_id)
    events = await call.gateway.run_events(
        run_id, kinds=frozenset(kinds), after_id=after, limit=limit
    )
    return Reply({"run_id": run_id, "events": [event_json(event) for event in events]})


def _statuses(values: tuple[str, ...] | list[str]) -> frozenset[RunStatus]:
    found: set[RunStatus] = set()
    for value in values:
        for part in value.split(","):
            try:
                found.add(RunStatus(part.strip()))
            except ValueError:
                raise bad_request(
                    f"unknown status {part.strip()!r}; expected one of: {', '.join(_STATUSES)}"
                ) from None
    return frozenset(found)


async def list_runs(call: Call) -> Reply:
    """``GET /runs``: runs, the newest first, with their steps."""
    query = call.query
    pipeline = single_param(query, "pipeline")
    statuses = _statuses(list(query.get("status", ())))
    limit = int_param(query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    offset = int_param(query, "offset", 0, 0, 2**62)
    runs, total = await call.gateway.list_runs(
        pipeline=pipeline, statuses=statuses, limit=limit, offset=offset
    )
    routing = call.gateway.routing
    return Reply(
        {
            "runs": [run_json(run, routing.step_ids(run.pipeline)) for run in runs],
            "total": total,
        }
    )


async def get_run(call: Call) -> Reply:
    """``GET /runs/{run_id}``: one run."""
    run_id = call.path["run_id"]
    run = await call.gateway.get_run(run_id)
    if run is None:
        raise not_found(f"unknown run {run_id!r}")
    return Reply(run_json(run, call.gateway.routing.step_ids(run.pipeline)))


_TIME = {"type": ["string", "null"], "format": "date-time"}
_GATE = {
    "type": "object",
    "description": "The step's check (check_job_id, notes) or CI wait (sha, signal).",
    "properties": {
        "state": {"enum": ["waiting", "passed", "failed"]},
        "job_id": {"type": "string", "description": "The step's job being judged."},
        "at": _TIME,
    },
    "required": ["state", "job_id", "at"],
}
_ONE_STATUS = "|".join(_STATUSES)

SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Run": object_schema(
        {
            "run_id": {"type": "string"},
            "pipeline": {"type": "string"},
            "status": {"type": "string", "enum": list(_STATUSES)},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": _TIME,
            "completed_at": _TIME,
            "paused": {"type": "boolean"},
            "steps": {
                "type": "array",
                "items": object_schema(
                    {
                        "step_id": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": [status.value for status in StepStatus],
                        },
                        "job_ids": {"type": "array", "items": {"type": "string"}},
                        "started_at": _TIME,
                        "completed_at": _TIME,
                        "approval": object_schema(
                            {
                                "awaiting_since": _TIME,
                                "timeout_at": _TIME,
                                "decision": {
                                    "oneOf": [
                                        {"type": "null"},
                                        {"$ref": "#/components/schemas/ApprovalDecision"},
                                    ]
                                },
                            }
                        ),
                        "check": _GATE,
                        "ci": _GATE,
                    },
                    required=["step_id", "status", "job_ids", "started_at", "completed_at"],
                ),
            },
        }
    ),
    "ApprovalDecision": object_schema(
        {
            "decision": {"enum": ["approved", "rejected"]},
            "by": {"type": "string", "description": "The token's name, or timeout."},
            "at": _TIME,
            "comment": {"type": "string"},
            "inputs": {"type": "object"},
        }
    ),
    "RunActionRequest": object_schema(
        {
            "stop_running": {
                "type": "boolean",
                "description": "pause only: stop the running step too; it runs again on resume.",
            }
        },
        required=[],
        closed=True,
    ),
    "RunActed": object_schema(
        {
            "run_id": {"type": "string"},
            "status": {"type": "string", "enum": list(_STATUSES)},
            "message": {"type": "string"},
        }
    ),
    "RunConflict": object_schema(
        {
            "error": {"type": "string"},
            "status": {"type": "string", "enum": list(_STATUSES), "description": "The run's."},
        }
    ),
    "ApprovalRequest": object_schema(
        {
            "comment": {"type": "string"},
            "inputs": {
                "type": "object",
                "description": (
                    "approve only: checked against the step's approval.inputs_schema;"
                    " the step reads them as {approval.inputs.x}."
                ),
            },
        },
        required=[],
        closed=True,
    ),
    "StepDecided": object_schema(
        {
            "run_id": {"type": "string"},
            "step_id": {"type": "string"},
            "status": {"type": "string", "enum": list(_STATUSES)},
            "message": {"type": "string"},
            "changed": {"type": "boolean", "description": "false: the same word again."},
            "approval": {"$ref": "#/components/schemas/ApprovalDecision"},
        }
    ),
    "RunEvents": object_schema(
        {
            "run_id": {"type": "string"},
            "events": {
                "type": "array",
                "items": object_schema(
                    {
                        "id": {"type": "integer"},
                        "at": _TIME,
                        "kind": {"enum": list(EVENT_KINDS)},
                        "actor": {"type": "string"},
                        "step_id": {"type": ["string", "null"]},
                        "job_id": {"type": "string"},
                        "text": {"type": "string"},
                        "detail": {"type": "object"},
                    }
                ),
            },
        }
    ),
    "Runs": object_schema(
        {
            "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}},
            "total": {"type": "integer", "minimum": 0},
        }
    ),
}

_RUN_ID = Param(name="run_id", location="path", description="The run's id.", required=True)

_ACTION_DOC: Final[Mapping[RunAction, str]] = {
    RunAction.PAUSE: (
        "No new step starts. With stop_running, the running step is stopped too (its"
        " process group terminated) and runs again on resume."
    ),
    RunAction.RESUME: "What is due starts at once.",
    RunAction.CANCEL: (
        "Terminates every running job of the run (their process groups), cancels the"
        " queued and held ones; the run ends cancelled."
    ),
    RunAction.RUN_NEXT_STEP: (
        "Runs the first pending, blocked or failed step now, even on a paused run."
    ),
    RunAction.RETRY_LATEST: "Runs the latest failed or blocked step again.",
}

_CONFLICT = ResponseSpec(
    status=409,
    description="The run's state does not allow it; the body says why.",
    schema="RunConflict",
)

_ACTION_ROUTES = tuple(
    Route(
        operation_id=f"run{action.name.title().replace('_', '')}",
        method="POST",
        path=f"/runs/{{run_id}}/{action.value}",
        handler=_action_handler(action),
        access=Scoped(JOBS_RW),
        summary=f"{action.value} a run",
        description=_ACTION_DOC[action] + " See docs/RUNS.md.",
        tag="pipelines",
        params=(_RUN_ID,),
        body=BodySpec(
            schema="RunActionRequest",
            description="Optional; pause takes {stop_running}.",
        ),
        responses=(
            ResponseSpec(status=200, description="Done.", schema="RunActed"),
            ResponseSpec(status=400, description="A bad body or a query parameter."),
            ResponseSpec(status=404, description="Unknown run."),
            _CONFLICT,
            TOO_LARGE,
            DISK_FULL,
            UNAVAILABLE,
        ),
    )
    for action in RunAction
)

_STEP_ID = Param(
    name="step_id", location="path", description="The step's id in its pipeline.", required=True
)

_DECISION_ROUTES = tuple(
    Route(
        operation_id=f"{word}Step",
        method="POST",
        path=f"/runs/{{run_id}}/steps/{{step_id}}/{word}",
        handler=_decision_handler(verdict),
        access=Scoped(JOBS_RW),
        summary=f"{word.title()} a step awaiting approval",
        description=(
            (
                "The step runs, reading the inputs as {approval.inputs.x}."
                if verdict is Verdict.APPROVE
                else "The step is not run; the run ends failed, with the reason."
            )
            + " Idempotent: the same word again is 200 with changed false; the other"
            " word after it is 409. Records who (the token's name) and when."
        ),
        tag="pipelines",
        params=(_RUN_ID, _STEP_ID),
        body=BodySpec(schema="ApprovalRequest", description="Optional: {comment, inputs}."),
        responses=(
            ResponseSpec(
                status=200, description="Decided (or decided so before).", schema="StepDecided"
            ),
            ResponseSpec(
                status=400, description="A bad body, or inputs its inputs_schema refuses."
            ),
            ResponseSpec(status=404, description="Unknown run or step."),
            _CONFLICT,
            TOO_LARGE,
            DISK_FULL,
            UNAVAILABLE,
        ),
    )
    for word, verdict in (("approve", Verdict.APPROVE), ("reject", Verdict.REJECT))
)

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listRuns",
        method="GET",
        path="/runs",
        handler=list_runs,
        access=Scoped(JOBS_RO),
        summary="Runs of pipelines, the newest first",
        description=(
            "Every invocation of a pipeline, with its steps and their jobs. See docs/RUNS.md."
        ),
        tag="pipelines",
        params=(
            Param(
                name="pipeline",
                location="query",
                description="Only runs of this pipeline.",
                schema={"type": "string", "minLength": 1},
            ),
            Param(
                name="status",
                location="query",
                description=(
                    "Only runs in these statuses: comma-separated and/or repeated"
                    f" ({', '.join(_STATUSES)})."
                ),
                schema={
                    "type": "string",
                    "pattern": f"^ *({_ONE_STATUS}) *(, *({_ONE_STATUS}) *)*$",
                },
                repeatable=True,
            ),
            Param(
                name="limit",
                location="query",
                description=f"Page size, 1 to {MAX_LIMIT}.",
                schema={
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_LIMIT,
                    "default": DEFAULT_LIMIT,
                },
            ),
            Param(
                name="offset",
                location="query",
                description="How many matching runs to skip.",
                schema={"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0},
            ),
        ),
        responses=(
            ResponseSpec(status=200, description="A page of runs.", schema="Runs"),
            ResponseSpec(status=400, description="Unknown parameter, bad status, limit or offset."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="getRun",
        method="GET",
        path="/runs/{run_id}",
        handler=get_run,
        access=Scoped(JOBS_RO),
        summary="One run of a pipeline",
        tag="pipelines",
        params=(_RUN_ID,),
        responses=(
            ResponseSpec(status=200, description="The run.", schema="Run"),
            NO_QUERY,
            ResponseSpec(status=404, description="Unknown run."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="runEvents",
        method="GET",
        path="/runs/{run_id}/events",
        handler=run_events,
        access=Scoped(JOBS_RO),
        summary="What happened to a run, oldest first",
        description=(
            "Every change of the run's and its steps' statuses, every action, approval,"
            " check verdict and CI report, with who and when. Also on /events/stream"
            " (event: run). See docs/RUNS.md."
        ),
        tag="pipelines",
        params=(
            _RUN_ID,
            Param(
                name="kind",
                location="query",
                description=(
                    f"Only these kinds, comma-separated and/or repeated ({', '.join(EVENT_KINDS)})."
                ),
                repeatable=True,
            ),
            Param(
                name="limit",
                location="query",
                description="At most this many, 1 to 5000.",
                schema={"type": "integer", "minimum": 1, "maximum": 5000, "default": MAX_LIMIT},
            ),
            Param(
                name="after",
                location="query",
                description="Only events after this id (the last one seen).",
                schema={"type": "integer", "minimum": 0, "maximum": 2**62, "default": 0},
            ),
        ),
        responses=(
            ResponseSpec(status=200, description="The events.", schema="RunEvents"),
            ResponseSpec(status=400, description="Unknown parameter, kind, limit or after."),
            ResponseSpec(status=404, description="Unknown run."),
            UNAVAILABLE,
        ),
    ),
    *_ACTION_ROUTES,
    *_DECISION_ROUTES,
)
