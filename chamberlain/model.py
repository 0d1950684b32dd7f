"""Values that cross actor boundaries: jobs, their statuses and what creates them.

Everything here is a frozen attrs record.  Actors pass these by reference across
channels, so immutability is what makes sharing them safe without copies.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs


class JobStatus(enum.Enum):
    """Where a job is in its life.

    ``queued -> running -> succeeded | failed | timed_out | cancelled``; a job whose
    attempts run out becomes ``dead``.  A failed attempt that will be retried goes
    back to ``queued`` with a later ``run_at``; it is not terminal.
    """

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    DEAD = "dead"

    @property
    def terminal(self) -> bool:
        """True once the job will never change again."""
        return self not in (JobStatus.QUEUED, JobStatus.RUNNING)


TERMINAL_STATUSES = frozenset(s for s in JobStatus if s.terminal)


def new_job_id() -> str:
    """A fresh job id: a random UUID, so ids never collide across restarts."""
    return str(uuid.uuid4())


def rfc3339(ts: float | None) -> str | None:
    """Render epoch seconds as RFC 3339 in UTC with millisecond precision."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@attrs.frozen(kw_only=True)
class NewJob:
    """A request to create a job; the JobStore assigns status and timestamps."""

    plugin: str
    command: str
    payload: Mapping[str, Any] = attrs.field(factory=dict)
    event: Mapping[str, Any] | None = None
    context: Mapping[str, Any] = attrs.field(factory=dict)
    submitted_by: str = "api"
    max_attempts: int = 4
    timeout: float | None = None
    dedupe_key: str | None = None
    parent_job_id: str | None = None
    source_event_id: str | None = None
    #: Pipeline lineage: the pipeline and step this job runs, and the first job of
    #: its tree (None for a job that starts a tree).
    pipeline: str | None = None
    step_id: str | None = None
    root_job_id: str | None = None
    #: Hops from the root: bounds runaway event loops.
    depth: int = 0
    #: When set, the job is recorded as already ``failed`` with this error (a
    #: pipeline step whose input could not be built), so the failure is visible.
    error: str | None = None
    #: The schedule that enqueued the job (its id within ``plugin``), if any.
    schedule_id: str | None = None
    #: Where to POST the job's summary once it ends (see chamberlain.callbacks).
    callback_url: str | None = None
    id: str = attrs.field(factory=new_job_id)


@attrs.frozen(kw_only=True)
class Job:
    """A job as stored.  ``result`` is the plugin's parsed response, or raw text."""

    id: str
    plugin: str
    command: str
    payload: Mapping[str, Any]
    event: Mapping[str, Any] | None
    context: Mapping[str, Any]
    status: JobStatus
    attempt: int
    max_attempts: int
    submitted_by: str
    timeout: float | None
    dedupe_key: str | None
    created_at: float
    started_at: float | None
    completed_at: float | None
    run_at: float
    last_error: str | None
    result: Any
    parent_job_id: str | None
    source_event_id: str | None
    pipeline: str | None = None
    step_id: str | None = None
    root_job_id: str | None = None
    depth: int = 0
    schedule_id: str | None = None
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        """The public JSON shape of a job, as the API and ``chamberlain run`` print it."""
        return {
            "job_id": self.id,
            "status": self.status.value,
            "plugin": self.plugin,
            "command": self.command,
            "payload": dict(self.payload),
            "event": None if self.event is None else dict(self.event),
            "submitted_by": self.submitted_by,
            "created_at": rfc3339(self.created_at),
            "started_at": rfc3339(self.started_at),
            "completed_at": rfc3339(self.completed_at),
            "next_retry_at": (
                rfc3339(self.run_at)
                if self.status is JobStatus.QUEUED and self.attempt > 0
                else None
            ),
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "last_error": self.last_error,
            "result": self.result,
            "dedupe_key": self.dedupe_key,
            "parent_job_id": self.parent_job_id,
            "source_event_id": self.source_event_id,
            "root_job_id": self.root_job_id,
            "pipeline": self.pipeline,
            "step_id": self.step_id,
            "schedule_id": self.schedule_id,
        }
