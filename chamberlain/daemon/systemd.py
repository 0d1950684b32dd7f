"""Telling systemd how the daemon is doing: the ``sd_notify`` protocol, in plain Python.

Under ``Type=notify`` systemd hands the service a datagram socket in
``$NOTIFY_SOCKET`` and waits for ``READY=1`` before it counts the service as
started (so ``systemctl start`` returns, and units ordered after it start, only
once the API answers).  ``STOPPING=1`` says a stop is under way, and with
``WatchdogSec=`` systemd expects ``WATCHDOG=1`` at least every ``$WATCHDOG_USEC``
microseconds or it kills and restarts the service.

The protocol is one datagram of ``KEY=value`` lines per message, so no library is
needed.  Sending never blocks and never raises: a full or vanished socket is not a
reason to disturb the daemon, and outside systemd every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

import attrs
import trio

log = logging.getLogger("chamberlain.daemon.systemd")

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"

#: systemd recommends pinging at half the watchdog interval, leaving room for one
#: late wake-up before it gives up on the service.
WATCHDOG_FRACTION = 0.5


def socket_address(value: str) -> str | bytes | None:
    """The ``sendto`` address of a ``$NOTIFY_SOCKET`` value; None when unusable.

    A leading ``@`` names a socket in Linux's abstract namespace, whose address
    starts with a NUL byte; otherwise the value must be an absolute path.  Other
    forms (``vsock:``, used for virtual machines) are not supported.
    """
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ: MutableMapping[str, str], pid: int) -> float | None:
    """Seconds between ``WATCHDOG=1`` pings asked for by ``environ``; None: no watchdog.

    ``$WATCHDOG_PID``, when set, names the process the watchdog is meant for; a
    child that inherited the variables must not answer for its parent.
    """
    usec = environ.get(WATCHDOG_USEC, "")
    owner = environ.get(WATCHDOG_PID)
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner is not None and owner != str(pid):
        return None
    return int(usec) / 1_000_000 * WATCHDOG_FRACTION


def message(**fields: str) -> bytes:
    """One notification: ``KEY=value`` lines, newlines in values flattened."""
    return "\n".join(
        f"{key}={' '.join(str(value).splitlines())}" for key, value in fields.items()
    ).encode()


@attrs.define(eq=False)
class Notifier:
    """Sends notifications to systemd; does nothing when the daemon is not under it.

    Build it with :meth:`from_environment`, which also removes systemd's variables
    from the environment, so plugin processes cannot speak for the daemon.
    """

    address: str | bytes | None = None
    #: Seconds between watchdog pings; None when systemd watches nothing.
    watchdog: float | None = None
    sent: int = attrs.field(default=0, init=False)
    failed: int = attrs.field(default=0, init=False)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """The notifier ``environ`` (default ``os.environ``) asks for; pops the variables."""
        env = os.environ if environ is None else environ
        raw = env.pop(NOTIFY_SOCKET, None)
        interval = watchdog_interval(env, os.getpid())
        env.pop(WATCHDOG_USEC, None)
        env.pop(WATCHDOG_PID, None)
        if raw is None:
            return cls()
        address = socket_address(raw)
        if address is None:
            log.warning(
                "%s=%r is not a socket path or @abstract name; not notifying systemd",
                NOTIFY_SOCKET,
                raw,
                extra={"component": "systemd"},
            )
            return cls()
        return cls(address=address, watchdog=interval)

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self.address is not None

    def notify(self, **fields: str) -> bool:
        """Send one notification (``notify(READY="1", STATUS="...")``); True if sent."""
        if self.address is None:
            return False
        data = message(**fields)
        try:
            with socket.socket(
                socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK
            ) as sock:
                sock.sendto(data, self.address)
        except OSError as exc:
            # The first failure is worth a line; a stream of them is not.
            if self.failed == 0:
                log.warning("cannot notify systemd: %s", exc, extra={"component": "systemd"})
            self.failed += 1
            return False
        self.sent += 1
        return True

    def ready(self, status: str) -> bool:
        """Start-up is complete: the daemon accepts work."""
        return self.notify(READY="1", STATUS=status)

    def reloading(self, status: str) -> bool:
        """A reload began (``Type=notify-reload``'s protocol); :meth:`ready` ends it.

        ``MONOTONIC_USEC`` is CLOCK_MONOTONIC now, which lets systemd tell this
        reload's READY from an earlier one's.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify(RELOADING="1", MONOTONIC_USEC=str(usec), STATUS=status)

    def stopping(self, status: str) -> bool:
        """A stop began: systemd should wait for the exit, not send more signals."""
        return self.notify(STOPPING="1", STATUS=status)

    def status(self, status: str) -> bool:
        """A free-form line shown by ``systemctl status``."""
        return self.notify(STATUS=status)

    async def keep_alive(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Ping the watchdog for as long as the event loop runs this task.

        A blocked event loop stops the pings, which is the point: systemd then
        kills and restarts a daemon that can no longer serve anything.
        """
        task_status.started()
        if self.watchdog is None or self.address is None:
            return
        while True:
            self.notify(WATCHDOG="1")
            await trio.sleep(self.watchdog)
