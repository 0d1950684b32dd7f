"""The configuration records: one frozen attrs class per section of the file.

Field types double as the schema: each field's ``Annotated`` rule (from
:mod:`chamberlain.config.values`) says how its value is read, so these classes are
the whole description of what a config file may contain. Rules that only one
section uses (schedules, pipelines, webhooks) are defined next to it. Checks that
span several fields live in :mod:`chamberlain.config.checks`; turning YAML into these
records is :mod:`chamberlain.config.converter`'s job.
"""

import os
import pwd
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, TypeVar

import attrs

from chamberlain import loops
from chamberlain.callback_rules import DEFAULT_ALLOWED_HOSTS
from chamberlain.config.problems import Invalid, describe
from chamberlain.config.references import SecretReference
from chamberlain.config.units import format_duration, parse_duration
from chamberlain.config.values import (
    BodySize,
    CommandName,
    Duration,
    FreeForm,
    HostRule,
    Listen,
    NonEmptyStr,
    PluginName,
    PositiveDuration,
    PositiveInt,
    Rule,
    Scopes,
    Secret,
    bounded,
    name_parser,
    parse_int,
    parse_path,
    parse_str,
    plain,
    split_listen,
)
from chamberlain.plugins.environment import check_variable_name
from chamberlain.schedule import timing as _timing
from chamberlain.schedule.policy import CatchUp, IfRunning

IN_MEMORY: Final = Path(":memory:")
"""``state.path`` value selecting an in-memory database; never resolved against a directory."""

_NO_PLUGINS: Final[Mapping[str, "PluginConfig"]] = MappingProxyType({})
_NO_TIMEOUTS: Final[Mapping[str, float]] = MappingProxyType({})


def _default_max_workers() -> int:
    # Leave one core for the daemon itself and whatever else the workstation runs.
    return min(MAX_WORKERS, max(1, (os.cpu_count() or 2) - 1))


#: The most plugin processes ``service.max_workers`` may allow at once.  Each holds
#: three pipes open in the daemon, so this stays well inside a usual descriptor limit
#: while being more processes than any one machine runs usefully.
MAX_WORKERS: Final = 1024


def _parse_owner(value: object) -> int:
    """A uid, or a user name looked up now, so a typo fails at start-up."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise Invalid(f"a uid must be at least 0, got {value}")
        return value
    if isinstance(value, str) and value.strip():
        name = value.strip()
        if name.isdigit():  # a uid from ${VAR}; user names are never all digits
            return int(name)
        try:
            return pwd.getpwnam(name).pw_uid
        except KeyError:
            raise Invalid(f"no user named {name!r}") from None
    raise Invalid(f"expected a uid or a user name, got {describe(value)}")


#: The levels ``service.log_level`` and ``--log-level`` take.
LOG_LEVELS = ("debug", "info", "warning", "error")


def _parse_log_level(value: object) -> str:
    # Ductile's configs write its Go logger's names: INFO, warn.
    level = value.lower() if isinstance(value, str) else value
    level = "warning" if level == "warn" else level
    if level not in LOG_LEVELS:
        raise Invalid(f"expected one of: {', '.join(LOG_LEVELS)}; got {describe(value)}")
    return str(level)


@attrs.frozen(kw_only=True)
class ServiceConfig:
    """The ``service:`` section: daemon-wide limits and housekeeping.

    ``trusted_plugin_owners`` holds uids, names already looked up: owners besides
    root and the daemon's own user whose plugin directories may be loaded.
    """

    name: NonEmptyStr = "chamberlain"
    max_workers: Annotated[int, Rule(bounded(parse_int, minimum=1, maximum=MAX_WORKERS))] = (
        attrs.field(factory=_default_max_workers)
    )
    trusted_plugin_owners: tuple[Annotated[int, Rule(_parse_owner)], ...] = ()
    shutdown_grace: Duration = 10.0
    dedupe_ttl: Duration = 86400.0
    job_retention: Duration = 30 * 86400.0
    # At most how often /proc is searched for processes left over by finished runs
    # (setsid escapees); each search reads every process's environment.
    sweep_interval: PositiveDuration = 1.0
    #: The least severe log records written; None leaves it to ``--log-level``.
    #: A reload applies a changed one at once.
    log_level: Annotated[str, Rule(_parse_log_level)] | None = None


@attrs.frozen(kw_only=True)
class StateConfig:
    """The ``state:`` section: where the job store lives.

    A relative ``path`` is relative to the configuration file's directory; the loaders
    always return it absolute, except for :data:`IN_MEMORY`.
    """

    path: Annotated[Path, Rule(parse_path)] = Path("data/state.db")


_FORGES: Final = ("github", "gitlab", "none")


def _parse_forge(value: object) -> str:
    forge = parse_str(value)
    if forge not in _FORGES:
        raise Invalid(f"expected one of: {', '.join(_FORGES)}; got {forge!r}")
    return forge


@attrs.frozen(kw_only=True)
class AuthorConfig:
    """Who the commits of a pull request are by (``repositories.<name>.author``)."""

    name: NonEmptyStr = "Chamberlain"
    email: NonEmptyStr = "chamberlain@localhost"


@attrs.frozen(kw_only=True)
class RepositoryConfig:
    """One of ``repositories:``: a remote git repository jobs may have worktrees of.

    ``token`` (``${secret:name}`` or ``${ENV}``) reaches git through ``GIT_ASKPASS``
    only: never in a URL, a config file of git's, a log line or an error; it is
    also the forge API's token. ``forge`` and ``forge_repo`` are derived from a
    github.com or gitlab.com URL. ``author`` signs the commits a pull request makes.
    """

    url: NonEmptyStr
    default_branch: NonEmptyStr = "main"
    token: Secret | None = attrs.field(default=None, repr=False)
    forge: Annotated[str, Rule(_parse_forge)] | None = None
    forge_repo: NonEmptyStr | None = None
    api_url: NonEmptyStr | None = None
    author: AuthorConfig = attrs.field(factory=AuthorConfig)


@attrs.frozen(kw_only=True)
class WorkspacesConfig:
    """The ``workspaces:`` section: the directories jobs ask for (``"workspace": true``).

    A workspace is kept ``ttl`` after its last use, then removed; once the
    workspaces hold ``max_bytes`` in all, a trigger asking for a new one is refused.
    """

    ttl: PositiveDuration = 7 * 86400.0
    max_bytes: BodySize = 10 * 1024**3


@attrs.frozen(kw_only=True)
class McpConfig:
    """The ``mcp:`` section: the MCP server at ``/mcp`` (see docs/AGENTS.md).

    Requests whose ``Host`` (or ``Origin``) header is not the listener's own, a
    loopback name, or one of ``allowed_hosts`` (``allowed_origins``) are refused, so
    a web page cannot reach the server through a rebound DNS name.
    """

    enabled: bool = True
    #: How long a tool call waits for its job before answering its id instead.
    call_timeout: PositiveDuration = 30.0
    #: ``Host`` values besides the listener's and loopback's: ``name``, ``name:port``
    #: or ``name:*`` (any port).
    allowed_hosts: tuple[NonEmptyStr, ...] = ()
    #: ``Origin`` values a browser-based client may send: ``https://app.example``.
    allowed_origins: tuple[NonEmptyStr, ...] = ()


@attrs.frozen(kw_only=True)
class TokenConfig:
    """One API token in ``api.auth.tokens``."""

    name: NonEmptyStr
    token: Secret = attrs.field(repr=False)
    scopes: Scopes


@attrs.frozen(kw_only=True)
class AuthConfig:
    """The ``api.auth:`` section. ``api_key`` is the legacy all-scopes key."""

    api_key: Secret | None = attrs.field(default=None, repr=False)
    tokens: tuple[TokenConfig, ...] = ()


#: A connection's timeouts: long enough for a slow client, short enough to free its socket.
_ConnectionTimeout = Annotated[
    float, Rule(bounded(parse_duration, minimum=0.1, maximum=3600.0, show=format_duration))
]


@attrs.frozen(kw_only=True)
class ApiConfig:
    """The ``api:`` section: the HTTP listener."""

    enabled: bool = True
    listen: Listen = "127.0.0.1:8080"
    auth: AuthConfig = attrs.field(factory=AuthConfig)
    max_body_size: BodySize = 1024 * 1024
    # How long a request handler waits for an actor's reply before giving up.
    request_timeout: PositiveDuration = 5.0
    # The longest a synchronous trigger waits for its pipeline, whatever the pipeline says.
    max_sync_timeout: PositiveDuration = 300.0
    # Synchronous triggers waiting at once; more are refused with 503.
    max_concurrent_sync: PositiveInt = 16
    # How often an idle event stream sends a keepalive comment.
    sse_keepalive: PositiveDuration = 15.0
    # Messages an event stream may fall behind by before its client is dropped.
    sse_buffer: PositiveInt = 2048
    # How long an idle keep-alive connection, or one that has not finished sending its
    # request headers, stays open.
    keep_alive_timeout: _ConnectionTimeout = 5.0
    # How long a client may take to send a request body before it is answered 408.
    read_timeout: _ConnectionTimeout = 30.0
    # Connections open at once; past it the longest-waiting idle one is dropped.
    max_connections: Annotated[int, Rule(bounded(parse_int, minimum=1, maximum=65536))] = 512

    @property
    def host(self) -> str:
        """The host part of ``listen``, without IPv6 brackets."""
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        """The port part of ``listen``; 0 asks the OS for any free port."""
        return split_listen(self.listen)[1]


@attrs.frozen(kw_only=True)
class CallbacksConfig:
    """The ``callbacks:`` section: POSTs to a trigger's ``callback_url`` when its job ends.

    Without a ``secret`` no callback is accepted: an unsigned callback could not be
    told apart from a forged one.
    """

    secret: Secret | None = attrs.field(default=None, repr=False)
    allowed_hosts: tuple[HostRule, ...] = DEFAULT_ALLOWED_HOSTS
    max_attempts: PositiveInt = 5
    backoff_base: Duration = 5.0
    backoff_max: Duration = 300.0
    timeout: PositiveDuration = 10.0


@attrs.frozen(kw_only=True)
class RetryConfig:
    """How failed jobs are retried: ``backoff_base * 2**(attempt-1)`` capped at the max."""

    max_attempts: PositiveInt = 4
    backoff_base: Duration = 30.0
    backoff_max: Duration = 3600.0
    #: Whether a timed-out attempt is retried like a failed one.  True by default,
    #: as in Ductile (internal/dispatch/retry_policy.go); false ends the job
    #: ``timed_out`` at its first timeout.
    on_timeout: bool = True


# Schedules (docs/SCHEDULES.md).  The values are parsed by chamberlain.schedule.timing,
# which owns what a cron expression, a window or a weekday is.

_E = TypeVar("_E", CatchUp, IfRunning)


def _choice(kind: type[_E]) -> Callable[[object], _E]:
    names = ", ".join(member.value for member in kind)

    def parse_choice(value: object) -> _E:
        for member in kind:
            if value == member.value:
                return member
        raise Invalid(f"expected one of: {names}; got {describe(value)}")

    return parse_choice


def _parse_every(value: object) -> _timing.Every:
    return _timing.parse_every(value, parse_duration)


_ScheduleId = Annotated[str, Rule(name_parser("schedule id"))]
_Every = Annotated[_timing.Every, Rule(_parse_every)]
_Cron = Annotated[str, Rule(_timing.parse_cron)]
_Instant = Annotated[datetime, Rule(_timing.parse_instant)]
_TimeZone = Annotated[str, Rule(_timing.parse_timezone)]
_Window = Annotated[_timing.Window, Rule(_timing.parse_window)]
_Weekday = Annotated[int, Rule(_timing.parse_weekday)]

#: The keys that say when a schedule fires; exactly one is given.
SCHEDULE_KINDS: Final = ("every", "cron", "at", "after")


@attrs.frozen(kw_only=True)
class ScheduleConfig:
    """One entry of ``plugins.<name>.schedules``.

    ``timezone`` None means the system's zone.  A naive ``at`` is read in
    ``timezone``; ``after`` counts from the daemon's start.
    """

    id: _ScheduleId = "default"
    command: CommandName = "poll"
    payload: FreeForm = attrs.field(factory=dict)
    every: _Every | None = None
    cron: _Cron | None = None
    at: _Instant | None = None
    after: Duration | None = None
    jitter: Duration = 0.0
    timezone: _TimeZone | None = None
    only_between: _Window | None = None
    not_on: tuple[_Weekday, ...] = ()
    catch_up: Annotated[CatchUp, Rule(_choice(CatchUp))] = CatchUp.SKIP
    if_running: Annotated[IfRunning, Rule(_choice(IfRunning))] = IfRunning.SKIP
    max_outstanding: PositiveInt = 1

    @property
    def kind(self) -> str:
        """Which of ``every``, ``cron``, ``at``, ``after`` is given."""
        return next(k for k in SCHEDULE_KINDS if getattr(self, k) is not None)

    @property
    def spec(self) -> str:
        """The value of :attr:`kind`, the way a config file says it."""
        if self.every is not None:
            every = self.every
            if isinstance(every, _timing.Period):
                return every.name
            return format_duration(every.seconds)
        if self.cron is not None:
            return self.cron
        if self.at is not None:
            return self.at.isoformat()
        assert self.after is not None
        return format_duration(self.after)


@attrs.frozen(kw_only=True)
class CircuitBreakerConfig:
    """``plugins.<name>.circuit_breaker``: applied to each of the plugin's commands."""

    enabled: bool = True
    threshold: PositiveInt = 3
    reset_after: PositiveDuration = 1800.0


def _parse_variable_name(value: object) -> str:
    try:
        return check_variable_name(parse_str(value))
    except ValueError as exc:
        raise Invalid(str(exc)) from None


_VariableName = Annotated[str, Rule(_parse_variable_name)]


def _parse_argv(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise Invalid(
            f'must be an argv list, not a shell string; write ["sh", "-c", {value!r}]'
            " to run it through a shell"
        )
    if not isinstance(value, list | tuple) or not value:
        raise Invalid(f"must be a non-empty list of strings, got {describe(value)}")
    argv = tuple(parse_str(item) for item in value)
    if not argv[0]:
        raise Invalid("must not start with an empty string")
    return argv


_Argv = Annotated[tuple[str, ...], Rule(_parse_argv)]


def _parse_absolute_path(value: object) -> Path:
    path = parse_path(value)
    if not path.is_absolute():
        raise Invalid(f"must be an absolute path, got {str(path)!r}")
    return path


_Iterations = Annotated[
    int, Rule(bounded(parse_int, minimum=1, maximum=loops.MAX_ITERATIONS_LIMIT))
]


@attrs.frozen(kw_only=True)
class FeedbackConfig:
    """One of ``plugins.<name>.loop.feedback``: a command run between iterations."""

    command: _Argv
    timeout: PositiveDuration = loops.DEFAULT_FEEDBACK_TIMEOUT


@attrs.frozen(kw_only=True)
class LoopConfig:
    """``plugins.<name>.loop``: what a trigger's ``loop`` gets unless it says otherwise,
    and the most iterations any loop of the plugin may ask for."""

    max_iterations: _Iterations = loops.DEFAULT_MAX_ITERATIONS
    max_iterations_cap: _Iterations = loops.MAX_ITERATIONS_LIMIT
    completion_token: NonEmptyStr | None = None
    feedback: tuple[FeedbackConfig, ...] = ()
    iteration_timeout: PositiveDuration | None = None
    #: Whether a trigger may name its own feedback commands.  Off by default: a
    #: feedback command is code run on this machine, with the plugin's environment,
    #: and a trigger passes data, not code, unless the operator says otherwise.
    trigger_feedback: bool = False
    #: Where feedback commands run for a job without a workspace (default: the
    #: plugin's directory), say the checkout an agent plugin's ``cwd`` names.
    feedback_cwd: Annotated[Path, Rule(_parse_absolute_path)] | None = None

    def defaults(self) -> loops.LoopDefaults:
        """These settings as the loop rules take them."""
        return loops.LoopDefaults(
            max_iterations=self.max_iterations,
            max_iterations_cap=self.max_iterations_cap,
            completion_token=self.completion_token,
            feedback=tuple(
                loops.FeedbackCommand(command=item.command, timeout=item.timeout)
                for item in self.feedback
            ),
            iteration_timeout=self.iteration_timeout,
            trigger_feedback=self.trigger_feedback,
        )


_VariableValue = Annotated[str, Rule(parse_str)]


@attrs.frozen(kw_only=True)
class PluginConfig:
    """One entry of ``plugins:``. ``config`` is the plugin's own, free-form settings.

    ``env`` and ``env_passthrough`` add to the allow-listed environment its processes
    get (:mod:`chamberlain.plugins.environment`): values set here, and the names of
    daemon variables let through. ``uses`` makes the entry a second configured
    instance of another discovered plugin (Ductile's aliases): the same manifest and
    files under this entry's name, with this entry's settings.
    """

    enabled: bool = True
    uses: PluginName | None = None
    config: FreeForm = attrs.field(factory=dict)
    timeouts: Mapping[CommandName, PositiveDuration] = _NO_TIMEOUTS
    retry: RetryConfig = attrs.field(factory=RetryConfig)
    parallelism: PositiveInt | None = None
    schedules: tuple[ScheduleConfig, ...] = ()
    circuit_breaker: CircuitBreakerConfig = attrs.field(factory=CircuitBreakerConfig)
    env: Mapping[_VariableName, _VariableValue] = attrs.field(factory=dict)
    env_passthrough: tuple[_VariableName, ...] = ()
    #: Ductile's opt-in to lifecycle hooks: a job of this plugin that is not a
    #: pipeline step starts the ``on-hook`` pipelines of the signal its end gives.
    notify_on_complete: bool = False
    #: Interactive commands: how long a session may go without input or output,
    #: and how long it may last in all (``timeouts`` do not apply to them).
    interactive_timeout: PositiveDuration = 1800.0
    max_duration: PositiveDuration = 4 * 3600.0
    #: Loop jobs (chamberlain.loops): defaults and the cap of a trigger's ``loop``.
    loop: LoopConfig = attrs.field(factory=LoopConfig)


_DEFAULT_PLUGIN: Final = PluginConfig()


#: Operators of a pipeline step's ``if:`` condition (``ne`` and ``neq`` are one).
CONDITION_OPS: Final = (
    "eq",
    "ne",
    "neq",
    "gt",
    "gte",
    "lt",
    "lte",
    "contains",
    "startswith",
    "endswith",
    "regex",
    "in",
    "exists",
)
#: Ductile's limits on one ``if:`` tree: how deeply all/any/not nest, and how many
#: nodes it holds.
CONDITION_MAX_DEPTH: Final = 3
CONDITION_MAX_NODES: Final = 20


def _parse_op(value: object) -> str:
    op = parse_str(value)
    if op not in CONDITION_OPS:
        raise Invalid(f"unknown operator {op!r}; expected one of: {', '.join(CONDITION_OPS)}")
    return op


def _parse_mode(value: object) -> str:
    mode = parse_str(value)
    if mode not in ("async", "synchronous"):
        raise Invalid(f"expected 'async' or 'synchronous', got {mode!r}")
    return mode


def _parse_any(value: object) -> Any:
    return plain(value)


_Any = Annotated[Any, Rule(_parse_any)]
_PipelineName = Annotated[str, Rule(name_parser("pipeline name"))]
_StepId = Annotated[str, Rule(name_parser("step id"))]


@attrs.frozen(kw_only=True)
class RouteConfig:
    """One entry of ``routes:``: events of ``event_type`` from plugin ``from`` go to ``to``.

    ``to`` is ``plugin`` (its ``handle`` command) or ``plugin.command``.
    """

    source: PluginName  # the YAML key is ``from``
    event_type: NonEmptyStr
    to: NonEmptyStr


def _parse_conditions(value: object) -> tuple["ConditionConfig", ...]:
    # Imported here: the converter is built from this module's records, and a
    # condition holds conditions, so its hook cannot exist before this one runs.
    from chamberlain.config.converter import converter

    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else describe(value)
        raise Invalid(f"expected a non-empty list of conditions, got {got}")
    return converter.structure(value, tuple[ConditionConfig, ...])


def _parse_condition(value: object) -> "ConditionConfig":
    from chamberlain.config.converter import converter

    return converter.structure(value, ConditionConfig)


@attrs.frozen(kw_only=True)
class ConditionConfig:
    """A step's ``if:``: ``path op value``, or one of ``all``, ``any`` and ``not``.

    YAML ``all``/``any``/``not`` hold ``all_``/``any_``/``not_``. Exactly one form is
    given; :mod:`chamberlain.config.checks` enforces that and Ductile's size limits,
    and :mod:`chamberlain.routing.conditions` evaluates the tree.
    """

    path: NonEmptyStr | None = None
    op: Annotated[str, Rule(_parse_op)] = "eq"
    value: _Any = None
    all_: Annotated[tuple["ConditionConfig", ...], Rule(_parse_conditions)] = ()
    any_: Annotated[tuple["ConditionConfig", ...], Rule(_parse_conditions)] = ()
    not_: Annotated["ConditionConfig | None", Rule(_parse_condition)] = None

    @property
    def composite(self) -> bool:
        """True for ``all``, ``any`` or ``not``; False for ``path op value``."""
        return bool(self.all_ or self.any_) or self.not_ is not None

    def as_data(self) -> dict[str, Any]:
        """The condition in its YAML form, as the API shows it."""
        if self.all_:
            return {"all": [c.as_data() for c in self.all_]}
        if self.any_:
            return {"any": [c.as_data() for c in self.any_]}
        if self.not_ is not None:
            return {"not": self.not_.as_data()}
        return {"path": self.path, "op": self.op, "value": self.value}

    def describe(self) -> str:
        """The condition as one line of text, for skip reasons and errors."""
        if self.all_:
            return "all(" + ", ".join(c.describe() for c in self.all_) + ")"
        if self.any_:
            return "any(" + ", ".join(c.describe() for c in self.any_) + ")"
        if self.not_ is not None:
            return f"not({self.not_.describe()})"
        return f"{self.path} {self.op} {self.value!r}"


def _parse_steps(value: object) -> tuple["StepConfig", ...]:
    # Imported here for the reason _parse_conditions gives: a step holds steps.
    from chamberlain.config.converter import converter

    if not isinstance(value, list) or not value:
        got = "an empty list" if value == [] else describe(value)
        raise Invalid(f"expected a non-empty list of steps, got {got}")
    return converter.structure(value, tuple[StepConfig, ...])


#: The signals an ``on-hook`` pipeline can wait for, as Ductile's dispatcher gives
#: them (``hookSignalForStatus``): by the status a job ended with.
HOOK_SIGNALS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "job.completed": ("succeeded",),
        "job.failed": ("failed", "dead"),
        "job.timed_out": ("timed_out",),
    }
)


def _parse_hook(value: object) -> str:
    signal = parse_str(value)
    if signal not in HOOK_SIGNALS:
        raise Invalid(f"unknown signal {signal!r}; expected one of: {', '.join(HOOK_SIGNALS)}")
    return signal


def _parse_relay_expression(value: object) -> str:
    text = parse_str(value)
    if not text.strip():
        raise Invalid("expression must be non-empty")
    return text


@attrs.frozen(kw_only=True)
class RelayStepConfig:
    """A step's ``relay:``: deliver an event to instance ``to`` (Ductile's ``RelaySpec``).

    ``event`` is the type sent. Without ``with`` the step's input payload is sent;
    with it, only the keys it names, each a bare path (``payload.id``) or a template.
    ``dedupe_key`` (same form) replaces the input's dedupe key; ``baggage`` claims
    values as a ``uses`` step's does, and they travel as the envelope's baggage.
    """

    to: NonEmptyStr
    event: NonEmptyStr
    dedupe_key: Annotated[str, Rule(_parse_relay_expression)] | None = None
    with_: Mapping[NonEmptyStr, Annotated[str, Rule(_parse_relay_expression)]] | None = None
    baggage: FreeForm = attrs.field(factory=dict)


def _parse_on_timeout(value: object) -> str:
    word = parse_str(value)
    if word not in ("reject", "approve"):
        raise Invalid(f"expected reject or approve, got {word!r}")
    return word


def _parse_wait_for(value: object) -> str:
    what = parse_str(value)
    if what != "ci":
        raise Invalid(f"expected ci (the only signal a step can wait for), got {what!r}")
    return what


@attrs.frozen(kw_only=True)
class StepApprovalConfig:
    """A step's ``approval:``: the step stops at ``awaiting_approval`` before it runs
    (docs/RUNS.md).  ``timeout`` (none: it waits for ever) decides ``on_timeout``;
    ``inputs_schema`` is the JSON Schema the approver's ``inputs`` must meet, which
    the step reads as ``{approval.inputs.x}`` in its ``with:``."""

    required: bool = True
    timeout: PositiveDuration | None = None
    on_timeout: Annotated[str, Rule(_parse_on_timeout)] = "reject"
    inputs_schema: FreeForm | None = None


@attrs.frozen(kw_only=True)
class StepCheckConfig:
    """A step's ``check:``: the ``plugin.command`` that judges the step's result once
    it succeeds; the run goes on only on its ``{"verdict": "pass"}``."""

    uses: NonEmptyStr


@attrs.frozen(kw_only=True)
class StepConfig:
    """One step of a pipeline: exactly one of ``uses`` (run a plugin), ``call`` (run
    another pipeline's steps), ``relay`` (deliver an event to another gateway),
    ``steps`` (a nested sequence) and ``split`` (branches that run side by side).
    YAML ``with`` and ``if`` hold ``with_`` and ``if_``.

    ``id`` is optional, as in Ductile: :class:`PipelineConfig` numbers the ``uses``,
    ``call`` and ``relay`` steps that have none (:func:`number_steps`). A ``steps``
    or ``split`` step is no node of its own and keeps no id.
    """

    id: _StepId | None = None
    uses: NonEmptyStr | None = None
    call: _PipelineName | None = None
    relay: RelayStepConfig | None = None
    steps: Annotated[tuple["StepConfig", ...], Rule(_parse_steps)] = ()
    split: Annotated[tuple["StepConfig", ...], Rule(_parse_steps)] = ()
    with_: FreeForm | None = None
    if_: ConditionConfig | None = None
    baggage: FreeForm = attrs.field(factory=dict)
    #: Run control (docs/RUNS.md): a person's approval before the step runs, a check
    #: of its result, and CI for the commit it made, before the run goes on.
    approval: StepApprovalConfig | None = None
    check: StepCheckConfig | None = None
    wait_for: Annotated[str, Rule(_parse_wait_for)] | None = None

    @property
    def gated(self) -> bool:
        """The run waits on this step beyond its job: an approval, a check or CI."""
        approval = self.approval is not None and self.approval.required
        return approval or self.check is not None or self.wait_for is not None

    @property
    def kinds(self) -> tuple[str, ...]:
        """Which of ``uses``, ``call``, ``relay``, ``steps`` and ``split`` the step
        gives (one, once the config is checked)."""
        given = (
            ("uses", self.uses is not None),
            ("call", self.call is not None),
            ("relay", self.relay is not None),
            ("steps", bool(self.steps)),
            ("split", bool(self.split)),
        )
        return tuple(name for name, present in given if present)


def number_steps(steps: tuple[StepConfig, ...]) -> tuple[StepConfig, ...]:
    """``steps`` with Ductile's ids given to the ``uses``/``call``/``relay`` steps
    lacking one.

    Ductile's compiler walks the steps depth first, in order, and gives each such
    step ``step_<n>``: one counter for the whole pipeline, skipping names already
    taken by the steps before (an explicit id, or the ``<id>__switch`` node of a
    step with an ``if``). A later step that names an id given earlier is a
    duplicate, which :mod:`chamberlain.routing.graph` reports.
    """
    taken: set[str] = set()
    counter = 0

    def number(step: StepConfig) -> StepConfig:
        nonlocal counter
        if step.uses is None and step.call is None and step.relay is None:
            return attrs.evolve(
                step,
                steps=tuple(number(s) for s in step.steps),
                split=tuple(number(s) for s in step.split),
            )
        step_id = step.id
        if step_id is None:
            while True:
                counter += 1
                step_id = f"step_{counter}"
                if step_id not in taken:
                    break
        taken.add(step_id)
        if step.if_ is not None:
            taken.add(f"{step_id}__switch")
        return step if step.id == step_id else attrs.evolve(step, id=step_id)

    return tuple(number(step) for step in steps)


@attrs.frozen(kw_only=True)
class PipelineConfig:
    """One entry of ``pipelines:``; see docs/PIPELINES.md.

    Exactly one of ``on`` (a ``plugin.command`` or an event type) and ``on_hook``
    (YAML ``on-hook``: a lifecycle signal of :data:`HOOK_SIGNALS`).
    """

    name: _PipelineName
    on: NonEmptyStr | None = None
    on_hook: Annotated[str, Rule(_parse_hook)] | None = None
    execution_mode: Annotated[str, Rule(_parse_mode)] = "async"
    timeout: PositiveDuration = 60.0
    steps: tuple[StepConfig, ...] = attrs.field(converter=number_steps)
    #: Ductile's trigger gates (YAML ``if`` holds ``if_``): a job or event starts the
    #: pipeline only when it comes from plugin ``from_plugin`` and ``if_`` holds.
    if_: ConditionConfig | None = None
    from_plugin: PluginName | None = None
    #: The routing depth past which a job of this pipeline routes nothing more, in
    #: place of the global limit; 0 means no limit (Ductile's ``max_depth``).
    max_depth: Annotated[int, Rule(bounded(parse_int, minimum=0))] | None = None

    @property
    def synchronous(self) -> bool:
        """True when a trigger of ``on`` waits for the whole tree."""
        return self.execution_mode == "synchronous"


def _parse_webhook_path(value: object) -> str:
    path = parse_str(value)
    if not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", path) or "/../" in f"{path}/":
        raise Invalid(
            "expected an absolute URL path like /hooks/github (letters, digits, ._~-),"
            f" got {path!r}"
        )
    return path


def _parse_webhook_kind(value: object) -> str:
    kind = parse_str(value)
    if kind not in ("github", "gitlab", "hmac"):
        raise Invalid(f"expected github, gitlab or hmac, got {kind!r}")
    return kind


@attrs.frozen(kw_only=True)
class WebhookEndpointConfig:
    """One entry of ``webhooks.endpoints``: a signed inbound URL that starts a job.

    Exactly one of ``plugin`` (running ``command``), ``pipeline`` and ``ci`` (the
    deliveries are CI reports for the runs whose steps wait for CI: GitHub
    ``check_suite``, ``workflow_run`` and ``status``, GitLab ``Pipeline Hook``).
    """

    path: Annotated[str, Rule(_parse_webhook_path)]
    plugin: PluginName | None = None
    pipeline: _PipelineName | None = None
    ci: bool = False
    command: CommandName = "handle"
    secret: Secret = attrs.field(repr=False)
    kind: Annotated[str, Rule(_parse_webhook_kind)] = "hmac"
    #: hmac only: the header holding ``sha256=<hex>`` (the prefix is optional).
    signature_header: NonEmptyStr = "X-Signature-256"
    #: Where the event type comes from (defaults per kind); hmac without one uses
    #: ``webhook.<last path segment>``.
    event_type_header: NonEmptyStr | None = None
    #: hmac only: the header naming the delivery, for replay protection.
    delivery_header: NonEmptyStr = "X-Delivery-Id"
    max_body_size: BodySize = 1024 * 1024


@attrs.frozen(kw_only=True)
class WebhooksConfig:
    """The ``webhooks:`` section.  ``listen`` serves them on a listener of their own."""

    listen: Listen | None = None
    endpoints: tuple[WebhookEndpointConfig, ...] = ()


def _parse_relay_path(value: object) -> str:
    # Ductile's validateListenPath: absolute, no spaces.
    path = parse_str(value).strip()
    if not path.startswith("/"):
        raise Invalid(f"path must start with /, got {path!r}")
    if " " in path:
        raise Invalid(f"path must not contain spaces, got {path!r}")
    return path


def _parse_listen_path(value: object) -> str:
    path = _parse_relay_path(value)
    if path != "/":
        path = path.rstrip("/")
    if path == "/" or not re.fullmatch(r"(/[A-Za-z0-9._~-]+)+", path):
        raise Invalid(
            f"expected an absolute URL path like /ingest/peer (letters, digits, ._~-), got {path!r}"
        )
    return path


def _parse_relay_name(value: object) -> str:
    name = parse_str(value).strip()
    if not re.fullmatch(r"[a-z0-9]+(?:-[a-z0-9]+)*", name):
        raise Invalid(f"{name!r} must use lower-case hyphenated form (e.g. home-primary)")
    return name


def _parse_event_type(value: object) -> str:
    kind = parse_str(value).strip()
    if not kind:
        raise Invalid("must be non-empty")
    if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", kind):
        raise Invalid(f"{kind!r} must use lower-case dotted form (e.g. backup.ready)")
    return kind


def _parse_base_url(value: object) -> str:
    url = parse_str(value).strip()
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0]
    if not rest or not host or scheme not in ("http", "https"):
        raise Invalid(f"{url!r} must be an absolute http or https URL")
    return url


_RelayName = Annotated[str, Rule(_parse_relay_name)]
_EventType = Annotated[str, Rule(_parse_event_type)]

#: Ductile's defaults for a relay request's timeout and the receiver's clock skew; a
#: zero in the config means the default, as there.
RELAY_TIMEOUT: Final = 10.0
RELAY_CLOCK_SKEW: Final = 300.0


@attrs.frozen(kw_only=True)
class RelayInstanceConfig:
    """One entry of ``instances:``: a gateway that relay steps may deliver to.

    ``secret`` is the shared HMAC key (Ductile's ``secret_ref`` becomes it); ``allow``
    limits the event types sent to it (empty: any). Disabled unless ``enabled``, as
    in Ductile.
    """

    name: _RelayName
    enabled: bool = False
    base_url: Annotated[str, Rule(_parse_base_url)]
    ingress_path: Annotated[str, Rule(_parse_relay_path)]
    secret: Secret = attrs.field(repr=False)
    key_id: str = ""
    timeout: Duration = RELAY_TIMEOUT
    allow: tuple[_EventType, ...] = ()


@attrs.frozen(kw_only=True)
class RelayBaggageConfig:
    """A peer's ``baggage:``: which keys of a relayed envelope's baggage are kept."""

    allow: tuple[NonEmptyStr, ...] = ()


@attrs.frozen(kw_only=True)
class RelayPeerConfig:
    """One entry of ``remote_ingress.peers``: a gateway that may relay events here.

    Its requests arrive at ``{listen_path}/{name}``; ``accept`` limits their event
    types (empty: any). Disabled unless ``enabled``, as in Ductile.
    """

    name: _RelayName
    enabled: bool = False
    secret: Secret = attrs.field(repr=False)
    key_id: str = ""
    accept: tuple[_EventType, ...] = ()
    baggage: RelayBaggageConfig = attrs.field(factory=RelayBaggageConfig)


@attrs.frozen(kw_only=True)
class RemoteIngressConfig:
    """The ``remote_ingress:`` section: relayed events accepted on the API listener."""

    listen_path: Annotated[str, Rule(_parse_listen_path)]
    max_body_size: BodySize = 1024 * 1024
    allowed_clock_skew: Duration = RELAY_CLOCK_SKEW
    require_key_id: bool = False
    peers: tuple[RelayPeerConfig, ...] = ()


#: YAML keys that are Python keywords, by record and attribute.
RENAMED: Final[Mapping[type, Mapping[str, str]]] = {
    RouteConfig: {"source": "from"},
    RelayStepConfig: {"with_": "with"},
    StepConfig: {"with_": "with", "if_": "if"},
    ConditionConfig: {"all_": "all", "any_": "any", "not_": "not"},
    PipelineConfig: {"if_": "if", "on_hook": "on-hook"},
}


@attrs.frozen(kw_only=True)
class Config:
    """The whole, validated configuration, with every path absolute.

    ``source`` is the absolute path of the file it came from (None when parsed from
    data); ``base_dir`` is the directory relative paths were resolved against.
    ``secret_references`` lists every ``${secret:name}`` of the file, each with its
    YAML path; the values keep the reference as written
    (:mod:`chamberlain.config.references`).
    """

    service: ServiceConfig = attrs.field(factory=ServiceConfig)
    state: StateConfig
    plugin_roots: tuple[Path, ...]
    api: ApiConfig = attrs.field(factory=ApiConfig)
    plugins: Mapping[str, PluginConfig] = _NO_PLUGINS
    routes: tuple[RouteConfig, ...] = ()
    pipelines: tuple[PipelineConfig, ...] = ()
    callbacks: CallbacksConfig = attrs.field(factory=CallbacksConfig)
    webhooks: WebhooksConfig = attrs.field(factory=WebhooksConfig)
    instances: tuple[RelayInstanceConfig, ...] = ()
    remote_ingress: RemoteIngressConfig | None = None
    workspaces: WorkspacesConfig = attrs.field(factory=WorkspacesConfig)
    repositories: Mapping[PluginName, RepositoryConfig] = MappingProxyType({})
    mcp: McpConfig = attrs.field(factory=McpConfig)
    secret_references: tuple[SecretReference, ...] = ()
    #: Keys accepted for Ductile compatibility that have no effect: one line each, for
    #: the daemon to log at start (see :mod:`chamberlain.config.ductile`).
    warnings: tuple[str, ...] = ()
    source: Path | None = None
    base_dir: Path

    def plugin_config(self, name: str) -> PluginConfig:
        """Settings for plugin ``name``; defaults when ``plugins:`` does not mention it."""
        return self.plugins.get(name, _DEFAULT_PLUGIN)


@attrs.frozen(kw_only=True)
class Document:
    """The file's top level, exactly as written; :class:`Config` adds what it implies."""

    service: ServiceConfig = attrs.field(factory=ServiceConfig)
    state: StateConfig = attrs.field(factory=StateConfig)
    plugin_roots: tuple[Annotated[Path, Rule(parse_path)], ...] = (Path("plugins"),)
    api: ApiConfig = attrs.field(factory=ApiConfig)
    plugins: Mapping[PluginName, PluginConfig] = _NO_PLUGINS
    routes: tuple[RouteConfig, ...] = ()
    pipelines: tuple[PipelineConfig, ...] = ()
    callbacks: CallbacksConfig = attrs.field(factory=CallbacksConfig)
    webhooks: WebhooksConfig = attrs.field(factory=WebhooksConfig)
    instances: tuple[RelayInstanceConfig, ...] = ()
    remote_ingress: RemoteIngressConfig | None = None
    workspaces: WorkspacesConfig = attrs.field(factory=WorkspacesConfig)
    repositories: Mapping[PluginName, RepositoryConfig] = MappingProxyType({})
    mcp: McpConfig = attrs.field(factory=McpConfig)
