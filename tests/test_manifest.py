"""Manifest loading, trust rules, and plugin discovery."""

from __future__ import annotations

import json
import logging
import os
import stat
import textwrap
from pathlib import Path

import pytest

from chamberlain.plugins.manifest import (
    CommandSpec,
    CommandType,
    FactOutput,
    Manifest,
    ManifestError,
    expand_compact_schema,
    load_manifest,
)
from chamberlain.plugins.registry import SkippedPlugin, discover

REPO = Path(__file__).resolve().parent.parent

SCRIPT = '#!/bin/sh\necho \'{"status":"ok"}\'\n'

BASIC = """\
name: {name}
version: 0.1.0
protocol: 2
entrypoint: run.sh
commands: [poll, handle, health]
"""


def make_plugin(
    parent: Path,
    dirname: str,
    manifest: str | None = None,
    *,
    name: str | None = None,
    script: str = "run.sh",
    mode: int = 0o755,
) -> Path:
    """Create a plugin directory; return the manifest path."""
    directory = parent / dirname
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    entry = directory / script
    entry.write_text(SCRIPT)
    entry.chmod(mode)
    text = manifest if manifest is not None else BASIC.format(name=name or dirname)
    path = directory / "manifest.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def refusal(path: Path) -> str:
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert info.value.path == path
    assert str(info.value) == f"{path}: {info.value.reason}"
    return info.value.reason


# ------------------------------------------------------------------ manifest shapes


def test_short_command_form_and_type_defaults(tmp_path: Path) -> None:
    manifest = load_manifest(make_plugin(tmp_path, "demo"))
    plugin_dir = (tmp_path / "demo").resolve()
    assert manifest == Manifest(
        name="demo",
        version="0.1.0",
        protocol=2,
        entrypoint=plugin_dir / "run.sh",
        directory=plugin_dir,
        commands=(
            CommandSpec(name="poll", type=CommandType.WRITE),
            CommandSpec(name="handle", type=CommandType.WRITE),
            CommandSpec(name="health", type=CommandType.READ),
        ),
    )
    assert manifest.entrypoint.is_absolute()
    assert manifest.command("health") == CommandSpec(name="health", type=CommandType.READ)
    assert manifest.command("nope") is None


def test_long_command_form_with_ductile_extras(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = make_plugin(
        tmp_path,
        "fetch",
        """\
        manifest_spec: ductile.plugin
        manifest_version: 1
        name: fetch
        version: 1.2
        protocol: 2
        entrypoint: run.sh
        description: "Fetch pages"
        concurrency_safe: false
        fact_outputs:
          - when: {command: handle}
            from: state_updates
            fact_type: fetch.page
        commands:
          - name: handle
            type: read
            description: "Fetch the URL"
            idempotent: true
            retry_safe: false
            input_schema:
              url: string
              depth: integer
            output_schema:
              type: object
              properties:
                body: {type: string}
            values:
              consume: [payload.url]
          - name: health
          - name: sync
            description: "no type: assume it writes"
        config_keys:
          required: [token]
          optional: [user_agent, timeout_seconds]
        """,
    )
    with caplog.at_level(logging.DEBUG, logger="chamberlain.plugins"):
        manifest = load_manifest(path)

    assert manifest.name == "fetch"
    assert manifest.version == "1.2"
    assert manifest.description == "Fetch pages"
    assert manifest.concurrency_safe is False
    assert manifest.config_keys_required == ("token",)
    assert manifest.config_keys_optional == ("user_agent", "timeout_seconds")
    handle = manifest.command("handle")
    assert handle == CommandSpec(
        name="handle",
        type=CommandType.READ,
        description="Fetch the URL",
        idempotent=True,
        retry_safe=False,
        input_schema={
            "type": "object",
            "properties": {"url": {"type": "string"}, "depth": {"type": "integer"}},
        },
        output_schema={"type": "object", "properties": {"body": {"type": "string"}}},
    )
    assert manifest.command("health") == CommandSpec(name="health", type=CommandType.READ)
    sync = manifest.command("sync")
    assert sync is not None
    assert sync.type is CommandType.WRITE

    ignored = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    # fact_outputs is read now (test_plugin_facts.py); the rest is still ignored.
    assert manifest.fact_outputs == (
        FactOutput(command="handle", fact_type="fetch.page", mirror=False),
    )
    assert any("manifest_version" in m and "manifest_spec" in m for m in ignored)
    assert not any("fact_outputs" in m for m in ignored)
    assert any("command handle" in m and "values" in m for m in ignored)
    assert all(getattr(r, "component", None) == "plugins" for r in caplog.records)


def test_config_keys_as_plain_list_are_required(tmp_path: Path) -> None:
    path = make_plugin(
        tmp_path,
        "p",
        """\
        name: p
        version: "1"
        protocol: 2
        entrypoint: run.sh
        commands: [poll]
        config_keys: [api_key, region]
        """,
    )
    manifest = load_manifest(path)
    assert manifest.config_keys_required == ("api_key", "region")
    assert manifest.config_keys_optional == ()


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        pytest.param(
            {"url": "string"},
            {"type": "object", "properties": {"url": {"type": "string"}}},
            id="compact",
        ),
        pytest.param(
            {"type": "object", "required": ["url"]},
            {"type": "object", "required": ["url"]},
            id="full-schema",
        ),
        pytest.param(
            {"properties": {"url": {"type": "string"}}},
            {"properties": {"url": {"type": "string"}}},
            id="properties-only",
        ),
    ],
)
def test_input_schema_expansion(
    tmp_path: Path, schema: dict[str, object], expected: dict[str, object]
) -> None:
    path = _schema_plugin(tmp_path, schema)
    handle = load_manifest(path).command("handle")
    assert handle is not None
    assert handle.input_schema == expected


def _schema_plugin(tmp_path: Path, schema: object) -> Path:
    return make_plugin(
        tmp_path,
        "s",
        f"""\
        name: s
        version: 0.1.0
        protocol: 2
        entrypoint: run.sh
        commands:
          - name: handle
            input_schema: {json.dumps(schema)}
        """,
    )


@pytest.mark.parametrize(
    "schema",
    [
        pytest.param({"url": "string", "opts": {"type": "object"}}, id="not-all-type-names"),
        pytest.param({"url": "uri"}, id="unknown-type-name"),
    ],
)
def test_input_schema_in_neither_form_is_not_expanded_and_refuses_the_plugin(
    tmp_path: Path, schema: dict[str, object]
) -> None:
    # Neither the compact form nor JSON Schema: expanding it would guess, and using
    # it as a JSON Schema would accept every payload while seeming to check fields.
    assert expand_compact_schema(schema) == schema
    with pytest.raises(ManifestError) as info:
        load_manifest(_schema_plugin(tmp_path, schema))
    assert "command 'handle': input_schema is neither the compact form" in info.value.reason


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        pytest.param(
            {"type": "object", "properties": {"seconds": {"type": "numbr"}}},
            "input_schema is not a valid JSON Schema: input_schema.properties.seconds.type: ",
            id="unknown-type",
        ),
        pytest.param(
            {"type": "object", "required": "url"},
            "input_schema is not a valid JSON Schema: input_schema.required: 'url' is not of"
            " type 'array'",
            id="required-not-a-list",
        ),
        pytest.param(
            {"type": "object", "$ref": "#/$defs/missing"},
            "input_schema has a reference that cannot be resolved",
            id="dangling-ref",
        ),
    ],
)
def test_invalid_json_schema_is_a_manifest_error(
    tmp_path: Path, schema: dict[str, object], reason: str
) -> None:
    with pytest.raises(ManifestError) as info:
        load_manifest(_schema_plugin(tmp_path, schema))
    assert f"command 'handle': {reason}" in info.value.reason


def test_an_invalid_input_schema_skips_only_its_plugin(tmp_path: Path) -> None:
    make_plugin(tmp_path, "good")
    _schema_plugin(tmp_path, {"type": "obj"})
    found = discover([tmp_path])
    assert set(found.plugins) == {"good"}
    (skipped,) = found.skipped
    assert "command 'handle': input_schema is not a valid JSON Schema" in skipped.reason


def test_symlinked_entrypoint_inside_plugin_is_resolved(tmp_path: Path) -> None:
    path = make_plugin(tmp_path, "p", script="real.sh")
    (tmp_path / "p" / "run.sh").symlink_to("real.sh")
    manifest = load_manifest(path)
    assert manifest.entrypoint == (tmp_path / "p" / "real.sh").resolve()


def test_entrypoint_in_subdirectory(tmp_path: Path) -> None:
    path = make_plugin(
        tmp_path,
        "p",
        """\
        name: p
        version: 0.1.0
        protocol: 2
        entrypoint: bin/run.sh
        commands: [poll]
        """,
    )
    (tmp_path / "p" / "bin").mkdir()
    (tmp_path / "p" / "run.sh").rename(tmp_path / "p" / "bin" / "run.sh")
    assert load_manifest(path).entrypoint == (tmp_path / "p" / "bin" / "run.sh").resolve()


# ---------------------------------------------------------------------- trust rules


def _manifest_with(**fields: str) -> str:
    values = {
        "name": "p",
        "version": "0.1.0",
        "protocol": "2",
        "entrypoint": "run.sh",
        "commands": "[poll]",
    }
    values.update(fields)
    return "".join(f"{key}: {value}\n" for key, value in values.items())


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        pytest.param(
            _manifest_with(entrypoint="../run.sh"), "contains a '..' path component", id="dotdot"
        ),
        pytest.param(
            _manifest_with(entrypoint="bin/../run.sh"),
            "contains a '..' path component",
            id="inner-dotdot",
        ),
        pytest.param(_manifest_with(entrypoint="/bin/sh"), "is absolute", id="absolute"),
        pytest.param(_manifest_with(entrypoint="missing.sh"), "does not exist", id="missing"),
        pytest.param(_manifest_with(entrypoint="'.'"), "is not a regular file", id="directory"),
        pytest.param(_manifest_with(entrypoint="''"), "entrypoint is required", id="empty"),
        pytest.param(_manifest_with(protocol="1"), "unsupported protocol 1", id="protocol-1"),
        pytest.param(_manifest_with(protocol="'2'"), "protocol must be the integer 2", id="str"),
        pytest.param(
            "name: p\nversion: 1\nentrypoint: run.sh\ncommands: [poll]\n",
            "protocol must be the integer 2",
            id="no-protocol",
        ),
        pytest.param(_manifest_with(name="'a/b'"), "invalid plugin name", id="slash"),
        pytest.param(_manifest_with(name="'a..b'"), "invalid plugin name", id="name-dotdot"),
        pytest.param(_manifest_with(name="'.hidden'"), "invalid plugin name", id="leading-dot"),
        pytest.param(_manifest_with(name="'a b'"), "invalid plugin name", id="space"),
        pytest.param(_manifest_with(name="''"), "name is required", id="empty-name"),
        pytest.param(_manifest_with(version="''"), "version must not be empty", id="version"),
        pytest.param(_manifest_with(commands="[]"), "at least one command", id="no-commands"),
        pytest.param(_manifest_with(commands="poll"), "commands must be a list", id="scalar"),
        pytest.param(_manifest_with(commands="[poll, poll]"), "duplicate command", id="dup"),
        pytest.param(_manifest_with(commands="['-x']"), "invalid command name", id="cmd-name"),
        pytest.param(_manifest_with(commands="[[a]]"), "must be a string or a mapping", id="nest"),
        pytest.param(
            _manifest_with(commands="[{name: poll, type: admin}]"),
            "type must be 'read' or 'write'",
            id="cmd-type",
        ),
        pytest.param(
            _manifest_with(commands="[{type: read}]"), "name is required", id="cmd-no-name"
        ),
        pytest.param(
            _manifest_with(concurrency_safe="maybe"),
            "concurrency_safe must be a boolean",
            id="concurrency",
        ),
        pytest.param(
            _manifest_with(config_keys="{required: api_key}"),
            "config_keys.required must be a list",
            id="config-keys",
        ),
        pytest.param("name: [unclosed\n", "invalid YAML", id="bad-yaml"),
        pytest.param("- a\n- b\n", "manifest must be a mapping, not a list", id="list"),
        pytest.param("", "manifest must be a mapping, not empty", id="empty-file"),
    ],
)
def test_refused(tmp_path: Path, manifest: str, reason: str) -> None:
    path = make_plugin(tmp_path, "p", manifest)
    assert reason in refusal(path)


def test_refuses_non_executable_entrypoint(tmp_path: Path) -> None:
    path = make_plugin(tmp_path, "p", mode=0o644)
    assert "is not executable" in refusal(path)


def test_refuses_world_writable_entrypoint(tmp_path: Path) -> None:
    path = make_plugin(tmp_path, "p", mode=0o757)
    assert "run.sh' is world-writable" in refusal(path)


def test_refuses_world_writable_plugin_directory(tmp_path: Path) -> None:
    path = make_plugin(tmp_path, "p")
    path.parent.chmod(0o777)
    try:
        assert "plugin directory" in refusal(path)
        assert "is world-writable" in refusal(path)
    finally:
        path.parent.chmod(0o755)


def test_refuses_symlink_escaping_the_plugin(tmp_path: Path) -> None:
    outside = tmp_path / "outside.sh"
    outside.write_text(SCRIPT)
    outside.chmod(0o755)
    path = make_plugin(tmp_path, "p", script="other.sh")
    (tmp_path / "p" / "run.sh").symlink_to(outside)
    reason = refusal(path)
    assert "outside the plugin directory" in reason
    assert str(outside) in reason


def test_refuses_symlink_loop(tmp_path: Path) -> None:
    path = make_plugin(tmp_path, "p", script="other.sh")
    (tmp_path / "p" / "run.sh").symlink_to("run.sh")
    assert "cannot be resolved" in refusal(path)


def test_refuses_unreadable_manifest(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "manifest.yaml"
    assert "cannot read manifest" in refusal(path)


def test_refuses_invalid_utf8(tmp_path: Path) -> None:
    path = make_plugin(tmp_path, "p")
    path.write_bytes(b"name: \xff\n")
    assert "cannot read manifest" in refusal(path)


# ------------------------------------------------------------------------- discovery


def test_discovers_recursively_in_sorted_order(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_plugin(root, "b")
    make_plugin(root / "group" / "nested", "a")
    make_plugin(root, "c")
    discovery = discover([root])
    assert list(discovery.plugins) == ["b", "c", "a"]
    assert discovery.skipped == ()
    assert discovery.plugins["a"].directory == (root / "group" / "nested" / "a").resolve()


def test_does_not_descend_into_a_plugin_or_hidden_directories(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_plugin(root, "outer")
    make_plugin(root / "outer" / "vendor", "inner")
    make_plugin(root / ".git", "hidden")
    assert list(discover([root]).plugins) == ["outer"]


def test_root_that_is_itself_a_plugin(tmp_path: Path) -> None:
    make_plugin(tmp_path, "solo")
    assert list(discover([tmp_path / "solo"]).plugins) == ["solo"]


def test_multiple_roots_and_missing_root(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_plugin(tmp_path / "one", "a")
    make_plugin(tmp_path / "two", "b")
    missing = tmp_path / "missing"
    with caplog.at_level(logging.WARNING, logger="chamberlain.plugins"):
        discovery = discover([tmp_path / "one", missing, tmp_path / "two"])
    assert list(discovery.plugins) == ["a", "b"]
    assert any(
        str(missing) in r.getMessage() and "does not exist" in r.getMessage()
        for r in caplog.records
    )


def test_duplicate_names_first_root_wins(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = make_plugin(tmp_path / "z-first", "dup")
    second = make_plugin(tmp_path / "a-second", "dup")
    third = make_plugin(tmp_path / "a-second", "also", name="dup")
    with caplog.at_level(logging.WARNING, logger="chamberlain.plugins"):
        discovery = discover([tmp_path / "z-first", tmp_path / "a-second"])
    assert discovery.plugins["dup"].directory == first.parent.resolve()
    assert [s.path for s in discovery.skipped] == [third, second]
    for skipped in discovery.skipped:
        assert "duplicate plugin name 'dup'" in skipped.reason
        assert str(first) in skipped.reason
    assert sum("duplicate plugin name" in r.getMessage() for r in caplog.records) == 2


def test_duplicate_names_within_one_root_path_order_wins(tmp_path: Path) -> None:
    make_plugin(tmp_path, "b", name="same")
    make_plugin(tmp_path, "a", name="same")
    discovery = discover([tmp_path])
    assert discovery.plugins["same"].directory == (tmp_path / "a").resolve()
    assert len(discovery.skipped) == 1


def test_bad_manifest_is_skipped_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_plugin(tmp_path, "good")
    bad = make_plugin(tmp_path, "bad", _manifest_with(name="bad", entrypoint="../x"))
    with caplog.at_level(logging.WARNING, logger="chamberlain.plugins"):
        discovery = discover([tmp_path])
    assert list(discovery.plugins) == ["good"]
    assert discovery.skipped == (
        SkippedPlugin(path=bad, reason="entrypoint '../x' contains a '..' path component"),
    )
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(bad) in record.getMessage()
    assert "'..' path component" in record.getMessage()
    assert getattr(record, "component", None) == "plugins"


def test_symlink_cycles_and_overlapping_roots_are_harmless(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_plugin(root / "group", "a")
    (root / "group" / "loop").symlink_to(root, target_is_directory=True)
    (root / "alias").symlink_to(root / "group", target_is_directory=True)
    discovery = discover([root, root / "group", root])
    assert list(discovery.plugins) == ["a"]
    assert discovery.skipped == ()


def test_symlinked_plugin_directory_is_followed(tmp_path: Path) -> None:
    make_plugin(tmp_path / "elsewhere", "linked")
    root = tmp_path / "root"
    root.mkdir()
    (root / "linked").symlink_to(tmp_path / "elsewhere" / "linked", target_is_directory=True)
    assert list(discover([root]).plugins) == ["linked"]


# -------------------------------------------------------------------- bundled plugins


def test_bundled_plugins_load() -> None:
    discovery = discover([REPO / "plugins"])
    assert discovery.skipped == ()
    assert set(discovery.plugins) >= {"echo", "sys_exec"}

    echo = discovery.plugins["echo"]
    assert echo.entrypoint == (REPO / "plugins" / "echo" / "run.sh").resolve()
    assert {c.name: c.type for c in echo.commands} == {
        "poll": CommandType.READ,
        "handle": CommandType.WRITE,
        "health": CommandType.READ,
    }
    assert echo.config_keys_optional == ("message",)

    sys_exec = discovery.plugins["sys_exec"]
    assert {c.name: c.type for c in sys_exec.commands} == {
        "poll": CommandType.WRITE,
        "handle": CommandType.WRITE,
        "health": CommandType.READ,
    }
    assert sys_exec.config_keys_required == ("command",)


@pytest.mark.parametrize("entrypoint", ["echo/run.sh", "sys_exec/run.py"])
def test_bundled_entrypoints_are_executable_files(entrypoint: str) -> None:
    mode = (REPO / "plugins" / entrypoint).stat().st_mode
    assert stat.S_ISREG(mode)
    assert mode & 0o111 == 0o111
    assert not mode & stat.S_IWOTH
    assert os.access(REPO / "plugins" / entrypoint, os.X_OK)
