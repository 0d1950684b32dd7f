"""Repositories: bare mirrors of remote git repositories, and worktrees of them as workspaces.

The pure rules (remote URLs, forges, branch names, scrubbing) are in ``_rules``; the
git commands, run through trio, in ``_git``; removing a kept workspace (a worktree
through git, then its directory) in ``_removal``. Everything public is re-exported here.
"""

from ._forge import (
    ForgeCall,
    ForgeError,
    OpenedPullRequest,
    create_call,
    find_call,
    open_pull_request,
    read_created,
    read_found,
)
from ._git import (
    ASKPASS,
    PASSWORD_VARIABLE,
    GitError,
    add_worktree,
    branches_checked_out,
    changes,
    commit_all,
    ensure_mirror,
    git,
    push,
    remove_worktree,
)
from ._removal import remove_workspace
from ._rules import (
    REDACTED,
    Forge,
    Remote,
    check_branch,
    default_api_url,
    derive_forge,
    display_url,
    parse_remote,
    scrub,
)

__all__ = [
    "ASKPASS",
    "PASSWORD_VARIABLE",
    "REDACTED",
    "Forge",
    "ForgeCall",
    "ForgeError",
    "GitError",
    "OpenedPullRequest",
    "Remote",
    "add_worktree",
    "branches_checked_out",
    "changes",
    "check_branch",
    "commit_all",
    "create_call",
    "default_api_url",
    "derive_forge",
    "display_url",
    "ensure_mirror",
    "find_call",
    "git",
    "open_pull_request",
    "parse_remote",
    "push",
    "read_created",
    "read_found",
    "remove_workspace",
    "remove_worktree",
    "scrub",
]
