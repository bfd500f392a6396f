"""Authorization: a caller of branch B can neither list, read, change nor detect branch A's objects,
through the API (B's secretary token) or the web app (B's signed-in secretary).

For every object type: organisation, member, event, attendance (the sign-in sheet), leave request,
ledgers and exports, reminders, transfer request, kiosk, venue, card binding, 刷卡绑定 request,
unmatched tap, users and audit entries. A refusal must look exactly like the answer for an id that
does not exist (same status, same error code, same message once the id is taken out), so probing
ids tells B nothing; and a refused change writes no row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.security.conftest import Realm, Side, count_rows

MISSING = 1_999_999  # an id no object has (inside every id column's range)
MISSING_KIOSK = "kiosk-ffffffffffff"


def _names(cases: list[Any]) -> list[str | None]:
    return [None if isinstance(case, type(pytest.param())) else case.name for case in cases]


@dataclass(frozen=True)
class Probe:
    """A request by B about one of A's objects, written with ``{x}`` where the object's id goes."""

    name: str
    method: str
    path: str
    target: Callable[[Side], object]  # which of A's ids is probed
    body: Callable[[Realm], dict[str, Any]] | None = None
    missing: object = MISSING


def _letter(realm: Realm) -> dict[str, Any]:
    now = realm.clock.now
    return {
        "letter_no": "闽湖组〔2025〕099号",
        "issuer_name": "中共湖里区某社区委员会",
        "issuer_kind": "basic_committee",
        "from_org_name": "湖里第三党支部",
        "to_org_name": "鹭江街道党工委",
        "member_category": "full",
        "dues_paid_to": f"{now.year}-{now.month:02d}",
        "issued_on": now.date().isoformat(),
        "valid_days": 30,
    }


API_PROBES = [
    # organisation
    Probe("org-ledger", "GET", "/api/v1/orgs/{x}/ledger?period=2025", lambda a: a.org_id),
    Probe("org-reminders", "GET", "/api/v1/reminders?org={x}", lambda a: a.org_id),
    Probe("org-transfer-suggestions", "GET", "/api/v1/transfers/suggestions?org_id={x}", lambda a: a.org_id),
    # member
    Probe("member-history", "GET", "/api/v1/members/{x}/history", lambda a: a.member_id),
    Probe(
        "member-enrol-card", "POST", "/api/v1/members/{x}/enrol-sessions", lambda a: a.member_id, lambda _: {}
    ),
    Probe(
        "member-leave-at-own-event",
        "POST",
        "/api/v1/events/{own_event}/leave",
        lambda a: a.member_id,
        lambda _: {"member_id": "{x}", "reason": "探测"},
    ),
    Probe(
        "member-attendance-at-own-event",
        "POST",
        "/api/v1/events/{own_event}/attendance",
        lambda a: a.member_id,
        lambda _: {"member_id": "{x}", "reason": "探测"},
    ),
    pytest.param(
        Probe(
            "member-suggested-transfer",
            "POST",
            "/api/v1/transfers/suggestions/{x}?org_id={own_org}",
            lambda a: a.member_id,
        ),
        id="member-suggested-transfer",
    ),
    # event and its sign-in sheet (attendance)
    Probe("event-sheet", "GET", "/api/v1/events/{x}/attendance", lambda a: a.event_id),
    Probe("event-sheet-xlsx", "GET", "/api/v1/events/{x}/attendance?format=xlsx", lambda a: a.event_id),
    Probe("event-leave-list", "GET", "/api/v1/events/{x}/leave", lambda a: a.event_id),
    Probe(
        "event-add-attendance",
        "POST",
        "/api/v1/events/{x}/attendance",
        lambda a: a.event_id,
        lambda r: {"member_id": r.b.member_id, "reason": "探测"},
    ),
    Probe(
        "event-ask-leave",
        "POST",
        "/api/v1/events/{x}/leave",
        lambda a: a.event_id,
        lambda r: {"member_id": r.b.member_id, "reason": "探测"},
    ),
    # leave request
    Probe(
        "leave-decide",
        "POST",
        "/api/v1/leave/{x}/decision",
        lambda a: a.leave_id,
        lambda _: {"approve": True},
    ),
    Probe("leave-withdraw", "POST", "/api/v1/leave/{x}/withdraw", lambda a: a.leave_id),
    # card binding requests (刷卡绑定)
    Probe("enrol-session-read", "GET", "/api/v1/enrol-sessions/{x}", lambda a: a.enrol_session_id),
    Probe("enrol-session-cancel", "POST", "/api/v1/enrol-sessions/{x}/cancel", lambda a: a.enrol_session_id),
    # kiosk (and through it the venue)
    Probe("kiosk-read", "GET", "/api/v1/kiosks/{x}", lambda a: a.kiosk_id, missing=MISSING_KIOSK),
    Probe(
        "kiosk-revoke",
        "POST",
        "/api/v1/kiosks/{x}/revoke",
        lambda a: a.kiosk_id,
        lambda _: {"reason": "探测"},
        missing=MISSING_KIOSK,
    ),
    Probe(
        "kiosk-enrol-at-foreign-kiosk",
        "POST",
        "/api/v1/members/{own_member}/enrol-sessions",
        lambda a: a.kiosk_id,
        lambda _: {"kiosk_id": "{x}"},
        missing=MISSING_KIOSK,
    ),
    # unmatched tap
    Probe(
        "tap-assign",
        "POST",
        "/api/v1/taps/{x}/assign",
        lambda a: a.unmatched_tap_id,
        lambda r: {"event_id": r.b.event_id, "reason": "探测"},
    ),
    # transfer request
    Probe("transfer-read", "GET", "/api/v1/transfers/{x}", lambda a: a.transfer_id),
    Probe(
        "transfer-update",
        "PATCH",
        "/api/v1/transfers/{x}",
        lambda a: a.transfer_id,
        lambda _: {"note": "探测"},
    ),
    Probe("transfer-letter", "PUT", "/api/v1/transfers/{x}/letter", lambda a: a.transfer_id, _letter),
    Probe(
        "transfer-tick",
        "PUT",
        "/api/v1/transfers/{x}/documents/id_card",
        lambda a: a.transfer_id,
        lambda _: {},
    ),
    Probe("transfer-untick", "DELETE", "/api/v1/transfers/{x}/documents/id_card", lambda a: a.transfer_id),
    Probe(
        "transfer-transition",
        "POST",
        "/api/v1/transfers/{x}/transitions",
        lambda a: a.transfer_id,
        lambda _: {"action": "close", "reason": "探测"},
    ),
]


def _fill(text: str, realm: Realm, x: object) -> str:
    return (
        text.replace("{x}", str(x))
        .replace("{own_event}", str(realm.b.event_id))
        .replace("{own_org}", str(realm.b.org_id))
        .replace("{own_member}", str(realm.b.member_id))
    )


def _api_call(realm: Realm, probe: Probe, x: object) -> httpx.Response:
    body = None
    if probe.body is not None:
        raw = probe.body(realm)
        body = {key: (x if value == "{x}" else value) for key, value in raw.items()}
    return realm.client.request(probe.method, _fill(probe.path, realm, x), json=body, headers=realm.b.api)


def _without(text: str, x: object) -> str:
    return re.sub(rf"(?<![\w-]){re.escape(str(x))}(?![\w-])", "<id>", text)


def _api_answer(response: httpx.Response, x: object) -> tuple[int, str, str, list[str]]:
    body = response.json()
    return response.status_code, body.get("error", ""), _without(str(body.get("detail", "")), x), sorted(body)


class TestApiObjects:
    """B's secretary token against A's objects, one request per object type and operation."""

    @pytest.mark.parametrize("probe", API_PROBES, ids=_names(API_PROBES))
    def test_a_foreign_object_is_indistinguishable_from_a_missing_one(
        self, realm: Realm, probe: Probe
    ) -> None:
        foreign = probe.target(realm.a)
        before = count_rows(realm.engine)
        refused = _api_call(realm, probe, foreign)
        missing = _api_call(realm, probe, probe.missing)
        assert count_rows(realm.engine) == before, "a refused request wrote rows"
        assert refused.status_code in (404, 200), refused.text  # 200: an empty list for a foreign org
        assert _api_answer(refused, foreign) == _api_answer(missing, probe.missing)
        for secret in (realm.a.member_name, realm.a.name, realm.a.event_title, realm.a.transfer_name):
            assert secret not in refused.text

    def test_the_owner_can_do_what_the_stranger_cannot(self, realm: Realm) -> None:
        """The probes hit real objects: A's own token reads them."""
        a = realm.a
        for path in (
            f"/api/v1/events/{a.event_id}/attendance",
            f"/api/v1/members/{a.member_id}/history",
            f"/api/v1/transfers/{a.transfer_id}",
            f"/api/v1/kiosks/{a.kiosk_id}",
            f"/api/v1/enrol-sessions/{a.enrol_session_id}",
            f"/api/v1/events/{a.event_id}/leave",
        ):
            assert realm.client.get(path, headers=a.api).status_code == 200, path


class TestApiLists:
    """What B's token lists holds nothing of A's."""

    @pytest.mark.parametrize(
        "path",
        [
            "/api/v1/kiosks",
            "/api/v1/transfers",
            "/api/v1/transfers?state=submitted&state=awaiting_source&state=branch_accepted&state=received",
            "/api/v1/taps/unmatched",
            "/api/v1/taps/unmatched?org={a_org}",
            "/api/v1/reminders",
            "/api/v1/events/{b_event}/attendance",
            "/api/v1/orgs/{b_org}/ledger?period=2025",
        ],
    )
    def test_lists_hold_only_the_callers_subtree(self, realm: Realm, path: str) -> None:
        url = path.format(a_org=realm.a.org_id, b_org=realm.b.org_id, b_event=realm.b.event_id)
        response = realm.client.get(url, headers=realm.b.api)
        assert response.status_code in (200, 404), response.text
        text = response.text
        for secret in (realm.a.member_name, realm.a.kiosk_id, realm.a.transfer_name, realm.a.event_title):
            assert secret not in text, (url, secret)
        if response.status_code == 200 and "unmatched" in url:
            assert all(tap["tap_id"] != realm.a.unmatched_tap_id for tap in response.json())


@dataclass(frozen=True)
class Page:
    name: str
    method: str
    path: str
    target: Callable[[Side], object]
    form: dict[str, str] | None = None
    missing: object = MISSING


WEB_PAGES = [
    Page("member", "GET", "/web/members/{x}", lambda a: a.member_id),
    Page("member-history-pdf", "GET", "/web/ledgers/members/{x}.pdf", lambda a: a.member_id),
    Page(
        "member-bind-card",
        "POST",
        "/web/members/{x}/cards",
        lambda a: a.member_id,
        {"card_no": "3104393000000066661"},
    ),
    Page("member-enrol", "POST", "/web/members/{x}/enrol", lambda a: a.member_id, {}),
    pytest.param(
        Page(
            "member-suggested-transfer",
            "POST",
            "/web/transfers/suggestions/{x}",
            lambda a: a.member_id,
            {"org_id": "{own_org}"},
        ),
        id="member-suggested-transfer",
    ),
    Page(
        "binding-lost",
        "POST",
        "/web/members/{own_member}/cards/{x}/lost",
        lambda a: a.binding_id,
        {"reason": "探测"},
    ),
    Page("event", "GET", "/web/events/{x}", lambda a: a.event_id),
    Page("event-edit", "GET", "/web/events/{x}/edit", lambda a: a.event_id),
    Page("event-update", "POST", "/web/events/{x}", lambda a: a.event_id, {"title": "改名"}),
    Page("event-board", "GET", "/web/events/{x}/board", lambda a: a.event_id),
    Page("event-board-stream", "GET", "/web/events/{x}/board/stream", lambda a: a.event_id),
    Page("event-sheet-xlsx", "GET", "/web/ledgers/events/{x}.xlsx", lambda a: a.event_id),
    Page("org-ledger-page", "GET", "/web/ledgers?org={x}", lambda a: a.org_id),
    Page("org-ledger-xlsx", "GET", "/web/ledgers/org/{x}/2025.xlsx", lambda a: a.org_id),
    Page("transfer", "GET", "/web/transfers/{x}", lambda a: a.transfer_id),
    Page(
        "transfer-transition",
        "POST",
        "/web/transfers/{x}/transition",
        lambda a: a.transfer_id,
        {"action": "close", "reason": "探测"},
    ),
    Page("transfer-details", "POST", "/web/transfers/{x}/details", lambda a: a.transfer_id, {"note": "探测"}),
    Page(
        "transfer-letter",
        "POST",
        "/web/transfers/{x}/letter",
        lambda a: a.transfer_id,
        {
            "letter_no": "闽湖组〔2025〕099号",
            "issuer_name": "中共湖里区某社区委员会",
            "issuer_kind": "basic_committee",
            "from_org_name": "湖里第三党支部",
            "to_org_name": "鹭江街道党工委",
            "member_category": "full",
            "dues_paid_to": "{month}",
            "issued_on": "{today}",
            "valid_days": "30",
        },
    ),
    Page("transfer-document", "POST", "/web/transfers/{x}/documents/id_card", lambda a: a.transfer_id, {}),
    Page("kiosk", "GET", "/web/kiosks/{x}", lambda a: a.kiosk_id, missing=MISSING_KIOSK),
    Page("kiosk-new-code", "POST", "/web/kiosks/{x}/code", lambda a: a.kiosk_id, {}, missing=MISSING_KIOSK),
    Page(
        "kiosk-revoke",
        "POST",
        "/web/kiosks/{x}/revoke",
        lambda a: a.kiosk_id,
        {"reason": "探测"},
        missing=MISSING_KIOSK,
    ),
    Page(
        "venue-new-kiosk", "POST", "/web/kiosks", lambda a: a.venue_id, {"name": "探测机", "venue_id": "{x}"}
    ),
    Page("enrol-session", "GET", "/web/enrol-sessions/{x}", lambda a: a.enrol_session_id),
    Page("enrol-session-cancel", "POST", "/web/enrol-sessions/{x}/cancel", lambda a: a.enrol_session_id, {}),
]


def _web_call(realm: Realm, page: Page, x: object) -> httpx.Response:
    url = _fill(page.path, realm, x)
    if page.method == "GET":
        return realm.b.web.get(url, follow_redirects=False)
    today = realm.clock.now.date()
    form = {
        key: _fill(value, realm, x)
        .replace("{today}", today.isoformat())
        .replace("{month}", today.strftime("%Y-%m"))
        for key, value in (page.form or {}).items()
    }
    return realm.b.web.post(url, data={**form, "csrf_token": realm.b.csrf}, follow_redirects=False)


def _web_answer(response: httpx.Response, x: object) -> tuple[int, str | None, str]:
    code = re.search(r'data-code="([a-z_]+)"', response.text)
    heading = re.search(r"<h1>(.*?)</h1>", response.text, re.S)
    return (
        response.status_code,
        code.group(1) if code else None,
        _without(heading.group(1), x) if heading else "",
    )


class TestWebObjects:
    """B's secretary in the browser, typing URLs and posting forms for A's objects."""

    @pytest.mark.parametrize("page", WEB_PAGES, ids=_names(WEB_PAGES))
    def test_a_foreign_object_is_indistinguishable_from_a_missing_one(self, realm: Realm, page: Page) -> None:
        foreign = page.target(realm.a)
        before = count_rows(realm.engine)
        refused = _web_call(realm, page, foreign)
        missing = _web_call(realm, page, page.missing)
        assert count_rows(realm.engine) == before, "a refused form wrote rows"
        # 403: a role that may not do this at all (a secretary managing kiosks), before any lookup.
        assert refused.status_code in (403, 404), refused.text[:500]
        assert _web_answer(refused, foreign) == _web_answer(missing, page.missing)
        for secret in (realm.a.member_name, realm.a.name, realm.a.event_title, realm.a.transfer_name):
            assert secret not in refused.text


class TestWebLists:
    """Every list page B's secretary opens shows nothing of A's."""

    @pytest.mark.parametrize(
        "path",
        [
            "/web/",
            "/web/members",
            "/web/members?q=陈",
            "/web/events",
            "/web/events?when=past",
            "/web/events/new",
            "/web/kiosks",
            "/web/transfers",
            "/web/transfers?state=all",
            "/web/transfers/new",
            "/web/ledgers",
            "/web/ledgers?org={a_org}",
            "/web/audit",
        ],
    )
    def test_lists_hold_only_the_users_subtree(self, realm: Realm, path: str) -> None:
        response = realm.b.web.get(path.format(a_org=realm.a.org_id))
        assert response.status_code in (200, 404), response.text[:300]
        for secret in (
            realm.a.member_name,
            "周丽华",  # A's member with a leave request
            realm.a.event_title,
            realm.a.kiosk_id,
            realm.a.transfer_name,
            realm.a.name,
            realm.world.accounts["secretary_a"].display_name,  # A's user, in the audit log
        ):
            assert secret not in response.text, (path, secret)

    def test_the_audit_log_shows_a_its_own_entries(self, realm: Realm) -> None:
        """The same page for A does show A's activity: the check above is not vacuous."""
        page = realm.a.web.get("/web/audit").text
        assert realm.world.accounts["secretary_a"].display_name in page or realm.a.member_name in page
        assert realm.b.member_name not in page


class TestForeignPlacement:
    """B cannot create things inside A: an event at A, a kiosk at A's venue, a transfer placed in A."""

    def test_an_event_in_a_foreign_organisation_is_refused(self, realm: Realm) -> None:
        before = count_rows(realm.engine)
        start = realm.clock.now.strftime("%Y-%m-%dT%H:%M")
        response = realm.b.web.post(
            "/web/events",
            data={
                "title": "冒名活动",
                "org_id": str(realm.a.org_id),
                "venue_id": str(realm.b.venue_id),
                "kind": "theme_day",
                "start_at": start,
                "end_at": start,
                "csrf_token": realm.b.csrf,
            },
            follow_redirects=False,
        )
        assert response.status_code in (400, 404)
        assert count_rows(realm.engine) == before

    def test_an_event_at_a_foreign_venue_is_refused(self, realm: Realm) -> None:
        before = count_rows(realm.engine)
        start = (realm.clock.now).strftime("%Y-%m-%dT%H:%M")
        response = realm.b.web.post(
            "/web/events",
            data={
                "title": "借用场地",
                "org_id": str(realm.b.org_id),
                "venue_id": str(realm.a.venue_id),
                "kind": "theme_day",
                "start_at": start,
                "end_at": start,
                "csrf_token": realm.b.csrf,
            },
            follow_redirects=False,
        )
        assert response.status_code in (400, 404)
        assert count_rows(realm.engine) == before

    def test_a_transfer_placed_in_a_foreign_branch_is_refused(self, realm: Realm) -> None:
        before = count_rows(realm.engine)
        body = {
            "to_org_id": realm.world.committee_id,
            "claimed_name": "外来人员",
            "placement_org_id": realm.a.org_id,
            "letter": _letter(realm),
        }
        response = realm.client.post("/api/v1/transfers", json=body, headers=realm.b.api)
        assert response.status_code in (400, 403, 404), response.text
        assert count_rows(realm.engine) == before
