"""Where a client command finds the daemon and its token.

In order, the first that gives one wins, separately for the URL and the token:

1. ``--url`` and ``--token``;
2. ``CHAMBERLAIN_URL`` and ``CHAMBERLAIN_TOKEN``;
3. a profile of ``client.toml`` (``$XDG_CONFIG_HOME/chamberlain``, by default
   ``~/.config/chamberlain``): ``--profile NAME``, ``CHAMBERLAIN_PROFILE``, or
   ``default``; a file that holds a token must be readable by its owner only;
4. the daemon of ``--config``: its ``api.listen`` and its ``api.auth.api_key``;
5. ``http://127.0.0.1:8080`` and no token.

The token is held here and sent as a header, never put on a command line the
client builds or in a message it prints.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path

import attrs

from chamberlain.config import ConfigError, load_config

__all__ = ["DEFAULT_URL", "Connection", "ConnectionError", "profile_path", "resolve"]

DEFAULT_URL = "http://127.0.0.1:8080"


class ConnectionError(Exception):
    """The connection settings cannot be used (a bad profile file); exit 2."""


@attrs.frozen(kw_only=True)
class Connection:
    """The daemon to talk to, and the token to show it."""

    url: str
    token: str | None = attrs.field(default=None, repr=False)
    #: Where the URL came from, and the token, for error messages (never the token).
    source: str = "default"
    token_source: str = "none"


def profile_path(environ: Mapping[str, str]) -> Path:
    """``client.toml`` under ``$XDG_CONFIG_HOME/chamberlain`` (default ``~/.config``)."""
    base = environ.get("XDG_CONFIG_HOME") or str(Path(environ.get("HOME", "~")) / ".config")
    return Path(base).expanduser() / "chamberlain" / "client.toml"


def _profile(path: Path, name: str, *, asked: bool) -> dict[str, str]:
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode
    except FileNotFoundError:
        if asked:
            raise ConnectionError(f"{path}: no such file, so no profile {name!r}") from None
        return {}
    try:
        profiles = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConnectionError(f"{path}: not TOML: {exc}") from None
    table = profiles.get(name)
    if table is None:
        if asked:
            known = ", ".join(sorted(profiles)) or "none"
            raise ConnectionError(f"{path}: no profile {name!r} (profiles: {known})")
        return {}
    if not isinstance(table, dict):
        raise ConnectionError(f"{path}: {name} must be a table of url and token")
    found: dict[str, str] = {}
    for key, value in table.items():
        if key not in ("url", "token"):
            raise ConnectionError(f"{path}: {name}.{key}: unknown key; expected url or token")
        if not isinstance(value, str) or not value:
            raise ConnectionError(f"{path}: {name}.{key} must be a non-empty string")
        found[key] = value
    if "token" in found and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConnectionError(
            f"{path} holds a token but is open to others (mode {stat.S_IMODE(mode):04o});"
            f" run: chmod 600 {path}"
        )
    return found


def _from_config(path: str) -> tuple[str, str | None]:
    try:
        config = load_config(Path(path))
    except ConfigError as exc:
        # The client's usage error, not the daemon's EX_CONFIG: nothing is started.
        raise ConnectionError(f"--config: {exc}") from None
    host = config.api.host
    # A daemon listening on every address is reached on this machine's loopback.
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.api.port}", config.api.auth.api_key or None


def resolve(
    *,
    url: str | None,
    token: str | None,
    profile: str | None,
    config: str | None,
    environ: Mapping[str, str] = os.environ,
) -> Connection:
    """The connection the options, the environment, the profile file and the daemon's
    config give, in that order (see the module's docstring)."""
    sources: list[tuple[str, str | None, str | None]] = [
        ("the command line", url, token),
        ("the environment", environ.get("CHAMBERLAIN_URL"), environ.get("CHAMBERLAIN_TOKEN")),
    ]
    name = profile or environ.get("CHAMBERLAIN_PROFILE")
    path = profile_path(environ)
    table = _profile(path, name or "default", asked=name is not None)
    sources.append((f"profile {name or 'default'}", table.get("url"), table.get("token")))
    if config is not None:
        config_url, config_token = _from_config(config)
        sources.append((f"--config {config}", config_url, config_token))
    url_source, found_url = next(
        ((where, u) for where, u, _ in sources if u), ("default", DEFAULT_URL)
    )
    token_source, found_token = next(((where, t) for where, _, t in sources if t), ("none", None))
    return Connection(
        url=found_url.rstrip("/"),
        token=found_token,
        source=url_source,
        token_source=token_source,
    )
