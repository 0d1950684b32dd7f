"""Callbacks: allow-list, URL checks, signature, verdicts, backoff, and the sender actor.

The actor runs in the whole tree on trio's autojump clock, its HTTP going to an
in-process httpx transport that plays the receiver.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from fakes import FakePlugins, finish, make_daemon, stored_job, submit

from chamberlain.callback_rules import (
    AllowList,
    CallbackPolicy,
    CallbackRules,
    Verdict,
    check_callback_url,
    delivery_body,
    judge,
    sign,
    verify,
)
from chamberlain.config import ConfigError, parse_config
from chamberlain.records import Changes, JobStatus, NewJob

DEFAULTS = AllowList.from_entries(("127.0.0.0/8", "::1", "localhost"))


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.200.0.9", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST.", True),
        ("10.0.0.1", False),
        ("::ffff:127.0.0.1", False),
        ("localhost.example.com", False),
        ("example.com", False),
        ("0x7f000001", False),
    ],
)
def test_the_default_allow_list_is_this_machine(host: str, allowed: bool) -> None:
    assert DEFAULTS.allows(host) is allowed


def test_wildcards_networks_and_names() -> None:
    allow = AllowList.from_entries(("*.hooks.example", "10.1.0.0/16", "ci.example"))
    assert allow.allows("a.hooks.example")
    assert allow.allows("b.a.hooks.example")
    assert not allow.allows("hooks.example")
    assert not allow.allows("evilhooks.example")
    assert allow.allows("10.1.255.3")
    assert not allow.allows("10.2.0.1")
    assert allow.allows("CI.example")
    assert not allow.allows("x.ci.example")


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        (42, "must be a string"),
        ("", "1 to 2048"),
        ("file:///etc/passwd", "http or https"),
        ("127.0.0.1:8000/hook", "http or https"),
        ("http:///hook", "no host"),
        ("http://127.0.0.1:99999/hook", "not a valid URL"),
        ("http://a b/hook", "spaces"),
        ("http://u:p@127.0.0.1/hook", "credentials"),
        ("https://example.com/hook", "not in callbacks.allowed_hosts"),
    ],
)
def test_bad_callback_urls_are_refused_with_the_reason(url: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        check_callback_url(url, DEFAULTS)


def test_callback_rules_refuse_everything_without_a_secret() -> None:
    with pytest.raises(ValueError, match=r"callbacks\.secret"):
        CallbackRules(allow=DEFAULTS, enabled=False).check("http://127.0.0.1/hook")
    rules = CallbackRules(allow=DEFAULTS, enabled=True)
    assert rules.check("https://localhost:8443/h?x=1") == "https://localhost:8443/h?x=1"


def test_signature_is_hex_hmac_sha256_of_the_body() -> None:
    # The RFC 4231-style well-known vector for HMAC-SHA256.
    body = b"The quick brown fox jumps over the lazy dog"
    expected = "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
    assert sign("key", body) == expected
    assert verify("key", body, expected)
    assert not verify("key", body + b" ", expected)
    assert not verify("other", body, expected)
    assert not verify("key", body, None)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (None, Verdict.RETRY),
        (200, Verdict.DELIVERED),
        (204, Verdict.DELIVERED),
        (301, Verdict.FINAL),
        (400, Verdict.FINAL),
        (404, Verdict.FINAL),
        (408, Verdict.RETRY),
        (429, Verdict.RETRY),
        (500, Verdict.RETRY),
        (503, Verdict.RETRY),
    ],
)
def test_judge(status: int | None, verdict: Verdict) -> None:
    assert judge(status) is verdict


def test_backoff_doubles_and_is_bounded() -> None:
    policy = CallbackPolicy(max_attempts=4, backoff_base=2.0, backoff_max=5.0)
    first = policy.next_attempt(1, Verdict.RETRY, now=100.0)
    second = policy.next_attempt(2, Verdict.RETRY, now=100.0)
    third = policy.next_attempt(3, Verdict.RETRY, now=100.0)
    assert first is not None and 102.0 <= first <= 102.2
    assert second is not None and 104.0 <= second <= 104.4
    assert third is not None and 105.0 <= third <= 105.5  # capped at backoff_max
    assert policy.next_attempt(4, Verdict.RETRY, now=100.0) is None  # out of attempts
    assert policy.next_attempt(1, Verdict.FINAL, now=100.0) is None
    assert policy.next_attempt(1, Verdict.DELIVERED, now=100.0) is None


def test_delivery_body_is_the_finished_job() -> None:
    job = stored_job(
        status=JobStatus.FAILED,
        max_attempts=1,
        created_at=1_700_000_000.0,
        started_at=1_700_000_001.0,
        completed_at=1_700_000_003.25,
        run_at=1_700_000_000.0,
        last_error="boom",
        result={"status": "error"},
    )
    assert json.loads(delivery_body(job)) == {
        "job_id": "j1",
        "status": "failed",
        "plugin": "echo",
        "command": "poll",
        "result": {"status": "error"},
        "last_error": "boom",
        "started_at": "2023-11-14T22:13:21.000Z",
        "completed_at": "2023-11-14T22:13:23.250Z",
        "duration_ms": 2250,
    }


def test_a_worktree_job_s_delivery_carries_its_changes_and_pull_request() -> None:
    changes = Changes(files_changed=2, insertions=5, deletions=1)
    opened = {"pr_url": "https://github.com/o/r/pull/3", "pr_number": 3}
    job = stored_job(status=JobStatus.SUCCEEDED, changes=changes, pull_request=opened)
    body = json.loads(delivery_body(job))
    assert body["changes"] == {"files_changed": 2, "insertions": 5, "deletions": 1}
    assert body["pull_request"] == opened
    # Any other job's delivery is as it always was.
    assert "changes" not in json.loads(delivery_body(stored_job(status=JobStatus.SUCCEEDED)))


def test_callback_config_errors_name_their_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(
            {
                "callbacks": {
                    "secret": 7,
                    "allowed_hosts": ["127.0.0.1", "bad host", "10.0.0.1/8"],
                    "timeout": "0s",
                }
            },
            base_dir=tmp_path,
        )
    problems = "\n".join(info.value.problems)
    assert "callbacks.secret: expected a string, got an integer" in problems
    assert "callbacks.allowed_hosts[1]: 'bad host' is not an address" in problems
    assert "callbacks.allowed_hosts[2]: '10.0.0.1/8' is not a valid" in problems
    assert "callbacks.timeout: must be longer than zero" in problems
    assert "7" not in problems.split("secret:")[1].split("\n")[0]  # never echoed


# -- the sender, in the actor tree ------------------------------------------------------


class Receiver:
    """Plays the callback receiver: answers each path from its script, then 200."""

    def __init__(self, **scripts: list[int | Exception]) -> None:
        self.scripts = scripts
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        script = self.scripts.get(request.url.path.strip("/"), [])
        answer = script.pop(0) if script else 200
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)


def daemon_with(tmp_path: Path, receiver: Receiver, **callbacks: Any) -> Any:
    config = {
        "callbacks": {"secret": "s3cret", "backoff_base": "2s", "max_attempts": 3, **callbacks}
    }
    daemon = make_daemon(tmp_path, FakePlugins(), config=config)
    daemon.callbacks.transport = httpx.MockTransport(receiver)
    return daemon


async def deliver(daemon: Any, *jobs: NewJob) -> list[Any]:
    """Run the jobs and wait until none of their deliveries is pending."""
    ids = await submit(daemon, *jobs)
    await finish(daemon, ids)
    found = []
    for job_id in ids:
        with trio.fail_after(3600):
            while True:
                info = await daemon.gateway.callbacks(job_id)
                if info.deliveries and info.deliveries[0].state.value != "pending":
                    break
                await trio.sleep(1)
        found.append(info)
    return found


async def test_a_delivery_is_retried_after_5xx_and_errors_then_delivered(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    receiver = Receiver(hook=[500, httpx.ConnectError("refused")])
    daemon = daemon_with(tmp_path, receiver, max_attempts=5)
    url = "http://127.0.0.1:9/hook"
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (info,) = await deliver(daemon, NewJob(plugin="a", command="poll", callback_url=url))
        await daemon.shutdown()
    (delivery,) = info.deliveries
    assert delivery.state.value == "delivered"
    assert delivery.attempts == 3
    assert len(receiver.requests) == 3
    ids = {r.headers["X-Chamberlain-Delivery"] for r in receiver.requests}
    assert ids == {delivery.id}
    bodies = {r.content for r in receiver.requests}
    assert bodies == {delivery.body}
    last = receiver.requests[-1]
    assert last.headers["X-Chamberlain-Event"] == "job.succeeded"
    assert verify("s3cret", last.content, last.headers["X-Signature-256"])
    assert str(last.url) == url
    value = daemon.metrics.registry.get_sample_value
    assert value("chamberlain_callback_attempts_total", {"outcome": "retry"}) == 2
    assert value("chamberlain_callback_attempts_total", {"outcome": "delivered"}) == 1


async def test_a_4xx_is_final_and_attempts_are_bounded(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    receiver = Receiver(a=[404], b=[503] * 10)
    daemon = daemon_with(tmp_path, receiver)
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        refused, exhausted = await deliver(
            daemon,
            NewJob(plugin="a", command="poll", callback_url="http://127.0.0.1/a"),
            NewJob(plugin="b", command="poll", callback_url="http://127.0.0.1/b"),
        )
        await daemon.shutdown()
    assert [(d.state.value, d.attempts, d.last_status_code) for d in refused.deliveries] == [
        ("failed", 1, 404)
    ]
    assert [(d.state.value, d.attempts, d.last_status_code) for d in exhausted.deliveries] == [
        ("failed", 3, 503)
    ]
    assert len(receiver.requests) == 4


async def test_a_host_no_longer_allowed_is_not_called(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    receiver = Receiver()
    # The trigger was accepted under an older configuration that allowed this host.
    daemon = daemon_with(tmp_path, receiver, allowed_hosts=["10.0.0.0/8"])
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (info,) = await deliver(
            daemon, NewJob(plugin="a", command="poll", callback_url="http://127.0.0.1/x")
        )
        await daemon.shutdown()
    (delivery,) = info.deliveries
    assert delivery.state.value == "failed"
    assert delivery.last_error is not None
    assert "not in callbacks.allowed_hosts" in delivery.last_error
    assert receiver.requests == []
