"""PDF ledgers carry their own CJK font, so they print on any machine and in any reader.

A non-embedded font (reportlab's built-in CID font ``STSong-Light``) is left to the reader: without
Debian's ``poppler-data`` or Acrobat's Asian font pack the page comes out blank. These tests read
the PDF back with poppler (``pdffonts``, ``pdftotext``, ``pdftoppm``) on a machine that has no
``poppler-data``, which is exactly where a non-embedded font fails.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import Engine

from server.keyring import Keyring
from server.ledgers.render import ExportFormat, PdfFontMissing, find_pdf_font, render_ledger
from tests.server.factories import ZHANG_CARD, World
from tests.server.ledgers.helpers import at, meeting, sheet, tap

TITLE = "签到表：四月主题党日"


@pytest.fixture
def sheet_pdf(engine: Engine, keyring: Keyring, world: World, tmp_path: Path) -> Path:
    """A real sign-in sheet, exported by the same function the API, CLI and web app use."""
    event = meeting(
        engine,
        world,
        "四月主题党日",
        at("2025-04-10"),
        chair=world.members["张三明"],
        recorder=world.members["王五"],
    )
    tap(engine, keyring, world, ZHANG_CARD, at("2025-04-10", "08:50"))
    rendered = render_ledger(sheet(engine, event), ExportFormat.PDF)
    path = tmp_path / "sheet.pdf"
    path.write_bytes(rendered.content)
    return path


def _run(*command: str) -> str:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=60, check=True).stdout


def test_the_cjk_font_is_embedded(sheet_pdf: Path) -> None:
    """Every font in the file is embedded (a subset), and none is left to the reader."""
    listing = _run("pdffonts", str(sheet_pdf))
    assert "STSong" not in listing
    # name, type, encoding, emb, sub, uni, object ID, generation; the two header lines first.
    rows = [line.split() for line in listing.splitlines()[2:] if line.strip()]
    assert rows, listing
    for row in rows:
        emb, sub, uni = row[-5:-2]
        assert emb == "yes", listing
        assert sub == "yes", listing  # a subset, not the 5 MB font
        assert uni == "yes", listing  # a ToUnicode map, so the text can be searched and copied
    assert any("WenQuanYi" in row[0] for row in rows), listing


def test_the_chinese_text_can_be_extracted(sheet_pdf: Path) -> None:
    text = _run("pdftotext", "-layout", str(sheet_pdf), "-").replace(" ", "")
    for expected in (TITLE, "主持人（张三明）（签字）", "2025-04-1008:50", "第1页"):
        assert expected in text, expected


def test_the_title_is_drawn(sheet_pdf: Path, tmp_path: Path) -> None:
    """Page 1 rendered at 50 dpi has dark title glyphs at the top, not a blank band."""
    prefix = tmp_path / "page"
    _run("pdftoppm", "-png", "-r", "50", "-f", "1", "-l", "1", str(sheet_pdf), str(prefix))
    (png,) = tmp_path.glob("page*.png")
    with Image.open(png) as page:
        gray = page.convert("L")
    width, height = gray.size
    # A4 portrait at 50 dpi: 413 x 585, give or take poppler's rounding.
    assert abs(width - 413) <= 2, gray.size
    assert abs(height - 585) <= 2, gray.size
    # The title line sits between the 15 mm top margin and the facts table (about 15–24 mm).
    band = gray.crop((0, round(14 / 25.4 * 50), width, round(25 / 25.4 * 50)))
    dark = sum(band.histogram()[:128])
    assert dark >= 150, f"only {dark} dark pixels in the title band"


def test_a_missing_font_is_reported_with_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(PdfFontMissing) as raised:
        find_pdf_font((tmp_path / "absent.ttc",))
    assert "fonts-wqy-microhei" in str(raised.value)
    assert str(tmp_path / "absent.ttc") in str(raised.value)
