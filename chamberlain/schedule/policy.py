"""What happens to fires that were missed, and to fires that find a job still running.

Both decisions are plain functions over plain values, so the Scheduler actor only
gathers the facts (the instants that fell due, the jobs still outstanding) and
carries out the answer.

**Missed fires.**  A fire is *missed* when it fell due while the daemon was down
(before it started), or when it is handled more than :data:`MISFIRE_GRACE` after
it fell due (the machine slept, or the daemon was wedged).  ``catch_up`` decides:
``skip`` runs none of them, ``run_once`` runs one for all of them (carrying the
latest missed instant), ``run_all`` runs each, at most :data:`CATCH_UP_LIMIT` (the
most recent ones).  Fires handled on time always run.

**Overlap.**  ``if_running`` applies when a schedule already has
``max_outstanding`` jobs queued or running: ``skip`` drops the new fire, ``queue``
keeps it (durably, at most :data:`OWED_LIMIT`) until a job finishes, ``cancel``
cancels the oldest outstanding job and runs the new fire once it is gone.
Catch-up runs are the exception: the operator asked for each of them, so they
always wait their turn (as with ``queue``) and never cancel one another.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import Final

import attrs

#: How late a fire may be handled and still count as on time.  The Scheduler wakes
#: within milliseconds of a due instant; a minute late means the machine slept or
#: the daemon was wedged, and the run is treated as missed.
MISFIRE_GRACE: Final = 60.0
#: The most missed fires ``run_all`` runs at once.
CATCH_UP_LIMIT: Final = 100
#: The most fires ``if_running: queue`` keeps waiting for one schedule.
OWED_LIMIT: Final = 100


class CatchUp(enum.Enum):
    """``catch_up``: what to do with fires missed while the daemon was down."""

    SKIP = "skip"
    RUN_ONCE = "run_once"
    RUN_ALL = "run_all"


class IfRunning(enum.Enum):
    """``if_running``: what a fire does when the schedule's jobs are still outstanding."""

    SKIP = "skip"
    QUEUE = "queue"
    CANCEL = "cancel"


@attrs.frozen
class Fire:
    """One run a schedule owes: its nominal instant, and whether it is a catch-up."""

    nominal: float
    late: bool = False


@attrs.frozen(kw_only=True)
class Backlog:
    """The fires that fell due since a schedule was last handled, sorted out."""

    #: What to run, oldest first.
    runs: tuple[Fire, ...]
    #: Missed fires that will not run, oldest first (``skip``: all of them;
    #: ``run_once``: all but the latest; ``run_all``: those past the limit).
    dropped: tuple[float, ...]
    #: True when even more fires were missed than the search looked at.
    more_missed: bool


def sort_backlog(
    due: Sequence[float],
    *,
    now: float,
    started_at: float,
    due_at: Callable[[float], float],
    policy: CatchUp,
    more: bool = False,
    grace: float = MISFIRE_GRACE,
) -> Backlog:
    """Decide which of ``due`` (nominal instants, oldest first) run now.

    ``due_at`` gives a fire's due instant (its nominal instant plus jitter);
    ``more`` says that older fires than ``due`` holds were missed as well.
    """
    missed = [f for f in due if f < started_at or now - due_at(f) > grace]
    on_time = [Fire(f) for f in due if not (f < started_at or now - due_at(f) > grace)]
    caught: list[Fire]
    if not missed or policy is CatchUp.SKIP:
        caught = []
    elif policy is CatchUp.RUN_ONCE:
        caught = [Fire(missed[-1], late=True)]
    else:
        caught = [Fire(f, late=True) for f in missed[-CATCH_UP_LIMIT:]]
    ran = {fire.nominal for fire in caught}
    return Backlog(
        runs=tuple(caught + on_time),
        dropped=tuple(f for f in missed if f not in ran),
        more_missed=more and bool(missed),
    )


@attrs.frozen(kw_only=True)
class Placement:
    """What becomes of a schedule's pending fires, given its outstanding jobs."""

    #: Enqueue these now.
    enqueue: tuple[Fire, ...] = ()
    #: Keep these until an outstanding job is gone.
    owed: tuple[Fire, ...] = ()
    #: Drop these.
    skipped: tuple[Fire, ...] = ()
    #: Cancel this many outstanding jobs, oldest first, to make room.
    cancel: int = 0


def place(
    policy: IfRunning,
    pending: Sequence[Fire],
    *,
    outstanding: int,
    max_outstanding: int,
    cancelling: int = 0,
    owed_limit: int = OWED_LIMIT,
) -> Placement:
    """Apply ``if_running`` to ``pending`` (fires kept from before first, then new ones).

    ``outstanding`` counts the schedule's queued and running jobs, ``cancelling``
    those among them already being cancelled (they will free their place soon).
    """
    room = max(0, max_outstanding - outstanding)
    now_, rest = tuple(pending[:room]), tuple(pending[room:])
    caught_up = tuple(f for f in rest if f.late)
    fresh = tuple(f for f in rest if not f.late)
    if not fresh or policy is IfRunning.QUEUE:
        waiting = caught_up + fresh
        keep = waiting[-owed_limit:] if owed_limit > 0 else ()
        return Placement(enqueue=now_, owed=keep, skipped=waiting[: len(waiting) - len(keep)])
    if policy is IfRunning.SKIP:
        return Placement(enqueue=now_, owed=caught_up, skipped=fresh)
    # Cancel: only the newest fire matters, and it needs one free place.
    needed = outstanding - cancelling - (max_outstanding - 1)
    return Placement(
        enqueue=now_,
        owed=(*caught_up, fresh[-1]),
        skipped=fresh[:-1],
        cancel=max(0, needed),
    )
