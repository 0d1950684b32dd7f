"""The dashboard at ``/ui`` in a real browser, against a real daemon.

Playwright's sync API drives Debian's chromium (its own browser download needs the
internet).  The suite runs under pytest-trio, whose loop Playwright's asyncio API
cannot share, so these are plain tests with plain fixtures: one daemon, started as
a subprocess for the whole module, and one browser.  Every test asserts what a user
sees, waiting with Playwright's ``expect``, and fails on any console error or
uncaught exception of the page.  Each page is also written to ``docs/ui/`` as a
screenshot, which docs/DASHBOARD.md shows.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import playwright.sync_api as playwright_sync
import pytest
import yaml
from conftest import API_KEY, REPO, base_config, deep_merge
from fake_forge import FakeForge, running_fake_forge
from git_remotes import bare_remote
from playwright.sync_api import expect
from test_pull_requests_e2e import TOKEN
from test_pull_requests_e2e import config as worktree_config

pytestmark = pytest.mark.e2e

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SHOTS = REPO / "docs" / "ui"
#: How long a user would wait for something to show before calling it broken (ms).
PATIENCE_MS = 15_000
# A loaded CI machine is slower than Playwright's 5 s default for expect().
expect.set_options(timeout=PATIENCE_MS)

#: A plugin whose schema the browser checks only in part (required, types): its
#: ``minimum`` is the server's to refuse.
COUNTER_MANIFEST = """\
name: counter
version: 1.0.0
protocol: 2
entrypoint: run.sh
description: "Counts; its count must be at least 1."
commands:
  - name: count
    type: write
    description: "Counts to count."
    input_schema:
      type: object
      properties:
        count: {type: integer, minimum: 1, description: "How far to count."}
        label: {type: string}
      required: [count]
"""
COUNTER_SCRIPT = """\
#!/bin/sh
cat >/dev/null
printf '%s\\n' '{"status":"ok","result":{"counted":true}}'
"""


class Daemon:
    """The daemon subprocess: its base URL and an HTTP client of its API."""

    def __init__(
        self, proc: subprocess.Popen[bytes], base_url: str, lines: list[str], config_path: Path
    ) -> None:
        self.proc = proc
        self.base_url = base_url
        self.lines = lines
        self.config_path = config_path
        self.http = httpx.Client(
            base_url=base_url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
        )

    def trigger(self, plugin: str, command: str, payload: dict[str, Any]) -> str:
        """Trigger a job over HTTP; its id."""
        answer = self.http.post(f"/trigger/{plugin}/{command}", json={"payload": payload})
        assert answer.status_code == 202, answer.text
        job_id: str = answer.json()["job_id"]
        return job_id

    def finished(self, job_id: str) -> dict[str, Any]:
        """The job, once it has ended."""
        job: dict[str, Any] = self.http.get(f"/job/{job_id}?wait=30s").json()
        assert job["status"] not in ("queued", "running"), job
        return job


@pytest.fixture(scope="module")
def forge() -> Iterator[FakeForge]:
    """A fake GitHub for the worktree job's pull request."""
    with running_fake_forge(token=TOKEN) as fake:
        yield fake


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, forge: FakeForge) -> Iterator[Daemon]:
    """One real daemon for the module, with the bundled plugins and ``counter``."""
    tmp = tmp_path_factory.mktemp("dashboard")
    plugins = tmp / "plugins" / "counter"
    plugins.mkdir(parents=True)
    (plugins / "manifest.yaml").write_text(COUNTER_MANIFEST)
    script = plugins / "run.sh"
    script.write_text(COUNTER_SCRIPT)
    script.chmod(0o755)
    # The interactive test plugin: asks two questions, answers once completed.
    shutil.copytree(REPO / "tests" / "e2e_plugins" / "asker", tmp / "plugins" / "asker")
    # The loop test plugin: says DONE on iteration payload.complete_at.
    shutil.copytree(REPO / "tests" / "e2e_plugins" / "looper", tmp / "plugins" / "looper")
    # Appends a line to notes.txt in its worktree: a change a pull request proposes.
    shutil.copytree(REPO / "tests" / "e2e_plugins" / "scribe", tmp / "plugins" / "scribe")
    bare = bare_remote(tmp)
    # One scheduled run that fails for good opens its breaker (threshold 1) and
    # keeps it open for the hour: the schedules page has one to reset.
    failing = {
        "id": "nightly",
        "command": "handle",
        "every": "5s",
        "payload": {"mode": "fatal"},
    }
    breaker = {"threshold": 1, "reset_after": "1h"}
    cfg = deep_merge(
        base_config(tmp),
        {
            "plugins": {"echo": {"schedules": [failing], "circuit_breaker": breaker}},
            # The pull request tests' repository, on this module's remote and forge.
            "repositories": worktree_config(bare, forge)["repositories"],
            # A run that waits for a person before its second step.
            "pipelines": [
                {
                    "name": "gated",
                    "on": "manual.gated",
                    "steps": [
                        {"id": "first", "uses": "echo.poll"},
                        {"id": "ship", "uses": "echo.health", "approval": {"required": True}},
                    ],
                }
            ],
        },
    )
    cfg["plugin_roots"] = [*cfg["plugin_roots"], str(tmp / "plugins")]
    config_path = tmp / "config.yaml"
    config_path.write_text(yaml.safe_dump(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "chamberlain", "start", "--config", str(config_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "REPO_TOKEN": TOKEN},
    )
    assert proc.stderr is not None
    lines: list[str] = []
    ready = threading.Event()
    found: list[str] = []

    def pump() -> None:
        # Drained to the end, so a chatty daemon never blocks on a full pipe.
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            if not ready.is_set():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if record.get("msg", "").startswith("ready") and record.get("urls"):
                    found.append(record["urls"][0])
                    ready.set()
        ready.set()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        assert ready.wait(30) and found, "daemon not ready:\n" + "\n".join(lines[-30:])
        d = Daemon(proc, found[0], lines, config_path)
        yield d
        d.http.close()
    finally:
        proc.kill()
        proc.wait(10)
        reader.join(10)
        proc.stderr.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, launched once for the module."""
    # Installed by .ci/run; a machine without it fails here, saying how to get it,
    # rather than passing with the dashboard untested.
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: apt-get install chromium"
    with playwright_sync.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, daemon: Daemon) -> Iterator[Any]:
    """A fresh page at 1280 px; fails the test on any console error or page error."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, base_url=daemon.base_url)
    context.set_default_timeout(PATIENCE_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    # A test that provokes a refusal on purpose forgives what the browser logs for it.
    tab.console_errors = errors
    yield tab
    context.close()
    assert errors == []


def shot(page: Any, name: str) -> None:
    """Write what the page shows to docs/ui/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page: Any, token: str = API_KEY) -> None:
    """Open the dashboard and log in with ``token``; waits for the overview."""
    page.goto("/ui")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("#nav")).to_be_visible()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


# -- the tests -------------------------------------------------------------------------


def test_a_user_logs_in_and_sees_the_overview(page: Any, daemon: Daemon) -> None:
    daemon.trigger("echo", "handle", {"mode": "fatal"})
    page.goto("/ui")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    shot(page, "login")
    page.get_by_label("API token").fill("wrong-token")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("invalid token")
    # The browser logs the refused request itself; only that one is expected.
    assert [e for e in page.console_errors if "401" not in e] == []
    page.console_errors.clear()
    log_in(page)
    expect(page.locator("#who")).to_contain_text("api_key")
    expect(page.locator("#overview-status")).to_contain_text("ok")
    expect(page.locator("#overview-running")).to_contain_text("/ 4")
    expect(page.get_by_role("heading", name="Supervision restarts")).to_be_visible()
    expect(page.get_by_role("heading", name="Recent failures")).to_be_visible()
    expect(page.locator("table.jobs [data-status=failed]").first).to_be_visible()
    shot(page, "overview")
    # The token stays for the tab: a reload does not ask again.
    page.reload()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def test_a_job_triggered_from_a_generated_form_shows_its_output(page: Any) -> None:
    log_in(page)
    page.get_by_role("link", name="Plugins").click()
    form = page.locator("#echo-handle-form")
    expect(form.get_by_label("mode")).to_be_visible()
    form.get_by_label("mode").fill("stderr")
    shot(page, "plugins")
    form.get_by_role("button", name="Run handle").click()
    expect(page).to_have_url(re.compile(r"#/job/"))
    messages = page.locator("#messages")
    expect(messages).to_contain_text("echo: second line on stderr")
    expect(messages).to_contain_text("finished: succeeded")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#job-result")).to_contain_text("request")
    shot(page, "job")


def test_the_browser_and_then_the_server_refuse_a_bad_payload(page: Any, daemon: Daemon) -> None:
    log_in(page)
    page.goto("/ui#/plugins")
    form = page.locator("#counter-count-form")
    form.get_by_role("button", name="Run count").click()
    # Checked in the browser: nothing was sent.
    expect(form.get_by_role("alert")).to_have_text("count is required")
    form.get_by_label("count").fill("0")
    form.get_by_role("button", name="Run count").click()
    # The schema's minimum is the server's to check: its message is shown.
    expect(form.get_by_role("alert")).to_contain_text("less than the minimum of 1")
    assert [e for e in page.console_errors if "400" not in e] == []
    page.console_errors.clear()
    expect(page).to_have_url(re.compile(r"#/plugins$"))


def test_messages_stream_in_while_the_job_runs(page: Any, daemon: Daemon) -> None:
    log_in(page)
    # Two seconds of running: long enough to see it running, short enough to wait for.
    job_id = daemon.trigger("echo", "handle", {"mode": "slow", "seconds": 2})
    page.goto(f"/ui#/job/{job_id}")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.locator("#messages")).to_contain_text("started")
    # Arrives over the open stream: the page is never reloaded.
    expect(page.locator("#messages")).to_contain_text("finished: succeeded")
    expect(page.locator("#job-status")).to_have_text("succeeded")


def sse_events(text: str) -> list[dict[str, str]]:
    """The events of a Server-Sent Events body, each as its fields."""
    events = []
    for block in text.replace("\r\n", "\n").split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        if fields:
            events.append(fields)
    return events


def test_a_dropped_stream_resumes_where_it_stopped(page: Any, daemon: Daemon) -> None:
    job_id = daemon.trigger("echo", "handle", {"mode": "stderr"})
    daemon.finished(job_id)
    with daemon.http.stream("GET", f"/job/{job_id}/stream") as answer:
        whole = answer.read().decode()
    events = sse_events(whole)
    shown = [e for e in events if e.get("event") in ("message", "status")]
    # The first connection drops after the second stderr line: the server's own
    # answer, cut short there, as a proxy or a flaky network would.
    second = next(i for i, e in enumerate(events) if "second line" in e.get("data", ""))
    cut = "".join(
        f"id: {e['id']}\nevent: {e['event']}\ndata: {e['data']}\n\n" for e in events[: second + 1]
    )
    asked: list[str | None] = []

    def drop_once(route: Any) -> None:
        asked.append(route.request.headers.get("last-event-id"))
        if len(asked) == 1:
            route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=cut)
        else:
            route.continue_()

    page.route(f"**/job/{job_id}/stream", drop_once)
    log_in(page)
    page.goto(f"/ui#/job/{job_id}")
    messages = page.locator("#messages li")
    expect(messages.last).to_contain_text("finished: succeeded")
    # Asked again from the last event it had, so each message shows once.
    assert asked == [None, events[second]["id"]]
    expect(messages).to_have_count(len(shown))
    texts = messages.locator(".msg-text").all_text_contents()
    assert len(set(texts)) == len(texts), texts


def test_a_running_job_is_cancelled_then_retried(page: Any, daemon: Daemon) -> None:
    job_id = daemon.trigger("echo", "handle", {"mode": "slow", "seconds": 30})
    log_in(page)
    page.goto(f"/ui#/job/{job_id}")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.get_by_role("button", name="Retry")).to_be_hidden()
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator("#job-status")).to_have_text("cancelled")
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()
    page.get_by_role("button", name="Retry").click()
    expect(page).not_to_have_url(re.compile(job_id))
    expect(page.locator("#job-status")).to_have_text(re.compile("queued|running"))
    retried = page.url.rsplit("/", 1)[1]
    page.get_by_role("link", name="Lineage tree").click()
    expect(page.get_by_role("heading", name=re.compile("Lineage"))).to_be_visible()
    shot(page, "tree")
    assert daemon.http.post(f"/job/{retried}/cancel").status_code in (200, 202)


def test_the_jobs_table_filters_and_pages(page: Any, daemon: Daemon) -> None:
    for _ in range(3):
        daemon.finished(daemon.trigger("echo", "health", {}))
    daemon.finished(daemon.trigger("echo", "poll", {}))
    log_in(page)
    page.get_by_role("link", name="Jobs").click()
    table = page.locator("#jobs-table")
    expect(table.locator("tbody tr").first).to_be_visible()
    page.get_by_label("Status").select_option("succeeded")
    page.get_by_label("Plugin").select_option("echo")
    page.get_by_label("Text").fill("health")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"status=succeeded.*q=health"))
    rows = table.locator("tbody tr")
    expect(rows.first).to_be_visible()
    assert rows.count() >= 3
    for command in rows.locator("td:nth-child(3)").all_text_contents():
        assert command == "health"
    # Searched by the server, so the count is of every match, not of one page.
    search = {"status": "succeeded", "plugin": "echo", "q": "health"}
    total = daemon.http.get("/jobs", params=search).json()["total"]
    expect(page.locator("#jobs-total")).to_have_text(f"{total} jobs match “health”")
    shot(page, "jobs")
    # Cursor paging: a page of one job at a time follows `next`.
    page.goto("/ui#/jobs?status=succeeded&limit=1")
    # The page of one, not what the filtered page showed a moment ago.
    expect(rows).to_have_count(1)
    expect(page.locator("#filter-text")).to_have_value("")
    first = rows.first.get_attribute("data-job")
    page.get_by_role("link", name=re.compile("Older jobs")).click()
    expect(page).to_have_url(re.compile(r"after="))
    expect(rows.first).not_to_have_attribute("data-job", first)
    expect(rows).to_have_count(1)
    expect(page.get_by_role("link", name="First page")).to_be_visible()


def test_a_new_job_appears_in_the_table_without_a_reload(page: Any, daemon: Daemon) -> None:
    log_in(page)
    page.get_by_role("link", name="Jobs").click()
    table = page.locator("#jobs-table")
    # Only what happens after the stream is up can arrive over it.
    expect(table).to_have_attribute("data-live", "connected")
    job_id = daemon.trigger("echo", "poll", {"note": "live"})
    row = table.locator(f'tr[data-job="{job_id}"]')
    expect(row).to_be_visible()
    expect(row.locator(".status-cell")).to_have_text("succeeded")


def test_a_read_only_token_sees_no_write_buttons(page: Any, daemon: Daemon) -> None:
    job_id = daemon.trigger("echo", "handle", {"mode": "slow", "seconds": 30})
    log_in(page, "reader-token")
    expect(page.locator("#who")).to_contain_text("reader")
    # Reloading needs admin, which read:* does not imply.
    expect(page.locator("#config-hash")).to_contain_text("sha256:")
    expect(page.get_by_role("button", name="Reload configuration")).to_have_count(0)
    page.goto(f"/ui#/job/{job_id}")
    expect(page.locator("#job-status")).to_have_text("running")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    page.goto("/ui#/plugins")
    expect(page.locator("#echo-handle-form")).to_be_visible()
    # read:* may run read commands, never write ones.
    expect(page.get_by_role("button", name="Run handle")).to_have_count(0)
    expect(page.get_by_role("button", name="Run count")).to_have_count(0)
    expect(page.get_by_role("button", name="Run ask")).to_have_count(0)
    expect(page.locator("#echo-poll-form").get_by_role("button", name="Run poll")).to_be_visible()
    shot(page, "plugins-read-only")
    daemon.http.post(f"/job/{job_id}/cancel")


def test_an_admin_reloads_the_configuration_from_the_overview(page: Any, daemon: Daemon) -> None:
    log_in(page)
    expect(page.locator("#config-hash")).to_contain_text("sha256:")
    original = daemon.config_path.read_text()
    broken = yaml.safe_load(original)
    broken["service"]["max_workers"] = 0
    daemon.config_path.write_text(yaml.safe_dump(broken))
    result = page.locator("#reload-result")
    try:
        page.get_by_role("button", name="Reload configuration").click()
        # Refused: every problem at its YAML path, and nothing changed.
        expect(result.get_by_role("alert")).to_contain_text("nothing was changed")
        expect(result.locator("table")).to_contain_text("service.max_workers")
    finally:
        daemon.config_path.write_text(original)
    assert [e for e in page.console_errors if "422" not in e] == []
    page.console_errors.clear()
    page.get_by_role("button", name="Reload configuration").click()
    expect(result.get_by_role("status")).to_have_text("Reloaded: 0 changes applied")
    expect(page.locator("#overview-running")).to_contain_text("/ 4")


def test_an_open_breaker_is_reset_from_the_schedules_page(page: Any) -> None:
    log_in(page)
    page.get_by_role("link", name="Schedules").click()
    row = page.locator('tr[data-schedule="echo/nightly"]')
    # The page looks again by itself: the failed run's breaker shows open.
    expect(row.locator(".breaker-cell")).to_contain_text("open")
    shot(page, "schedules")
    row.get_by_role("button", name="Reset breaker").click()
    expect(row.locator(".breaker-cell")).to_contain_text("closed")
    expect(row.get_by_role("status")).to_have_text("Breaker closed")


@pytest.mark.parametrize("word", ["approve", "reject"])
def test_a_step_awaiting_approval_is_decided_on_its_run_s_page(
    page: Any, daemon: Daemon, word: str
) -> None:
    answer = daemon.http.post("/pipeline/gated", json={"payload": {}})
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    log_in(page)
    page.get_by_role("link", name="Runs").click()
    page.locator(f'tr[data-run="{run_id}"]').get_by_role("link").click()
    step = page.locator('[data-step="ship"]')
    expect(step.locator(".step-status")).to_have_text("awaiting_approval")
    if word == "approve":
        shot(page, "run")
    step.get_by_label("Comment").fill(f"{word} from the browser")
    step.get_by_role("button", name=word.capitalize()).click()
    final = "succeeded" if word == "approve" else "failed"
    # The page follows the run to its end by itself.
    expect(page.locator("#run-status")).to_have_text(final)
    expect(step.locator(".decision")).to_contain_text(f"{word} from the browser")
    # The events log follows too: the run's creation first, the decision, its end.
    log = page.locator("#run-events")
    expect(log.locator("li").first).to_have_attribute("data-kind", "run.created")
    expect(log.locator('li[data-kind="approval"]')).to_contain_text(f"{word} from the browser")
    expect(log.locator('li[data-kind="run.status"]').last).to_contain_text(final)


def test_a_worktree_job_s_pull_request_is_opened_from_its_page(
    page: Any, daemon: Daemon, forge: FakeForge
) -> None:
    answer = daemon.http.post(
        "/trigger/scribe/write",
        json={"payload": {"line": "work"}, "workspace": {"repository": "app", "branch": "ui-pr"}},
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    assert daemon.finished(job_id)["status"] == "succeeded"
    log_in(page)
    page.goto(f"/ui#/job/{job_id}")
    section = page.locator("#pull-request")
    expect(section).to_contain_text("1 file changed, +1 -0")
    section.get_by_role("button", name="Open pull request").click()
    # Checked in the browser first: nothing is sent without a title.
    expect(section.get_by_role("alert")).to_have_text("title is required")
    assert forge.requests == []
    section.get_by_label("Title").fill("Notes from the dashboard")
    section.get_by_label("Draft").check()
    section.get_by_role("button", name="Open pull request").click()
    link = section.get_by_role("link", name="https://github.com/owner/app/pull/1")
    expect(link).to_be_visible()
    expect(section.locator("#pr-link")).to_contain_text("ui-pr → main")
    posted = [r.json for r in forge.requests if r.method == "POST"]
    assert posted and posted[0]["title"] == "Notes from the dashboard" and posted[0]["draft"]
    shot(page, "pull-request")
    # Opened once: the page shows the link again, with no form.
    page.reload()
    expect(section.get_by_role("link", name="https://github.com/owner/app/pull/1")).to_be_visible()
    expect(section.get_by_role("button", name="Open pull request")).to_have_count(0)


def test_a_conversation_with_an_interactive_job(page: Any, daemon: Daemon) -> None:
    job_id = daemon.trigger("asker", "ask", {})
    log_in(page)
    page.goto(f"/ui#/job/{job_id}")
    messages = page.locator("#messages")
    expect(messages).to_contain_text("What is your name?")
    box = page.get_by_label("Message to the job")
    box.fill("Ada")
    page.get_by_role("button", name="Send").click()
    expect(messages).to_contain_text("What is your favourite colour?")
    box.fill("teal")
    page.get_by_role("button", name="Send").click()
    expect(messages.locator(".kind-user_input")).to_have_count(2)
    shot(page, "conversation")
    page.get_by_role("button", name="Complete").click()
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#job-result")).to_contain_text('"teal"')
    expect(page.locator("#conversation")).to_be_hidden()


def test_a_job_that_is_not_interactive_has_no_message_box(page: Any, daemon: Daemon) -> None:
    job_id = daemon.trigger("echo", "handle", {"mode": "slow", "seconds": 30})
    log_in(page)
    page.goto(f"/ui#/job/{job_id}")
    expect(page.locator("#messages")).to_contain_text("started")
    expect(page.locator("#conversation")).to_be_hidden()
    daemon.http.post(f"/job/{job_id}/cancel")


def test_a_loop_job_shows_its_iterations(page: Any, daemon: Daemon) -> None:
    answer = daemon.http.post(
        "/trigger/looper/work",
        json={
            "payload": {"complete_at": 2},
            "loop": {"max_iterations": 4, "completion_token": "DONE"},
        },
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    log_in(page)
    page.goto(f"/ui#/job/{job_id}")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    section = page.locator("#iterations")
    expect(section.locator("tbody tr")).to_have_count(2)
    expect(page.locator("#loop-summary")).to_contain_text("Iteration 2 of 4")
    expect(page.get_by_role("button", name="Stop loop")).to_be_hidden()
    shot(page, "loop")


def test_a_loop_is_stopped_from_its_page(page: Any, daemon: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    answer = daemon.http.post(
        "/trigger/looper/work",
        json={
            # Iteration 2 waits for the gate file: the loop is mid-iteration when stopped.
            "payload": {"complete_at": 9, "gate": str(gate), "gate_at": 2},
            "loop": {"max_iterations": 9, "completion_token": "DONE"},
        },
    )
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    log_in(page)
    page.goto(f"/ui#/job/{job_id}")
    expect(page.locator("#loop-summary")).to_contain_text("Iteration 2 of 9")
    page.get_by_role("button", name="Stop loop").click()
    expect(page.get_by_role("status")).to_have_text("The loop stops after this iteration")
    (tmp_path / "gate.2").touch()
    # The iteration under way finishes; no other starts.
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#iterations tbody tr")).to_have_count(2)
    expect(page.get_by_role("button", name="Stop loop")).to_be_hidden()
    assert daemon.finished(job_id)["completion_reason"] == "manual_stop"


def test_the_dashboard_fits_a_phone_and_dark_mode(browser: Any, daemon: Daemon) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, base_url=daemon.base_url, color_scheme="dark"
    )
    context.set_default_timeout(PATIENCE_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: errors.append(str(e)))
    try:
        log_in(tab)
        shot(tab, "overview-phone-dark")
        tab.get_by_role("link", name="Jobs").click()
        expect(tab.locator("#jobs-table")).to_be_visible()
        # Nothing wider than the screen but the table's own scroller.
        width = tab.evaluate("document.documentElement.scrollWidth")
        assert width <= 390
        shot(tab, "jobs-phone-dark")
    finally:
        context.close()
    assert errors == []


def test_every_ui_answer_carries_the_security_headers(daemon: Daemon) -> None:
    for path in ("/ui", "/ui/app.js", "/ui/api.js", "/ui/views.js", "/ui/dom.js", "/ui/style.css"):
        answer = httpx.get(daemon.base_url + path)
        assert answer.status_code == 200, path
        csp = answer.headers["Content-Security-Policy"]
        assert "script-src 'self';" in csp
        assert "unsafe-inline" not in csp
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert answer.headers["Referrer-Policy"] == "no-referrer"
        assert answer.headers["Cache-Control"]
    page_html = httpx.get(daemon.base_url + "/ui").text
    # No inline script or style for the policy to block.
    assert "<style" not in page_html
    assert " style=" not in page_html
    assert re.search(r"<script(?![^>]*\bsrc=)", page_html) is None
    assert page_html.startswith("<!doctype html>")
