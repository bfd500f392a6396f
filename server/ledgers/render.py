"""Exports of every ledger as CSV (UTF-8 with BOM, so Excel opens it), XLSX (openpyxl: a summary
sheet and one sheet per section, bold header row, widths, frozen panes) or A4 PDF in Chinese
(reportlab; signature lines for the chair and the recorder).

The PDF embeds the subset of WenQuanYi Micro Hei it uses (Debian ``fonts-wqy-microhei``, installed
with the system packages by ``make demo``/``make test``): a TrueType-outline CJK font, which reportlab
can subset, covering GBK (names too) as well as Latin and digits. An embedded font prints anywhere; a
built-in CID font such as ``STSong-Light`` is left to the reader and comes out blank in a reader
without Asian fonts (poppler without ``poppler-data``, Acrobat without its font pack). The font is
found in :data:`PDF_FONT_PATHS` and registered at the first PDF export; if it is not installed the
export fails with :class:`PdfFontMissing`, which says what to install.

:func:`render_ledger` is the one entry point for the API, the CLI and the web app. The libraries
are imported when a file is made, not at import time.
"""

from __future__ import annotations

import csv
import io
import threading
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from server.attendance.schemas import AttendanceSheet
from server.config import ConfigError
from server.ledgers.documents import (
    Cell,
    LedgerDocument,
    Section,
    member_history_document,
    org_ledger_document,
    sheet_document,
)
from server.ledgers.schemas import MemberHistory, OrgLedger

Ledger = AttendanceSheet | OrgLedger | MemberHistory

# The PDF font: WenQuanYi Micro Hei, face 0 of the .ttc (face 1 is its monospaced sibling). It has
# TrueType (glyf) outlines; reportlab cannot subset CFF-based OpenType such as Noto CJK.
PDF_FONT = "WenQuanYiMicroHei"
PDF_FONT_PACKAGE = "fonts-wqy-microhei"
PDF_FONT_SUBFONT = 0
PDF_FONT_PATHS: tuple[Path, ...] = (
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),  # Debian, Ubuntu
    Path("/usr/share/fonts/wqy-microhei/wqy-microhei.ttc"),  # Fedora
    Path("/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc"),  # Arch
)
_pdf_font_lock = threading.Lock()


class PdfFontMissing(ConfigError):
    """The PDF font is not installed; the message names the package and the files looked for."""


CODE_MARK = "ecard-verify:"
CODE_LABEL = "核验码 / verification code"
CODE_HINT = "核验：ecard admin ledger verify 本文件，或网页「台账 › 核验」输入核验码"


class ExportFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"
    PDF = "pdf"


MEDIA_TYPES: dict[ExportFormat, str] = {
    ExportFormat.JSON: "application/json",
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ExportFormat.PDF: "application/pdf",
}


@dataclass(frozen=True)
class RenderedLedger:
    content: bytes
    media_type: str
    filename: str
    code: str | None = None  # the verification code printed in it (server.ledgers.exports)


def to_document(ledger: Ledger) -> LedgerDocument:
    if isinstance(ledger, AttendanceSheet):
        return sheet_document(ledger)
    if isinstance(ledger, OrgLedger):
        return org_ledger_document(ledger)
    return member_history_document(ledger)


def render_ledger(ledger: Ledger, fmt: ExportFormat, *, code: str | None = None) -> RenderedLedger:
    """The ledger as a file in ``fmt``: its bytes, media type and a download name.

    *code* is the export's verification code (``server.ledgers.exports``), printed in the PDF
    footer and document info, the XLSX document properties and summary sheet, and the CSV's last
    line, each after :data:`CODE_MARK` so that ``ecard admin ledger verify FILE`` finds it.
    """
    document = to_document(ledger)
    if fmt == ExportFormat.JSON:
        content = ledger.model_dump_json(indent=2).encode()
    elif fmt == ExportFormat.CSV:
        content = render_csv(document, code=code)
    elif fmt == ExportFormat.XLSX:
        content = render_xlsx(document, code=code)
    else:
        content = render_pdf(document, code=code)
    return RenderedLedger(content, MEDIA_TYPES[fmt], f"{document.filename_stem}.{fmt.value}", code)


def render_csv(document: LedgerDocument, *, code: str | None = None) -> bytes:
    """Sections one after another, each with its title row and header; facts first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow([document.title])
    for name, value in document.facts:
        writer.writerow([name, value])
    for section in document.sections:
        writer.writerow([])
        writer.writerow([f"【{section.title}】"])
        writer.writerow(section.columns)
        writer.writerows([_text(_excel_value(cell)) for cell in row] for row in section.rows)
    if document.signatures:
        writer.writerow([])
        writer.writerow([f"{role}（签字）：" for role in document.signatures] + ["日期："])
    if code:
        writer.writerow([])
        writer.writerow([CODE_LABEL, f"{CODE_MARK}{code}", CODE_HINT])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def render_xlsx(document: LedgerDocument, *, code: str | None = None) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font, PatternFill
    from openpyxl.utils import get_column_letter

    workbook = Workbook()
    summary = workbook.active
    summary.title = "概况"
    summary.append([document.title])
    summary["A1"].font = Font(bold=True, size=14)
    for name, value in document.facts:
        summary.append([name, value])
    summary.append([])
    for role in document.signatures:
        summary.append([f"{role}（签字）", ""])
    summary.append(["日期", ""])
    if code:
        summary.append([])
        summary.append([CODE_LABEL, f"{CODE_MARK}{code}"])
        summary.append(["", CODE_HINT])
        workbook.properties.keywords = f"{CODE_MARK}{code}"
        workbook.properties.subject = f"{CODE_LABEL} {code}"
    summary.column_dimensions["A"].width = 16
    summary.column_dimensions["B"].width = max(
        [40, *(display_width(value) + 2 for _, value in document.facts)]
    )

    header_font = Font(bold=True)
    header_fill = PatternFill("solid", fgColor="DDE4EE")
    used_titles: set[str] = {summary.title}
    for section in document.sections:
        sheet = workbook.create_sheet(_sheet_title(section.title, used_titles))
        sheet.append(section.columns)
        for cell in sheet[1]:
            cell.font = header_font
            cell.fill = header_fill
            cell.alignment = Alignment(vertical="center", wrap_text=True)
        for row in section.rows:
            sheet.append([_excel_value(cell) for cell in row])
        for index, width in enumerate(_column_widths(section), start=1):
            sheet.column_dimensions[get_column_letter(index)].width = width
        sheet.freeze_panes = "A2"
        if section.rows:
            sheet.auto_filter.ref = sheet.dimensions
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def render_pdf(document: LedgerDocument, *, code: str | None = None) -> bytes:
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.lib.units import mm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    register_pdf_font()
    page = landscape(A4) if document.landscape else A4
    margin = 15 * mm
    usable = page[0] - 2 * margin
    title_style = ParagraphStyle("title", fontName=PDF_FONT, fontSize=16, leading=22, alignment=1)
    heading_style = ParagraphStyle("heading", fontName=PDF_FONT, fontSize=12, leading=18, spaceBefore=8)
    body = ParagraphStyle("body", fontName=PDF_FONT, fontSize=9, leading=12, wordWrap="CJK")
    small = ParagraphStyle("small", fontName=PDF_FONT, fontSize=8, leading=10, wordWrap="CJK")

    def para(value: Cell, style: ParagraphStyle = small) -> Any:
        return Paragraph(_escape(_text(value)), style)

    # Cells hold paragraphs, but a table still sets its cell font (Helvetica unless told): name ours,
    # so no font other than the embedded one ends up in the file.
    cell_font = ("FONTNAME", (0, 0), (-1, -1), PDF_FONT)
    grid = TableStyle(
        [
            cell_font,
            ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
            ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#DDE4EE")),
            ("LEFTPADDING", (0, 0), (-1, -1), 3),
            ("RIGHTPADDING", (0, 0), (-1, -1), 3),
        ]
    )
    story: list[Any] = [Paragraph(_escape(document.title), title_style), Spacer(1, 4 * mm)]
    facts = [[para(name, body), para(value, body)] for name, value in document.facts]
    if facts:
        table = Table(facts, colWidths=[28 * mm, usable - 28 * mm])
        table.setStyle(
            TableStyle(
                [
                    cell_font,
                    ("GRID", (0, 0), (-1, -1), 0.4, colors.grey),
                    ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#F2F4F7")),
                    ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ]
            )
        )
        story.append(table)
    for section in document.sections:
        story.append(Paragraph(_escape(f"{section.title}（{len(section.rows)}）"), heading_style))
        if not section.rows:
            story.append(Paragraph("无", body))
            continue
        weights = _column_widths(section)
        total = sum(weights)
        widths = [usable * weight / total for weight in weights]
        rows = [[para(column) for column in section.columns]]
        rows += [[para(cell) for cell in row] for row in section.rows]
        table = Table(rows, colWidths=widths, repeatRows=1)
        table.setStyle(grid)
        story.append(table)
    if document.signatures:
        story.append(Spacer(1, 12 * mm))
        cells = [f"{role}（签字）：____________" for role in document.signatures] + ["日期：____________"]
        # Widths by length, so a long role and name keeps its line on one row.
        lengths = [display_width(cell) for cell in cells]
        signature_table = Table(
            [[para(cell, body) for cell in cells]],
            colWidths=[usable * length / sum(lengths) for length in lengths],
        )
        signature_table.setStyle(TableStyle([cell_font]))
        story.append(signature_table)

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont(PDF_FONT, 8)
        canvas.drawRightString(page[0] - margin, 8 * mm, f"第 {doc.page} 页")
        canvas.drawString(margin, 8 * mm, document.title)
        if code:
            canvas.drawCentredString(page[0] / 2, 8 * mm, f"核验码 {CODE_MARK}{code}")
        canvas.restoreState()

    buffer = io.BytesIO()
    pdf = SimpleDocTemplate(
        buffer,
        pagesize=page,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=margin,
        bottomMargin=margin,
        title=document.title,
        author="党员e通卡",
        # Not reportlab's default Helvetica, so every font in the file is the embedded one.
        initialFontName=PDF_FONT,
        keywords=f"{CODE_MARK}{code}" if code else "",
        subject=f"{CODE_LABEL} {code}" if code else "",
    )
    pdf.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


def find_pdf_font(candidates: Sequence[Path] = PDF_FONT_PATHS) -> Path:
    """The first of ``candidates`` that is a file.

    Raises:
        PdfFontMissing: none is; the message says which package to install.
    """
    for path in candidates:
        if path.is_file():
            return path
    raise PdfFontMissing(
        f"PDF export needs the font WenQuanYi Micro Hei: install the Debian package {PDF_FONT_PACKAGE} "
        f"(apt-get install {PDF_FONT_PACKAGE}; make demo and make test do it). "
        f"Looked for: {', '.join(str(path) for path in candidates)}"
    )


def register_pdf_font() -> str:
    """Register :data:`PDF_FONT` with reportlab once (at the first PDF export) and return its name.

    Bold and italic map to the same face: the font has no bold, and reportlab would otherwise
    fail on ``<b>`` in a paragraph.
    """
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    # Locked: two first exports at once must not each register (and subset) their own copy.
    with _pdf_font_lock:
        if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
            font = TTFont(PDF_FONT, str(find_pdf_font()), subfontIndex=PDF_FONT_SUBFONT)
            pdfmetrics.registerFont(font)
            pdfmetrics.registerFontFamily(
                PDF_FONT, normal=PDF_FONT, bold=PDF_FONT, italic=PDF_FONT, boldItalic=PDF_FONT
            )
    return PDF_FONT


def _text(cell: Cell) -> str:
    if cell is None:
        return ""
    return str(cell)


def _excel_value(cell: Cell) -> Cell:
    # Numbers stay numbers (sums and filters work); text that Excel would run as a formula is quoted.
    if isinstance(cell, str) and cell[:1] in ("=", "+", "-", "@"):
        return "'" + cell
    return cell


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def display_width(text: str) -> int:
    """Terminal/spreadsheet columns: wide (CJK) characters take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _column_widths(section: Section) -> list[int]:
    """Section widths if given, else from the content; capped so one long note cannot hog a page."""
    if section.widths is not None:
        return [
            max(width * 2, display_width(column) + 2)
            for width, column in zip(section.widths, section.columns, strict=True)
        ]
    widths = []
    for index, column in enumerate(section.columns):
        longest = max([display_width(column), *(display_width(_text(row[index])) for row in section.rows)])
        widths.append(min(max(longest + 2, 6), 40))
    return widths


def _sheet_title(title: str, used: set[str]) -> str:
    cleaned = "".join(ch for ch in title if ch not in "[]:*?/\\")[:31] or "Sheet"
    candidate, number = cleaned, 2
    while candidate in used:
        candidate = f"{cleaned[:28]}({number})"
        number += 1
    used.add(candidate)
    return candidate
