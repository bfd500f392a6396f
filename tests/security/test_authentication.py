"""Authentication: every route of the real app, found by walking ``app.routes``, refuses a caller
without valid credentials and writes nothing; the few public ones are listed and justified.

A route added later is covered without editing this file: it is either refused like the others
or the completeness test fails until someone classifies it here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from sqlmodel import Session, select
from starlette.routing import BaseRoute, Mount
from typer.testing import CliRunner

from schemas.messages import TapBatch, b64url_decode
from server.cli import admin_app
from server.records.audit import AuditEntry
from server.records.auth import ApiToken
from server.records.users import WebSession
from server.users.service import SESSION_IDLE_TIMEOUT, SESSION_MAX_AGE
from tests.security.conftest import Realm, bearer, count_rows, post_taps, sign_in
from tests.server.kiosks.messages import heartbeat
from tests.server.signing import KioskKeys


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as declared, with {placeholders}

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[Endpoint | str]:
    """Every (method, path) of the app and its mounted sub-apps; a mount without routes (static
    files) is yielded as its path."""
    for context in iter_route_contexts(routes):
        route = context.route
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner is None:
                yield prefix + route.path
            else:
                yield from _walk(list(inner), prefix + route.path)
            continue
        for method in sorted((context.methods or set()) - {"HEAD"}):
            yield Endpoint(method, prefix + (context.path or ""))


def app_endpoints(app: FastAPI) -> tuple[list[Endpoint], list[str]]:
    endpoints: list[Endpoint] = []
    mounts: list[str] = []
    for item in _walk(list(app.routes)):
        (endpoints if isinstance(item, Endpoint) else mounts).append(item)  # type: ignore[arg-type]
    return endpoints, mounts


# Public on purpose: the API's own description, liveness, the sign-in page, the redirect to it.
PUBLIC = {
    "GET /openapi.json",  # the schema of a public contract; no data
    "GET /docs",
    "GET /docs/oauth2-redirect",
    "GET /redoc",
    "GET /api/v1/health",  # kiosks compare clocks before they are enrolled
    "GET /web/login",
    "POST /web/login",  # has its own CSRF cookie and rate limits (tests/web/test_http.py)
    "GET /",  # a redirect to /web/
}
PUBLIC_MOUNTS = {"/web/static"}  # CSS, htmx, fonts: nothing personal

# Kiosks have no token: they authenticate every message by its Ed25519 signature (taps,
# heartbeats, key rotation) or by a one-time enrollment code.
SIGNED = {
    "POST /api/v1/taps",
    "POST /api/v1/kiosks/heartbeat",
    "POST /api/v1/kiosks/rotate-key",
    "POST /api/v1/kiosks/enroll",
}

# A member's own 留言亭 pages (server.booth): no account; a one-time link from a signed tap opens
# a short session cookie of their own. A stranger gets a Chinese refusal page, never a sign-in.
MEMBER_LINK = {
    "GET /web/m/open/{token}",
    "GET /web/m/",
    "POST /web/m/messages",
    "GET /web/m/messages/{message_id}/photo",
    "GET /web/m/representatives/{representative_id}/photo",
    "POST /web/m/leave",
    "POST /web/m/end",
}


def _fill(path: str, realm: Realm) -> str:
    """The declared path with branch A's real objects in it, so a refusal is not a 404."""
    a = realm.a
    values = {
        "event_id": a.event_id,
        "member_id": a.member_id,
        "org_id": a.org_id,
        "kiosk_id": a.kiosk_id,
        "transfer_id": a.transfer_id,
        "leave_id": a.leave_id,
        "enrol_session_id": a.enrol_session_id,
        "tap_id": a.unmatched_tap_id,
        "binding_id": a.binding_id,
        "reminder_id": a.reminder_id,
        "attachment_id": 1,  # refused before any lookup: no attachment needed
        "kind": "id_card",
        "period_key": str(realm.clock.now.year),
        "fmt": "xlsx",
        "code": "0000-0000-0000-0000",  # an export's verification code
        "message_id": 1,  # refused before any lookup: no message needed
        "representative_id": 1,  # refused before any lookup: no representative needed
        "token": "Vq3XwS0dYp7kL2mN4bR8tU6zAe1Hc9Jf",  # a 留言亭 link nobody was given
    }

    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        assert name in values, f"no value for the path parameter {{{name}}} of {path}: add one to _fill"
        return str(values[name])

    return re.sub(r"\{([^}]+)\}", value, path)


def _protected(app: FastAPI) -> list[Endpoint]:
    endpoints, _ = app_endpoints(app)
    return [e for e in endpoints if str(e) not in PUBLIC | SIGNED | MEMBER_LINK]


def _send(client: TestClient, endpoint: Endpoint, url: str, headers: dict[str, str]) -> object:
    if endpoint.method == "GET":
        return client.get(url, headers=headers, follow_redirects=False)
    if url.startswith("/web/"):
        form = {"csrf_token": "x", "title": "t"}
        return client.request(endpoint.method, url, data=form, headers=headers, follow_redirects=False)
    return client.request(endpoint.method, url, json={}, headers=headers, follow_redirects=False)


class TestEveryRoute:
    """Walks the real app's routes; each one refuses strangers and writes nothing."""

    def test_every_route_is_classified(self, realm: Realm) -> None:
        """The public and kiosk-signed lists name real routes, and every other route is
        protected; a new public route has to be added (and justified) above."""
        endpoints, mounts = app_endpoints(realm.client.app)  # type: ignore[arg-type]
        names = {str(e) for e in endpoints}
        assert names >= PUBLIC, PUBLIC - names
        assert names >= SIGNED, SIGNED - names
        assert names >= MEMBER_LINK, MEMBER_LINK - names
        assert set(mounts) == PUBLIC_MOUNTS
        protected = _protected(realm.client.app)  # type: ignore[arg-type]
        assert len(protected) >= 60  # the API and the web pages, not an empty walk
        assert any(e.path.startswith("/api/v1/") for e in protected)
        assert any(e.path.startswith("/web/") for e in protected)

    @pytest.mark.parametrize(
        ("credentials", "api_code"),
        [
            ({}, "not_authenticated"),
            (bearer("ecard_" + "A" * 43), "invalid_token"),  # the right shape, nobody's token
            ({"Authorization": "Basic YWRtaW46YWRtaW4="}, "not_authenticated"),
            (bearer(""), "not_authenticated"),
        ],
        ids=["none", "unknown-token", "basic-auth", "empty-bearer"],
    )
    def test_without_valid_credentials_every_route_refuses_and_writes_nothing(
        self, realm: Realm, credentials: dict[str, str], api_code: str
    ) -> None:
        before = count_rows(realm.engine)
        stranger = TestClient(realm.client.app, base_url="http://testserver")
        stranger.cookies.set("ecard_session", "forged-session-cookie", path="/web")
        wrong: list[str] = []
        for endpoint in _protected(realm.client.app):  # type: ignore[arg-type]
            url = _fill(endpoint.path, realm)
            response = _send(stranger, endpoint, url, credentials)
            status = response.status_code  # type: ignore[attr-defined]
            if url.startswith("/web/"):
                ok = status == 303 and response.headers["location"].startswith("/web/login")  # type: ignore[attr-defined]
            else:
                ok = status == 401 and response.json()["error"] == api_code  # type: ignore[attr-defined]
                ok = ok and response.headers.get("www-authenticate") == "Bearer"  # type: ignore[attr-defined]
            if not ok:
                wrong.append(f"{endpoint} -> {status}")
        assert wrong == []
        assert count_rows(realm.engine) == before

    def test_member_link_pages_refuse_strangers_in_chinese(self, realm: Realm) -> None:
        before = count_rows(realm.engine)
        stranger = TestClient(realm.client.app, base_url="http://testserver")
        stranger.cookies.set("ecard_member", "forged-member-cookie", path="/web/m")
        endpoints = [e for e in app_endpoints(realm.client.app)[0] if str(e) in MEMBER_LINK]  # type: ignore[arg-type]
        assert len(endpoints) == len(MEMBER_LINK)
        for endpoint in endpoints:
            url = _fill(endpoint.path, realm)
            response = _send(stranger, endpoint, url, {})
            status = response.status_code  # type: ignore[attr-defined]
            text = response.text  # type: ignore[attr-defined]
            assert status in (401, 404), (str(endpoint), status)
            assert 'data-code="booth_' in text, str(endpoint)
            assert "请在留言亭重新刷卡" in text, str(endpoint)
            assert realm.a.member_name not in text
        assert count_rows(realm.engine) == before

    def test_the_public_pages_hold_nothing_personal(self, realm: Realm) -> None:
        for endpoint in sorted(PUBLIC):
            method, path = endpoint.split(" ")
            if method != "GET":
                continue
            response = realm.client.get(path, follow_redirects=False)
            assert response.status_code in (200, 307), endpoint
            for secret in (realm.a.member_name, realm.b.member_name, realm.a.event_title, realm.a.name):
                assert secret not in response.text, (endpoint, secret)


class TestTokens:
    """API tokens: revoked ones stop working at once; only a digest is stored."""

    def test_a_revoked_token_is_refused(
        self, fresh_realm: Realm, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """An operator revokes a leaked token with the CLI; it stops working on the next request."""
        realm = fresh_realm
        url = f"/api/v1/events/{realm.a.event_id}/attendance"
        assert realm.client.get(url, headers=realm.a.api).status_code == 200
        monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path / "cli"))
        database = ["--db", realm.settings.database_url, "--json"]
        listed = CliRunner().invoke(admin_app, ["token", "list", *database])
        assert listed.exit_code == 0, listed.output
        a_tokens = [t["id"] for t in json.loads(listed.stdout)["tokens"] if t["org_id"] == realm.a.org_id]
        assert a_tokens
        for token_id in a_tokens:
            revoked = CliRunner().invoke(
                admin_app, ["token", "revoke", str(token_id), "--reason", "泄露", *database]
            )
            assert revoked.exit_code == 0, revoked.output
        response = realm.client.get(url, headers=realm.a.api)
        assert response.status_code == 401
        assert response.json()["error"] == "invalid_token"
        with Session(realm.engine) as session:
            audited = session.exec(select(AuditEntry).where(AuditEntry.action == "token.revoke")).all()
        assert sorted(int(e.object_id) for e in audited) == sorted(a_tokens)
        assert {e.reason for e in audited} == {"泄露"}
        missing = CliRunner().invoke(admin_app, ["token", "revoke", "999999", *database])
        assert missing.exit_code == 1
        assert json.loads(missing.stdout)["error"] == "token_not_found"

    def test_the_database_holds_no_usable_token(self, realm: Realm) -> None:
        """A copy of the database (a backup, an insider) does not let anyone call the API."""
        secret = realm.a.api["Authorization"].removeprefix("Bearer ")
        with Session(realm.engine) as session:
            stored = session.exec(select(ApiToken.token_hash)).all()
        assert secret not in stored
        assert all(secret not in digest and digest not in secret for digest in stored)
        for digest in stored:
            assert realm.client.get("/api/v1/kiosks", headers=bearer(digest)).status_code == 401

    def test_a_token_does_not_open_the_web_app(self, realm: Realm) -> None:
        response = realm.client.get("/web/", headers=realm.admin_api, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/web/login")


class TestWebSessions:
    """Browser sessions: expire on the server, stored as digests, not usable by the API."""

    def test_an_idle_session_is_sent_to_sign_in(self, fresh_realm: Realm) -> None:
        realm = fresh_realm
        realm.clock.advance(seconds=(SESSION_IDLE_TIMEOUT + timedelta(minutes=1)).total_seconds())
        self._assert_signed_out(realm)

    def test_a_busy_session_still_ends_at_its_maximum_age(self, fresh_realm: Realm) -> None:
        realm = fresh_realm
        started = realm.clock.now
        step = SESSION_IDLE_TIMEOUT / 2
        while realm.clock.now + step - started < SESSION_MAX_AGE:
            realm.clock.advance(seconds=step.total_seconds())
            assert realm.a.web.get("/web/", follow_redirects=False).status_code == 200
        realm.clock.now = started + SESSION_MAX_AGE + timedelta(minutes=1)
        self._assert_signed_out(realm)

    @staticmethod
    def _assert_signed_out(realm: Realm) -> None:
        response = realm.a.web.get(f"/web/members/{realm.a.member_id}", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/web/login")
        assert realm.a.member_name not in response.text

    def test_the_session_cookie_is_not_stored(self, realm: Realm) -> None:
        cookie = realm.a.web.cookies.get("ecard_session")
        assert cookie
        with Session(realm.engine) as session:
            stored = session.exec(select(WebSession.token_hash)).all()
        assert cookie not in stored
        stranger = TestClient(realm.client.app, base_url="http://testserver")
        for digest in stored:
            stranger.cookies.set("ecard_session", digest, path="/web")
            assert stranger.get("/web/", follow_redirects=False).status_code == 303

    def test_a_session_cookie_does_not_open_the_api(self, realm: Realm) -> None:
        cookie = realm.a.web.cookies.get("ecard_session")
        stranger = TestClient(realm.client.app, base_url="http://testserver")
        stranger.cookies.set("ecard_session", cookie or "")
        response = stranger.get(f"/api/v1/events/{realm.a.event_id}/attendance")
        assert response.status_code == 401

    def test_a_users_session_signs_out_only_that_user(self, fresh_realm: Realm) -> None:
        """Signing out ends the session on the server; the other users stay signed in."""
        realm = fresh_realm
        response = realm.a.web.post("/web/logout", data={"csrf_token": realm.a.csrf}, follow_redirects=False)
        assert response.status_code == 303
        assert realm.a.web.get("/web/", follow_redirects=False).status_code == 303
        assert realm.b.web.get("/web/", follow_redirects=False).status_code == 200
        # Signing in again works, with a new cookie.
        sign_in(realm.a.web, realm.world.accounts["secretary_a"])
        assert realm.a.web.get("/web/").status_code == 200


class TestKioskSignatures:
    """The kiosk endpoints take no token; a message not signed by the enrolled key changes nothing."""

    def test_a_tap_signed_by_another_key_is_refused(self, realm: Realm) -> None:
        forger = KioskKeys()
        a = realm.a
        before = count_rows(realm.engine)
        payload_batch = a.tap(a.card, at=realm.clock.now)
        # Same payload and kid, the forger's signature.
        batch = TapBatch.model_validate_json(payload_batch)
        envelope = batch.envelopes[0]
        forged = forger.sign_bytes(b64url_decode(envelope.payload), kid=envelope.kid)
        response = post_taps(realm.client, TapBatch(envelopes=[forged]).model_dump_json())
        assert response.status_code == 200
        (receipt,) = response.json()["receipts"]
        assert receipt["status"] != "accepted"
        assert receipt["code"] == "bad_signature"
        after = count_rows(realm.engine)
        assert after.get("attendance") == before.get("attendance")

    def test_a_heartbeat_signed_by_another_key_is_refused(self, realm: Realm) -> None:
        forged = heartbeat(KioskKeys(), kiosk_id=realm.a.kiosk_id, sent_at=realm.clock.now)
        forged = forged.model_copy(update={"kid": realm.a.keys.kid})
        before = count_rows(realm.engine)
        response = realm.client.post("/api/v1/kiosks/heartbeat", json=forged.model_dump(mode="json"))
        assert response.status_code == 401
        assert response.json()["error"] == "bad_signature"
        assert count_rows(realm.engine) == before
