"""Registry secrets in the actor tree, on trio's autojump clock with fake plugins: the
Runner resolves them for each job, a deleted one fails the job it cannot start, and
the callback sender signs with the value of the moment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from fakes import FakePlugins, finish, make_daemon, submit

from chamberlain.callback_rules import verify
from chamberlain.daemon.tree import Daemon
from chamberlain.records import JobStatus, NewJob

CONFIG: dict[str, Any] = {
    "plugins": {
        "a": {
            "config": {"token": "${secret:tok}", "plain": "kept"},
            "env": {"TOKEN": "${secret:tok}", "GREETING": "hello"},
        }
    }
}


@attrs.define
class RecordingPlugins(FakePlugins):
    """Fake plugins that also keep the environment each job was started with."""

    envs: list[dict[str, str]] = attrs.field(factory=list)

    async def execute(self, **kwargs: Any) -> Any:
        self.envs.append(kwargs["env"])
        return await super().execute(**kwargs)


async def run_one(daemon: Daemon, payload: dict[str, Any] | None = None) -> Any:
    (job_id,) = await submit(daemon, NewJob(plugin="a", command="poll", payload=payload or {}))
    (job,) = await finish(daemon, [job_id])
    return job


async def test_each_job_gets_the_value_of_the_moment_it_starts(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = RecordingPlugins()
    daemon = make_daemon(tmp_path, fake, config=CONFIG)
    daemon.vault.load({"tok": "value-one-111"})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        await run_one(daemon)
        daemon.vault.put("tok", "value-two-222")
        await run_one(daemon)
        await daemon.shutdown()
    assert [r["config"] for r in fake.requests] == [
        {"token": "value-one-111", "plain": "kept"},
        {"token": "value-two-222", "plain": "kept"},
    ]
    assert [(e["TOKEN"], e["GREETING"]) for e in fake.envs] == [
        ("value-one-111", "hello"),
        ("value-two-222", "hello"),
    ]
    # Nothing resolved leaks back into the configuration.
    assert daemon.plugins["a"].settings.config["token"] == "${secret:tok}"


async def test_a_job_whose_secret_was_deleted_fails_without_starting(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    fake = RecordingPlugins()
    daemon = make_daemon(tmp_path, fake, config=CONFIG)
    daemon.vault.load({"tok": "value-one-111"})
    daemon.vault.remove("tok")
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        job = await run_one(daemon)
        await daemon.shutdown()
    assert fake.requests == []
    # Not retried: the secret would not come back by asking again.
    assert (job.status, job.attempt) == (JobStatus.FAILED, 1)
    assert job.last_error == (
        "the job was not started: secret 'tok' is not in the registry"
        " (referenced by plugins.a.config.token, plugins.a.env.TOKEN)"
    )


async def test_a_value_rotated_while_a_job_runs_is_still_redacted(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    daemon = make_daemon(tmp_path, FakePlugins(), config=CONFIG)
    daemon.vault.load({"tok": "value-one-111"})
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (job_id,) = await submit(
            daemon,
            NewJob(
                plugin="a",
                command="poll",
                # The job holds the value it was started with, and prints it late.
                payload={"sleep": 10, "result": {"token": "value-one-111"}},
            ),
        )
        await trio.sleep(1)
        daemon.vault.put("tok", "value-two-222")
        (job,) = await finish(daemon, [job_id])
        await daemon.shutdown()
    assert job.result["result"] == {"token": "[redacted:tok]"}


@attrs.define
class Receiver:
    requests: list[httpx.Request] = attrs.field(factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200)


def callback_daemon(tmp_path: Path, receiver: Receiver) -> Daemon:
    config = {
        "callbacks": {"secret": "${secret:cb}", "backoff_base": "2s", "max_attempts": 3},
    }
    daemon = make_daemon(tmp_path, FakePlugins(), config=config)
    daemon.callbacks.transport = httpx.MockTransport(receiver)
    return daemon


async def settled_delivery(daemon: Daemon, job_id: str) -> Any:
    with trio.fail_after(3600):
        while True:
            info = await daemon.gateway.callbacks(job_id)
            if info.deliveries and info.deliveries[0].state.value != "pending":
                return info.deliveries[0]
            await trio.sleep(1)


async def test_callbacks_are_signed_with_the_registry_value(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    receiver = Receiver()
    daemon = callback_daemon(tmp_path, receiver)
    daemon.vault.load({"cb": "callback-one-1"})
    url = "http://127.0.0.1:9/hook"
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (first,) = await submit(daemon, NewJob(plugin="a", command="poll", callback_url=url))
        await settled_delivery(daemon, first)
        daemon.vault.put("cb", "callback-two-2")
        (second,) = await submit(daemon, NewJob(plugin="a", command="poll", callback_url=url))
        await settled_delivery(daemon, second)
        await daemon.shutdown()
    one, two = receiver.requests
    assert verify("callback-one-1", one.content, one.headers["X-Signature-256"])
    assert verify("callback-two-2", two.content, two.headers["X-Signature-256"])


async def test_a_callback_whose_secret_is_gone_is_not_sent(
    tmp_path: Path, autojump_clock: trio.abc.Clock
) -> None:
    receiver = Receiver()
    daemon = callback_daemon(tmp_path, receiver)
    url = "http://127.0.0.1:9/hook"
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        (job_id,) = await submit(daemon, NewJob(plugin="a", command="poll", callback_url=url))
        delivery = await settled_delivery(daemon, job_id)
        await daemon.shutdown()
    assert receiver.requests == []
    # Tried again in case it is registered again, within callbacks.max_attempts.
    assert (delivery.state.value, delivery.attempts) == ("failed", 3)
    assert delivery.last_error == (
        "callbacks.secret: secret 'cb' is not in the registry (referenced by"
        " callbacks.secret); nothing was sent"
    )
