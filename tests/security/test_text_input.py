"""Injection through text: characters no field may hold are refused at every boundary with
``invalid_text`` and a Chinese message naming the field (never a 5xx, never a row written), and
``%`` and ``_`` in searches match themselves, not any text.

Boundaries: API query and path parameters and JSON bodies, web query parameters and forms
(urlencoded and multipart), command-line arguments, roster cells. On SQLite and PostgreSQL (which
refuses NUL in text, so a NUL that got through would be a 500 there).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import timedelta
from io import BytesIO
from typing import Any

import pytest
from typer.testing import CliRunner

from ecard_cli.main import app as ecard_app
from server.cli import admin_app, server_app
from server.db import unit_of_work
from server.inputs import check_text, has_refused_character, like_pattern
from server.orgs.service import add_member
from server.textguard import WIRE_PATHS
from server.vocabulary import MemberCategory
from tests.security.conftest import Realm, count_rows
from tests.server.roster.workbooks import roster_xlsx

REFUSED = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\ud800", "\udfff"]
ALLOWED = ["\t", "\n", "\r", "%", "_", "\\", "\x7f", "\u200b", "😀", "张三"]
MESSAGE = "含有不允许的字符"


def refused_api(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_text", body
    assert body["field"] == field
    assert MESSAGE in body["detail"]
    assert field in body["detail"]


def refused_page(response: Any) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert MESSAGE in response.text
    assert 'data-code="invalid_text"' in response.text


def transfer_body(realm: Realm, claimed_name: str, **letter: Any) -> dict[str, Any]:
    today = realm.clock.now.date()
    return {
        "to_org_id": realm.world.committee_id,
        "claimed_name": claimed_name,
        "placement_org_id": realm.a.org_id,
        "letter": {
            "letter_no": "闽湖组〔2025〕031号",
            "issuer_name": "中共湖里区某社区委员会",
            "issuer_kind": "basic_committee",
            "from_org_name": "湖里第三党支部",
            "to_org_name": "鹭江街道党工委",
            "member_category": "full",
            "dues_paid_to": f"{today.year}-{today.month:02d}",
            "issued_on": (today - timedelta(days=2)).isoformat(),
            "valid_days": 30,
            **letter,
        },
    }


# --- the one definition -------------------------------------------------------------------------


@pytest.mark.parametrize("char", REFUSED)
def test_refused_characters(char: str) -> None:
    assert has_refused_character(f"张{char}三")


@pytest.mark.parametrize("char", ALLOWED)
def test_allowed_characters(char: str) -> None:
    assert check_text(f"张{char}三", field="姓名") == f"张{char}三"


def test_like_pattern_escapes_wildcards_and_its_escape() -> None:
    assert like_pattern("50%") == "%50\\%%"
    assert like_pattern("张_") == "%张\\_%"
    assert like_pattern("a\\b") == "%a\\\\b%"


# --- the searches that answered 500 on PostgreSQL ------------------------------------------------


@pytest.mark.parametrize("char", ["\x00", "\x1b"])
def test_api_transfer_search_refuses_control_characters(realm: Realm, char: str) -> None:
    response = realm.client.get("/api/v1/transfers", params={"q": f"转入{char}"}, headers=realm.a.api)
    refused_api(response, "q")


@pytest.mark.parametrize("path", ["/web/members", "/web/transfers"])
@pytest.mark.parametrize("char", ["\x00", "\x1b"])
def test_web_searches_refuse_control_characters_with_a_page(realm: Realm, path: str, char: str) -> None:
    refused_page(realm.a.web.get(path, params={"q": f"陈{char}"}))


def test_htmx_search_gets_a_toast_not_a_page(realm: Realm) -> None:
    response = realm.a.web.get("/web/members", params={"q": "\x00"}, headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert response.headers["HX-Reswap"] == "none"
    assert MESSAGE in json.loads(response.headers["HX-Trigger"])["toast"]["message"]


def test_tab_in_a_search_is_fine(realm: Realm) -> None:
    assert realm.a.web.get("/web/members", params={"q": "陈\t"}).status_code == 200
    assert realm.client.get("/api/v1/transfers", params={"q": "转\t"}, headers=realm.a.api).status_code == 200


def test_nul_in_a_path_parameter(realm: Realm) -> None:
    refused_api(realm.client.get("/api/v1/kiosks/k%00x", headers=realm.admin_api), "kiosk_id")


def test_nul_in_a_query_parameter_name(realm: Realm) -> None:
    response = realm.client.get("/api/v1/transfers?a%00b=1", headers=realm.a.api)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_text"


# --- API JSON bodies -----------------------------------------------------------------------------


def test_nul_in_a_json_body_field_writes_nothing(realm: Realm) -> None:
    before = count_rows(realm.engine)
    response = realm.client.post(
        "/api/v1/transfers", json=transfer_body(realm, "张\x00三"), headers=realm.admin_api
    )
    refused_api(response, "claimed_name")
    assert count_rows(realm.engine) == before


def test_nested_json_field_is_named_by_its_path(realm: Realm) -> None:
    body = transfer_body(realm, "张三", issuer_name="中共\x07某党委")
    response = realm.client.post("/api/v1/transfers", json=body, headers=realm.admin_api)
    refused_api(response, "letter.issuer_name")


def test_lone_surrogate_escaped_in_json(realm: Realm) -> None:
    # "\ud800" is valid JSON text but no UTF-8 string: no database can store it.
    raw = json.dumps(transfer_body(realm, "PLACEHOLDER")).replace("PLACEHOLDER", "\\ud800")
    response = realm.client.post(
        "/api/v1/transfers",
        content=raw,
        headers={**realm.admin_api, "Content-Type": "application/json"},
    )
    refused_api(response, "claimed_name")


def test_nul_in_a_json_key(realm: Realm) -> None:
    body = {"member_id": realm.a.member_id, "reason": "出差", "x\x00": 1}
    response = realm.client.post(
        f"/api/v1/events/{realm.a.event_id}/leave", json=body, headers=realm.admin_api
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_text"


def test_nul_in_a_leave_reason(realm: Realm) -> None:
    body = {"member_id": realm.a.member_id, "reason": "出差\x00"}
    response = realm.client.post(
        f"/api/v1/events/{realm.a.event_id}/leave", json=body, headers=realm.admin_api
    )
    refused_api(response, "reason")


def test_wire_endpoints_are_left_to_their_models(realm: Realm) -> None:
    """Tap batches, heartbeats, key rotation and enrollment bound their own strings (one bad
    envelope fails only itself), so the boundary check leaves them to the wire models."""
    for path in sorted(WIRE_PATHS):
        response = realm.client.post(path, json={"kid": "k\x00", "code": "\x00"})
        assert response.status_code != 404, path
        assert response.json().get("error") != "invalid_text", path
    batch = json.loads(realm.a.tap(realm.a.card, at=realm.clock.now))
    hostile = dict(batch["envelopes"][0], kid="k\x00")
    response = realm.client.post("/api/v1/taps", json={"envelopes": [hostile]})
    assert response.json().get("error") != "invalid_text"


# --- web forms -----------------------------------------------------------------------------------


def test_nul_in_a_web_form_field(realm: Realm) -> None:
    before = count_rows(realm.engine)
    form = {"title": "主题党日\x00", "topic": "", "csrf_token": realm.a.csrf}
    refused_page(realm.a.web.post(f"/web/events/{realm.a.event_id}", data=form))
    assert count_rows(realm.engine) == before


def test_nul_in_a_multipart_web_form_field(realm: Realm) -> None:
    form = {"title": "主题\x00党日", "topic": "", "csrf_token": realm.a.csrf}
    files = {"attachment": ("note.txt", b"\x00 file parts are not text fields", "text/plain")}
    refused_page(realm.a.web.post(f"/web/events/{realm.a.event_id}", data=form, files=files))


# --- LIKE wildcards ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def look_alikes(realm: Realm) -> Realm:
    """Members 张_三 and 张四三 in branch A; transfer applicants 李_一, 李二一, 王50% and 王505."""
    with unit_of_work(realm.engine) as session:
        for name in ("张_三", "张四三"):
            add_member(
                session,
                name=name,
                org_id=realm.a.org_id,
                category=MemberCategory.FULL,
                joined_org_at=None,
                now=realm.clock.now,
            )
    for name in ("李_一", "李二一", "王50%", "王505"):
        response = realm.client.post(
            "/api/v1/transfers", json=transfer_body(realm, name), headers=realm.admin_api
        )
        assert response.status_code == 201, response.text
    return realm


def _queue_names(realm: Realm, q: str) -> set[str]:
    response = realm.client.get("/api/v1/transfers", params={"q": q}, headers=realm.admin_api)
    assert response.status_code == 200, response.text
    return {item["applicant_name"] for item in response.json()["items"]}


def test_underscore_in_a_member_search_is_literal(look_alikes: Realm) -> None:
    page = look_alikes.a.web.get("/web/members", params={"q": "张_"})
    assert page.status_code == 200
    assert "张_三" in page.text
    assert "张四三" not in page.text
    assert "张四三" in look_alikes.a.web.get("/web/members", params={"q": "张四"}).text


def test_wildcards_in_the_transfer_queue_are_literal(look_alikes: Realm) -> None:
    assert _queue_names(look_alikes, "李_") == {"李_一"}
    assert _queue_names(look_alikes, "50%") == {"王50%"}
    assert _queue_names(look_alikes, "%") == {"王50%"}
    assert _queue_names(look_alikes, "\\") == set()
    assert _queue_names(look_alikes, "王50") == {"王50%", "王505"}


def test_underscore_in_the_web_transfer_queue_is_literal(look_alikes: Realm) -> None:
    page = look_alikes.admin_web.get("/web/transfers", params={"q": "李_"})
    assert page.status_code == 200
    assert "李_一" in page.text
    assert "李二一" not in page.text


# --- roster cells --------------------------------------------------------------------------------


class _Sheet:
    """An openpyxl read-only worksheet as the roster reader uses it."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.title = "花名册"
        self.rows = rows
        self.max_row = len(rows)

    def iter_rows(self, *, min_row: int, values_only: bool) -> Iterator[tuple[Any, ...]]:
        return iter(self.rows[min_row - 1 :])


class _Book:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.worksheets = [_Sheet(rows)]

    def close(self) -> None:
        pass


def test_roster_cell_with_a_refused_character_is_reported_on_its_row(
    realm: Realm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XML cannot carry NUL, so openpyxl never yields one; a reader that could (another file
    format, another parser) still meets the cell check. The row is reported with the others checked;
    the import stays all-or-nothing, and the file without that row goes through."""
    import openpyxl

    branch = realm.a.name
    header = ("姓名", "党员类别", "所在支部")
    good = ("吴新民", "正式党员", branch)
    rows = [header, ("张\x00三", "正式党员", branch), good, ("郑\x1b红", "预备党员", branch)]
    monkeypatch.setattr(openpyxl, "load_workbook", lambda *_a, **_k: _Book(rows))
    before = count_rows(realm.engine)

    response = realm.client.post(
        "/api/v1/imports/roster", files={"file": ("roster.xlsx", b"stub")}, headers=realm.admin_api
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "roster_invalid"
    assert [(p["row"], p["column"], p["code"]) for p in body["problems"]] == [
        (2, "姓名", "text_invalid"),
        (4, "姓名", "text_invalid"),
    ]
    assert all(MESSAGE in p["message"] for p in body["problems"])
    assert count_rows(realm.engine) == before

    rows[:] = [header, good]
    response = realm.client.post(
        "/api/v1/imports/roster",
        params={"dry_run": "true"},
        files={"file": ("roster.xlsx", b"stub")},
        headers=realm.admin_api,
    )
    assert response.status_code == 200, response.text
    assert response.json()["created"] == 1


def test_roster_file_with_a_raw_nul_byte_is_unreadable_not_a_500(realm: Realm) -> None:
    data = roster_xlsx([("PLACEHOLDER", "正式党员", realm.a.name)], header=("姓名", "党员类别", "所在支部"))
    source, patched = zipfile.ZipFile(BytesIO(data)), BytesIO()
    with zipfile.ZipFile(patched, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item.filename).replace(b"PLACEHOLDER", b"\xe5\xbc\xa0\x00"))
    response = realm.client.post(
        "/api/v1/imports/roster", files={"file": ("roster.xlsx", patched.getvalue())}, headers=realm.admin_api
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "roster_unreadable"
    assert "不允许的字符" in response.json()["detail"]


# --- command-line arguments ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("app", "args"),
    [
        (admin_app, ["org", "add", "某\x00党委", "--kind", "basic_committee"]),
        (admin_app, ["member", "add", "张三", "--org", "\x00"]),
        (server_app, ["migrate", "--db", "sqlite:///x\x00.db"]),
        (ecard_app, ["admin", "org", "add", "某\udcff党委"]),
        (ecard_app, ["agent", "run", "--server", "http://\x1b[31m"]),
    ],
)
def test_cli_argument_with_a_refused_character_exits_2(app: Any, args: list[str]) -> None:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "invalid_text" in result.stderr
    assert MESSAGE in result.stderr


def test_cli_refusal_is_json_with_json(tmp_path: Any) -> None:
    result = CliRunner().invoke(admin_app, ["org", "add", "某\x00党委", "--json"])
    assert result.exit_code == 2
    body = json.loads(result.stdout)
    assert body["error"] == "invalid_text"
    assert "第3个命令行参数" in body["detail"]
    assert MESSAGE in body["detail"]


def test_cli_names_the_option_before_the_bad_value() -> None:
    result = CliRunner().invoke(admin_app, ["member", "add", "张三", "--org", "1\x00", "--json"])
    assert result.exit_code == 2
    assert "--org 之后" in json.loads(result.stdout)["detail"]


def test_real_command_line_with_bytes_that_are_not_utf8() -> None:
    """A shell can pass any bytes but NUL; undecodable ones arrive as lone surrogates."""
    result = subprocess.run(
        [sys.executable, "-c", "from ecard_cli.main import run; run()", "admin", "org", "add", b"\xff\xfe"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "invalid_text" in result.stderr.decode("utf-8", "replace")


def test_non_ascii_csrf_token_is_a_refusal_not_a_500(realm: Realm) -> None:
    """compare_digest refuses non-ASCII str; the token is compared as bytes."""
    page = f"/web/events/{realm.a.event_id}"
    form = realm.a.web.post(page, data={"title": "主题党日", "csrf_token": "中文令牌"})
    header = realm.a.web.post(
        page, data={"title": "主题党日"}, headers={"X-CSRF-Token": "\xe9t\xe9".encode("latin-1")}
    )  # type: ignore[dict-item]
    for response in (form, header):
        assert response.status_code == 403, response.text
        assert 'data-code="csrf_failed"' in response.text


def test_non_ascii_bearer_token_is_a_refusal(realm: Realm) -> None:
    response = realm.client.get(
        "/api/v1/transfers", headers={"Authorization": "Bearer \xe9\xe9".encode("latin-1")}
    )  # type: ignore[dict-item]
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
