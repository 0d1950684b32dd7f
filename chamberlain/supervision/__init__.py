"""OTP-style supervision of trio tasks.

A :class:`Supervisor` starts its children (described by :class:`ChildSpec`) in order,
restarts them by their :class:`Restart` type and its :class:`Strategy`, backs off
exponentially between restarts, and gives up with :class:`SupervisorGaveUp` when
restarts come too fast.  Children may be added and deleted while it runs
(:meth:`Supervisor.start_child`, :meth:`Supervisor.delete_child`), as a configuration
reload does with plugins. :meth:`Supervisor.statistics` reports the whole tree.
"""

from ._child_spec import ChildSpec, Restart, Strategy
from ._exceptions import SupervisorGaveUp
from ._statistics import ChildStatistics, SupervisorStatistics
from ._supervisor import Supervisor

__all__ = [
    "ChildSpec",
    "ChildStatistics",
    "Restart",
    "Strategy",
    "Supervisor",
    "SupervisorGaveUp",
    "SupervisorStatistics",
]
