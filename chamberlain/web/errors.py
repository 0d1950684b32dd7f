"""HTTP errors as values: what a handler raises when it refuses a request.

Every refusal the API makes, from a malformed body to an unknown job, is an
:class:`ApiError`.  The app turns it into the one error shape clients ever see,
``{"error": "..."}`` with the status and headers carried here, so no code path
can answer with HTML or a traceback.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


class ApiError(Exception):
    """A request the API refuses, with the status and message the client gets."""

    def __init__(
        self, status: int, message: str, *, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers: Mapping[str, str] = (
            MappingProxyType(dict(headers)) if headers else _NO_HEADERS
        )

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the client."""
        return error_body(self.message)


def error_body(message: str, **extra: Any) -> dict[str, Any]:
    """The error shape every non-2xx answer uses: ``{"error": message, ...}``."""
    return {"error": message, **extra}


class JobConflict(ApiError):
    """409 with the job's status in the body, so a client need not ask again."""

    def __init__(self, message: str, *, status: str, **extra: Any) -> None:
        super().__init__(409, message)
        self.job_status = status
        self.extra = extra

    def body(self) -> dict[str, Any]:
        """``{"error": ..., "status": <the job's status>, ...}``."""
        return error_body(self.message, status=self.job_status, **self.extra)


def bad_request(message: str) -> ApiError:
    """400: the request is malformed or a value is out of range."""
    return ApiError(400, message)


def not_found(message: str) -> ApiError:
    """404: the plugin, command, job or route does not exist."""
    return ApiError(404, message)


def too_large(limit: int) -> ApiError:
    """413: the body is over ``api.max_body_size``."""
    return ApiError(413, f"request body is larger than the limit of {limit} bytes")


def unavailable(message: str, *, retry_after: int | None = None) -> ApiError:
    """503: the daemon cannot take this request now; trying again later may work."""
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return ApiError(503, message, headers=headers)


def disk_full(detail: str) -> ApiError:
    """507: the daemon's disk refused to store the request; nothing of it was kept."""
    return ApiError(507, f"disk full: {detail}", headers={"Retry-After": "5"})
