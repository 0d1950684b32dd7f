"""Sealing the registry's values: AES-GCM, the key, the key file, and what may be registered."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from chamberlain import sealing
from chamberlain.sealing import (
    KEY_FILE_NAME,
    MAX_SECRET_BYTES,
    MIN_SECRET_LENGTH,
    SECRET_KEY_ENV,
    KeyProblem,
    Sealer,
    WrongKey,
    check_secret_name,
    hint,
    load_sealer,
    name_problem,
    new_key_text,
    parse_key,
    value_problem,
)

VALUE = "ghp_live-token-1234"


def key_text(fill: int) -> str:
    return base64.urlsafe_b64encode(bytes([fill]) * 32).decode()


# -------------------------------------------------------------------- sealing


def test_a_sealed_value_opens_to_itself_and_does_not_hold_it() -> None:
    sealer = Sealer.random()
    blob = sealer.seal("github", VALUE)
    assert VALUE.encode() not in blob
    assert sealer.unseal("github", blob) == VALUE


def test_unicode_values_round_trip() -> None:
    sealer = Sealer.random()
    value = "pässwörd-🔑-\u00a0end"
    assert sealer.unseal("x", sealer.seal("x", value)) == value


def test_another_key_does_not_open_it_and_says_so() -> None:
    blob = Sealer(bytes(32), source="the key file /s/secret.key").seal("github", VALUE)
    other = Sealer(bytes([1]) * 32, source=SECRET_KEY_ENV)
    with pytest.raises(WrongKey) as failed:
        other.unseal("github", blob)
    message = str(failed.value)
    assert "'github'" in message and SECRET_KEY_ENV in message
    assert VALUE not in message


def test_the_name_is_bound_to_the_value() -> None:
    sealer = Sealer.random()
    blob = sealer.seal("github", VALUE)
    # A sealed value copied onto another name does not open there.
    with pytest.raises(WrongKey):
        sealer.unseal("gitlab", blob)


@pytest.mark.parametrize("position", [0, 1, 13, -1])
def test_an_altered_byte_anywhere_is_refused(position: int) -> None:
    sealer = Sealer.random()
    blob = bytearray(sealer.seal("github", VALUE))
    blob[position] ^= 0x01
    with pytest.raises(WrongKey):
        sealer.unseal("github", bytes(blob))


def test_a_truncated_blob_is_refused() -> None:
    sealer = Sealer.random()
    with pytest.raises(WrongKey):
        sealer.unseal("github", sealer.seal("github", VALUE)[:20])


def test_every_seal_has_a_fresh_nonce() -> None:
    sealer = Sealer.random()
    blobs = [sealer.seal("github", VALUE) for _ in range(200)]
    nonces = {blob[1 : 1 + sealing.NONCE_BYTES] for blob in blobs}
    assert len(nonces) == len(blobs)
    assert len(set(blobs)) == len(blobs)


def test_the_key_check_tells_the_right_key_from_a_wrong_one() -> None:
    right, wrong = Sealer(bytes(32)), Sealer(bytes([7]) * 32, source=SECRET_KEY_ENV)
    check = right.check_blob()
    right.verify(check)
    with pytest.raises(WrongKey) as failed:
        wrong.verify(check)
    assert "not the key the stored secrets were sealed with" in str(failed.value)
    assert SECRET_KEY_ENV in str(failed.value)


def test_a_secret_sealed_value_is_no_key_check() -> None:
    sealer = Sealer.random()
    with pytest.raises(WrongKey):
        sealer.verify(sealer.seal("github", VALUE))


def test_a_sealer_never_shows_its_key() -> None:
    key = bytes(range(32))
    sealer = Sealer(key, source="x")
    assert key.hex() not in repr(sealer) and str(list(key)) not in repr(sealer)
    assert repr(sealer) == "Sealer(source='x')"


# ------------------------------------------------------------------------ keys


def test_a_new_key_parses_back_to_32_bytes() -> None:
    text = new_key_text()
    assert len(text) == 44
    assert len(parse_key(text, source="x")) == 32
    assert new_key_text() != text


def test_a_key_may_come_without_padding_or_with_a_newline() -> None:
    text = key_text(3)
    assert parse_key(text.rstrip("=") + "\n", source="x") == bytes([3]) * 32


@pytest.mark.parametrize(
    "text",
    [
        "short",
        base64.urlsafe_b64encode(b"x" * 16).decode(),  # 16 bytes: AES-128
        key_text(1)[:-2] + "!!",  # outside the alphabet
        "a" * 200,
    ],
)
def test_a_malformed_key_is_a_clear_error_saying_how_to_make_one(text: str) -> None:
    with pytest.raises(KeyProblem) as failed:
        parse_key(text, source=SECRET_KEY_ENV)
    message = str(failed.value)
    assert message.startswith(f"{SECRET_KEY_ENV} is not a secret key: expected the URL-safe")
    assert "chamberlain secret-key" in message
    assert text not in message


def test_an_empty_key_says_so() -> None:
    with pytest.raises(KeyProblem, match=f"^{SECRET_KEY_ENV} is empty"):
        load_sealer(None, {SECRET_KEY_ENV: "  "}, create=True)


def test_the_environment_comes_first(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    sealer = load_sealer(state, {SECRET_KEY_ENV: key_text(5)}, create=True)
    assert sealer is not None and sealer.source == SECRET_KEY_ENV
    assert not (tmp_path / KEY_FILE_NAME).exists()
    blob = Sealer(bytes([5]) * 32).seal("a", VALUE)
    assert sealer.unseal("a", blob) == VALUE


def test_an_in_memory_state_gets_a_key_for_the_process() -> None:
    first, second = load_sealer(None, {}, create=True), load_sealer(None, {}, create=False)
    assert first is not None and second is not None
    with pytest.raises(WrongKey):
        second.unseal("a", first.seal("a", VALUE))


def test_the_key_file_is_created_0600_whatever_the_umask_and_read_back(tmp_path: Path) -> None:
    state = tmp_path / "data" / "state.db"
    old = os.umask(0)
    try:
        made = load_sealer(state, {}, create=True)
    finally:
        os.umask(old)
    key_file = tmp_path / "data" / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert made is not None and made.source == f"the key file {key_file}"
    # The next start reads the same key.
    again = load_sealer(state, {}, create=True)
    assert again is not None
    assert again.unseal("a", made.seal("a", VALUE)) == VALUE
    assert len(parse_key(key_file.read_text(), source="x")) == 32


def test_no_key_file_is_made_unless_asked(tmp_path: Path) -> None:
    assert load_sealer(tmp_path / "state.db", {}, create=False) is None
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o660])
def test_a_key_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    key_file.write_text(key_text(1))
    key_file.chmod(mode)
    with pytest.raises(KeyProblem) as failed:
        load_sealer(tmp_path / "state.db", {}, create=True)
    assert str(failed.value) == (
        f"the secret key file {key_file} is open to others (mode {mode:04o}): anyone who"
        f" can read it can read every secret; chmod 600 {key_file}"
    )


def test_a_key_file_of_0400_is_fine(tmp_path: Path) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    key_file.write_text(key_text(2) + "\n")
    key_file.chmod(0o400)
    sealer = load_sealer(tmp_path / "state.db", {}, create=False)
    assert sealer is not None
    assert sealer.unseal("a", Sealer(bytes([2]) * 32).seal("a", VALUE)) == VALUE


def test_a_malformed_key_file_names_the_file(tmp_path: Path) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    key_file.write_text("not a key")
    key_file.chmod(0o600)
    with pytest.raises(KeyProblem, match=f"^the key file {key_file} is not a secret key"):
        load_sealer(tmp_path / "state.db", {}, create=True)


def test_a_key_file_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE_NAME).mkdir(mode=0o700)
    with pytest.raises(KeyProblem, match="is not a regular file"):
        load_sealer(tmp_path / "state.db", {}, create=True)


# ------------------------------------------------------ what may be registered


@pytest.mark.parametrize("name", ["a", "github_token", "A.b-c_9", "x" * 64])
def test_good_names(name: str) -> None:
    assert name_problem(name) is None
    assert check_secret_name(name) == name


@pytest.mark.parametrize("name", ["", "9lives", "_x", "has space", "x" * 65, "a/b", "é", 5])
def test_bad_names_say_the_rule(name: object) -> None:
    problem = name_problem(name)
    assert problem is not None
    with pytest.raises(ValueError, match="secret name"):
        check_secret_name(name)


def test_the_key_check_name_is_no_secret_name() -> None:
    assert name_problem(sealing.KEY_CHECK_NAME) is not None


def test_values_shorter_than_the_minimum_are_refused_without_being_quoted() -> None:
    assert value_problem("x" * MIN_SECRET_LENGTH) is None
    for short in ("abcde", "  abcde  ", " " * 20):
        problem = value_problem(short)
        assert problem is not None and f"at least {MIN_SECRET_LENGTH} characters" in problem
        assert short.strip() == "" or short.strip() not in problem


def test_values_over_the_size_are_refused_by_their_utf8_size() -> None:
    assert value_problem("x" * MAX_SECRET_BYTES) is None
    problem = value_problem("é" * (MAX_SECRET_BYTES // 2 + 1))
    assert problem is not None and "bytes in UTF-8" in problem


def test_a_nul_or_a_non_string_is_refused() -> None:
    assert value_problem("abc\x00defg") is not None
    assert value_problem(123456) == "must be a string"
    assert value_problem("abc\ud800defg") == "must be valid Unicode text"


def test_the_hint_shows_four_characters() -> None:
    assert hint("ghp_abcdef12") == "****ef12"


def test_a_daemon_that_holds_no_secret_does_not_load_the_cipher_library() -> None:
    # The library costs ~7 MB of RSS (the idle target is 60 MB); httpx likewise waits
    # for the first callback or relay.  A fresh interpreter, as the daemon starts.
    probe = (
        "import sys, chamberlain.cli, chamberlain.daemon.tree\n"
        "from chamberlain.sealing import Sealer\n"
        "Sealer.random()\n"
        "print(sorted(m for m in ('cryptography', 'httpx') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_cipher_is_loaded_when_a_value_is_first_sealed() -> None:
    sealer = Sealer.random()
    blob = sealer.seal("token", "s3cret-value")
    assert sealer.unseal("token", blob) == "s3cret-value"
    with pytest.raises(WrongKey):
        Sealer.random().unseal("token", blob)
