"""Pull requests: ``POST /job/{id}/pull-request``, and the trigger's ``"pull_request"``.

A job that ran in a worktree of a repository (``"workspace": {"repository",
"branch"}``) leaves its work on its branch; this commits it (as the repository's
``author``), pushes the branch and asks the repository's forge for a pull request
(GitHub) or a merge request (GitLab) into ``target_branch`` (default: the
workspace's base).  The work is done by :mod:`chamberlain.actors.pull_request_opener`;
here are the body's rules and the answers.

One pull request per workspace: asking again, for the job or for a follow-up
working on in the same worktree, pushes what changed since and answers the same
pull request.  Refused (409): a job that did not succeed, one without a repository
workspace, a workspace deleted or still used by a queued or running job, and work
that changes nothing.  git or the forge failing is a 502 whose text is theirs,
without the token; the branch may have been pushed then, and asking again is safe.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from chamberlain.actors.pull_request_opener import PullRequestFailed
from chamberlain.records import PullRequestAsk, PullRequestRefusal
from chamberlain.repositories import check_branch
from chamberlain.web.auth import JOBS_RW, Scoped
from chamberlain.web.errors import ApiError, JobConflict, bad_request, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import DISK_FULL, TOO_LARGE, UNAVAILABLE, decode_json_object
from chamberlain.web.jobs import JOB_ID_PARAM
from chamberlain.web.spec import BodySpec, ResponseSpec, Route, object_schema

#: The longest title GitHub takes is 256 characters; GitLab's is 255.
TITLE_MAX: Final = 255
#: GitHub refuses a body above 65,536 characters; GitLab above 1,048,576.
BODY_MAX: Final = 65_536
_FIELDS: Final = ("title", "body", "target_branch", "draft")


def parse_pull_request_ask(value: object, *, path: str = "") -> PullRequestAsk:
    """``{"title", "body"?, "target_branch"?, "draft"?}`` as a :class:`PullRequestAsk`;
    400 naming the field (under ``path``) that breaks a rule."""
    where = path.rstrip(".") or "the request body"
    if not isinstance(value, Mapping):
        raise bad_request(f"{where} must be an object with a title")
    unknown = sorted(str(key) for key in value if key not in _FIELDS)
    if unknown:
        raise bad_request(
            f"unknown field {unknown[0]!r} in {where}; expected: {', '.join(_FIELDS)}"
        )
    title = value.get("title")
    if not isinstance(title, str) or not title.strip():
        raise bad_request(f"{path}title must be a non-empty string")
    if len(title) > TITLE_MAX or any(c in title for c in "\r\n\x00"):
        raise bad_request(f"{path}title must be one line of at most {TITLE_MAX} characters")
    body = value.get("body", "")
    if not isinstance(body, str) or len(body) > BODY_MAX or "\x00" in body:
        raise bad_request(f"{path}body must be a string of at most {BODY_MAX} characters")
    target = value.get("target_branch")
    if target is not None:
        if not isinstance(target, str):
            raise bad_request(f"{path}target_branch must be a branch name")
        try:
            check_branch(target)
        except ValueError as exc:
            raise bad_request(f"{path}target_branch: {exc}") from None
    draft = value.get("draft", False)
    if not isinstance(draft, bool):
        raise bad_request(f"{path}draft must be true or false")
    return PullRequestAsk(title=title.strip(), body=body, target_branch=target, draft=draft)


_REFUSED: Final[Mapping[PullRequestRefusal, str]] = {
    PullRequestRefusal.NOT_SUCCEEDED: "only a succeeded job's work is proposed",
    PullRequestRefusal.NO_REPOSITORY: (
        'it has no repository workspace (trigger it with "workspace": {"repository", "branch"})'
    ),
    PullRequestRefusal.WORKSPACE_GONE: "its workspace was deleted",
    PullRequestRefusal.IN_USE: "a job of its workspace is still queued or running",
    PullRequestRefusal.NO_CHANGES: "it changed nothing in its worktree",
}


async def open_pull_request(call: Call) -> Reply:
    """``POST /job/{job_id}/pull-request``: commit, push, open (or answer the one open)."""
    job_id = call.path["job_id"]
    ask = parse_pull_request_ask(decode_json_object(await call.read_body()))
    job = await call.gateway.get_job(job_id)
    if job is None:
        raise not_found(f"unknown job {job_id!r}")
    try:
        opened = await call.gateway.open_pull_request(job, ask)
    except PullRequestFailed as exc:
        raise ApiError(502, str(exc)) from None
    if isinstance(opened, PullRequestRefusal):
        raise JobConflict(
            f"job {job_id} has no pull request: {_REFUSED[opened]}",
            status=job.status.value,
            reason=opened.value,
        )
    return Reply(opened.to_json())


_CHANGES = object_schema(
    {
        "files_changed": {"type": "integer", "minimum": 0},
        "insertions": {"type": "integer", "minimum": 0},
        "deletions": {"type": "integer", "minimum": 0},
    }
)

SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "Changes": {
        **_CHANGES,
        "description": (
            "How the job's worktree differs from where its branch left its base:"
            " committed or not, untracked files included."
        ),
    },
    "PullRequestRequest": object_schema(
        {
            "title": {"type": "string", "minLength": 1, "maxLength": TITLE_MAX},
            "body": {"type": "string", "maxLength": BODY_MAX},
            "target_branch": {
                "type": ["string", "null"],
                "minLength": 1,
                "description": "Default: the workspace's base branch.",
            },
            "draft": {"type": "boolean"},
        },
        required=["title"],
        closed=True,
    ),
    "PullRequest": object_schema(
        {
            "pr_url": {
                "type": ["string", "null"],
                "description": "null for a repository without a forge: the branch was pushed.",
            },
            "pr_number": {"type": ["integer", "null"]},
            "branch": {"type": "string"},
            "target_branch": {"type": "string"},
            "changes": {"$ref": "#/components/schemas/Changes"},
        }
    ),
}

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="openPullRequest",
        method="POST",
        path="/job/{job_id}/pull-request",
        handler=open_pull_request,
        access=Scoped(JOBS_RW),
        summary="Propose a worktree job's work as a pull request",
        description=(
            "Commits what the job's worktree holds (as the repository's author), pushes"
            " its branch and opens a pull request (GitHub) or merge request (GitLab)."
            " Idempotent: asking again pushes what changed since and answers the same"
            " pull request. See docs/WORKSPACES.md."
        ),
        tag="workspaces",
        params=(JOB_ID_PARAM,),
        body=BodySpec(schema="PullRequestRequest", description="The pull request.", required=True),
        responses=(
            ResponseSpec(
                status=200,
                description="The pull request, opened now or before.",
                schema="PullRequest",
            ),
            ResponseSpec(status=400, description="A bad body or a query parameter."),
            ResponseSpec(status=404, description="Unknown job."),
            ResponseSpec(
                status=409,
                description=(
                    "The job did not succeed, has no repository workspace, its workspace is"
                    " gone or in use, or it changed nothing; `reason` says which."
                ),
                schema="Conflict",
            ),
            TOO_LARGE,
            ResponseSpec(
                status=502,
                description="git or the forge failed; the text is theirs, without the token.",
            ),
            DISK_FULL,
            UNAVAILABLE,
        ),
    ),
)
