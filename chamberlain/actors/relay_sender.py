"""Delivering relay steps' envelopes: the ``execute`` of the ``core.relay`` Runner.

A relay step is a job of the built-in ``core.relay`` plugin
(:func:`chamberlain.relay_rules.relay_plugin`), so it is claimed, retried with
backoff, recovered after a crash and shown in its tree like any job. Its Runner is
the ordinary one; only the run differs: instead of starting a process, this posts
the job's envelope to the instance its payload names, signed at the moment of
sending (the receiver checks the timestamp against its clock), and answers the
Runner with the protocol v2 response a plugin would have printed
(:func:`chamberlain.relay_rules.delivery_verdict`). The request's duration is
bounded by the instance's ``timeout`` and by the job's.

A secret the registry no longer holds raises
:class:`~chamberlain.vault.UnknownSecret`, which the Runner records as a failure not
worth retrying, as for any plugin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import trio

from chamberlain.config import RelayInstanceConfig
from chamberlain.plugins.protocol import ProcessResult
from chamberlain.relay_rules import (
    Verdict,
    check_allowed,
    delivery_verdict,
    encode_envelope,
    endpoint_of,
    signed_headers,
    timeout_of,
)
from chamberlain.vault import Vault

if TYPE_CHECKING:
    import httpx


@attrs.define(eq=False)
class RelaySender:
    """Posts one relay job's envelope; called by the Runner as its ``execute``."""

    #: This gateway's name, sent as ``X-Ductile-Peer``.
    service: str
    instances: tuple[RelayInstanceConfig, ...]
    vault: Vault
    now: Callable[[], float] = time.time
    #: Tests may route the requests elsewhere.
    transport: httpx.AsyncBaseTransport | None = None

    async def __call__(self, *, request: bytes, timeout: float, **_: Any) -> ProcessResult:  # noqa: ASYNC109
        """Deliver the job in ``request`` (its protocol v2 request line)."""
        started = time.monotonic()
        payload = json.loads(request).get("payload")
        verdict: Verdict | None = None
        with trio.move_on_after(timeout):
            verdict = await self._deliver(payload if isinstance(payload, Mapping) else {})
        return ProcessResult.in_daemon(
            None if verdict is None else verdict.response(),
            timeout=timeout,
            duration=time.monotonic() - started,
        )

    async def _deliver(self, payload: Mapping[str, Any]) -> Verdict:
        to, envelope = payload.get("to"), payload.get("envelope")
        if not isinstance(to, str) or not isinstance(envelope, Mapping):
            return Verdict(
                ok=False, error="a core.relay job's payload names to and envelope", retry=False
            )
        instance = next((i for i in self.instances if i.enabled and i.name == to), None)
        if instance is None:
            return Verdict(ok=False, error=f"relay instance {to!r} not configured", retry=False)
        event = envelope.get("event")
        event_type = str(event.get("type", "")) if isinstance(event, Mapping) else ""
        refused = check_allowed(instance, event_type)
        if refused is not None:
            return Verdict(ok=False, error=refused, retry=False)
        body = encode_envelope(envelope)
        headers = signed_headers(
            service=self.service,
            instance=instance,
            secret=self.vault.resolve(instance.secret),
            body=body,
            now=self.now(),
        )
        import httpx

        try:
            async with httpx.AsyncClient(
                timeout=timeout_of(instance),
                follow_redirects=False,
                trust_env=False,
                transport=self.transport,
            ) as client:
                answer = await client.post(endpoint_of(instance), content=body, headers=headers)
        except httpx.HTTPError as exc:
            reason = str(exc) or type(exc).__name__
            return Verdict(ok=False, error=f"deliver relay request to {to}: {reason}")
        return delivery_verdict(
            to=to, event_type=event_type, status=answer.status_code, body=answer.content
        )
