"""Cross-field checks: rules about a section that no single field can state.

Duplicate token names, a backoff maximum below its base, a schedule that could never
fire. The converter runs the check of a record (:data:`POST_CHECKS`) once every field
of it is valid on its own, so these functions may trust each field's type. They are
kept out of :mod:`chamberlain.config.sections` so the records read as a schema.
"""

import re
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from cattrs.errors import ClassValidationError

from chamberlain.config.problems import Invalid, YamlPath
from chamberlain.config.sections import (
    CONDITION_MAX_DEPTH,
    CONDITION_MAX_NODES,
    SCHEDULE_KINDS,
    AuthConfig,
    ConditionConfig,
    Document,
    LoopConfig,
    PipelineConfig,
    PluginConfig,
    RelayInstanceConfig,
    RelayPeerConfig,
    RemoteIngressConfig,
    RepositoryConfig,
    RetryConfig,
    ScheduleConfig,
    StepConfig,
    WebhooksConfig,
)
from chamberlain.config.units import format_duration
from chamberlain.repositories import check_branch, parse_remote
from chamberlain.schedule import timing as _timing


def _check_webhooks(webhooks: WebhooksConfig) -> None:
    problems: list[Exception] = []
    seen: dict[str, int] = {}
    for index, endpoint in enumerate(webhooks.endpoints):
        targets = [endpoint.plugin is not None, endpoint.pipeline is not None, endpoint.ci]
        if sum(targets) != 1:
            problems.append(
                Invalid(
                    "exactly one of plugin, pipeline and ci is required", at=("endpoints", index)
                )
            )
        if endpoint.path in seen:
            problems.append(
                Invalid(
                    f"duplicate path {endpoint.path!r} (also endpoints[{seen[endpoint.path]}])",
                    at=("endpoints", index, "path"),
                )
            )
        seen.setdefault(endpoint.path, index)
    if problems:
        raise ClassValidationError("invalid webhooks section", problems, WebhooksConfig)


def _check_auth(auth: AuthConfig) -> None:
    problems: list[Exception] = []
    first_by_name: dict[str, int] = {}
    first_by_token: dict[str, int] = {}
    for index, token in enumerate(auth.tokens):
        if token.name in first_by_name:
            first = first_by_name[token.name]
            problems.append(
                Invalid(
                    f"duplicate token name {token.name!r} (also tokens[{first}])",
                    at=("tokens", index, "name"),
                )
            )
        else:
            first_by_name[token.name] = index
        if token.token in first_by_token:
            problems.append(
                Invalid(
                    f"same token value as tokens[{first_by_token[token.token]}]; "
                    "every token must be unique",
                    at=("tokens", index, "token"),
                )
            )
        else:
            first_by_token[token.token] = index
        if auth.api_key is not None and token.token == auth.api_key:
            problems.append(
                Invalid(
                    "same value as api_key; a token must differ from the all-scopes key",
                    at=("tokens", index, "token"),
                )
            )
    if problems:
        raise ClassValidationError("invalid auth section", problems, AuthConfig)


def _check_retry(retry: RetryConfig) -> None:
    if retry.backoff_max < retry.backoff_base:
        raise Invalid(
            f"must be at least backoff_base ({retry.backoff_base:g}s), got {retry.backoff_max:g}s",
            at=("backoff_max",),
        )


def _check_schedule(schedule: ScheduleConfig) -> None:
    problems: list[Exception] = []
    given = [key for key in SCHEDULE_KINDS if getattr(schedule, key) is not None]
    if len(given) != 1:
        got = f"; got {' and '.join(given)}" if given else ""
        problems.append(Invalid(f"exactly one of {', '.join(SCHEDULE_KINDS)} is required{got}"))
    recurring = schedule.every is not None or schedule.cron is not None
    if len(given) == 1 and not recurring:
        for key in ("only_between", "not_on"):
            if getattr(schedule, key):
                problems.append(
                    Invalid(
                        f"applies to recurring schedules (every, cron), not to {given[0]}",
                        at=(key,),
                    )
                )
    if len(set(schedule.not_on)) == len(_timing.WEEKDAY_NAMES):
        problems.append(
            Invalid("excludes every day of the week, so it would never run", at=("not_on",))
        )
    every = schedule.every
    if isinstance(every, _timing.Interval) and schedule.jitter >= every.seconds:
        problems.append(
            Invalid(
                f"must be shorter than the interval ({format_duration(every.seconds)})",
                at=("jitter",),
            )
        )
    if not problems and recurring:
        rule = schedule.every if schedule.every is not None else schedule.cron
        assert rule is not None
        zone, _ = _timing.resolve_zone(schedule.timezone)
        timing = _timing.recurring(
            rule, zone=zone, window=schedule.only_between, not_on=frozenset(schedule.not_on)
        )
        if timing.next_after(time.time()) is None:
            problems.append(
                Invalid(
                    f"never runs: no instant of {given[0]} {schedule.spec!r} falls inside"
                    " only_between and outside not_on"
                )
            )
    if problems:
        raise ClassValidationError("invalid schedule", problems, ScheduleConfig)


def _check_schedule_ids(plugin: PluginConfig) -> None:
    problems: list[Exception] = []
    first: dict[str, int] = {}
    for index, schedule in enumerate(plugin.schedules):
        if schedule.id in first:
            problems.append(
                Invalid(
                    f"duplicate schedule id {schedule.id!r} (also schedules[{first[schedule.id]}]);"
                    " give each schedule of a plugin its own id",
                    at=("schedules", index, "id"),
                )
            )
        else:
            first[schedule.id] = index
    if problems:
        raise ClassValidationError("invalid schedules", problems, PluginConfig)


# Checks that span several fields; they run once every field is valid on its own.
def _condition_height(condition: ConditionConfig) -> int:
    children = (*condition.all_, *condition.any_, *filter(None, (condition.not_,)))
    return 1 + max((_condition_height(c) for c in children), default=0)


def _condition_nodes(condition: ConditionConfig) -> int:
    children = (*condition.all_, *condition.any_, *filter(None, (condition.not_,)))
    return 1 + sum(_condition_nodes(c) for c in children)


def _condition_value_problem(op: str, value: object) -> str | None:
    """Why ``value`` can never work with ``op``, or None; run-time types are checked
    against the input by :mod:`chamberlain.routing.conditions`."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if op in ("startswith", "endswith", "regex") and not isinstance(value, str):
        return f"value must be a string for operator {op!r}"
    if op == "regex":
        assert isinstance(value, str)
        try:
            re.compile(value)
        except re.error as exc:
            return f"invalid regex pattern {value!r}: {exc}"
    if op in ("gt", "gte", "lt", "lte") and not (number or isinstance(value, str)):
        return f"value must be a number or a string for operator {op!r}"
    if op == "in" and not isinstance(value, list | str | Mapping):
        return "value must be a list (or a string or mapping) for operator 'in'"
    if op == "contains" and value is None:
        return "value is required for operator 'contains'"
    if op == "exists" and value is not None and not isinstance(value, bool):
        return "value must be true or false (or left out) for operator 'exists'"
    return None


def _check_condition(condition: ConditionConfig) -> None:
    forms = [
        name
        for name, given in (
            ("path", condition.path is not None),
            ("all", bool(condition.all_)),
            ("any", bool(condition.any_)),
            ("not", condition.not_ is not None),
        )
        if given
    ]
    if len(forms) != 1:
        found = f"got {' and '.join(forms)}" if forms else "got none"
        raise Invalid(f"give exactly one of path (with op and value), all, any or not; {found}")
    if condition.composite:
        if condition.op != "eq" or condition.value is not None:
            raise Invalid(f"op and value belong to a path condition, not to {forms[0]}")
    else:
        problem = _condition_value_problem(condition.op, condition.value)
        if problem is not None:
            raise Invalid(problem)
    if _condition_height(condition) > CONDITION_MAX_DEPTH:
        raise Invalid(f"conditions nest deeper than {CONDITION_MAX_DEPTH} levels")
    if _condition_nodes(condition) > CONDITION_MAX_NODES:
        raise Invalid(f"a condition holds more than {CONDITION_MAX_NODES} predicates")


def _check_step(step: StepConfig) -> None:
    kinds = step.kinds
    if len(kinds) != 1:
        found = f"got {' and '.join(kinds)}" if kinds else "got none"
        raise Invalid(f"give exactly one of uses, call, relay, steps or split; {found}")
    # As in Ductile's compiler: a call, steps or split step hands its input on as it
    # is, so there is nothing for with or baggage to shape.
    for key, given in (("with", step.with_ is not None), ("baggage", bool(step.baggage))):
        if given and step.uses is None:
            raise Invalid(f"{key} belongs to a uses step, not to a {kinds[0]} step")
    for key, given in (
        ("approval", step.approval is not None),
        ("check", step.check is not None),
        ("wait_for", step.wait_for is not None),
    ):
        # A call's steps are the called pipeline's, and a relay hands its event to
        # another gateway: neither has a job of its own to approve or to check.
        if given and step.uses is None:
            raise Invalid(f"{key} belongs to a uses step, not to a {kinds[0]} step")
    if step.if_ is not None and (step.steps or step.split):
        # Ductile ignores it, running every branch; refused so nothing runs unasked.
        raise Invalid(f"if belongs to a uses, call or relay step, not to a {kinds[0]} step")


def _duplicates(values: tuple[str, ...], at: YamlPath, what: str) -> list[Invalid]:
    seen: dict[str, int] = {}
    problems = []
    for index, value in enumerate(values):
        if value in seen:
            problems.append(
                Invalid(
                    f"duplicate {what} {value!r} (also {at[-1]}[{seen[value]}])",
                    at=(*at, index),
                )
            )
        seen.setdefault(value, index)
    return problems


def _check_instance(instance: RelayInstanceConfig) -> None:
    problems = _duplicates(instance.allow, ("allow",), "event type")
    if problems:
        raise ClassValidationError("invalid instance", problems, RelayInstanceConfig)


def _check_peer(peer: RelayPeerConfig) -> None:
    problems = _duplicates(peer.accept, ("accept",), "event type")
    if problems:
        raise ClassValidationError("invalid peer", problems, RelayPeerConfig)


def _check_ingress(ingress: RemoteIngressConfig) -> None:
    problems = _duplicates(tuple(p.name for p in ingress.peers), ("peers",), "peer name")
    problems = [Invalid(str(p), at=(*p.at, "name")) for p in problems]
    if ingress.require_key_id:
        problems.extend(
            Invalid("key_id is required when require_key_id is true", at=("peers", index))
            for index, peer in enumerate(ingress.peers)
            if not peer.key_id.strip()
        )
    if problems:
        raise ClassValidationError("invalid remote_ingress section", problems, RemoteIngressConfig)


def _relay_steps(steps: tuple[StepConfig, ...], at: YamlPath) -> list[tuple[YamlPath, StepConfig]]:
    found: list[tuple[YamlPath, StepConfig]] = []
    for index, step in enumerate(steps):
        here = (*at, index)
        if step.relay is not None:
            found.append((here, step))
        found.extend(_relay_steps(step.steps, (*here, "steps")))
        found.extend(_relay_steps(step.split, (*here, "split")))
    return found


#: The one name no repository may have: ``/repositories/sync`` is a route of its own.
RESERVED_REPOSITORY: Final = "sync"


def _check_document(document: Document) -> None:
    """What spans sections: relay names unique, the service named as Ductile requires,
    every relay step aimed at an enabled instance that allows its event; and no
    repository named ``sync``."""
    problems = _duplicates(tuple(i.name for i in document.instances), ("instances",), "name")
    problems = [Invalid(str(p), at=(*p.at, "name")) for p in problems]
    if (document.instances or document.remote_ingress is not None) and not re.fullmatch(
        r"[a-z0-9]+(?:-[a-z0-9]+)*", document.service.name.strip()
    ):
        problems.append(
            Invalid(
                f"{document.service.name!r} must use lower-case hyphenated form when relay"
                " is configured (instances, remote_ingress): it names this gateway to its"
                " peers",
                at=("service", "name"),
            )
        )
    enabled = {i.name: i for i in document.instances if i.enabled}
    for index, pipeline in enumerate(document.pipelines):
        for at, step in _relay_steps(pipeline.steps, ("pipelines", index, "steps")):
            relay = step.relay
            assert relay is not None
            instance = enabled.get(relay.to.strip())
            if instance is None:
                known = ", ".join(sorted(enabled))
                which = f"enabled: {known}" if known else "no instance is enabled"
                problems.append(
                    Invalid(
                        f"no enabled instance named {relay.to!r} ({which})",
                        at=(*at, "relay", "to"),
                    )
                )
            if not re.fullmatch(r"[a-z0-9]+(?:[._-][a-z0-9]+)*", relay.event.strip()):
                problems.append(
                    Invalid(
                        f"{relay.event!r} must use lower-case dotted form (e.g."
                        " backup.ready): the receiver refuses any other",
                        at=(*at, "relay", "event"),
                    )
                )
            elif instance is not None and instance.allow and relay.event not in instance.allow:
                problems.append(
                    Invalid(
                        f"instance {instance.name!r} does not allow event type"
                        f" {relay.event!r} (allow: {', '.join(instance.allow)})",
                        at=(*at, "relay", "event"),
                    )
                )
    if RESERVED_REPOSITORY in document.repositories:
        problems.append(
            Invalid(
                f"{RESERVED_REPOSITORY!r} is reserved (POST /repositories/sync syncs them all);"
                " name the repository otherwise",
                at=("repositories", RESERVED_REPOSITORY),
            )
        )
    if problems:
        raise ClassValidationError("invalid configuration", problems, Document)


def _check_repository(repository: RepositoryConfig) -> None:
    try:
        parse_remote(repository.url)
    except ValueError as exc:
        raise Invalid(str(exc), at=("url",)) from None
    if repository.forge_repo is not None and repository.forge_repo.count("/") < 1:
        raise Invalid(f"must be owner/name, got {repository.forge_repo!r}", at=("forge_repo",))
    try:
        check_branch(repository.default_branch)
    except ValueError as exc:
        raise Invalid(str(exc), at=("default_branch",)) from None
    if repository.api_url is not None and not repository.api_url.startswith(
        ("https://", "http://")
    ):
        raise Invalid(
            f"must be an http:// or https:// URL, got {repository.api_url!r}", at=("api_url",)
        )
    for field in ("name", "email"):
        value = getattr(repository.author, field)
        if any(c in "<>\n\r\x00" for c in value):
            raise Invalid(f"may not hold <, > or a line break, got {value!r}", at=("author", field))


def _check_loop(loop: LoopConfig) -> None:
    if loop.max_iterations > loop.max_iterations_cap:
        raise Invalid(
            f"must be at most max_iterations_cap ({loop.max_iterations_cap}),"
            f" got {loop.max_iterations}",
            at=("max_iterations",),
        )


def _check_pipeline(pipeline: PipelineConfig) -> None:
    if (pipeline.on is None) == (pipeline.on_hook is None):
        given = "got both" if pipeline.on is not None else "got none"
        raise Invalid(f"give exactly one of on and on-hook; {given}")


POST_CHECKS: Final[Mapping[type, Callable[[Any], None]]] = {
    ConditionConfig: _check_condition,
    AuthConfig: _check_auth,
    RetryConfig: _check_retry,
    LoopConfig: _check_loop,
    RepositoryConfig: _check_repository,
    ScheduleConfig: _check_schedule,
    PluginConfig: _check_schedule_ids,
    WebhooksConfig: _check_webhooks,
    StepConfig: _check_step,
    PipelineConfig: _check_pipeline,
    RelayInstanceConfig: _check_instance,
    RelayPeerConfig: _check_peer,
    RemoteIngressConfig: _check_ingress,
    Document: _check_document,
}
