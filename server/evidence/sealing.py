"""The evidence key and what is done with it: sealing a tap's signed bytes (AES-256-GCM) and the
hash that chains a kiosk's taps (SM3, like the audit log).

The key is ``ECARD_EVIDENCE_KEY`` (32 bytes, base64 or hex), else ``<data_dir>/evidence.key``,
created 0600 on first use. It is kept apart from the database (and from database backups): a copy
of the database alone shows no card identifier, and without the key the sealed bytes cannot be
opened, so signatures can no longer be checked again; the attendance itself does not depend on it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from server.config import ConfigError, ServerSettings, read_key_file

EVIDENCE_KEY_FILE_NAME = "evidence.key"
KEY_BYTES = 32
NONCE_BYTES = 12
GENESIS_HASH = "0" * 64


def parse_evidence_key(text: str) -> bytes:
    """32 bytes from base64 (standard or url-safe) or hex. Raises ValueError."""
    value = text.strip()
    candidates: list[bytes] = []
    if len(value) == 2 * KEY_BYTES:
        with contextlib.suppress(ValueError):
            candidates.append(bytes.fromhex(value))
    with contextlib.suppress(binascii.Error, ValueError):
        candidates.append(base64.b64decode(value.replace("-", "+").replace("_", "/") + "==", validate=False))
    for key in candidates:
        if len(key) == KEY_BYTES:
            return key
    raise ValueError(f"the evidence key must be {KEY_BYTES} bytes in base64 or hex (openssl rand -base64 32)")


def load_evidence_key(settings: ServerSettings) -> bytes:
    """``ECARD_EVIDENCE_KEY``, else ``<data_dir>/evidence.key`` (created on first use).

    Raises:
        ConfigError: the key is malformed, or the file cannot be read or created.
    """
    if settings.evidence_key is not None:
        try:
            return parse_evidence_key(settings.evidence_key.get_secret_value())
        except ValueError as exc:
            raise ConfigError(f"ECARD_EVIDENCE_KEY: {exc}") from exc
    path = settings.data_dir / EVIDENCE_KEY_FILE_NAME
    text = read_key_file(
        path, what="evidence key", new_key=lambda: base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    )
    try:
        return parse_evidence_key(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class SealedBytes:
    nonce: bytes
    sealed: bytes


class EvidenceSealer:
    """Seals and opens signed tap bytes; holds the evidence key so nothing else needs to."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the evidence key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(key)

    def seal(self, raw: bytes, *, binding: bytes) -> SealedBytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return SealedBytes(nonce=nonce, sealed=self._aead.encrypt(nonce, raw, binding))

    def open(self, nonce: bytes, sealed: bytes, *, binding: bytes) -> bytes | None:
        """The signed bytes, or None when the blob, its nonce or its row was altered (or another key)."""
        try:
            return self._aead.decrypt(nonce, sealed, binding)
        except (InvalidTag, ValueError):
            return None

    def __repr__(self) -> str:
        return "EvidenceSealer(<key>)"


def seal_binding(*, tap_id: int, kiosk_id: str, seq: int | None, kid: str, payload_digest: str) -> bytes:
    """The AES-GCM associated data: the row a sealed blob belongs to."""
    return json.dumps(
        ["ecard/tap/v1", tap_id, kiosk_id, seq, kid, payload_digest], separators=(",", ":")
    ).encode()


def tap_chain_hash(
    prev_hash: str,
    *,
    tap_id: int,
    received_at: datetime,
    kiosk_id: str,
    seq: int | None,
    kid: str,
    payload_digest: str,
    signature: str,
) -> str:
    """SM3 over the previous hash and a tap's immutable fields (the signature by its SHA-256)."""
    content = json.dumps(
        [
            tap_id,
            received_at.astimezone(UTC).isoformat(),
            kiosk_id,
            seq,
            kid,
            payload_digest,
            hashlib.sha256(signature.encode()).hexdigest(),
        ],
        separators=(",", ":"),
    ).encode()
    digest = hashes.Hash(hashes.SM3())
    digest.update(bytes.fromhex(prev_hash))
    digest.update(content)
    return digest.finalize().hex()
