"""What a check step and a CI webhook say about a step: pass or fail, and for which commit.

No I/O here.  A step with ``check: {uses: plugin.command}`` is decided by its
check's response (:func:`check_verdict`); a step with ``wait_for: ci`` by the CI
reports that signed webhooks bring (:func:`ci_signal`), matched to the run by the
commit they are about, never by a branch name (names are reused, and the system
this replaces matched by a branch name its own naming never produced).

The forges' payloads, as their documentation gives them:

* GitHub ``check_suite`` and ``workflow_run`` (``X-GitHub-Event``): ``head_sha``,
  ``status`` and, once ``completed``, ``conclusion``;
* GitHub ``status``: ``sha`` and ``state`` (``pending``, ``success``, ``failure``,
  ``error``);
* GitLab ``Pipeline Hook`` (``object_kind: pipeline``): ``object_attributes.sha``
  and ``.status``.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = [
    "CheckVerdict",
    "CiMatch",
    "CiSignal",
    "CiState",
    "check_verdict",
    "ci_signal",
]

#: A commit id as the forges send it: 40 (SHA-1) or 64 (SHA-256) hex digits.
_SHA: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: GitHub's conclusions that let a commit pass; every other one fails it.
_GITHUB_PASSING: Final = frozenset({"success", "neutral", "skipped"})


class CiState(enum.Enum):
    """What a CI report says of a commit."""

    SUCCESS = "success"
    FAILURE = "failure"
    #: Under way (or queued): it decides nothing yet.
    PENDING = "pending"


#: GitHub's commit statuses that decide (``pending`` does not).
_GITHUB_STATES: Final = {
    "success": CiState.SUCCESS,
    "failure": CiState.FAILURE,
    "error": CiState.FAILURE,
}
#: GitLab's pipeline statuses that end it (``skipped`` ran nothing: it decides nothing).
_GITLAB_STATES: Final = {
    "success": CiState.SUCCESS,
    "failed": CiState.FAILURE,
    "canceled": CiState.FAILURE,
}


@attrs.frozen(kw_only=True)
class CiSignal:
    """One CI report: the commit, its state, and where it came from (``github.check_suite``)."""

    sha: str
    state: CiState
    source: str
    #: The report's own name (the workflow, the status context), when it has one.
    name: str | None = None
    #: Where a person sees it.
    url: str | None = None

    def to_json(self) -> dict[str, Any]:
        """As the run's events show it."""
        return {
            "sha": self.sha,
            "state": self.state.value,
            "source": self.source,
            "name": self.name,
            "url": self.url,
        }


@attrs.frozen(kw_only=True)
class CheckVerdict:
    """A check's decision on its step, and its notes."""

    passed: bool
    notes: str = ""


def check_verdict(result: object) -> CheckVerdict:
    """What a check's response ``result`` decides: ``{"verdict": "pass"|"fail", "notes"}``.

    Anything else fails the step, saying why: a check that cannot say "pass" has
    not passed it.
    """
    if not isinstance(result, Mapping):
        return CheckVerdict(passed=False, notes="the check answered no verdict")
    verdict = result.get("verdict")
    notes = result.get("notes")
    text = notes if isinstance(notes, str) else ""
    if verdict == "pass":
        return CheckVerdict(passed=True, notes=text)
    if verdict == "fail":
        return CheckVerdict(passed=False, notes=text)
    return CheckVerdict(
        passed=False,
        notes=f"the check's verdict is {verdict!r}, not 'pass' or 'fail'"
        + (f": {text}" if text else ""),
    )


def _sha(value: object) -> str | None:
    if isinstance(value, str) and _SHA.fullmatch(value.lower()):
        return value.lower()
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _github_run(kind: str, item: object) -> CiSignal | None:
    if not isinstance(item, Mapping):
        return None
    sha = _sha(item.get("head_sha"))
    if sha is None:
        return None
    state = CiState.PENDING
    if item.get("status") == "completed":
        passed = item.get("conclusion") in _GITHUB_PASSING
        state = CiState.SUCCESS if passed else CiState.FAILURE
    # A workflow run has a name of its own; a check suite is named by its app.
    app = item.get("app")
    name = _text(item.get("name")) or (_text(app.get("name")) if isinstance(app, Mapping) else None)
    return CiSignal(
        sha=sha, state=state, source=f"github.{kind}", name=name, url=_text(item.get("html_url"))
    )


def ci_signal(event: str, payload: Mapping[str, Any]) -> CiSignal | None:
    """The CI report in a forge's webhook ``payload``, sent as ``event`` (GitHub's
    ``X-GitHub-Event``: ``check_suite``, ``workflow_run``, ``status``; GitLab's
    ``X-Gitlab-Event``: ``Pipeline Hook``); None when it is no CI report, or names
    no commit."""
    match event:
        case "check_suite" | "workflow_run":
            return _github_run(event, payload.get(event))
        case "status":
            sha = _sha(payload.get("sha"))
            if sha is None:
                return None
            return CiSignal(
                sha=sha,
                state=_GITHUB_STATES.get(str(payload.get("state")), CiState.PENDING),
                source="github.status",
                name=_text(payload.get("context")),
                url=_text(payload.get("target_url")),
            )
        case "Pipeline Hook":
            attributes = payload.get("object_attributes")
            if payload.get("object_kind") != "pipeline" or not isinstance(attributes, Mapping):
                return None
            sha = _sha(attributes.get("sha"))
            if sha is None:
                return None
            return CiSignal(
                sha=sha,
                state=_GITLAB_STATES.get(str(attributes.get("status")), CiState.PENDING),
                source="gitlab.pipeline",
                name=_text(attributes.get("name")) or _text(attributes.get("ref")),
                url=_text(attributes.get("url")),
            )
    return None


@attrs.frozen(kw_only=True)
class CiMatch:
    """A run step a CI report was about, and what it made of it."""

    run_id: str
    step_id: str
    state: CiState
