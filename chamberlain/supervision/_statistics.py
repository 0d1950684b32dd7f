from __future__ import annotations

from collections.abc import Iterable

import attrs

from ._child_spec import Strategy


@attrs.frozen(kw_only=True)
class ChildStatistics:
    """A snapshot of one child of a supervisor.

    ``state`` is one of:

    * ``"starting"``: queued for its first start in this run, or inside ``start``
      before calling ``task_status.started()``;
    * ``"running"``: started and not known to have exited;
    * ``"restarting"``: exited or being stopped, and will be started again (this
      covers the backoff delay);
    * ``"stopped"``: stopped by its supervisor (shutdown, giving up, or a strategy
      stopping a temporary child), or its supervisor is not running;
    * ``"exited"``: exited on its own and, by its restart type, stays down.

    ``restarts`` counts every time the supervisor started this child again, including
    restarts caused by a sibling under ``ONE_FOR_ALL``/``REST_FOR_ONE``. It keeps
    counting across runs of the supervisor, so it only ever grows.
    ``last_error`` is the most recent exception the child raised, as
    ``"ValueError: boom"``. ``started_at`` is the ``trio.current_time()`` at which the
    latest incarnation became ready. ``children`` holds the nested statistics when the
    child is itself a supervisor.
    """

    id: str
    state: str
    restarts: int
    last_error: str | None
    started_at: float | None
    children: SupervisorStatistics | None


@attrs.frozen(kw_only=True)
class SupervisorStatistics:
    """A snapshot of a supervisor and, recursively, of the supervisors below it.

    ``restarts_total`` sums ``restarts`` over the whole tree below this supervisor, so
    a crash deep in the tree shows up at the root.
    """

    name: str
    strategy: Strategy
    restarts_total: int
    children: tuple[ChildStatistics, ...]
    intensity: int
    period: float

    def restart_counts(self) -> dict[str, int]:
        """Map the path of every child in the tree to its restart count.

        Paths start with this supervisor's name and continue with child ids (not the
        names of nested supervisors, because ids are what their parent knows them
        by), e.g. ``{"root/runners": 0, "root/runners/echo": 2}``.
        """
        counts: dict[str, int] = {}
        self._collect(self.name, counts)
        return counts

    def _collect(self, prefix: str, counts: dict[str, int]) -> None:
        for child in self.children:
            path = f"{prefix}/{child.id}"
            counts[path] = child.restarts
            if child.children is not None:
                child.children._collect(path, counts)


def restarts_in_tree(children: Iterable[ChildStatistics]) -> int:
    """Sum the restart counts of ``children`` and of everything nested below them."""
    return sum(
        child.restarts + (child.children.restarts_total if child.children is not None else 0)
        for child in children
    )
