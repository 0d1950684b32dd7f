"""Running one plugin process: the trio I/O edge of the plugin protocol.

`run_plugin` spawns the entrypoint as the leader of a new process group, feeds it the
request, drains stdout and stderr within fixed memory bounds, enforces the timeout,
and makes sure that when it returns (or is cancelled) nothing of that process group
is left alive. Descendants that left the group (``setsid``) carry the run's marker
(``CHAMBERLAIN_RUN``), and the run is booked in `chamberlain.plugins.strays.RUNS`
while it lasts, so that the daemon's sweep kills them once it is over: no process
outlives its job. It returns a `ProcessResult` of raw observations; interpreting them
is `chamberlain.plugins.protocol.decide_outcome`'s job.

An interactive run (a `Conversation` given) keeps stdin open for the lines its owner
sends, reads stdout line by line (`chamberlain.plugins.conversation`), and counts its
timeout from the last input or output, within the session's ``max_duration``.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import attrs
import trio

from .conversation import COMPLETE_LINE, Answer, Line, decode_line
from .protocol import ProcessResult, TerminationReason
from .spawn import Spawned, spawn
from .strays import RUN_VARIABLE, RUNS

__all__ = ["STDERR_LINE_MAX", "Conversation", "Limits", "ProcessControl", "run_plugin"]

logger = logging.getLogger("chamberlain.plugins")

#: Longest stderr line passed to ``on_stderr_line``; longer lines arrive in pieces so
#: a plugin printing one endless line cannot make us buffer without bound.
STDERR_LINE_MAX = 4096

_READ_SIZE = 64 * 1024

# How long a cancelled run may spend reaping its SIGKILLed process. A process that is
# not gone by then is stuck in the kernel (uninterruptible sleep); waiting longer
# would only hold up the cancellation, so we log it and move on.
_REAP_TIMEOUT = 5.0


@attrs.frozen(kw_only=True)
class Limits:
    """Resource bounds for one run.

    ``linger`` is how long to keep reading after the plugin process itself has exited
    and its group has been killed: long enough to collect output already in the pipes,
    short enough that a descendant that escaped the group (``setsid``) and holds the
    pipes open cannot keep the job alive.
    """

    stdout_max: int = 10 * 1024 * 1024
    stderr_max: int = 64 * 1024
    kill_grace: float = 5.0
    linger: float = 2.0


@attrs.define(eq=False)
class ProcessControl:
    """A handle that lets the owner of a run stop it, and see which process it is.

    Create one per run and pass it to `run_plugin`. `terminate` may be called at any
    time from the trio thread, even before the process is spawned (then it is never
    spawned). ``pid`` is set once the process exists; it is also the process group id.
    """

    pid: int | None = None
    _reason: TerminationReason | None = attrs.field(default=None, init=False)
    _requested: trio.Event = attrs.field(factory=trio.Event, init=False)

    @property
    def reason(self) -> TerminationReason | None:
        """The reason of the first `terminate` call, or ``None``."""
        return self._reason

    def terminate(self, reason: TerminationReason) -> None:
        """Stop the run: SIGTERM to the process group, then SIGKILL after the grace.

        Idempotent; the first reason wins, so a timeout that fires while a
        cancellation is already under way does not relabel the job.
        """
        if self._reason is None:
            self._reason = reason
            self._requested.set()

    async def _wait_requested(self) -> None:
        await self._requested.wait()


@attrs.define(eq=False)
class Conversation:
    """The open stdin and the line-wise stdout of one interactive run.

    The owner of the run queues lines for the plugin's stdin with `send` (they are
    written in order, after the request) and ends the session with `complete`.
    Every stdout line but the response is handed to ``on_line`` as it is read, on
    the trio thread; it must not block.  The run ends when the plugin exits, or
    ``idle_timeout`` seconds after the last input or output, or ``max_duration``
    seconds after it started, whichever comes first.
    """

    on_line: Callable[[Line], None]
    idle_timeout: float
    max_duration: float
    _lines: tuple[trio.MemorySendChannel[bytes], trio.MemoryReceiveChannel[bytes]] = attrs.field(
        factory=lambda: trio.open_memory_channel[bytes](math.inf), init=False
    )
    _completed: trio.Event = attrs.field(factory=trio.Event, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    def send(self, line: bytes) -> bool:
        """Queue ``line`` for the plugin's stdin; False once the session takes no more
        (it was completed, or the plugin already answered)."""
        if self._closed:
            return False
        self._lines[0].send_nowait(line)
        return True

    def complete(self) -> None:
        """Send the ``complete`` line after whatever is queued, then close stdin."""
        if not self._closed:
            self._lines[0].send_nowait(COMPLETE_LINE)
            self._completed.set()
        self._close()

    def _close(self) -> None:
        self._closed = True
        self._lines[0].close()

    @property
    def closed(self) -> bool:
        """True once the session takes no more input."""
        return self._closed

    @property
    def completed(self) -> bool:
        """True once `complete` was called (the plugin may also have answered first)."""
        return self._completed.is_set()


async def run_plugin(
    *,
    entrypoint: Path,
    cwd: Path,
    request: bytes,
    # Not a trio-style deadline (ASYNC109): expiry is an outcome to report, reached
    # through a graceful SIGTERM/SIGKILL sequence, not an exception for the caller.
    timeout: float,  # noqa: ASYNC109
    env: Mapping[str, str] | None = None,
    limits: Limits = Limits(),
    control: ProcessControl | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
    plugin: str | None = None,
    conversation: Conversation | None = None,
    argv: Sequence[str] | None = None,
) -> ProcessResult:
    """Run ``entrypoint`` once with ``request`` on its stdin and collect what it does.

    The process runs in a new session (its own process group) with ``cwd`` as working
    directory and ``env`` (default: this process's environment) plus
    ``PYTHONUNBUFFERED=1`` and the run marker ``CHAMBERLAIN_RUN``. After ``timeout``
    seconds, or when ``control.terminate`` is called, the group gets SIGTERM and,
    ``limits.kill_grace`` seconds later, SIGKILL. As soon as the plugin process
    exits, whatever remains of its group is SIGKILLed. ``on_stderr_line`` is called
    with each stderr line as it arrives. ``plugin`` names the plugin in log records
    (default: the entrypoint's directory).

    ``argv`` runs that command instead of the entrypoint, under the same rules (a
    loop's feedback commands; ``request`` is then usually empty).

    With a ``conversation`` the run is interactive: ``timeout`` is not used (the
    conversation's limits are), stdin stays open for the conversation's lines, and
    stdout is read line by line; the result's ``stdout`` is the response line.
    Once that line is read the plugin has ``limits.kill_grace`` seconds to exit
    before its group is killed, which changes nothing about its outcome.

    Never raises for anything the plugin does; a spawn failure is reported in
    ``ProcessResult.spawn_error``. If the caller is cancelled, the group is killed and
    the process reaped before `trio.Cancelled` propagates.
    """
    control = control if control is not None else ProcessControl()
    log_extra = {"component": "plugins", "plugin": plugin or entrypoint.parent.name}
    started_at = trio.current_time()

    if conversation is not None:
        timeout = conversation.max_duration

    def result(
        *,
        idle: bool = False,
        exit_code: int | None = None,
        signal_number: int | None = None,
        stdout: bytes = b"",
        stdout_overflow: bool = False,
        stderr_tail: bytes = b"",
        stderr_truncated: bool = False,
        terminated: TerminationReason | None = None,
        spawn_error: str | None = None,
        spawn_errno: int | None = None,
    ) -> ProcessResult:
        return ProcessResult(
            exit_code=exit_code,
            signal=signal_number,
            stdout=stdout,
            stdout_overflow=stdout_overflow,
            stderr_tail=stderr_tail,
            stderr_truncated=stderr_truncated,
            terminated=terminated,
            spawn_error=spawn_error,
            spawn_errno=spawn_errno,
            timeout=timeout,
            duration=trio.current_time() - started_at,
            interactive=conversation is not None,
            idle=idle,
            stdout_max=limits.stdout_max,
        )

    if control.reason is not None:
        return result(terminated=control.reason)

    child_env = dict(os.environ if env is None else env)
    child_env["PYTHONUNBUFFERED"] = "1"
    # Set last, so that no configured variable can fake it: the marker by which the
    # run's escapees are found once it is over (see chamberlain.plugins.strays).
    run_number, child_env[RUN_VARIABLE] = RUNS.begin()
    try:
        try:
            process = await spawn(
                [str(entrypoint)] if argv is None else list(argv), cwd=cwd, env=child_env
            )
        except OSError as exc:
            logger.warning("cannot start %s: %s", entrypoint, exc, extra=log_extra)
            culprit = entrypoint if argv is None else Path(argv[0])
            return result(spawn_error=_describe_spawn_error(exc, culprit), spawn_errno=exc.errno)
        RUNS.spawned(run_number, process.pid)

        run = _Run(
            process=process,
            control=control,
            limits=limits,
            on_stderr_line=on_stderr_line,
            log_extra=log_extra,
            conversation=conversation,
        )
        control.pid = process.pid
        try:
            await run.supervise(request, timeout)
        finally:
            if conversation is not None:
                # The run is over: nothing more can reach the plugin, so say so to
                # whoever still sends (and close the channel the feeder read).
                conversation._close()
            run.kill_group()
            if process.returncode is None:
                await run.reap_after_cancel()
            run.close_pipes()
    finally:
        # From here on, whatever still carries the marker is a leftover, for the
        # daemon's next sweep to kill (descendants that left the group: setsid).
        RUNS.end(run_number)

    returncode = process.returncode
    if run.idle:
        assert conversation is not None
        timeout = conversation.idle_timeout
    return result(
        idle=run.idle,
        exit_code=returncode if returncode is not None and returncode >= 0 else None,
        signal_number=-returncode if returncode is not None and returncode < 0 else None,
        stdout=bytes(run.stdout),
        stdout_overflow=run.stdout_overflow,
        stderr_tail=run.stderr.tail(),
        stderr_truncated=run.stderr.truncated,
        terminated=run.terminated,
    )


def _describe_spawn_error(exc: OSError, entrypoint: Path) -> str:
    # subprocess names the path that failed: the entrypoint, or the working directory.
    culprit = exc.filename if exc.filename is not None else entrypoint
    message = f"{exc.strerror or exc}: {culprit}"
    # ENOENT for an entrypoint that exists means its "#!" interpreter is missing; say
    # so, since "No such file or directory" next to an existing path baffles.
    if (
        isinstance(exc, FileNotFoundError)
        and str(culprit) == str(entrypoint)
        and entrypoint.is_file()
    ):
        message += " (its #! interpreter was not found)"
    return message


@attrs.define(eq=False)
class _Run:
    """The mutable state of one run, shared by its reader, writer and watchdog tasks."""

    process: Spawned
    control: ProcessControl
    limits: Limits
    on_stderr_line: Callable[[str], None] | None
    log_extra: Mapping[str, str]
    conversation: Conversation | None = None
    stdout: bytearray = attrs.field(factory=bytearray)
    stdout_overflow: bool = False
    stderr: _TailBuffer = attrs.field(init=False)
    terminated: TerminationReason | None = None
    #: An interactive run was stopped by its idle timeout (not its max_duration).
    idle: bool = False
    _stderr_lines: _LineSplitter = attrs.field(init=False)
    _exited: trio.Event = attrs.field(factory=trio.Event)
    #: Interactive runs: the response line was read; bytes of stdout read in all.
    _answered: trio.Event = attrs.field(factory=trio.Event)
    _stdout_read: int = 0
    #: Interactive runs: the watchdog's scope, whose deadline each input or output moves.
    _idle_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    _hard_deadline: float = math.inf

    def __attrs_post_init__(self) -> None:
        self.stderr = _TailBuffer(self.limits.stderr_max)
        self._stderr_lines = _LineSplitter(STDERR_LINE_MAX)

    def _active(self) -> None:
        """An input or output happened: the idle timeout counts from now."""
        conversation = self.conversation
        if conversation is not None:
            idle_deadline = trio.current_time() + conversation.idle_timeout
            self._idle_scope.deadline = min(idle_deadline, self._hard_deadline)

    @property
    def pgid(self) -> int:
        # start_new_session makes the child a session and group leader: pgid == pid.
        return self.process.pid

    async def supervise(self, request: bytes, time_limit: float) -> None:
        """Run the I/O tasks and the watchdog until the process exits and pipes drain."""
        async with trio.open_nursery() as nursery:
            stdout_done = trio.Event()
            stderr_done = trio.Event()
            nursery.start_soon(self._drain_stderr, stderr_done)
            watchdog_scope = trio.CancelScope()
            if self.conversation is None:
                nursery.start_soon(self._feed_stdin, request)
                nursery.start_soon(self._drain_stdout, stdout_done)
            else:
                self._hard_deadline = trio.current_time() + self.conversation.max_duration
                self._active()
                nursery.start_soon(self._converse, request, self.conversation)
                nursery.start_soon(self._read_lines, stdout_done, self.conversation)
                nursery.start_soon(self._await_answer, self.conversation)
            nursery.start_soon(self._watchdog, time_limit, watchdog_scope)

            await self.process.wait()
            # Snapshot now: a terminate() after the plugin exited by itself changes
            # nothing about how it ended.
            self.terminated = self.control.reason
            self._exited.set()
            watchdog_scope.cancel()
            # The leader is gone; anything still in its group is a leftover child
            # that would otherwise keep the pipes (and so the job) open.
            self.kill_group()

            with trio.move_on_after(self.limits.linger) as linger_scope:
                await stdout_done.wait()
                await stderr_done.wait()
            if linger_scope.cancelled_caught:
                logger.warning(
                    "plugin exited but its output pipes stayed open for %gs "
                    "(a descendant left its process group?); returning what was read",
                    self.limits.linger,
                    extra=self.log_extra,
                )
            nursery.cancel_scope.cancel()

    async def _watchdog(self, time_limit: float, scope: trio.CancelScope) -> None:
        with scope:
            if self.conversation is None:
                with trio.move_on_after(time_limit):
                    await self.control._wait_requested()
            else:
                with self._idle_scope:
                    await self.control._wait_requested()
                if self.control.reason is None:
                    self.idle = self._idle_scope.deadline < self._hard_deadline
            self.control.terminate(TerminationReason.TIMEOUT)
            reason = self.control.reason
            logger.info(
                "stopping plugin process %d (%s)",
                self.pgid,
                reason.value if reason is not None else "?",
                extra=self.log_extra,
            )
            self._signal_group(signal.SIGTERM)
            with trio.move_on_after(self.limits.kill_grace):
                await self._exited.wait()
            self._signal_group(signal.SIGKILL)

    async def _converse(self, request: bytes, conversation: Conversation) -> None:
        """Write the request, then the conversation's lines as they come; then close."""
        stdin = self.process.stdin
        assert stdin is not None
        try:
            await stdin.send_all(request)
            async for line in conversation._lines[1]:
                await stdin.send_all(line)
                self._active()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The plugin exited or closed stdin: what it answered is what counts, and
            # an input it never read is in the job's transcript all the same.
            pass
        finally:
            _close_quietly(stdin)

    async def _read_lines(self, done: trio.Event, conversation: Conversation) -> None:
        """Read stdout line by line, within the stdout cap, until the response line."""
        stream = self.process.stdout
        assert stream is not None
        cap = self.limits.stdout_max
        lines = _LineSplitter(cap)
        try:
            while True:
                chunk = await stream.receive_some(_READ_SIZE)
                if not chunk:
                    self._take_lines(lines.flush(), conversation)
                    return
                self._stdout_read += len(chunk)
                if self._stdout_read > cap:
                    self.stdout_overflow = True
                    logger.warning(
                        "plugin stdout exceeded %d bytes; stopping it", cap, extra=self.log_extra
                    )
                    self.control.terminate(TerminationReason.STDOUT_OVERFLOW)
                    _close_quietly(stream)
                    return
                self._active()
                self._take_lines(lines.feed(chunk), conversation)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            done.set()

    def _take_lines(self, lines: list[bytes], conversation: Conversation) -> None:
        for raw in lines:
            if self._answered.is_set():
                return  # the response is the last line: what follows it is ignored
            line = decode_line(raw)
            if line is None:
                continue
            if isinstance(line, Answer):
                self.stdout = bytearray(line.line)
                self._answered.set()
                # Nothing more is sent: stdin's end tells the plugin so.
                conversation._close()
                return
            conversation.on_line(line)

    async def _await_answer(self, conversation: Conversation) -> None:
        """Stop a completed session that does not answer, and one that answered but stays.

        After ``complete`` the plugin has the kill grace to send its response; after
        the response it has the kill grace to exit.  Past the first the run ends
        ``unanswered``; past the second its group is killed, its answer standing.
        """
        grace = self.limits.kill_grace
        async with trio.open_nursery() as nursery:

            async def unanswered() -> None:
                await conversation._completed.wait()
                with trio.move_on_after(grace):
                    await self._answered.wait()
                if not self._answered.is_set():
                    self.control.terminate(TerminationReason.UNANSWERED)
                nursery.cancel_scope.cancel()

            nursery.start_soon(unanswered)
            await self._answered.wait()
            nursery.cancel_scope.cancel()
        if not self._answered.is_set():
            return
        with trio.move_on_after(grace):
            await self._exited.wait()
        if not self._exited.is_set():
            self._signal_group(signal.SIGKILL)

    async def _feed_stdin(self, request: bytes) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        try:
            await stdin.send_all(request)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The plugin exited or closed stdin without reading it all: its answer
            # (or lack of one) is what matters, not our write.
            pass
        finally:
            _close_quietly(stdin)

    async def _drain_stdout(self, done: trio.Event) -> None:
        stream = self.process.stdout
        assert stream is not None
        cap = self.limits.stdout_max
        try:
            while True:
                chunk = await stream.receive_some(_READ_SIZE)
                if not chunk:
                    return
                room = cap - len(self.stdout)
                if len(chunk) > room:
                    self.stdout += chunk[:room]
                    self.stdout_overflow = True
                    logger.warning(
                        "plugin stdout exceeded %d bytes; stopping it", cap, extra=self.log_extra
                    )
                    self.control.terminate(TerminationReason.STDOUT_OVERFLOW)
                    # Closing our end turns the plugin's next write into EPIPE/SIGPIPE
                    # instead of a full pipe it would block on until SIGKILL.
                    _close_quietly(stream)
                    return
                self.stdout += chunk
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            done.set()

    async def _drain_stderr(self, done: trio.Event) -> None:
        stream = self.process.stderr
        assert stream is not None
        try:
            while True:
                chunk = await stream.receive_some(_READ_SIZE)
                if not chunk:
                    break
                self.stderr.append(chunk)
                self._active()
                self._emit_lines(self._stderr_lines.feed(chunk))
            self._emit_lines(self._stderr_lines.flush())
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        finally:
            done.set()

    def _emit_lines(self, lines: list[bytes]) -> None:
        callback = self.on_stderr_line
        if callback is None:
            return
        for line in lines:
            try:
                callback(line.decode("utf-8", errors="replace"))
            except Exception:
                # A broken observer must not fail the job; one traceback is enough,
                # so stop forwarding rather than log once per line.
                logger.exception(
                    "on_stderr_line callback failed; no more stderr lines will be forwarded",
                    extra=self.log_extra,
                )
                self.on_stderr_line = None
                return

    def _signal_group(self, sig: signal.Signals) -> None:
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            # The group id was recycled by someone else's processes; ours are gone.
            pass

    def kill_group(self) -> None:
        """SIGKILL everything left in the plugin's process group (idempotent)."""
        self._signal_group(signal.SIGKILL)

    async def reap_after_cancel(self) -> None:
        """Reap the SIGKILLed process despite a cancellation, within a time limit."""
        with trio.move_on_after(_REAP_TIMEOUT, shield=True) as scope:
            await self.process.wait()
        if scope.cancelled_caught:
            logger.error(
                "plugin process %d did not exit %gs after SIGKILL; leaving it unreaped",
                self.pgid,
                _REAP_TIMEOUT,
                extra=self.log_extra,
            )

    def close_pipes(self) -> None:
        """Close our ends of all three pipes."""
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                _close_quietly(stream)


class _TailBuffer:
    """Keeps the last ``limit`` bytes of a stream, as a deque of chunks."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._chunks: collections.deque[bytes | bytearray] = collections.deque()
        self._size = 0
        self.truncated = False

    def append(self, chunk: bytes | bytearray) -> None:
        self._chunks.append(chunk)
        self._size += len(chunk)
        # Drop whole chunks only while what remains still covers the limit; the final
        # trim to an exact byte count happens once, in tail().
        while self._chunks and self._size - len(self._chunks[0]) >= self._limit:
            self._size -= len(self._chunks.popleft())
            self.truncated = True

    def tail(self) -> bytes:
        data = b"".join(self._chunks)
        if len(data) > self._limit:
            self.truncated = True
            data = data[len(data) - self._limit :] if self._limit > 0 else b""
        return data


class _LineSplitter:
    """Splits a byte stream into lines of at most ``max_line`` bytes, without newlines."""

    def __init__(self, max_line: int) -> None:
        self._max_line = max_line
        self._pending = bytearray()

    def feed(self, chunk: bytes | bytearray) -> list[bytes]:
        self._pending += chunk
        lines: list[bytes] = []
        while True:
            newline = self._pending.find(b"\n", 0, self._max_line + 1)
            if newline >= 0:
                lines.append(_strip_cr(bytes(self._pending[:newline])))
                del self._pending[: newline + 1]
            elif len(self._pending) > self._max_line:
                cut = _utf8_boundary(self._pending, self._max_line)
                lines.append(bytes(self._pending[:cut]))
                del self._pending[:cut]
            else:
                return lines

    def flush(self) -> list[bytes]:
        if not self._pending:
            return []
        line = _strip_cr(bytes(self._pending))
        self._pending.clear()
        return [line]


def _strip_cr(line: bytes) -> bytes:
    return line[:-1] if line.endswith(b"\r") else line


def _utf8_boundary(data: bytearray, limit: int) -> int:
    """Largest cut <= limit that does not split a UTF-8 sequence (if one is nearby)."""
    cut = limit
    # Continuation bytes look like 0b10xxxxxx; a sequence is at most 4 bytes long.
    while cut > limit - 3 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > 0 else limit


def _close_quietly(stream: trio.abc.AsyncResource) -> None:
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except OSError:
            pass
