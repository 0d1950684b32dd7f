"""The Gateway's secret methods against a real JobStore: the vault follows the store.

A value reaches the vault (and so the next job and the redactor) only once the
store has committed it, and a caller that hangs up mid-write cannot leave the
vault behind what the store holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from chamberlain.actors.gateway import Gateway, Lifecycle, StorageFull
from chamberlain.actors.jobstore import JobStore
from chamberlain.actors.mail import CreateSecret, JobStoreRequest
from chamberlain.routing.planner import Routing
from chamberlain.sealing import Sealer, SecretInfo
from chamberlain.store import secret_rows
from chamberlain.vault import Vault

VALUE = "ghp_first-value-1111"
NEWER = "ghp_second-value-2222"


def gateway_for(store: trio.MemorySendChannel[JobStoreRequest], **extra: Any) -> Gateway:
    nowhere: trio.MemorySendChannel[Any] = trio.open_memory_channel[Any](0)[0]
    return Gateway(
        store=store,
        dispatcher=nowhere,
        plugins={},
        lifecycle=Lifecycle(),
        supervisor_statistics=lambda: None,  # type: ignore[arg-type,return-value]
        router=nowhere,
        routing=Routing(routes=(), pipelines=(), plugins={}),
        vault=Vault(),
        **extra,
    )


@pytest.fixture
async def gateway(tmp_path: Path, nursery: trio.Nursery) -> Gateway:
    tx, rx = trio.open_memory_channel[JobStoreRequest](64)
    store = JobStore(path=str(tmp_path / "state.db"), wake_dispatcher=lambda: None)
    await nursery.start(store.run, rx)
    return gateway_for(tx, timeout=10.0)


async def test_a_created_secret_is_in_the_vault_and_sealed_in_the_store(
    gateway: Gateway, tmp_path: Path
) -> None:
    created = await gateway.create_secret("github", VALUE, description="bot")
    assert created is not None
    assert (created.name, created.description, created.hint) == ("github", "bot", "****1111")
    assert gateway.vault.get("github") == VALUE
    assert gateway.vault.redactor.text(f"token={VALUE}") == "token=[redacted:github]"
    stored = secret_rows.read_sealed(tmp_path / "state.db")
    assert gateway.sealer.unseal("github", stored.values["github"]) == VALUE
    assert stored.check is not None
    gateway.sealer.verify(stored.check)
    assert await gateway.get_secret("github") == created
    assert await gateway.list_secrets() == (created,)


async def test_a_taken_name_leaves_the_vault_alone(gateway: Gateway) -> None:
    await gateway.create_secret("github", VALUE, description=None)
    assert await gateway.create_secret("github", NEWER, description=None) is None
    assert gateway.vault.get("github") == VALUE


async def test_a_rotation_reaches_the_vault_and_a_delete_leaves_it(gateway: Gateway) -> None:
    await gateway.create_secret("github", VALUE, description="bot")
    rotated = await gateway.rotate_secret("github", NEWER)
    assert rotated is not None and rotated.rotated_at is not None
    assert rotated.description == "bot"
    assert gateway.vault.get("github") == NEWER
    assert await gateway.rotate_secret("nope", NEWER) is None
    assert gateway.vault.get("nope") is None
    assert await gateway.delete_secret("github") is True
    assert gateway.vault.get("github") is None
    assert await gateway.delete_secret("github") is False


async def test_a_caller_that_hangs_up_mid_write_still_leaves_the_vault_in_step() -> None:
    tx, rx = trio.open_memory_channel[JobStoreRequest](8)
    gateway = gateway_for(tx)
    received, release, answered = trio.Event(), trio.Event(), trio.Event()

    async def slow_store() -> None:
        request = await rx.receive()
        assert isinstance(request, CreateSecret)
        received.set()
        # The store has the request; its caller gives up before it commits.
        await release.wait()
        info = SecretInfo(
            name=request.name, description=None, created_at=1.0, rotated_at=None, hint="****"
        )
        # What the JobStore does once it has committed: the effects, then the reply
        # (which nobody reads any more).
        then = request.effects(info).then
        assert then is not None
        then()
        request.reply.send(info)
        answered.set()

    async def hang_up(caller: trio.CancelScope) -> None:
        await received.wait()
        caller.cancel()
        release.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_store)
            with trio.CancelScope() as caller:
                nursery.start_soon(hang_up, caller)
                await gateway.create_secret("github", VALUE, description=None)
                await trio.sleep_forever()  # reached only if the write ignored the cancel
            # The caller is gone at once: nothing shields the write from its cancel.
            assert caller.cancelled_caught
    # The store went on and committed; the vault followed it, not the caller.
    assert answered.is_set()
    assert gateway.vault.get("github") == VALUE


async def test_a_write_the_disk_refuses_leaves_the_vault_alone() -> None:
    tx, rx = trio.open_memory_channel[JobStoreRequest](8)
    gateway = gateway_for(tx)

    async def full_store() -> None:
        request = await rx.receive()
        request.reply.fail(StorageFull("SQLITE_FULL: database or disk is full"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(full_store)
        with pytest.raises(StorageFull):
            await gateway.create_secret("github", VALUE, description=None)
    assert gateway.vault.get("github") is None


async def test_the_store_never_sees_a_value_in_the_clear() -> None:
    tx, rx = trio.open_memory_channel[JobStoreRequest](8)
    gateway = gateway_for(tx, sealer=Sealer.random())
    seen: list[JobStoreRequest] = []

    async def store() -> None:
        request = await rx.receive()
        seen.append(request)
        assert isinstance(request, CreateSecret)
        request.reply.send(None)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store)
        await gateway.create_secret("github", VALUE, description=None)
    (request,) = seen
    assert isinstance(request, CreateSecret)
    assert VALUE not in repr(request)
    assert VALUE.encode() not in request.sealed
    assert gateway.sealer.unseal("github", request.sealed) == VALUE
