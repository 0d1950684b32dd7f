"""Opening pull requests: the calls built and the answers read, then real HTTP to a fake forge."""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from fake_forge import TOKEN, FakeForge, running_fake_forge

from chamberlain.repositories import (
    REDACTED,
    ForgeCall,
    ForgeError,
    OpenedPullRequest,
    create_call,
    find_call,
    open_pull_request,
    read_created,
    read_found,
)

SECRET = "ghp_s3cr3t/T0ken+with=odd&chars"
GITHUB_API = "https://api.github.com"
GITLAB_API = "https://gitlab.com/api/v4"
EXISTS_422 = {
    "message": "Validation Failed",
    "errors": [
        {
            "resource": "PullRequest",
            "code": "custom",
            "message": "A pull request already exists for owner:feature.",
        }
    ],
    "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
    "status": "422",
}


def create(forge: str = "github", **changes: Any) -> ForgeCall:
    arguments: dict[str, Any] = {
        "forge": forge,
        "api_url": GITHUB_API if forge == "github" else GITLAB_API,
        "forge_repo": "owner/name",
        "token": SECRET,
        "head": "feature",
        "base": "main",
        "title": "Add a feature",
        "body": "What it does.",
        "draft": False,
    }
    arguments.update(changes)
    return create_call(**arguments)


def encoded(document: Any) -> bytes:
    return json.dumps(document).encode()


# --- the calls ------------------------------------------------------------------------


@pytest.mark.parametrize("api_url", [GITHUB_API, GITHUB_API + "/"])
def test_github_create_call(api_url: str) -> None:
    call = create(api_url=api_url, draft=True)
    assert call.method == "POST"
    assert call.url == "https://api.github.com/repos/owner/name/pulls"
    assert call.json == {
        "title": "Add a feature",
        "head": "feature",
        "base": "main",
        "body": "What it does.",
        "draft": True,
    }
    assert call.headers == {
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "Authorization": f"Bearer {SECRET}",
        "User-Agent": "chamberlain",
    }
    assert call.params == {}


def test_github_without_a_token_sends_no_authorization() -> None:
    for token in (None, ""):
        assert "Authorization" not in create(token=token).headers


@pytest.mark.parametrize("api_url", [GITLAB_API, GITLAB_API + "/"])
def test_gitlab_create_call_quotes_the_whole_project_path(api_url: str) -> None:
    call = create("gitlab", api_url=api_url, forge_repo="group/sub group/name")
    assert call.method == "POST"
    assert (
        call.url == "https://gitlab.com/api/v4/projects/group%2Fsub%20group%2Fname/merge_requests"
    )
    assert call.json == {
        "source_branch": "feature",
        "target_branch": "main",
        "title": "Add a feature",
        "description": "What it does.",
    }
    assert call.headers["PRIVATE-TOKEN"] == SECRET
    assert "Authorization" not in call.headers
    assert "PRIVATE-TOKEN" not in create("gitlab", token=None).headers


def test_a_gitlab_draft_is_a_title_prefix_given_once() -> None:
    assert create("gitlab", draft=True).json == {
        "source_branch": "feature",
        "target_branch": "main",
        "title": "Draft: Add a feature",
        "description": "What it does.",
    }
    for marked in ("Draft: x", "draft:x", "[Draft] x", "(draft) x"):
        call = create("gitlab", draft=True, title=marked)
        assert call.json is not None
        assert call.json["title"] == marked
    # Not a draft: the title is left as it is, whatever it says.
    call = create("gitlab", draft=False, title="Draft: x")
    assert call.json is not None
    assert call.json["title"] == "Draft: x"


def test_the_title_and_body_are_json_values_as_given() -> None:
    title, body = "\"'; $(rm -rf ~) `x` \\n ünï", "line\n--head=evil\n\x00"
    for forge in ("github", "gitlab"):
        call = create(forge, title=title, body=body)
        assert call.json is not None
        assert body in call.json.values()
        assert title in call.json.values()


def test_find_calls() -> None:
    github = find_call(
        forge="github",
        api_url=GITHUB_API + "/",
        forge_repo="owner/name",
        token=SECRET,
        head="feature",
        base="main",
    )
    assert (github.method, github.url, github.json) == (
        "GET",
        "https://api.github.com/repos/owner/name/pulls",
        None,
    )
    assert github.params == {"head": "owner:feature", "base": "main", "state": "open"}
    assert github.headers["Authorization"] == f"Bearer {SECRET}"
    gitlab = find_call(
        forge="gitlab",
        api_url=GITLAB_API,
        forge_repo="g/s/p",
        token=SECRET,
        head="feature",
        base="main",
    )
    assert (gitlab.method, gitlab.url) == (
        "GET",
        "https://gitlab.com/api/v4/projects/g%2Fs%2Fp/merge_requests",
    )
    assert gitlab.params == {"source_branch": "feature", "target_branch": "main", "state": "opened"}


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"forge": "none"}, "no pull requests"),
        ({"forge": "bitbucket"}, "no pull requests"),
        ({"forge_repo": "single"}, "not a repository"),
        ({"forge_repo": "a/../b"}, "not a repository"),
        ({"forge_repo": "a/b/c"}, "owner/name"),
        ({"head": "-x"}, "branch"),
        ({"base": "a..b"}, "branch"),
    ],
)
def test_what_cannot_be_asked_is_a_value_error(changes: dict[str, Any], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        create(**changes)


# --- the answers ----------------------------------------------------------------------


def test_created_answers() -> None:
    github = {"number": 7, "html_url": "https://github.com/owner/name/pull/7", "state": "open"}
    assert read_created(
        forge="github", status=201, content=encoded(github), token=SECRET
    ) == OpenedPullRequest(url="https://github.com/owner/name/pull/7", number=7, created=True)
    gitlab = {"iid": 3, "id": 999, "web_url": "https://gitlab.com/g/p/-/merge_requests/3"}
    assert read_created(
        forge="gitlab", status=201, content=encoded(gitlab), token=SECRET
    ) == OpenedPullRequest(url="https://gitlab.com/g/p/-/merge_requests/3", number=3, created=True)


def test_already_exists_is_recognised() -> None:
    assert read_created(forge="github", status=422, content=encoded(EXISTS_422), token=None) is None
    gitlab = {"message": ["Another open merge request already exists for this source branch: !1"]}
    assert read_created(forge="gitlab", status=409, content=encoded(gitlab), token=None) is None


def test_another_refusal_is_not_taken_for_an_existing_one() -> None:
    other_422 = {
        "message": "Validation Failed",
        "errors": [{"resource": "PullRequest", "code": "custom", "message": "No commits between"}],
    }
    with pytest.raises(ForgeError) as raised:
        read_created(forge="github", status=422, content=encoded(other_422), token=None)
    assert raised.value.status == 422
    assert str(raised.value) == "GitHub answered 422: Validation Failed: No commits between"
    # The exists message on another status, or the other forge's status, is no match.
    with pytest.raises(ForgeError):
        read_created(forge="github", status=409, content=encoded(EXISTS_422), token=None)
    with pytest.raises(ForgeError):
        read_created(forge="gitlab", status=422, content=encoded(EXISTS_422), token=None)


@pytest.mark.parametrize(
    ("forge", "status", "document", "text"),
    [
        (
            "github",
            422,
            {
                "message": "Validation Failed",
                "errors": [{"resource": "PullRequest", "field": "base", "code": "invalid"}],
            },
            "GitHub answered 422: Validation Failed: PullRequest.base invalid",
        ),
        ("github", 404, {"message": "Not Found"}, "GitHub answered 404: Not Found"),
        ("gitlab", 401, {"message": "401 Unauthorized"}, "GitLab answered 401: 401 Unauthorized"),
        (
            "gitlab",
            400,
            {"error": "title is missing"},
            "GitLab answered 400: title is missing",
        ),
        (
            "gitlab",
            422,
            {"message": {"title": ["can't be blank"], "base": ["is wrong", "is bad"]}},
            "GitLab answered 422: title can't be blank; base is wrong; is bad",
        ),
        (
            "gitlab",
            409,
            {"message": ["Source branch is locked"]},
            "GitLab answered 409: Source branch is locked",
        ),
        ("gitlab", 500, {"unexpected": True}, "GitLab answered 500"),
    ],
)
def test_an_error_names_the_forge_the_status_and_what_it_said(
    forge: str, status: int, document: Any, text: str
) -> None:
    with pytest.raises(ForgeError) as raised:
        read_created(forge=forge, status=status, content=encoded(document), token=SECRET)
    assert raised.value.status == status
    assert str(raised.value) == raised.value.message == text


def test_an_answer_that_cannot_be_read_is_a_forge_error() -> None:
    for content in (b"<html>Bad gateway</html>", b"", b"\xff\xfe", b"[1, 2]", b'"text"'):
        with pytest.raises(ForgeError) as raised:
            read_created(forge="github", status=502, content=content, token=None)
        assert raised.value.status == 502
    for document in (
        {},
        {"number": "7", "html_url": "https://x"},
        {"number": True, "html_url": "https://x"},
        {"number": 7, "html_url": None},
        {"iid": 7},
    ):
        with pytest.raises(ForgeError, match="without a pull request"):
            read_created(forge="github", status=201, content=encoded(document), token=None)
    with pytest.raises(ForgeError, match="GitLab answered 201 without a pull request"):
        read_created(forge="gitlab", status=201, content=b"not json", token=None)


def test_a_non_json_error_shows_the_start_of_its_text() -> None:
    with pytest.raises(ForgeError) as raised:
        read_created(forge="gitlab", status=502, content=b"<html>Bad gateway</html>", token=None)
    assert str(raised.value) == "GitLab answered 502: <html>Bad gateway</html>"


def test_the_message_is_truncated() -> None:
    with pytest.raises(ForgeError) as raised:
        read_created(
            forge="github", status=500, content=encoded({"message": "x" * 5000}), token=None
        )
    assert 500 <= len(str(raised.value)) < 600
    assert str(raised.value).endswith("…")


def test_the_token_is_scrubbed_even_when_the_forge_echoes_it() -> None:
    quoted = urllib.parse.quote(SECRET, safe="")
    cut_short = {"message": "y" * 495 + SECRET}
    for document in (
        {"message": f"token {SECRET} is not valid", "errors": [f"bad {quoted}"]},
        {"message": {SECRET: [SECRET]}, "error": f"again {SECRET}"},
        cut_short,
    ):
        for forge in ("github", "gitlab"):
            with pytest.raises(ForgeError) as raised:
                read_created(forge=forge, status=400, content=encoded(document), token=SECRET)
            text = str(raised.value)
            assert SECRET not in text
            assert quoted not in text
            assert SECRET[:8] not in text
            # GitHub's message is a string: the mapping one says nothing to read there.
            if isinstance(document["message"], str) or forge == "gitlab":
                assert REDACTED[:4] in text
    with pytest.raises(ForgeError) as raised:
        read_created(forge="github", status=502, content=SECRET.encode(), token=SECRET)
    assert str(raised.value) == f"GitHub answered 502: {REDACTED}"
    # A text answer cut where the token is, however far in.
    for start in (0, 490, 995, 1000, 5000):
        content = b"z" * start + SECRET.encode() + b" " + b"w" * 100_000
        with pytest.raises(ForgeError) as raised:
            read_created(forge="gitlab", status=500, content=content, token=SECRET)
        assert SECRET[:6] not in str(raised.value)


def test_found_answers() -> None:
    github = [
        {"number": 4, "html_url": "https://github.com/owner/name/pull/4"},
        {"number": 2, "html_url": "https://github.com/owner/name/pull/2"},
    ]
    assert read_found(
        forge="github", status=200, content=encoded(github), token=None
    ) == OpenedPullRequest(url="https://github.com/owner/name/pull/4", number=4, created=False)
    gitlab = [{"iid": 1, "web_url": "https://gitlab.com/g/p/-/merge_requests/1"}]
    assert read_found(forge="gitlab", status=200, content=encoded(gitlab), token=None) == (
        OpenedPullRequest(url="https://gitlab.com/g/p/-/merge_requests/1", number=1, created=False)
    )


@pytest.mark.parametrize(
    ("status", "content", "says"),
    [
        (200, b"[]", "lists no open one"),
        (200, b'{"message": "odd"}', "without a list: odd"),
        (200, b"nope", "without a list: nope"),
        (200, b'[{"number": 1}]', "without a pull request"),
        (403, b'{"message": "API rate limit exceeded"}', "403: API rate limit exceeded"),
    ],
)
def test_a_find_answer_without_a_pull_request_is_a_forge_error(
    status: int, content: bytes, says: str
) -> None:
    with pytest.raises(ForgeError, match=says) as raised:
        read_found(forge="github", status=status, content=content, token=None)
    assert raised.value.status == status
    assert str(raised.value).startswith(f"GitHub answered {status}")


# --- against the fake forge, over HTTP ------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeForge]:
    with running_fake_forge() as forge:
        yield forge


def api_url(fake: FakeForge, forge: str) -> str:
    return fake.url if forge == "github" else f"{fake.url}/api/v4"


async def open_one(fake: FakeForge, forge: str, **changes: Any) -> OpenedPullRequest:
    arguments: dict[str, Any] = {
        "forge": forge,
        "api_url": api_url(fake, forge),
        "forge_repo": "owner/name" if forge == "github" else "group/sub/name",
        "token": TOKEN,
        "head": "feature",
        "base": "main",
        "title": "Add a feature",
        "body": "What it does.",
        "draft": False,
    }
    arguments.update(changes)
    return await open_pull_request(**arguments)


async def test_github_opens_then_finds_the_same_pull_request(fake: FakeForge) -> None:
    first = await open_one(fake, "github")
    assert first == OpenedPullRequest(
        url="https://github.com/owner/name/pull/1", number=1, created=True
    )
    again = await open_one(fake, "github", title="Another title")
    assert again == OpenedPullRequest(url=first.url, number=1, created=False)
    # Another base is another pull request.
    other = await open_one(fake, "github", base="release")
    assert other == OpenedPullRequest(
        url="https://github.com/owner/name/pull/2", number=2, created=True
    )
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/repos/owner/name/pulls"),
        ("POST", "/repos/owner/name/pulls"),
        ("GET", "/repos/owner/name/pulls"),
        ("POST", "/repos/owner/name/pulls"),
    ]
    assert fake.requests[2].query == {"head": "owner:feature", "base": "main", "state": "open"}
    assert [p["title"] for p in fake.pulls("owner/name")] == ["Add a feature", "Add a feature"]


async def test_gitlab_opens_then_finds_the_same_merge_request(fake: FakeForge) -> None:
    first = await open_one(fake, "gitlab", draft=True)
    url = "https://gitlab.com/group/sub/name/-/merge_requests/1"
    assert first == OpenedPullRequest(url=url, number=1, created=True)
    assert await open_one(fake, "gitlab") == OpenedPullRequest(url=url, number=1, created=False)
    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/api/v4/projects/group%2Fsub%2Fname/merge_requests"),
        ("POST", "/api/v4/projects/group%2Fsub%2Fname/merge_requests"),
        ("GET", "/api/v4/projects/group%2Fsub%2Fname/merge_requests"),
    ]
    assert fake.requests[2].query == {
        "source_branch": "feature",
        "target_branch": "main",
        "state": "opened",
    }
    (merge_request,) = fake.merge_requests("group/sub/name")
    assert merge_request["draft"] is True
    assert merge_request["title"] == "Draft: Add a feature"


async def test_a_closed_pull_request_is_not_found_again(fake: FakeForge) -> None:
    for forge, repo in (("github", "owner/name"), ("gitlab", "group/sub/name")):
        first = await open_one(fake, forge)
        fake.close(repo, first.number)
        second = await open_one(fake, forge)
        assert (second.number, second.created) == (2, True)


@pytest.mark.parametrize("forge", ["github", "gitlab"])
async def test_the_fake_recorded_exactly_what_was_sent(fake: FakeForge, forge: str) -> None:
    title, body = "\"'; $(touch /tmp/x) `id` ünïcödé", "line 1\n\n--force\n\\ end"
    await open_one(fake, forge, title=title, body=body, draft=True)
    (request,) = fake.requests
    expected: dict[str, Any]
    if forge == "github":
        expected = {"title": title, "head": "feature", "base": "main", "body": body, "draft": True}
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        assert request.headers["accept"] == "application/vnd.github+json"
        assert request.headers["x-github-api-version"] == "2022-11-28"
    else:
        expected = {
            "source_branch": "feature",
            "target_branch": "main",
            "title": f"Draft: {title}",
            "description": body,
        }
        assert request.headers["private-token"] == TOKEN
        assert "authorization" not in request.headers
    assert request.json == expected
    assert request.headers["user-agent"] == "chamberlain"
    assert request.headers["content-type"] == "application/json"


@pytest.mark.parametrize("forge", ["github", "gitlab"])
async def test_a_bad_token_is_a_401_without_the_token(fake: FakeForge, forge: str) -> None:
    wrong = "wrong-" + SECRET
    with pytest.raises(ForgeError) as raised:
        await open_one(fake, forge, token=wrong)
    assert raised.value.status == 401
    text = str(raised.value)
    assert text.startswith(f"{'GitHub' if forge == 'github' else 'GitLab'} answered 401: ")
    assert ("Bad credentials" if forge == "github" else "401 Unauthorized") in text
    assert wrong not in text
    assert SECRET not in text
    with pytest.raises(ForgeError, match="401"):
        await open_one(fake, forge, token=None)


async def test_the_forge_echoing_the_token_back_is_scrubbed(fake: FakeForge) -> None:
    fake.fail_next(500, {"message": f"internal error for token {TOKEN}"})
    with pytest.raises(ForgeError) as raised:
        await open_one(fake, "github")
    assert str(raised.value) == f"GitHub answered 500: internal error for token {REDACTED}"
    fake.fail_next(502, f"<html>upstream {TOKEN} gone</html>")
    with pytest.raises(ForgeError) as raised:
        await open_one(fake, "gitlab")
    assert raised.value.status == 502
    assert TOKEN not in str(raised.value)
    assert "upstream" in str(raised.value)


async def test_a_failing_lookup_is_a_forge_error(fake: FakeForge) -> None:
    await open_one(fake, "github")
    # The create is refused as existing; then the lookup fails.
    fake.fail_next(422, EXISTS_422)
    fake.fail_next(503, {"message": "Service Unavailable"})
    with pytest.raises(ForgeError) as raised:
        await open_one(fake, "github", head="other")
    assert raised.value.status == 503
    assert str(raised.value) == "GitHub answered 503: Service Unavailable"


async def test_exists_but_not_listed_is_a_forge_error(fake: FakeForge) -> None:
    fake.fail_next(409, {"message": ["Another open merge request already exists: !9"]})
    with pytest.raises(ForgeError, match="lists no open one"):
        await open_one(fake, "gitlab")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.parametrize("forge", ["github", "gitlab"])
async def test_a_refused_connection_is_a_forge_error(forge: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(ForgeError) as raised:
        await open_pull_request(
            forge=forge,
            api_url=url,
            forge_repo="owner/name",
            token=SECRET,
            head="feature",
            base="main",
            title="t",
            body="b",
            draft=False,
        )
    assert raised.value.status is None
    assert str(raised.value).startswith(
        f"{'GitHub' if forge == 'github' else 'GitLab'} not reached at {url}: ConnectError"
    )
    assert SECRET not in str(raised.value)


async def test_a_forge_without_pull_requests_is_a_value_error(fake: FakeForge) -> None:
    with pytest.raises(ValueError, match="no pull requests"):
        await open_one(fake, "none")
    assert fake.requests == []


# --- the fake itself, as the forges answer ------------------------------------------


async def test_the_fake_answers_as_the_forges_do(fake: FakeForge) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=fake.url) as client:
        github = {"Authorization": f"Bearer {TOKEN}"}
        answer = await client.post(
            "/repos/o/r/pulls", json={"head": "h", "base": "main"}, headers=github
        )
        assert answer.status_code == 422
        assert '"title" wasn\'t supplied' in answer.json()["message"]
        answer = await client.post("/repos/o/r/pulls", json={"title": "t"})
        assert (answer.status_code, answer.json()["message"]) == (401, "Requires authentication")
        pr = {"title": "t", "head": "h", "base": "main"}
        assert (await client.post("/repos/o/r/pulls", json=pr, headers=github)).status_code == 201
        answer = await client.post("/repos/o/r/pulls", json=pr, headers=github)
        assert answer.status_code == 422
        exists = json.loads(json.dumps(EXISTS_422).replace("owner:feature", "o:h"))
        assert answer.json() == exists
        listed = await client.get(
            "/repos/o/r/pulls", params={"head": "o:h", "state": "open"}, headers=github
        )
        assert [p["head"] for p in listed.json()] == [{"ref": "h", "label": "o:h"}]
        missed = await client.get("/repos/o/r/pulls", params={"head": "o:x"}, headers=github)
        assert missed.json() == []

        gitlab = {"PRIVATE-TOKEN": TOKEN}
        path = "/api/v4/projects/g%2Fp/merge_requests"
        answer = await client.post(path, json={"title": "t"}, headers=gitlab)
        assert answer.status_code == 400
        assert answer.json() == {"error": "source_branch is missing, target_branch is missing"}
        # The project's path must be one segment.
        answer = await client.post("/api/v4/projects/g/p/merge_requests", json={}, headers=gitlab)
        assert answer.status_code == 404
        mr = {"title": "t", "source_branch": "h", "target_branch": "main"}
        assert (await client.post(path, json=mr, headers=gitlab)).status_code == 201
        answer = await client.post(path, json=mr, headers=gitlab)
        assert (answer.status_code, answer.json()) == (
            409,
            {"message": ["Another open merge request already exists for this source branch: !1"]},
        )
        answer = await client.get(path, params={"source_branch": "nope"}, headers=gitlab)
        assert answer.json() == []
