"""The kiosk's Ed25519 key: generated once at enrollment, kept in a 0600 PEM file, signs every tap.

The signature covers the exact payload bytes that travel in the envelope (``SignedPayload.to_bytes()``),
so the server verifies what it received without re-serialising anything.
"""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from schemas import SignedEnvelope
from schemas.messages import SignedPayload, b64url_encode, key_id

KEY_FILE_MODE = 0o600


class KeyFileError(Exception):
    """The key file is missing, unreadable, too widely readable or not an Ed25519 key."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class KioskKey:
    """An Ed25519 private key and what the kiosk derives from it."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        self.public_key_raw: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.kid: str = key_id(self.public_key_raw)

    @classmethod
    def generate(cls) -> KioskKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key_b64url(self) -> str:
        return b64url_encode(self.public_key_raw)

    def sign(self, data: bytes) -> bytes:
        return self._private_key.sign(data)

    def seal(self, payload: SignedPayload) -> SignedEnvelope:
        """Sign the payload's canonical bytes and wrap both in an envelope."""
        data = payload.to_bytes()
        return SignedEnvelope(kid=self.kid, payload=b64url_encode(data), sig=b64url_encode(self.sign(data)))

    def to_pem(self) -> bytes:
        return self._private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def __repr__(self) -> str:  # never let a debugger or log line print key material
        return f"KioskKey(kid={self.kid!r})"


def write_key_file(path: Path, key: KioskKey) -> None:
    """Store *key* at *path* with mode 0600; refuses to overwrite an existing key.

    The PEM is written to a temporary file first and hard-linked into place, so a power cut leaves
    either no key file or a complete one, and two concurrent enrollments cannot both win.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # O_EXCL + an explicit mode: the key is never readable by others, not even for an instant.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    try:
        os.fchmod(fd, KEY_FILE_MODE)  # the umask can only remove bits, but be explicit
        os.write(fd, key.to_pem())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)
    except FileExistsError as exc:
        raise KeyFileError("key_file_exists", f"a kiosk key already exists at {path}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def load_or_create_key_file(path: Path) -> KioskKey:
    """The key at *path*, made and stored first if there is none (an earlier attempt's is reused)."""
    if path.exists():
        return load_key_file(path)
    key = KioskKey.generate()
    try:
        write_key_file(path, key)
    except KeyFileError:
        # Another process won the race to create the key; use theirs.
        return load_key_file(path)
    return key


def load_key_file(path: Path) -> KioskKey:
    """Read the kiosk key; raises KeyFileError when it is missing, exposed or not Ed25519."""
    try:
        info = path.stat()
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise KeyFileError(
            "key_file_missing", f"no kiosk key at {path}; run `ecard agent enroll` first"
        ) from exc
    except OSError as exc:
        raise KeyFileError(
            "key_file_unreadable", f"cannot read the kiosk key at {path}: {exc.strerror}"
        ) from exc
    # Like ssh: a private key others can read is treated as compromised rather than used.
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise KeyFileError(
            "key_file_insecure",
            f"kiosk key {path} is readable by other users (mode {stat.S_IMODE(info.st_mode):o}); "
            f"run `chmod 600 {path}`",
        )
    try:
        private_key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyFileError("key_file_corrupt", f"{path} is not a readable PEM private key") from exc
    if not isinstance(private_key, Ed25519PrivateKey):
        raise KeyFileError("key_file_wrong_type", f"{path} holds a key that is not Ed25519")
    return KioskKey(private_key)


def _fsync_directory(directory: Path) -> None:
    """Make a just-created directory entry survive a power cut (best effort on odd filesystems)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
