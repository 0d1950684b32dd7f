"""The command-line client: commands that talk HTTP to a running daemon.

``chamberlain trigger``, ``job``, ``jobs``, ``logs``, ``cancel``, ``retry``,
``message``, ``complete``, ``plugins``, ``schedules``, ``pipeline``, ``runs``,
``run-action``, ``run-events``, ``approve``, ``reject``, ``queue``, ``health`` and
``completion`` (docs/CLI.md).
They know the daemon only through its HTTP API, as any other client does: where
to find it (:mod:`._connection`), how to ask (:mod:`._api`), and what each exit
code says (:mod:`._exits`).
"""

from ._api import ApiClient, ClientError
from ._connection import DEFAULT_URL, Connection, ConnectionError, profile_path, resolve
from ._exits import ExitCode, exit_for_status
from ._parser import CLIENT_COMMANDS, add_client_commands

__all__ = [
    "CLIENT_COMMANDS",
    "DEFAULT_URL",
    "ApiClient",
    "ClientError",
    "Connection",
    "ConnectionError",
    "ExitCode",
    "add_client_commands",
    "exit_for_status",
    "profile_path",
    "resolve",
]
