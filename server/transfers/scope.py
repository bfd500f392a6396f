"""What every transfer handler (API and web) works with: the request's context and the SLA policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session

from server.caller import Caller
from server.transfers.calendar import TransferPolicy
from server.transfers.queue import get_detail, get_outgoing
from server.transfers.schemas import OutgoingDetail, TransferDetail


@dataclass(frozen=True)
class TransferScope:
    """One HTTP request's view of the transfers.

    ``now`` is read once per request: a change and the detail shown after it are judged at the
    same instant (deadlines, overdue marks and allowed actions follow from it).
    """

    session: Session
    caller: Caller
    policy: TransferPolicy
    now: datetime

    def detail(self, request_id: int) -> TransferDetail:
        return get_detail(
            self.session, request_id=request_id, caller=self.caller, policy=self.policy, now=self.now
        )

    def outgoing(self, request_id: int) -> OutgoingDetail:
        return get_outgoing(self.session, request_id=request_id, caller=self.caller)
