"""The pure rules of repositories: remote URLs, forges, branch names, scrubbing.

No I/O here: what a remote URL means (and whether it may be stored at all), which
forge serves it, whether a branch name is safe to hand to git, and how a text that
git printed is cleaned of secrets before anyone sees it.

Credentials never live in a URL: a repository's token is passed to git through its
askpass helper (:mod:`chamberlain.repositories._git`), so a URL that embeds one is
refused outright rather than cleaned, and what is stored, shown and written into a
mirror's ``.git/config`` is always the bare URL.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from typing import Final, Literal

import attrs

__all__ = [
    "REDACTED",
    "Forge",
    "Remote",
    "check_branch",
    "default_api_url",
    "derive_forge",
    "display_url",
    "parse_remote",
    "scrub",
]

#: What a secret is replaced by in a scrubbed text.
REDACTED: Final = "[redacted]"

Forge = Literal["github", "gitlab", "none"]
Scheme = Literal["https", "http", "ssh", "file"]

_FORGES: Final[dict[str, Forge]] = {"github.com": "github", "gitlab.com": "gitlab"}
_API_URLS: Final[dict[str, str]] = {
    "github": "https://api.github.com",
    "gitlab": "https://gitlab.com/api/v4",
}
_CREDENTIALS: Final = "credentials belong in the repository's token, never in its URL"

# scp-like ssh syntax: [user@]host:path, where the host has no slash before the colon
# (git's own rule for telling it from a local path).
_SCP: Final = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^@/:\[\]]+|\[[^\]/]+\]):(?P<path>.+)$")
# A URL's user-info, wherever it appears in a text (scrub).
_URL_USERINFO: Final = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s@]+@")


@attrs.frozen(kw_only=True)
class Remote:
    """A parsed remote URL.

    ``url`` is the URL as given (it holds no credentials: `parse_remote` refuses
    those). ``host`` is the host name, lower-cased, without port or user ("" for a
    local repository). ``path`` is the repository's path as written in the URL
    (``/owner/name.git`` for https and ssh://, ``owner/name.git`` for scp-like ssh,
    the file system path for a local one). ``forge_repo`` is the path without
    slashes around it and without ``.git`` (``owner/name``; GitLab's subgroups give
    ``group/subgroup/name``) when it has at least two segments on a remote host,
    else None. ``scheme`` is ``https``, ``http``, ``ssh`` (also for scp-like
    ``git@host:owner/name``) or ``file`` (also for an absolute local path).
    """

    url: str
    host: str
    path: str
    forge_repo: str | None
    scheme: Scheme


def _forge_repo(path: str) -> str | None:
    trimmed = path.strip("/")
    if trimmed.endswith(".git"):
        trimmed = trimmed[: -len(".git")]
    segments = trimmed.split("/")
    if len(segments) < 2 or any(not s or s in (".", "..") for s in segments):
        return None
    return "/".join(segments)


def parse_remote(url: str) -> Remote:
    """``url`` as a `Remote`; ValueError saying why when git must not be given it.

    Accepted: ``https://`` and ``http://`` URLs, ``ssh://`` URLs, scp-like
    ``user@host:path``, ``file://`` URLs and absolute local paths. Refused: a URL
    with credentials in it (any user-info in an http(s) URL, since a token alone is
    accepted as a user name there; a password in any URL), anything that git would
    read as an option (a leading ``-``), white space and control characters, and
    every other transport (``ext::`` runs commands).
    """
    if not url:
        raise ValueError("a repository URL may not be empty")
    if url != url.strip() or any(ord(c) < 0x20 or ord(c) == 0x7F or c.isspace() for c in url):
        raise ValueError(f"{display_url(url)!r}: a repository URL may not hold white space")
    if url.startswith("-"):
        raise ValueError(f"{display_url(url)!r}: a repository URL may not start with '-'")
    if url.startswith("/"):
        return Remote(url=url, host="", path=url, forge_repo=None, scheme="file")
    if "://" in url:
        return _parse_url(url)
    head = url.partition("/")[0]
    if "@" in head and ":" in head.rpartition("@")[0]:
        # user:password@host:path (the password may hold '@' too)
        raise ValueError(f"{display_url(url)!r}: {_CREDENTIALS}")
    scp = _SCP.match(url)
    if scp is None or "::" in url:
        raise ValueError(
            f"{display_url(url)!r} is not a repository URL (https://, ssh://, "
            "user@host:path, file:// or an absolute path)"
        )
    path = scp["path"]
    if path.startswith("-"):
        raise ValueError(f"{display_url(url)!r}: a repository path may not start with '-'")
    return Remote(
        url=url,
        host=scp["host"].strip("[]").lower(),
        path=path,
        forge_repo=_forge_repo(path),
        scheme="ssh",
    )


def _parse_url(url: str) -> Remote:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http", "ssh", "file"):
        raise ValueError(
            f"{display_url(url)!r}: the scheme {parts.scheme!r} is not one of https, http, "
            "ssh, file"
        )
    if parts.password is not None or (scheme in ("https", "http") and parts.username is not None):
        raise ValueError(f"{display_url(url)!r}: {_CREDENTIALS}")
    if parts.query or parts.fragment:
        raise ValueError(f"{display_url(url)!r}: a repository URL has no query or fragment")
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"{url!r}: a file:// URL names an absolute local path")
        return Remote(url=url, host="", path=parts.path, forge_repo=None, scheme="file")
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"{display_url(url)!r}: a repository URL names a host")
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        raise ValueError(
            f"{display_url(url)!r}: its port is not a number from 0 to 65535"
        ) from None
    return Remote(
        url=url,
        host=host.lower(),
        path=parts.path,
        forge_repo=_forge_repo(parts.path),
        scheme="https" if scheme == "https" else "http" if scheme == "http" else "ssh",
    )


def display_url(url: str) -> str:
    """``url`` with any user-info removed, for showing (``git@host:x`` gives ``host:x``)."""
    if "://" in url:
        scheme, _, rest = url.partition("://")
        authority, slash, path = rest.partition("/")
        if "@" in authority:
            authority = authority.rpartition("@")[2]
        return f"{scheme}://{authority}{slash}{path}"
    if not url.startswith("/"):
        # scp-like: [user[:password]@]host:path, the user-info ending at the last '@'
        # before the path's first '/'
        head, slash, rest = url.partition("/")
        if "@" in head:
            return head.rpartition("@")[2] + slash + rest
    return url


def derive_forge(remote: Remote) -> Forge:
    """The forge that serves ``remote``: ``github``, ``gitlab``, or ``none`` (any other host)."""
    return _FORGES.get(remote.host, "none")


def default_api_url(forge: str) -> str | None:
    """The API root of ``forge``'s public service; None for ``none`` (or any other name)."""
    return _API_URLS.get(forge)


def check_branch(name: str) -> str:
    """``name`` if git accepts it as a branch name, else ValueError saying why.

    The rules of ``git check-ref-format --branch``, in Python: no ``..``, ``@{``,
    ``//``, white space, control characters or any of ``~^:?*[\\``; not empty, ``@``
    or ``HEAD``; no leading ``-`` or ``/``; no trailing ``/`` or ``.``; no component
    starting with ``.`` or ending with ``.lock``.
    """

    def refuse(why: str) -> ValueError:
        return ValueError(f"{name!r} is not a valid branch name: {why}")

    if not name:
        raise refuse("it is empty")
    if name in ("@", "HEAD"):
        raise refuse(f"{name!r} is reserved")
    if name.startswith("-"):
        raise refuse("it starts with '-'")
    for character in name:
        if ord(character) < 0x20 or ord(character) == 0x7F:
            raise refuse("it holds a control character")
        if character == " " or character.isspace():
            raise refuse("it holds white space")
        if character in "~^:?*[\\":
            raise refuse(f"it holds {character!r}")
    for sequence in ("..", "@{", "//"):
        if sequence in name:
            raise refuse(f"it holds {sequence!r}")
    if name.startswith("/") or name.endswith("/"):
        raise refuse("it starts or ends with '/'")
    if name.endswith("."):
        raise refuse("it ends with '.'")
    for component in name.split("/"):
        if component.startswith("."):
            raise refuse(f"its component {component!r} starts with '.'")
        if component.endswith(".lock"):
            raise refuse(f"its component {component!r} ends with '.lock'")
    return name


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret, and its URL-encoded forms, replaced by ``[redacted]``.

    The user-info of every URL in it (``https://user:pass@host``) is replaced too.
    Empty secrets are ignored; longer ones are replaced first, so a secret that
    holds another is hidden whole.
    """
    forms: set[str] = set()
    for secret in secrets:
        if secret:
            forms.update(
                {
                    secret,
                    urllib.parse.quote(secret, safe=""),
                    urllib.parse.quote_plus(secret, safe=""),
                }
            )
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, REDACTED)
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{REDACTED}@", text)
