"""Shell completion (bash and zsh) of the command line, through ``argcomplete``.

Subcommands and options complete from the parser itself; plugin names, a plugin's
command names, and recent job and run ids come from the daemon the command would
talk to (its ``--url``, ``--token``, ``--profile`` and ``--config`` as typed so far,
or the environment).  A daemon that cannot be reached completes nothing: a tab
never prints an error into the command line being edited.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from argcomplete.shell_integration import shellcode

from ._api import ApiClient, ClientError
from ._connection import ConnectionError, resolve

__all__ = ["SHELLS", "commands_of", "job_ids", "plugin_names", "run_ids", "shell_code"]

SHELLS = ("bash", "zsh")

#: Seconds a completion may wait for the daemon: a tab must not hang the shell.
_TIMEOUT = 2.0

Completer = Callable[..., list[str]]


def _asking(parsed_args: argparse.Namespace, ask: Callable[[ApiClient], list[str]]) -> list[str]:
    try:
        connection = resolve(
            url=getattr(parsed_args, "url", None),
            token=getattr(parsed_args, "token", None),
            profile=getattr(parsed_args, "profile", None),
            config=getattr(parsed_args, "config", None),
        )
        with ApiClient(connection, timeout=_TIMEOUT) as api:
            return ask(api)
    except (ClientError, ConnectionError, OSError, ValueError, KeyError, TypeError):
        return []


def plugin_names(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The daemon's plugins whose names start with ``prefix``."""

    def ask(api: ApiClient) -> list[str]:
        plugins = api.call("GET", "/plugins")["plugins"]
        return [str(p["name"]) for p in plugins if str(p["name"]).startswith(prefix)]

    return _asking(parsed_args, ask)


def commands_of(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The commands of the plugin typed before, starting with ``prefix``."""
    plugin = getattr(parsed_args, "plugin", None)
    if not plugin:
        return []

    def ask(api: ApiClient) -> list[str]:
        commands = api.call("GET", f"/plugin/{plugin}")["commands"]
        return [str(c["name"]) for c in commands if str(c["name"]).startswith(prefix)]

    return _asking(parsed_args, ask)


def job_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The ids of the 50 newest jobs that start with ``prefix``."""

    def ask(api: ApiClient) -> list[str]:
        jobs = api.call("GET", "/jobs", params={"limit": 50})["jobs"]
        return [str(j["job_id"]) for j in jobs if str(j["job_id"]).startswith(prefix)]

    return _asking(parsed_args, ask)


def run_ids(prefix: str, parsed_args: argparse.Namespace, **_: Any) -> list[str]:
    """The ids of the 50 newest runs that start with ``prefix``."""

    def ask(api: ApiClient) -> list[str]:
        runs = api.call("GET", "/runs", params={"limit": 50})["runs"]
        return [str(r["run_id"]) for r in runs if str(r["run_id"]).startswith(prefix)]

    return _asking(parsed_args, ask)


def shell_code(shell: str) -> str:
    """What to ``eval`` (or source) in ``shell`` to complete ``chamberlain``."""
    return str(shellcode(["chamberlain"], shell=shell))
