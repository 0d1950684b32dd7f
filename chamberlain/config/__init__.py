"""Daemon configuration: YAML in, frozen attrs records out.

Loading happens in three steps, each of which reports every problem it finds with the
YAML path it belongs to, so one run of ``chamberlain`` tells the user everything that is
wrong with the file instead of one mistake per restart:

1. **YAML** is parsed with a safe loader that also rejects duplicate keys (plain PyYAML
   keeps the last one silently, which hides typos in long files).
2. **``${VAR}`` interpolation** runs over the raw tree, before any structuring. Doing it
   first means one rule covers every string in the file, including the free-form
   ``plugins.<name>.config`` mappings that no schema describes, and the typed layer
   never has to know where a string came from. A value produced by interpolation is
   text; it is tagged so that integer and boolean fields may still accept
   ``max_workers: ${WORKERS:-2}`` while rejecting a quoted ``"2"`` written by hand.
   ``${secret:name}`` is the exception: it names a secret of the registry, whose
   value may change while the daemon runs, so it is left as written and resolved
   where it is used; the pass records its path and refuses it where no secret is
   taken.
3. **Structuring** uses a single module-level cattrs converter. Keeping one converter
   means every record obeys the same rules (strict scalar types, unknown keys are
   errors, ``null`` sections mean "defaults"), and constraints that belong to a field
   (durations, sizes, minimums, name patterns) are declared on the field's type with
   ``Annotated`` so the record definitions double as the schema. cattrs' detailed
   validation gathers errors per field; they are walked into ``path: problem`` lines
   rather than cattrs' ``$.a['b']`` notation.

Before step 2, a configuration given as a directory is read from its ``config.yaml``,
the files its ``include:`` names are merged in, and ``environment_vars.include``
files add variables for step 2; then Ductile's keys are rewritten into Chamberlain's
(or dropped, each with a warning kept in ``Config.warnings``), so a Ductile
configuration loads unchanged.

Relative paths are resolved against the directory of the configuration file after
structuring, so the converter itself stays free of per-file state.

The package is split by concern, each module depending only on those above it:
:mod:`~chamberlain.config.problems` (``ConfigError`` and how values are named in
messages), :mod:`~chamberlain.config.references` (``${secret:name}``: its syntax,
where it is allowed, unknown names), :mod:`~chamberlain.config.units` (durations and sizes),
:mod:`~chamberlain.config.values` (value parsers and field rules),
:mod:`~chamberlain.config.sections` (the records), :mod:`~chamberlain.config.checks`
(cross-field checks), :mod:`~chamberlain.config.converter` (structuring and error
paths), :mod:`~chamberlain.config.ductile` (Ductile's keys read as Chamberlain's) and
:mod:`~chamberlain.config.loading` (files, includes, interpolation and the loaders). The
names below are the public interface; import them from here.
"""

from chamberlain.config.loading import load_config, parse_config, parse_repository
from chamberlain.config.problems import ConfigError
from chamberlain.config.references import SecretReference, check_secret_references
from chamberlain.config.sections import (
    CONDITION_OPS,
    HOOK_SIGNALS,
    IN_MEMORY,
    LOG_LEVELS,
    SCHEDULE_KINDS,
    ApiConfig,
    AuthConfig,
    AuthorConfig,
    CallbacksConfig,
    CircuitBreakerConfig,
    ConditionConfig,
    Config,
    McpConfig,
    PipelineConfig,
    PluginConfig,
    RelayBaggageConfig,
    RelayInstanceConfig,
    RelayPeerConfig,
    RelayStepConfig,
    RemoteIngressConfig,
    RepositoryConfig,
    RetryConfig,
    RouteConfig,
    ScheduleConfig,
    ServiceConfig,
    StateConfig,
    StepApprovalConfig,
    StepCheckConfig,
    StepConfig,
    TokenConfig,
    WebhookEndpointConfig,
    WebhooksConfig,
    WorkspacesConfig,
)
from chamberlain.config.units import parse_duration, parse_size
from chamberlain.config.values import VALID_SCOPES

__all__ = [
    "CONDITION_OPS",
    "HOOK_SIGNALS",
    "IN_MEMORY",
    "LOG_LEVELS",
    "SCHEDULE_KINDS",
    "VALID_SCOPES",
    "ApiConfig",
    "AuthConfig",
    "AuthorConfig",
    "CallbacksConfig",
    "CircuitBreakerConfig",
    "ConditionConfig",
    "Config",
    "ConfigError",
    "McpConfig",
    "PipelineConfig",
    "PluginConfig",
    "RelayBaggageConfig",
    "RelayInstanceConfig",
    "RelayPeerConfig",
    "RelayStepConfig",
    "RemoteIngressConfig",
    "RepositoryConfig",
    "RetryConfig",
    "RouteConfig",
    "ScheduleConfig",
    "SecretReference",
    "ServiceConfig",
    "StateConfig",
    "StepApprovalConfig",
    "StepCheckConfig",
    "StepConfig",
    "TokenConfig",
    "WebhookEndpointConfig",
    "WebhooksConfig",
    "WorkspacesConfig",
    "check_secret_references",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_repository",
    "parse_size",
]
