"""Schedules in plain, synchronous, I/O-free code.

:mod:`~chamberlain.schedule.timing` answers *when* a schedule fires (intervals,
cron in a time zone, one-shots, windows, weekdays, jitter);
:mod:`~chamberlain.schedule.policy` decides what to do with fires that were missed
or that find a job still running; :mod:`~chamberlain.schedule.breaker` is the
circuit breaker; :mod:`~chamberlain.schedule.plan` compiles the configuration into
the schedules the :class:`~chamberlain.actors.scheduler.Scheduler` actor runs.

Nothing here imports the actors, so every rule can be tested on its own.
"""
