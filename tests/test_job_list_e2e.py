"""``GET /jobs`` end to end: summaries, ``detail=full``, ``fields=`` and cursor paging.

The real daemon as a subprocess, the bundled echo plugin, HTTP.  Every page is also
checked against the ``/openapi.json`` the daemon serves, so the document describes
what is sent.  Waits poll with a deadline (``wait_for``); nothing sleeps.
"""

from __future__ import annotations

from typing import Any

import httpx
import jsonschema
import pytest
from conftest import DaemonFactory, DaemonProcess, wait_for

pytestmark = pytest.mark.e2e

BODIES = {"payload", "event", "result", "session", "instruction"}
PAD = "x" * 2000


def client(d: DaemonProcess) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=d.base_url, headers=d.headers(), timeout=10.0)


async def page_checker(c: httpx.AsyncClient) -> jsonschema.Draft202012Validator:
    """A validator of ``JobList`` bodies, from the document the daemon serves."""
    doc = (await c.get("/openapi.json")).json()
    schema = {"$ref": "#/components/schemas/JobList", "components": doc["components"]}
    return jsonschema.Draft202012Validator(schema)


async def listed(
    c: httpx.AsyncClient, check: jsonschema.Draft202012Validator, query: str
) -> httpx.Response:
    """``GET /jobs?<query>``, which must be a 200 the document describes."""
    return await fetched(c, check, f"/jobs?{query}")


async def fetched(
    c: httpx.AsyncClient, check: jsonschema.Draft202012Validator, url: str
) -> httpx.Response:
    r = await c.get(url)
    assert r.status_code == 200, (url, r.text)
    check.validate(r.json())
    return r


def link_target(header: str) -> str:
    """The URL of a ``Link: <url>; rel="next"`` header."""
    target, rel = header.split(";")
    assert rel.strip() == 'rel="next"'
    assert target.startswith("<") and target.endswith(">")
    return target[1:-1]


@pytest.fixture
async def finished(daemon: DaemonFactory) -> tuple[DaemonProcess, list[str]]:
    """A daemon with 7 echo jobs run to success, their ids newest first."""
    d = await daemon()
    jobs = [
        {"plugin": "echo", "command": "poll", "payload": {"n": n, "pad": PAD}} for n in range(7)
    ]
    async with client(d) as c:
        r = await c.post("/jobs", json={"jobs": jobs})
        assert r.status_code == 202, r.text
        ids = [job["job_id"] for job in r.json()["jobs"]]

        async def all_succeeded() -> bool:
            body = (await c.get("/jobs", params={"status": "succeeded"})).json()
            return bool(body["total"] == len(ids))

        await wait_for(all_succeeded)
    return d, ids[::-1]


async def test_a_listing_is_a_summary_unless_asked_for_more(
    finished: tuple[DaemonProcess, list[str]],
) -> None:
    d, ids = finished
    async with client(d) as c:
        check = await page_checker(c)

        summary = (await listed(c, check, "")).json()
        assert [job["job_id"] for job in summary["jobs"]] == ids
        for job in summary["jobs"]:
            assert BODIES.isdisjoint(job), job
            assert job["status"] == "succeeded"
            assert job["plugin"] == "echo" and job["command"] == "poll"
            assert job["created_at"] and job["completed_at"]
        assert summary["next"] is None

        full = (await listed(c, check, "detail=full")).json()
        newest = full["jobs"][0]
        assert newest["job_id"] == ids[0]
        assert newest["payload"] == {"n": 6, "pad": PAD}
        assert newest["result"]["status"] == "ok"
        assert newest["event"] is None
        # The full record is what GET /job/{id} shows.
        assert newest == (await c.get(f"/job/{ids[0]}")).json()
        # The summary is that record without its bodies, and much smaller.
        assert summary["jobs"][0] == {k: v for k, v in newest.items() if k not in BODIES}
        assert len((await c.get("/jobs")).content) * 5 < len(
            (await c.get("/jobs?detail=full")).content
        )

        picked = (await listed(c, check, "fields=status,result")).json()
        assert [set(job) for job in picked["jobs"]] == [{"job_id", "status", "result"}] * 7
        assert picked["jobs"][0]["result"] == newest["result"]

        r = await c.get("/jobs?fields=status,colour")
        assert r.status_code == 400
        assert "unknown field 'colour'" in r.json()["error"]
        assert "job_id" in r.json()["error"]


async def test_after_pages_to_the_end_while_jobs_arrive(
    finished: tuple[DaemonProcess, list[str]],
) -> None:
    d, ids = finished
    async with client(d) as c:
        check = await page_checker(c)
        r = await listed(c, check, "limit=3&plugin=echo")
        body = r.json()
        assert body["offset"] == 0
        pages = [[job["job_id"] for job in body["jobs"]]]
        first_next = body["next"]
        while body["next"] is not None:
            # The Link header is the same next page, filters kept.
            assert (
                r.headers["link"] == f'</jobs?limit=3&plugin=echo&after={body["next"]}>; rel="next"'
            )
            # A job created between pages does not shift the ones after.
            made = await c.post("/trigger/echo/poll", json={})
            assert made.status_code == 202
            r = await fetched(c, check, link_target(r.headers["link"]))
            body = r.json()
            assert "offset" not in body
            pages.append([job["job_id"] for job in body["jobs"]])
        assert "link" not in r.headers
        assert pages == [ids[0:3], ids[3:6], ids[6:7]]
        # total counts the matches as they stand: the jobs made meanwhile too.
        assert body["total"] == len(ids) + 2

        r = await c.get("/jobs?after=bogus")
        assert r.status_code == 400
        assert "'after'" in r.json()["error"]
        r = await c.get("/jobs", params={"after": first_next, "offset": 0})
        assert r.status_code == 400
        assert "'after' and 'offset'" in r.json()["error"]


async def test_pages_by_offset_and_by_cursor_agree(
    finished: tuple[DaemonProcess, list[str]],
) -> None:
    d, ids = finished
    async with client(d) as c:
        first = (await c.get("/jobs", params={"limit": 2, "offset": 4})).json()
        assert [job["job_id"] for job in first["jobs"]] == ids[4:6]
        after: Any = first["next"]
        rest = (await c.get("/jobs", params={"limit": 2, "after": after})).json()
        assert [job["job_id"] for job in rest["jobs"]] == ids[6:]
        assert rest["next"] is None
