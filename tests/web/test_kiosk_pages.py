"""签到机 pages and 刷卡绑定 over HTTP (no browser): health table, enrollment code with QR,
revocation, scope, and the bind-by-tap wait that ends when the kiosk's enrol tap arrives."""

from __future__ import annotations

import base64
import json
import re
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlmodel import Session, select

from schemas.messages import TapMode
from server.clock import utc_now
from server.records.kiosks import Kiosk
from server.vocabulary import KioskStatus
from tests.server.kiosks.messages import heartbeat
from tests.server.signing import card
from tests.web.conftest import Site
from tests.web.test_http import HTMX, sign_in

NEW_CARD = card("3104393000000077777", "04C4E2000077")


def beat(client: TestClient, site: Site, **fields: object) -> None:
    envelope = heartbeat(site.world.keys, kiosk_id=site.world.kiosk_id, sent_at=utc_now(), **fields)  # type: ignore[arg-type]
    response = client.post(
        "/api/v1/kiosks/heartbeat",
        content=envelope.model_dump_json(),
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text


class TestKioskList:
    def test_health_and_problems_are_shown(self, web_client: TestClient, site: Site) -> None:
        """A kiosk 2 minutes slow with 3 taps waiting: the list says so in Chinese."""
        beat(web_client, site, pending=3, oldest_pending_age_s=40)
        clock_slow = heartbeat(
            site.world.keys, kiosk_id=site.world.kiosk_id, sent_at=utc_now() - timedelta(minutes=2), counter=2
        )
        web_client.post(
            "/api/v1/kiosks/heartbeat",
            content=clock_slow.model_dump_json(),
            headers={"Content-Type": "application/json"},
        )
        sign_in(web_client, site.world.accounts["secretary_a"])
        page = web_client.get("/web/kiosks")
        assert page.status_code == 200
        assert "服务中心一号机" in page.text
        assert "终端时钟慢了2分钟" in page.text
        assert 'class="troubled"' in page.text

    def test_quarantined_taps_are_shown_with_what_to_do(self, web_client: TestClient, site: Site) -> None:
        """Taps the kiosk set aside (the server kept refusing them) show on the list and the detail page."""
        beat(web_client, site, quarantined=3, oldest_quarantined_seq=17)
        sign_in(web_client, site.world.accounts["secretary_a"])
        listing = web_client.get("/web/kiosks").text
        assert "3条刷卡记录被服务器反复拒收，已在签到机上隔离保存（最早编号 17）" in listing
        detail = web_client.get(f"/web/kiosks/{site.world.kiosk_id}").text
        quarantined = re.search(r'id="outbox-quarantined">(.*?)</dd>', detail)
        assert quarantined is not None
        assert "3 条" in quarantined.group(1)
        assert "17" in quarantined.group(1)

    def test_other_branch_sees_no_kiosk_and_gets_404_by_url(self, web_client: TestClient, site: Site) -> None:
        sign_in(web_client, site.world.accounts["secretary_b"])
        assert "服务中心一号机" not in web_client.get("/web/kiosks").text
        assert web_client.get(f"/web/kiosks/{site.world.kiosk_id}").status_code == 404


class TestManageKiosks:
    def test_admin_adds_a_kiosk_and_gets_code_and_qr(self, web_client: TestClient, site: Site) -> None:
        """The code is shown once as text and as an SVG QR code of the enroll command."""
        token = sign_in(web_client, site.world.accounts["admin"])
        list_page = web_client.get("/web/kiosks").text
        venue_id = re.search(r'<option value="(\d+)">鹭江社区党群服务中心', list_page)
        assert venue_id is not None
        page = web_client.post(
            "/web/kiosks", data={"name": "二楼签到机", "venue_id": venue_id.group(1), "csrf_token": token}
        )
        assert page.status_code == 200, page.text
        code = re.search(r'id="enrollment-code">([0-9A-Z-]+)<', page.text)
        assert code is not None
        assert re.fullmatch(r"[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}", code.group(1))
        qr = re.search(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', page.text)
        assert qr is not None
        assert base64.b64decode(qr.group(1)).startswith(b"<svg")
        assert f"--code {code.group(1)}" in page.text

    def test_secretary_cannot_add_kiosks(self, web_client: TestClient, site: Site) -> None:
        token = sign_in(web_client, site.world.accounts["secretary_a"])
        response = web_client.post("/web/kiosks", data={"name": "x", "venue_id": "1", "csrf_token": token})
        assert response.status_code == 403

    def test_admin_revokes_with_a_reason(self, web_client: TestClient, site: Site) -> None:
        token = sign_in(web_client, site.world.accounts["admin"])
        response = web_client.post(
            f"/web/kiosks/{site.world.kiosk_id}/revoke",
            data={"reason": "设备丢失", "csrf_token": token},
            headers=HTMX,
        )
        assert response.headers["HX-Redirect"] == f"/web/kiosks/{site.world.kiosk_id}"
        with Session(site.engine) as session:
            kiosk = session.exec(select(Kiosk).where(Kiosk.id == site.world.kiosk_id)).one()
        assert kiosk.status == KioskStatus.REVOKED
        assert "已停用" in web_client.get(f"/web/kiosks/{site.world.kiosk_id}").text


class TestBindByTap:
    def test_waiting_box_polls_until_the_enrol_tap_binds_the_card(
        self, web_client: TestClient, site: Site
    ) -> None:
        """刷卡绑定 → '请在绑卡模式的签到机上刷…' → the kiosk's enrol tap → the poll redirects
        to the member page, where the new card is listed."""
        beat(web_client, site, mode=TapMode.ENROL)
        token = sign_in(web_client, site.world.accounts["secretary_a"])
        member_id = site.world.members["林晓燕"]
        member_page = web_client.get(f"/web/members/{member_id}").text
        assert "刷卡绑定" in member_page

        waiting = web_client.post(f"/web/members/{member_id}/enrol", data={"csrf_token": token}, headers=HTMX)
        assert waiting.status_code == 200
        assert "请在绑卡模式的签到机上刷林晓燕的易通卡" in waiting.text
        assert "服务中心一号机" in waiting.text  # the kiosk reporting enrol mode
        poll_url = re.search(r'hx-get="(/web/enrol-sessions/\d+)"', waiting.text)
        assert poll_url is not None
        assert 'hx-trigger="every 1s"' in web_client.get(poll_url.group(1), headers=HTMX).text

        batch = site.world.tap_batch(NEW_CARD, at=utc_now(), mode=TapMode.ENROL)
        answer = web_client.post(
            "/api/v1/taps", content=batch.model_dump_json(), headers={"Content-Type": "application/json"}
        )
        receipt = answer.json()["receipts"][0]
        assert receipt["display"]["message"] == "已绑定到 林*燕"

        done = web_client.get(poll_url.group(1), headers=HTMX)
        assert done.headers["HX-Redirect"] == f"/web/members/{member_id}"
        assert "3104********7777" in web_client.get(f"/web/members/{member_id}").text

    def test_cancel(self, web_client: TestClient, site: Site) -> None:
        token = sign_in(web_client, site.world.accounts["secretary_a"])
        member_id = site.world.members["吴海峰"]
        waiting = web_client.post(f"/web/members/{member_id}/enrol", data={"csrf_token": token}, headers=HTMX)
        assert "目前没有签到机处于绑卡模式" in waiting.text
        cancel_url = re.search(r'hx-post="(/web/enrol-sessions/\d+/cancel)"', waiting.text)
        assert cancel_url is not None
        cancelled = web_client.post(cancel_url.group(1), headers={**HTMX, "X-CSRF-Token": token})
        assert "已取消刷卡绑定" in cancelled.text
        assert "hx-trigger" not in cancelled.text

    def test_other_branch_member_is_not_found(self, web_client: TestClient, site: Site) -> None:
        token = sign_in(web_client, site.world.accounts["secretary_b"])
        member_id = site.world.members["林晓燕"]
        page = web_client.post(f"/web/members/{member_id}/enrol", data={"csrf_token": token})
        assert page.status_code == 404
        in_place = web_client.post(
            f"/web/members/{member_id}/enrol", data={"csrf_token": token}, headers=HTMX
        )
        assert json.loads(in_place.headers["HX-Trigger"])["toast"]["message"] == f"党员 {member_id} 不存在"
        assert in_place.text == ""
