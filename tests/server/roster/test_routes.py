"""``POST /api/v1/imports/roster``: a multipart .xlsx upload, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import Engine

from server.auth.service import create_token
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.vocabulary import TokenRole
from tests.server.roster.conftest import NOW, Tree, table_counts
from tests.server.roster.workbooks import CHEN_CARD, LIN_CARD, numbered, roster_xlsx

URL = "/api/v1/imports/roster"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ROWS = numbered(
    [
        ["陈一", "男", "正式党员", "思明区某街道党委/第一党支部", CHEN_CARD],
        ["林二", "女", "预备党员", "第二党支部", LIN_CARD],
    ]
)


def token(
    engine: Engine, keyring: Keyring, *, role: TokenRole = TokenRole.ADMIN, org_id: int | None = None
) -> str:
    with unit_of_work(engine) as session:
        return create_token(
            session, keyring=keyring, role=role, org_id=org_id, label="roster", caller=CLI_CALLER, now=NOW
        ).token


def upload(client: TestClient, data: bytes, bearer: str | None, **params: str) -> Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    response: Response = client.post(
        URL, files={"file": ("花名册.xlsx", data, XLSX)}, headers=headers, params=params
    )
    return response


def test_upload_imports_and_reupload_changes_nothing(
    client: TestClient, engine: Engine, keyring: Keyring, tree: Tree
) -> None:
    admin = token(engine, keyring)

    first = upload(client, roster_xlsx(ROWS), admin)
    assert first.status_code == 200, first.text
    assert first.json() | {"updates": []} == {
        "dry_run": False,
        "sheets": ["花名册"],
        "ignored_sheets": [],
        "ignored_columns": ["序号"],
        "rows": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "cards_bound": 2,
        "updates": [],
        "new_members": [
            {"sheet": "花名册", "row": 2, "name": "陈一", "branch": "第一党支部", "category": "full"},
            {"sheet": "花名册", "row": 3, "name": "林二", "branch": "第二党支部", "category": "probationary"},
        ],
    }
    counts = table_counts(engine)

    second = upload(client, roster_xlsx(ROWS), admin)
    assert second.status_code == 200
    assert (second.json()["created"], second.json()["unchanged"]) == (0, 2)
    assert table_counts(engine) == counts
    assert CHEN_CARD not in first.text + second.text


def test_dry_run_writes_nothing(client: TestClient, engine: Engine, keyring: Keyring, tree: Tree) -> None:
    admin = token(engine, keyring)  # creating it is audited: count after
    before = table_counts(engine)
    response = upload(client, roster_xlsx(ROWS), admin, dry_run="true")

    assert response.status_code == 200
    assert response.json()["dry_run"] is True
    assert response.json()["created"] == 2
    assert table_counts(engine) == before


def test_invalid_roster_lists_problems_by_row(
    client: TestClient, engine: Engine, keyring: Keyring, tree: Tree
) -> None:
    rows = [*ROWS, [3, "黄六", "女", "积极分子", "第九党支部", "123"]]
    response = upload(client, roster_xlsx(rows), token(engine, keyring))

    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "roster_invalid"
    assert "未导入任何数据" in body["detail"]
    assert [(p["row"], p["column"], p["code"]) for p in body["problems"]] == [
        (4, "党员类别", "category_invalid"),
        (4, "易通卡号", "card_no_invalid"),
    ]
    assert all(p["sheet"] == "花名册" and p["message"] for p in body["problems"])
    assert table_counts(engine)["member"] == 3  # the tree's own members only


def test_secretary_token_is_limited_to_its_subtree(
    client: TestClient, engine: Engine, keyring: Keyring, tree: Tree
) -> None:
    secretary = token(engine, keyring, role=TokenRole.SECRETARY, org_id=tree.siming)
    elsewhere = roster_xlsx(numbered([["陈一", "男", "正式党员", "湖里区某公司党委/第一党支部", None]]))

    refused = upload(client, elsewhere, secretary)
    assert refused.status_code == 400
    assert [p["code"] for p in refused.json()["problems"]] == ["branch_unknown"]

    # Inside its subtree the bare name is unambiguous (湖里's 第一党支部 is out of sight).
    accepted = upload(
        client, roster_xlsx(numbered([["陈一", "男", "正式党员", "第一党支部", None]])), secretary
    )
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["created"] == 1


def test_needs_a_token(client: TestClient, tree: Tree) -> None:
    response = upload(client, roster_xlsx(ROWS), None)
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_not_a_workbook(client: TestClient, engine: Engine, keyring: Keyring, tree: Tree) -> None:
    response = upload(client, "姓名,所在支部\n陈一,第一党支部\n".encode(), token(engine, keyring))
    assert response.status_code == 400
    assert response.json()["error"] == "roster_unreadable"


def test_too_large(
    client: TestClient, engine: Engine, keyring: Keyring, tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("server.roster.routes.MAX_ROSTER_BYTES", 1024)
    response = upload(client, roster_xlsx(ROWS), token(engine, keyring))
    assert response.status_code == 413
    assert response.json()["error"] == "roster_too_large"
