"""A fake of GitHub's and GitLab's pull request APIs, served over real HTTP on 127.0.0.1.

A real server on a daemon thread (not an httpx transport), so the same fake serves
a trio test in this process and a daemon started as a subprocess by an e2e test.
One server speaks both forges: paths under ``/api/v4/`` are GitLab's (so GitLab's
``api_url`` is ``{fake.url}/api/v4``), every other path is GitHub's (its
``api_url`` is ``fake.url``).

What it answers follows the forges' documented answers, refusals included: the
status codes, and the JSON bodies a client reads its errors from (GitHub's 422 for
a pull request that already exists, GitLab's 409 for a merge request, both forges'
401 for a bad token). It keeps no branches: any head and base are taken as pushed.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs

#: The token `running_fake_forge` expects unless told otherwise.
TOKEN = "fake-forge-t0ken/with+odd=chars"
GITHUB_DOCS = "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"


@attrs.frozen(kw_only=True)
class RecordedRequest:
    """A request the fake received.

    ``path`` is as sent, still percent-encoded and without its query (GitLab's
    ``/api/v4/projects/group%2Fname/merge_requests``); ``query`` the decoded query
    (a name given twice keeps its last value); ``headers`` the headers with their
    names lower-cased; ``json`` the parsed body (None without one, or when it was
    not JSON).
    """

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    json: Any


@attrs.frozen(kw_only=True)
class _Answer:
    status: int
    body: bytes
    content_type: str = "application/json; charset=utf-8"


def _json_answer(status: int, document: Any) -> _Answer:
    return _Answer(status=status, body=json.dumps(document).encode())


@attrs.define(eq=False)
class FakeForge:
    """The fake's state: the pull requests opened, the requests received, failures queued.

    Every method may be called from any thread: the server's threads and the test's
    share it under one lock.
    """

    #: The token a request must carry; None accepts any request, with or without one.
    token: str | None
    url: str = ""
    _lock: threading.Lock = attrs.field(factory=threading.Lock)
    _requests: list[RecordedRequest] = attrs.field(factory=list)
    _failures: list[_Answer] = attrs.field(factory=list)
    # GitHub's pull requests and GitLab's merge requests, by repository path.
    _pulls: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)
    _merge_requests: dict[str, list[dict[str, Any]]] = attrs.field(factory=dict)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received so far, in order (a copy)."""
        with self._lock:
            return list(self._requests)

    def pulls(self, repo: str) -> list[dict[str, Any]]:
        """GitHub's pull requests of ``owner/name``, as the API shows them (copies)."""
        with self._lock:
            return [dict(p) for p in self._pulls.get(repo, [])]

    def merge_requests(self, project: str) -> list[dict[str, Any]]:
        """GitLab's merge requests of the project ``group/.../name`` (copies)."""
        with self._lock:
            return [dict(m) for m in self._merge_requests.get(project, [])]

    def close(self, repo: str, number: int) -> None:
        """Close (GitHub) or merge (GitLab) the pull request ``number`` of ``repo``."""
        with self._lock:
            for pull in self._pulls.get(repo, []):
                if pull["number"] == number:
                    pull["state"] = "closed"
            for merge_request in self._merge_requests.get(repo, []):
                if merge_request["iid"] == number:
                    merge_request["state"] = "merged"

    def fail_next(
        self,
        status: int = 500,
        body: bytes | str | Mapping[str, Any] | list[Any] = b"",
        *,
        content_type: str | None = None,
    ) -> None:
        """Answer the next request with ``status`` and ``body`` instead of serving it.

        Queued: each call fails one more request. A mapping or a list is sent as
        JSON, a string or bytes as they are (plain text unless ``content_type`` says
        otherwise). The failed request is recorded all the same.
        """
        if isinstance(body, Mapping | list):
            answer = _json_answer(status, body)
        else:
            raw = body.encode() if isinstance(body, str) else body
            answer = _Answer(
                status=status, body=raw, content_type=content_type or "text/plain; charset=utf-8"
            )
        if content_type is not None:
            answer = attrs.evolve(answer, content_type=content_type)
        with self._lock:
            self._failures.append(answer)

    # -- serving (on the server's threads) ------------------------------------------

    def _answer(self, request: RecordedRequest) -> _Answer:
        with self._lock:
            self._requests.append(request)
            if self._failures:
                return self._failures.pop(0)
            if request.path.startswith("/api/v4/"):
                return self._gitlab(request)
            return self._github(request)

    def _github(self, request: RecordedRequest) -> _Answer:
        segments = request.path.split("/")
        # ["", "repos", owner, name, "pulls"]
        if len(segments) != 5 or segments[1] != "repos" or segments[4] != "pulls":
            return _json_answer(
                404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}
            )
        if self.token is not None:
            authorization = request.headers.get("authorization")
            scheme, _, given = (authorization or "").partition(" ")
            if authorization is None:
                return _json_answer(
                    401,
                    {
                        "message": "Requires authentication",
                        "documentation_url": "https://docs.github.com/rest",
                        "status": "401",
                    },
                )
            if scheme.lower() not in ("bearer", "token") or given != self.token:
                return _json_answer(
                    401,
                    {
                        "message": "Bad credentials",
                        "documentation_url": "https://docs.github.com/rest",
                        "status": "401",
                    },
                )
        owner, name = (urllib.parse.unquote(s) for s in segments[2:4])
        repo = f"{owner}/{name}"
        pulls = self._pulls.setdefault(repo, [])
        if request.method == "GET":
            return _json_answer(200, _github_list(pulls, request.query))
        if request.method != "POST":
            return _json_answer(404, {"message": "Not Found"})
        document = request.json
        if not isinstance(document, dict):
            return _json_answer(
                400,
                {
                    "message": "Problems parsing JSON",
                    "documentation_url": GITHUB_DOCS,
                    "status": "400",
                },
            )
        for field in ("head", "base", "title"):
            if not isinstance(document.get(field), str) or not document[field]:
                return _json_answer(
                    422,
                    {
                        "message": f'Invalid request.\n\n"{field}" wasn\'t supplied.',
                        "documentation_url": GITHUB_DOCS,
                        "status": "422",
                    },
                )
        head, base = document["head"], document["base"]
        label = head if ":" in head else f"{owner}:{head}"
        if any(
            p["state"] == "open" and p["head"]["label"] == label and p["base"]["ref"] == base
            for p in pulls
        ):
            return _json_answer(
                422,
                {
                    "message": "Validation Failed",
                    "errors": [
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {label}.",
                        }
                    ],
                    "documentation_url": GITHUB_DOCS,
                    "status": "422",
                },
            )
        number = len(pulls) + 1
        pull = {
            "id": 1000 + number,
            "number": number,
            "url": f"{self.url}/repos/{repo}/pulls/{number}",
            "html_url": f"https://github.com/{repo}/pull/{number}",
            "state": "open",
            "draft": bool(document.get("draft", False)),
            "title": document["title"],
            "body": document.get("body"),
            "head": {"ref": label.partition(":")[2], "label": label},
            "base": {"ref": base, "label": f"{owner}:{base}"},
        }
        pulls.append(pull)
        return _json_answer(201, pull)

    def _gitlab(self, request: RecordedRequest) -> _Answer:
        segments = request.path.split("/")
        # ["", "api", "v4", "projects", id, "merge_requests"]: the id is one segment,
        # its slashes encoded, as GitLab requires.
        if len(segments) != 6 or segments[3] != "projects" or segments[5] != "merge_requests":
            return _json_answer(404, {"error": "404 Not Found"})
        if self.token is not None:
            given = request.headers.get("private-token")
            if given is None:
                scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
                given = bearer if scheme.lower() == "bearer" else None
            if given != self.token:
                return _json_answer(401, {"message": "401 Unauthorized"})
        project = urllib.parse.unquote(segments[4])
        if project.count("/") < 1:
            return _json_answer(404, {"message": "404 Project Not Found"})
        merge_requests = self._merge_requests.setdefault(project, [])
        if request.method == "GET":
            return _json_answer(200, _gitlab_list(merge_requests, request.query))
        if request.method != "POST":
            return _json_answer(405, {"message": "405 Method Not Allowed"})
        document = request.json
        if not isinstance(document, dict):
            return _json_answer(400, {"message": "400 Bad request"})
        missing = [
            f"{field} is missing"
            for field in ("source_branch", "target_branch", "title")
            if not isinstance(document.get(field), str) or not document[field]
        ]
        if missing:
            return _json_answer(400, {"error": ", ".join(missing)})
        source, target = document["source_branch"], document["target_branch"]
        for other in merge_requests:
            if (
                other["state"] == "opened"
                and other["source_branch"] == source
                and other["target_branch"] == target
            ):
                return _json_answer(
                    409,
                    {
                        "message": [
                            "Another open merge request already exists for this source "
                            f"branch: !{other['iid']}"
                        ]
                    },
                )
        iid = len(merge_requests) + 1
        title = document["title"]
        draft = title.lower().startswith(("draft:", "[draft]", "(draft)"))
        merge_request = {
            "id": 2000 + iid,
            "iid": iid,
            "title": title,
            "description": document.get("description"),
            "state": "opened",
            "source_branch": source,
            "target_branch": target,
            "draft": draft,
            "work_in_progress": draft,
            "web_url": f"https://gitlab.com/{project}/-/merge_requests/{iid}",
        }
        merge_requests.append(merge_request)
        return _json_answer(201, merge_request)


def _github_list(pulls: list[dict[str, Any]], query: Mapping[str, str]) -> list[dict[str, Any]]:
    state = query.get("state", "open")
    found = [p for p in pulls if state == "all" or p["state"] == state]
    # GitHub's head filter is user:ref-name; without the user it filters nothing.
    head = query.get("head")
    if head is not None and ":" in head:
        found = [p for p in found if p["head"]["label"] == head]
    if "base" in query:
        found = [p for p in found if p["base"]["ref"] == query["base"]]
    return sorted(found, key=lambda p: -int(p["number"]))


def _gitlab_list(
    merge_requests: list[dict[str, Any]], query: Mapping[str, str]
) -> list[dict[str, Any]]:
    state = query.get("state", "all")
    found = [m for m in merge_requests if state == "all" or m["state"] == state]
    for field in ("source_branch", "target_branch"):
        if field in query:
            found = [m for m in found if m[field] == query[field]]
    return sorted(found, key=lambda m: -int(m["iid"]))


def _handler(forge: FakeForge) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                document = json.loads(raw) if raw else None
            except ValueError:
                document = None
            path, _, query = self.path.partition("?")
            request = RecordedRequest(
                method=self.command,
                path=path,
                query=dict(urllib.parse.parse_qsl(query, keep_blank_values=True)),
                headers={name.lower(): value for name, value in self.headers.items()},
                json=document,
            )
            answer = forge._answer(request)
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the requests are recorded; stderr stays the test's

    return Handler


@contextmanager
def running_fake_forge(token: str | None = TOKEN) -> Iterator[FakeForge]:
    """Serve a `FakeForge` expecting ``token`` on 127.0.0.1 until the block ends."""
    forge = FakeForge(token=token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(forge))
    host, port = server.server_address[:2]
    forge.url = f"http://{host!s}:{port}"
    # A short poll: shutdown() waits for the loop to look, at every test's end.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.01}, name="fake-forge", daemon=True
    )
    thread.start()
    try:
        yield forge
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
