from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from ._statistics import SupervisorStatistics


class Restart(enum.Enum):
    """When a supervisor brings a child back after it exits (OTP's restart types).

    * ``PERMANENT``: always, whether it crashed or returned. For actors that are
      supposed to live as long as their supervisor.
    * ``TRANSIENT``: only if it crashed (raised an :class:`Exception`). For work that
      can legitimately finish.
    * ``TEMPORARY``: never; its exit is only recorded. It is not restarted either when a
      sibling's crash makes the strategy stop it.
    """

    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    """Which children a supervisor restarts when one of them has to be restarted.

    * ``ONE_FOR_ONE``: only that child; siblings are independent of each other.
    * ``ONE_FOR_ALL``: every child, because they only work as a set.
    * ``REST_FOR_ONE``: that child and every child started after it, because later
      children depend on earlier ones (start order is dependency order).
    """

    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


def check_name(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    """Reject names that would make the ``a/b/c`` paths of restart counts ambiguous."""
    if not value or "/" in value:
        raise ValueError(f"{attribute.name} must be non-empty and contain no '/': {value!r}")


@attrs.frozen(kw_only=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child.

    ``start`` is called as ``await nursery.start(start)``, so it receives a
    ``task_status`` keyword argument and must call ``task_status.started(...)`` once it
    can do its job; the supervisor starts the next child only after that. Raising
    before ``started()`` counts as a crash, like raising after it.

    ``shutdown_timeout`` bounds how long an orderly stop waits for the child after
    cancelling it. Cancellation is the strongest thing trio offers, so a child that
    shields itself for longer is left to finish on its own while the supervisor moves
    on to the next one; the supervisor's ``run()`` still waits for it before returning.

    ``statistics`` is set when the child is itself a :class:`Supervisor` (pass its
    bound ``statistics`` method) so that statistics nest.
    """

    id: str = attrs.field(validator=check_name)
    start: Callable[..., Awaitable[object]] = attrs.field(validator=attrs.validators.is_callable())
    restart: Restart = attrs.field(
        default=Restart.PERMANENT, validator=attrs.validators.instance_of(Restart)
    )
    shutdown_timeout: float = attrs.field(default=5.0, validator=attrs.validators.ge(0))
    statistics: Callable[[], SupervisorStatistics] | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.is_callable()),
    )
