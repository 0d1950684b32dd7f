"""What a route is: one record holding everything the app and the docs need.

The app builds its URL rules, authentication and query checks from these records,
and :mod:`chamberlain.web.openapi` builds the API description from the very same
ones, so the two cannot disagree; :func:`check_table` refuses a table the app could
not serve as declared.  Routes name their bodies' schemas; the small builders at
the end (:func:`ref`, :func:`object_schema`) are what each feature module writes
its ``SCHEMAS`` with.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import attrs

from chamberlain.web.auth import Access, Public
from chamberlain.web.handler import Handler

_PATH_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

Location = Literal["path", "query"]


@attrs.frozen(kw_only=True)
class Param:
    """A path or query parameter."""

    name: str
    location: Location
    description: str
    schema: Mapping[str, Any] = attrs.field(factory=lambda: {"type": "string"})
    required: bool = False
    #: A query parameter that may be given more than once.
    repeatable: bool = False


@attrs.frozen(kw_only=True)
class BodySpec:
    """A JSON request body: ``schema`` names a component schema."""

    schema: str
    description: str
    required: bool = False


@attrs.frozen(kw_only=True)
class ResponseSpec:
    """One documented answer: ``schema`` names a component schema (None: no body).

    When one status stands for answers of different shapes (a trigger's 200 is a
    duplicate, or a synchronous pipeline's outcome), ``schema`` names each of them:
    the body is one of those.
    """

    status: int
    description: str
    schema: str | tuple[str, ...] | None = "Error"
    #: Headers every such answer carries, name -> description.
    headers: Mapping[str, str] = attrs.field(factory=dict)
    #: Headers only some such answers carry, name -> description (say when).
    optional_headers: Mapping[str, str] = attrs.field(factory=dict)
    #: What the body is; anything but JSON is sent as produced (streams, text, assets).
    media_type: str = "application/json"
    #: Other media types the same answer may come in, as the request asks (content
    #: negotiation): media type -> the body's schema name (None: not described).
    alternatives: Mapping[str, str | None] = attrs.field(factory=dict)


def _check_path(route: Route, attribute: attrs.Attribute[Any], value: str) -> None:
    if not value.startswith("/"):
        raise ValueError(f"route {route.operation_id}: path must start with '/': {value!r}")
    if value.endswith("/") and value != "/" and route.in_spec:
        # werkzeug would redirect the slash-less form, with an HTML body.  Only a
        # route outside the API (the redirect from /docs/) may end with '/', and only
        # beside its slash-less twin: see check_table.  The root, "/", has no
        # slash-less form.
        raise ValueError(f"route {route.operation_id}: path must not end with '/': {value!r}")


@attrs.frozen(kw_only=True)
class Route:
    """One method on one path, with its handler, access rule and documentation."""

    operation_id: str
    method: str
    #: An OpenAPI path template: ``/job/{job_id}``.
    path: str = attrs.field(validator=_check_path)
    handler: Handler = attrs.field(eq=False)
    access: Access
    summary: str
    description: str = ""
    tag: str
    params: tuple[Param, ...] = ()
    body: BodySpec | None = None
    responses: tuple[ResponseSpec, ...]
    #: This route's largest body, when it differs from ``api.max_body_size``.
    body_limit: int | None = None
    #: False for a route the app serves that is no operation of the API (the
    #: explorer's files, the redirect to it): ``/openapi.json`` leaves it out.
    in_spec: bool = True
    #: Path parameters matched by a URL converter of the app's (see
    #: ``chamberlain.web.app.CONVERTERS``) instead of any one segment: the
    #: converter's name, by parameter.
    converters: Mapping[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        declared = {p.name for p in self.params if p.location == "path"}
        if declared != set(self.path_names):
            raise ValueError(
                f"route {self.operation_id}: path parameters {sorted(self.path_names)} in"
                f" {self.path!r} do not match the declared ones {sorted(declared)}"
            )

    @property
    def path_names(self) -> tuple[str, ...]:
        """Names of the path's parameters, in order."""
        return tuple(_PATH_PARAM.findall(self.path))

    @property
    def rule(self) -> str:
        """The path as a Quart URL rule: ``/job/<job_id>``, ``/x/<converter:name>``."""

        def parameter(match: re.Match[str]) -> str:
            name = match[1]
            converter = self.converters.get(name)
            return f"<{name}>" if converter is None else f"<{converter}:{name}>"

        return _PATH_PARAM.sub(parameter, self.path)

    @property
    def public(self) -> bool:
        """True when the route answers without a token."""
        return isinstance(self.access, Public)

    @property
    def query_params(self) -> Mapping[str, Param]:
        """The query parameters this route accepts, by name."""
        return {p.name: p for p in self.params if p.location == "query"}

    def query_problem(self, query: Mapping[str, Sequence[str]]) -> str | None:
        """What is wrong with ``query`` for this route (None: nothing).

        Unknown parameters are refused rather than ignored: a misspelt filter that
        is ignored returns an answer to a question nobody asked.
        """
        accepted = self.query_params
        for name in sorted(query):
            param = accepted.get(name)
            if param is None:
                if not accepted:
                    return f"unknown query parameter {name!r}; this route takes none"
                return f"unknown query parameter {name!r}; expected: {', '.join(sorted(accepted))}"
            if len(query[name]) > 1 and not param.repeatable:
                return f"query parameter {name!r} given more than once"
        return None


def check_table(routes: Iterable[Route]) -> None:
    """Refuse a route table the app could not serve as declared.

    Two routes for one method and path are an error.  So is a path ending in '/'
    without its slash-less twin for the same method: werkzeug matches each of the
    two exactly when both exist, but with the slashed one alone it answers the
    slash-less path with a redirect.
    """
    keys: set[tuple[str, str]] = set()
    for route in routes:
        key = (route.method, route.path)
        if key in keys:
            raise ValueError(f"two routes for {route.method} {route.path}")
        keys.add(key)
    for method, path in keys:
        if path != "/" and path.endswith("/") and (method, path.rstrip("/")) not in keys:
            raise ValueError(
                f"route {method} {path}: a path ending in '/' needs {method} {path.rstrip('/')}"
            )


#: Schema fragments the feature modules' ``SCHEMAS`` share.
STRING: Mapping[str, Any] = {"type": "string"}
NULLABLE_STRING: Mapping[str, Any] = {"type": ["string", "null"]}
NULLABLE_TIME: Mapping[str, Any] = {"type": ["string", "null"], "format": "date-time"}

_REF = "#/components/schemas/"


def ref(name: str) -> dict[str, str]:
    """A reference to the component schema ``name``."""
    return {"$ref": _REF + name}


def object_schema(
    properties: Mapping[str, Any], *, required: Iterable[str] | None = None, closed: bool = False
) -> dict[str, Any]:
    """An object schema: every property required unless ``required`` says which.

    ``closed`` refuses properties not listed (``additionalProperties: false``).
    """
    schema: dict[str, Any] = {
        "type": "object",
        "properties": dict(properties),
        "required": list(properties) if required is None else list(required),
    }
    if closed:
        schema["additionalProperties"] = False
    return schema
