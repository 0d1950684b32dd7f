"""The vault: resolving ``${secret:name}``, where secrets are used, and the redactor it keeps."""

from pathlib import Path
from typing import Any

import pytest

from chamberlain.config import Config, parse_config
from chamberlain.redaction import Redactor
from chamberlain.vault import FORMER_VALUES_KEPT, UnknownSecret, Vault


def config(data: dict[str, Any]) -> Config:
    return parse_config(data, base_dir=Path("/srv"), environ={})


def vault_with(**values: str) -> Vault:
    vault = Vault()
    vault.load(values)
    return vault


def test_resolve_substitutes_every_reference_in_a_string() -> None:
    vault = vault_with(github="ghp-one-111", other="zz-other-2")
    assert vault.resolve("Bearer ${secret:github}") == "Bearer ghp-one-111"
    assert vault.resolve("${secret:github}:${secret:other}") == "ghp-one-111:zz-other-2"
    assert vault.resolve("no reference, ${HOME} stays") == "no reference, ${HOME} stays"


def test_the_escape_gives_the_literal_text() -> None:
    vault = vault_with(github="ghp-one-111")
    assert vault.resolve("$${secret:github} is ${secret:github}") == (
        "${secret:github} is ghp-one-111"
    )
    # An escape needs no secret behind it.
    assert vault.resolve("$${secret:nothing}") == "${secret:nothing}"


def test_an_unknown_secret_is_named_with_where_it_is_used() -> None:
    vault = vault_with(github="ghp-one-111")
    vault.configure(config({"plugins": {"gh": {"config": {"token": "${secret:gone}"}}}}))
    with pytest.raises(UnknownSecret) as info:
        vault.resolve("x ${secret:github} ${secret:gone}")
    assert info.value.name == "gone"
    assert str(info.value) == (
        "secret 'gone' is not in the registry (referenced by plugins.gh.config.token)"
    )


def test_resolve_tree_walks_nested_values_and_leaves_keys_alone() -> None:
    vault = vault_with(github="ghp-one-111")
    tree = {
        "${secret:github}": "key stays",
        "list": ["a", {"deep": ["${secret:github}", 3, None, True]}],
        "tuple": ("${secret:github}",),
        "n": 1.5,
    }
    assert vault.resolve_tree(tree) == {
        "${secret:github}": "key stays",
        "list": ["a", {"deep": ["ghp-one-111", 3, None, True]}],
        "tuple": ["ghp-one-111"],
        "n": 1.5,
    }
    # Nothing asked for: the very same objects come back, nothing is copied.
    plain = {"a": ["b", {"c": "d"}]}
    assert vault.resolve_tree(plain) is plain
    # And resolving never changes what it was given.
    assert tree["list"] == ["a", {"deep": ["${secret:github}", 3, None, True]}]


def test_resolve_tree_raises_for_an_unknown_secret_anywhere() -> None:
    with pytest.raises(UnknownSecret, match="'missing'"):
        vault_with().resolve_tree({"a": [{"b": "${secret:missing}"}]})


def test_a_rotation_reaches_the_next_resolution() -> None:
    vault = vault_with(github="ghp-one-111")
    assert vault.resolve("${secret:github}") == "ghp-one-111"
    vault.put("github", "ghp-two-222")
    assert vault.resolve("${secret:github}") == "ghp-two-222"
    assert vault.get("github") == "ghp-two-222"
    vault.remove("github")
    assert vault.get("github") is None
    assert list(vault.names()) == []
    with pytest.raises(UnknownSecret):
        vault.resolve("${secret:github}")


def test_the_redactor_hides_current_former_and_configured_values() -> None:
    vault = Vault()
    vault.configure(
        config(
            {
                "api": {"auth": {"api_key": "admin-key-123"}},
                "callbacks": {"secret": "${secret:callbacks.secret}"},
            }
        )
    )
    seen: list[Redactor] = []
    vault.on_change(seen.append)
    assert len(seen) == 1  # called at once with the redactor in use
    vault.put("github", "ghp-one-111")
    vault.put("github", "ghp-two-222")
    # A registry name may be a configured setting's: both values are hidden.
    vault.put("callbacks.secret", "registered-callback")
    assert len(seen) == 4
    assert seen[-1] is vault.redactor
    text = "ghp-one-111 ghp-two-222 admin-key-123 registered-callback"
    assert vault.redactor.text(text) == (
        "[redacted:github] [redacted:github] [redacted:api.auth.api_key]"
        " [redacted:callbacks.secret]"
    )
    # A job started before a deletion still holds the value: it stays hidden.
    vault.remove("github")
    assert vault.redactor.text("ghp-two-222") == "[redacted:github]"
    # The reference text itself is not a value.
    assert vault.redactor.text("${secret:callbacks.secret}") == "${secret:callbacks.secret}"


def test_load_replaces_every_value() -> None:
    vault = vault_with(a="value-aaa", b="value-bbb")
    vault.load({"b": "value-bbb", "c": "value-ccc"})
    assert sorted(vault.names()) == ["b", "c"]
    assert vault.get("a") is None
    assert vault.redactor.text("value-aaa value-ccc") == "[redacted:a] [redacted:c]"


def test_a_value_shared_by_two_names_shows_the_current_one() -> None:
    vault = vault_with(old="shared-value")
    vault.remove("old")
    vault.put("new", "shared-value")
    assert vault.redactor.text("shared-value") == "[redacted:new]"


def test_references_to_lists_config_paths_then_other_sources() -> None:
    vault = Vault()
    vault.configure(
        config(
            {
                "plugins": {
                    "gh": {
                        "config": {"token": "${secret:github}"},
                        "env": {"TOKEN": "${secret:github}"},
                    }
                },
                "callbacks": {"secret": "${secret:cb}"},
            }
        )
    )
    assert vault.references_to("github") == ["plugins.gh.config.token", "plugins.gh.env.TOKEN"]
    assert vault.references_to("cb") == ["callbacks.secret"]
    assert vault.references_to("unused") == []
    vault.add_reference_source(
        lambda name: ["mcp-servers/gitea env.TOKEN"] if name == "github" else []
    )
    assert vault.references_to("github") == [
        "plugins.gh.config.token",
        "plugins.gh.env.TOKEN",
        "mcp-servers/gitea env.TOKEN",
    ]
    assert vault.references_to("unused") == []


def test_no_repr_shows_a_value() -> None:
    # A repr ends up in tracebacks and debug logs: it must not carry what it hides.
    vault = Vault(configured={"callbacks.secret": "configured-value"})
    vault.put("token", "registry-value")
    vault.put("token", "rotated-value")
    for shown in (repr(vault), repr(vault.redactor)):
        for value in ("configured-value", "registry-value", "rotated-value"):
            assert value not in shown


def test_former_values_are_kept_only_as_far_back_as_the_newest_few() -> None:
    vault = Vault()
    values = [f"rotated-value-{n:03}" for n in range(FORMER_VALUES_KEPT + 5)]
    for value in values:
        vault.put("token", value)
    vault.put("other", "another-value")
    vault.put("other", "another-value-2")
    hidden = [value for value in values if "[redacted:token]" in vault.redactor.text(value)]
    # The current value and the newest former ones; the oldest are let go.
    assert hidden == values[-(FORMER_VALUES_KEPT + 1) :]
    # Another secret's former value is not pushed out by these rotations.
    assert vault.redactor.text("another-value") == "[redacted:other]"
