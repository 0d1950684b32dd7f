"""Job callbacks: the rules, without the I/O.

A trigger may name a ``callback_url``; when the job ends, chamberlain POSTs a
summary of it there.  Everything decided about that lives here as plain
functions, so each rule has a unit test: which URLs are allowed
(:class:`AllowList`), what is sent (:func:`delivery_body`), how it is signed
(:func:`sign`), and what an attempt's answer means (:func:`judge`).  The actor in
:mod:`chamberlain.actors.callback_sender` does the sending.

Only ``http``/``https`` URLs whose host is on ``callbacks.allowed_hosts`` are
accepted.  Host names are compared as written and never resolved: an allow-list
that resolved names would be only as trustworthy as DNS, and a name that points
somewhere new tomorrow must not widen what is allowed today.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import ipaddress
import json
import re
import urllib.parse
from collections.abc import Iterable
from typing import Any

import attrs

from chamberlain.records import Job, rfc3339
from chamberlain.retry import RetryPolicy

#: The hosts a callback may go to unless configured otherwise: this machine only.
DEFAULT_ALLOWED_HOSTS = ("127.0.0.0/8", "::1", "localhost")

EVENT_HEADER = "X-Chamberlain-Event"
DELIVERY_HEADER = "X-Chamberlain-Delivery"
SIGNATURE_HEADER = "X-Signature-256"

MAX_URL_LENGTH = 2048

_HOST_NAME = re.compile(
    r"(?:\*\.)?(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_host_rule(text: str) -> Network | str:
    """One ``callbacks.allowed_hosts`` entry: an address, a network, or a host name.

    ``127.0.0.1`` and ``::1`` allow one address, ``10.0.0.0/8`` a network,
    ``hooks.example.com`` one name and ``*.example.com`` every name below it.
    Raises ValueError naming what is wrong.
    """
    entry = text.strip()
    if not entry:
        raise ValueError("must not be empty")
    try:
        return ipaddress.ip_network(entry, strict=True)
    except ValueError as exc:
        if "/" in entry or ":" in entry or entry.replace(".", "").isdigit():
            raise ValueError(f"{entry!r} is not a valid address or network: {exc}") from None
    if not _HOST_NAME.fullmatch(entry):
        raise ValueError(
            f"{entry!r} is not an address, a network (10.0.0.0/8), a host name"
            " (hooks.example.com) or a wildcard (*.example.com)"
        )
    return entry.lower()


@attrs.frozen
class AllowList:
    """The hosts callbacks may be sent to."""

    networks: tuple[Network, ...] = ()
    names: frozenset[str] = frozenset()
    #: Suffixes from ``*.example.com`` entries, kept as ``.example.com``.
    suffixes: tuple[str, ...] = ()

    @classmethod
    def from_entries(cls, entries: Iterable[str]) -> AllowList:
        """Parse ``callbacks.allowed_hosts``; raises ValueError for a bad entry."""
        networks: list[Network] = []
        names: set[str] = set()
        suffixes: list[str] = []
        for entry in entries:
            rule = parse_host_rule(entry)
            if not isinstance(rule, str):
                networks.append(rule)
            elif rule.startswith("*."):
                suffixes.append(rule[1:])
            else:
                names.add(rule)
        return cls(tuple(networks), frozenset(names), tuple(suffixes))

    def allows(self, host: str) -> bool:
        """True when a URL whose host is ``host`` may be called."""
        bare = host.strip("[]").lower()
        try:
            address = ipaddress.ip_address(bare)
        except ValueError:
            name = bare.rstrip(".")
            return name in self.names or any(name.endswith(s) for s in self.suffixes)
        return any(address in network for network in self.networks)


def check_callback_url(url: object, allow: AllowList) -> str:
    """The URL if a callback may be sent to it; ValueError saying why not otherwise."""
    if not isinstance(url, str):
        raise ValueError("callback_url must be a string")
    if not url or len(url) > MAX_URL_LENGTH:
        raise ValueError(f"callback_url must be 1 to {MAX_URL_LENGTH} characters long")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("callback_url must not contain spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise ValueError(f"callback_url is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(
            f"callback_url must be an http or https URL, not {parts.scheme or 'schemeless'!r}"
        )
    if not host:
        raise ValueError("callback_url has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError("callback_url must not carry credentials; the signature authenticates")
    if not allow.allows(host):
        raise ValueError(f"callback_url host {host!r} is not in callbacks.allowed_hosts")
    return url


@attrs.frozen
class CallbackRules:
    """What the API checks a trigger's ``callback_url`` against."""

    allow: AllowList = attrs.field(factory=AllowList)
    #: False without ``callbacks.secret``: no callback_url is accepted then.
    enabled: bool = False

    def check(self, url: object) -> str:
        """The URL when a trigger may ask for it; ValueError saying why not otherwise."""
        if not self.enabled:
            raise ValueError(
                "callbacks are not enabled on this daemon (its configuration has no"
                " callbacks.secret to sign them with)"
            )
        return check_callback_url(url, self.allow)


def sign(secret: str, body: bytes) -> str:
    """The ``X-Signature-256`` value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(secret: str, body: bytes, signature: str | None) -> bool:
    """True when ``signature`` (the header's value) signs ``body``; constant time."""
    if signature is None:
        return False
    return hmac.compare_digest(sign(secret, body), signature)


def delivery_body(job: Job) -> bytes:
    """What a callback POSTs: the finished job, as compact JSON (with its worktree's
    ``changes`` and ``pull_request`` when it has a repository workspace)."""
    duration_ms = None
    if job.started_at is not None and job.completed_at is not None:
        duration_ms = max(0, round((job.completed_at - job.started_at) * 1000))
    body: dict[str, Any] = {
        "job_id": job.id,
        "status": job.status.value,
        "plugin": job.plugin,
        "command": job.command,
        "result": job.result,
        "last_error": job.last_error,
        "started_at": rfc3339(job.started_at),
        "completed_at": rfc3339(job.completed_at),
        "duration_ms": duration_ms,
    }
    if job.changes is not None or job.pull_request is not None:
        # A job with a repository workspace: what it changed, and its pull request.
        body["changes"] = None if job.changes is None else job.changes.to_json()
        body["pull_request"] = None if job.pull_request is None else dict(job.pull_request)
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def event_name(job: Job) -> str:
    """The ``X-Chamberlain-Event`` value: ``job.<status>``."""
    return f"job.{job.status.value}"


class CallbackState(enum.Enum):
    """Where a delivery stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    #: Refused for good (a 4xx, a redirect) or out of attempts.
    FAILED = "failed"


class Verdict(enum.Enum):
    """What one attempt's answer means."""

    DELIVERED = "delivered"
    RETRY = "retry"
    FINAL = "final"


def judge(status_code: int | None) -> Verdict:
    """Classify an attempt: ``status_code`` is None when no answer came at all.

    2xx is delivered.  No answer (connection refused, reset, timeout), 5xx, 429 and
    408 are worth another try.  Any other answer is final: a 4xx will not change
    by asking again, and redirects are not followed, because a redirect could send
    the signed body to a host the allow-list never approved.
    """
    if status_code is None:
        return Verdict.RETRY
    if 200 <= status_code < 300:
        return Verdict.DELIVERED
    if status_code >= 500 or status_code in (408, 429):
        return Verdict.RETRY
    return Verdict.FINAL


@attrs.frozen(kw_only=True)
class CallbackPolicy:
    """How hard a delivery is tried."""

    max_attempts: int = 5
    backoff_base: float = 5.0
    backoff_max: float = 300.0
    timeout: float = 10.0

    def next_attempt(self, attempts: int, verdict: Verdict, *, now: float) -> float | None:
        """When to try again after ``attempts`` tries ended in ``verdict``; None: never."""
        if verdict is not Verdict.RETRY or attempts >= self.max_attempts:
            return None
        policy = RetryPolicy(backoff_base=self.backoff_base, backoff_max=self.backoff_max)
        return now + policy.delay(attempts)


@attrs.frozen(kw_only=True)
class CallbackDelivery:
    """One callback delivery as stored."""

    id: str
    job_id: str
    url: str
    event: str
    body: bytes
    state: CallbackState
    attempts: int
    next_attempt_at: float | None
    last_status_code: int | None
    last_error: str | None
    created_at: float
    delivered_at: float | None

    def to_json(self) -> dict[str, Any]:
        """The delivery as ``GET /job/{id}?include=callbacks`` lists it."""
        return {
            "delivery_id": self.id,
            "url": self.url,
            "event": self.event,
            "state": self.state.value,
            "attempts": self.attempts,
            "next_attempt_at": rfc3339(self.next_attempt_at),
            "last_status_code": self.last_status_code,
            "last_error": self.last_error,
            "created_at": rfc3339(self.created_at),
            "delivered_at": rfc3339(self.delivered_at),
        }
