"""Injection: SQL fragments and path traversal in query, path and form fields, and markup in names
and titles, as a signed-in user of branch B (or A, for what they own) would type them.

NUL bytes and ``%``/``_`` in searches are ``test_text_input``'s; this module checks that quotes,
comments and UNION fragments are data (no 5xx, no other branch's rows, no table dropped), that no
URL reaches a file outside the static directory, and that markup is escaped on every page that
shows it and in the live board's server-sent events.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from server.db import unit_of_work
from server.orgs.service import add_member
from server.vocabulary import MemberCategory
from tests.security.conftest import Realm, count_rows

SQL = [
    "' OR '1'='1",
    "' OR 1=1 --",
    '" OR ""="',
    "1; DROP TABLE member; --",
    "' UNION SELECT id, name, name, name FROM member --",
    "陈') OR ('a'='a",
    "\\'; SELECT pg_sleep(5); --",
]


class TestSqlInjection:
    """Quotes and SQL keywords in every free-text parameter are searched for literally."""

    @pytest.mark.parametrize("payload", SQL)
    @pytest.mark.parametrize(
        "url",
        ["/web/members?q={p}", "/web/transfers?q={p}", "/web/events?when={p}", "/web/audit?before={p}"],
    )
    def test_web_query_parameters(self, realm: Realm, url: str, payload: str) -> None:
        before = count_rows(realm.engine)
        response = realm.b.web.get(url.format(p=payload), follow_redirects=False)
        assert response.status_code in (200, 400, 422), response.text[:300]
        for secret in (realm.a.member_name, "周丽华", realm.a.transfer_name):
            assert secret not in response.text
        assert count_rows(realm.engine) == before

    @pytest.mark.parametrize("payload", SQL)
    def test_api_query_parameters(self, realm: Realm, payload: str) -> None:
        before = count_rows(realm.engine)
        for url, params in (
            ("/api/v1/transfers", {"q": payload[:50]}),
            ("/api/v1/orgs/{org}/ledger", {"period": payload}),
            ("/api/v1/members/{member}/history", {"period": payload}),
            ("/api/v1/reminders", {"org": payload}),
            ("/api/v1/taps/unmatched", {"org": payload}),
            ("/api/v1/transfers/suggestions", {"org_id": payload}),
        ):
            target = url.format(org=realm.b.org_id, member=realm.b.member_id)
            response = realm.client.get(target, params=params, headers=realm.b.api)
            assert response.status_code in (200, 400, 404, 422), (url, response.text)
            assert realm.a.member_name not in response.text
            assert realm.a.transfer_name not in response.text
        assert count_rows(realm.engine) == before

    @pytest.mark.parametrize("payload", SQL)
    def test_path_parameters(self, realm: Realm, payload: str) -> None:
        """A string where an id goes is refused by its type; a kiosk id is looked up as text."""
        for url in (
            f"/api/v1/kiosks/{payload}",
            f"/api/v1/events/{payload}/attendance",
            f"/api/v1/transfers/{payload}",
        ):
            response = realm.client.get(url, headers=realm.b.api)
            assert response.status_code in (404, 422), (url, response.text)
        for url in (
            f"/web/kiosks/{payload}",
            f"/web/members/{payload}",
            f"/web/ledgers/org/{payload}/2025.xlsx",
        ):
            response = realm.b.web.get(url, follow_redirects=False)
            assert response.status_code in (400, 403, 404, 422), (url, response.status_code)

    def test_a_form_field_is_stored_as_typed(self, realm: Realm) -> None:
        """An injection in a transfer's name is kept literally and the tables survive it."""
        before = count_rows(realm.engine)
        name = "x'); DROP TABLE member; --"
        response = realm.client.patch(
            f"/api/v1/transfers/{realm.b.transfer_id}", json={"note": name}, headers=realm.b.api
        )
        assert response.status_code == 200, response.text
        assert response.json()["note"] == name
        after = count_rows(realm.engine)
        assert after["member"] == before["member"]
        assert set(after) == set(before)

    @pytest.mark.parametrize("number", ["2147483648", "3104393000000064321", "9" * 40])
    def test_a_long_number_in_the_member_search(self, realm: Realm, number: str) -> None:
        """A card number pasted into the search box (digits are also tried as a member id)."""
        response = realm.b.web.get("/web/members", params={"q": number})
        assert response.status_code == 200
        assert realm.a.member_name not in response.text

    def test_search_does_not_widen_the_scope(self, realm: Realm) -> None:
        """A's secretary searching with an always-true condition still sees A's members only."""
        response = realm.a.web.get("/web/members", params={"q": "' OR '1'='1"})
        assert response.status_code == 200
        assert realm.b.member_name not in response.text


# Ids no row can have: past PostgreSQL's INTEGER, and past SQLite's 64 bits.
HUGE_IDS = [2**31, 2**63]
ID_URLS = [
    ("GET", "/api/v1/events/{n}/attendance"),
    ("GET", "/api/v1/events/{n}/leave"),
    ("POST", "/api/v1/leave/{n}/withdraw"),
    ("GET", "/api/v1/members/{n}/history"),
    ("GET", "/api/v1/orgs/{n}/ledger?period=2025"),
    ("GET", "/api/v1/enrol-sessions/{n}"),
    ("GET", "/api/v1/reminders?org={n}"),
    ("GET", "/api/v1/taps/unmatched?org={n}"),
    ("GET", "/api/v1/transfers/{n}"),
    ("GET", "/web/events/{n}"),
    ("GET", "/web/events/{n}/board"),
    ("GET", "/web/ledgers/events/{n}.xlsx"),
    ("GET", "/web/ledgers/members/{n}.pdf"),
    ("GET", "/web/ledgers/org/{n}/2025.xlsx"),
    ("GET", "/web/ledgers?org={n}"),
    ("GET", "/web/audit?before={n}"),
    ("GET", "/web/enrol-sessions/{n}"),
    ("GET", "/web/members/{n}"),
    ("GET", "/web/transfers/{n}"),
]


class TestIdsBeyondTheColumn:
    """An id larger than any column holds names nothing: 404 or 422, never 500."""

    @pytest.mark.parametrize("n", HUGE_IDS)
    @pytest.mark.parametrize(("method", "url"), ID_URLS)
    def test_a_huge_id(self, realm: Realm, method: str, url: str, n: int) -> None:
        target = url.format(n=n)
        if target.startswith("/web/"):
            response = realm.admin_web.request(method, target, follow_redirects=False)
            assert response.status_code in (400, 404), response.text[:300]
        else:
            response = realm.client.request(method, target, headers=realm.admin_api)
            assert response.status_code in (404, 422), response.text


TRAVERSAL = [
    "/web/static/../../config.py",
    "/web/static/%2e%2e/%2e%2e/config.py",
    "/web/static/..%2f..%2fconfig.py",
    "/web/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc/passwd",
    "/web/static/....//....//etc/passwd",
    "/web/static//etc/passwd",
    "/web/static/%252e%252e/%252e%252e/config.py",
    "/web/ledgers/org/1/..%2f..%2f..%2fetc%2fpasswd.xlsx",
    "/web/ledgers/events/1.xlsx%2f..%2f..%2fetc%2fpasswd",
    "/web/ledgers/members/1.%2e%2e%2fpasswd",
    "/api/v1/kiosks/..%2f..%2fetc%2fpasswd",
    "/api/v1/events/1/attendance?format=../../etc/passwd",
]


class TestPathTraversal:
    """No URL reads a file outside the static directory."""

    @pytest.mark.parametrize("path", TRAVERSAL)
    def test_no_file_outside_static(self, realm: Realm, path: str) -> None:
        response = realm.admin_web.get(path, headers=realm.admin_api, follow_redirects=False)
        assert response.status_code in (400, 404, 422), (path, response.status_code)
        body = response.text
        assert "root:x:0:0" not in body
        assert "class ServerSettings" not in body  # server/config.py
        assert "secret_key" not in body

    def test_static_files_are_served(self, realm: Realm) -> None:
        """The traversal refusals above are not because static files are off."""
        response = realm.client.get("/web/static/app.css")
        assert response.status_code == 200
        assert "text/css" in response.headers["content-type"]


MARKUP = '<script>alert("xss")</script><img src=x onerror=alert(1)>'
RAW = ("<script>alert(", "<img src=x")
ESCAPED = "&lt;script&gt;alert("


@pytest.fixture
def marked(fresh_realm: Realm, monkeypatch: pytest.MonkeyPatch) -> Realm:
    """A realm where a member's name, an event's title and topic, a kiosk's name, a transfer's
    name and note and a leave reason all carry markup, entered the way users enter them."""
    realm = fresh_realm
    a = realm.a
    # The roster import is the way names arrive; the service below is what it calls.
    with unit_of_work(realm.engine) as session:
        member = add_member(
            session,
            name=f"王{MARKUP}",
            org_id=a.org_id,
            category=MemberCategory.FULL,
            joined_org_at=None,
            now=realm.clock.now,
        )
        assert member.id is not None
        realm.world.members["xss"] = member.id
    edited = a.web.post(
        f"/web/events/{a.event_id}",
        data={"title": f"党日{MARKUP}", "topic": MARKUP, "csrf_token": a.csrf},
        follow_redirects=False,
    )
    assert edited.status_code == 303, edited.text
    attended = realm.client.post(
        f"/api/v1/events/{a.event_id}/attendance",
        json={"member_id": member.id, "reason": f"补录{MARKUP}"},
        headers=a.api,
    )
    assert attended.status_code == 201, attended.text
    leave = realm.client.post(
        f"/api/v1/events/{a.event_id}/leave",
        json={"member_id": realm.world.members["吴海峰"], "reason": MARKUP},
        headers=a.api,
    )
    assert leave.status_code == 201, leave.text
    transfer = realm.client.patch(
        f"/api/v1/transfers/{a.transfer_id}",
        json={"claimed_name": f"转{MARKUP}"[:100], "note": MARKUP},
        headers=realm.admin_api,
    )
    assert transfer.status_code == 200, transfer.text
    kiosk = realm.admin_web.post(
        "/web/kiosks",
        data={"name": f"机{MARKUP}", "venue_id": str(a.venue_id), "csrf_token": realm.admin_csrf},
        follow_redirects=False,
    )
    assert kiosk.status_code in (200, 303), kiosk.text[:300]
    monkeypatch.setattr("server.web.pages.board.STREAM_SECONDS", 0.3)
    return realm


def _assert_escaped(text: str, where: str, *, shown: bool = True) -> None:
    for raw in RAW:
        assert raw not in text, f"{where}: raw markup {raw!r}"
    if shown:
        assert ESCAPED in text, f"{where}: the payload is not on the page at all"


class TestMarkupIsEscaped:
    """Names and titles with markup are shown as text on every page, and in the live stream."""

    @pytest.mark.parametrize(
        "path",
        [
            "/web/",
            "/web/members",
            "/web/members/{member}",
            "/web/events",
            "/web/events/{event}",
            "/web/events/{event}/edit",
            "/web/events/{event}/board",
            "/web/transfers",
            "/web/transfers/{transfer}",
            "/web/kiosks",
            "/web/audit",
            "/web/ledgers",
        ],
    )
    def test_pages(self, marked: Realm, path: str) -> None:
        realm = marked
        url = path.format(
            member=realm.world.members["xss"], event=realm.a.event_id, transfer=realm.a.transfer_id
        )
        client = realm.admin_web if "kiosks" in path else realm.a.web
        response = client.get(url)
        assert response.status_code == 200, response.text[:300]
        # The dashboard and the ledger page show counts and titles, not every name.
        _assert_escaped(response.text, url, shown=path not in ("/web/",))

    def test_the_live_board_stream(self, marked: Realm) -> None:
        realm = marked
        client: TestClient = realm.a.web
        with client.stream("GET", f"/web/events/{realm.a.event_id}/board/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            text = "".join(response.iter_text())
        assert "event: board" in text
        _assert_escaped(text, "board stream")

    def test_json_is_data_not_markup(self, marked: Realm) -> None:
        """The API returns the name as typed, in JSON (never as HTML)."""
        realm = marked
        response = realm.client.get(f"/api/v1/events/{realm.a.event_id}/attendance", headers=realm.a.api)
        assert response.headers["content-type"].startswith("application/json")
        names = [row["name"] for row in response.json()["present"]]
        assert f"王{MARKUP}" in names
