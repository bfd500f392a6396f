"""``ecard agent rotate-key``: give the kiosk a new key, keeping its identity and its outbox.

The steps, each safe to crash in:

1. Make the new key and keep it as ``kiosk_key.next.pem`` (an earlier attempt's is reused).
2. Ask the server (``POST /api/v1/kiosks/rotate-key``): a :class:`schemas.KeyRotationPayload`
   naming the new public key and the last seq this kiosk allocated, signed by the old key, plus
   the new key's signature over the same bytes (proof that this kiosk holds it).
3. Record the new kid in ``enrollment.json``.
4. Rename ``kiosk_key.next.pem`` over ``kiosk_key.pem`` (atomic).

While ``kiosk_key.next.pem`` exists the rotation is unfinished and ``ecard agent run`` refuses to
start: it would sign new taps with a key the server may already have retired. Running
``rotate-key`` again finishes the job; the server answers a repeated request for a rotation it
already made with the same result.

Taps already in the outbox stay signed by the old key, and the server keeps verifying them with
it (up to the declared seq). The run lock is held throughout, so no tap is signed between reading
the last seq and switching keys.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx

from reader_agent.outbox import Outbox
from reader_agent.server_call import ServerCallError, post_for_answer
from reader_agent.signing import load_key_file, load_or_create_key_file
from reader_agent.state import StateDir, load_enrollment, save_enrollment
from schemas import KeyRotationPayload, KeyRotationRequest, KeyRotationResponse
from schemas.messages import b64url_encode

ROTATE_PATH = "/api/v1/kiosks/rotate-key"

SERVER_ERROR_MESSAGES: dict[str, str] = {
    "unknown_kiosk": "服务器不认识本机的密钥 (the server does not know this kiosk's key)",
    "bad_signature": "服务器认为签名无效 (the server refused the signatures)",
    "kiosk_revoked": "本机已被停用，不能轮换密钥 (this kiosk is revoked)",
    "key_retired": "本机当前密钥已被轮换停用 (the current key was already rotated out)",
    "public_key_in_use": "新公钥已被使用，请重试 (the new key is taken; retry)",
}


class RotationError(ServerCallError):
    """Key rotation failed; ``code`` says why (see :func:`rotate_key`)."""


@dataclass(frozen=True, slots=True)
class Rotation:
    previous_kid: str
    kid: str
    last_seq: int  # the highest seq signed with the previous key


def next_key_path(state: StateDir) -> Path:
    """Where the new key waits until the server has accepted it."""
    return state.root / "kiosk_key.next.pem"


def rotation_unfinished(state: StateDir) -> bool:
    return next_key_path(state).exists()


def rotate_key(client: httpx.Client, *, state: StateDir, now: Callable[[], datetime]) -> Rotation:
    """Rotate this kiosk's key with the server *client* points at (see the module docstring).

    The caller holds the state directory's run lock.

    Raises:
        RotationError: the server refused (its code), could not be reached
            (``server_unreachable``) or answered nonsense (``server_bad_response``).
        StateError, KeyFileError, OutboxError: the state directory is unusable.
    """
    enrollment = load_enrollment(state)
    current = load_key_file(state.key_path)
    pending_path = next_key_path(state)
    new_key = load_or_create_key_file(pending_path)
    if enrollment.kid == new_key.kid:
        # Crashed after step 3 last time: the server has the new key already.
        _install(pending_path, state.key_path)
        return Rotation(previous_kid=current.kid, kid=new_key.kid, last_seq=_last_seq(state))

    last_seq = _last_seq(state)
    payload = KeyRotationPayload(
        kiosk_id=enrollment.kiosk_id,
        new_public_key=new_key.public_key_b64url,
        last_seq=last_seq,
        requested_at=now(),
    )
    envelope = current.seal(payload)
    request = KeyRotationRequest(
        envelope=envelope, new_key_sig=b64url_encode(new_key.sign(envelope.payload_bytes()))
    )
    granted = post_for_answer(
        client,
        ROTATE_PATH,
        request,
        answer=KeyRotationResponse,
        error=RotationError,
        server_messages=SERVER_ERROR_MESSAGES,
        unreachable="cannot reach the server",
        unreadable="the server's answer is not readable",
        refused="key rotation refused",
    )
    if granted.kid != new_key.kid or granted.kiosk_id != enrollment.kiosk_id:
        raise RotationError(
            "server_bad_response", f"the server registered key {granted.kid}, this kiosk made {new_key.kid}"
        )
    save_enrollment(state, enrollment.model_copy(update={"kid": new_key.kid}))
    _install(pending_path, state.key_path)
    return Rotation(previous_kid=current.kid, kid=new_key.kid, last_seq=last_seq)


def _install(pending_path: Path, key_path: Path) -> None:
    # rename(2) replaces the old key in one step: a power cut leaves one complete key file.
    os.replace(pending_path, key_path)
    # The rename is durable only once the directory is; a power cut could otherwise bring the
    # old key back after the server retired it.
    fd = os.open(key_path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _last_seq(state: StateDir) -> int:
    with Outbox.open(state.outbox_path) as outbox:
        return outbox.stats().last_seq
