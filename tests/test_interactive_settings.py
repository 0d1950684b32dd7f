"""Where interactive commands are declared and configured: the manifest and the config."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from chamberlain.config import Config, ConfigError, parse_config
from chamberlain.plugins.binding import bind_plugins
from chamberlain.plugins.manifest import ManifestError, load_manifest
from chamberlain.plugins.registry import Discovery


def parse(data: dict[str, object]) -> Config:
    return parse_config(data, base_dir=Path("/cfg"), environ={})


def plugin(tmp_path: Path, commands: str) -> Path:
    directory = tmp_path / "chat"
    directory.mkdir()
    entry = directory / "run.sh"
    entry.write_text("#!/bin/sh\n")
    entry.chmod(0o755)
    manifest = directory / "manifest.yaml"
    manifest.write_text(
        textwrap.dedent(
            """\
            name: chat
            version: 1.0.0
            protocol: 2
            entrypoint: run.sh
            commands:
            """
        )
        + textwrap.indent(textwrap.dedent(commands), "  ")
    )
    return manifest


def test_a_command_is_interactive_only_when_its_manifest_says_so(tmp_path: Path) -> None:
    manifest = load_manifest(
        plugin(
            tmp_path,
            """\
            - name: session
              interactive: true
            - name: run
              interactive: false
            - poll
            """,
        )
    )
    assert [(c.name, c.interactive) for c in manifest.commands] == [
        ("session", True),
        ("run", False),
        ("poll", False),
    ]


def test_interactive_must_be_a_boolean(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="command 'session': interactive must be a boolean"):
        load_manifest(plugin(tmp_path, "- name: session\n  interactive: 'yes'\n"))


def test_the_idle_timeout_and_the_session_cap_have_defaults_and_are_checked() -> None:
    defaults = parse({}).plugin_config("chat")
    assert (defaults.interactive_timeout, defaults.max_duration) == (1800.0, 14400.0)
    set_ = parse(
        {"plugins": {"chat": {"interactive_timeout": "5m", "max_duration": "1h"}}}
    ).plugins["chat"]
    assert (set_.interactive_timeout, set_.max_duration) == (300.0, 3600.0)
    with pytest.raises(ConfigError) as info:
        parse({"plugins": {"chat": {"interactive_timeout": 0, "max_duration": "soon"}}})
    assert info.value.problems[0] == (
        "plugins.chat.interactive_timeout: must be longer than zero, got 0"
    )
    assert info.value.problems[1].startswith("plugins.chat.max_duration: invalid duration")


def test_a_timeout_for_an_interactive_command_is_said_not_to_apply(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest = load_manifest(plugin(tmp_path, "- name: session\n  interactive: true\n- poll\n"))
    config = parse({"plugins": {"chat": {"timeouts": {"session": "1m", "poll": "1m"}}}})
    with caplog.at_level(logging.WARNING, logger="chamberlain.plugins"):
        bound = bind_plugins(config, Discovery(plugins={"chat": manifest}, skipped=()))
    assert bound["chat"].interactive("session") and not bound["chat"].interactive("poll")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "plugins.chat.timeouts.session does not apply: session is interactive, its idle"
        " timeout is plugins.chat.interactive_timeout"
    ]
