"""``/api/v1/transfers`` over HTTP: filing, queue, detail, letter, documents and transitions, with
bearer tokens scoped to organisations (a request outside one's subtree is a 404)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from server.auth.service import create_token
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.vocabulary import TokenRole
from tests.server.conftest import FakeClock
from tests.server.factories import World
from tests.server.transfers.factories import QIAN_CARD, SHANGHAI, Elsewhere, build_elsewhere, letter

TRANSFERS = "/api/v1/transfers"
NOW = datetime(2025, 3, 3, 10, 0, tzinfo=SHANGHAI)


class Tokens:
    def __init__(self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere) -> None:
        def token(role: TokenRole, org_id: int | None) -> dict[str, str]:
            with unit_of_work(engine) as session:
                created = create_token(
                    session,
                    keyring=keyring,
                    role=role,
                    org_id=org_id,
                    label="test",
                    caller=CLI_CALLER,
                    now=NOW,
                )
            return {"Authorization": f"Bearer {created.token}"}

        self.admin = token(TokenRole.ADMIN, None)
        self.committee = token(TokenRole.SECRETARY, world.committee_id)
        self.branch = token(TokenRole.SECRETARY, world.branch_id)
        self.other_branch = token(TokenRole.SECRETARY, world.other_branch_id)
        self.elsewhere = token(TokenRole.SECRETARY, elsewhere.committee_id)


@pytest.fixture
def tokens(engine: Engine, keyring: Keyring, world: World, clock: FakeClock) -> Tokens:
    clock.now = NOW
    return Tokens(engine, keyring, world, build_elsewhere(engine, keyring, now=NOW - timedelta(days=30)))


def file_qian(
    client: TestClient, world: World, tokens: Tokens, *, released: bool = True, **extra: Any
) -> dict[str, Any]:
    """The committee files for 钱七 by his card number; his own 基层党委 then releases him (unless
    ``released`` is False). Returns the request as the receiving committee then sees it."""
    body = {
        "to_org_id": world.committee_id,
        "card_no": QIAN_CARD.card_no,
        "letter": letter(issued_on=NOW.date() - timedelta(days=2)).model_dump(mode="json"),
        **extra,
    }
    response = client.post(TRANSFERS, json=body, headers=tokens.committee)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    if released:
        for action in ("source_agree", "release"):
            decided = client.post(
                f"{TRANSFERS}/outgoing/{result['id']}/decisions",
                json={"action": action},
                headers=tokens.elsewhere,
            )
            assert decided.status_code == 200, decided.text
        result = client.get(f"{TRANSFERS}/{result['id']}", headers=tokens.committee).json()
    return result


def act(client: TestClient, transfer_id: int, headers: dict[str, str], action: str, **body: Any) -> Any:
    return client.post(
        f"{TRANSFERS}/{transfer_id}/transitions", json={"action": action, **body}, headers=headers
    )


class TestApi:
    def test_file_review_and_receive(self, client: TestClient, world: World, tokens: Tokens) -> None:
        waiting = file_qian(client, world, tokens, released=False)
        assert (waiting["state"], waiting["applicant_name"], waiting["member_id"]) == (
            "awaiting_source",
            "未登记持卡人（3104********1234）",
            None,
        )
        assert act(client, waiting["id"], tokens.committee, "receive").status_code == 409
        outgoing = client.get(f"{TRANSFERS}/outgoing", headers=tokens.elsewhere).json()
        assert [(item["id"], item["member"]["name"], item["to_org"]["id"]) for item in outgoing["items"]] == [
            (waiting["id"], "钱七", world.committee_id)
        ]
        filed = waiting
        for action in ("source_agree", "release"):
            decided = client.post(
                f"{TRANSFERS}/outgoing/{filed['id']}/decisions",
                json={"action": action},
                headers=tokens.elsewhere,
            )
            assert decided.status_code == 200, decided.text
        filed = client.get(f"{TRANSFERS}/{filed['id']}", headers=tokens.committee).json()
        assert filed["state"] == "submitted"
        assert filed["state_label"] == "待支部审核"
        assert filed["applicant_name"] == "钱七"
        assert {c["code"] for c in filed["checks"]} >= {"issuer_authorised", "letter_valid"}
        assert filed["due_on"] == "2025-03-10"
        transfer_id = filed["id"]

        accepted = act(client, transfer_id, tokens.branch, "branch_accept")
        assert accepted.status_code == 404  # not placed in the branch yet: not the branch's business
        placed = client.patch(
            f"{TRANSFERS}/{transfer_id}", json={"placement_org_id": world.branch_id}, headers=tokens.committee
        )
        assert placed.json()["placement_org"] == {"id": world.branch_id, "name": "第一党支部"}
        assert act(client, transfer_id, tokens.branch, "branch_accept").json()["state"] == "branch_accepted"

        refused = act(client, transfer_id, tokens.branch, "committee_approve")
        assert refused.status_code == 403
        assert refused.json()["error"] == "transfer_level_forbidden"
        assert (
            act(client, transfer_id, tokens.committee, "committee_approve").json()["state"]
            == "committee_approved"
        )
        received = act(client, transfer_id, tokens.committee, "receive").json()
        assert received["state"] == "received"
        assert received["due_on"] == "2025-04-02"
        assert [h["action"] for h in received["history"]][-3:] == [
            "transfer.branch_accept",
            "transfer.committee_approve",
            "transfer.receive",
        ]

    def test_queue_is_scoped_to_the_tokens_subtree(
        self, client: TestClient, world: World, tokens: Tokens
    ) -> None:
        filed = file_qian(client, world, tokens, placement_org_id=world.branch_id)

        def ids(headers: dict[str, str]) -> list[int]:
            response = client.get(TRANSFERS, headers=headers)
            assert response.status_code == 200, response.text
            return [item["id"] for item in response.json()["items"]]

        assert ids(tokens.admin) == ids(tokens.committee) == ids(tokens.branch) == [filed["id"]]
        assert ids(tokens.other_branch) == ids(tokens.elsewhere) == []
        for headers in (tokens.other_branch, tokens.elsewhere):
            response = client.get(f"{TRANSFERS}/{filed['id']}", headers=headers)
            assert response.status_code == 404
            assert response.json()["error"] == "transfer_not_found"
        # Filtering by an organisation outside one's subtree is refused the same way.
        response = client.get(TRANSFERS, params={"org_id": world.committee_id}, headers=tokens.branch)
        assert response.json()["error"] == "organisation_not_found"

    def test_filters(self, client: TestClient, world: World, tokens: Tokens, clock: FakeClock) -> None:
        filed = file_qian(client, world, tokens)
        clock.now = NOW + timedelta(days=10)
        overdue = client.get(TRANSFERS, params={"overdue": "true"}, headers=tokens.committee).json()
        assert [item["id"] for item in overdue["items"]] == [filed["id"]]
        assert overdue["items"][0]["overdue"] is True
        closed = client.get(
            TRANSFERS, params={"state": ["closed", "rejected"]}, headers=tokens.committee
        ).json()
        assert closed["items"] == []
        assert (
            client.get(TRANSFERS, params={"state": "nonsense"}, headers=tokens.committee).status_code == 422
        )

    def test_errors_have_stable_codes_and_chinese_messages(
        self, client: TestClient, world: World, tokens: Tokens
    ) -> None:
        branch_letter = letter(issued_on=NOW.date(), issuer_kind="branch").model_dump(mode="json")  # type: ignore[arg-type]
        response = client.post(
            TRANSFERS,
            json={"to_org_id": world.committee_id, "card_no": QIAN_CARD.card_no, "letter": branch_letter},
            headers=tokens.committee,
        )
        assert response.status_code == 400
        assert response.json()["error"] == "letter_issuer_not_committee"
        filed = file_qian(client, world, tokens)
        returned = act(client, filed["id"], tokens.committee, "return")
        assert (returned.status_code, returned.json()["error"]) == (400, "reason_required")
        wrong = act(client, filed["id"], tokens.committee, "close")
        assert (wrong.status_code, wrong.json()["error"]) == (409, "transfer_transition_not_allowed")
        assert wrong.json()["detail"] == "转入申请当前为「待支部审核」，不能执行「回执已寄回，办结」"
        assert client.get(TRANSFERS).status_code == 401

    def test_documents_and_reissued_letter(self, client: TestClient, world: World, tokens: Tokens) -> None:
        expired = file_qian(
            client,
            world,
            tokens,
            letter=letter(issued_on=NOW.date().replace(year=2018)).model_dump(mode="json"),
        )
        assert expired["state"] == "expired"
        url = f"{TRANSFERS}/{expired['id']}"
        ticked = client.put(
            f"{url}/documents/branch_certificate", json={"note": "原件已核"}, headers=tokens.committee
        )
        assert (
            next(d for d in ticked.json()["documents"] if d["kind"] == "branch_certificate")["ticked"] is True
        )
        client.delete(f"{url}/documents/branch_certificate", headers=tokens.committee)
        reissued = client.put(
            f"{url}/letter",
            json=letter(issued_on=NOW.date()).model_dump(mode="json"),
            headers=tokens.committee,
        ).json()
        assert len(reissued["earlier_letters"]) == 1
        assert (
            act(client, expired["id"], tokens.committee, "revive", reason="已重新开具").json()["state"]
            == "submitted"
        )
