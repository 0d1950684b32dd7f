"""Sealing the registry's secrets: the key, AES-GCM, and what a secret may be.

Every value of the registry (``/secrets``) is stored sealed: encrypted and
authenticated with AES-256-GCM (``cryptography``'s AEAD), under a fresh random
96-bit nonce per seal, with the secret's name as associated data, so a sealed
value copied onto another name, or altered by one bit, does not open.  A value
that does not open raises :class:`WrongKey`; it never comes back as garbage.

The key is 32 random bytes, written as their URL-safe base64 (44 characters).
:func:`load_sealer` takes it from :data:`SECRET_KEY_ENV` when that is set, else
from the key file :data:`KEY_FILE_NAME` in the directory of ``state.path``: created
on first need with ``O_EXCL`` and mode 0600, and refused, like ssh refuses a
private key, once anyone but its owner may read or write it.  An in-memory state
gets a random key that lives as long as the process.

A stored :meth:`Sealer.check_blob` (sealed under :data:`KEY_CHECK_NAME`, which no
secret can have) lets the daemon tell a wrong key at start-up, even when no value
would be opened then.  The rules for what may be registered (:func:`name_problem`,
:func:`value_problem`) and the hint the API shows (:func:`hint`) are here too, and
:class:`SecretInfo`, what the registry tells about a secret: everything but the
value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    # Imported when a value is first sealed or opened (see Sealer._cipher): the
    # library is about 7 MB of RSS, and many daemons never hold a secret.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_CHECK_NAME",
    "KEY_FILE_NAME",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_SECRET_BYTES",
    "MIN_SECRET_LENGTH",
    "NAME_PATTERN",
    "SECRET_KEY_ENV",
    "KeyProblem",
    "Sealer",
    "SecretInfo",
    "WrongKey",
    "check_secret_name",
    "hint",
    "key_file_path",
    "load_sealer",
    "name_problem",
    "new_key_text",
    "parse_key",
    "value_problem",
]

#: The environment variable that holds the key, when it is not in the key file.
SECRET_KEY_ENV: Final = "CHAMBERLAIN_SECRET_KEY"
#: The key file's name, in the directory of ``state.path``.
KEY_FILE_NAME: Final = "secret.key"
KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
#: The shortest value the registry takes: a shorter one would be hidden wherever
#: those few characters happen to occur, and guessed by anyone who tries.
MIN_SECRET_LENGTH: Final = 6
#: The largest value, in UTF-8 bytes.
MAX_SECRET_BYTES: Final = 64 * 1024
MAX_DESCRIPTION_LENGTH: Final = 500
#: Sealed under this name, the key check; a secret's name must start with a letter.
KEY_CHECK_NAME: Final = "#key-check"
#: How a way to make a key is told to whoever needs one.
MAKE_A_KEY: Final = (
    "make one with 'chamberlain secret-key' or"
    " python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())'"
)

#: A secret's name, as a JSON Schema pattern (anchored) for the API's schemas.
NAME_PATTERN: Final = "^[A-Za-z][A-Za-z0-9_.-]{0,63}$"
_NAME: Final = re.compile(NAME_PATTERN)
_NAME_RULE: Final = "must be 1 to 64 characters: a letter, then letters, digits, '_', '.' or '-'"
#: The first byte of every sealed value: the format, so a later one can be told apart.
_FORMAT: Final = b"\x01"
#: What the key check seals; what it holds matters less than that it opens.
_CHECK_TEXT: Final = "chamberlain secret key check"
#: Associated data of a seal: the format, a context, the secret's name.
_CONTEXT: Final = b"chamberlain secret\x00"


class WrongKey(Exception):
    """A sealed value did not open: another key sealed it, or it was altered."""


class KeyProblem(Exception):
    """The secret key cannot be had: malformed, unreadable, unsafe, or missing."""


@attrs.frozen(kw_only=True)
class SecretInfo:
    """What the registry tells about a secret: everything but its value."""

    name: str
    description: str | None
    #: Epoch seconds.
    created_at: float
    #: Epoch seconds of the last rotation; None until the first.
    rotated_at: float | None
    #: ``****`` and the value's last four characters (see :func:`hint`).
    hint: str


def new_key_text() -> str:
    """A fresh key, as the text :data:`SECRET_KEY_ENV` and the key file hold."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def parse_key(text: str, *, source: str) -> bytes:
    """The key ``text`` holds (surrounding whitespace ignored); :class:`KeyProblem` if none.

    ``source`` names where the text came from, for the message.
    """
    stripped = text.strip()
    if not stripped:
        raise KeyProblem(f"{source} is empty: it must hold a secret key; {MAKE_A_KEY}")
    try:
        # validate=True: characters outside the alphabet are an error, not skipped.
        key = base64.b64decode(stripped + "=" * (-len(stripped) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise KeyProblem(
            f"{source} is not a secret key: expected the URL-safe base64 of"
            f" {KEY_BYTES} random bytes (44 characters); {MAKE_A_KEY}"
        )
    return key


class Sealer:
    """Seals and opens registry values with one key."""

    __slots__ = ("_aead", "_key", "source")

    def __init__(self, key: bytes, *, source: str = "the given key") -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"a secret key is {KEY_BYTES} bytes, not {len(key)}")
        self._key = key
        self._aead: AESGCM | None = None
        #: Where the key came from, for messages: ``CHAMBERLAIN_SECRET_KEY``, a file.
        self.source = source

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(self._key)
        return self._aead

    @classmethod
    def random(cls) -> Sealer:
        """A sealer with a fresh key that nothing keeps: for a state that dies with the process."""
        return cls(secrets.token_bytes(KEY_BYTES), source="a random key for this process")

    def __repr__(self) -> str:
        return f"Sealer(source={self.source!r})"

    def seal(self, name: str, value: str) -> bytes:
        """``value`` sealed for the secret ``name``: format byte, nonce, ciphertext and tag."""
        nonce = os.urandom(NONCE_BYTES)
        return _FORMAT + nonce + self._cipher().encrypt(nonce, value.encode("utf-8"), _aad(name))

    def unseal(self, name: str, blob: bytes) -> str:
        """The value ``blob`` holds for secret ``name``; :class:`WrongKey` if it will not open."""
        if len(blob) < 1 + NONCE_BYTES + 16 or blob[:1] != _FORMAT:
            raise WrongKey(
                f"the sealed value of {name!r} is not in a format this chamberlain reads"
            )
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        cipher = self._cipher()
        from cryptography.exceptions import InvalidTag

        try:
            clear = cipher.decrypt(nonce, sealed, _aad(name))
        except InvalidTag:
            raise WrongKey(
                f"the secret {name!r} does not open with the key from {self.source}:"
                " it was sealed with another key, or altered"
            ) from None
        try:
            return clear.decode("utf-8")
        except UnicodeDecodeError:
            raise WrongKey(f"the secret {name!r} opened to something that is not text") from None

    def check_blob(self) -> bytes:
        """The key check: a value sealed under :data:`KEY_CHECK_NAME`, to store once."""
        return self.seal(KEY_CHECK_NAME, _CHECK_TEXT)

    def verify(self, blob: bytes) -> None:
        """Raise :class:`WrongKey` unless ``blob`` is a key check this key made."""
        try:
            opened = self.unseal(KEY_CHECK_NAME, blob)
        except WrongKey:
            opened = None
        if opened != _CHECK_TEXT:
            raise WrongKey(
                f"the secret key from {self.source} is not the key the stored secrets were"
                " sealed with; start with that key"
            )


def _aad(name: str) -> bytes:
    return _FORMAT + _CONTEXT + name.encode("utf-8")


def key_file_path(state_path: Path) -> Path:
    """Where the key file of the state at ``state_path`` is: beside it."""
    return state_path.parent / KEY_FILE_NAME


def load_sealer(
    state_path: Path | None, environ: Mapping[str, str], *, create: bool
) -> Sealer | None:
    """The sealer for the state at ``state_path`` (None: in memory).

    The key is :data:`SECRET_KEY_ENV` when that is set, else the key file (see the
    module docstring); an in-memory state without the variable gets a random one.
    A missing key file is created when ``create`` is true, and otherwise means
    None.  Raises :class:`KeyProblem` for a malformed key or a key file that cannot
    be read, is open to others, or cannot be created.
    """
    text = environ.get(SECRET_KEY_ENV)
    if text is not None:
        return Sealer(parse_key(text, source=SECRET_KEY_ENV), source=SECRET_KEY_ENV)
    if state_path is None:
        return Sealer.random()
    path = key_file_path(state_path)
    source = f"the key file {path}"
    try:
        return Sealer(parse_key(_read_key_file(path), source=source), source=source)
    except FileNotFoundError:
        if not create:
            return None
    try:
        return Sealer(parse_key(_create_key_file(path), source=source), source=source)
    except FileExistsError:
        # Another process created it first: that key is the key.
        return Sealer(parse_key(_read_key_file(path), source=source), source=source)


def _read_key_file(path: Path) -> str:
    """The key file's text; FileNotFoundError when there is none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise KeyProblem(f"cannot read the secret key file {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyProblem(f"the secret key file {path} is not a regular file")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise KeyProblem(
                f"the secret key file {path} is open to others (mode {mode:04o}):"
                f" anyone who can read it can read every secret; chmod 600 {path}"
            )
        data = b""
        while chunk := os.read(fd, 4096):
            data += chunk
            if len(data) > 4096:
                raise KeyProblem(f"the secret key file {path} is not a secret key: it is too long")
    except OSError as exc:
        raise KeyProblem(f"cannot read the secret key file {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyProblem(
            f"the secret key file {path} is not a secret key: it is not text"
        ) from None


def _create_key_file(path: Path) -> str:
    """Write a fresh key to ``path`` (0600, never over an existing file) and return it."""
    text = new_key_text()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 at once, whatever the umask: a chmod afterwards leaves a window.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise
    except OSError as exc:
        raise KeyProblem(f"cannot create the secret key file {path}: {exc.strerror}") from None
    try:
        os.write(fd, (text + "\n").encode("ascii"))
        # The key must be on disk before any value sealed with it is.
        os.fsync(fd)
    except OSError as exc:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise KeyProblem(f"cannot write the secret key file {path}: {exc.strerror}") from None
    os.close(fd)
    return text


# -- what may be registered ------------------------------------------------------------


def name_problem(name: object) -> str | None:
    """What is wrong with ``name`` as a secret's name (None: nothing)."""
    if not isinstance(name, str):
        return "must be a string"
    if _NAME.fullmatch(name) is None:
        return _NAME_RULE
    return None


def check_secret_name(name: object) -> str:
    """``name`` when it is a valid secret name; ValueError saying the rule otherwise."""
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"secret name {name!r} {problem}")
    assert isinstance(name, str)
    return name


def value_problem(value: object) -> str | None:
    """What is wrong with ``value`` as a secret's value (None: nothing).

    The answer never quotes the value.
    """
    if not isinstance(value, str):
        return "must be a string"
    if len(value.strip()) < MIN_SECRET_LENGTH:
        return (
            f"must be at least {MIN_SECRET_LENGTH} characters, not counting spaces at"
            " either end: a shorter value cannot be told apart from ordinary text when"
            " it is redacted"
        )
    if "\x00" in value:
        return "must not contain NUL characters: no plugin config or environment can carry one"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return "must be valid Unicode text"
    if size > MAX_SECRET_BYTES:
        return f"is {size:,} bytes in UTF-8; at most {MAX_SECRET_BYTES:,} are kept"
    return None


def hint(value: str) -> str:
    """What the API shows of a value: ``****`` and its last four characters."""
    return "****" + value[-4:]
