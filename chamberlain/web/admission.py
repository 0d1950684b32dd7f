"""Which connections the API keeps once it holds ``api.max_connections``: bookkeeping only.

Every open connection is either *answering* (its request has fully arrived and the
app is working on the reply: a synchronous trigger waiting for its job, an event
stream) or *waiting on its client* (for request headers, for the rest of a body, or
idle between keep-alive requests).  A new connection over the cap takes the place of
the one that has waited on its client the longest: clients that stall give way to
clients that talk, so ``/healthz`` on a fresh connection is answered however many
stalled connections are held.  Only when every connection is answering is the new one
refused.  The table does no I/O; :mod:`chamberlain.web.serve` acts on its answers.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

import attrs

#: A connection's peer address, as hypercorn puts it in the ASGI scope's ``client``.
Peer = tuple[str, int]

H = TypeVar("H")


@attrs.define(kw_only=True)
class _Open(Generic[H]):
    handle: H
    answering: bool = False


@attrs.frozen(kw_only=True)
class Admission(Generic[H]):
    """What to do with a new connection: keep it or not, and whom it displaces."""

    admitted: bool
    #: The connection to drop to make room (None: there was room).
    evict: H | None = None


@attrs.define
class ConnectionTable(Generic[H]):
    """The open connections, each known by its peer address and a caller's ``handle``.

    Entries are kept in the order their clients were last waited on, oldest first,
    which is the order they give way in.
    """

    limit: int
    _open: OrderedDict[Peer, _Open[H]] = attrs.field(init=False, factory=OrderedDict)
    #: Connections dropped to make room, and new ones refused, since the start.
    evicted: int = attrs.field(init=False, default=0)
    refused: int = attrs.field(init=False, default=0)

    def __len__(self) -> int:
        return len(self._open)

    def admit(self, peer: Peer, handle: H) -> Admission[H]:
        """Open ``peer``'s connection if there is room or someone waiting to give way."""
        victim: H | None = None
        if len(self._open) >= self.limit:
            key = next((key for key, entry in self._open.items() if not entry.answering), None)
            if key is None:
                self.refused += 1
                return Admission(admitted=False)
            victim = self._open.pop(key).handle
            self.evicted += 1
        self._open[peer] = _Open(handle=handle)
        return Admission(admitted=True, evict=victim)

    def answering(self, peer: Peer) -> None:
        """``peer``'s request has fully arrived: its connection no longer gives way."""
        entry = self._open.get(peer)
        if entry is not None:
            entry.answering = True

    def answered(self, peer: Peer) -> None:
        """``peer``'s response is complete: it waits on its client again, from now."""
        entry = self._open.get(peer)
        if entry is not None:
            entry.answering = False
            self._open.move_to_end(peer)

    def handle(self, peer: Peer) -> H | None:
        """The handle ``peer``'s connection was admitted with (None: not open)."""
        entry = self._open.get(peer)
        return None if entry is None else entry.handle

    def release(self, peer: Peer, handle: H) -> None:
        """``peer``'s connection closed.  A later connection from the same peer stays."""
        entry = self._open.get(peer)
        if entry is not None and entry.handle is handle:
            del self._open[peer]
