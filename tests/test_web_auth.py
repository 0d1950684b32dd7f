"""Scope rules, bearer parsing and token lookup: the pure core of API auth."""

from __future__ import annotations

import hmac

import pytest

from chamberlain.config import AuthConfig, TokenConfig
from chamberlain.plugins.manifest import CommandType
from chamberlain.web.auth import (
    ByCommand,
    Identity,
    TokenTable,
    authenticate,
    authorize,
    command_scope,
    grants,
    parse_bearer,
)
from chamberlain.web.errors import ApiError

RESOURCES = ("plugin", "jobs", "events")


# -- grants ------------------------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("level", ["ro", "rw"])
def test_star_grants_everything(resource: str, level: str) -> None:
    assert grants({"*"}, f"{resource}:{level}")


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("level", ["ro", "rw"])
def test_a_scope_grants_itself(resource: str, level: str) -> None:
    assert grants({f"{resource}:{level}"}, f"{resource}:{level}")


@pytest.mark.parametrize("resource", RESOURCES)
def test_read_star_grants_every_ro(resource: str) -> None:
    assert grants({"read:*"}, f"{resource}:ro")


@pytest.mark.parametrize("resource", RESOURCES)
def test_read_star_never_grants_rw(resource: str) -> None:
    assert not grants({"read:*"}, f"{resource}:rw")


@pytest.mark.parametrize("resource", RESOURCES)
def test_rw_implies_ro_of_the_same_resource(resource: str) -> None:
    assert grants({f"{resource}:rw"}, f"{resource}:ro")


@pytest.mark.parametrize("resource", RESOURCES)
def test_ro_does_not_imply_rw(resource: str) -> None:
    assert not grants({f"{resource}:ro"}, f"{resource}:rw")


@pytest.mark.parametrize(
    ("held", "required"),
    [
        ("plugin:rw", "jobs:ro"),
        ("plugin:rw", "events:ro"),
        ("jobs:rw", "plugin:ro"),
        ("jobs:rw", "events:rw"),
        ("events:rw", "jobs:ro"),
        ("events:ro", "plugin:ro"),
        ("jobs:ro", "plugin:ro"),
        ("plugin:ro", "jobs:ro"),
    ],
)
def test_scopes_do_not_cross_resources(held: str, required: str) -> None:
    assert not grants({held}, required)


def test_no_scopes_grant_nothing() -> None:
    assert not grants(set(), "plugin:ro")
    assert not grants((), "jobs:ro")


def test_scopes_combine() -> None:
    assert grants(["jobs:ro", "plugin:rw"], "plugin:ro")
    assert grants(["jobs:ro", "plugin:rw"], "jobs:ro")
    assert not grants(["jobs:ro", "plugin:rw"], "jobs:rw")
    assert grants(["read:*", "events:rw"], "events:rw")
    assert grants(["read:*", "events:rw"], "jobs:ro")


def test_only_star_grants_star() -> None:
    assert grants({"*"}, "*")
    assert not grants({"read:*", "plugin:rw", "jobs:rw", "events:rw"}, "*")


def test_read_star_is_not_a_wildcard_for_other_levels() -> None:
    assert not grants({"read:*"}, "plugin:admin")
    assert not grants({"plugin:rw"}, "plugin:admin")


def test_command_scope_by_type() -> None:
    assert command_scope(CommandType.READ) == "plugin:ro"
    assert command_scope(CommandType.WRITE) == "plugin:rw"
    by_command = ByCommand()
    assert by_command.scope_for(CommandType.READ) == "plugin:ro"
    assert by_command.scope_for(CommandType.WRITE) == "plugin:rw"


@pytest.mark.parametrize(
    ("scopes", "read_ok", "write_ok"),
    [
        ({"plugin:ro"}, True, False),
        ({"plugin:rw"}, True, True),
        ({"read:*"}, True, False),
        ({"*"}, True, True),
        ({"jobs:ro"}, False, False),
        ({"jobs:rw"}, False, False),
        ({"events:rw"}, False, False),
    ],
)
def test_which_commands_a_token_may_trigger(
    scopes: set[str], read_ok: bool, write_ok: bool
) -> None:
    assert grants(scopes, command_scope(CommandType.READ)) is read_ok
    assert grants(scopes, command_scope(CommandType.WRITE)) is write_ok


# -- parse_bearer --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER abc", "abc"),
        ("Bearer   abc", "abc"),
        ("  Bearer abc  ", "abc"),
        ("Bearer\tabc", "abc"),
        ("Bearer a.b-c_d~e+f/g=", "a.b-c_d~e+f/g="),
    ],
)
def test_parse_bearer_accepts(header: str, token: str) -> None:
    assert parse_bearer(header) == token


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "   ",
        "Bearer",
        "Bearer ",
        "Bearer    ",
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "abc",
        "Bearer abc def",
        "Bearerabc",
    ],
)
def test_parse_bearer_refuses(header: str | None) -> None:
    assert parse_bearer(header) is None


# -- TokenTable ----------------------------------------------------------------------


def _table() -> TokenTable:
    return TokenTable.from_config(
        AuthConfig(
            api_key="legacy-key",
            tokens=(
                TokenConfig(name="reader", token="reader-token", scopes=("read:*",)),
                TokenConfig(name="rw", token="rw-token", scopes=("plugin:rw", "jobs:rw")),
            ),
        )
    )


def test_lookup_returns_the_right_identity() -> None:
    table = _table()
    legacy = table.lookup("legacy-key")
    assert legacy == Identity(name="api_key", scopes=frozenset({"*"}), legacy=True)
    assert legacy.submitted_by == "api_key"
    reader = table.lookup("reader-token")
    assert reader is not None
    assert reader.name == "reader"
    assert reader.scopes == frozenset({"read:*"})
    assert reader.submitted_by == "token:reader"
    rw = table.lookup("rw-token")
    assert rw is not None
    assert rw.name == "rw"
    assert rw.submitted_by == "token:rw"


@pytest.mark.parametrize(
    "token", ["", "reader", "reader-token ", "READER-TOKEN", "legacy-key2", "rw-toke"]
)
def test_lookup_of_an_unknown_token_is_none(token: str) -> None:
    assert _table().lookup(token) is None


def test_lookup_compares_every_token_without_early_exit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    table = _table()
    for token in ("legacy-key", "rw-token", "nope"):
        calls.clear()
        table.lookup(token)
        assert len(calls) == 3, token
        # Fixed-length digests: the comparison time does not depend on lengths.
        assert {len(a) for a, _ in calls} == {32}
        assert {len(b) for _, b in calls} == {32}


def test_a_table_without_keys_knows_nobody() -> None:
    table = TokenTable.from_config(AuthConfig())
    assert len(table) == 0
    assert table.lookup("anything") is None


def test_a_utf8_token_matches_what_arrives_as_latin1() -> None:
    table = TokenTable.from_config(
        AuthConfig(tokens=(TokenConfig(name="u", token="clé-ü", scopes=("*",)),))
    )
    over_the_wire = "clé-ü".encode().decode("latin-1")
    found = table.lookup(over_the_wire)
    assert found is not None
    assert found.name == "u"


# -- authenticate / authorize --------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, None),
        ("", None),
        ("Basic dXNlcjpwYXNz", "invalid_request"),
        ("Bearer", "invalid_request"),
        ("Bearer a b", "invalid_request"),
        ("Bearer wrong", "invalid_token"),
    ],
)
def test_authenticate_refuses_with_401_and_a_challenge(
    header: str | None, error: str | None
) -> None:
    with pytest.raises(ApiError) as caught:
        authenticate(header, _table())
    assert caught.value.status == 401
    challenge = caught.value.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ")
    if error is None:
        assert "error=" not in challenge
    else:
        assert f'error="{error}"' in challenge


def test_authenticate_accepts_a_known_token() -> None:
    identity = authenticate("Bearer rw-token", _table())
    assert identity.name == "rw"


def test_authorize_passes_when_granted() -> None:
    identity = Identity(name="rw", scopes=frozenset({"plugin:rw"}))
    authorize(identity, "plugin:ro", action="run it")
    authorize(identity, "plugin:rw", action="run it")


def test_authorize_names_the_missing_scope() -> None:
    identity = Identity(name="ro", scopes=frozenset({"plugin:ro"}))
    with pytest.raises(ApiError) as caught:
        authorize(identity, "plugin:rw", action="run the write command echo/handle")
    error = caught.value
    assert error.status == 403
    assert "plugin:rw" in error.message
    assert "'ro'" in error.message
    assert "echo/handle" in error.message
    assert 'error="insufficient_scope"' in error.headers["WWW-Authenticate"]
    assert error.body() == {"error": error.message}
