"""Read models of the cards domain: a 刷卡绑定 (bind-by-tap) request as its waiting page sees it."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from server.records.kiosks import EnrolSessionState


class EnrolSessionPublic(BaseModel):
    """A bind-card-by-tap request as the secretary's page polls it."""

    id: int
    member_id: int
    kiosk_id: str | None
    state: EnrolSessionState
    created_at: datetime
    expires_at: datetime
    finished_at: datetime | None
    card_masked: str | None = Field(description="The bound card, masked, once bound.")
    last_problem: str | None = Field(description="Code of the last refused tap while waiting.")
    last_problem_message: str | None
