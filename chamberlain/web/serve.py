"""Serving the app with hypercorn inside the daemon's own nursery.

hypercorn's trio ``serve`` installs no signal handlers, which is what lets the
daemon's root own SIGINT/SIGTERM and decide the shutdown order.  hypercorn's own
logging is redirected: its access log is off (the app writes one structured line per
request) and its error log goes to the ``chamberlain.web`` logger as JSON like every
other record.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.logging import Logger as HypercornLogger
from hypercorn.trio import serve
from hypercorn.typing import ResponseSummary, WWWScope
from quart_trio import QuartTrio

from chamberlain.config import ApiConfig

log = logging.getLogger("chamberlain.web")

#: How long in-flight requests may finish once the server is told to stop.
GRACEFUL_TIMEOUT = 5.0


class _ServerLog(HypercornLogger):
    """hypercorn's logger interface, writing to ``chamberlain.web``."""

    def __init__(self, config: HypercornConfig) -> None:
        # The base class would attach stream handlers to hypercorn's own loggers;
        # none are wanted, so it is deliberately not called.
        self.access_log_format = config.access_log_format
        self.access_logger = None
        self.error_logger = None

    def _emit(
        self, level: int, message: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        extra = {"component": "web", **(kwargs.pop("extra", None) or {})}
        log.log(level, message, *args, extra=extra, **kwargs)

    async def access(
        self, request: WWWScope, response: ResponseSummary, request_time: float
    ) -> None:
        """Dropped: the app logs every request itself, with more context."""

    async def critical(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at CRITICAL."""
        self._emit(logging.CRITICAL, message, args, kwargs)

    async def error(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at ERROR."""
        self._emit(logging.ERROR, message, args, kwargs)

    async def warning(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at WARNING."""
        self._emit(logging.WARNING, message, args, kwargs)

    async def info(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at DEBUG: hypercorn's INFO lines ("Running on ...") repeat our own."""
        self._emit(logging.DEBUG, message, args, kwargs)

    async def debug(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at DEBUG."""
        self._emit(logging.DEBUG, message, args, kwargs)

    async def exception(self, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at ERROR with the current exception."""
        kwargs.setdefault("exc_info", True)
        self._emit(logging.ERROR, message, args, kwargs)

    async def log(self, level: int, message: str, *args: Any, **kwargs: Any) -> None:
        """Log at ``level``."""
        self._emit(level, message, args, kwargs)


def bind_address(host: str, port: int) -> str:
    """hypercorn's bind syntax for ``host``/``port``; IPv6 hosts need brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def hypercorn_config(api: ApiConfig) -> HypercornConfig:
    """The hypercorn settings for ``api``."""
    config = HypercornConfig()
    config.bind = [bind_address(api.host, api.port)]
    config.accesslog = None
    config.errorlog = None
    config.logger_class = _ServerLog
    # The server's name and version are nobody's business.
    config.include_server_header = False
    config.graceful_timeout = GRACEFUL_TIMEOUT
    return config


async def serve_api(
    app: QuartTrio,
    api: ApiConfig,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``api.listen`` until cancelled or ``shutdown_trigger`` returns.

    Reports the bound URLs (``["http://127.0.0.1:PORT"]``; the real port when
    ``listen`` asks for port 0) through ``task_status`` once connections are
    accepted, so ``await nursery.start(serve_api, app, api)`` returns them.
    """
    config = hypercorn_config(api)
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(
            functools.partial(serve, app, config, shutdown_trigger=shutdown_trigger)
        )
        for url in urls:
            log.info("listening on %s", url, extra={"component": "web", "url": url})
        task_status.started(list(urls))
