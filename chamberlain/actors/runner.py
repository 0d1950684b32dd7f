"""The Runner actor: one per plugin, it runs that plugin's jobs as processes.

Each job gets its own task in the Runner's nursery; the process work (spawn, capped
reads, timeouts, killing the process group) lives in
:mod:`chamberlain.plugins.process` and the verdict in
:func:`chamberlain.plugins.protocol.decide_outcome`.  The Runner glues them to the
JobStore (record the outcome) and the Dispatcher (free the slot).  An outcome the
store refuses is recorded as a failed attempt saying so, so that one job's answer
cannot crash the Runner and with it the plugin's other jobs.

The plugin's ``config`` and ``env`` are resolved for each job from the daemon's
:class:`~chamberlain.vault.Vault`, so a secret rotated while the daemon runs reaches
the next job; a ``${secret:name}`` the registry no longer holds fails the job, not
retried, without starting the plugin.  What the job leaves behind (stderr lines, the
outcome) is redacted with the vault's redactor.

An interactive command's attempt has a :class:`~chamberlain.actors.session.Session`,
made when the Runner is handed the attempt: the ``Converse`` requests the
Dispatcher passes on (a user's message, a complete) go to it.  A retried
interactive attempt's request carries the job's ``transcript``; a follow-up's,
its ``follow_up``.

A job that asks for MCP servers runs with a workspace holding their ``.mcp.json``
(:mod:`chamberlain.plugins.workspace`), made just before the plugin starts and
removed once the attempt is over, whatever its outcome.

A restarted Runner first settles its plugin's jobs still marked running: their
processes died with the previous incarnation.  A ``Run`` message for one of those
exact attempts may still sit in the mailbox (sent just before the crash); it is
dropped, because the job was already requeued and will be claimed afresh.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import trio

from chamberlain.actors.loop import LoopDriver
from chamberlain.actors.mail import (
    Converse,
    DispatcherRequest,
    GetTranscript,
    GetWorkspace,
    JobStoreRequest,
    ListMcpServers,
    RecoverOrphans,
    Released,
    Retire,
    Run,
    RunnerRequest,
    Settle,
    Terminate,
    TouchWorkspace,
)
from chamberlain.actors.mailbox import RequestFailed, call
from chamberlain.actors.output import forward_output
from chamberlain.actors.pull_request_opener import (
    PullRequestFailed,
    PullRequestOpener,
    PullRequestStopped,
)
from chamberlain.actors.session import Session
from chamberlain.config import RepositoryConfig
from chamberlain.loops import LoopSpec
from chamberlain.plugins.binding import BoundPlugin
from chamberlain.plugins.conversation import follow_up_field
from chamberlain.plugins.envelope import handle_event, request_context, request_payload
from chamberlain.plugins.environment import job_environment
from chamberlain.plugins.mcp_servers import McpServerGone, workspace_files
from chamberlain.plugins.process import Limits, ProcessControl, run_plugin
from chamberlain.plugins.protocol import (
    Outcome,
    OutcomeKind,
    ProcessResult,
    TerminationReason,
    decide_outcome,
    encode_request,
)
from chamberlain.plugins.workspace import Workspaces, size_of, workspace_environment
from chamberlain.records import (
    Changes,
    Job,
    McpServer,
    PullRequest,
    PullRequestRefusal,
    SessionRefusal,
    SessionReply,
    UserInput,
    Workspace,
)
from chamberlain.redaction import redact_outcome
from chamberlain.repositories import GitError, add_worktree, changes, ensure_mirror
from chamberlain.vault import UnknownSecret, Vault

log = logging.getLogger("chamberlain.runner")


@attrs.define(eq=False)
class Runner:
    """Runs one plugin's jobs; see the module docstring."""

    plugin: BoundPlugin
    store: trio.MemorySendChannel[JobStoreRequest]
    dispatcher: trio.MemorySendChannel[DispatcherRequest]
    limits: Limits = attrs.field(factory=Limits)
    now: Callable[[], float] = time.time
    #: Runs one plugin process; tests swap in a fake to exercise the actor alone.
    execute: Callable[..., Awaitable[ProcessResult]] = run_plugin
    #: Resolves ``${secret:name}`` in the plugin's settings, and owns the redactor
    #: that takes every secret out of what the job leaves behind.
    vault: Vault = attrs.field(factory=Vault)
    #: Where a job that asks for MCP servers gets its workspace (temporary
    #: directories unless the daemon names the state's).
    workspaces: Workspaces = attrs.field(factory=Workspaces)
    #: The repositories a job's workspace may be a worktree of (``repositories:``),
    #: and a lock per mirror, shared by every Runner: one git command at a time on
    #: a mirror, so a fetch never races the worktree another job is adding.
    repositories: Mapping[str, RepositoryConfig] = attrs.field(factory=dict)
    mirror_locks: dict[str, trio.Lock] = attrs.field(factory=dict)
    #: Opens the pull request a worktree job asked for as it succeeds (None: none
    #: are opened, and such a job's request is reported as not honoured).
    pull_requests: PullRequestOpener | None = None
    _controls: dict[str, ProcessControl] = attrs.field(factory=dict, init=False)
    #: The sessions of the interactive attempts among them.
    _sessions: dict[str, Session] = attrs.field(factory=dict, init=False)
    #: Attempts recovered as orphans whose Run message may still arrive.
    _stale: set[tuple[str, int]] = attrs.field(factory=set, init=False)
    #: Jobs whose task has not ended yet (settled, released).
    _executing: int = attrs.field(default=0, init=False)
    #: Set by a :class:`Retire` of this generation: stop once no job is left.
    _retiring: bool = attrs.field(default=False, init=False)
    #: Bumped by :meth:`unretire`, so a Retire sent before it is ignored.
    generation: int = attrs.field(default=0, init=False)
    #: Encloses the mailbox loop, so that retiring can end it.
    _listening: trio.CancelScope = attrs.field(factory=trio.CancelScope, init=False)
    #: Set once a retired Runner has returned.
    retired: trio.Event = attrs.field(factory=trio.Event, init=False)

    async def run(
        self,
        mailbox: trio.MemoryReceiveChannel[RunnerRequest],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Settle orphans of a previous incarnation, then run jobs until cancelled."""
        name = self.plugin.name
        orphans: tuple[Job, ...] = await call(
            self.store, lambda r: RecoverOrphans(plugin=name, reply=r)
        )
        for job in orphans:
            # recover_orphan keeps the attempt number, so the stale Run carries it too.
            self._stale.add((job.id, job.attempt))
            log.warning(
                "job's runner restarted while it ran: now %s",
                job.status.value,
                extra=self._extra(job.id),
            )
            await self.dispatcher.send(Released(job_id=job.id))
        async with trio.open_nursery() as nursery:
            self._listening = trio.CancelScope()
            task_status.started()
            self._retire_if_idle()
            with self._listening:
                await self._serve(mailbox, nursery)
        if self._retiring:
            self.retired.set()

    def retirement(self) -> Retire:
        """The message that makes this Runner return from :meth:`run` once its jobs
        in flight are settled (a reload removed the plugin); until then their
        Terminates and messages still arrive."""
        return Retire(generation=self.generation)

    def unretire(self, plugin: BoundPlugin) -> bool:
        """Keep running, for ``plugin`` (a reload gave the name back before its old
        jobs were done); False when this Runner has already returned."""
        if self.retired.is_set() or self._listening.cancel_called:
            return False
        self.generation += 1
        self._retiring = False
        self.plugin = plugin
        return True

    def _retire_if_idle(self) -> None:
        if self._retiring and not self._executing:
            self._listening.cancel()

    async def _serve(
        self, mailbox: trio.MemoryReceiveChannel[RunnerRequest], nursery: trio.Nursery
    ) -> None:
        async for message in mailbox:
            match message:
                case Run(claimed=claimed):
                    key = (claimed.job.id, claimed.job.attempt)
                    if key in self._stale:
                        self._stale.discard(key)
                        continue
                    # Registered before the task starts, so a Terminate read
                    # right after this Run finds the job (and it never spawns).
                    control = ProcessControl()
                    self._controls[claimed.job.id] = control
                    if self.plugin.interactive(claimed.job.command):
                        self._sessions[claimed.job.id] = self._session(claimed.job)
                    self._executing += 1
                    nursery.start_soon(self._job, claimed.job, claimed.state, control)
                case Terminate(reason=reason, job_id=job_id):
                    for jid, ctl in list(self._controls.items()):
                        if job_id is None or jid == job_id:
                            ctl.terminate(reason)
                case Converse(job_id=job_id, reply=reply):
                    session = self._sessions.get(job_id)
                    if session is not None:
                        session.offer(message)
                    else:
                        refused = (
                            SessionRefusal.NOT_INTERACTIVE
                            if job_id in self._controls
                            else SessionRefusal.NOT_RUNNING
                        )
                        reply.send(SessionReply(job_id=job_id, refused=refused))
                case Retire(generation=generation):
                    if generation == self.generation:
                        self._retiring = True
                        self._retire_if_idle()

    def running(self) -> int:
        """How many of this plugin's processes are alive now."""
        return len(self._controls)

    def _session(self, job: Job) -> Session:
        settings = self.plugin.settings
        return Session(
            job_id=job.id,
            attempt=job.attempt,
            store=self.store,
            # A trigger's timeout is the idle timeout of its session.
            idle_timeout=job.timeout or settings.interactive_timeout,
            max_duration=settings.max_duration,
        )

    async def _settle(
        self,
        job: Job,
        outcome: Outcome,
        *,
        plugin: BoundPlugin,
        changes: Changes | None = None,
        pull_request: PullRequest | str | None = None,
    ) -> tuple[Job | None, Outcome]:
        """Record ``outcome`` on the job; the job as settled and the outcome recorded.

        ``changes`` and ``pull_request`` are its worktree's (a worktree job only).

        When the store refuses the outcome (it cannot encode it), a failed attempt
        saying so is recorded in its place: the refusal must not escape, as it
        would crash this Runner and every running job of the plugin with it.  Only
        a refusal of that replacement too (a store that cannot write at all) does.
        """

        async def settle(recorded: Outcome) -> Job | None:
            settled: Job | None = await call(
                self.store,
                lambda r: Settle(
                    job_id=job.id,
                    attempt=job.attempt,
                    outcome=recorded,
                    policy=plugin.retry_policy,
                    facts=plugin.manifest.fact_outputs,
                    changes=changes,
                    pull_request=pull_request,
                    reply=r,
                ),
            )
            return settled

        try:
            return await settle(outcome), outcome
        except RequestFailed as refused:
            reason = refused.__cause__ or refused
            log.error(
                "the store refused the outcome of the attempt",
                exc_info=reason,
                extra=self._extra(job.id),
            )
            replacement = Outcome(
                kind=OutcomeKind.FAILED,
                retryable=True,
                error=_printable(
                    f"internal error: the outcome could not be stored:"
                    f" {type(reason).__name__}: {reason}"
                ),
                response=None,
                raw_output=None,
                exit_code=outcome.exit_code,
                signal=outcome.signal,
                stderr_tail=_printable(outcome.stderr_tail),
            )
            return await settle(replacement), replacement

    def _extra(self, job_id: str) -> dict[str, str]:
        return {"component": "runner", "plugin": self.plugin.name, "job_id": job_id}

    async def _job(self, job: Job, state: object, control: ProcessControl) -> None:
        try:
            await self._execute(job, state, control)
        finally:
            self._executing -= 1
            self._retire_if_idle()

    async def _execute(self, job: Job, state: object, control: ProcessControl) -> None:
        # The plugin as the job started: a reload that changes it reaches the jobs
        # that start after it, never this one.
        plugin = self.plugin
        session = self._sessions.get(job.id)
        timeout = (
            session.max_duration
            if session is not None
            else job.timeout or plugin.timeout_for(job.command)
        )
        extra = self._extra(job.id)
        log.info(
            "started %s (attempt %d/%d)", job.command, job.attempt, job.max_attempts, extra=extra
        )
        vault = self.vault
        workspace: Path | None = None
        repository: str | None = None
        placed: tuple[str, ...] = ()
        try:
            # Resolved now, not at start-up: a rotated secret reaches the next job.
            config = vault.resolve_tree(plugin.settings.config)
            env = {name: vault.resolve(value) for name, value in plugin.settings.env.items()}
            workspace, placed, repository = await self._open_workspace(job)
            context = request_context(
                plugin=job.plugin, pipeline=job.pipeline, step_id=job.step_id, context=job.context
            )
            if job.workspace_id is not None:
                # A kept workspace: where the job's work lives (the plugin's cwd
                # stays its own directory, as Ductile's plugins expect).
                context = {**context, "workspace": str(workspace), "repository": repository}
            # As in Ductile, only a handle job is sent an event.
            event = job.event if job.command == "handle" else None
            transcript: tuple[UserInput, ...] = ()
            if session is not None:
                transcript = await call(self.store, lambda r: GetTranscript(job_id=job.id, reply=r))

            def request(deadline: float, iteration: Mapping[str, Any] | None = None) -> bytes:
                return encode_request(
                    job_id=job.id,
                    command=job.command,
                    config=config,
                    state=state if isinstance(state, dict) else {},
                    context=context,
                    payload=request_payload(job.command, job.payload, job.event),
                    event=None if event is None else handle_event(event, job.payload, context),
                    deadline_at=datetime.fromtimestamp(self.now() + deadline, UTC),
                    workspace_dir=None if workspace is None else str(workspace),
                    interactive=session is not None,
                    transcript=[entry.to_json() for entry in transcript],
                    follow_up=_follow_up(job),
                    iteration=iteration,
                )

            cwd = plugin.manifest.directory
            execute = functools.partial(
                self.execute,
                entrypoint=plugin.manifest.entrypoint,
                cwd=cwd,
                env=job_environment(
                    job.id, plugin.name, env=env, passthrough=plugin.settings.env_passthrough
                )
                | workspace_environment(workspace),
                limits=self.limits,
                plugin=plugin.name,
            )
            # Output lines are stored as the job's messages while it runs; they are
            # all flushed before the outcome below is settled.
            async with forward_output(
                self.store, job.id, now=self.now, redactor=vault.redactor
            ) as forwarder:
                if job.loop is not None:

                    async def iterate(
                        field: Mapping[str, Any], limit: float, run: ProcessControl
                    ) -> ProcessResult:
                        return await execute(
                            request=request(limit, field),
                            timeout=limit,
                            control=run,
                            on_stderr_line=forwarder.on_line,
                        )

                    async def feedback(
                        argv: Sequence[str], limit: float, run: ProcessControl
                    ) -> ProcessResult:
                        # In the workspace, when the job has one: what the plugin changed.
                        return await execute(
                            request=b"",
                            timeout=limit,
                            control=run,
                            argv=argv,
                            cwd=workspace or plugin.settings.loop.feedback_cwd or cwd,
                        )

                    outcome = await LoopDriver(
                        job=job,
                        spec=LoopSpec.from_json(job.loop),
                        store=self.store,
                        control=control,
                        run_iteration=iterate,
                        run_command=feedback,
                        timeout=timeout,
                        now=self.now,
                        redactor=vault.redactor,
                        flush=forwarder.flush,
                    ).run()
                elif session is None:
                    outcome = decide_outcome(
                        await execute(
                            request=request(timeout),
                            timeout=timeout,
                            control=control,
                            on_stderr_line=forwarder.on_line,
                        )
                    )
                else:
                    if job.completing:
                        # Completed before a crash cut the attempt short: this one
                        # replays the transcript and is completed at once.
                        session.conversation.complete()
                    async with trio.open_nursery() as nursery:
                        await nursery.start(session.serve, forwarder)
                        try:
                            result = await execute(
                                request=request(timeout),
                                timeout=timeout,
                                control=control,
                                on_stderr_line=forwarder.on_line,
                                conversation=session.conversation,
                            )
                        finally:
                            session.end()
                    outcome = decide_outcome(result)
        except WorkspaceUnusable as unusable:
            # A fetch that failed may work next time; a deleted workspace will not,
            # but then the retry fails the same way, quickly.
            log.error("the job cannot start: %s", unusable, extra=extra)
            outcome = Outcome(
                kind=OutcomeKind.FAILED,
                retryable=True,
                error=vault.redactor.text(f"the job was not started: {unusable}"),
                response=None,
                raw_output=None,
                exit_code=None,
                signal=None,
                stderr_tail="",
            )
        except (UnknownSecret, McpServerGone) as missing:
            # Only a secret (or an MCP server) deleted since the job was triggered
            # gets here; asking again would not bring it back.
            log.error("the job cannot start: %s", missing, extra=extra)
            outcome = Outcome(
                kind=OutcomeKind.FAILED,
                retryable=False,
                error=f"the job was not started: {missing}",
                response=None,
                raw_output=None,
                exit_code=None,
                signal=None,
                stderr_tail="",
            )
        except Exception as exc:
            # A fault of ours, not the plugin's: fail this job (retryably) and keep
            # the plugin's other jobs running.
            log.exception("internal error while running the job", extra=extra)
            outcome = Outcome(
                kind=OutcomeKind.FAILED,
                retryable=True,
                error=f"internal error: {type(exc).__name__}: {exc}",
                response=None,
                raw_output=None,
                exit_code=None,
                signal=None,
                stderr_tail="",
            )
        finally:
            self._sessions.pop(job.id, None)
            if session is not None:
                session.end()
            if workspace is not None:
                # Whatever the outcome: its .mcp.json holds resolved secrets.
                if job.workspace_id is None:
                    self.workspaces.remove(workspace)
                else:
                    self.workspaces.lift(workspace, placed)
        found: Changes | None = None
        opened: PullRequest | str | None = None
        try:
            if workspace is not None and job.workspace_id is not None:
                if repository is not None:
                    # Still cancellable: the job's control stays registered until its
                    # pull request is pushed or not.
                    found, opened, outcome = await self._finish_worktree(job, outcome, control)
                await self._touch_workspace(job.workspace_id, workspace)
        finally:
            self._controls.pop(job.id, None)
        # The vault's redactor now: it also hides every value a secret had before.
        outcome = redact_outcome(outcome, vault.redactor)
        settled, outcome = await self._settle(
            job, outcome, plugin=plugin, changes=found, pull_request=opened
        )
        if settled is None:
            log.warning("outcome of a superseded attempt ignored", extra=extra)
        else:
            level = logging.INFO if outcome.kind is OutcomeKind.SUCCEEDED else logging.WARNING
            log.log(
                level,
                "attempt %d finished: %s -> job %s%s",
                job.attempt,
                outcome.kind.value,
                settled.status.value,
                f" ({outcome.error})" if outcome.error else "",
                extra=extra,
            )
        await self.dispatcher.send(Released(job_id=job.id))

    async def _open_workspace(self, job: Job) -> tuple[Path | None, tuple[str, ...], str | None]:
        """The attempt's workspace, the files written into it for the attempt, and the
        repository it is a worktree of.

        A job that asked for a workspace runs in its kept one, made at its first
        attempt (a worktree of its repository's mirror, fetched first, when it asked
        for a branch); one that names MCP servers only, in a directory of its own for
        the attempt; any other job in none.  The ``.mcp.json`` of the job's MCP
        servers is written into either.  Raises :class:`McpServerGone` or
        :class:`UnknownSecret` when a server or a secret it names was deleted since
        the job was triggered, :class:`WorkspaceUnusable` when its worktree cannot be
        made.
        """
        files: dict[str, bytes] = {}
        if job.mcp_servers:
            names = job.mcp_servers
            found: tuple[McpServer, ...] = await call(
                self.store, lambda r: ListMcpServers(names=names, reply=r)
            )
            files = workspace_files(names, found, self.vault.resolve)
        if job.workspace_id is not None:
            workspace_id = job.workspace_id
            row: Workspace | None = await call(
                self.store, lambda r: GetWorkspace(workspace_id=workspace_id, reply=r)
            )
            if row is None:
                raise WorkspaceUnusable(f"workspace {workspace_id} was deleted")
            if row.repository is not None:
                path = await self._worktree(row)
            else:
                path = self.workspaces.keep(workspace_id)
            self.workspaces.place(path, files)
            return path, tuple(files), row.repository
        if files:
            return self.workspaces.create(job.id, files), tuple(files), None
        return None, (), None

    async def _worktree(self, row: Workspace) -> Path:
        """The worktree of a workspace: made (from a fresh fetch) at its first use."""
        assert row.repository is not None and row.branch is not None and row.base is not None
        repository = self.repositories.get(row.repository)
        mirror = self.workspaces.mirror_path(row.repository)
        path = self.workspaces.kept_path(row.id)
        if repository is None or mirror is None or path is None:
            raise WorkspaceUnusable(f"repository {row.repository!r} is no longer configured")
        if (path / ".git").exists():
            return path
        token = None if repository.token is None else self.vault.resolve(repository.token)
        lock = self.mirror_locks.setdefault(row.repository, trio.Lock())
        try:
            async with lock:
                await ensure_mirror(repository.url, mirror, token=token)
                path = self.workspaces.keep(row.id)
                await add_worktree(mirror, path, branch=row.branch, base=row.base)
        except (GitError, ValueError, OSError) as exc:
            raise WorkspaceUnusable(
                f"could not make the worktree of {row.repository}@{row.branch}: {exc}"
            ) from None
        return path

    async def _finish_worktree(
        self, job: Job, outcome: Outcome, control: ProcessControl
    ) -> tuple[Changes | None, PullRequest | str | None, Outcome]:
        """What the attempt changed in its worktree, and the pull request a succeeded
        job asked for: opened now, unless the job was cancelled meanwhile (then it
        ends cancelled, having pushed nothing)."""
        workspace_id = job.workspace_id
        assert workspace_id is not None
        extra = self._extra(job.id)
        ask = job.pull_request_ask
        if outcome.kind is OutcomeKind.SUCCEEDED and ask is not None:
            if self.pull_requests is None:
                return None, "pull requests are not opened by this daemon", outcome
            try:
                # Only a cancel stops it: a shutdown lets the push and the forge's
                # answer finish rather than run the whole job again after the restart.
                opened = await self.pull_requests.open(
                    job.id,
                    workspace_id,
                    ask,
                    stop=lambda: control.reason is TerminationReason.CANCELLED,
                )
            except PullRequestStopped as stopped:
                log.warning("%s", stopped, extra=extra)
                return (
                    None,
                    None,
                    attrs.evolve(
                        outcome, kind=OutcomeKind.CANCELLED, retryable=False, error=str(stopped)
                    ),
                )
            except PullRequestFailed as failed:
                # The work is done and kept: the job succeeded, and the pull request
                # can be asked for again with POST /job/{id}/pull-request.
                log.error("could not open the pull request: %s", failed, extra=extra)
                return await self._changes_of(workspace_id), str(failed), outcome
            except Exception as exc:
                # A fault of ours: the job's outcome still stands, and so does this Runner.
                log.exception("internal error while opening the pull request", extra=extra)
                return None, f"internal error: {type(exc).__name__}: {exc}", outcome
            if isinstance(opened, PullRequest):
                log.info("opened pull request %s", opened.url or opened.branch, extra=extra)
                return opened.changes, opened, outcome
            return await self._changes_of(workspace_id), _refused(opened), outcome
        return await self._changes_of(workspace_id), None, outcome

    async def _changes_of(self, workspace_id: str) -> Changes | None:
        """How a worktree differs from its base now (None when git cannot say)."""
        path = self.workspaces.kept_path(workspace_id)
        try:
            row: Workspace | None = await call(
                self.store, lambda r: GetWorkspace(workspace_id=workspace_id, reply=r)
            )
            if row is None or row.base is None or path is None or not (path / ".git").exists():
                return None
            return await changes(path, row.base)
        except (GitError, ValueError, OSError, RequestFailed) as exc:
            # Only the count is missing: the job's outcome matters more.
            log.warning(
                "could not count the changes of workspace %s: %s",
                workspace_id,
                exc,
                extra={"component": "runner", "workspace_id": workspace_id},
            )
            return None

    async def _touch_workspace(self, workspace_id: str, path: Path) -> None:
        """Record a use of a kept workspace and its size (a walk, so off the loop)."""
        size = await trio.to_thread.run_sync(size_of, path)
        try:
            await call(
                self.store,
                lambda r: TouchWorkspace(workspace_id=workspace_id, size_bytes=size, reply=r),
            )
        except RequestFailed:
            # Only its size and last use are stale: the job's outcome matters more.
            log.exception(
                "could not record the use of workspace %s",
                workspace_id,
                extra={"component": "runner", "workspace_id": workspace_id},
            )


class WorkspaceUnusable(Exception):
    """The job's workspace cannot be had: deleted, or its worktree cannot be made."""


def _follow_up(job: Job) -> dict[str, object] | None:
    """The ``follow_up`` of a follow-up job's requests (None for any other job)."""
    if job.follows is None:
        return None
    session = None if job.follow_up is None else job.follow_up.get("session")
    return follow_up_field(job.follows, job.instruction or "", session)


def _refused(refusal: PullRequestRefusal) -> str:
    """Why a succeeded job's pull request was not opened, as its record says."""
    if refusal is PullRequestRefusal.NO_CHANGES:
        return "no pull request: the job changed nothing in its worktree"
    return f"no pull request: {refusal.value.replace('_', ' ')}"


def _printable(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (lone surrogates) spelt as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
