"""Files the daemon ships and serves to browsers: the API explorer's, the dashboard's.

Each is an :class:`Asset`: where it is served, where it ships in
``chamberlain/web/static``, its media type.  :func:`asset_routes` makes their
routes, public and left out of ``/openapi.json`` (``in_spec=False``): they are how
a browser shows a page, not something a client of the API calls.  The page that
names them is an operation of its own module.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from importlib import resources

import attrs

from chamberlain.web.auth import PUBLIC
from chamberlain.web.handler import Call, Handler, Reply
from chamberlain.web.intake import NO_QUERY
from chamberlain.web.spec import ResponseSpec, Route


@attrs.frozen(kw_only=True)
class Asset:
    """One file a page loads: where it is served, where it ships, its type."""

    path: str
    resource: str
    media_type: str
    operation_id: str


@functools.cache
def static_file(resource: str) -> bytes:
    """A file shipped in ``chamberlain/web/static`` (read once, then kept)."""
    return (resources.files("chamberlain.web") / "static" / resource).read_bytes()


def asset_routes(
    assets: Iterable[Asset],
    *,
    headers: Mapping[str, str],
    summary: str,
    documented: Mapping[str, str] | None = None,
) -> tuple[Route, ...]:
    """A public ``GET`` route for each of ``assets``, answering with ``headers``.

    ``summary`` is followed by the file's name; ``documented`` describes the
    headers every answer carries (None: none described).
    """
    return tuple(
        Route(
            operation_id=asset.operation_id,
            method="GET",
            path=asset.path,
            handler=_serve(asset, headers),
            access=PUBLIC,
            summary=f"{summary} {asset.path.rsplit('/', 1)[1]}",
            tag="daemon",
            responses=(
                ResponseSpec(
                    status=200,
                    description="The file.",
                    schema=None,
                    media_type=asset.media_type.split(";")[0],
                    headers=dict(documented or {}),
                ),
                NO_QUERY,
            ),
            in_spec=False,
        )
        for asset in assets
    )


def _serve(asset: Asset, headers: Mapping[str, str]) -> Handler:
    async def serve(call: Call) -> Reply:
        return Reply(static_file(asset.resource), media_type=asset.media_type, headers=headers)

    serve.__doc__ = f"``GET {asset.path}``: a file shipped with the daemon."
    return serve
