"""The rules around pull requests and repositories added at run time, without I/O."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chamberlain.actors.repository_book import RepositoryBook, forge_of
from chamberlain.config import ConfigError, RepositoryConfig, parse_config, parse_repository
from chamberlain.records import Changes, PullRequest, PullRequestAsk
from chamberlain.web.errors import ApiError
from chamberlain.web.pull_requests import parse_pull_request_ask
from chamberlain.web.trigger import parse_trigger_options


def test_a_pull_request_body_is_read_whole() -> None:
    ask = parse_pull_request_ask(
        {"title": "  Add it ", "body": "why", "target_branch": "release/1", "draft": True}
    )
    assert ask == PullRequestAsk(title="Add it", body="why", target_branch="release/1", draft=True)
    assert parse_pull_request_ask({"title": "t"}) == PullRequestAsk(title="t")
    assert PullRequestAsk.from_json(ask.to_json()) == ask


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "the request body must be an object with a title"),
        ({"title": 3}, "title must be a non-empty string"),
        ({"title": "a\rb"}, "title must be one line"),
        ({"title": "t", "body": 5}, "body must be a string"),
        ({"title": "t", "body": "x" * 70_000}, "at most 65536"),
        ({"title": "t", "target_branch": "-x"}, "target_branch: '-x' is not a valid branch"),
        ({"title": "t", "draft": 1}, "draft must be true or false"),
        ({"title": "t", "head": "x"}, "unknown field 'head'"),
    ],
)
def test_a_bad_pull_request_body_is_refused_by_name(body: Any, error: str) -> None:
    with pytest.raises(ApiError) as info:
        parse_pull_request_ask(body)
    assert info.value.status == 400
    assert error in info.value.message


def test_a_trigger_asks_for_a_pull_request_of_its_worktree_only() -> None:
    worktree = {"repository": "app", "branch": "b"}
    options = parse_trigger_options(
        {"workspace": worktree, "pull_request": {"title": "Go"}}, max_timeout=60
    )
    assert options.pull_request == PullRequestAsk(title="Go")
    assert parse_trigger_options({"workspace": worktree, "pull_request": None}, max_timeout=60) == (
        parse_trigger_options({"workspace": worktree}, max_timeout=60)
    )
    for body, error in [
        ({"pull_request": {"title": "Go"}}, "pull_request needs a repository workspace"),
        ({"workspace": True, "pull_request": {"title": "Go"}}, "needs a repository workspace"),
        ({"workspace": worktree, "pull_request": {"draft": True}}, "pull_request.title must"),
    ]:
        with pytest.raises(ApiError) as info:
            parse_trigger_options(body, max_timeout=60)
        assert error in info.value.message, body
    with pytest.raises(ApiError) as info:
        parse_trigger_options(
            {"workspace": worktree, "pull_request": {"title": "t", "x": 1}},
            max_timeout=60,
            path="jobs[2].",
        )
    assert "unknown field 'x' in jobs[2].pull_request" in info.value.message


def test_a_pull_request_and_its_changes_read_back_as_written() -> None:
    opened = PullRequest(
        url="https://github.com/o/r/pull/9",
        number=9,
        branch="b",
        target_branch="main",
        changes=Changes(files_changed=1, insertions=2, deletions=3),
    )
    assert PullRequest.from_json(opened.to_json()) == opened
    pushed_only = PullRequest(
        url=None, number=None, branch="b", target_branch="main", changes=Changes()
    )
    assert PullRequest.from_json(pushed_only.to_json()) == pushed_only
    assert Changes().empty and not opened.changes.empty


def test_a_repository_added_at_run_time_follows_the_config_s_rules() -> None:
    config = parse_repository(
        "extra", {"url": "git@github.com:o/r.git", "token": "${secret:gh}", "author": None}
    )
    assert config.author.name == "Chamberlain"
    assert forge_of(config) == ("github", "o/r", "https://api.github.com")
    given = RepositoryConfig(url="https://git.example/o/r.git", forge="gitlab", api_url="http://x")
    assert forge_of(given) == ("gitlab", "o/r", "http://x")
    for name, spec, error in [
        ("a/b", {"url": "/r"}, "name: invalid repository name 'a/b'"),
        ("ok", {"url": "ext::sh -c x"}, "url:"),
        ("ok", {"url": "/r", "default_branch": "a b"}, "default_branch:"),
        ("ok", {"url": "/r", "api_url": "file:///etc"}, "api_url: must be an http"),
        ("ok", {"url": "/r", "author": {"name": "x\ny"}}, "author.name: may not hold"),
        ("ok", "https://x/y", "expected a mapping"),
        ("sync", {"url": "/r"}, "name: 'sync' is reserved"),
    ]:
        with pytest.raises(ConfigError) as info:
            parse_repository(name, spec)
        assert error in "\n".join(info.value.problems), (name, spec)


def test_the_book_joins_the_config_s_repositories_and_the_added_ones() -> None:
    book = RepositoryBook(configured={"app": RepositoryConfig(url="/app")})
    book.loaded(
        [
            ("extra", RepositoryConfig(url="/extra", token="${secret:tok}")),
            # The config's entry of a name wins over one the store kept.
            ("app", RepositoryConfig(url="/elsewhere")),
        ]
    )
    assert list(book) == ["app", "extra"] and len(book) == 2
    assert book["app"].url == "/app"
    assert (book.source("app"), book.source("extra"), book.source("nope")) == (
        "config",
        "api",
        None,
    )
    book.add("more", RepositoryConfig(url="/more", token="x ${secret:tok} y"))
    assert book.references("tok") == ["repositories[extra].token", "repositories[more].token"]
    assert book.references("other") == []
    book.remove("extra")
    assert "extra" not in book and book.get("extra") is None
    assert list(book) == ["app", "more"]


def test_no_repository_of_the_config_is_named_sync(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"repositories": {"sync": {"url": "/r"}}}, base_dir=tmp_path)
    assert info.value.problems == (
        "repositories.sync: 'sync' is reserved (POST /repositories/sync syncs them all);"
        " name the repository otherwise",
    )
