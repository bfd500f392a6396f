"""Real .xlsx rosters for the tests, written with openpyxl the way a secretary's Excel would hold them."""

from __future__ import annotations

from collections.abc import Sequence
from io import BytesIO

from openpyxl import Workbook

HEADER = ("序号", "姓名", "性别", "党员类别", "所在支部", "易通卡号")

# Made-up card numbers in the real 19-digit format.
CHEN_CARD = "3104393000001000001"
LIN_CARD = "3104393000001000002"
HUANG_CARD = "3104393000001000003"


def roster_xlsx(
    rows: Sequence[Sequence[object]],
    *,
    header: Sequence[object] = HEADER,
    title: str | None = None,
    sheet: str = "花名册",
    before: Sequence[str] = (),
) -> bytes:
    """A workbook with one roster sheet: an optional title row above the header, then the rows.

    ``before`` adds sheets ahead of the roster (an instructions sheet, say) holding one line of text.
    """
    workbook = Workbook()
    first = workbook.active
    assert first is not None
    for index, name in enumerate(before):
        target = first if index == 0 else workbook.create_sheet()
        target.title = name
        target.append(["填表说明：易通卡号请按文本格式填写"])
    worksheet = workbook.create_sheet() if before else first
    worksheet.title = sheet
    if title is not None:
        worksheet.append([title])
    worksheet.append(list(header))
    for row in rows:
        worksheet.append(list(row))
    buffer = BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def numbered(rows: Sequence[Sequence[object]]) -> list[list[object]]:
    """Prefix each row with its 序号, as rosters do."""
    return [[index, *row] for index, row in enumerate(rows, start=1)]
