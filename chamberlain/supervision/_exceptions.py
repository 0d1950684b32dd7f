from __future__ import annotations


class SupervisorGaveUp(Exception):
    """Raised out of :meth:`Supervisor.run` when its children restarted too often.

    More than ``intensity`` restarts within ``period`` seconds means restarting is not
    fixing anything, so the supervisor stops all its children and fails, leaving the
    decision to its own supervisor (OTP's "fail upward"). The exception is raised
    ``from`` the last exception of the child whose exit tipped the balance.

    Attributes:
      supervisor: the name of the supervisor that gave up.
      child_id: the id of the child whose exit tipped the balance.
      restarts: how many restarts fell within the window, this last one included.
      period: the length of that window, in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        supervisor: str,
        child_id: str,
        restarts: int,
        period: float,
    ) -> None:
        super().__init__(message)
        self.supervisor = supervisor
        self.child_id = child_id
        self.restarts = restarts
        self.period = period
