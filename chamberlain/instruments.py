"""Prometheus metrics: one registry per daemon, rendered by ``GET /metrics``.

Counters and histograms are fed by events as they happen: job outcomes from the
JobStore's committed status changes, HTTP requests from the web layer, callback
attempts from their actor.  Figures that describe *now* (queue depth, running jobs,
actor restarts, stream subscribers) are read at scrape time from a snapshot the
handler gathers through the gateway, so they can never drift from the truth.

Each daemon has its own :class:`~prometheus_client.CollectorRegistry`, never the
global one, so tests (and several daemons in one process) do not collide.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from chamberlain.records import Job, JobMessage, JobStatus

#: The ``Content-Type`` of the text exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Job run times span from an echo (milliseconds) to long batch jobs (an hour).
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


@attrs.frozen(kw_only=True)
class Snapshot:
    """What is true at scrape time."""

    queue_depth: int
    running: int
    max_workers: int
    restarts: Mapping[str, int]
    stream_subscribers: int
    stream_drops: int


class _Now(Collector):
    """Reads the snapshot the current scrape gathered."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if snap is None:
            return
        yield GaugeMetricFamily(
            "chamberlain_queue_depth", "Jobs waiting to run, due or not.", value=snap.queue_depth
        )
        yield GaugeMetricFamily(
            "chamberlain_jobs_running", "Jobs whose plugin process runs now.", value=snap.running
        )
        yield GaugeMetricFamily(
            "chamberlain_max_workers",
            "Plugin processes allowed at once (service.max_workers).",
            value=snap.max_workers,
        )
        restarts = CounterMetricFamily(
            "chamberlain_actor_restarts",
            "Restarts of each actor by its supervisor since the daemon started.",
            labels=["actor"],
        )
        for actor, count in sorted(snap.restarts.items()):
            restarts.add_metric([actor], count)
        yield restarts
        yield GaugeMetricFamily(
            "chamberlain_stream_subscribers",
            "Clients following /job/{id}/stream or /events/stream.",
            value=snap.stream_subscribers,
        )
        yield CounterMetricFamily(
            "chamberlain_stream_drops",
            "Stream clients dropped for reading too slowly.",
            value=snap.stream_drops,
        )


class Metrics:
    """The daemon's metrics; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.jobs_finished = Counter(
            "chamberlain_jobs_finished",
            "Jobs that reached a terminal status.",
            ["plugin", "command", "status"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "chamberlain_job_duration_seconds",
            "Run time of the final attempt of each finished job (started to finished).",
            ["plugin", "command"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.retries = Counter(
            "chamberlain_job_retries",
            "Attempts after which the job was queued again (a retry, or a recovery).",
            ["plugin", "command"],
            registry=self.registry,
        )
        self.timeouts = Counter(
            "chamberlain_job_timeouts",
            "Jobs that ended timed_out (a timeout not retried: retry.on_timeout false).",
            ["plugin", "command"],
            registry=self.registry,
        )
        self.http_requests = Counter(
            "chamberlain_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.callback_attempts = Counter(
            "chamberlain_callback_attempts",
            "Callback delivery attempts, by what the attempt's answer meant.",
            ["outcome"],
            registry=self.registry,
        )
        self.mcp_tool_calls = Counter(
            "chamberlain_mcp_tool_calls",
            "MCP tool calls answered, by tool and outcome: ok, error (a tool error the"
            " agent reads: a failed job, bad arguments) or refused (no scope, no such tool).",
            ["tool", "outcome"],
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "chamberlain_config_reloads",
            "Configuration reloads, by outcome: applied, or refused (the file had"
            " problems; the running configuration stayed).",
            ["outcome"],
            registry=self.registry,
        )
        self._now = _Now()
        self.registry.register(self._now)

    def observe(self, message: JobMessage, job: Job | None) -> None:
        """Count a committed status change; ``job`` is the job once it ended."""
        status = message.status
        if status is None:
            return
        labels = (message.plugin, message.command)
        if status is JobStatus.QUEUED and message.seq > 1:
            self.retries.labels(*labels).inc()
        elif status.terminal:
            self.jobs_finished.labels(*labels, status.value).inc()
            if status is JobStatus.TIMED_OUT:
                self.timeouts.labels(*labels).inc()
            if job is not None and job.started_at is not None and job.completed_at is not None:
                self.job_duration.labels(*labels).observe(
                    max(0.0, job.completed_at - job.started_at)
                )

    def http_request(self, route: str, method: str, status: int) -> None:
        """Count one answered HTTP request."""
        self.http_requests.labels(route, method, str(status)).inc()

    def config_reload(self, outcome: str) -> None:
        """Count one configuration reload, ``applied`` or ``refused``."""
        self.config_reloads.labels(outcome).inc()

    def mcp_tool_call(self, tool: str, outcome: str) -> None:
        """Count one MCP tool call; a refused call of an unknown tool counts as ``?``, so
        what a client makes up cannot grow the metric."""
        self.mcp_tool_calls.labels(tool, outcome).inc()

    def render(self, snapshot: Snapshot) -> bytes:
        """The text exposition of every metric, with ``snapshot`` as the present."""
        # Set and read in one synchronous step: no other scrape can interleave.
        self._now.snapshot = snapshot
        try:
            return generate_latest(self.registry)
        finally:
            self._now.snapshot = None
