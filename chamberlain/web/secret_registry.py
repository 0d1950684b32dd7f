"""The secret registry: ``/secrets`` and ``/secrets/{name}``.

``POST /secrets`` registers a secret, ``PUT /secrets/{name}`` rotates it (the next
job gets the new value), ``DELETE`` forgets it unless the config (or an MCP server)
still refers to it, and the two ``GET`` routes tell everything about a secret but
its value: name, description, when it was created and last rotated, and a hint
(``****ab12``).  No route ever answers with a value, and no refusal quotes one:
the messages say what is wrong with a value (too short, too large) without it.

Writing needs ``secrets:rw``; listing needs ``secrets:ro`` (which ``read:*``
grants, as for every resource), and there is no scope that reads values.  The
rules a name and a value must follow are :mod:`chamberlain.sealing`'s; the Gateway
seals the value, the JobStore commits it, and only then does the daemon's vault
(and so its redactor and the next job) see it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from chamberlain.records import rfc3339
from chamberlain.sealing import (
    MAX_DESCRIPTION_LENGTH,
    MAX_SECRET_BYTES,
    MIN_SECRET_LENGTH,
    NAME_PATTERN,
    SecretInfo,
    name_problem,
    value_problem,
)
from chamberlain.web.auth import SECRETS_RO, SECRETS_RW, Scoped
from chamberlain.web.errors import ApiError, bad_request, error_body, not_found
from chamberlain.web.handler import Call, Reply
from chamberlain.web.intake import DISK_FULL, NO_QUERY, TOO_LARGE, UNAVAILABLE, decode_json_object
from chamberlain.web.spec import (
    NULLABLE_STRING,
    NULLABLE_TIME,
    STRING,
    BodySpec,
    Param,
    ResponseSpec,
    Route,
    object_schema,
    ref,
)

#: The fields each body takes.
CREATE_FIELDS = ("name", "value", "description")
ROTATE_FIELDS = ("value", "description")


def secret_json(info: SecretInfo) -> dict[str, Any]:
    """A secret as the API shows it: never its value."""
    return {
        "name": info.name,
        "description": info.description,
        "created_at": rfc3339(info.created_at),
        "rotated_at": rfc3339(info.rotated_at),
        "hint": info.hint,
    }


class SecretInUse(ApiError):
    """409: the secret is referred to; the body lists where."""

    def __init__(self, name: str, references: Sequence[str]) -> None:
        super().__init__(
            409,
            f"secret {name!r} is still referred to by {', '.join(references)};"
            " remove those references first",
        )
        self.references = tuple(references)

    def body(self) -> dict[str, Any]:
        """``{"error": ..., "references": [where, ...]}``."""
        return error_body(self.message, references=list(self.references))


def _path_name(call: Call) -> str:
    name = call.path["name"]
    problem = name_problem(name)
    if problem is not None:
        raise bad_request(f"secret name {name!r} {problem}")
    return name


def _fields(body: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(
            f"unknown field {unknown[0]!r} in the request body; expected: {', '.join(allowed)}"
        )


def _value(body: Mapping[str, Any]) -> str:
    if "value" not in body:
        raise bad_request("value is required: the secret itself, a string")
    value = body["value"]
    problem = value_problem(value)
    if problem is not None:
        raise bad_request(f"value {problem}")
    assert isinstance(value, str)
    return value


def _description(body: Mapping[str, Any]) -> str | None:
    description = body.get("description")
    if description is None:
        return None
    if not isinstance(description, str):
        raise bad_request("description must be a string or null")
    if len(description) > MAX_DESCRIPTION_LENGTH:
        raise bad_request(f"description is longer than {MAX_DESCRIPTION_LENGTH} characters")
    return description


async def list_secrets(call: Call) -> Reply:
    """``GET /secrets``: every secret, by name, without values."""
    found = await call.gateway.list_secrets()
    return Reply({"secrets": [secret_json(info) for info in found]})


async def get_secret(call: Call) -> Reply:
    """``GET /secrets/{name}``: one secret, without its value."""
    name = _path_name(call)
    info = await call.gateway.get_secret(name)
    if info is None:
        raise not_found(f"unknown secret {name!r}")
    return Reply(secret_json(info))


async def create_secret(call: Call) -> Reply:
    """``POST /secrets``: register a new secret."""
    body = decode_json_object(await call.read_body())
    _fields(body, CREATE_FIELDS)
    if "name" not in body:
        raise bad_request("name is required")
    name = body["name"]
    problem = name_problem(name)
    if problem is not None:
        shown = f" {name!r}" if isinstance(name, str) else ""
        raise bad_request(f"name{shown} {problem}")
    value, description = _value(body), _description(body)
    info = await call.gateway.create_secret(name, value, description=description)
    if info is None:
        raise ApiError(
            409, f"secret {name!r} exists already; PUT /secrets/{name} rotates its value"
        )
    return Reply(secret_json(info), 201, headers={"Location": f"/secrets/{name}"})


async def rotate_secret(call: Call) -> Reply:
    """``PUT /secrets/{name}``: give a secret a new value; the next job gets it."""
    name = _path_name(call)
    body = decode_json_object(await call.read_body())
    _fields(body, ROTATE_FIELDS)
    value, description = _value(body), _description(body)
    info = await call.gateway.rotate_secret(
        name, value, description=description, keep_description="description" not in body
    )
    if info is None:
        raise not_found(f"unknown secret {name!r}; POST /secrets registers one")
    return Reply(secret_json(info))


async def delete_secret(call: Call) -> Reply:
    """``DELETE /secrets/{name}``: forget a secret nothing refers to any more."""
    name = _path_name(call)
    vault = call.gateway.vault
    if vault.get(name) is not None:
        references = vault.references_to(name)
        if references:
            raise SecretInUse(name, references)
    if not await call.gateway.delete_secret(name):
        raise not_found(f"unknown secret {name!r}")
    return Reply(b"", 204, media_type="text/plain")


_NAME = Param(
    name="name",
    location="path",
    description="The secret's name.",
    schema={"type": "string", "pattern": NAME_PATTERN},
    required=True,
)
_BAD_NAME = "A name that breaks the rule (a letter, then up to 63 letters, digits, `_.-`)"
_VALUE_RULES = (
    f"a value shorter than {MIN_SECRET_LENGTH} characters (spaces at either end not"
    f" counted), over {MAX_SECRET_BYTES:,} bytes or holding NUL"
)

ROUTES: tuple[Route, ...] = (
    Route(
        operation_id="listSecrets",
        method="GET",
        path="/secrets",
        handler=list_secrets,
        access=Scoped(SECRETS_RO),
        summary="Every secret of the registry, without values",
        description=(
            "Name, description, when it was created and last rotated, and a hint (`****`"
            " and the value's last four characters). No scope reads a value."
        ),
        tag="secrets",
        responses=(
            ResponseSpec(status=200, description="Every secret, by name.", schema="SecretList"),
            NO_QUERY,
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="createSecret",
        method="POST",
        path="/secrets",
        handler=create_secret,
        access=Scoped(SECRETS_RW),
        summary="Register a secret",
        description=(
            "The value is sealed (AES-GCM) before it is stored, and `${secret:name}` in the"
            " config resolves to it from the next job on. The answer never holds the value."
        ),
        tag="secrets",
        body=BodySpec(
            schema="SecretCreate",
            description="The secret: name, value, optional description.",
            required=True,
        ),
        responses=(
            ResponseSpec(
                status=201,
                description="Registered.",
                schema="Secret",
                headers={"Location": "The secret's URL."},
            ),
            ResponseSpec(
                status=400,
                description=(
                    f"Malformed JSON, an unknown or missing field, {_BAD_NAME.lower()},"
                    f" {_VALUE_RULES}, or a description over {MAX_DESCRIPTION_LENGTH}"
                    " characters. The message never quotes the value."
                ),
            ),
            ResponseSpec(
                status=409,
                description="A secret with this name exists; PUT /secrets/{name} rotates it.",
            ),
            TOO_LARGE,
            UNAVAILABLE,
            DISK_FULL,
        ),
    ),
    Route(
        operation_id="getSecret",
        method="GET",
        path="/secrets/{name}",
        handler=get_secret,
        access=Scoped(SECRETS_RO),
        summary="One secret, without its value",
        tag="secrets",
        params=(_NAME,),
        responses=(
            ResponseSpec(status=200, description="The secret.", schema="Secret"),
            ResponseSpec(status=400, description=f"{_BAD_NAME}, or a query parameter."),
            ResponseSpec(status=404, description="No secret has this name."),
            UNAVAILABLE,
        ),
    ),
    Route(
        operation_id="rotateSecret",
        method="PUT",
        path="/secrets/{name}",
        handler=rotate_secret,
        access=Scoped(SECRETS_RW),
        summary="Rotate a secret: a new value, from the next job on",
        description=(
            "Sets `rotated_at`. Jobs already running keep the value they started with;"
            " every job that starts after the answer gets the new one. A `description`"
            " given replaces the old one (null clears it); left out, it is kept."
        ),
        tag="secrets",
        params=(_NAME,),
        body=BodySpec(
            schema="SecretRotate",
            description="The new value, optionally a new description.",
            required=True,
        ),
        responses=(
            ResponseSpec(status=200, description="Rotated.", schema="Secret"),
            ResponseSpec(
                status=400,
                description=(
                    f"Malformed JSON, an unknown or missing field, {_BAD_NAME.lower()},"
                    f" {_VALUE_RULES}, or a description over {MAX_DESCRIPTION_LENGTH}"
                    " characters. The message never quotes the value."
                ),
            ),
            ResponseSpec(status=404, description="No secret has this name."),
            TOO_LARGE,
            UNAVAILABLE,
            DISK_FULL,
        ),
    ),
    Route(
        operation_id="deleteSecret",
        method="DELETE",
        path="/secrets/{name}",
        handler=delete_secret,
        access=Scoped(SECRETS_RW),
        summary="Forget a secret nothing refers to",
        tag="secrets",
        params=(_NAME,),
        responses=(
            ResponseSpec(status=204, description="Forgotten.", schema=None),
            ResponseSpec(status=400, description=f"{_BAD_NAME}, or a query parameter."),
            ResponseSpec(status=404, description="No secret has this name."),
            ResponseSpec(
                status=409,
                description=(
                    "The config (or an MCP server) still refers to the secret; `references`"
                    " names each place (`plugins.echo.env.TOKEN`)."
                ),
                schema="SecretInUse",
            ),
            UNAVAILABLE,
            DISK_FULL,
        ),
    ),
)

#: The size limit is in UTF-8 bytes, which JSON Schema cannot say (its maxLength
#: counts characters): the description states it.
_VALUE_SCHEMA: Mapping[str, Any] = {
    "type": "string",
    "minLength": MIN_SECRET_LENGTH,
    "writeOnly": True,
    "description": (
        f"At least {MIN_SECRET_LENGTH} characters (spaces at either end not counted), at"
        f" most {MAX_SECRET_BYTES:,} bytes in UTF-8, no NUL."
    ),
}
_DESCRIPTION_SCHEMA: Mapping[str, Any] = {
    "type": ["string", "null"],
    "maxLength": MAX_DESCRIPTION_LENGTH,
}

#: Component schemas these routes refer to (merged into the OpenAPI document).
SCHEMAS: Mapping[str, Mapping[str, Any]] = {
    "SecretCreate": object_schema(
        {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "value": _VALUE_SCHEMA,
            "description": _DESCRIPTION_SCHEMA,
        },
        required=["name", "value"],
        closed=True,
    ),
    "SecretRotate": object_schema(
        {
            "value": _VALUE_SCHEMA,
            "description": {
                **_DESCRIPTION_SCHEMA,
                "description": "Replaces the old one; null clears it; left out, it is kept.",
            },
        },
        required=["value"],
        closed=True,
    ),
    "Secret": object_schema(
        {
            "name": STRING,
            "description": NULLABLE_STRING,
            "created_at": {"type": "string", "format": "date-time"},
            "rotated_at": NULLABLE_TIME,
            "hint": {"description": "`****` and the value's last four characters.", **STRING},
        }
    ),
    "SecretList": object_schema({"secrets": {"type": "array", "items": ref("Secret")}}),
    "SecretInUse": object_schema(
        {"error": STRING, "references": {"type": "array", "items": STRING}}
    ),
}
