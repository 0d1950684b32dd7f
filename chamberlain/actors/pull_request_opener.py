"""Pull requests of worktree jobs: commit the work, push its branch, ask the forge.

``POST /job/{id}/pull-request`` (through the Gateway) and a trigger's
``"pull_request"`` (through the Runner, as the job succeeds) both come here.  One
pull request is opened per workspace, that is per branch: asking again (for the
same job, or for a follow-up working on in the workspace) commits and pushes what
changed since, and answers the pull request already open.  The steps, in order:

1. what the worktree changes from where its branch left its base
   (:func:`chamberlain.repositories.changes`); nothing at all is refused;
2. everything committed as the repository's ``author``, the title (and body) as
   the message, one argv element: no shell ever sees it;
3. the branch pushed to the repository's URL, the token through askpass only;
4. the forge's REST API asked for the pull request (GitHub) or merge request
   (GitLab), unless the repository has no forge: then the branch is all there is.

The Runner's ``stop`` is asked before the push and before the forge, so a job
cancelled while it finishes pushes nothing.  Everything that leaves here, answers
and errors alike, is scrubbed of the token.  Steps on one workspace are serialized;
the forge's own answer to a second request for the same branch ("already exists")
is read as the pull request it names, so a crash between the forge and the store
costs nothing but a second look.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import trio

from chamberlain.actors.mail import GetWorkspace, JobStoreRequest, RecordPullRequest
from chamberlain.actors.mailbox import call
from chamberlain.actors.repository_book import RepositoryBook, forge_of
from chamberlain.plugins.workspace import Workspaces
from chamberlain.records import (
    Job,
    JobStatus,
    PullRequest,
    PullRequestAsk,
    PullRequestRefusal,
    Workspace,
)
from chamberlain.repositories import (
    ForgeError,
    GitError,
    changes,
    commit_all,
    open_pull_request,
    push,
)
from chamberlain.vault import UnknownSecret, Vault


class PullRequestFailed(Exception):
    """git or the forge failed (the text says which, scrubbed): the caller may ask again."""


class PullRequestStopped(Exception):
    """The job was cancelled before its branch was pushed (or before the forge was asked)."""

    def __init__(self, pushed: bool) -> None:
        self.pushed = pushed
        super().__init__(
            "cancelled: its branch was pushed, no pull request was opened"
            if pushed
            else "cancelled: nothing was pushed"
        )


def _never() -> bool:
    return False


@attrs.define(eq=False)
class PullRequestOpener:
    """Opens the pull requests of worktree workspaces; shared by the Gateway and the Runners."""

    store: trio.MemorySendChannel[JobStoreRequest]
    repositories: RepositoryBook
    workspaces: Workspaces
    vault: Vault
    _locks: dict[str, trio.Lock] = attrs.field(factory=dict, init=False)

    async def open_for(self, job: Job, ask: PullRequestAsk) -> PullRequest | PullRequestRefusal:
        """The pull request of a finished job's worktree (``POST /job/{id}/pull-request``).

        Refused for a job that did not succeed, has no repository workspace, or whose
        workspace is gone or in use by a job of it still queued or running (its
        work is not finished).  Raises :class:`PullRequestFailed`.
        """
        if job.status is not JobStatus.SUCCEEDED:
            return PullRequestRefusal.NOT_SUCCEEDED
        workspace_id = job.workspace_id
        if workspace_id is None:
            return PullRequestRefusal.NO_REPOSITORY
        opened = await self.open(job.id, workspace_id, ask, idle=True)
        if isinstance(opened, PullRequest):
            pull_request = opened
            await call(
                self.store,
                lambda r: RecordPullRequest(
                    workspace_id=workspace_id, job_id=job.id, pull_request=pull_request, reply=r
                ),
            )
        return opened

    async def open(
        self,
        job_id: str,
        workspace_id: str,
        ask: PullRequestAsk,
        *,
        idle: bool = False,
        stop: Callable[[], bool] = _never,
    ) -> PullRequest | PullRequestRefusal:
        """Commit, push and open the pull request of workspace ``workspace_id``.

        ``idle`` refuses a workspace a job still uses; ``stop`` is asked before the
        push and before the forge (:class:`PullRequestStopped`).  Raises
        :class:`PullRequestFailed` when git or the forge fails.  Nothing is recorded
        here: the caller keeps what it gets.
        """
        async with self._locks.setdefault(workspace_id, trio.Lock()):
            row: Workspace | None = await call(
                self.store, lambda r: GetWorkspace(workspace_id=workspace_id, reply=r)
            )
            if row is None:
                return PullRequestRefusal.WORKSPACE_GONE
            if row.repository is None or row.branch is None or row.base is None:
                return PullRequestRefusal.NO_REPOSITORY
            if idle and row.in_use:
                return PullRequestRefusal.IN_USE
            path = self.workspaces.kept_path(row.id)
            if path is None or not (path / ".git").exists():
                return PullRequestRefusal.WORKSPACE_GONE
            config = self.repositories.get(row.repository)
            if config is None:
                raise PullRequestFailed(f"repository {row.repository!r} is no longer configured")
            redact = self.vault.redactor.text
            try:
                token = None if config.token is None else self.vault.resolve(config.token)
                found = await changes(path, row.base)
                if found.empty and row.pull_request is None:
                    return PullRequestRefusal.NO_CHANGES
                message = ask.title if not ask.body else f"{ask.title}\n\n{ask.body}"
                await commit_all(
                    path, message, author_name=config.author.name, author_email=config.author.email
                )
                if stop():
                    raise PullRequestStopped(pushed=False)
                await push(path, row.branch, url=config.url, token=token)
            except (GitError, UnknownSecret, ValueError, OSError) as exc:
                raise PullRequestFailed(redact(f"could not push {row.branch}: {exc}")) from None
            if row.pull_request is not None:
                return attrs.evolve(row.pull_request, changes=found)
            target = ask.target_branch or row.base
            forge, forge_repo, api_url = forge_of(config)
            if forge == "none":
                return PullRequest(
                    url=None, number=None, branch=row.branch, target_branch=target, changes=found
                )
            if forge_repo is None or api_url is None:
                raise PullRequestFailed(
                    f"repository {row.repository!r} names no forge_repo (owner/name) for {forge}"
                )
            if stop():
                raise PullRequestStopped(pushed=True)
            try:
                opened = await open_pull_request(
                    forge=forge,
                    api_url=api_url,
                    forge_repo=forge_repo,
                    token=token,
                    head=row.branch,
                    base=target,
                    title=ask.title,
                    body=ask.body,
                    draft=ask.draft,
                )
            except (ForgeError, ValueError) as exc:
                # ValueError: a forge_repo the forge's API cannot name (GitHub's is
                # exactly owner/name).
                raise PullRequestFailed(redact(f"pushed {row.branch}, but {exc}")) from None
            return PullRequest(
                url=opened.url,
                number=opened.number,
                branch=row.branch,
                target_branch=target,
                changes=found,
            )
