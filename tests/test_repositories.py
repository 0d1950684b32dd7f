"""The git layer of repositories: its pure rules, and real git on local bare remotes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from chamberlain.records import Changes
from chamberlain.repositories import (
    ASKPASS,
    REDACTED,
    GitError,
    Remote,
    add_worktree,
    branches_checked_out,
    changes,
    check_branch,
    commit_all,
    default_api_url,
    derive_forge,
    display_url,
    ensure_mirror,
    git,
    parse_remote,
    push,
    remove_worktree,
    scrub,
)

TOKEN = "ghp_s3cr3t/T0ken+with=odd&chars"
IDENTITY = ["-c", "user.name=Seed", "-c", "user.email=seed@example.invalid"]

# --- the pure rules ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "path", "forge_repo", "scheme"),
    [
        (
            "https://github.com/owner/name.git",
            "github.com",
            "/owner/name.git",
            "owner/name",
            "https",
        ),
        ("https://GitHub.com/owner/name", "github.com", "/owner/name", "owner/name", "https"),
        ("https://gitlab.com/g/sub/p.git", "gitlab.com", "/g/sub/p.git", "g/sub/p", "https"),
        ("http://git.example:8080/a/b", "git.example", "/a/b", "a/b", "http"),
        ("git@github.com:owner/name.git", "github.com", "owner/name.git", "owner/name", "ssh"),
        ("ssh://git@gitlab.com:22/g/p.git", "gitlab.com", "/g/p.git", "g/p", "ssh"),
        ("file:///srv/git/x.git", "", "/srv/git/x.git", None, "file"),
        ("/srv/git/x.git", "", "/srv/git/x.git", None, "file"),
        ("https://example.com/single", "example.com", "/single", None, "https"),
    ],
)
def test_parse_remote(url: str, host: str, path: str, forge_repo: str | None, scheme: str) -> None:
    assert parse_remote(url) == Remote(
        url=url,
        host=host,
        path=path,
        forge_repo=forge_repo,
        scheme=scheme,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://user:tok@github.com/o/n.git",
        "https://tok@github.com/o/n.git",
        "http://u:p@example.com/o/n",
        "ssh://git:pw@example.com/o/n",
        "git:pw@example.com:o/n",
    ],
)
def test_parse_remote_refuses_credentials(url: str) -> None:
    with pytest.raises(ValueError, match="credentials belong in the repository's token") as info:
        parse_remote(url)
    assert "tok" not in str(info.value).replace("token", "")
    assert "pw" not in str(info.value) and ":p@" not in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "",
        "relative/path",
        "-uoops",
        "ext::sh -c touch% /tmp/x",
        "ftp://h/x",
        " https://h/a/b",
        "https://h/a b",
        "https:///a/b",
        "file://otherhost/x",
        "https://h/a/b?x=1",
    ],
)
def test_parse_remote_refuses_what_git_must_not_get(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_remote(url)


def test_display_url_drops_user_info() -> None:
    assert display_url("https://user:tok@github.com/o/n.git") == "https://github.com/o/n.git"
    assert display_url("https://a:b@c@h.example/x") == "https://h.example/x"
    assert display_url("ssh://git@h.example/x") == "ssh://h.example/x"
    assert display_url("git@github.com:o/n.git") == "github.com:o/n.git"
    assert display_url("https://github.com/o/n") == "https://github.com/o/n"
    assert display_url("/srv/x@y.git") == "/srv/x@y.git"


def test_forges_and_their_apis() -> None:
    assert derive_forge(parse_remote("https://github.com/o/n")) == "github"
    assert derive_forge(parse_remote("git@gitlab.com:g/p.git")) == "gitlab"
    assert derive_forge(parse_remote("https://git.example/o/n")) == "none"
    assert derive_forge(parse_remote("/srv/x.git")) == "none"
    assert default_api_url("github") == "https://api.github.com"
    assert default_api_url("gitlab") == "https://gitlab.com/api/v4"
    assert default_api_url("none") is None


@pytest.mark.parametrize("name", ["main", "job/1234-fix", "feature/a.b", "ünïcode", "a@b"])
def test_check_branch_accepts(name: str) -> None:
    assert check_branch(name) == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("", "empty"),
        ("a..b", r"'\.\.'"),
        ("-x", "starts with '-'"),
        ("a b", "white space"),
        ("a\tb", "control"),
        ("a~1", "'~'"),
        ("a^", r"'\^'"),
        ("a:b", "':'"),
        ("a?", r"'\?'"),
        ("a*", r"'\*'"),
        ("a[", r"'\['"),
        ("a\\b", "'"),
        ("x.lock", r"\.lock"),
        ("a/b.lock/c", r"\.lock"),
        ("a/", "ends with '/'"),
        ("/a", "starts or ends"),
        ("a@{1}", "'@{'"),
        ("@", "reserved"),
        ("HEAD", "reserved"),
        ("a//b", "'//'"),
        ("a.", "ends with '.'"),
        ("a/.b", "starts with '.'"),
    ],
)
def test_check_branch_refuses(name: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_branch(name)


async def test_check_branch_agrees_with_git() -> None:
    for name in ["main", "job/1", "a..b", "-x", "a b", "x.lock", "a//b", "a@{1}", "a/.b", "ok.x"]:
        try:
            check_branch(name)
            ours = True
        except ValueError:
            ours = False
        try:
            await git(["check-ref-format", "--branch", name])
            theirs = True
        except GitError:
            theirs = False
        assert ours == theirs, name


def test_scrub() -> None:
    text = (
        f"token {TOKEN} again {TOKEN}; encoded "
        "https://h/?t=ghp_s3cr3t%2FT0ken%2Bwith%3Dodd%26chars "
        "fatal: unable to access 'https://user:pw@example.com/o/n.git/': boom"
    )
    scrubbed = scrub(text, [TOKEN, ""])
    assert TOKEN not in scrubbed
    assert "ghp_s3cr3t" not in scrubbed
    assert "user:pw" not in scrubbed
    assert scrubbed.count(REDACTED) == 4
    assert f"https://{REDACTED}@example.com/o/n.git/" in scrubbed
    assert scrub("nothing here", []) == "nothing here"


# --- real git -------------------------------------------------------------------


async def seed_remote(tmp_path: Path) -> tuple[Path, Path]:
    """A bare remote with one commit on main, and the scratch clone that made it."""
    remote = tmp_path / "remote.git"
    scratch = tmp_path / "scratch"
    await git(["init", "--quiet", "--bare", "--initial-branch=main", str(remote)])
    await git(["init", "--quiet", "--initial-branch=main", str(scratch)])
    (scratch / "README").write_text("one\ntwo\n")
    await git(["add", "README"], cwd=scratch)
    await git([*IDENTITY, "commit", "--quiet", "-m", "first"], cwd=scratch)
    await git(["push", "--quiet", str(remote), "main"], cwd=scratch)
    return remote, scratch


async def job_worktree(tmp_path: Path, branch: str) -> tuple[Path, Path, Path, Path]:
    """A seeded remote, its scratch clone, a mirror of it (``r.git``) and a worktree of
    ``branch`` made from main (``work``)."""
    remote, scratch = await seed_remote(tmp_path)
    mirror = tmp_path / "r.git"
    await ensure_mirror(str(remote), mirror)
    work = tmp_path / "work"
    await add_worktree(mirror, work, branch=branch, base="main")
    return remote, scratch, mirror, work


async def add_commit(scratch: Path, remote: Path, name: str) -> str:
    (scratch / name).write_text(name)
    await git(["add", name], cwd=scratch)
    await git([*IDENTITY, "commit", "--quiet", "-m", name], cwd=scratch)
    await git(["push", "--quiet", str(remote), "main"], cwd=scratch)
    return (await git(["rev-parse", "HEAD"], cwd=scratch)).strip()


async def test_ensure_mirror_clones_then_fetches(tmp_path: Path) -> None:
    remote, scratch = await seed_remote(tmp_path)
    mirror = tmp_path / "mirrors" / "r.git"
    await ensure_mirror(str(remote), mirror)
    assert (await git(["rev-parse", "--is-bare-repository"], cwd=mirror)).strip() == "true"
    assert (await git(["config", "--get", "remote.origin.url"], cwd=mirror)).strip() == str(remote)
    assert [p.name for p in mirror.parent.iterdir()] == ["r.git"]  # no staging left

    head = await add_commit(scratch, remote, "second")
    assert (await git(["rev-parse", "main"], cwd=mirror)).strip() != head
    await ensure_mirror(str(remote), mirror)
    assert (await git(["rev-parse", "main"], cwd=mirror)).strip() == head


async def test_a_failed_clone_leaves_nothing(tmp_path: Path) -> None:
    mirror = tmp_path / "mirrors" / "r.git"
    with pytest.raises(GitError) as info:
        await ensure_mirror(str(tmp_path / "nowhere.git"), mirror)
    assert info.value.returncode not in (0, None)
    assert list(mirror.parent.iterdir()) == []


async def test_fetch_keeps_checked_out_branches(tmp_path: Path) -> None:
    # A plain `fetch --prune` would delete a job's branch the remote does not have.
    remote, scratch, mirror, work = await job_worktree(tmp_path, "job/1")
    (work / "new").write_text("x\n")
    assert await commit_all(work, "work", author_name="Job", author_email="job@example.invalid")
    head = (await git(["rev-parse", "HEAD"], cwd=work)).strip()
    main = await add_commit(scratch, remote, "second")

    await ensure_mirror(str(remote), mirror)

    assert (await git(["rev-parse", "refs/heads/job/1"], cwd=mirror)).strip() == head
    assert (await git(["rev-parse", "refs/heads/main"], cwd=mirror)).strip() == main


async def test_worktrees_of_new_and_existing_branches(tmp_path: Path) -> None:
    remote, _ = await seed_remote(tmp_path)
    mirror = tmp_path / "r.git"
    await ensure_mirror(str(remote), mirror)

    first = tmp_path / "ws" / "first"
    await add_worktree(mirror, first, branch="job/new", base="main")
    assert (first / "README").read_text() == "one\ntwo\n"
    assert (await git(["branch", "--show-current"], cwd=first)).strip() == "job/new"
    # A new branch does not track the mirror's branch (a push names its target).
    with pytest.raises(GitError):
        await git(["config", "--get", "branch.job/new.merge"], cwd=mirror)
    assert await branches_checked_out(mirror) == {"job/new"}

    # An existing branch, not checked out anywhere: checked out as it is.
    await remove_worktree(mirror, first)
    existing = tmp_path / "ws" / "existing"
    existing.mkdir()  # an empty directory is fine
    await add_worktree(mirror, existing, branch="job/new", base="main")
    assert (await git(["branch", "--show-current"], cwd=existing)).strip() == "job/new"

    # git refuses a second worktree of the same branch.
    second = tmp_path / "ws" / "second"
    with pytest.raises(GitError, match="job/new"):
        await add_worktree(mirror, second, branch="job/new", base="main")
    assert await branches_checked_out(mirror) == {"job/new"}
    assert not second.exists()


async def test_add_worktree_refuses_a_used_path_and_bad_names(tmp_path: Path) -> None:
    remote, _ = await seed_remote(tmp_path)
    mirror = tmp_path / "r.git"
    await ensure_mirror(str(remote), mirror)
    used = tmp_path / "used"
    used.mkdir()
    (used / "file").write_text("mine")
    with pytest.raises(ValueError, match="not an empty directory"):
        await add_worktree(mirror, used, branch="job/x", base="main")
    assert (used / "file").read_text() == "mine"
    with pytest.raises(ValueError, match="branch name"):
        await add_worktree(mirror, tmp_path / "w", branch="-f", base="main")
    with pytest.raises(GitError):
        await add_worktree(mirror, tmp_path / "w", branch="job/y", base="no-such-base")
    assert await branches_checked_out(mirror) == set()


async def test_remove_worktree(tmp_path: Path) -> None:
    _remote, _, mirror, work = await job_worktree(tmp_path, "job/rm")
    (work / "dirty").write_text("uncommitted")
    (work / "README").write_text("changed")

    await remove_worktree(mirror, work)

    assert not work.exists()
    assert await branches_checked_out(mirror) == set()
    await remove_worktree(mirror, work)  # already gone: fine
    # Only our own path is ever forced: a directory that is no worktree stays.
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "keep").write_text("x")
    with pytest.raises(GitError):
        await remove_worktree(mirror, stranger)
    assert (stranger / "keep").exists()


async def test_a_vanished_worktree_is_pruned(tmp_path: Path) -> None:
    _remote, _, mirror, work = await job_worktree(tmp_path, "job/gone")
    for directory, _, files in os.walk(work, topdown=False):
        for name in files:
            os.unlink(os.path.join(directory, name))
        os.rmdir(directory)
    await remove_worktree(mirror, work)
    assert await branches_checked_out(mirror) == set()
    await add_worktree(mirror, tmp_path / "again", branch="job/gone", base="main")


async def test_commit_all_and_push(tmp_path: Path) -> None:
    remote, _, _mirror, work = await job_worktree(tmp_path, "job/push")

    assert not await commit_all(work, "nothing", author_name="J", author_email="j@example.invalid")

    (work / "added.txt").write_text("a\nb\n")
    message = "Fix it; $(touch pwned) `also` && rm -rf /\n\n# not a comment"
    assert await commit_all(work, message, author_name="Job Bot", author_email="job@x.invalid")
    log = await git(["log", "-1", "--format=%an <%ae>|%cn|%B"], cwd=work)
    assert log.startswith("Job Bot <job@x.invalid>|Job Bot|" + message)
    assert not (work / "pwned").exists()

    await push(work, "job/push", url=str(remote))
    listed = await git(["ls-remote", str(remote)])
    head = (await git(["rev-parse", "HEAD"], cwd=work)).strip()
    assert f"{head}\trefs/heads/job/push" in listed.splitlines()
    # Only the branch went: the mirror's other refs (and its origin) were not pushed.
    assert len(listed.splitlines()) == 3  # HEAD, main, job/push


async def test_changes_counts_everything_in_the_worktree(tmp_path: Path) -> None:
    _remote, _, _mirror, work = await job_worktree(tmp_path, "job/count")
    assert await changes(work, "main") == Changes(files_changed=0, insertions=0, deletions=0)

    (work / "committed.txt").write_text("1\n2\n3\n")
    assert await commit_all(work, "c", author_name="J", author_email="j@example.invalid")
    (work / "README").write_text("one\nTWO\n")  # unstaged: +1 -1
    (work / "staged.txt").write_text("s\n")
    await git(["add", "staged.txt"], cwd=work)
    (work / "untracked.txt").write_text("u\nu\n")
    (work / ".gitignore").write_text("ignored.txt\n")  # untracked too: +1
    (work / "ignored.txt").write_text("not counted\n")
    staged_before = await git(["diff", "--cached", "--name-only"], cwd=work)

    assert await changes(work, "main") == Changes(files_changed=5, insertions=8, deletions=1)
    # The worktree's own index is untouched.
    assert await git(["diff", "--cached", "--name-only"], cwd=work) == staged_before


async def test_a_token_never_shows(tmp_path: Path) -> None:
    remote, _ = await seed_remote(tmp_path)
    mirror = tmp_path / "r.git"
    await ensure_mirror(str(remote), mirror, token=TOKEN)  # local: the token is unused
    await ensure_mirror(str(remote), mirror, token=TOKEN)
    assert TOKEN not in (mirror / "config").read_text()

    unreachable = "https://127.0.0.1:9/x.git"
    with pytest.raises(GitError) as info:
        await ensure_mirror(unreachable, tmp_path / "other.git", token=TOKEN)
    error = info.value
    assert error.returncode not in (0, None)
    assert error.stderr  # git said why
    for shown in (str(error), repr(error), " ".join(error.command), error.stderr):
        assert TOKEN not in shown
        assert "ghp_s3cr3t" not in shown
    assert unreachable in error.command
    assert "127.0.0.1" in str(error)

    work = tmp_path / "work"
    await add_worktree(mirror, work, branch="job/t", base="main")
    (work / "f").write_text("x")
    assert await commit_all(work, "m", author_name="J", author_email="j@example.invalid")
    with pytest.raises(GitError) as pushed:
        await push(work, "job/t", url=unreachable, token=TOKEN)
    assert TOKEN not in str(pushed.value) and TOKEN not in repr(pushed.value)
    for config in (mirror / "config", mirror / "worktrees" / "work" / "config"):
        if config.exists():
            assert TOKEN not in config.read_text()


async def test_the_token_reaches_git_through_askpass_only(tmp_path: Path) -> None:
    assert os.stat(ASKPASS).st_mode & stat.S_IXUSR
    asked = await trio.run_process(
        [str(ASKPASS), "Password for 'https://x-access-token@h': "],
        capture_stdout=True,
        env={"CHAMBERLAIN_GIT_PASSWORD": TOKEN},
    )
    assert asked.stdout == f"{TOKEN}\n".encode()
    asked = await trio.run_process(
        [str(ASKPASS), "Username for 'https://h': "], capture_stdout=True, env={}
    )
    assert asked.stdout == b"x-access-token\n"
    # git gets the token in its environment, never in argv: an alias shows both.
    shown = await git(["-c", "alias.env=!env", "env"], cwd=tmp_path, token=TOKEN)
    variables = dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)
    assert variables["CHAMBERLAIN_GIT_PASSWORD"] == TOKEN
    assert variables["GIT_ASKPASS"] == str(ASKPASS)
    assert variables["GIT_TERMINAL_PROMPT"] == "0"
    assert "VIRTUAL_ENV" not in variables  # a minimal environment


async def test_git_times_out_and_kills_its_group(tmp_path: Path) -> None:
    marker = tmp_path / "survivor"
    with pytest.raises(GitError, match=r"timed out after 0\.5s") as info:
        await git(
            ["-c", f"alias.slow=!(sleep 1; touch {marker}) & wait", "slow"],
            cwd=tmp_path,
            timeout=0.5,
        )
    assert info.value.returncode is None
    await trio.sleep(1.5)
    assert not marker.exists()


async def test_git_error_reads_well(tmp_path: Path) -> None:
    with pytest.raises(GitError) as info:
        await git(["rev-parse", "--verify", "no-such-ref"], cwd=tmp_path)
    error = info.value
    assert error.command[0] == "git" and "rev-parse" in error.command
    assert error.returncode == 128
    assert str(error).startswith(
        "`git -c credential.helper= rev-parse --verify no-such-ref` exited"
    )
    assert "not a git repository" in str(error)
    with pytest.raises(GitError) as info:
        await git(["-c", "alias.loud=!yes error | head -c 10000 >&2; exit 3", "loud"], cwd=tmp_path)
    assert info.value.returncode == 3
    assert 1000 < len(info.value.stderr) <= 2048


async def test_a_git_error_is_scrubbed_of_the_token(tmp_path: Path) -> None:
    # Were the token ever in argv or printed (it is not), the error would not show it.
    leak = 'alias.leak=!echo "$CHAMBERLAIN_GIT_PASSWORD https://u:pw@h.example/x" >&2; exit 1'
    with pytest.raises(GitError) as info:
        await git(["-c", leak, "leak", TOKEN], cwd=tmp_path, token=TOKEN)
    error = info.value
    assert error.stderr.strip() == f"{REDACTED} https://{REDACTED}@h.example/x"
    for shown in (str(error), repr(error), " ".join(error.command), error.stderr):
        assert TOKEN not in shown
        assert "u:pw@" not in shown
    assert error.command[-1] == REDACTED
