"""Card endpoints: 刷卡绑定 requests (bind a member's card by tapping it at a kiosk in enrol mode),
bearer token, scoped to the token's organisation subtree."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from server.cards.schemas import EnrolSessionPublic
from server.cards.tap_binding import cancel_enrol_session, read_enrol_session, start_enrol_session
from server.deps import RequestDep
from server.inputs import RowId

router = APIRouter(prefix="/api/v1", tags=["cards"])


class EnrolSessionCreate(BaseModel):
    kiosk_id: str | None = Field(default=None, description="Only a tap at this kiosk binds the card.")


@router.post("/members/{member_id}/enrol-sessions")
def start_enrol(member_id: RowId, body: EnrolSessionCreate, ctx: RequestDep) -> EnrolSessionPublic:
    """Start waiting for the member's card at a kiosk in enrol mode (刷卡绑定)."""
    return start_enrol_session(
        ctx.session,
        member_id=member_id,
        kiosk_id=body.kiosk_id,
        caller=ctx.caller,
        now=ctx.now,
        ttl=ctx.settings.enrol_session_ttl,
    )


@router.get("/enrol-sessions/{enrol_session_id}")
def show_enrol(enrol_session_id: RowId, ctx: RequestDep) -> EnrolSessionPublic:
    """A 刷卡绑定 request: still waiting, bound (with the masked card), cancelled or expired."""
    return read_enrol_session(ctx.session, enrol_session_id=enrol_session_id, now=ctx.now, caller=ctx.caller)


@router.post("/enrol-sessions/{enrol_session_id}/cancel")
def cancel_enrol(enrol_session_id: RowId, ctx: RequestDep) -> EnrolSessionPublic:
    """Stop waiting for a card."""
    return cancel_enrol_session(
        ctx.session,
        enrol_session_id=enrol_session_id,
        caller=ctx.caller,
        now=ctx.now,
    )
