"""The vocabulary: the records that cross layers.

Jobs and their statuses, what creates them (:class:`NewJob`) and what the store
answers about them (:class:`Enqueued`, :class:`Claimed`, :class:`JobFilter`), the
events and plans routing produces (:class:`StoredEvent`, :class:`RoutePlan`), the
views the API shows (:class:`Tree`, :class:`QueueView`, :class:`CancelResult`,
:class:`JobMessage`), an interactive job's inputs and what its session answers
(:class:`UserInput`, :class:`SessionReply`), a loop job's iterations
(:class:`Iteration`, :class:`FeedbackResult`), and the MCP servers of the registry
(:class:`McpServer`).
The store, the actors and the web layer all speak these and none of them owns
them, so they live here, below every layer: this module imports
no other chamberlain module and no trio, sqlite3 or quart (an import-linter
contract says so).  A record that only one layer uses stays in that layer.

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
    #: Where to POST the job's summary once it ends (see chamberlain.callback_rules).
    callback_url: str | None = None
    #: MCP servers of the registry written into the job's workspace (their names).
    mcp_servers: tuple[str, ...] = ()
    #: The job this one follows up (``POST /job/{id}/instruct``), and what its
    #: requests carry besides that id: ``{"prompt": ..., "session": ...}``.
    follows: str | None = None
    follow_up: Mapping[str, Any] | None = None
    #: A loop job's settings (chamberlain.loops.LoopSpec, as JSON); None: one run.
    loop: Mapping[str, Any] | None = None
    #: The workspace the job runs in (made with the job when it is new), and for a
    #: new one that is a worktree, what it checks out.
    workspace_id: str | None = None
    worktree: Worktree | None = None
    #: The pull request to open when the job succeeds (a worktree job only).
    pull_request_ask: PullRequestAsk | None = None
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
    #: MCP servers of the registry written into the job's workspace (their names).
    mcp_servers: tuple[str, ...] = ()
    #: The opaque ``session`` of the last response that had one (a follow-up gets it).
    session: Any = None
    #: The job this one follows up, what it was told (``{"prompt", "session"}``),
    #: and the job made of this one by ``POST /job/{id}/instruct``.
    follows: str | None = None
    follow_up: Mapping[str, Any] | None = None
    followed_by: str | None = None
    #: An interactive attempt said it waits for input, and none has come since.
    waiting_for_input: bool = False
    #: The user asked to complete the interactive session.
    completing: bool = False
    #: A loop job's settings (as JSON), whether a stop was asked for, and why it ended.
    loop: Mapping[str, Any] | None = None
    loop_stop: bool = False
    completion_reason: str | None = None
    #: The workspace the job runs in, shared with its follow-ups (None: none).
    workspace_id: str | None = None
    #: The pull request to open when it succeeds, as asked (a worktree job only).
    pull_request_ask: PullRequestAsk | None = None
    #: How its worktree differs from the base, as of the end of its last attempt
    #: (None: it has no repository workspace, or it did not run yet).
    changes: Changes | None = None
    #: The pull request it opened (``PullRequest.to_json``), or ``{"error": ...}``
    #: when its automatic one could not be opened; None: none asked for yet.
    pull_request: Mapping[str, Any] | None = None
    #: The run (a pipeline's invocation) whose step it is; None outside any.
    run_id: str | None = None
    #: Why a queued job of a run does not run yet: ``paused`` (its run is),
    #: ``approval`` (its step awaits one), ``gate`` (the step before awaits its check
    #: or CI); None: it is not held.
    held: str | None = None
    seq: int = 0

    @property
    def instruction(self) -> str | None:
        """The prompt of a follow-up (None for a job that follows none)."""
        prompt = None if self.follow_up is None else self.follow_up.get("prompt")
        return prompt if isinstance(prompt, str) else None

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
                if self.status is JobStatus.QUEUED and self.attempt > 0 and self.held is None
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
            "mcp_servers": list(self.mcp_servers),
            "waiting_for_input": self.waiting_for_input,
            "session": self.session,
            "follows": self.follows,
            "followed_by": self.followed_by,
            "instruction": self.instruction,
            "loop": None if self.loop is None else dict(self.loop),
            "completion_reason": self.completion_reason,
            "workspace_id": self.workspace_id,
            "changes": None if self.changes is None else self.changes.to_json(),
            "pull_request": None if self.pull_request is None else dict(self.pull_request),
            "run_id": self.run_id,
            "held": self.held,
        }


# -- MCP servers ----------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class McpServer:
    """An MCP server of the registry, exactly as registered.

    Either ``command`` (argv: the agent starts it, with ``env``) or ``url`` (an http
    server, sent ``headers``).  Values of ``env`` and ``headers`` may hold
    ``${secret:name}``: they stay references here and everywhere the registry is
    shown, and are resolved only into a job's ``.mcp.json``.
    """

    name: str
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = attrs.field(factory=dict)
    url: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    created_at: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The server as the API shows it: references as written, never a value."""
        return {
            "name": self.name,
            "command": list(self.command) if self.url is None else None,
            "env": dict(self.env),
            "url": self.url,
            "headers": dict(self.headers),
            "created_at": rfc3339(self.created_at),
        }


@attrs.frozen(kw_only=True)
class PluginFact:
    """One fact a plugin recorded: the ``state_updates`` of a job whose command its
    manifest's ``fact_outputs`` names, kept append-only (``seq`` orders them)."""

    seq: int = 0
    plugin: str
    fact_type: str
    job_id: str
    command: str
    fact: Mapping[str, Any]
    created_at: float

    def to_json(self) -> dict[str, Any]:
        """The fact as the API shows it."""
        return {
            "seq": self.seq,
            "plugin": self.plugin,
            "fact_type": self.fact_type,
            "job_id": self.job_id,
            "command": self.command,
            "fact": dict(self.fact),
            "created_at": rfc3339(self.created_at),
        }


# -- what the store answers ----------------------------------------------------------


@attrs.frozen(kw_only=True)
class JobFilter:
    """What to list: filters that narrow the jobs, the page, and how much of each job.

    Jobs come newest first (by ``seq``).  A page is either ``offset`` jobs skipped
    or, faster and stable while jobs are added, the jobs older than ``after``.
    """

    statuses: tuple[JobStatus, ...] = ()
    plugin: str | None = None
    command: str | None = None
    submitted_by: str | None = None
    since: float | None = None
    until: float | None = None
    #: Only jobs whose id starts with this text, or whose plugin, command, submitter
    #: or last error holds it (ASCII letters in any case).
    text: str | None = None
    limit: int = 50
    offset: int = 0
    #: Only jobs whose ``seq`` is below this one: the page after the page that ended
    #: with that job.  New jobs get higher numbers, so they never shift such a page.
    after: int | None = None
    #: Read each job's payload, event and result.  They are most of a row; a listing
    #: that shows none of them sets this False, and its jobs then carry ``{}``, None
    #: and None in their place.
    bodies: bool = True


@attrs.frozen(kw_only=True)
class Enqueued:
    """The answer to one enqueue: the job, and whether it already existed."""

    job: Job
    duplicate: bool = False


@attrs.frozen(kw_only=True)
class Claimed:
    """A job handed to a runner, with its plugin's state as of the claim."""

    job: Job
    state: Mapping[str, Any]


# -- events and routing ---------------------------------------------------------------


@attrs.frozen(kw_only=True)
class StoredEvent:
    """An event as the store keeps it, with the ids and time the core gave it."""

    event_id: str
    job_id: str
    type: str
    source: str
    payload: Mapping[str, Any]
    dedupe_key: str | None
    created_at: float

    def envelope(self) -> dict[str, Any]:
        """The event as a ``handle`` job receives it."""
        out: dict[str, Any] = {
            "type": self.type,
            "payload": dict(self.payload),
            "event_id": self.event_id,
            "source": self.source,
            "timestamp": rfc3339(self.created_at),
        }
        if self.dedupe_key is not None:
            out["dedupe_key"] = self.dedupe_key
        return out


@attrs.frozen(kw_only=True)
class RoutePlan:
    """Everything one succeeded job sets in motion."""

    events: tuple[StoredEvent, ...] = ()
    jobs: tuple[NewJob, ...] = ()


# -- views ----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Tree:
    """A job tree: its root, every job in creation order, and the core's notes."""

    root_job_id: str
    jobs: tuple[Job, ...]
    notes: tuple[Mapping[str, Any], ...]


@attrs.frozen(kw_only=True)
class QueueView:
    """Running jobs (oldest start first) and queued ones (in dispatch order)."""

    running: tuple[Job, ...]
    queued: tuple[Job, ...]
    running_total: int
    queued_total: int
    #: The newest message id: a status stream that starts here misses nothing after.
    last_message_id: int


@attrs.frozen(kw_only=True)
class CancelResult:
    """What a cancel request found and did."""

    #: The job as it stood after the request (None when unknown).
    job: Job | None
    #: True when the job was running: its process group is being terminated and it
    #: becomes ``cancelled`` once the process is gone (wait for it with WaitJob).
    was_running: bool
    #: True when this request changed something (a queued job cancelled, or a
    #: running one told to stop); False for unknown or already terminal jobs.
    accepted: bool


@attrs.frozen(kw_only=True)
class UserInput:
    """One input a user sent an interactive job, as its transcript lists it."""

    message_id: str
    message: str
    at: float

    def to_json(self) -> dict[str, Any]:
        """The entry of a request's ``transcript``."""
        return {"message_id": self.message_id, "message": self.message, "at": rfc3339(self.at)}


class SessionRefusal(enum.Enum):
    """Why an interactive job's session did not take a message or a complete."""

    #: The job is not running (queued, finished, or between attempts).
    NOT_RUNNING = "not_running"
    #: The job's command is not interactive.
    NOT_INTERACTIVE = "not_interactive"
    #: The session is being completed: it takes no more messages.
    COMPLETING = "completing"
    #: Too many messages wait to be handed to the plugin: try again shortly.
    BUSY = "busy"


@attrs.frozen(kw_only=True)
class SessionReply:
    """What a running job's session did with a message or a complete."""

    job_id: str
    #: The id the plugin was sent a message with (None for a complete or a refusal).
    message_id: str | None = None
    refused: SessionRefusal | None = None


class FollowUpRefusal(enum.Enum):
    """Why no follow-up was made of a job."""

    UNKNOWN = "unknown"
    #: The job is still queued or running.
    NOT_FINISHED = "not_finished"
    #: The job already has its follow-up: a chain never forks.
    FOLLOWED = "followed"


# -- workspaces ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Worktree:
    """What a workspace that is a git worktree checks out: a branch of a repository's
    mirror, made from ``base`` when the mirror has no such branch yet."""

    repository: str
    branch: str
    base: str


@attrs.frozen(kw_only=True)
class Changes:
    """How a worktree differs from its base: files, and lines added and removed."""

    files_changed: int = 0
    insertions: int = 0
    deletions: int = 0

    @property
    def empty(self) -> bool:
        """Nothing differs."""
        return self.files_changed == 0

    def to_json(self) -> dict[str, int]:
        """As job results, callbacks and pull requests show it."""
        return {
            "files_changed": self.files_changed,
            "insertions": self.insertions,
            "deletions": self.deletions,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Changes:
        """What :meth:`to_json` made (a missing count is 0)."""
        return cls(
            files_changed=int(data.get("files_changed", 0)),
            insertions=int(data.get("insertions", 0)),
            deletions=int(data.get("deletions", 0)),
        )


@attrs.frozen(kw_only=True)
class PullRequestAsk:
    """A pull request to open from a worktree's branch: ``POST /job/{id}/pull-request``'s
    body, or a trigger's ``"pull_request"`` (opened when the job succeeds).

    ``target_branch`` None means the workspace's base branch.
    """

    title: str
    body: str = ""
    target_branch: str | None = None
    draft: bool = False

    def to_json(self) -> dict[str, Any]:
        """As stored with the job."""
        return {
            "title": self.title,
            "body": self.body,
            "target_branch": self.target_branch,
            "draft": self.draft,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PullRequestAsk:
        """What :meth:`to_json` made."""
        target = data.get("target_branch")
        return cls(
            title=str(data["title"]),
            body=str(data.get("body") or ""),
            target_branch=None if target is None else str(target),
            draft=bool(data.get("draft", False)),
        )


@attrs.frozen(kw_only=True)
class PullRequest:
    """A pull (GitLab: merge) request opened from a workspace's branch.

    ``url`` and ``number`` are None when the repository has no forge (``forge:
    none``): the branch was pushed and nobody was asked to merge it.
    """

    url: str | None
    number: int | None
    branch: str
    target_branch: str
    changes: Changes

    def to_json(self) -> dict[str, Any]:
        """``POST /job/{id}/pull-request``'s answer."""
        return {
            "pr_url": self.url,
            "pr_number": self.number,
            "branch": self.branch,
            "target_branch": self.target_branch,
            "changes": self.changes.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PullRequest:
        """What :meth:`to_json` made."""
        number = data.get("pr_number")
        return cls(
            url=data.get("pr_url"),
            number=None if number is None else int(number),
            branch=str(data["branch"]),
            target_branch=str(data["target_branch"]),
            changes=Changes.from_json(data.get("changes") or {}),
        )


class PullRequestRefusal(enum.Enum):
    """Why ``POST /job/{id}/pull-request`` opened nothing (each answered 409)."""

    NOT_SUCCEEDED = "not_succeeded"
    NO_REPOSITORY = "no_repository"
    WORKSPACE_GONE = "workspace_gone"
    IN_USE = "in_use"
    NO_CHANGES = "no_changes"


@attrs.frozen(kw_only=True)
class Workspace:
    """A workspace as the store keeps it, with the jobs that ran (or run) in it."""

    id: str
    created_at: float
    last_used_at: float
    size_bytes: int = 0
    repository: str | None = None
    branch: str | None = None
    base: str | None = None
    #: Every job that runs in it, oldest first.
    job_ids: tuple[str, ...] = ()
    #: A job of it is queued or running: it may not be removed.
    in_use: bool = False
    #: The pull request opened from its branch, once one is (asking again returns it).
    pull_request: PullRequest | None = None

    def to_json(self, path: str | None) -> dict[str, Any]:
        """As ``GET /workspaces`` shows it, at ``path``."""
        return {
            "id": self.id,
            "job_ids": list(self.job_ids),
            "repository": self.repository,
            "branch": self.branch,
            "path": path,
            "size_bytes": self.size_bytes,
            "in_use": self.in_use,
            "created_at": rfc3339(self.created_at),
            "last_used_at": rfc3339(self.last_used_at),
            "pull_request": None if self.pull_request is None else self.pull_request.to_json(),
        }


@attrs.frozen(kw_only=True)
class RepositoryView:
    """A repository as the API shows it: never its token, nor credentials."""

    name: str
    #: The remote's URL, without any user-info.
    url: str
    default_branch: str
    forge: str
    forge_repo: str | None
    api_url: str | None
    #: When its mirror was last fetched (None: never), and what the mirror takes.
    last_sync_at: float | None
    mirror_bytes: int
    #: Where it comes from: ``config`` (``repositories:``) or ``api``
    #: (``POST /repositories``, kept in the store; only those can be deleted).
    source: str = "config"

    def to_json(self) -> dict[str, Any]:
        """As ``GET /repositories`` shows it."""
        return {
            "name": self.name,
            "url": self.url,
            "default_branch": self.default_branch,
            "forge": self.forge,
            "forge_repo": self.forge_repo,
            "api_url": self.api_url,
            "last_sync_at": rfc3339(self.last_sync_at),
            "mirror_bytes": self.mirror_bytes,
            "source": self.source,
        }


@attrs.frozen(kw_only=True)
class AddedRepository:
    """A repository added through the API (``POST /repositories``), as the store keeps it.

    ``spec`` is the entry as ``repositories.<name>`` of the config would hold it
    (its token a ``${secret:name}`` reference, never a value), so one set of rules
    reads both kinds.
    """

    name: str
    spec: Mapping[str, Any]
    created_at: float


class RepositoryRefusal(enum.Enum):
    """Why a repository added through the API was not removed (each answered 409)."""

    UNKNOWN = "unknown"
    CONFIGURED = "configured"
    IN_USE = "in_use"


class WorkspaceRefusal(enum.Enum):
    """Why a workspace was not removed."""

    UNKNOWN = "unknown"
    IN_USE = "in_use"


# -- loop jobs --------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class FeedbackResult:
    """What one feedback command did after an iteration."""

    command: tuple[str, ...]
    #: None when it did not exit by itself (killed at its timeout, or never started).
    exit_code: int | None
    passed: bool
    output_tail: str

    def to_json(self) -> dict[str, Any]:
        """As requests and the history show it."""
        return {
            "command": list(self.command),
            "exit_code": self.exit_code,
            "passed": self.passed,
            "output_tail": self.output_tail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedbackResult:
        """Back from :meth:`to_json`."""
        return cls(
            command=tuple(data["command"]),
            exit_code=data.get("exit_code"),
            passed=bool(data.get("passed")),
            output_tail=str(data.get("output_tail") or ""),
        )


@attrs.frozen(kw_only=True)
class Iteration:
    """One iteration as the store keeps it: started, and once over, how it went."""

    number: int
    #: Runs of this iteration started (a crash or a failure runs it again).
    runs: int = 1
    #: Runs of it that failed (the second ends the loop).
    failures: int = 0
    started_at: float
    completed_at: float | None = None
    exit_code: int | None = None
    error: str | None = None
    promise_detected: bool = False
    output_summary: str | None = None
    feedback: tuple[FeedbackResult, ...] = ()

    @property
    def finished(self) -> bool:
        """True once the iteration ran to its end (it will not run again)."""
        return self.completed_at is not None

    def to_json(self) -> dict[str, Any]:
        """The iteration as ``GET /job/{id}/iterations`` lists it."""
        return {
            "number": self.number,
            "runs": self.runs,
            "started_at": rfc3339(self.started_at),
            "completed_at": rfc3339(self.completed_at),
            "exit_code": self.exit_code,
            "error": self.error,
            "promise_detected": self.promise_detected,
            "output_summary": self.output_summary,
            "feedback_results": [result.to_json() for result in self.feedback],
        }

    def previous(self) -> dict[str, Any]:
        """The iteration as a later iteration's request lists it."""
        return {
            "number": self.number,
            "summary": self.output_summary or "",
            "feedback": [result.to_json() for result in self.feedback],
        }


class MessageKind(enum.Enum):
    """Where a message came from."""

    #: A line the plugin wrote to stderr.
    STDERR = "stderr"
    #: An entry of the ``logs`` list in the plugin's response, with its ``level``.
    LOG = "log"
    #: Written by chamberlain: a status change, or the dropped-lines marker.
    SYSTEM = "system"
    #: An ``output`` line of an interactive plugin (or a stdout line that is not JSON).
    STDOUT = "stdout"
    #: What a user sent an interactive job (``POST /job/{id}/message``).
    USER_INPUT = "user_input"
    #: An event of the job's run (docs/RUNS.md): an action, an approval, a check's
    #: or CI's word, a change of the run's status; ``detail`` holds it.
    RUN = "run"


@attrs.frozen(kw_only=True)
class JobMessage:
    """One stored message, with both of its ids.

    ``id`` is global and only grows (``/events/stream`` resumes from it); ``seq``
    counts from 1 per job (``/job/{id}/stream`` resumes from it).
    """

    id: int
    job_id: str
    seq: int
    ts: float
    kind: MessageKind
    text: str
    #: The job's status after this message, for status changes; None otherwise.
    status: JobStatus | None = None
    attempt: int | None = None
    #: For plugin log entries: the level the plugin gave (``info`` when it gave none).
    level: str | None = None
    #: For a user's input: the ``message_id`` the plugin was sent with it.
    message_id: str | None = None
    #: For a run's event: the event (``run_id``, ``kind``, ``actor``, ``step_id`` ...).
    detail: Mapping[str, Any] | None = None
    plugin: str
    command: str

    @property
    def is_status(self) -> bool:
        """True for a status change."""
        return self.status is not None

    @property
    def ends_job(self) -> bool:
        """True for the status change that made the job terminal (its last message)."""
        return self.status is not None and self.status.terminal

    def to_json(self) -> dict[str, Any]:
        """The message as ``GET /job/{id}?include=messages`` lists it."""
        out: dict[str, Any] = {
            "seq": self.seq,
            "ts": rfc3339(self.ts),
            "kind": self.kind.value,
            "text": self.text,
        }
        if self.status is not None:
            out["status"] = self.status.value
            out["attempt"] = self.attempt
        if self.level is not None:
            out["level"] = self.level
        if self.message_id is not None:
            out["message_id"] = self.message_id
        if self.detail is not None:
            out["run"] = dict(self.detail)
        return out

    def to_event(self) -> dict[str, Any]:
        """The message as the job and events streams send it."""
        return {
            "id": self.id,
            "job_id": self.job_id,
            "plugin": self.plugin,
            "command": self.command,
            **self.to_json(),
        }


# -- configuration reload -----------------------------------------------------------------


class ChangeKind(enum.Enum):
    """What a reload did with one difference between the old file and the new."""

    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"
    #: Read, not applied: the old value stays until the daemon restarts.
    RESTART_REQUIRED = "restart_required"


@attrs.frozen(kw_only=True)
class ConfigChange:
    """One difference a reload found, at the YAML path the user wrote it."""

    path: str
    change: ChangeKind
    #: What changed, in a few words (never a secret's value).
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As ``POST /system/reload`` and the log list it."""
        out: dict[str, Any] = {"path": self.path, "change": self.change.value}
        if self.detail is not None:
            out["detail"] = self.detail
        return out


@attrs.frozen(kw_only=True)
class LoadedConfig:
    """Which configuration the daemon runs: when it was loaded and the file's hash."""

    #: Epoch seconds: the start, or the last reload that succeeded.
    loaded_at: float
    #: ``sha256:<hex>`` of the config file's bytes as loaded (``sha256sum`` compares).
    config_hash: str
    #: Reloads that succeeded since the start.
    reloads: int = 0


@attrs.frozen(kw_only=True)
class ReloadReport:
    """What a reload that succeeded changed."""

    changes: tuple[ConfigChange, ...]
    loaded: LoadedConfig


@attrs.frozen(kw_only=True)
class ConfigProblem:
    """One reason a new configuration was refused, at its YAML path ("" for none)."""

    path: str
    message: str

    @classmethod
    def parse(cls, line: str) -> ConfigProblem:
        """Split a problem line (``plugins.echo.timeout: must be ...``) at its path."""
        head, sep, rest = line.partition(": ")
        if sep and head and " " not in head:
            return cls(path=head, message=rest)
        return cls(path="", message=line)


class ReloadRefused(Exception):
    """The new configuration has problems; the old one runs on, untouched."""

    def __init__(self, problems: tuple[ConfigProblem, ...], *, source: str | None) -> None:
        self.problems = problems
        self.source = source
        where = source or "config"
        super().__init__(f"{where}: reload refused: {len(problems)} problems")
