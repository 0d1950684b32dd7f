"""Opening a pull request (GitHub) or a merge request (GitLab) through the forge's REST API.

A job's pushed branch becomes a pull request here. The request is built and its
answer read by pure functions (:func:`create_call`, :func:`find_call`,
:func:`read_created`, :func:`read_found`), unit-tested without a network;
:func:`open_pull_request` only sends what they built, over httpx.

Opening is idempotent: when the forge answers that an open pull request already
exists for the branch (GitHub's 422, GitLab's 409), that one is looked up and
returned with ``created=False``, so a retried job gets the pull request its first
attempt opened instead of a failure.

The title and the body travel as JSON values, never through a shell or into a
command line. The token travels in a header only, and every :class:`ForgeError`
is scrubbed of it (:func:`~chamberlain.repositories._rules.scrub`), also when the
forge echoes it back.

httpx is imported when a request is first sent, not with this module: the daemon
that opens no pull request does not pay for it.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._rules import check_branch, scrub

if TYPE_CHECKING:
    import httpx

__all__ = [
    "ForgeCall",
    "ForgeError",
    "OpenedPullRequest",
    "create_call",
    "find_call",
    "open_pull_request",
    "read_created",
    "read_found",
]

#: How much of the forge's own message a ForgeError keeps.
MESSAGE_LIMIT: Final = 500
#: GitLab's documented way of opening a merge request as a draft: a title prefix.
DRAFT_PREFIX: Final = "Draft: "
_NAMES: Final = {"github": "GitHub", "gitlab": "GitLab"}
_GITHUB_EXISTS: Final = "A pull request already exists"
# GitLab's 409 says "Another open merge request already exists for this source
# branch" (older versions: "This merge request already exists").
_GITLAB_EXISTS: Final = "already exists"
_USER_AGENT: Final = "chamberlain"
#: How much of an answer that is not JSON is read for its message.
_TEXT_LIMIT: Final = 64 * 1024


class ForgeError(Exception):
    """The forge refused, failed, gave an answer that cannot be read, or was not reached.

    ``status`` is the HTTP status of its answer (None when there was none: the
    connection failed or timed out). ``message`` names the forge, the status and
    what the forge said, truncated, and holds no token.
    """

    def __init__(self, status: int | None, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(status, message)

    def __str__(self) -> str:
        return self.message


@attrs.frozen(kw_only=True)
class ForgeCall:
    """One HTTP request to a forge's API, as httpx is given it.

    ``json`` is the body (None for a GET), ``params`` the query.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    json: Mapping[str, Any] | None = None
    params: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class OpenedPullRequest:
    """A pull request (or merge request): its page, its number, and whether we opened it.

    ``number`` is GitHub's pull request number or GitLab's merge request ``iid``
    (the ``!n`` of the project). ``created`` is False when it was open already.
    """

    url: str
    number: int
    created: bool


def _name(forge: str) -> str:
    name = _NAMES.get(forge)
    if name is None:
        raise ValueError(
            f"forge {forge!r} has no pull requests: only github and gitlab have an API for them"
        )
    return name


def _segments(forge: str, forge_repo: str) -> list[str]:
    segments = forge_repo.strip("/").split("/")
    if any(not s or s in (".", "..") for s in segments) or len(segments) < 2:
        raise ValueError(f"{forge_repo!r} is not a repository of a forge (owner/name)")
    if forge == "github" and len(segments) != 2:
        raise ValueError(f"{forge_repo!r}: a GitHub repository is owner/name")
    return segments


def _base(forge: str, api_url: str, forge_repo: str) -> str:
    """The URL of the repository's pull requests (GitHub) or merge requests (GitLab)."""
    segments = _segments(forge, forge_repo)
    root = api_url.rstrip("/")
    if forge == "github":
        owner, name = (urllib.parse.quote(s, safe="") for s in segments)
        return f"{root}/repos/{owner}/{name}/pulls"
    # GitLab names a project by its id or by its whole path, URL-encoded into one
    # segment (``group%2Fsub%2Fname``).
    project = urllib.parse.quote("/".join(segments), safe="")
    return f"{root}/projects/{project}/merge_requests"


def _headers(forge: str, token: str | None) -> dict[str, str]:
    if forge == "github":
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": _USER_AGENT,
        }
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return headers
    headers = {"Accept": "application/json", "User-Agent": _USER_AGENT}
    if token:
        headers["PRIVATE-TOKEN"] = token
    return headers


def _draft_title(title: str) -> str:
    # GitLab takes any of these prefixes, in any case, as the mark of a draft.
    marked = title.lstrip().lower()
    if marked.startswith(("draft:", "[draft]", "(draft)")):
        return title
    return DRAFT_PREFIX + title


def create_call(
    *,
    forge: str,
    api_url: str,
    forge_repo: str,
    token: str | None,
    head: str,
    base: str,
    title: str,
    body: str,
    draft: bool,
) -> ForgeCall:
    """The request that opens a pull request from branch ``head`` into ``base``.

    ``forge_repo`` is ``owner/name`` (GitLab: ``group/subgroup/name`` too) and
    ``api_url`` the API's root, with or without a trailing ``/``. ValueError for a
    forge without pull requests (``none``), a malformed ``forge_repo`` or a branch
    name git would refuse.
    """
    _name(forge)
    check_branch(head)
    check_branch(base)
    url = _base(forge, api_url, forge_repo)
    payload: dict[str, Any]
    if forge == "github":
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
    else:
        payload = {
            "source_branch": head,
            "target_branch": base,
            "title": _draft_title(title) if draft else title,
            "description": body,
        }
    return ForgeCall(method="POST", url=url, headers=_headers(forge, token), json=payload)


def find_call(
    *,
    forge: str,
    api_url: str,
    forge_repo: str,
    token: str | None,
    head: str,
    base: str,
) -> ForgeCall:
    """The request that lists the open pull requests from ``head`` into ``base``.

    GitHub filters its head by ``owner:branch``, the owner being the first segment
    of ``forge_repo`` (the branch was pushed to the repository itself, not to a
    fork). ValueError as for :func:`create_call`.
    """
    _name(forge)
    check_branch(head)
    check_branch(base)
    url = _base(forge, api_url, forge_repo)
    if forge == "github":
        owner = _segments(forge, forge_repo)[0]
        params = {"head": f"{owner}:{head}", "base": base, "state": "open"}
    else:
        params = {"source_branch": head, "target_branch": base, "state": "opened"}
    return ForgeCall(method="GET", url=url, headers=_headers(forge, token), params=params)


def _decode(content: bytes) -> Any:
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return None


def _flatten(value: Any) -> str:
    """GitLab's ``message``, a string, a list or a field -> messages mapping, as one text."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "; ".join(t for t in (_flatten(v) for v in value) if t)
    if isinstance(value, Mapping):
        return "; ".join(f"{k} {_flatten(v)}" for k, v in value.items())
    return "" if value is None else json.dumps(value)


def _github_errors(errors: Any) -> list[str]:
    said = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, str):
            said.append(error)
        elif isinstance(error, Mapping):
            if isinstance(error.get("message"), str):
                said.append(error["message"])
            else:
                # {"resource": "PullRequest", "field": "base", "code": "invalid"}
                where = ".".join(
                    str(error[k]) for k in ("resource", "field") if error.get(k) is not None
                )
                said.append(" ".join(t for t in (where, str(error.get("code") or "")) if t))
    return [t for t in said if t]


def _said(forge: str, content: bytes) -> str:
    """What the forge said in its answer: its JSON message, else the start of its text."""
    answer = _decode(content)
    if not isinstance(answer, Mapping):
        # Far more than is kept, so that a token echoed across the cut is still
        # whole when it is scrubbed, and far out of what the message keeps.
        return content[:_TEXT_LIMIT].decode("utf-8", errors="replace").strip()
    if forge == "github":
        parts = [answer["message"]] if isinstance(answer.get("message"), str) else []
        parts += _github_errors(answer.get("errors"))
        return ": ".join(parts)
    return "; ".join(t for t in (_flatten(answer.get(k)) for k in ("message", "error")) if t)


def _error(
    forge: str, status: int | None, said: str, token: str | None, *, context: str = ""
) -> ForgeError:
    secrets = [token] if token else []
    # Scrubbed before it is cut, so that no cut leaves a piece of the token behind.
    said = " ".join(scrub(said, secrets).split())
    if len(said) > MESSAGE_LIMIT:
        said = said[: MESSAGE_LIMIT - 1] + "…"
    head = f"{_name(forge)} answered {status}" if status is not None else _name(forge)
    text = head + (f" {context}" if context else "") + (f": {said}" if said else "")
    return ForgeError(status, scrub(text, secrets))


def _pull_request(forge: str, item: Any, *, created: bool) -> OpenedPullRequest | None:
    url_key, number_key = ("html_url", "number") if forge == "github" else ("web_url", "iid")
    if not isinstance(item, Mapping):
        return None
    url, number = item.get(url_key), item.get(number_key)
    if (
        not isinstance(url, str)
        or not url
        or not isinstance(number, int)
        or isinstance(number, bool)
    ):
        return None
    return OpenedPullRequest(url=url, number=number, created=created)


def _exists(forge: str, status: int, content: bytes) -> bool:
    answer = _decode(content)
    if not isinstance(answer, Mapping):
        return False
    if forge == "github":
        return status == 422 and any(
            _GITHUB_EXISTS in said for said in _github_errors(answer.get("errors"))
        )
    return status == 409 and _GITLAB_EXISTS in _flatten(answer.get("message")).lower()


def read_created(
    *, forge: str, status: int, content: bytes, token: str | None
) -> OpenedPullRequest | None:
    """The pull request the create call opened; None when one was open already.

    ``status`` and ``content`` are the forge's answer to :func:`create_call`'s
    request. Any other answer, or one that lacks the pull request's page or number,
    raises ForgeError.
    """
    if 200 <= status < 300:
        found = _pull_request(forge, _decode(content), created=True)
        if found is None:
            raise _error(
                forge, status, _said(forge, content), token, context="without a pull request"
            )
        return found
    if _exists(forge, status, content):
        return None
    raise _error(forge, status, _said(forge, content), token)


def read_found(*, forge: str, status: int, content: bytes, token: str | None) -> OpenedPullRequest:
    """The open pull request listed first in the answer to :func:`find_call`'s request.

    ForgeError when the answer is not a list of pull requests, or an empty one (the
    forge said one existed, but it was closed or merged meanwhile).
    """
    if not 200 <= status < 300:
        raise _error(forge, status, _said(forge, content), token)
    answer = _decode(content)
    if not isinstance(answer, list):
        raise _error(forge, status, _said(forge, content), token, context="without a list")
    if not answer:
        raise _error(
            forge,
            status,
            "",
            token,
            context="that a pull request already exists, but lists no open one",
        )
    found = _pull_request(forge, answer[0], created=False)
    if found is None:
        raise _error(forge, status, _said(forge, content), token, context="without a pull request")
    return found


async def _send(client: httpx.AsyncClient, call: ForgeCall) -> tuple[int, bytes]:
    answer = await client.request(
        call.method,
        call.url,
        headers=dict(call.headers),
        json=call.json,
        params=dict(call.params),
    )
    return answer.status_code, answer.content


async def open_pull_request(
    *,
    forge: str,
    api_url: str,
    forge_repo: str,
    token: str | None,
    head: str,
    base: str,
    title: str,
    body: str,
    draft: bool,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - httpx's timeout of each step, not a deadline
) -> OpenedPullRequest:
    """Open a pull request from ``head`` into ``base``, or find the one already open.

    The arguments are :func:`create_call`'s (ValueError as there, before anything
    is sent); ``transport`` lets tests route the requests elsewhere. ForgeError for
    every failure: the forge's refusal, an answer that cannot be read, a connection
    that failed or timed out.
    """
    import httpx

    create = create_call(
        forge=forge,
        api_url=api_url,
        forge_repo=forge_repo,
        token=token,
        head=head,
        base=base,
        title=title,
        body=body,
        draft=draft,
    )
    find = find_call(
        forge=forge, api_url=api_url, forge_repo=forge_repo, token=token, head=head, base=base
    )
    try:
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, transport=transport
        ) as client:
            status, content = await _send(client, create)
            opened = read_created(forge=forge, status=status, content=content, token=token)
            if opened is not None:
                return opened
            status, content = await _send(client, find)
            return read_found(forge=forge, status=status, content=content, token=token)
    except httpx.HTTPError as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise _error(
            forge, None, reason, token, context=f"not reached at {api_url.rstrip('/')}"
        ) from None
