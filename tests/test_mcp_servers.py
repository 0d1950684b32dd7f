"""The MCP server registry's rules (chamberlain.plugins.mcp_servers), as plain functions."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from chamberlain.plugins.mcp_servers import (
    MAX_PER_JOB,
    McpServerGone,
    mcp_config,
    mcp_references,
    parse_mcp_server,
    parse_server_names,
    secret_references,
    workspace_files,
)
from chamberlain.records import McpServer
from chamberlain.vault import UnknownSecret, Vault

NOW = 1_714_557_600.0

GITHUB: dict[str, Any] = {
    "name": "github",
    "command": ["npx", "-y", "@modelcontextprotocol/server-github"],
    "env": {"GITHUB_TOKEN": "${secret:gh_token}", "LOG": "debug"},
}


def test_a_command_server_is_kept_as_written() -> None:
    server = parse_mcp_server(GITHUB, now=NOW)
    assert server == McpServer(
        name="github",
        command=("npx", "-y", "@modelcontextprotocol/server-github"),
        env={"GITHUB_TOKEN": "${secret:gh_token}", "LOG": "debug"},
        created_at=NOW,
    )
    assert server.to_json() == {
        "name": "github",
        "command": ["npx", "-y", "@modelcontextprotocol/server-github"],
        "env": {"GITHUB_TOKEN": "${secret:gh_token}", "LOG": "debug"},
        "url": None,
        "headers": {},
        "created_at": "2024-05-01T10:00:00.000Z",
    }


def test_a_url_server_takes_headers_and_no_command() -> None:
    server = parse_mcp_server(
        {
            "name": "remote",
            "url": "https://mcp.example.com/v1",
            "headers": {"Authorization": "Bearer ${secret:remote_key}"},
        },
        now=NOW,
    )
    assert server.url == "https://mcp.example.com/v1" and server.command == ()
    assert server.to_json()["command"] is None
    assert secret_references(server) == [("headers.Authorization", "remote_key")]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"command": ["x"]}, "name is required"),
        ({"name": "1st", "command": ["x"]}, "name: invalid MCP server name '1st': must be"),
        (
            {"name": 7, "command": ["x"]},
            "name: an MCP server's name must be a string, not a number",
        ),
        ({"name": "a", "command": ["x"], "extra": 1}, "unknown field 'extra'; expected: name,"),
        ({"name": "a"}, "command is required (a list of strings: argv) unless url is given"),
        ({"name": "a", "command": "npx server"}, "command must be a list of strings (argv)"),
        ({"name": "a", "command": []}, "command must not be empty"),
        ({"name": "a", "command": ["npx", 3]}, "command[1] must be a string, not a number"),
        ({"name": "a", "command": [" "]}, "command[0] must name the program to start"),
        ({"name": "a", "command": ["x", "a\x00b"]}, "command[1] holds a NUL character"),
        (
            {"name": "a", "command": ["x", "--token=${secret:gh}"]},
            "command[1]: ${secret:...} is allowed only in env and headers values",
        ),
        ({"name": "a", "command": ["x"], "env": []}, "env must be an object of strings"),
        ({"name": "a", "command": ["x"], "env": {"1X": "v"}}, "env.1X: invalid environment"),
        (
            {"name": "a", "command": ["x"], "env": {"CHAMBERLAIN_JOB_ID": "v"}},
            "env.CHAMBERLAIN_JOB_ID: CHAMBERLAIN_* variables are reserved for the daemon",
        ),
        ({"name": "a", "command": ["x"], "env": {"X": 1}}, "env.X must be a string, not a number"),
        (
            {"name": "a", "command": ["x"], "env": {"X": "${secret:bad name}"}},
            "env.X: invalid secret name 'bad name'",
        ),
        (
            {"name": "a", "command": ["x"], "env": {"X": "${secret:gh"}},
            "env.X: unterminated reference",
        ),
        (
            {"name": "a", "command": ["x"], "headers": {"H": "v"}},
            "headers are sent to url servers only",
        ),
        ({"name": "a", "command": ["x"], "url": "https://h/"}, "give either command or url"),
        # Presence decides: a null is not an absent field (the schema says so too).
        ({"name": "a", "command": None, "url": "https://h/"}, "give either command or url"),
        ({"name": "a", "url": None}, "url must be"),
        ({"name": "a", "url": "ftp://h/x"}, "url must be an http:// or https:// URL with a host"),
        ({"name": "a", "url": "https:///x"}, "url must be an http:// or https:// URL with a host"),
        ({"name": "a", "url": 5}, "url must be a string, not a number"),
        (
            {"name": "a", "url": "https://h/?k=${secret:gh}"},
            "url: ${secret:...} is allowed only in env and headers values",
        ),
        ({"name": "a", "url": "https://h/", "env": {"X": "v"}}, "env is for servers the agent"),
        ({"name": "a", "url": "https://h/", "headers": {"a b": "v"}}, "headers.a b: invalid"),
        (
            {"name": "a", "url": "https://h/", "headers": {"H": "v\r\nX: y"}},
            "headers.H holds a line break",
        ),
    ],
)
def test_a_bad_registration_names_the_field(body: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
        parse_mcp_server(body, now=NOW)


def test_other_dollar_braces_and_the_escape_are_left_for_the_agent() -> None:
    server = parse_mcp_server(
        {
            "name": "a",
            "command": ["${HOME}/bin/server"],
            "env": {"P": "${HOME}/x", "L": "$${secret:literal}", "T": "t=${secret:gh}!"},
        },
        now=NOW,
    )
    assert secret_references(server) == [("env.T", "gh")]
    vault = Vault()
    vault.put("gh", "ghp-value-1234")
    document = mcp_config([server], vault.resolve)
    assert document["mcpServers"]["a"] == {
        "command": "${HOME}/bin/server",
        "args": [],
        "env": {"P": "${HOME}/x", "L": "${secret:literal}", "T": "t=ghp-value-1234!"},
    }


def test_the_document_is_claude_codes_format_with_secrets_resolved() -> None:
    vault = Vault()
    vault.put("gh_token", "ghp-resolved-9876")
    vault.put("remote_key", "rk-resolved-5432")
    github = parse_mcp_server(GITHUB, now=NOW)
    remote = parse_mcp_server(
        {
            "name": "remote",
            "url": "https://mcp.example.com/v1",
            "headers": {"Authorization": "Bearer ${secret:remote_key}"},
        },
        now=NOW,
    )
    plain = parse_mcp_server({"name": "plain", "url": "http://127.0.0.1:9000/mcp"}, now=NOW)
    assert mcp_config([github, remote, plain], vault.resolve) == {
        "mcpServers": {
            "github": {
                "command": "npx",
                "args": ["-y", "@modelcontextprotocol/server-github"],
                "env": {"GITHUB_TOKEN": "ghp-resolved-9876", "LOG": "debug"},
            },
            "remote": {
                "type": "http",
                "url": "https://mcp.example.com/v1",
                "headers": {"Authorization": "Bearer rk-resolved-5432"},
            },
            "plain": {"type": "http", "url": "http://127.0.0.1:9000/mcp"},
        }
    }


def test_workspace_files_keep_the_jobs_order_and_refuse_a_server_gone() -> None:
    vault = Vault()
    vault.put("gh_token", "ghp-resolved-9876")
    github = parse_mcp_server(GITHUB, now=NOW)
    other = parse_mcp_server({"name": "other", "command": ["other-server"]}, now=NOW)
    files = workspace_files(("other", "github"), [github, other], vault.resolve)
    assert list(files) == [".mcp.json"]
    document = json.loads(files[".mcp.json"])
    assert list(document["mcpServers"]) == ["other", "github"]
    assert document["mcpServers"]["github"]["env"]["GITHUB_TOKEN"] == "ghp-resolved-9876"
    with pytest.raises(McpServerGone, match="MCP server 'gone' is no longer registered"):
        workspace_files(("github", "gone"), [github], vault.resolve)


def test_a_secret_deleted_since_fails_the_document() -> None:
    github = parse_mcp_server(GITHUB, now=NOW)
    with pytest.raises(UnknownSecret, match="gh_token"):
        workspace_files(("github",), [github], Vault().resolve)


def test_references_name_each_server_and_variable() -> None:
    github = parse_mcp_server(GITHUB, now=NOW)
    twin = parse_mcp_server(
        {"name": "twin", "command": ["x"], "env": {"A": "${secret:gh_token}", "B": "plain"}},
        now=NOW,
    )
    remote = parse_mcp_server(
        {"name": "remote", "url": "https://h/", "headers": {"X-Key": "${secret:gh_token}"}},
        now=NOW,
    )
    assert mcp_references([github, twin, remote], "gh_token") == [
        "mcp-servers[github].env.GITHUB_TOKEN",
        "mcp-servers[twin].env.A",
        "mcp-servers[remote].headers.X-Key",
    ]
    assert mcp_references([github, twin], "other") == []


def test_a_triggers_server_names() -> None:
    assert parse_server_names(["github", "remote"]) == ("github", "remote")
    assert parse_server_names([]) == ()
    refusals = {
        "github": "mcp_servers must be a list of MCP server names, not a string",
        json.dumps(["a", "a"]): "mcp_servers[1]: 'a' is named twice",
        json.dumps(["a", 3]): "mcp_servers[1]: an MCP server's name must be a string",
        json.dumps(["a", "no way"]): "mcp_servers[1]: invalid MCP server name 'no way'",
        json.dumps([f"s{i}" for i in range(MAX_PER_JOB + 1)]): (
            f"mcp_servers names {MAX_PER_JOB + 1} servers; a job may have at most {MAX_PER_JOB}"
        ),
    }
    for given, message in refusals.items():
        value = given if given == "github" else json.loads(given)
        with pytest.raises(ValueError, match=f"^{re.escape(message)}"):
            parse_server_names(value)
