"""``GET /jobs`` summaries and cursor paging: the parsing, the page logic, the store.

The end-to-end view over HTTP is in ``test_job_list_e2e.py``; these are the pure
decisions and the store's side of them, on a real database file.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import pytest
from fakes import stored_job

from chamberlain.records import Job, JobFilter, JobStatus, NewJob
from chamberlain.retry import Settlement
from chamberlain.store.sqlite import SqliteStore
from chamberlain.web.errors import ApiError
from chamberlain.web.jobs import (
    BODY_FIELDS,
    JOB_FIELDS,
    SCHEMAS,
    SUMMARY_FIELDS,
    decode_cursor,
    encode_cursor,
    job_fields,
    lookahead,
    next_link,
    page_of,
    parse_job_filter,
    parse_list_fields,
)
from chamberlain.web.openapi import SCHEMAS as DOCUMENT_SCHEMAS

NOW = 1_700_000_000.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "state.db")
    yield s
    s.close()


def add(store: SqliteStore, plugin: str = "echo", **kw: Any) -> str:
    job = NewJob(plugin=plugin, command="poll", **kw)
    store.begin()
    store.enqueue(job, now=NOW, dedupe_ttl=3600)
    store.commit()
    return job.id


def refused(query: Mapping[str, Sequence[str]]) -> str:
    """The 400 message ``query`` gets from the listing's parsers."""
    with pytest.raises(ApiError) as caught:
        parse_job_filter(query)
    assert caught.value.status == 400
    return str(caught.value.message)


def a_job(seq: int) -> Job:
    return stored_job(
        id=f"job-{seq}",
        payload={"big": "x" * 10},
        status=JobStatus.SUCCEEDED,
        max_attempts=4,
        submitted_by="api_key",
        created_at=NOW,
        started_at=NOW,
        completed_at=NOW,
        run_at=NOW,
        result={"status": "ok"},
        seq=seq,
    )


# -- which fields ---------------------------------------------------------------------


def test_the_fields_are_exactly_what_a_job_shows() -> None:
    assert tuple(a_job(1).to_json()) == JOB_FIELDS
    assert set(SUMMARY_FIELDS) == set(JOB_FIELDS) - {
        "payload",
        "event",
        "result",
        "session",
        "instruction",
    }


def test_by_default_a_listing_is_a_summary_and_reads_no_bodies() -> None:
    assert parse_list_fields({}) == SUMMARY_FIELDS
    assert parse_list_fields({"detail": ["summary"]}) == SUMMARY_FIELDS
    assert parse_job_filter({}).bodies is False
    assert BODY_FIELDS.isdisjoint(SUMMARY_FIELDS)


def test_detail_full_shows_and_reads_everything() -> None:
    assert parse_list_fields({"detail": ["full"]}) == JOB_FIELDS
    assert parse_job_filter({"detail": ["full"]}).bodies is True


def test_fields_pick_exactly_those_and_the_job_id() -> None:
    assert parse_list_fields({"fields": ["result, status"]}) == ("job_id", "status", "result")
    assert parse_job_filter({"fields": ["result,status"]}).bodies is True
    picked = {"fields": ["status", "attempt,job_id"]}
    assert parse_list_fields(picked) == ("job_id", "status", "attempt")
    # Nothing large asked for: the store leaves the bodies unread.
    assert parse_job_filter(picked).bodies is False


def test_an_unknown_field_is_named_with_the_valid_ones() -> None:
    message = refused({"fields": ["status,colour"]})
    assert "unknown field 'colour'" in message
    assert ", ".join(JOB_FIELDS) in message


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ({"fields": [""]}, "'fields' is empty"),
        ({"fields": ["status,"]}, "unknown field ''"),
        ({"fields": ["Status"]}, "unknown field 'Status'"),
        ({"detail": ["brief"]}, "'detail' must be one of: summary, full; got 'brief'"),
        ({"detail": [""]}, "'detail' is empty"),
        ({"detail": ["full"], "fields": ["status"]}, "'fields' and 'detail' do not go together"),
        ({"detail": ["summary"], "fields": ["status"]}, "do not go together"),
    ],
)
def test_bad_fields_and_detail_are_400(query: Mapping[str, Sequence[str]], fragment: str) -> None:
    assert fragment in refused(query)


# -- cursors --------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 1, 9, 123_456, 2**63 - 1])
def test_a_cursor_carries_its_seq_and_is_safe_in_a_url(seq: int) -> None:
    cursor = encode_cursor(seq)
    assert decode_cursor(cursor) == seq
    assert cursor.replace("-", "").replace("_", "").isalnum()
    assert parse_job_filter({"after": [cursor]}).after == seq


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "12",  # a bare seq is not a cursor
        "not a cursor",
        "djE6MTI=",  # padding is not part of the alphabet
        "A",  # not base64 at all
        _b64("v2:12"),
        _b64("v1:"),
        _b64("v1:-1"),
        _b64("v1:012"),
        _b64("v1:12 "),
        _b64(f"v1:{2**63}"),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        "x" * 100,
    ],
)
def test_a_malformed_cursor_is_400(cursor: str) -> None:
    assert "'after' is not a cursor" in refused({"after": [cursor]})


def test_after_and_offset_do_not_go_together() -> None:
    cursor = encode_cursor(5)
    assert "'after' and 'offset' do not go together" in refused(
        {"after": [cursor], "offset": ["0"]}
    )
    assert "'after' is empty" in refused({"after": [""]})


def test_after_keeps_the_other_filters() -> None:
    flt = parse_job_filter({"after": [encode_cursor(40)], "plugin": ["echo"], "limit": ["5"]})
    assert flt == JobFilter(plugin="echo", limit=5, after=40, bodies=False)


# -- the page logic -------------------------------------------------------------------


def test_a_page_by_offset_knows_from_the_total_whether_another_follows() -> None:
    flt = JobFilter(limit=2, offset=2)
    assert lookahead(flt) is flt
    jobs = [a_job(8), a_job(7)]
    shown, cursor = page_of(flt, jobs, total=5)
    assert shown == jobs
    assert cursor is not None and decode_cursor(cursor) == 7
    assert page_of(flt, jobs, total=4) == (jobs, None)
    assert page_of(JobFilter(), [], total=0) == ([], None)


def test_a_page_by_cursor_reads_one_more_job_than_it_shows() -> None:
    flt = JobFilter(limit=2, after=9)
    assert lookahead(flt) == JobFilter(limit=3, after=9)
    shown, cursor = page_of(flt, [a_job(8), a_job(7), a_job(5)], total=100)
    assert [j.seq for j in shown] == [8, 7]
    assert cursor is not None and decode_cursor(cursor) == 7
    # Exactly a page left: this one is the last, whatever the total says.
    assert page_of(flt, [a_job(8), a_job(7)], total=100)[1] is None
    assert page_of(flt, [], total=100) == ([], None)


def test_the_next_link_keeps_the_query_but_the_page_start() -> None:
    link = next_link(
        {"status": ["queued", "dead"], "submitted_by": ["token:ci"], "offset": ["50"]},
        "djE6Nw",
    )
    assert link == (
        '</jobs?status=queued&status=dead&submitted_by=token%3Aci&after=djE6Nw>; rel="next"'
    )
    assert next_link({"after": ["old"], "limit": ["5"]}, "new") == (
        '</jobs?limit=5&after=new>; rel="next"'
    )


def test_job_fields_shows_only_the_fields_chosen() -> None:
    job = a_job(3)
    assert job_fields(job, ("job_id", "status")) == {"job_id": "job-3", "status": "succeeded"}
    assert job_fields(job, JOB_FIELDS) == job.to_json()


# -- the schemas ----------------------------------------------------------------------


def validate(body: Any, name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": DOCUMENT_SCHEMAS}}
    jsonschema.Draft202012Validator(schema).validate(body)


def test_the_schemas_describe_each_kind_of_listed_job_exactly() -> None:
    job = a_job(3)
    summary = job_fields(job, SUMMARY_FIELDS)
    validate(summary, "JobSummary")
    assert SCHEMAS["JobSummary"]["required"] == list(SUMMARY_FIELDS)
    with pytest.raises(jsonschema.ValidationError):
        validate(job.to_json(), "JobSummary")  # a summary has no payload
    validate(job.to_json(), "Job")
    validate(job_fields(job, ("job_id", "result")), "JobFields")
    with pytest.raises(jsonschema.ValidationError):
        validate({"status": "queued"}, "JobFields")  # job_id is always there
    page = {"jobs": [summary], "total": 1, "limit": 50, "offset": 0, "next": None}
    validate(page, "JobList")
    validate({"jobs": [], "total": 1, "limit": 50, "next": encode_cursor(3)}, "JobList")
    with pytest.raises(jsonschema.ValidationError):
        validate({**page, "cursor": "x"}, "JobList")
    with pytest.raises(jsonschema.ValidationError):
        validate({"jobs": [], "total": 1, "limit": 50}, "JobList")  # next is always there


# -- the store ------------------------------------------------------------------------


def listing(store: SqliteStore, flt: JobFilter) -> tuple[list[str], str | None, int]:
    """One page as the API makes it: the ids shown, ``next`` and ``total``."""
    found, total = store.list_jobs(lookahead(flt))
    shown, cursor = page_of(flt, found, total)
    return [j.id for j in shown], cursor, total


def walk(
    store: SqliteStore, flt: JobFilter, between_pages: Any = None
) -> tuple[list[list[str]], list[int]]:
    """Every page from the first by ``next`` until it is null; the totals seen."""
    pages, totals = [], []
    ids, cursor, total = listing(store, flt)
    while True:
        pages.append(ids)
        totals.append(total)
        if cursor is None:
            return pages, totals
        if between_pages is not None:
            between_pages()
        ids, cursor, total = listing(
            store, attrs.evolve(flt, offset=0, after=decode_cursor(cursor))
        )


def test_cursor_pages_join_to_the_whole_list_while_jobs_arrive(store: SqliteStore) -> None:
    before = [add(store, "a" if i % 3 else "b") for i in range(23)]
    newest_first = before[::-1]
    arrived: list[str] = []

    def more_jobs() -> None:
        arrived.extend([add(store, "a"), add(store, "b")])

    pages, totals = walk(store, JobFilter(limit=5), between_pages=more_jobs)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    # No gap, no repeat, and none of the jobs created meanwhile slipped in.
    assert [job_id for page in pages for job_id in page] == newest_first
    # The total counts every match as it stands, the new jobs included.
    assert totals == [23 + 2 * n for n in range(5)]
    assert len(arrived) == 8


def test_cursor_pages_keep_the_filters(store: SqliteStore) -> None:
    ids = [add(store, "a" if i % 3 else "b") for i in range(23)]
    only_b = [job_id for i, job_id in enumerate(ids) if i % 3 == 0][::-1]
    pages, totals = walk(store, JobFilter(plugin="b", limit=3, bodies=False))
    assert [job_id for page in pages for job_id in page] == only_b
    assert set(totals) == {len(only_b)}
    # A last page that is exactly full still says it is the last.
    pages, _ = walk(store, JobFilter(plugin="b", limit=len(only_b)))
    assert pages == [only_b]


def test_an_offset_page_hands_over_to_cursor_pages(store: SqliteStore) -> None:
    ids = [add(store) for _ in range(10)][::-1]
    first, cursor, _ = listing(store, JobFilter(limit=4, offset=3))
    assert first == ids[3:7]
    assert cursor is not None
    rest, cursor, _ = listing(store, JobFilter(limit=4, after=decode_cursor(cursor)))
    assert rest == ids[7:]
    assert cursor is None


def test_a_listing_without_bodies_leaves_them_unread(store: SqliteStore) -> None:
    job_id = add(store, payload={"big": "x" * 5000}, context={"schedule": {"id": "s"}})
    store.begin()
    store.claim({"echo": 1}, limit=1, now=NOW)
    store.settle(
        job_id,
        1,
        Settlement(status=JobStatus.SUCCEEDED, result={"out": "y" * 5000}, completed=True),
        now=NOW + 1,
    )
    store.commit()
    full = store.get_job(job_id)
    assert full is not None and full.result == {"out": "y" * 5000}
    ([light], _) = store.list_jobs(JobFilter(bodies=False))
    assert (light.payload, light.event, light.result) == ({}, None, None)
    # Everything else is read as it is, the context included.
    assert light == attrs.evolve(full, payload={}, event=None, result=None)
    # Other callers of the store read whole jobs unless they say otherwise.
    assert store.list_jobs(JobFilter())[0] == [full]


def test_text_finds_an_id_by_its_start_and_the_other_fields_anywhere(store: SqliteStore) -> None:
    backup = add(store, "backup", submitted_by="token:cron")
    report = add(store, "reports", submitted_by="api_key")
    store.begin()
    store.claim({"reports": 1}, limit=1, now=NOW)
    store.settle(
        report,
        1,
        Settlement(status=JobStatus.FAILED, last_error="disk 100% FULL on /srv_a", completed=True),
        now=NOW + 1,
    )
    store.commit()

    def found(text: str, **more: Any) -> list[str]:
        jobs, total = store.list_jobs(JobFilter(text=text, **more))
        assert total == len(jobs)
        return [job.id for job in jobs]

    assert found(backup[:8]) == [backup]
    # An id is found by its start only (its last group of hex digits is in no
    # other field here).
    assert found(backup[-8:]) == []
    assert found("ACKU") == [backup]  # the plugin, any case
    assert found("cron") == [backup]  # the submitter
    assert found("full on") == [report]  # the last error
    # % and _ are the text itself, not LIKE's wildcards.
    assert found("100%") == [report]
    assert found("srv_a") == [report]
    assert found("0_F") == []
    assert found("%") == [report]
    assert found("poll") == [report, backup]  # the command, newest first
    # With the other filters, the total counts only what both keep.
    assert found("poll", plugin="backup") == [backup]
    assert found("nothing like it") == []


def test_text_is_one_parameter_of_reasonable_length() -> None:
    assert parse_job_filter({"q": ["disk full"]}).text == "disk full"
    assert parse_job_filter({}).text is None
    assert "'q' is empty" in refused({"q": [""]})
    assert "more than once" in refused({"q": ["a", "b"]})
    assert "longer than 200" in refused({"q": ["x" * 201]})
