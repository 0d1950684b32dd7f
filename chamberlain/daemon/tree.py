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
import math
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
    BuryQueued,
    CallbacksDue,
    DispatcherRequest,
    Drain,
    JobStoreRequest,
    Limit,
    PauseScheduling,
    ReplacePlans,
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
from chamberlain.actors.repository_sync import RepositorySync
from chamberlain.actors.router import Router
from chamberlain.actors.runner import Runner
from chamberlain.actors.scheduler import Scheduler, settled_notifier
from chamberlain.config import Config, ConfigError, check_secret_references
from chamberlain.daemon import jsonlog
from chamberlain.daemon.configuration import Prepared, prepare, routing_of, runnable_plugins
from chamberlain.daemon.subreaper import tend_leftovers
from chamberlain.daemon.systemd import Notifier
from chamberlain.instruments import Metrics
from chamberlain.plugins.binding import SYNC_PLUGIN, BoundPlugin
from chamberlain.plugins.process import Limits, run_plugin
from chamberlain.plugins.protocol import ProcessResult, TerminationReason
from chamberlain.plugins.workspace import Workspaces, workspace_root
from chamberlain.records import ConfigProblem, LoadedConfig, ReloadRefused, ReloadReport
from chamberlain.redaction import Redactor
from chamberlain.relay_rules import RELAY_PLUGIN
from chamberlain.reloading import ReloadPlan, plan_reload
from chamberlain.routing.planner import Routing
from chamberlain.schedule.plan import build_plans
from chamberlain.sealing import Sealer
from chamberlain.supervision import ChildSpec, Restart, Strategy, Supervisor
from chamberlain.vault import Vault

if TYPE_CHECKING:
    # The web layer is imported when the web actor starts: `chamberlain check` needs none of it.
    from chamberlain.web.app import ApiApp
    from chamberlain.web.mcp_endpoint import McpEndpoint
    from chamberlain.web.spec import Route

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
#: What a queued job of a plugin a reload removed ends with.
REMOVED_BY_RELOAD = "plugin removed by reload"


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
    #: The file the configuration came from; None (the defaults) cannot be reloaded.
    config_path: str | None = None
    #: That file as last loaded, before the command line's overrides (``--listen``):
    #: what a reload compares the new file with.  Defaults to ``config``.
    file_config: Config | None = None
    #: ``sha256:<hex>`` of that file (see :func:`~chamberlain.daemon.configuration.prepare`).
    config_hash: str = ""
    #: ``--log-level`` was given: it wins over ``service.log_level``, reloads too.
    log_level_pinned: bool = False
    #: Which configuration runs: when loaded, its hash, how many reloads.
    loaded: LoadedConfig = attrs.field(init=False)
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
    #: The daemon's own tasks (signals, retiring Runners), for :meth:`reload`.
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    #: One reload at a time.
    _reloading: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    _runner_supervisor: Supervisor = attrs.field(init=False)
    _make_runner: Callable[[BoundPlugin], Runner] = attrs.field(init=False)
    _jobstore: JobStore = attrs.field(init=False)
    _router: Router = attrs.field(init=False)
    #: The plugins Runners run: the configured ones and the built-in relay and sync.
    _runnable: dict[str, BoundPlugin] = attrs.field(factory=dict, init=False)
    #: The HTTP apps serving now, by child id ("web", "webhooks").
    _apps: dict[str, ApiApp] = attrs.field(factory=dict, init=False)
    _stopping: bool = attrs.field(default=False, init=False)
    _interrupting: bool = attrs.field(default=False, init=False)
    #: The listening sockets, by child id ("web", "webhooks"); see :meth:`bind`.
    _listeners: dict[str, socket.socket] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        service = self.config.service
        if self.file_config is None:
            self.file_config = self.config
        self.loaded = LoadedConfig(loaded_at=self.now(), config_hash=self.config_hash)
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
        runnable = runnable_plugins(self.config, self.plugins)
        if self.routing is None:
            self.routing = routing_of(self.config, runnable)
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
        self._make_runner = lambda plugin: Runner(
            plugin=plugin,
            store=store_tx,
            dispatcher=disp_tx,
            limits=self.limits,
            now=self.now,
            execute=executors.get(plugin.name, self.execute),
            vault=self.vault,
            workspaces=workspaces,
            repositories=repositories,
            mirror_locks=mirror_locks,
            pull_requests=pull_requests,
        )
        self._runnable = runnable
        runner_specs = [self._runner_spec(plugin) for _, plugin in sorted(runnable.items())]
        runners = self._runner_supervisor = Supervisor(
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
        router = self._router = Router(store=store_tx, routing=self.routing, now=self.now)
        self._jobstore = jobstore
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
            reloader=None if self.config_path is None else self.reload,
            loaded_config=lambda: self.loaded,
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

    def _runner_spec(self, plugin: BoundPlugin) -> ChildSpec:
        """A Runner for ``plugin``, its mailbox, and how its supervisor starts it."""
        # Unbounded: what a Runner is sent is bounded by the Dispatcher's books (a
        # Run and a Terminate per job in flight, under a parallelism a reload may
        # raise), so its send_nowait can never block, nor fail.
        tx, rx = trio.open_memory_channel[RunnerRequest](math.inf)
        self._runner_tx[plugin.name] = tx
        runner = self.runners[plugin.name] = self._make_runner(plugin)
        # Transient: a Runner returns only when retired (its plugin was removed).
        return ChildSpec(
            id=plugin.name, start=functools.partial(runner.run, rx), restart=Restart.TRANSIENT
        )

    async def reload(self) -> ReloadReport:
        """Load the config file again and apply what changed, all or nothing.

        Everything is checked first (the file, plugins and their manifests,
        schedules, routes, pipelines, webhook endpoints, secret references); any
        problem raises :class:`ReloadRefused` with every one of them, and the
        running configuration is left exactly as it was.  What a reload applies at
        once and what waits for a restart is decided by
        :func:`~chamberlain.reloading.plan_reload`.  Jobs in flight finish with the
        plugin they started with; queued jobs of a changed plugin run the new one;
        those of a removed plugin end dead with :data:`REMOVED_BY_RELOAD`.
        """
        if self._nursery is None:
            return await self._reload_once()
        # A task of the daemon's, not the caller's: an HTTP client that hangs up
        # cancels its handler, and must not leave a reload half applied.
        finished = trio.Event()
        answer: list[ReloadReport] = []
        failure: list[Exception] = []

        async def reload_to_the_end() -> None:
            try:
                answer.append(await self._reload_once())
            except ReloadRefused as refused:
                failure.append(refused)
            except Exception as exc:
                # A bug, not the file: logged here, where it happened, even when
                # the caller is gone; the daemon outlives it.
                log.exception("configuration reload failed", extra={"component": "root"})
                failure.append(exc)
            finally:
                finished.set()

        self._nursery.start_soon(reload_to_the_end)
        await finished.wait()
        if failure:
            raise failure[0]
        return answer[0]

    async def _reload_once(self) -> ReloadReport:
        async with self._reloading:
            self.notifier.reloading("reloading the configuration")
            try:
                return await self._reload()
            finally:
                self.notifier.ready(f"ready: {len(self.plugins)} plugins")

    async def _reload(self) -> ReloadReport:
        source = self.config_path
        try:
            prepared: Prepared = await trio.to_thread.run_sync(prepare, self.config_path)
            problems = check_secret_references(prepared.config, set(self.vault.names()))
            if problems:
                raise ConfigError(problems, source=prepared.config.source)
            assert self.file_config is not None
            plan = plan_reload(
                running=self.config,
                previous=self.file_config,
                new=prepared.config,
                plugins=self.plugins,
                new_plugins=prepared.plugins,
                webhooks_served="webhooks" in self._apps,
            )
            runnable = runnable_plugins(plan.config, plan.plugins)
            # Again, on what will run: the relay instances are kept until a
            # restart, and the new pipelines may only name those.
            routing = routing_of(plan.config, runnable)
        except ConfigError as exc:
            self.metrics.config_reload("refused")
            refused = ReloadRefused(
                tuple(ConfigProblem.parse(line) for line in exc.problems), source=source
            )
            log.error(
                "configuration reload refused: the running configuration stays: %s",
                "; ".join(exc.problems),
                extra={"component": "root", "problems": list(exc.problems)},
            )
            raise refused from None
        await self._apply(plan, runnable, routing)
        self.file_config = prepared.config
        self.config_hash = prepared.config_hash
        self.loaded = LoadedConfig(
            loaded_at=self.now(),
            config_hash=prepared.config_hash,
            reloads=self.loaded.reloads + 1,
        )
        self.metrics.config_reload("applied")
        changes = [c.to_json() for c in plan.changes]
        log.info(
            "configuration reloaded: %s",
            ", ".join(f"{c.path} {c.change.value}" for c in plan.changes) or "no changes",
            extra={
                "component": "root",
                "changes": changes,
                "config_hash": prepared.config_hash,
            },
        )
        for change in plan.restart_required:
            log.warning(
                "%s changed in the file; %s",
                change.path,
                change.detail,
                extra={"component": "root", "path": change.path},
            )
        return ReloadReport(changes=plan.changes, loaded=self.loaded)

    async def _apply(
        self, plan: ReloadPlan, runnable: dict[str, BoundPlugin], routing: Routing
    ) -> None:
        """Put a checked plan into effect, in the order that loses no job."""
        config = plan.config
        self.vault.configure(config)
        # New Runners first, so none is missing when the Dispatcher starts their jobs.
        for name in plan.added:
            await self._add_runner(runnable[name])
        for name in plan.changed:
            # Read as each job starts: the queued ones run the new plugin.
            self.runners[name].plugin = runnable[name]
        for name in runnable.keys() - plan.plugins.keys():
            # The built-in ones (relay, sync): their settings follow the new file.
            self.runners[name].plugin = runnable[name]
        # Once answered, the Dispatcher starts no job of a removed plugin, and every
        # Run it sent one is in that Runner's mailbox, ahead of the Retire below.
        await call(
            self._dispatcher_tx,
            lambda r: Limit(
                max_workers=config.service.max_workers,
                parallelism={n: p.parallelism for n, p in runnable.items()},
                reply=r,
            ),
        )
        for name in plan.removed:
            runner = self.runners[name]
            self._runner_tx[name].send_nowait(runner.retirement())
            assert self._nursery is not None
            self._nursery.start_soon(self._forget_runner, name, runner)
        # New work may name only the new plugins from here on: triggers, routed
        # events, pipelines and schedules ...
        self.routing = routing
        self._router.routing = routing
        self._jobstore.use_routing(routing)
        self.gateway.routing = routing
        self.gateway.plugins = plan.plugins
        self.plugins = plan.plugins
        self._runnable = runnable
        self.callbacks.config = config.callbacks
        self.config = config
        await call(
            self._scheduler_tx,
            lambda r: ReplacePlans(
                plans=build_plans(plan.plugins) if self.run_schedules else (), reply=r
            ),
        )
        # ... so a job of a removed plugin enqueued before now is in the store's
        # mailbox ahead of this, and ends dead with the queued ones.
        if plan.removed:
            buried: tuple[Any, ...] = await call(
                self._store_tx,
                lambda r: BuryQueued(
                    plugins=frozenset(plan.removed), reason=REMOVED_BY_RELOAD, reply=r
                ),
            )
            if buried:
                log.info(
                    "%d queued jobs of removed plugins ended dead",
                    len(buried),
                    extra={"component": "root", "plugins": list(plan.removed)},
                )
        web = self._apps.get("web")
        if web is not None:
            web.reconfigure(
                auth=config.api.auth, callbacks=config.callbacks, routes=self._api_routes()
            )
            if self.mcp is not None:
                # Its sessions authenticate with the app's tokens as they are now.
                self.mcp.site = web.site
                await self.mcp.tools_changed()
        hooks = self._apps.get("webhooks")
        if hooks is not None:
            from chamberlain.web.webhooks import webhook_routes

            hooks.reconfigure(
                auth=config.api.auth, callbacks=None, routes=webhook_routes(config.webhooks)
            )
        if not self.log_level_pinned:
            logging.getLogger().setLevel((config.service.log_level or "info").upper())

    async def _add_runner(self, plugin: BoundPlugin) -> None:
        """Run ``plugin``: the Runner still retiring under its name if it can stay,
        else a new one."""
        old = self.runners.get(plugin.name)
        if old is not None and old.unretire(plugin):
            return
        if self._runner_supervisor.has_child(plugin.name):
            # Returned (or about to): gone before its name is taken again.  Its own
            # clean-up (_forget_runner) may delete it first.
            with contextlib.suppress(KeyError):
                await self._runner_supervisor.delete_child(plugin.name)
        await self._runner_supervisor.start_child(self._runner_spec(plugin))

    async def _forget_runner(self, name: str, runner: Runner) -> None:
        """Once a retired Runner has returned, drop it from the tree."""
        await runner.retired.wait()
        if self.runners.get(name) is not runner:
            return  # the name was given back, to a new Runner
        del self.runners[name]
        del self._runner_tx[name]
        with contextlib.suppress(KeyError):
            await self._runner_supervisor.delete_child(name)

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

    def _api_routes(self) -> tuple[Route, ...]:
        """What the API listener serves for the configuration running now."""
        from chamberlain.web.relay_ingress import relay_routes
        from chamberlain.web.routes import ROUTES
        from chamberlain.web.webhooks import webhook_routes

        hooks = self.config.webhooks
        routes = ROUTES if hooks.listen else (*ROUTES, *webhook_routes(hooks))
        # On the API listener, as in Ductile.
        return (*routes, *relay_routes(self.config.remote_ingress))

    async def _serve_web(
        self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED
    ) -> None:
        from chamberlain.web.app import create_app
        from chamberlain.web.mcp_endpoint import McpEndpoint, McpMount
        from chamberlain.web.serve import serve_api

        routes = self._api_routes()
        app = self._apps["web"] = create_app(
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
        app = self._apps["webhooks"] = create_app(
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
        SIGHUP reloads the configuration (see :meth:`reload`).
        """
        self.bind()
        try:
            await self._run(task_status=task_status)
        finally:
            self.close_listeners()

    async def _run(self, *, task_status: trio.TaskStatus[Daemon]) -> None:
        async with trio.open_nursery() as nursery:
            self._cancel = nursery.cancel_scope
            self._nursery = nursery
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
                        log.info(
                            "SIGHUP received: reloading the configuration",
                            extra={"component": "root"},
                        )
                        nursery.start_soon(self._reload_on_signal)
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

    async def _reload_on_signal(self) -> None:
        """A reload no one waits for: its outcome goes to the log only."""
        if self.config_path is None:
            log.warning(
                "SIGHUP ignored: this daemon was started without a config file",
                extra={"component": "root"},
            )
            return
        if self._stopping:
            return  # draining: the next start reads the file anyway
        # Refused (with every problem) or failed (with its traceback): logged either way.
        with contextlib.suppress(Exception):
            await self.reload()

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
                for tx in list(self._runner_tx.values()):  # a retired Runner may go meanwhile
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
            for tx in list(self._runner_tx.values()):  # a retired Runner may go meanwhile
                with trio.move_on_after(1.0):
                    await tx.send(Terminate(reason=TerminationReason.SHUTDOWN))
            with trio.move_on_after(self.limits.kill_grace + 5.0):
                await call(self._dispatcher_tx, lambda r: Drain(reply=r))
        await self.root.stop()
        log.info("stopped", extra={"component": "root"})
