"""Privacy: raw card identifiers never leave the moment they are read.

Known 19-digit card numbers and UIDs go through the real app: bound on the web form, tapped at a
kiosk (accepted, unknown card, 刷卡绑定 in enrol mode) and typed into a transfer request. Then the
database (the SQLite file with its WAL; on PostgreSQL every row of every table as text), every
log record at DEBUG, and the body of every response (HTML, JSON, CSV, XLSX, PDF) are searched for
them. Only keyed digests and masked tails (``3104********4321``) may appear.
"""

from __future__ import annotations

import io
import logging
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import inspect, text

from schemas.messages import TapBatch, TapMode
from tests.security.conftest import Realm, post_taps
from tests.server.signing import card, tap_payload

BOUND = card("3104393000000064321", "04E1D2C3B4A596")  # bound on the web form, then tapped
STRANGER = card("3104393000000075432", "04F0E1D2C3B4A5")  # nobody's card, tapped
ENROLLED = card("3104393000000086543", "04A5B4C3D2E1F0")  # bound by tapping in enrol mode
TRANSFER_NO = "3104393000000097654"  # typed into a transfer request
UID_ONLY = card(None, "8BADF00D")  # a UID-only (serial reader) card, tapped

RAW = [
    BOUND.card_no,
    BOUND.uid,
    STRANGER.card_no,
    STRANGER.uid,
    ENROLLED.card_no,
    ENROLLED.uid,
    TRANSFER_NO,
    UID_ONLY.uid,
]


def _needles() -> list[bytes]:
    found: list[bytes] = []
    for value in RAW:
        assert value is not None
        for form in {value, value.lower(), value.upper()}:
            found.append(form.encode())
            found.append(form.encode("utf-16-le"))  # what a careless XLSX or PDF writer might use
    # The number grouped as printed on the card, in case something reformats it.
    for number in (BOUND.card_no, STRANGER.card_no, ENROLLED.card_no, TRANSFER_NO):
        assert number is not None
        found.append(" ".join(number[i : i + 4] for i in range(0, 19, 4)).encode())
    return found


NEEDLES = _needles()


def _leaks(blob: bytes) -> list[bytes]:
    return [needle for needle in NEEDLES if needle in blob]


class Recorder:
    """Keeps every response the test gets, to search them all at the end."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []

    def __call__(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)


@pytest.fixture
def recorded(fresh_realm: Realm) -> Iterator[tuple[Realm, Recorder]]:
    realm = fresh_realm
    recorder = Recorder()
    clients = [realm.client, realm.a.web, realm.b.web, realm.admin_web]
    for client in clients:
        client.event_hooks["response"].append(recorder)
    try:
        yield realm, recorder
    finally:
        for client in clients:
            client.event_hooks["response"].remove(recorder)


def _exercise(realm: Realm) -> None:
    """Every way a card identifier enters the system, through the real app."""
    a = realm.a
    now = realm.clock.now
    member = realm.world.members["吴海峰"]
    bound = a.web.post(
        f"/web/members/{member}/cards",
        data={"card_no": BOUND.card_no, "uid": BOUND.uid, "csrf_token": a.csrf},
        follow_redirects=False,
    )
    assert bound.status_code == 303, bound.text[:300]

    enrolling = realm.world.members["郑秀英"]
    session = realm.client.post(
        f"/api/v1/members/{enrolling}/enrol-sessions", json={"kiosk_id": a.kiosk_id}, headers=a.api
    )
    assert session.status_code == 200, session.text
    a.seq += 1
    enrol_tap = tap_payload(kiosk_id=a.kiosk_id, seq=a.seq, at=now, card_facts=ENROLLED, mode=TapMode.ENROL)
    post_taps(realm.client, TapBatch(envelopes=[a.keys.seal(enrol_tap)]).model_dump_json())
    status = realm.client.get(f"/api/v1/enrol-sessions/{session.json()['id']}", headers=a.api).json()
    assert status["state"] == "bound", status

    for tapped in (BOUND, STRANGER, UID_ONLY, ENROLLED):
        receipt = post_taps(realm.client, a.tap(tapped, at=now + timedelta(minutes=1)))
        assert receipt.status_code == 200, receipt.text
    # An out-of-window tap, so the unmatched list has this card too.
    post_taps(realm.client, a.tap(BOUND, at=now - timedelta(hours=5)))

    filed = realm.client.post(
        "/api/v1/transfers",
        json={
            "to_org_id": realm.world.committee_id,
            "card_no": TRANSFER_NO,
            "claimed_name": "孙转入",
            "placement_org_id": a.org_id,
        },
        headers=realm.admin_api,
    )
    assert filed.status_code == 201, filed.text
    realm.world.members["__transfer"] = filed.json()["id"]


def _read_everything(realm: Realm) -> None:
    """Open every page, list and export where a card could show."""
    a = realm.a
    member = realm.world.members["吴海峰"]
    year = realm.clock.now.year
    transfer = realm.world.members["__transfer"]
    for path in (
        "/web/",
        "/web/members",
        f"/web/members/{member}",
        f"/web/members/{realm.world.members['郑秀英']}",
        f"/web/events/{a.event_id}",
        f"/web/events/{a.event_id}/board",
        "/web/transfers",
        f"/web/transfers/{transfer}",
        f"/web/kiosks/{a.kiosk_id}",
        "/web/kiosks",
        "/web/audit",
        f"/web/ledgers?org={a.org_id}",
    ):
        client = realm.admin_web if "kiosks" in path else a.web
        assert client.get(path).status_code == 200, path
    for fmt in ("xlsx", "pdf", "csv"):
        assert a.web.get(f"/web/ledgers/events/{a.event_id}.{fmt}").status_code == 200
        assert a.web.get(f"/web/ledgers/members/{member}.{fmt}").status_code == 200
        assert a.web.get(f"/web/ledgers/org/{a.org_id}/{year}.{fmt}").status_code == 200
    for path in (
        f"/api/v1/events/{a.event_id}/attendance",
        f"/api/v1/members/{member}/history",
        f"/api/v1/orgs/{a.org_id}/ledger?period={year}",
        "/api/v1/taps/unmatched",
        f"/api/v1/transfers/{transfer}",
        "/api/v1/transfers",
        f"/api/v1/kiosks/{a.kiosk_id}",
        "/api/v1/kiosks",
    ):
        assert realm.client.get(path, headers=realm.admin_api).status_code == 200, path


def _body_text(response: httpx.Response) -> bytes:
    """The searchable content of a response: XLSX unzipped, PDF as its text."""
    content = response.content
    kind = response.headers.get("content-type", "")
    if "spreadsheetml" in kind:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            return b"\n".join(archive.read(name) for name in archive.namelist())
    if kind.startswith("application/pdf"):
        assert shutil.which("pdftotext"), "pdftotext (poppler-utils) is needed to read PDFs"
        return subprocess.run(["pdftotext", "-", "-"], input=content, capture_output=True, check=True).stdout
    return content


def _database_dump(realm: Realm) -> bytes:
    if realm.kind == "sqlite":
        path = Path(realm.settings.database_url.removeprefix("sqlite:///"))
        files = [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")]
        return b"".join(file.read_bytes() for file in files if file.exists())
    rows: list[str] = []
    with realm.engine.connect() as connection:
        for name in inspect(connection).get_table_names():
            rows.extend(str(row[0]) for row in connection.execute(text(f'SELECT t::text FROM "{name}" t')))
    return "\n".join(rows).encode()


class TestRawIdentifiers:
    """After binding, tapping and filing with known cards, the raw identifiers are nowhere."""

    def test_not_in_the_database_the_logs_or_any_response(
        self, recorded: tuple[Realm, Recorder], caplog: pytest.LogCaptureFixture
    ) -> None:
        realm, recorder = recorded
        caplog.set_level(logging.DEBUG)
        _exercise(realm)
        _read_everything(realm)

        # Something was shown and stored: the masked tail of the bound card, and a digest.
        member_page = realm.a.web.get(f"/web/members/{realm.world.members['吴海峰']}").text
        assert "3104********4321" in member_page
        dump = _database_dump(realm)
        assert b"4321" in dump  # the masked tail is kept

        assert _leaks(dump) == [], "raw identifiers in the database"
        logged = "\n".join(
            f"{record.getMessage()} {record.exc_text or ''} {record.args!r}"
            for record in caplog.records
            if not record.name.startswith("httpx")  # the test's own HTTP client, not the server
        )
        assert _leaks(logged.encode()) == [], "raw identifiers in the logs"
        assert len(recorder.responses) >= 35
        leaking = [
            (str(response.request.url), _leaks(_body_text(response)))
            for response in recorder.responses
            if _leaks(_body_text(response))
        ]
        assert leaking == [], "raw identifiers in responses"

    def test_a_refused_card_number_is_not_echoed(
        self, realm: Realm, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Validation errors keep where and why, never the value (it may be a card number)."""
        caplog.set_level(logging.DEBUG)
        bad = BOUND.card_no + "X"  # one character too many: refused
        assert bad is not None
        for response in (
            realm.client.post(
                "/api/v1/transfers",
                json={"to_org_id": "x", "card_no": bad},
                headers=realm.a.api,
            ),
            realm.a.web.post(
                f"/web/members/{realm.a.member_id}/cards",
                data={"card_no": bad, "csrf_token": realm.a.csrf},
            ),
        ):
            assert response.status_code in (400, 422), response.text[:200]
            assert BOUND.card_no not in response.text
        assert BOUND.card_no not in caplog.text
