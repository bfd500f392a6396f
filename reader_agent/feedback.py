"""The one line a kiosk shows per event, as text for people or as JSON for tests and the demo.

Two kinds of line:

* the answer to a card presentation (accepted, duplicate, rejected, offline, not_recorded,
  read_failed): JSON ``{seq, status, code, member_name, event_title, message, pending, card}``,
  where ``seq`` is null when no tap was recorded (read_failed, not_recorded);
* a kiosk status line (ready, reader_error, stopped): JSON ``{status, code, message, pending}``
  with no ``seq`` key, so a consumer can tell the two apart by that key alone.

Card identifiers are sensitive: a line carries at most a masked tail (``****0001``), never a
whole UID or card number.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum

from schemas import CardApplication, CardFacts, TapReceipt
from schemas.masking import mask_card_no, mask_uid


class FeedbackStatus(StrEnum):
    ACCEPTED = "accepted"  # the three server verdicts, as in schemas.TapStatus
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    OFFLINE = "offline"  # stored and signed; the server has not answered yet
    NOT_RECORDED = "not_recorded"  # the outbox refused the tap: the member must know
    READ_FAILED = "read_failed"  # a card was there but could not be read
    READER_ERROR = "reader_error"  # the reader is gone; the agent keeps trying to reopen it
    READY = "ready"  # a reader is open and waiting for cards
    STOPPED = "stopped"


_KIOSK_STATUSES = frozenset({FeedbackStatus.READER_ERROR, FeedbackStatus.READY, FeedbackStatus.STOPPED})

_LABELS: dict[FeedbackStatus, str] = {
    FeedbackStatus.ACCEPTED: "成功",
    FeedbackStatus.DUPLICATE: "已记录",
    FeedbackStatus.REJECTED: "未通过",
    FeedbackStatus.OFFLINE: "离线",
    FeedbackStatus.NOT_RECORDED: "未记录",
    FeedbackStatus.READ_FAILED: "读卡失败",
    FeedbackStatus.READER_ERROR: "读卡器",
    FeedbackStatus.READY: "就绪",
    FeedbackStatus.STOPPED: "停止",
}


@dataclass(frozen=True, slots=True)
class Feedback:
    status: FeedbackStatus
    message: str
    seq: int | None = None
    code: str | None = None
    member_name: str | None = None
    event_title: str | None = None
    pending: int | None = None
    card: str | None = None  # masked, see mask_card
    link: str | None = None  # message mode: the one-time 留言亭 link the server answered

    @property
    def about_a_card(self) -> bool:
        """True for the answer to a card presentation, False for a kiosk status line."""
        return self.status not in _KIOSK_STATUSES

    def to_json(self) -> str:
        """One JSON object; only lines about a card carry ``seq`` (null when nothing was recorded)."""
        data = asdict(self)
        if not self.about_a_card:
            for key in ("seq", "member_name", "event_title", "card"):
                del data[key]
        if self.link is None:
            del data["link"]
        return json.dumps(data, ensure_ascii=False)

    def to_text(self) -> str:
        head = f"[{_LABELS[self.status]}]"
        if self.seq is not None:
            head += f" #{self.seq}"
        fields = [part for part in (self.member_name, self.event_title) if part]
        if not fields and self.card:
            fields.append(f"卡 {self.card}")
        text = f"{head} " + " | ".join([*fields, self.message])
        if self.code and self.status not in (FeedbackStatus.ACCEPTED, FeedbackStatus.OFFLINE):
            text += f" ({self.code})"
        if self.pending and self.status in (
            FeedbackStatus.ACCEPTED,
            FeedbackStatus.DUPLICATE,
            FeedbackStatus.REJECTED,
        ):
            text += f"  [{self.pending} 条待上传]"
        if self.link:
            text += f"  扫码留言：{self.link}"
        return text


def mask_card(card: CardFacts) -> str:
    """Enough for a member to recognise their card, not to copy it (policy: schemas.masking)."""
    if card.application is CardApplication.TUNION and card.card_no:
        return mask_card_no(card.card_no)
    return mask_uid(card.uid)


def from_receipt(seq: int, receipt: TapReceipt, *, pending: int | None, card: str) -> Feedback:
    return Feedback(
        status=FeedbackStatus(receipt.status.value),
        message=receipt.display.message,
        seq=seq,
        code=receipt.code,
        member_name=receipt.display.member_name,
        event_title=receipt.display.event_title,
        pending=pending,
        card=card,
        link=receipt.display.link,
    )


def offline(seq: int, *, pending: int | None, card: str) -> Feedback:
    count = "?" if pending is None else str(pending)
    return Feedback(
        status=FeedbackStatus.OFFLINE,
        message=f"已离线记录，{count} 条待上传 (recorded offline, {count} waiting)",
        seq=seq,
        pending=pending,
        card=card,
    )
