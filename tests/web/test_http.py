"""The web app over HTTP without a browser: sessions, cookies, CSRF, rate limits, scope, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, select

import server.web.pages.members as members_pages
from server.app import create_app
from server.clock import utc_now
from server.config import ServerSettings
from server.db import make_engine, unit_of_work
from server.keyring import Keyring
from server.migrate import migrate
from server.records.audit import AuditEntry
from server.records.users import LoginAttempt
from server.users.service import ACCOUNT_FAILURE_LIMIT, ADDRESS_FAILURE_LIMIT
from tests.web.conftest import TEST_SECRET, Site
from tests.web.world import WebAccount, build_web_world

HTMX = {"HX-Request": "true"}


def start_login(client: TestClient) -> str:
    """Open the sign-in page; returns the form token (it equals the login cookie)."""
    page = client.get("/web/login")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def post_login(
    client: TestClient, username: str, password: str, *, next_page: str = "/web/"
) -> httpx.Response:
    token = start_login(client)
    return client.post(
        "/web/login",
        data={"username": username, "password": password, "csrf_token": token, "next": next_page},
        follow_redirects=False,
    )


def sign_in(client: TestClient, account: WebAccount) -> str:
    """Sign in; returns the page's CSRF token for later posts."""
    response = post_login(client, account.username, account.password)
    assert response.status_code == 303, response.text
    dashboard = client.get("/web/")
    match = re.search(r'name="csrf_token" value="([^"]+)"', dashboard.text)
    assert match is not None
    return match.group(1)


def refusal_code(response: httpx.Response) -> str | None:
    match = re.search(r'data-code="([a-z_]+)"', response.text)
    return match.group(1) if match else None


class TestSignIn:
    def test_pages_send_strangers_to_the_sign_in_page(self, web_client: TestClient) -> None:
        response = web_client.get("/web/events?when=past", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == "/web/login?next=/web/events%3Fwhen%3Dpast"

    def test_htmx_calls_are_redirected_with_a_header(self, web_client: TestClient) -> None:
        response = web_client.get(
            "/web/events", headers={**HTMX, "HX-Current-URL": "http://testserver/web/members?q=x"}
        )
        assert response.status_code == 200
        assert response.headers["HX-Redirect"] == "/web/login?next=/web/members%3Fq%3Dx"

    def test_the_session_cookie_is_http_only_lax_and_scoped_to_the_app(
        self, web_client: TestClient, site: Site
    ) -> None:
        account = site.world.accounts["secretary_a"]
        response = post_login(web_client, account.username, account.password)
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("ecard_session="))
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/web" in cookie
        assert "Secure" not in cookie  # plain HTTP here; see the next test

    def test_cookies_are_secure_over_https_unless_configured_off(self, site: Site) -> None:
        account = site.world.accounts["secretary_a"]

        def session_cookie(settings: ServerSettings) -> str:
            with TestClient(create_app(settings), base_url="https://testserver") as client:
                response = post_login(client, account.username, account.password)
            return next(c for c in response.headers.get_list("set-cookie") if c.startswith("ecard_session="))

        assert "Secure" in session_cookie(site.settings)
        # ECARD_SECURE_COOKIES=false: behind a proxy that talks HTTP to us but HTTPS to browsers,
        # with the proxy doing the flagging (or a lab setup); true forces it on plain HTTP too.
        assert "Secure" not in session_cookie(site.settings.model_copy(update={"secure_cookies": False}))

    def test_a_wrong_password_is_refused_with_a_stable_code(self, web_client: TestClient, site: Site) -> None:
        response = post_login(web_client, site.world.accounts["secretary_a"].username, "not-the-password")
        assert response.status_code == 401
        assert refusal_code(response) == "invalid_credentials"
        assert "用户名或密码错误" in response.text
        assert "ecard_session=" not in response.headers.get("set-cookie", "")

    def test_an_unknown_user_gets_the_same_answer(self, web_client: TestClient) -> None:
        response = post_login(web_client, "nobody", "whatever-password")
        assert response.status_code == 401
        assert refusal_code(response) == "invalid_credentials"

    def test_a_forged_sign_in_form_is_refused(self, web_client: TestClient, site: Site) -> None:
        """Login CSRF: the form must repeat the random cookie set with the sign-in page."""
        account = site.world.accounts["secretary_a"]
        start_login(web_client)
        response = web_client.post(
            "/web/login",
            data={"username": account.username, "password": account.password, "csrf_token": "forged"},
            follow_redirects=False,
        )
        assert response.status_code == 403
        assert refusal_code(response) == "csrf_failed"

    def test_next_never_leaves_the_web_app(self, web_client: TestClient, site: Site) -> None:
        account = site.world.accounts["secretary_a"]
        for target in ("https://evil.example/web/", "//evil.example/web/", "/api/v1/health"):
            response = post_login(web_client, account.username, account.password, next_page=target)
            assert response.headers["location"] == "/web/", target

    def test_sign_in_returns_to_the_page_asked_for(self, web_client: TestClient, site: Site) -> None:
        account = site.world.accounts["secretary_a"]
        response = post_login(web_client, account.username, account.password, next_page="/web/members?q=陈")
        assert response.headers["location"] == "/web/members?q=%E9%99%88"  # 陈

    def test_sign_out_ends_the_session_on_the_server(self, web_client: TestClient, site: Site) -> None:
        csrf = sign_in(web_client, site.world.accounts["secretary_a"])
        stolen = web_client.cookies.get("ecard_session")
        response = web_client.post("/web/logout", data={"csrf_token": csrf}, follow_redirects=False)
        assert response.status_code == 303
        web_client.cookies.set("ecard_session", stolen or "", path="/web")
        again = web_client.get("/web/", follow_redirects=False)
        assert again.status_code == 303
        assert again.headers["location"].startswith("/web/login")

    def test_sign_ins_are_audited(self, web_client: TestClient, site: Site) -> None:
        account = site.world.accounts["secretary_a"]
        post_login(web_client, account.username, "wrong-password-1")
        post_login(web_client, account.username, account.password)
        with Session(site.engine) as session:
            actions = session.exec(
                select(AuditEntry.action, AuditEntry.reason).where(
                    col(AuditEntry.action).startswith("user.login")
                )
            ).all()
        assert list(actions) == [("user.login_failed", "wrong_password"), ("user.login", "")]


class TestRateLimits:
    def test_an_account_locks_after_repeated_failures(self, web_client: TestClient, site: Site) -> None:
        account = site.world.accounts["secretary_a"]
        for _ in range(ACCOUNT_FAILURE_LIMIT):
            assert post_login(web_client, account.username, "wrong-password-x").status_code == 401
        locked = post_login(web_client, account.username, account.password)
        assert locked.status_code == 429
        assert refusal_code(locked) == "login_rate_limited"
        assert "登录失败次数过多" in locked.text
        # Another account from the same address is not punished for it.
        other = site.world.accounts["secretary_b"]
        assert post_login(web_client, other.username, other.password).status_code == 303

    def test_an_address_guessing_many_names_is_blocked(self, web_client: TestClient, site: Site) -> None:
        # The failures are written directly: twenty argon2 checks would only make the test slow.
        # The service tests show that failed sign-ins are recorded like this.
        with unit_of_work(site.engine) as session:
            for _ in range(ADDRESS_FAILURE_LIMIT):
                session.add(LoginAttempt(at=utc_now(), user_id=None, ip="testclient", succeeded=False))
        account = site.world.accounts["secretary_a"]
        blocked = post_login(web_client, account.username, account.password)
        assert blocked.status_code == 429
        assert refusal_code(blocked) == "login_rate_limited"


class TestCsrf:
    def test_a_post_without_the_token_is_refused(self, web_client: TestClient, site: Site) -> None:
        sign_in(web_client, site.world.accounts["secretary_a"])
        member_id = site.world.members["吴海峰"]
        response = web_client.post(
            f"/web/members/{member_id}/cards", data={"card_no": "3104393000000044444"}, follow_redirects=False
        )
        assert response.status_code == 403
        assert refusal_code(response) == "csrf_failed"

    def test_htmx_sends_the_token_as_a_header(self, web_client: TestClient, site: Site) -> None:
        csrf = sign_in(web_client, site.world.accounts["secretary_a"])
        member_id = site.world.members["吴海峰"]
        response = web_client.post(
            f"/web/members/{member_id}/cards",
            data={"card_no": "3104 3930 0000 0044 444"},
            headers={**HTMX, "X-CSRF-Token": csrf},
        )
        assert response.status_code == 200
        assert response.headers["HX-Redirect"] == f"/web/members/{member_id}"
        page = web_client.get(f"/web/members/{member_id}")
        assert "3104********4444" in page.text
        assert "3104393000000044444" not in page.text


class TestScope:
    """A secretary of branch A asking for branch B's things by URL gets 'not found', not 'forbidden'."""

    @pytest.mark.parametrize(
        "path",
        [
            "/web/events/{event_b}",
            "/web/events/{event_b}/edit",
            "/web/events/{event_b}/board",
            "/web/events/{event_b}/board/stream",
            "/web/members/{member_b}",
        ],
    )
    def test_another_branchs_pages_do_not_exist(self, web_client: TestClient, site: Site, path: str) -> None:
        sign_in(web_client, site.world.accounts["secretary_a"])
        url = path.format(event_b=site.world.event_b_id, member_b=site.world.members["赵雪梅"])
        response = web_client.get(url)
        assert response.status_code == 404
        assert "第二党支部" not in response.text
        assert "赵雪梅" not in response.text

    def test_another_branchs_member_cannot_be_changed(self, web_client: TestClient, site: Site) -> None:
        csrf = sign_in(web_client, site.world.accounts["secretary_a"])
        response = web_client.post(
            f"/web/members/{site.world.members['赵雪梅']}/cards",
            data={"card_no": "3104393000000055555", "csrf_token": csrf},
        )
        assert response.status_code == 404

    def test_the_committee_organiser_sees_both_branches(self, web_client: TestClient, site: Site) -> None:
        sign_in(web_client, site.world.accounts["organiser"])
        assert web_client.get(f"/web/events/{site.world.event_b_id}").status_code == 200
        members = web_client.get("/web/members").text
        assert "赵雪梅" in members
        assert "陈建国" in members

    def test_lists_only_show_the_users_subtree(self, web_client: TestClient, site: Site) -> None:
        sign_in(web_client, site.world.accounts["secretary_a"])
        assert "赵雪梅" not in web_client.get("/web/members").text
        assert "第二党支部党员大会" not in web_client.get("/web/events").text


class TestErrors:
    def test_an_htmx_refusal_is_a_toast_and_leaves_the_page(self, web_client: TestClient, site: Site) -> None:
        csrf = sign_in(web_client, site.world.accounts["secretary_a"])
        response = web_client.post(
            f"/web/members/{site.world.members['吴海峰']}/cards",
            data={"card_no": "12345"},
            headers={**HTMX, "X-CSRF-Token": csrf},
        )
        assert response.status_code == 200
        assert response.headers["HX-Reswap"] == "none"
        toast = json.loads(response.headers["HX-Trigger"])["toast"]
        assert toast == {"message": "卡号须为19位数字", "level": "error", "fields": ["card_no"]}

    def test_a_plain_refusal_is_an_error_page_with_the_code(self, web_client: TestClient, site: Site) -> None:
        csrf = sign_in(web_client, site.world.accounts["secretary_a"])
        response = web_client.post(
            f"/web/members/{site.world.members['吴海峰']}/cards",
            data={"card_no": "12345", "csrf_token": csrf},
        )
        assert response.status_code == 400
        assert refusal_code(response) == "invalid_card_identifier"
        assert "卡号须为19位数字" in response.text

    def test_a_database_out_of_reach_is_a_503_page_not_a_500(
        self, web_client: TestClient, site: Site, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def unreachable(*_args: object, **_kwargs: object) -> None:
            raise OperationalError("INSERT INTO card_binding …", {}, Exception("connection refused"))

        csrf = sign_in(web_client, site.world.accounts["secretary_a"])
        monkeypatch.setattr(members_pages, "bind_member_card_counting", unreachable)
        response = web_client.post(
            f"/web/members/{site.world.members['吴海峰']}/cards",
            data={"card_no": "3930" + "0" * 15, "csrf_token": csrf},
        )

        assert response.status_code == 503
        assert response.headers["Retry-After"] == "5"
        assert refusal_code(response) == "database_unavailable"
        assert "服务暂时不可用，请稍后再试" in response.text

    def test_pages_carry_security_headers(self, web_client: TestClient, site: Site) -> None:
        sign_in(web_client, site.world.accounts["secretary_a"])
        response = web_client.get("/web/")
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"

    def test_the_api_keeps_its_json_errors(self, web_client: TestClient) -> None:
        response = web_client.get("/api/v1/events/1/attendance")
        assert response.status_code == 401
        assert response.json()["error"] == "not_authenticated"


class TestEvents:
    def test_editing_an_event_keeps_its_times_and_is_audited(
        self, web_client: TestClient, site: Site
    ) -> None:
        csrf = sign_in(web_client, site.world.accounts["secretary_a"])
        event_id = site.world.event_a_id
        response = web_client.post(
            f"/web/events/{event_id}",
            data={"title": "主题党日（改期通知已发）", "topic": "学习条例第三章", "csrf_token": csrf},
            follow_redirects=False,
        )
        assert response.status_code == 303
        page = web_client.get(f"/web/events/{event_id}/edit").text
        assert "主题党日（改期通知已发）" in page
        assert "学习条例第三章" in page
        with Session(site.engine) as session:
            actions = session.exec(
                select(AuditEntry.action).where(AuditEntry.object_id == str(event_id))
            ).all()
        assert "event.update" in actions

    def test_past_events_are_listed_separately(self, web_client: TestClient, site: Site) -> None:
        sign_in(web_client, site.world.accounts["secretary_a"])
        assert "主题党日：学习" in web_client.get("/web/events").text
        assert "主题党日：学习" not in web_client.get("/web/events?when=past").text


@pytest.mark.pg
def test_sign_in_and_scope_on_postgresql(pg_database_url: str, tmp_path: Path) -> None:
    """The same web app on PostgreSQL: sign-in, the subtree, a refused and an allowed page."""
    settings = ServerSettings(
        data_dir=tmp_path / "data", database_url=pg_database_url, secret_key=SecretStr(TEST_SECRET)
    )
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        world = build_web_world(engine, Keyring(TEST_SECRET.encode()), now=utc_now())
    finally:
        engine.dispose()
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        assert post_login(client, world.accounts["secretary_a"].username, "wrong-password").status_code == 401
        sign_in(client, world.accounts["secretary_a"])
        assert client.get(f"/web/events/{world.event_b_id}").status_code == 404
        assert client.get(f"/web/members/{world.members['赵雪梅']}").status_code == 404
        board = client.get(f"/web/events/{world.event_a_id}/board")
        assert board.status_code == 200
        assert "陈建国" in board.text
        assert client.get("/web/audit").status_code == 200
