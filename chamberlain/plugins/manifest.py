"""Plugin manifests: parsing and the trust rules applied before anything runs.

A manifest is the ``manifest.yaml`` file at the top of a plugin directory, in the
format Ductile (protocol v2) uses, so existing Ductile plugins load unmodified.
Loading is strict about what matters for safety (where the entrypoint lives, who owns
it and who can write to it), and about a command's ``input_schema``, which is
enforced on every trigger and so must be one a validator can use.  It is lenient
about everything else: unknown keys are ignored, because manifests grow new fields
faster than the daemon learns them.
"""

from __future__ import annotations

import enum
import logging
import os
import re
import stat
from collections.abc import Collection, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import attrs
import yaml

from chamberlain.plugins.input_schema import InvalidSchema, PayloadCheck, compile_input_schema

__all__ = [
    "CommandSpec",
    "CommandType",
    "Manifest",
    "ManifestError",
    "expand_compact_schema",
    "load_manifest",
]

logger = logging.getLogger("chamberlain.plugins")

SUPPORTED_PROTOCOL = 2

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# JSON Schema's primitive type names: the only values the compact ``{field: type}``
# input_schema form may use for it to be expanded.
_JSON_TYPES = frozenset({"string", "integer", "number", "boolean", "object", "array", "null"})

# Top-level keys that mark a mapping as a real JSON Schema rather than the compact form.
_SCHEMA_MARKERS = frozenset({"type", "properties", "$schema", "$ref", "allOf", "anyOf", "oneOf"})

_KNOWN_TOP_LEVEL = frozenset(
    {
        "name",
        "version",
        "protocol",
        "entrypoint",
        "description",
        "concurrency_safe",
        "commands",
        "config_keys",
        "fact_outputs",
    }
)
_KNOWN_COMMAND_KEYS = frozenset(
    {
        "name",
        "type",
        "description",
        "input_schema",
        "output_schema",
        "idempotent",
        "retry_safe",
        "interactive",
    }
)


class CommandType(enum.Enum):
    """Whether a command only observes (``read``) or may change the world (``write``).

    Token scopes are checked against this: ``plugin:ro`` may run read commands only.
    """

    READ = "read"
    WRITE = "write"


@attrs.frozen(kw_only=True)
class CommandSpec:
    """One command a plugin declares in its manifest.

    ``input_schema`` is compiled when the spec is made, once for the daemon's life;
    a schema no validator can use raises `InvalidSchema` here, not at the first job.
    """

    name: str
    type: CommandType
    description: str = ""
    input_schema: Mapping[str, Any] | None = None
    output_schema: Mapping[str, Any] | None = None
    idempotent: bool | None = None
    retry_safe: bool | None = None
    #: The command speaks the interactive protocol (chamberlain.plugins.conversation):
    #: stdin stays open for a user's messages, stdout is read line by line.
    interactive: bool = False
    _input_check: PayloadCheck | None = attrs.field(init=False, eq=False, repr=False)

    @_input_check.default
    def _compile_input_schema(self) -> PayloadCheck | None:
        return None if self.input_schema is None else compile_input_schema(self.input_schema)

    def check_payload(self, payload: Mapping[str, Any], *, path: str = "payload") -> None:
        """Raise `InvalidPayload` if ``payload`` breaks ``input_schema`` (none: any fits).

        ``path`` names the payload in the message (``jobs[3].payload`` in a batch).
        """
        if self._input_check is not None:
            self._input_check.check(payload, path=path)


@attrs.frozen(kw_only=True)
class FactOutput:
    """One ``fact_outputs`` rule: a command whose ``state_updates`` are a fact.

    Ductile's manifests use these for plugins whose state is a snapshot (a playlist,
    a mailbox cursor): each successful ``command`` records its ``state_updates`` as
    an append-only fact of ``fact_type`` instead of merging them into the state.
    With ``mirror`` (``compatibility_view: mirror_object``) the plugin's state then
    becomes that snapshot, whole, so the next request's ``state`` is exactly it;
    without, the state is left as it was.
    """

    command: str
    fact_type: str
    mirror: bool


@attrs.frozen(kw_only=True)
class Manifest:
    """A validated plugin manifest.

    ``entrypoint`` and ``directory`` are absolute and resolved (symlinks followed), so
    what was checked at load time is exactly what gets executed.
    """

    name: str
    version: str
    protocol: int
    entrypoint: Path
    directory: Path
    description: str = ""
    concurrency_safe: bool = True
    commands: tuple[CommandSpec, ...]
    config_keys_required: tuple[str, ...] = ()
    config_keys_optional: tuple[str, ...] = ()
    fact_outputs: tuple[FactOutput, ...] = ()

    def command(self, name: str) -> CommandSpec | None:
        """Return the command called ``name``, or ``None`` if the plugin has none."""
        for spec in self.commands:
            if spec.name == name:
                return spec
        return None


class ManifestError(Exception):
    """A manifest that cannot be loaded, or that breaks a trust rule.

    ``path`` is the manifest file and ``reason`` a short human explanation; ``str()``
    gives ``"<path>: <reason>"`` so a log line names both.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(path, reason)
        self.path = path
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def load_manifest(path: Path, *, trusted_owners: Collection[int] = ()) -> Manifest:
    """Load the manifest file at ``path`` and apply the trust rules.

    Raises `ManifestError` with a reason for anything that makes the plugin unsafe or
    unusable: unreadable or invalid YAML, missing or malformed fields, an unsupported
    protocol, an entrypoint that escapes the plugin directory or is not an executable
    regular file, a world-writable plugin directory or entrypoint, or a manifest,
    plugin directory or entrypoint owned by someone other than root, the daemon's
    user and the uids in ``trusted_owners``.
    """
    path = Path(path)
    try:
        with path.open("rb") as file:
            owner = os.fstat(file.fileno()).st_uid  # of what is read, not of the name
            text = file.read().decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, f"cannot read manifest: {exc}") from exc
    directory = path.parent.resolve()
    try:
        directory_owner = directory.stat().st_uid
    except OSError as exc:
        raise ManifestError(path, f"cannot stat plugin directory: {exc}") from exc
    for what, uid in (
        (f"plugin directory {directory}", directory_owner),
        (f"manifest {path}", owner),
    ):
        untrusted = _untrusted_owner(uid, trusted_owners)
        if untrusted is not None:
            raise ManifestError(path, f"{what} {untrusted}")
    try:
        # libyaml's parser when the build has it: every start and reload reads each
        # manifest, and the pure-Python one is most of that time.
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        raise ManifestError(path, f"invalid YAML: {_one_line(str(exc))}") from exc
    if not isinstance(data, Mapping):
        raise ManifestError(path, f"manifest must be a mapping, not {_kind(data)}")

    try:
        return _build(path, data, trusted_owners)
    except _Invalid as exc:
        raise ManifestError(path, exc.reason) from None


#: The same safe loader in C where PyYAML was built with libyaml.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Invalid(Exception):
    """Raised by the field parsers; `load_manifest` attaches the path."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _build(path: Path, data: Mapping[Any, Any], trusted_owners: Collection[int]) -> Manifest:
    name = _plugin_name(data.get("name"))
    log_extra = {"component": "plugins", "plugin": name}
    unknown = sorted(str(key) for key in data if key not in _KNOWN_TOP_LEVEL)
    if unknown:
        logger.debug("%s: ignoring manifest keys %s", path, ", ".join(unknown), extra=log_extra)

    version = _version(data.get("version"))
    protocol = data.get("protocol")
    if isinstance(protocol, bool) or not isinstance(protocol, int):
        raise _Invalid(f"protocol must be the integer {SUPPORTED_PROTOCOL}, got {protocol!r}")
    if protocol != SUPPORTED_PROTOCOL:
        raise _Invalid(f"unsupported protocol {protocol} (only {SUPPORTED_PROTOCOL} is supported)")

    directory = path.parent.resolve()
    entrypoint = _entrypoint(directory, data.get("entrypoint"), trusted_owners)

    description = _optional_str(data.get("description"), "description")
    concurrency_safe = data.get("concurrency_safe", True)
    if concurrency_safe is None:
        concurrency_safe = True
    if not isinstance(concurrency_safe, bool):
        raise _Invalid(f"concurrency_safe must be a boolean, got {concurrency_safe!r}")

    commands = _commands(data.get("commands"), path, log_extra)
    required, optional = _config_keys(data.get("config_keys"))
    facts = _fact_outputs(data.get("fact_outputs"), {c.name for c in commands})

    return Manifest(
        name=name,
        version=version,
        protocol=protocol,
        entrypoint=entrypoint,
        directory=directory,
        description=description,
        concurrency_safe=concurrency_safe,
        commands=commands,
        config_keys_required=required,
        config_keys_optional=optional,
        fact_outputs=facts,
    )


def _plugin_name(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid("name is required and must be a non-empty string")
    # The regex already excludes "/" and NUL; ".." is checked separately because the
    # charset allows dots and the name ends up in paths, URLs and log lines.
    if not _NAME_RE.fullmatch(value) or ".." in value:
        raise _Invalid(
            f"invalid plugin name {value!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit, no '..')"
        )
    return value


def _version(value: object) -> str:
    # YAML reads ``version: 1`` or ``version: 1.0`` as numbers; Ductile treats the
    # version as an opaque label, so accept those and keep their text.
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise _Invalid("version is required and must be a string")
    text = str(value).strip()
    if not text:
        raise _Invalid("version must not be empty")
    return text


def _untrusted_owner(uid: int, trusted_owners: Collection[int]) -> str | None:
    """Why a file owned by ``uid`` may not be run, or None when its owner is trusted.

    Whoever owns a plugin's files can change what the daemon runs, with the daemon's
    privileges: a root daemon must not run what an ordinary user could rewrite.
    """
    daemon_user = os.geteuid()
    if uid in (0, daemon_user) or uid in trusted_owners:
        return None
    return (
        f"is owned by uid {uid}, neither root nor the daemon's user (uid {daemon_user});"
        " list the owner in service.trusted_plugin_owners to load it"
    )


def _entrypoint(directory: Path, value: object, trusted_owners: Collection[int]) -> Path:
    if not isinstance(value, str) or not value.strip():
        raise _Invalid("entrypoint is required and must be a non-empty string")
    if "\x00" in value:
        raise _Invalid("entrypoint contains a NUL byte")
    relative = PurePosixPath(value)
    if relative.is_absolute():
        raise _Invalid(f"entrypoint {value!r} is absolute; it must be relative to the plugin")
    if ".." in relative.parts:
        raise _Invalid(f"entrypoint {value!r} contains a '..' path component")

    try:
        dir_mode = directory.stat().st_mode
    except OSError as exc:
        raise _Invalid(f"cannot stat plugin directory: {exc}") from exc
    if dir_mode & stat.S_IWOTH:
        raise _Invalid(f"plugin directory {directory} is world-writable")

    candidate = directory / relative
    try:
        resolved = candidate.resolve(strict=True)
    except FileNotFoundError:
        raise _Invalid(f"entrypoint {value!r} does not exist") from None
    except (OSError, RuntimeError) as exc:
        # RuntimeError: a symlink loop on Python versions that do not raise OSError.
        raise _Invalid(f"entrypoint {value!r} cannot be resolved: {exc}") from exc
    if not resolved.is_relative_to(directory):
        raise _Invalid(f"entrypoint {value!r} resolves to {resolved}, outside the plugin directory")

    try:
        info = resolved.stat()
    except OSError as exc:
        raise _Invalid(f"cannot stat entrypoint {value!r}: {exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise _Invalid(f"entrypoint {value!r} is not a regular file")
    if info.st_mode & stat.S_IWOTH:
        raise _Invalid(f"entrypoint {value!r} is world-writable")
    untrusted = _untrusted_owner(info.st_uid, trusted_owners)
    if untrusted is not None:
        raise _Invalid(f"entrypoint {value!r} {untrusted}")
    if not os.access(resolved, os.X_OK):
        raise _Invalid(f"entrypoint {value!r} is not executable (chmod +x)")
    return resolved


def _commands(value: object, path: Path, log_extra: Mapping[str, str]) -> tuple[CommandSpec, ...]:
    if value is None:
        raise _Invalid("commands is required")
    if not isinstance(value, list):
        raise _Invalid(f"commands must be a list, not {_kind(value)}")
    if not value:
        raise _Invalid("commands must declare at least one command")

    specs: list[CommandSpec] = []
    seen: set[str] = set()
    for index, item in enumerate(value):
        if isinstance(item, str):
            spec = CommandSpec(name=_command_name(item, index), type=_default_type(item))
        elif isinstance(item, Mapping):
            spec = _command_mapping(item, index, path, log_extra)
        else:
            raise _Invalid(f"commands[{index}] must be a string or a mapping, not {_kind(item)}")
        if spec.name in seen:
            raise _Invalid(f"duplicate command {spec.name!r}")
        seen.add(spec.name)
        specs.append(spec)
    return tuple(specs)


def _command_mapping(
    item: Mapping[Any, Any], index: int, path: Path, log_extra: Mapping[str, str]
) -> CommandSpec:
    name = _command_name(item.get("name"), index)
    unknown = sorted(str(key) for key in item if key not in _KNOWN_COMMAND_KEYS)
    if unknown:
        logger.debug(
            "%s: command %s: ignoring keys %s", path, name, ", ".join(unknown), extra=log_extra
        )

    raw_type = item.get("type")
    if raw_type is None:
        command_type = _default_type(name)
    else:
        try:
            command_type = CommandType(raw_type)
        except ValueError:
            raise _Invalid(
                f"command {name!r}: type must be 'read' or 'write', got {raw_type!r}"
            ) from None

    try:
        return CommandSpec(
            name=name,
            type=command_type,
            description=_optional_str(item.get("description"), f"command {name!r}: description"),
            input_schema=_schema(item.get("input_schema"), f"command {name!r}: input_schema"),
            output_schema=_schema(item.get("output_schema"), f"command {name!r}: output_schema"),
            idempotent=_optional_bool(item.get("idempotent"), f"command {name!r}: idempotent"),
            retry_safe=_optional_bool(item.get("retry_safe"), f"command {name!r}: retry_safe"),
            interactive=bool(
                _optional_bool(item.get("interactive"), f"command {name!r}: interactive")
            ),
        )
    except InvalidSchema as exc:
        raise _Invalid(f"command {name!r}: input_schema {exc}") from None


def _command_name(value: object, index: int) -> str:
    if not isinstance(value, str) or not value:
        raise _Invalid(f"commands[{index}]: name is required and must be a non-empty string")
    if not _NAME_RE.fullmatch(value):
        raise _Invalid(
            f"commands[{index}]: invalid command name {value!r}: use letters, digits, "
            "'_', '.', '-', starting with a letter or digit"
        )
    return value


def _default_type(name: str) -> CommandType:
    # An undeclared type is assumed to change things, so a read-only token cannot run
    # it by accident. ``health`` is the one command every plugin treats as a probe.
    return CommandType.READ if name == "health" else CommandType.WRITE


def _schema(value: object, what: str) -> Mapping[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise _Invalid(f"{what} must be a mapping, not {_kind(value)}")
    schema = {str(key): item for key, item in value.items()}
    return expand_compact_schema(schema)


def expand_compact_schema(schema: Mapping[str, Any]) -> Mapping[str, Any]:
    """Expand Ductile's compact ``{field: type_name}`` form into a JSON Schema object.

    ``{"url": "string", "depth": "integer"}`` becomes ``{"type": "object",
    "properties": {"url": {"type": "string"}, "depth": {"type": "integer"}}}``.
    A mapping that already looks like JSON Schema (``type``, ``properties``, ``$ref``,
    a combinator...) or that has any value other than a JSON type name is returned
    unchanged: guessing at an unfamiliar shape would only corrupt it.
    """
    if not schema or _SCHEMA_MARKERS.intersection(schema):
        return schema
    if not all(isinstance(value, str) and value in _JSON_TYPES for value in schema.values()):
        return schema
    return {
        "type": "object",
        "properties": {field: {"type": type_name} for field, type_name in schema.items()},
    }


def _config_keys(value: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if value is None:
        return (), ()
    if isinstance(value, list):
        return _key_list(value, "config_keys"), ()
    if isinstance(value, Mapping):
        return (
            _key_list(value.get("required"), "config_keys.required"),
            _key_list(value.get("optional"), "config_keys.optional"),
        )
    raise _Invalid(f"config_keys must be a list or a mapping, not {_kind(value)}")


def _fact_outputs(value: object, commands: Collection[str]) -> tuple[FactOutput, ...]:
    """The ``fact_outputs`` rules, checked as Ductile checks them at discovery."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Invalid(f"fact_outputs must be a list, not {_kind(value)}")
    rules: list[FactOutput] = []
    for i, rule in enumerate(value):
        at = f"fact_outputs[{i}]"
        if not isinstance(rule, Mapping):
            raise _Invalid(f"{at} must be a mapping, not {_kind(rule)}")
        when = rule.get("when")
        command = when.get("command") if isinstance(when, Mapping) else None
        if not isinstance(command, str) or not command.strip():
            raise _Invalid(f"{at}.when.command is required")
        if command.strip() not in commands:
            raise _Invalid(f"{at}.when.command {command!r} is not one of the manifest's commands")
        source = rule.get("from")
        if source != "state_updates":
            raise _Invalid(f"{at}.from must be state_updates (the only source), got {source!r}")
        fact_type = rule.get("fact_type")
        if not isinstance(fact_type, str) or not fact_type.strip():
            raise _Invalid(f"{at}.fact_type is required")
        view = rule.get("compatibility_view") or ""
        if view not in ("", "mirror_object"):
            raise _Invalid(f"{at}.compatibility_view must be mirror_object or absent, got {view!r}")
        rules.append(
            FactOutput(command=command.strip(), fact_type=fact_type.strip(), mirror=bool(view))
        )
    return tuple(rules)


def _key_list(value: object, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(key, str) and key for key in value):
        raise _Invalid(f"{what} must be a list of non-empty strings")
    return tuple(value)


def _optional_str(value: object, what: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Invalid(f"{what} must be a string, got {_kind(value)}")
    return value


def _optional_bool(value: object, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _Invalid(f"{what} must be a boolean, got {value!r}")


def _kind(value: object) -> str:
    if value is None:
        return "empty"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


def _one_line(text: str) -> str:
    return " ".join(text.split())
