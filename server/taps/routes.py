"""Tap upload endpoint."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from schemas.messages import BatchReceipt, TapStatus, UncheckedTapBatch
from server.booth.service import booth_policy
from server.config import ServerSettings
from server.limits import Limit, TapsLimit, charge_limit, check_limit
from server.proxies import client_address
from server.taps.intake import TapIntake
from server.taps.service import Upload
from server.vocabulary import RejectionCode

router = APIRouter(prefix="/api/v1", tags=["taps"])


@router.post("/taps", response_model=BatchReceipt)
async def upload_taps(request: Request, _limit: TapsLimit, batch: UncheckedTapBatch) -> Response:
    """Store a batch of signed taps; one receipt per envelope, whatever each one's fate (an
    envelope that breaks the contract gets ``malformed``, naming the field).

    Async and without a session of its own: the batch waits in the event loop for this process's
    tap intake, which decides it together with the uploads that arrived with it
    (``server.taps.intake``)."""
    for kid in {kid for kid in map(_claimed_kid, batch.envelopes) if kid is not None}:
        check_limit(request, Limit.TAPS_PER_KIOSK, kid)
    intake: TapIntake = request.app.state.tap_intake
    settings: ServerSettings = request.app.state.settings
    upload = Upload(
        envelopes=batch.envelopes,
        source=client_address(request),
        booth=booth_policy(settings, base_url=str(request.base_url)),
    )
    receipt = await intake.submit(upload)
    # A kiosk's budget is spent only by new envelopes its key signed: nobody can spend it for it,
    # not even by replaying what it sent (a replay is a duplicate, charged to its source only).
    for kid in _signed_kids(batch, receipt):
        charge_limit(request, Limit.TAPS_PER_KIOSK, kid)
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
