"""``ecard agent enroll``: make the kiosk key, register it with a one-time code, remember the answer.

The key is generated (or, after an earlier failed attempt, reused) *before* the server is asked,
so a retry after a network error presents the same public key. A kiosk that is already enrolled
refuses to enroll again: its outbox holds taps numbered for its current identity.
"""

from __future__ import annotations

import httpx

from reader_agent.outbox import Outbox
from reader_agent.server_call import ServerCallError, post_for_answer
from reader_agent.signing import load_or_create_key_file
from reader_agent.state import Enrollment, StateDir, save_enrollment
from schemas import EnrollRequest, EnrollResponse

ENROLL_PATH = "/api/v1/kiosks/enroll"

# What an installer sees for each code the server may answer with.
SERVER_ERROR_MESSAGES: dict[str, str] = {
    # Servers answer this one code for unknown, used and expired codes alike (the other two are
    # from older servers).
    "enrollment_code_invalid": (
        "注册码无效、已使用或已过期，请向管理员重新申请 (enrollment code invalid, used or expired)"
    ),
    "enrollment_code_expired": "注册码已过期，请向管理员重新申请 (enrollment code expired)",
    "enrollment_code_used": "注册码已被使用 (enrollment code already used)",
    "bad_public_key": "服务器不接受本机公钥 (server rejected this kiosk's public key)",
}


class EnrollmentError(ServerCallError):
    """Enrollment failed; ``code`` says why (see :func:`enroll`)."""


def enroll(
    client: httpx.Client, *, state: StateDir, server_url: str, code: str, agent_version: str
) -> Enrollment:
    """Enroll this kiosk with the server at *server_url* (which *client* must be pointed at).

    Raises:
        EnrollmentError: ``already_enrolled``, ``server_unreachable``, ``server_bad_response``,
            ``kid_mismatch`` or the server's own code (``enrollment_code_invalid``, ...).
        KeyFileError, StateError, OutboxError: the state directory is unusable.
    """
    state.create()
    if state.enrollment_path.exists():
        raise EnrollmentError(
            "already_enrolled",
            f"this kiosk is already enrolled ({state.enrollment_path}); use a new --state-dir",
        )
    key = load_or_create_key_file(state.key_path)
    request = EnrollRequest(code=code, public_key=key.public_key_b64url, agent_version=agent_version[:64])
    granted = post_for_answer(
        client,
        ENROLL_PATH,
        request,
        answer=EnrollResponse,
        error=EnrollmentError,
        server_messages=SERVER_ERROR_MESSAGES,
        unreachable=f"cannot reach {server_url}",
        unreadable="the server's enrollment answer is not readable",
        refused="enrollment refused",
    )
    if granted.kid != key.kid:
        raise EnrollmentError(
            "kid_mismatch", f"the server registered key {granted.kid}, but this kiosk's key is {key.kid}"
        )
    enrollment = Enrollment(
        server_url=server_url,
        kiosk_id=granted.kiosk_id,
        kid=granted.kid,
        kiosk_name=granted.kiosk_name,
        venue_name=granted.venue_name,
        enrolled_at=granted.server_time,
    )
    # The outbox is created now so that `run` can tell "never used" from "lost" (see cli.run).
    with Outbox.open(state.outbox_path) as outbox:
        outbox.continue_from(granted.first_seq)
    save_enrollment(state, enrollment)
    return enrollment
