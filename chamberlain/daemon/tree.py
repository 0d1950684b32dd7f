"""The daemon: builds the actor tree, serves its listeners, owns signals and shutdown.

This is the composition root, the one place that knows every layer: it creates the
mailboxes, the actors (``chamberlain.actors``), the HTTP apps (``chamberlain.web``)
and the supervisors that run them::

    root (rest_for_one)
     ├─ jobstore
     ├─ runners (one_for_one): one Runner per plugin
     ├─ dispatcher
     ├─ router
     ├─ scheduler
     ├─ web
     ├─ webhooks: only with ``webhooks.listen``, the endpoints on their own listener
     └─ callbacks: delivers job callbacks; last, so its crash restarts nothing else

Mailboxes are created here, before any actor starts, and outlive every restart, so
an actor's address stays valid while it is restarted.  rest_for_one in this order
means a JobStore crash restarts everything that depends on it, while a web crash
restarts only what comes after it.  Every actor and the web layer get the same
clock (:attr:`Daemon.now`), so a test can run the whole tree on a fake one.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from chamberlain.actors.callback_sender import CallbackSender
from chamberlain.actors.dispatcher import Dispatcher
from chamberlain.actors.gateway import Gateway, Lifecycle, Phase
from chamberlain.actors.hub import Hub
from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.journal import Journal
from chamberlain.actors.mail import (
    CallbacksDue,
    DispatcherRequest,
    Drain,
    JobStoreRequest,
    PauseScheduling,
    RouterRequest,
    RunnerRequest,
    SchedulerRequest,
    Terminate,
    Wake,
    WakeRouter,
)
from chamberlain.actors.mailbox import call
from chamberlain.actors.pull_request_opener import PullRequestOpener
from chamberlain.actors.relay_sender import RelaySender
from chamberlain.actors.repository_book import RepositoryBook
from chamberlain.actors.repository_sync import RepositorySync, sync_plugin
from chamberlain.actors.router import Router
from chamberlain.actors.runner import Runner
from chamberlain.actors.scheduler import Scheduler, settled_notifier
from chamberlain.config import Config
from chamberlain.daemon import jsonlog
from chamberlain.daemon.subreaper import tend_leftovers
from chamberlain.daemon.systemd import Notifier
from chamberlain.instruments import Metrics
from chamberlain.plugins.binding import SYNC_PLUGIN, BoundPlugin
from chamberlain.plugins.process import Limits, run_plugin
from chamberlain.plugins.protocol import ProcessResult, TerminationReason
from chamberlain.plugins.workspace import Workspaces, workspace_root
from chamberlain.redaction import Redactor
from chamberlain.relay_rules import RELAY_PLUGIN, with_relay_plugin
from chamberlain.routing.planner import Routing, build_routing
from chamberlain.schedule.plan import build_plans
from chamberlain.sealing import Sealer
from chamberlain.supervision import ChildSpec, Strategy, Supervisor
from chamberlain.vault import Vault

if TYPE_CHECKING:
    # The web layer is imported when the web actor starts: `chamberlain check` needs none of it.
    from chamberlain.web.mcp_endpoint import McpEndpoint

log = logging.getLogger("chamberlain.root")

#: Mailbox sizes.  Bounded, so a flood of requests slows its senders, not the actor.
STORE_MAILBOX = 1024
#: The API's reads, answered off the writer's queue (see JobStore).
STORE_READS_MAILBOX = 1024
DISPATCHER_MAILBOX = 1024
ROUTER_MAILBOX = 1024
SCHEDULER_MAILBOX = 1024
#: Only wake-ups travel here; one waiting is as good as many.
CALLBACKS_MAILBOX = 16
#: After a second SIGINT/SIGTERM, how long running jobs get to be stopped and
#: recorded as interrupted before the daemon exits regardless.
INTERRUPT_LIMIT = 3.0


@attrs.define(eq=False)
class Daemon:
    """One daemon: its actors, their mailboxes and supervisors.

    ``web_app`` builds the ASGI app from the gateway; leave it None for a daemon
    without HTTP (``chamberlain run``).
    """

    config: Config
    plugins: Mapping[str, BoundPlugin]
    state_path: str
    limits: Limits = attrs.field(factory=Limits)
    serve_web: bool = True
    #: Off for a foreground ``chamberlain run`` and for tests: Ctrl-C stays Python's.
    handle_signals: bool = True
    now: Callable[[], float] = time.time
    #: Runs plugin processes; tests pass a fake to drive the tree on a mock clock.
    execute: Callable[..., Awaitable[ProcessResult]] = run_plugin
    #: See :attr:`JobStore.offload`.
    store_offload: bool = True
    #: Once ready, exempt everything loaded so far from the garbage collector (see
    #: :meth:`run`).  On for ``chamberlain start``; off where many daemons share a
    #: process (tests), since what it exempts is never collected.
    freeze_heap: bool = False
    #: Routes and pipelines; built (and checked) from the config when not given.
    routing: Routing | None = None
    lifecycle: Lifecycle = attrs.field(factory=Lifecycle)
    #: Tells systemd about start-up, stopping and liveness; silent unless given one.
    notifier: Notifier = attrs.field(factory=Notifier)
    metrics: Metrics = attrs.field(factory=Metrics)
    #: Off for ``chamberlain run``, which runs one job and nothing else.
    run_schedules: bool = True
    #: The registry's secrets, unsealed at start-up (``chamberlain start`` reads them
    #: before the tree starts); the secret routes keep it in step with the store.
    vault: Vault = attrs.field(factory=Vault, repr=False)
    #: Seals what the registry is given.  The default, a random key nothing keeps,
    #: suits a store that dies with the process; ``chamberlain start`` passes the
    #: state's own key (see chamberlain.sealing).
    sealer: Sealer = attrs.field(factory=Sealer.random)
    #: Filled in once the web server is listening.
    urls: list[str] = attrs.field(factory=list, init=False)
    webhook_urls: list[str] = attrs.field(factory=list, init=False)
    #: The MCP server of the web actor now serving (None without one); whatever
    #: changes the plugins or pipelines calls its ``tools_changed``.
    mcp: McpEndpoint | None = attrs.field(default=None, init=False)
    gateway: Gateway = attrs.field(init=False)
    root: Supervisor = attrs.field(init=False)
    runners: dict[str, Runner] = attrs.field(factory=dict, init=False)
    #: Tests may set its ``transport`` before the daemon runs.
    callbacks: CallbackSender = attrs.field(init=False)
    scheduler: Scheduler = attrs.field(init=False)
    _store_tx: trio.MemorySendChannel[JobStoreRequest] = attrs.field(init=False)
    _dispatcher_tx: trio.MemorySendChannel[DispatcherRequest] = attrs.field(init=False)
    _router_tx: trio.MemorySendChannel[RouterRequest] = attrs.field(init=False)
    _callbacks_tx: trio.MemorySendChannel[CallbacksDue] = attrs.field(init=False)
    _scheduler_tx: trio.MemorySendChannel[SchedulerRequest] = attrs.field(init=False)
    _runner_tx: dict[str, trio.MemorySendChannel[RunnerRequest]] = attrs.field(
        factory=dict, init=False
    )
    _cancel: trio.CancelScope | None = attrs.field(default=None, init=False)
    _stopping: bool = attrs.field(default=False, init=False)
    _interrupting: bool = attrs.field(default=False, init=False)
    #: The listening sockets, by child id ("web", "webhooks"); see :meth:`bind`.
    _listeners: dict[str, socket.socket] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        service = self.config.service
        # Before anything runs or logs.  The vault rebuilds its redactor whenever a
        # secret changes; the log formatter is handed each new one, the Runners, the
        # callback sender and the API read the vault's when they need it.
        self.vault.configure(self.config)
        self.vault.on_change(jsonlog.redact_with)
        store_tx, store_rx = trio.open_memory_channel[JobStoreRequest](STORE_MAILBOX)
        reads_tx, reads_rx = trio.open_memory_channel[JobStoreRequest](STORE_READS_MAILBOX)
        disp_tx, disp_rx = trio.open_memory_channel[DispatcherRequest](DISPATCHER_MAILBOX)
        router_tx, router_rx = trio.open_memory_channel[RouterRequest](ROUTER_MAILBOX)
        self._store_tx, self._dispatcher_tx, self._router_tx = store_tx, disp_tx, router_tx
        callbacks_tx, callbacks_rx = trio.open_memory_channel[CallbacksDue](CALLBACKS_MAILBOX)
        self._callbacks_tx = callbacks_tx
        sched_tx, sched_rx = trio.open_memory_channel[SchedulerRequest](SCHEDULER_MAILBOX)
        self._scheduler_tx = sched_tx
        hub = Hub(buffer=self.config.api.sse_buffer)
        journal = Journal(hub=hub, metrics=self.metrics, wake_callbacks=self._wake_callbacks)
        # Relay steps' deliveries are jobs of a built-in plugin: run by a Runner of
        # their own, invisible to the API's plugin list and triggers.
        runnable = with_relay_plugin(self.config, self.plugins)
        # So are the syncs of repositories' mirrors (POST /repositories/{name}/sync).
        runnable[SYNC_PLUGIN] = sync_plugin(self.config)
        if self.routing is None:
            self.routing = build_routing(
                self.config.routes,
                self.config.pipelines,
                runnable,
                source=self.config.source,
                service=service.name,
            )
        relay_sender = RelaySender(
            service=service.name, instances=self.config.instances, vault=self.vault, now=self.now
        )

        jobstore = JobStore(
            path=self.state_path,
            wake_dispatcher=self._wake_dispatcher,
            wake_router=self._wake_router,
            dedupe_ttl=service.dedupe_ttl,
            job_retention=service.job_retention,
            workspace_ttl=self.config.workspaces.ttl,
            now=self.now,
            offload=self.store_offload,
            journal=journal,
            routing=self.routing,
            job_finished=settled_notifier(sched_tx),
            # The Gateway is made below; it keeps the tables of MCP servers and of
            # the repositories added through the API.
            mcp_servers_loaded=lambda servers: self.gateway.mcp_servers_loaded(servers),
            repositories_loaded=lambda added: self.gateway.repositories_loaded(added),
        )
        workspaces = Workspaces(workspace_root(self.state_path))
        mirror_locks: dict[str, trio.Lock] = {}
        repositories = RepositoryBook(configured=self.config.repositories)
        pull_requests = PullRequestOpener(
            store=store_tx,
            repositories=repositories,
            workspaces=workspaces,
            vault=self.vault,
        )
        executors: dict[str, Callable[..., Awaitable[ProcessResult]]] = {
            RELAY_PLUGIN: relay_sender,
            SYNC_PLUGIN: RepositorySync(
                repositories=repositories,
                workspaces=workspaces,
                vault=self.vault,
                mirror_locks=mirror_locks,
                now=self.now,
            ),
        }
        runner_specs: list[ChildSpec] = []
        for name, plugin in sorted(runnable.items()):
            # Room for one Run and one Terminate per job in flight, plus the
            # shutdown Terminate: the Dispatcher's send_nowait can never block.
            tx, rx = trio.open_memory_channel[RunnerRequest](2 * plugin.parallelism + 1)
            self._runner_tx[name] = tx
            runner = Runner(
                plugin=plugin,
                store=store_tx,
                dispatcher=disp_tx,
                limits=self.limits,
                now=self.now,
                execute=executors.get(name, self.execute),
                vault=self.vault,
                workspaces=workspaces,
                repositories=repositories,
                mirror_locks=mirror_locks,
                pull_requests=pull_requests,
            )
            self.runners[name] = runner
            runner_specs.append(ChildSpec(id=name, start=functools.partial(runner.run, rx)))
        runners = Supervisor(
            name="runners",
            children=runner_specs,
            strategy=Strategy.ONE_FOR_ONE,
            intensity=10,
            period=30.0,
        )
        dispatcher = Dispatcher(
            store=store_tx,
            runners=self._runner_tx,
            max_workers=service.max_workers,
            parallelism={n: p.parallelism for n, p in runnable.items()},
            now=self.now,
        )
        router = Router(store=store_tx, routing=self.routing, now=self.now)
        self.scheduler = scheduler = Scheduler(
            store=store_tx,
            dispatcher=disp_tx,
            address=sched_tx,
            plans=build_plans(self.plugins) if self.run_schedules else (),
            now=self.now,
            seed=service.name,
        )
        self.gateway = Gateway(
            store=store_tx,
            reads=reads_tx,
            dispatcher=disp_tx,
            plugins=self.plugins,
            lifecycle=self.lifecycle,
            supervisor_statistics=lambda: self.root.statistics(),
            storage_problem=lambda: jobstore.statistics().degraded,
            router=router_tx,
            routing=self.routing,
            timeout=self.config.api.request_timeout,
            max_concurrent_sync=self.config.api.max_concurrent_sync,
            hub=hub,
            scheduler=sched_tx,
            vault=self.vault,
            sealer=self.sealer,
            workspaces=workspaces,
            workspace_budget=self.config.workspaces.max_bytes,
            repositories=repositories,
            pull_requests=pull_requests,
            mirror_locks=mirror_locks,
        )
        callbacks = self.callbacks = CallbackSender(
            store=store_tx,
            config=self.config.callbacks,
            wake=self._wake_callbacks,
            metrics=self.metrics,
            now=self.now,
            vault=self.vault,
        )
        children = [
            ChildSpec(id="jobstore", start=functools.partial(jobstore.run, store_rx, reads_rx)),
            ChildSpec(id="runners", start=runners.run, statistics=runners.statistics),
            ChildSpec(id="dispatcher", start=functools.partial(dispatcher.run, disp_rx)),
            ChildSpec(id="router", start=functools.partial(router.run, router_rx)),
            ChildSpec(id="scheduler", start=functools.partial(scheduler.run, sched_rx)),
        ]
        if self.serve_web:
            children.append(ChildSpec(id="web", start=self._serve_web))
            if self.config.webhooks.listen and self.config.webhooks.endpoints:
                children.append(ChildSpec(id="webhooks", start=self._serve_webhooks))
        # Last: it depends on the JobStore only, and a crash of it restarts nothing else.
        children.append(
            ChildSpec(id="callbacks", start=functools.partial(callbacks.run, callbacks_rx))
        )
        self.root = Supervisor(
            name="root",
            children=children,
            strategy=Strategy.REST_FOR_ONE,
            intensity=5,
            period=60.0,
        )

    @property
    def redactor(self) -> Redactor:
        """What takes every secret out of job results, messages, log lines and errors now."""
        return self.vault.redactor

    def _wake_router(self) -> None:
        try:
            self._router_tx.send_nowait(WakeRouter())
        except trio.WouldBlock:
            pass  # a full mailbox will wake the Router anyway

    def _wake_callbacks(self) -> None:
        try:
            self._callbacks_tx.send_nowait(CallbacksDue())
        except trio.WouldBlock:
            pass  # a full mailbox will wake the sender anyway

    def _wake_dispatcher(self) -> None:
        try:
            self._dispatcher_tx.send_nowait(Wake())
        except trio.WouldBlock:
            pass  # a full mailbox will wake the Dispatcher anyway

    async def _serve_web(
        self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from chamberlain.web.app import create_app
        from chamberlain.web.mcp_endpoint import McpEndpoint, McpMount
        from chamberlain.web.relay_ingress import relay_routes
        from chamberlain.web.routes import ROUTES
        from chamberlain.web.serve import serve_api
        from chamberlain.web.webhooks import webhook_routes

        hooks = self.config.webhooks
        routes = ROUTES if hooks.listen else (*ROUTES, *webhook_routes(hooks))
        # On the API listener, as in Ductile.
        routes = (*routes, *relay_routes(self.config.remote_ingress))
        app = create_app(
            self.gateway,
            self.config.api,
            routes=routes,
            metrics=self.metrics,
            callbacks=self.config.callbacks,
            now=self.now,
            redactor=lambda: self.vault.redactor,
        )

        mcp = self.config.mcp
        endpoint = (
            McpEndpoint(app.site, routes, mcp, redactor=lambda: self.vault.redactor)
            if mcp.enabled
            else None
        )
        self.mcp = endpoint

        async def ready(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            await serve_api(
                app if endpoint is None else McpMount(app, endpoint),
                self.config.api,
                listener=self._listeners.get("web"),
                task_status=task_status,
            )

        # The MCP sessions are tasks of this actor's: they end when it does.
        running = contextlib.nullcontext() if endpoint is None else endpoint.running()
        async with running, trio.open_nursery() as nursery:
            self.urls = list(await nursery.start(ready))
            task_status.started(self.urls)

    async def _serve_webhooks(
        self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The webhook endpoints on a listener of their own (``webhooks.listen``)."""
        from chamberlain.web.app import create_app
        from chamberlain.web.serve import serve_api
        from chamberlain.web.webhooks import webhook_routes

        hooks = self.config.webhooks
        assert hooks.listen is not None
        api = attrs.evolve(self.config.api, listen=hooks.listen)
        app = create_app(
            self.gateway,
            api,
            routes=webhook_routes(hooks),
            metrics=self.metrics,
            now=self.now,
            redactor=lambda: self.vault.redactor,
        )
        async with trio.open_nursery() as nursery:
            serve = functools.partial(serve_api, app, api, listener=self._listeners.get("webhooks"))
            self.webhook_urls = list(await nursery.start(serve))
            task_status.started(self.webhook_urls)

    def bind(self) -> None:
        """Open the listening sockets now, before any actor starts.

        Raises :class:`~chamberlain.web.serve.ListenError` for an address that cannot
        be listened on: a configuration problem no restart of the web layer would
        fix.  The sockets are kept for the daemon's life, so a restarted listener
        serves on the same one.  :meth:`run` binds if this was not called first.
        """
        if not self.serve_web or self._listeners:
            return
        from chamberlain.web.serve import open_listener

        wanted = {"web": self.config.api}
        hooks = self.config.webhooks
        if hooks.listen and hooks.endpoints:
            wanted["webhooks"] = attrs.evolve(self.config.api, listen=hooks.listen)
        try:
            for child, api in wanted.items():
                self._listeners[child] = open_listener(api)
        except BaseException:
            self.close_listeners()
            raise

    def close_listeners(self) -> None:
        """Close the sockets :meth:`bind` opened."""
        for sock in self._listeners.values():
            sock.close()
        self._listeners.clear()

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run until stopped by :meth:`shutdown`, a signal, or a supervisor giving up.

        The first SIGINT/SIGTERM drains (see :meth:`shutdown`); a second one stops
        the running jobs, records them as interrupted (within
        :data:`INTERRUPT_LIMIT`) and cancels everything; a third cancels at once.
        SIGHUP is logged and otherwise ignored: reloading the configuration is not
        supported yet, and it must not kill the daemon.
        """
        self.bind()
        try:
            await self._run(task_status=task_status)
        finally:
            self.close_listeners()

    async def _run(self, *, task_status: trio.TaskStatus[Daemon]) -> None:
        async with trio.open_nursery() as nursery:
            self._cancel = nursery.cancel_scope
            await nursery.start(self.notifier.keep_alive)
            if self.handle_signals:
                await nursery.start(self._watch_signals)
            # Before any plugin starts: with signals, the daemon owns its process and
            # adopts (subreaper) the plugin descendants that escape their group.
            await nursery.start(
                functools.partial(
                    tend_leftovers,
                    interval=self.config.service.sweep_interval,
                    adopt=self.handle_signals,
                )
            )
            await nursery.start(self._run_root)
            self.lifecycle.phase = Phase.READY
            log.info(
                "ready: %d plugins, max_workers %d%s",
                len(self.plugins),
                self.config.service.max_workers,
                f", listening on {', '.join(self.urls)}" if self.urls else "",
                extra={"component": "root", "urls": self.urls, "webhook_urls": self.webhook_urls},
            )
            self.notifier.ready(f"ready: {len(self.plugins)} plugins")
            if self.freeze_heap:
                # The ~70,000 objects of the modules, config and actors live as long as
                # the daemon; left tracked, every full collection walks them all (tens
                # of milliseconds, stalling every request in flight: a p99 spike).
                gc.freeze()
            task_status.started(self)

    async def _run_root(
        self, *, task_status: trio.TaskStatus[Supervisor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.root.run(task_status=task_status)
        # The tree stopped in order: nothing else is left to do.
        assert self._cancel is not None
        self._cancel.cancel()

    async def _watch_signals(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            task_status.started()
            async with trio.open_nursery() as nursery:
                async for signum in signals:
                    name = signal.Signals(signum).name
                    if signum == signal.SIGHUP:
                        # Its default action would end the daemon without a drain.
                        log.warning(
                            "SIGHUP received: reloading the configuration is not"
                            " supported yet; carrying on unchanged",
                            extra={"component": "root"},
                        )
                    elif not self._stopping:
                        log.info("%s received: draining", name, extra={"component": "root"})
                        nursery.start_soon(self.shutdown)
                    elif not self._interrupting:
                        log.warning(
                            "%s received again: stopping at once; running jobs go back"
                            " to the queue",
                            name,
                            extra={"component": "root"},
                        )
                        self._interrupting = True
                        nursery.start_soon(self._interrupt)
                    else:
                        log.warning(
                            "%s received a third time: exiting now",
                            name,
                            extra={"component": "root"},
                        )
                        assert self._cancel is not None
                        self._cancel.cancel()

    async def _interrupt(self) -> None:
        """Stop every running job as the drain's grace expiry does, then exit.

        Each Runner records its jobs as interrupted, which gives their attempt
        back; a job not recorded within :data:`INTERRUPT_LIMIT` (a plugin that
        ignores SIGTERM) is left to the next start's recovery.
        """

        async def drained() -> None:
            # Answered once no job runs; also keeps the Dispatcher from starting more.
            await call(self._dispatcher_tx, lambda r: Drain(reply=r))

        with trio.move_on_after(INTERRUPT_LIMIT):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drained)
                for tx in self._runner_tx.values():
                    await tx.send(Terminate(reason=TerminationReason.SHUTDOWN))
        assert self._cancel is not None
        self._cancel.cancel()

    async def shutdown(self) -> None:
        """Drain and stop: the sequence a first SIGTERM starts.

        1. Stop accepting work (``/ready`` answers 503, triggers 503).
        2. Start no new jobs; let running ones finish within ``shutdown_grace``.
        3. Past the grace, terminate their process groups (SIGTERM, then SIGKILL);
           those jobs go back to the queue for the next start.
        4. Stop the actors in reverse start order (web first, JobStore last, which
           checkpoints the database).
        """
        if self._stopping:
            return
        self._stopping = True
        self.lifecycle.phase = Phase.DRAINING
        self.notifier.stopping("draining: no new jobs start")
        grace = self.config.service.shutdown_grace
        # Scheduled runs stop first, so draining does not race new work.
        with trio.move_on_after(min(grace, self.config.api.request_timeout)):
            await call(self._scheduler_tx, lambda r: PauseScheduling(reply=r))
        drained = False
        with trio.move_on_after(grace):
            await call(self._dispatcher_tx, lambda r: Drain(reply=r))
            drained = True
        if not drained:
            log.warning(
                "shutdown grace of %gs is over: terminating running jobs",
                grace,
                extra={"component": "root"},
            )
            for tx in self._runner_tx.values():
                with trio.move_on_after(1.0):
                    await tx.send(Terminate(reason=TerminationReason.SHUTDOWN))
            with trio.move_on_after(self.limits.kill_grace + 5.0):
                await call(self._dispatcher_tx, lambda r: Drain(reply=r))
        await self.root.stop()
        log.info("stopped", extra={"component": "root"})
