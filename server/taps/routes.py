"""Tap upload endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from schemas.messages import BatchReceipt, TapBatch
from server.cards.checks import CardCheckPolicy
from server.deps import ClockDep, KeyringDep, SessionDep, SettingsDep, TapFeedDep
from server.taps.service import ingest_batch

router = APIRouter(prefix="/api/v1", tags=["taps"])


def get_card_policy(request: Request) -> CardCheckPolicy:
    # Beside its only user: server.deps stays free of domain imports other than the caller's.
    policy: CardCheckPolicy = request.app.state.card_policy
    return policy


CardPolicyDep = Annotated[CardCheckPolicy, Depends(get_card_policy)]


@router.post("/taps")
def upload_taps(
    batch: TapBatch,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    clock: ClockDep,
    feed: TapFeedDep,
    card_policy: CardPolicyDep,
) -> BatchReceipt:
    """Store a batch of signed taps; one receipt per envelope, whatever each one's fate."""
    return ingest_batch(
        session,
        batch,
        keyring=keyring,
        received_at=clock(),
        max_clock_skew=settings.max_clock_skew,
        on_accepted=feed.publish,
        card_policy=card_policy,
    )
