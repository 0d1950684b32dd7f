"""Ductile's configuration keys, read as Chamberlain's.

A Ductile configuration should load unchanged. This pass runs over the raw YAML tree
before interpolation and structuring and rewrites it into Chamberlain's schema: a key
with a Chamberlain equivalent is moved onto it (``database`` onto ``state``,
``secret_ref`` of a webhook endpoint, a relay instance or a relay peer onto its
``secret``, a plugin's ``max_outstanding_polls`` onto its schedules'
``max_outstanding``), and a key that has no effect here is removed and reported once
as a warning saying why. Keys in neither schema are left in place, so structuring
still refuses them with a "did you mean".

Running before interpolation matters for ``secret_ref``: the ``${secret:name}`` it
becomes is then found by the same pass as one written by hand. The pass is pure: it
returns a new tree and never looks at files; ``include:`` and ``environment_vars:``
are the loader's (:mod:`chamberlain.config.loading`).
"""

from collections.abc import Mapping
from typing import Any, Final

import attrs

from chamberlain.config.problems import YamlPath

#: Ductile's scope names that Chamberlain spells differently.
SCOPE_ALIASES: Final[Mapping[str, str]] = {
    "job:ro": "jobs:ro",
    "job:rw": "jobs:rw",
    # What Ductile's POST /system/reload asks for.
    "system:rw": "admin",
}

#: Ductile scopes guarding endpoints Chamberlain does not have; dropped with a warning.
DROPPED_SCOPES: Final[Mapping[str, str]] = {
    "system:ro": "Chamberlain has no /config/view endpoint",
    "state:ro": "Ductile checks no such scope either",
    "state:rw": "Ductile checks no such scope either",
}

_LOGGING = (
    "the log format is chosen on the command line (--log-format);"
    " the level by service.log_level or --log-level"
)
_TOKEN_FILE = (
    "a tokens: entry only gives a secret_ref (webhook endpoint, relay instance or peer)"
    " its key, as in Ductile; API tokens are api.auth.tokens"
)
_RETENTION = "Chamberlain keeps a finished job, its log and its attempts for service.job_retention"

#: Ductile keys that are accepted and have no effect here, with the reason.
IGNORED: Final[Mapping[str, str]] = {
    "tcc_paths": "macOS privacy prompts are Ductile's; Chamberlain stats no paths at start",
    "log_level": f"Ductile ignores a top-level log_level too; {_LOGGING}",
    "service.tick_interval": "each schedule is timed on its own; there is no scheduler tick",
    "service.log_format": _LOGGING,
    "service.job_log_retention": _RETENTION,
    "service.job_queue_retention": _RETENTION,
    "service.job_transitions_retention": _RETENTION,
    "service.job_attempts_retention": _RETENTION,
    "service.breaker_transitions_retention": _RETENTION,
    "service.strict_mode": "Chamberlain is always strict: a key it does not know is an error",
    "service.allow_symlinks": (
        "plugin files are trusted by owner and mode (service.trusted_plugin_owners)"
    ),
    "api.allowed_origins": "the API sends no CORS headers, so no origin gets credentials",
    "plugins.*.timeout": "Ductile ignores it too; per-command limits are timeouts.<command>",
    "plugins.*.max_attempts": "Ductile ignores it too; the retry limit is retry.max_attempts",
    "plugins.*.schedules[].preferred_window": "Ductile does not implement it either",
    "webhooks.endpoints[].name": "an endpoint is known by its path",
    "tokens[].scopes_file": _TOKEN_FILE,
    "tokens[].scopes_hash": _TOKEN_FILE,
    "tokens[].created_at": _TOKEN_FILE,
    "tokens[].description": _TOKEN_FILE,
}


@attrs.frozen(kw_only=True)
class Translation:
    """The tree in Chamberlain's schema, what was ignored, and what cannot be read."""

    tree: dict[str, Any]
    #: One line per ignored key: where it was and why it has no effect.
    warnings: tuple[str, ...]
    problems: tuple[tuple[YamlPath, str], ...]
    #: Paths under which structuring problems would only repeat ``problems``.
    hidden: tuple[YamlPath, ...]


@attrs.define
class _Run:
    ignored: dict[str, list[str]] = attrs.field(factory=dict)
    notes: list[str] = attrs.field(factory=list)
    problems: list[tuple[YamlPath, str]] = attrs.field(factory=list)
    hidden: list[YamlPath] = attrs.field(factory=list)
    #: Ductile's tokens.yaml entries: secret_ref names one of them.
    named: dict[str, object] = attrs.field(factory=dict)

    def ignore(self, key: str, where: str) -> None:
        self.ignored.setdefault(key, []).append(where)


def _mapping(value: object) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


def _drop(section: dict[str, Any], prefix: str, run: _Run, where: str = "") -> None:
    for key in [k for k in section if f"{prefix}{k}" in IGNORED]:
        del section[key]
        run.ignore(f"{prefix}{key}", where)


def translate(data: Mapping[str, Any]) -> Translation:
    """Rewrite Ductile's keys in ``data`` (a raw YAML tree) into Chamberlain's."""
    run = _Run()
    tree = dict(data)
    if "database" in tree:
        database = tree.pop("database")
        if "state" in tree:
            run.problems.append((("database",), "give state or its alias database, not both"))
        else:
            tree["state"] = database
    _drop(tree, "", run)
    if "tokens" in tree:
        _named_secrets(tree.pop("tokens"), run)
    for name, translate_section in (
        ("service", _service),
        ("api", _api),
        ("plugins", _plugins),
        ("webhooks", _webhooks),
        ("instances", _instances),
        ("remote_ingress", _remote_ingress),
    ):
        if name in tree:
            tree[name] = translate_section(tree[name], run)
    warnings = [
        f"{key}{_places(places)}: accepted for Ductile compatibility, no effect here:"
        f" {IGNORED[key]}"
        for key, places in run.ignored.items()
    ]
    return Translation(
        tree=tree,
        warnings=(*warnings, *run.notes),
        problems=tuple(run.problems),
        hidden=tuple(run.hidden),
    )


def _places(places: list[str]) -> str:
    named = [place for place in places if place]
    return f" (in {', '.join(named)})" if named else ""


def _service(value: object, run: _Run) -> object:
    section = _mapping(value)
    if section is None:
        return value
    _drop(section, "service.", run)
    return section


def _api(value: object, run: _Run) -> object:
    section = _mapping(value)
    if section is None:
        return value
    _drop(section, "api.", run)
    auth = _mapping(section.get("auth"))
    if auth is not None and isinstance(auth.get("tokens"), list):
        auth["tokens"] = [_token(index, raw, run) for index, raw in enumerate(auth["tokens"])]
        section["auth"] = auth
    return section


def _token(index: int, value: object, run: _Run) -> object:
    token = _mapping(value)
    if token is None:
        return value
    # Ductile's tokens have no name; Chamberlain logs and audits by one.
    token.setdefault("name", f"token-{index}")
    scopes = token.get("scopes")
    if isinstance(scopes, list):
        kept: list[object] = []
        for scope in scopes:
            if isinstance(scope, str) and scope in DROPPED_SCOPES:
                run.notes.append(
                    f"api.auth.tokens[{index}].scopes: {scope!r} dropped, it has no effect"
                    f" here: {DROPPED_SCOPES[scope]}"
                )
                continue
            kept.append(SCOPE_ALIASES.get(scope, scope) if isinstance(scope, str) else scope)
        token["scopes"] = kept
    return token


def _plugins(value: object, run: _Run) -> object:
    plugins = _mapping(value)
    if plugins is None:
        return value
    return {name: _plugin(str(name), body, run) for name, body in plugins.items()}


def _plugin(name: str, value: object, run: _Run) -> object:
    plugin = _mapping(value)
    if plugin is None:
        return value
    _drop(plugin, "plugins.*.", run, name)
    if "schedule" in plugin:
        # Ductile's deprecated single schedule, used when no schedules list is given.
        single = plugin.pop("schedule")
        if "schedules" in plugin:
            run.problems.append(
                (("plugins", name, "schedule"), "give schedules or schedule, not both")
            )
        elif single is not None:
            plugin["schedules"] = [single]
    schedules = plugin.get("schedules")
    if isinstance(schedules, list):
        plugin["schedules"] = [_schedule(name, raw, run) for raw in schedules]
    if "max_outstanding_polls" in plugin:
        limit = plugin.pop("max_outstanding_polls")
        if plugin.get("schedules"):
            plugin["schedules"] = [
                {"max_outstanding": limit, **entry} if isinstance(entry, Mapping) else entry
                for entry in plugin["schedules"]
            ]
        else:
            run.notes.append(
                f"plugins.{name}.max_outstanding_polls: no effect, the plugin has no schedules"
            )
    return plugin


def _schedule(plugin: str, value: object, run: _Run) -> object:
    schedule = _mapping(value)
    if schedule is None:
        return value
    _drop(schedule, "plugins.*.schedules[].", run, plugin)
    return schedule


def _named_secrets(value: object, run: _Run) -> None:
    """Read Ductile's ``tokens:`` (its tokens.yaml): named keys for ``secret_ref``."""
    if not isinstance(value, list):
        run.problems.append((("tokens",), "expected a list of {name, key} entries"))
        return
    for index, raw in enumerate(value):
        entry = _mapping(raw)
        if entry is None or not isinstance(entry.get("name"), str) or "key" not in entry:
            run.problems.append((("tokens", index), "expected a mapping with name and key"))
            continue
        _drop(entry, "tokens[].", run)
        name = entry.pop("name")
        run.named[name] = entry.pop("key")
        for key in sorted(entry):
            allowed = "name, key, scopes_file, scopes_hash, created_at, description"
            run.problems.append(
                (("tokens", index, key), f"unknown key (expected one of: {allowed})")
            )


def _webhooks(value: object, run: _Run) -> object:
    if isinstance(value, list):  # Ductile's older flat form: webhooks: [endpoint, ...]
        value = {"endpoints": value}
    section = _mapping(value)
    if section is None:
        return value
    endpoints = section.get("endpoints")
    if isinstance(endpoints, list):
        section["endpoints"] = [_endpoint(index, raw, run) for index, raw in enumerate(endpoints)]
    return section


def _endpoint(index: int, value: object, run: _Run) -> object:
    endpoint = _mapping(value)
    if endpoint is None:
        return value
    _drop(endpoint, "webhooks.endpoints[].", run, str(endpoint.get("path", index)))
    _secret_ref(endpoint, ("webhooks", "endpoints", index), run)
    return endpoint


def _secret_ref(entry: dict[str, Any], at: YamlPath, run: _Run) -> None:
    """Move ``entry``'s ``secret_ref`` onto its ``secret``: the key of the ``tokens:``
    entry of that name, or else ``${secret:<ref>}``, a secret of the registry."""
    if "secret_ref" not in entry:
        return
    ref = entry.pop("secret_ref")
    if "secret" in entry:
        run.problems.append(((*at, "secret_ref"), "give secret or secret_ref, not both"))
    elif isinstance(ref, str) and ref in run.named:
        entry["secret"] = run.named[ref]
    elif isinstance(ref, str):
        # Not in tokens.yaml (where Ductile looks): a secret of the registry.
        entry["secret"] = f"${{secret:{ref}}}"
    else:
        entry["secret"] = ref  # structuring reports its type


def _instances(value: object, run: _Run) -> object:
    if not isinstance(value, list):
        return value
    out: list[object] = []
    for index, raw in enumerate(value):
        instance = _mapping(raw)
        if instance is not None:
            _secret_ref(instance, ("instances", index), run)
        out.append(raw if instance is None else instance)
    return out


def _remote_ingress(value: object, run: _Run) -> object:
    section = _mapping(value)
    if section is None or not isinstance(section.get("peers"), list):
        return value if section is None else section
    peers: list[object] = []
    for index, raw in enumerate(section["peers"]):
        peer = _mapping(raw)
        if peer is not None:
            _secret_ref(peer, ("remote_ingress", "peers", index), run)
        peers.append(raw if peer is None else peer)
    section["peers"] = peers
    return section
