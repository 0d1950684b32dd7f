"""Schedules in plain, synchronous, I/O-free code.

:mod:`~chamberlain.schedule.timing` answers *when* a schedule fires (intervals,
cron in a time zone, one-shots, windows, weekdays, jitter);
:mod:`~chamberlain.schedule.policy` decides what to do with fires that were missed
or that find a job still running; :mod:`~chamberlain.schedule.breaker` is the
circuit breaker; :mod:`~chamberlain.schedule.plan` compiles the configuration into
the schedules to run; :mod:`~chamberlain.schedule.books` holds what is kept durably
and reported.  :mod:`~chamberlain.schedule.engine` puts them together: the
:class:`~chamberlain.schedule.engine.ScheduleEngine` takes the time and events in
and answers with actions (jobs to commit with their books, jobs to cancel), which
the :class:`~chamberlain.actors.scheduler.Scheduler` actor carries out.

Nothing here imports the actors or the store, and no module here uses trio, so
every rule can be tested on its own, without an event loop.
"""
