"""``/secrets`` against a fake Gateway: CRUD, scopes, bad input, and no value ever shown."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, cast

import attrs
import pytest
from quart_trio import QuartTrio
from werkzeug.datastructures import Headers

from chamberlain.actors.gateway import Gateway, StorageFull
from chamberlain.config import ApiConfig, AuthConfig, TokenConfig
from chamberlain.config.references import SecretReference
from chamberlain.sealing import MAX_SECRET_BYTES, SecretInfo, hint
from chamberlain.vault import Vault
from chamberlain.web.app import create_app
from chamberlain.web.routes import ROUTES
from chamberlain.web.secret_registry import ROUTES as SECRET_ROUTES

T0 = 1_714_557_600.0  # 2024-05-01T10:00:00Z
VALUE = "ghp_s3cr3t-value-ab12"
TOKENS = {
    "admin": "admin-key",
    "secrets_ro": "secrets-ro-t",
    "secrets_rw": "secrets-rw-t",
    "reader": "reader-t",
    "everything_else": "other-t",
}


def bearer(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def api_config() -> ApiConfig:
    return ApiConfig(
        listen="127.0.0.1:0",
        auth=AuthConfig(
            api_key=TOKENS["admin"],
            tokens=(
                TokenConfig(name="sro", token=TOKENS["secrets_ro"], scopes=("secrets:ro",)),
                TokenConfig(name="srw", token=TOKENS["secrets_rw"], scopes=("secrets:rw",)),
                TokenConfig(name="reader", token=TOKENS["reader"], scopes=("read:*",)),
                TokenConfig(
                    name="other",
                    token=TOKENS["everything_else"],
                    scopes=("plugin:rw", "jobs:rw", "events:rw"),
                ),
            ),
        ),
    )


@attrs.define(eq=False)
class FakeGateway:
    """Just what the secret routes use: a registry in memory and a real vault."""

    vault: Vault = attrs.field(factory=Vault)
    secrets: dict[str, SecretInfo] = attrs.field(factory=dict)
    clock: float = T0
    fail: Exception | None = None

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            raise self.fail

    async def list_secrets(self) -> tuple[SecretInfo, ...]:
        self._maybe_fail()
        return tuple(self.secrets[name] for name in sorted(self.secrets))

    async def get_secret(self, name: str) -> SecretInfo | None:
        self._maybe_fail()
        return self.secrets.get(name)

    async def create_secret(
        self, name: str, value: str, *, description: str | None
    ) -> SecretInfo | None:
        self._maybe_fail()
        if name in self.secrets:
            return None
        info = SecretInfo(
            name=name,
            description=description,
            created_at=self.clock,
            rotated_at=None,
            hint=hint(value),
        )
        self.secrets[name] = info
        self.vault.put(name, value)
        return info

    async def rotate_secret(
        self,
        name: str,
        value: str,
        *,
        description: str | None = None,
        keep_description: bool = True,
    ) -> SecretInfo | None:
        self._maybe_fail()
        old = self.secrets.get(name)
        if old is None:
            return None
        self.clock += 60
        info = attrs.evolve(
            old,
            hint=hint(value),
            rotated_at=self.clock,
            description=old.description if keep_description else description,
        )
        self.secrets[name] = info
        self.vault.put(name, value)
        return info

    async def delete_secret(self, name: str) -> bool:
        self._maybe_fail()
        if self.secrets.pop(name, None) is None:
            return False
        self.vault.remove(name)
        return True


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def app(gateway: FakeGateway) -> QuartTrio:
    return create_app(
        cast(Gateway, gateway),
        api_config(),
        routes=SECRET_ROUTES,
        redactor=lambda: gateway.vault.redactor,
    )


async def call(
    app: QuartTrio,
    method: str,
    path: str,
    *,
    who: str | None = "admin",
    headers: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any, Headers]:
    all_headers = {**(bearer(who) if who else {}), **(headers or {})}
    response = await app.test_client().open(path, method=method, headers=all_headers, **kwargs)
    raw = await response.get_data(as_text=True)
    assert VALUE not in raw
    body = json.loads(raw) if raw else None
    return response.status_code, body, response.headers


async def test_create_list_get_rotate_delete(app: QuartTrio, gateway: FakeGateway) -> None:
    code, body, headers = await call(
        app, "POST", "/secrets", json={"name": "github", "value": VALUE, "description": "bot"}
    )
    assert code == 201, body
    assert body == {
        "name": "github",
        "description": "bot",
        "created_at": "2024-05-01T10:00:00.000Z",
        "rotated_at": None,
        "hint": "****ab12",
    }
    assert headers["Location"] == "/secrets/github"
    assert gateway.vault.get("github") == VALUE

    code, listed, _ = await call(app, "GET", "/secrets", who="secrets_ro")
    assert (code, listed) == (200, {"secrets": [body]})
    code, one, _ = await call(app, "GET", "/secrets/github", who="secrets_ro")
    assert (code, one) == (200, body)

    code, rotated, _ = await call(
        app, "PUT", "/secrets/github", who="secrets_rw", json={"value": "ghp_next-value-cd34"}
    )
    assert code == 200
    assert rotated["rotated_at"] == "2024-05-01T10:01:00.000Z"
    assert rotated["hint"] == "****cd34" and rotated["description"] == "bot"
    assert gateway.vault.get("github") == "ghp_next-value-cd34"

    code, cleared, _ = await call(
        app, "PUT", "/secrets/github", json={"value": VALUE, "description": None}
    )
    assert code == 200 and cleared["description"] is None

    code, nothing, _ = await call(app, "DELETE", "/secrets/github", who="secrets_rw")
    assert (code, nothing) == (204, None)
    assert gateway.vault.get("github") is None
    code, gone, _ = await call(app, "GET", "/secrets/github")
    assert code == 404 and gone == {"error": "unknown secret 'github'"}


async def test_a_second_post_with_the_name_is_409(app: QuartTrio, gateway: FakeGateway) -> None:
    await call(app, "POST", "/secrets", json={"name": "github", "value": VALUE})
    code, body, _ = await call(
        app, "POST", "/secrets", json={"name": "github", "value": "another-value-77"}
    )
    assert code == 409
    assert body == {
        "error": "secret 'github' exists already; PUT /secrets/github rotates its value"
    }
    assert gateway.vault.get("github") == VALUE


async def test_unknown_secrets_are_404(app: QuartTrio) -> None:
    code, body, _ = await call(app, "PUT", "/secrets/nope", json={"value": VALUE})
    assert code == 404 and "unknown secret 'nope'" in body["error"]
    code, body, _ = await call(app, "DELETE", "/secrets/nope")
    assert (code, body) == (404, {"error": "unknown secret 'nope'"})


async def test_a_referenced_secret_is_not_deleted_and_the_answer_names_where(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    await call(app, "POST", "/secrets", json={"name": "github", "value": VALUE})
    gateway.vault.references = (
        SecretReference(path="plugins.echo.env.GITHUB_TOKEN", name="github"),
        SecretReference(path="plugins.other.config.token", name="aws"),
        SecretReference(path="callbacks.secret", name="github"),
    )
    code, body, _ = await call(app, "DELETE", "/secrets/github")
    assert code == 409
    assert body["references"] == ["plugins.echo.env.GITHUB_TOKEN", "callbacks.secret"]
    assert "plugins.echo.env.GITHUB_TOKEN, callbacks.secret" in body["error"]
    assert "github" in gateway.secrets and gateway.vault.get("github") == VALUE


# -- scopes --------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["secrets_ro", "reader"])
async def test_a_read_scope_lists_but_cannot_write(app: QuartTrio, who: str) -> None:
    await call(app, "POST", "/secrets", json={"name": "github", "value": VALUE})
    assert (await call(app, "GET", "/secrets", who=who))[0] == 200
    assert (await call(app, "GET", "/secrets/github", who=who))[0] == 200
    for method, path, body in (
        ("POST", "/secrets", {"name": "other", "value": VALUE}),
        ("PUT", "/secrets/github", {"value": VALUE}),
        ("DELETE", "/secrets/github", None),
    ):
        code, answer, headers = await call(app, method, path, who=who, json=body)
        assert code == 403, (method, answer)
        assert "'secrets:rw'" in answer["error"]
        assert 'scope="secrets:rw"' in headers["WWW-Authenticate"]


async def test_other_scopes_grant_nothing_here(app: QuartTrio) -> None:
    code, body, _ = await call(app, "GET", "/secrets", who="everything_else")
    assert code == 403 and "'secrets:ro'" in body["error"]
    code, body, _ = await call(
        app, "POST", "/secrets", who="everything_else", json={"name": "x", "value": VALUE}
    )
    assert code == 403


async def test_the_write_scope_reads_too(app: QuartTrio) -> None:
    assert (await call(app, "GET", "/secrets", who="secrets_rw"))[0] == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/secrets"),
        ("POST", "/secrets"),
        ("GET", "/secrets/x"),
        ("PUT", "/secrets/x"),
        ("DELETE", "/secrets/x"),
    ],
)
async def test_no_token_is_401(app: QuartTrio, method: str, path: str) -> None:
    code, body, headers = await call(app, method, path, who=None, json={"value": VALUE})
    assert code == 401 and "WWW-Authenticate" in headers
    assert body["error"].startswith("authentication required")


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"value": VALUE}, "name is required"),
        ({"name": "github"}, "value is required: the secret itself, a string"),
        ({"name": "9lives", "value": VALUE}, "name '9lives' must be 1 to 64 characters"),
        ({"name": 5, "value": VALUE}, "name must be a string"),
        ({"name": "github", "value": 123456}, "value must be a string"),
        ({"name": "github", "value": "abc12"}, "value must be at least 6 characters"),
        ({"name": "github", "value": "   abc12   "}, "value must be at least 6 characters"),
        ({"name": "github", "value": "abc\u0000defgh"}, "value must not contain NUL"),
        (
            {"name": "github", "value": "x" * (MAX_SECRET_BYTES + 1)},
            f"value is {MAX_SECRET_BYTES + 1:,} bytes in UTF-8",
        ),
        (
            {"name": "github", "value": VALUE, "secret": "x"},
            "unknown field 'secret' in the request body; expected: name, value, description",
        ),
        ({"name": "github", "value": VALUE, "description": 7}, "description must be a string"),
        (
            {"name": "github", "value": VALUE, "description": "d" * 501},
            "description is longer than 500 characters",
        ),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    app: QuartTrio, gateway: FakeGateway, body: dict[str, Any], error: str
) -> None:
    code, answer, _ = await call(app, "POST", "/secrets", json=body)
    assert code == 400, answer
    assert answer["error"].startswith(error), answer
    assert gateway.secrets == {}


async def test_a_refused_value_is_never_quoted(app: QuartTrio) -> None:
    short = "Zq9!x"
    code, answer, _ = await call(app, "POST", "/secrets", json={"name": "a", "value": short})
    assert code == 400 and short not in json.dumps(answer)


async def test_a_rotation_refuses_a_name_in_the_body_and_a_missing_value(app: QuartTrio) -> None:
    await call(app, "POST", "/secrets", json={"name": "github", "value": VALUE})
    code, answer, _ = await call(
        app, "PUT", "/secrets/github", json={"name": "github", "value": VALUE}
    )
    assert code == 400
    assert answer["error"] == (
        "unknown field 'name' in the request body; expected: value, description"
    )
    code, answer, _ = await call(app, "PUT", "/secrets/github", json={})
    assert code == 400 and answer["error"].startswith("value is required")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_a_path_name_that_breaks_the_rule_is_400(app: QuartTrio, method: str) -> None:
    code, answer, _ = await call(app, method, "/secrets/_bad", json={"value": VALUE})
    assert code == 400
    assert answer["error"].startswith("secret name '_bad' must be 1 to 64 characters")


async def test_malformed_json_and_query_parameters_are_400(app: QuartTrio) -> None:
    code, answer, _ = await call(app, "POST", "/secrets", data=b"{nope", headers={})
    assert code == 400 and answer["error"].startswith("malformed JSON in request body")
    code, answer, _ = await call(app, "GET", "/secrets?value=x")
    assert code == 400 and "unknown query parameter 'value'" in answer["error"]


async def test_a_full_disk_is_507_and_nothing_reaches_the_vault(
    app: QuartTrio, gateway: FakeGateway
) -> None:
    gateway.fail = StorageFull("SQLITE_FULL: database or disk is full")
    code, _, headers = await call(app, "POST", "/secrets", json={"name": "a", "value": VALUE})
    assert code == 507 and headers["Retry-After"] == "5"
    assert gateway.vault.get("a") is None


# -- the value stays out of logs -----------------------------------------------------


async def test_the_access_log_never_holds_a_value(
    app: QuartTrio, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        await call(app, "POST", "/secrets", json={"name": "github", "value": VALUE})
        await call(app, "PUT", "/secrets/github", json={"value": VALUE + "-2"})
        await call(app, "POST", "/secrets", json={"name": "_x", "value": VALUE})
    assert any(r.name == "chamberlain.web" for r in caplog.records)
    for record in caplog.records:
        assert VALUE not in record.getMessage()
        assert VALUE not in repr(record.__dict__)


def test_the_route_table_has_the_secret_routes() -> None:
    found = {(r.method, r.path): r.access for r in ROUTES if r.path.startswith("/secrets")}
    assert {key: getattr(access, "scope", None) for key, access in found.items()} == {
        ("GET", "/secrets"): "secrets:ro",
        ("POST", "/secrets"): "secrets:rw",
        ("GET", "/secrets/{name}"): "secrets:ro",
        ("PUT", "/secrets/{name}"): "secrets:rw",
        ("DELETE", "/secrets/{name}"): "secrets:rw",
    }
