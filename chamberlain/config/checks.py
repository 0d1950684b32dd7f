"""Cross-field checks: rules about a section that no single field can state.

Duplicate token names, a backoff maximum below its base, a schedule that could never
fire. The converter runs the check of a record (:data:`POST_CHECKS`) once every field
of it is valid on its own, so these functions may trust each field's type. They are
kept out of :mod:`chamberlain.config.sections` so the records read as a schema.
"""

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

from cattrs.errors import ClassValidationError

from chamberlain.config.problems import Invalid
from chamberlain.config.sections import (
    SCHEDULE_KINDS,
    AuthConfig,
    PluginConfig,
    RetryConfig,
    ScheduleConfig,
    WebhooksConfig,
)
from chamberlain.config.units import format_duration
from chamberlain.schedule import timing as _timing


def _check_webhooks(webhooks: WebhooksConfig) -> None:
    problems: list[Exception] = []
    seen: dict[str, int] = {}
    for index, endpoint in enumerate(webhooks.endpoints):
        if (endpoint.plugin is None) == (endpoint.pipeline is None):
            problems.append(
                Invalid("exactly one of plugin and pipeline is required", at=("endpoints", index))
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
POST_CHECKS: Final[Mapping[type, Callable[[Any], None]]] = {
    AuthConfig: _check_auth,
    RetryConfig: _check_retry,
    ScheduleConfig: _check_schedule,
    PluginConfig: _check_schedule_ids,
    WebhooksConfig: _check_webhooks,
}
