"""Tap upload endpoint."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from schemas.messages import BatchReceipt, TapStatus, UncheckedTapBatch
from server.booth.service import booth_policy
from server.cards.checks import CardCheckPolicy
from server.deps import ClockDep, KeyringDep, SessionDep, SettingsDep, TapFeedDep
from server.evidence.sealing import EvidenceSealer
from server.limits import Limit, TapsLimit, charge_limit, check_limit
from server.proxies import client_address
from server.taps.service import ingest_batch
from server.taps.strangers import StrangerTally
from server.vocabulary import RejectionCode

router = APIRouter(prefix="/api/v1", tags=["taps"])


def get_card_policy(request: Request) -> CardCheckPolicy:
    # Beside its only user: server.deps stays free of domain imports other than the caller's.
    policy: CardCheckPolicy = request.app.state.card_policy
    return policy


CardPolicyDep = Annotated[CardCheckPolicy, Depends(get_card_policy)]


def get_strangers(request: Request) -> StrangerTally:
    strangers: StrangerTally = request.app.state.tap_strangers
    return strangers


StrangersDep = Annotated[StrangerTally, Depends(get_strangers)]


def get_sealer(request: Request) -> EvidenceSealer:
    sealer: EvidenceSealer = request.app.state.evidence_sealer
    return sealer


SealerDep = Annotated[EvidenceSealer, Depends(get_sealer)]


@router.post("/taps", response_model=BatchReceipt)
def upload_taps(
    request: Request,
    _limit: TapsLimit,
    batch: UncheckedTapBatch,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    clock: ClockDep,
    feed: TapFeedDep,
    card_policy: CardPolicyDep,
    strangers: StrangersDep,
    sealer: SealerDep,
) -> Response:
    """Store a batch of signed taps; one receipt per envelope, whatever each one's fate (an
    envelope that breaks the contract gets ``malformed``, naming the field)."""
    for kid in {kid for kid in map(_claimed_kid, batch.envelopes) if kid is not None}:
        check_limit(request, Limit.TAPS_PER_KIOSK, kid)
    receipt = ingest_batch(
        session,
        batch,
        keyring=keyring,
        received_at=clock(),
        max_clock_skew=settings.max_clock_skew,
        on_accepted=feed.publish,
        card_policy=card_policy,
        source=client_address(request),
        strangers=strangers,
        sealer=sealer,
        booth=booth_policy(settings, base_url=str(request.base_url)),
    )
    # A kiosk's budget is spent only by new envelopes its key signed: nobody can spend it for it,
    # not even by replaying what it sent (a replay is a duplicate, charged to its source only).
    for kid in _signed_kids(batch, receipt):
        charge_limit(request, Limit.TAPS_PER_KIOSK, kid)
    # Serialised here, in this worker thread: a returned model would be checked in another one,
    # and under load none may be free while this request still holds its database connection.
    return Response(content=receipt.model_dump_json(), media_type="application/json")


_UNSIGNED = frozenset(
    {
        RejectionCode.UNKNOWN_KIOSK,
        RejectionCode.BAD_SIGNATURE,
        RejectionCode.MALFORMED,
        RejectionCode.KIOSK_MISMATCH,
    }
)


def _signed_kids(batch: UncheckedTapBatch, receipt: BatchReceipt) -> set[str]:
    """Kids of the envelopes whose signature held and that were new (whatever else became of them)."""
    return {
        kid
        for answer in receipt.receipts
        if answer.status != TapStatus.DUPLICATE
        and answer.code not in _UNSIGNED
        and 0 <= answer.index < len(batch.envelopes)
        for kid in [_claimed_kid(batch.envelopes[answer.index])]
        if kid is not None
    }


def _claimed_kid(item: object) -> str | None:
    """The ``kid`` a batch item claims, if it has one of a kid's length (checked by the service)."""
    kid = item.get("kid") if isinstance(item, dict) else None
    return kid if isinstance(kid, str) and len(kid) <= 64 else None
