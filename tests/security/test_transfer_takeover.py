"""Nobody takes what isn't theirs (issue #9, item 1), through the real HTTP API and web pages, on
SQLite and PostgreSQL.

The attack: a committee token of organisation B files ``POST /api/v1/transfers`` with the 19-digit
card number of a member of organisation A (printed on the card, so anyone who saw it knows it) and
a self-typed letter, then accepts, approves and receives: the member used to belong to B, and A was
never asked. The same call was an oracle: a bound number answered with the holder's name and home
organisation, an unbound one with ``applicant_name_required``.

Here A is 湖里某社区党委 (its 第三党支部 holds 钱七 and his card), B is the world's 街道党委.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlmodel import Session

from schemas.messages import TapMode
from server.auth.service import create_token
from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.keyring import Keyring
from server.records.orgs import Member
from server.users.service import add_user
from server.vocabulary import TokenRole, UserRole
from tests.server import conftest as server_suite
from tests.server.conftest import FakeClock
from tests.server.factories import EVENT_START, World
from tests.server.transfers.factories import NEWCOMER_CARD, QIAN_CARD, Elsewhere, build_elsewhere

sqlite_template = server_suite.sqlite_template
database_url = server_suite.database_url
settings = server_suite.settings
keyring = server_suite.keyring
engine = server_suite.engine
clock = server_suite.clock
world = server_suite.world
client = server_suite.client

TRANSFERS = "/api/v1/transfers"
NOW = EVENT_START - timedelta(hours=1)
# What B's secretary types: the letter is theirs to invent, so it names nothing of A's.
TYPED_LETTER = {
    "letter_no": "自拟〔2025〕001号",
    "issuer_name": "某某党委",
    "issuer_kind": "basic_committee",
    "from_org_name": "某某党支部",
    "to_org_name": "某街道党委",
    "member_category": "full",
    "dues_paid_to": f"{NOW.year}-{NOW.month:02d}",
    "issued_on": (NOW.date() - timedelta(days=1)).isoformat(),
    "valid_days": 30,
}


class Parties:
    """B (the world's 街道党委, receiving) and A (湖里, where 钱七 belongs), with their tokens."""

    def __init__(self, engine: Engine, keyring: Keyring, world: World, elsewhere: Elsewhere) -> None:
        self.engine, self.world, self.a = engine, world, elsewhere

        def token(org_id: int) -> dict[str, str]:
            with unit_of_work(engine) as session:
                created = create_token(
                    session,
                    keyring=keyring,
                    role=TokenRole.SECRETARY,
                    org_id=org_id,
                    label="t",
                    caller=CLI_CALLER,
                    now=NOW,
                )
            return {"Authorization": f"Bearer {created.token}"}

        self.b_committee = token(world.committee_id)
        self.a_branch = token(elsewhere.branch_id)
        self.a_committee = token(elsewhere.committee_id)

    def qian_org(self) -> int:
        with Session(self.engine) as session:
            member = session.get(Member, self.a.qian_id)
            assert member is not None
            return member.org_id


@pytest.fixture
def parties(engine: Engine, keyring: Keyring, world: World, clock: FakeClock) -> Parties:
    clock.now = NOW
    return Parties(engine, keyring, world, build_elsewhere(engine, keyring, now=NOW - timedelta(days=30)))


def file_by_card(client: TestClient, parties: Parties, card_no: str, **extra: Any) -> dict[str, Any]:
    body = {"to_org_id": parties.world.committee_id, "card_no": card_no, "letter": TYPED_LETTER, **extra}
    response = client.post(TRANSFERS, json=body, headers=parties.b_committee)
    assert response.status_code == 201, response.text
    filed: dict[str, Any] = response.json()
    return filed


def act(client: TestClient, transfer_id: int, headers: dict[str, str], action: str, **body: Any) -> Any:
    return client.post(
        f"{TRANSFERS}/{transfer_id}/transitions", json={"action": action, **body}, headers=headers
    )


def decide(
    client: TestClient, transfer_id: int, headers: dict[str, str], action: str, reason: str = ""
) -> Any:
    return client.post(
        f"{TRANSFERS}/outgoing/{transfer_id}/decisions",
        json={"action": action, "reason": reason},
        headers=headers,
    )


def leaks_qian(text: str) -> bool:
    """Whether a response names 钱七, his branch, his committee or his member id field."""
    return any(secret in text for secret in ("钱七", "湖里第三党支部", "湖里区某社区党委"))


class TestTakeover:
    def test_the_attack_is_refused_and_the_member_stays_where_he_is(
        self, client: TestClient, parties: Parties
    ) -> None:
        filed = file_by_card(client, parties, QIAN_CARD.card_no)
        assert filed["state"] == "awaiting_source"
        assert (filed["member_id"], filed["member_home_org"]) == (None, None)
        assert not leaks_qian(str(filed))

        world = parties.world
        steps = [
            ("branch_accept", {"placement_org_id": world.branch_id}),
            ("committee_approve", {}),
            ("receive", {"placement_org_id": world.branch_id}),
        ]
        for action, body in steps:
            refused = act(client, filed["id"], parties.b_committee, action, **body)
            assert refused.status_code == 409, (action, refused.text)
            assert refused.json()["error"] == "transfer_transition_not_allowed"
            assert refused.json()["detail"]  # a Chinese message for people
        # B cannot release on A's behalf either, by either door.
        assert decide(client, filed["id"], parties.b_committee, "source_agree").status_code == 404
        assert act(client, filed["id"], parties.b_committee, "source_agree").status_code == 409
        assert parties.qian_org() == parties.a.branch_id

    def test_receive_works_once_the_source_has_released(self, client: TestClient, parties: Parties) -> None:
        filed = file_by_card(client, parties, QIAN_CARD.card_no)
        transfer_id = filed["id"]

        # A's branch secretary sees the outgoing request: who, to where, what it may decide.
        outgoing = client.get(f"{TRANSFERS}/outgoing", headers=parties.a_branch).json()
        (item,) = outgoing["items"]
        assert (item["id"], item["member"]["name"], item["to_org"]["id"], item["state"]) == (
            transfer_id,
            "钱七",
            parties.world.committee_id,
            "awaiting_source",
        )
        detail = client.get(f"{TRANSFERS}/outgoing/{transfer_id}", headers=parties.a_branch).json()
        assert detail["actions"] == ["source_agree", "refuse_release"]

        agreed = decide(client, transfer_id, parties.a_branch, "source_agree")
        assert agreed.json()["state"] == "source_branch_agreed"
        # The branch alone cannot release: that is its 基层党委's.
        forbidden = decide(client, transfer_id, parties.a_branch, "release")
        assert (forbidden.status_code, forbidden.json()["error"]) == (403, "transfer_level_forbidden")
        assert act(client, transfer_id, parties.b_committee, "receive").status_code == 409

        released = decide(client, transfer_id, parties.a_committee, "release")
        assert released.json()["state"] == "submitted"

        seen = client.get(f"{TRANSFERS}/{transfer_id}", headers=parties.b_committee).json()
        assert seen["applicant_name"] == "钱七"
        assert seen["member_home_org"]["name"] == "湖里第三党支部"
        world = parties.world
        assert (
            act(
                client, transfer_id, parties.b_committee, "branch_accept", placement_org_id=world.branch_id
            ).json()["state"]
            == "branch_accepted"
        )
        assert (
            act(client, transfer_id, parties.b_committee, "committee_approve").json()["state"]
            == "committee_approved"
        )
        assert act(client, transfer_id, parties.b_committee, "receive").json()["state"] == "received"
        assert parties.qian_org() == world.branch_id
        after = client.get(f"{TRANSFERS}/outgoing/{transfer_id}", headers=parties.a_committee).json()
        assert (after["state"], after["state_label"]) == ("received", "对方已接收")

    def test_a_refusal_keeps_the_member_and_tells_the_receiving_side_why(
        self, client: TestClient, parties: Parties
    ) -> None:
        filed = file_by_card(client, parties, QIAN_CARD.card_no)
        unexplained = decide(client, filed["id"], parties.a_branch, "refuse_release", reason="  ")
        assert (unexplained.status_code, unexplained.json()["error"]) == (400, "reason_required")
        refused = decide(
            client, filed["id"], parties.a_branch, "refuse_release", reason="经核实本人未申请转出"
        )
        assert refused.json()["state"] == "source_refused"

        seen = client.get(f"{TRANSFERS}/{filed['id']}", headers=parties.b_committee)
        body = seen.json()
        assert body["state"] == "source_refused"
        assert "经核实本人未申请转出" in [entry["reason"] for entry in body["history"]]
        assert not leaks_qian(seen.text)
        assert act(client, filed["id"], parties.b_committee, "receive").status_code == 409
        assert parties.qian_org() == parties.a.branch_id


class TestEachSideSeesItsHalf:
    def test_the_receiving_side_learns_nothing_before_the_release(
        self, client: TestClient, parties: Parties
    ) -> None:
        filed = file_by_card(client, parties, QIAN_CARD.card_no, claimed_name="钱某")
        assert filed["applicant_name"] == "钱某"  # what B typed, not the roster's name
        for response in (
            client.get(TRANSFERS, headers=parties.b_committee),
            client.get(f"{TRANSFERS}/{filed['id']}", headers=parties.b_committee),
            client.get(TRANSFERS, params={"q": "钱七"}, headers=parties.b_committee),
        ):
            assert response.status_code == 200
            assert not leaks_qian(response.text), response.text
        assert client.get(TRANSFERS, params={"q": "钱七"}, headers=parties.b_committee).json()["items"] == []
        # Correcting the typed name is allowed exactly as for a card nobody holds.
        patched = client.patch(
            f"{TRANSFERS}/{filed['id']}", json={"claimed_name": "钱先生"}, headers=parties.b_committee
        )
        assert (patched.status_code, patched.json()["applicant_name"]) == (200, "钱先生")

    def test_the_source_sees_where_to_but_not_the_receiving_sides_papers(
        self, client: TestClient, parties: Parties
    ) -> None:
        filed = file_by_card(client, parties, QIAN_CARD.card_no, note="接收方内部备注：勿外传")
        ticked = client.put(
            f"{TRANSFERS}/{filed['id']}/documents/id_card",
            json={"note": "身份证原件已核"},
            headers=parties.b_committee,
        )
        assert ticked.status_code == 200
        outgoing = client.get(f"{TRANSFERS}/outgoing/{filed['id']}", headers=parties.a_committee)
        assert outgoing.status_code == 200
        for secret in ("勿外传", "身份证原件已核", TYPED_LETTER["letter_no"], "token:"):
            assert secret not in outgoing.text, secret
        assert {entry["actor_name"] for entry in outgoing.json()["history"]} == {"接收方"}
        # A reads its own half only: the receiving side's view of the request is not A's.
        assert client.get(f"{TRANSFERS}/{filed['id']}", headers=parties.a_committee).status_code == 404
        # And a third party sees neither half.
        assert (
            client.get(f"{TRANSFERS}/outgoing/{filed['id']}", headers=parties.b_committee).status_code == 404
        )


class TestCardNumberOracle:
    @pytest.mark.parametrize("typed_name", [None, "甲"])
    def test_bound_and_unbound_card_numbers_get_the_same_answer(
        self, client: TestClient, parties: Parties, typed_name: str | None
    ) -> None:
        """Same status, same fields, same state, checks and actions; only the number differs."""
        extra = {"claimed_name": typed_name} if typed_name else {}
        bound = file_by_card(client, parties, QIAN_CARD.card_no, **extra)
        unbound = file_by_card(client, parties, NEWCOMER_CARD.card_no, **extra)
        varying = {"id", "card_masked", "applicant_name", "submitted_at", "state_since", "history", "letter"}
        assert {k: v for k, v in bound.items() if k not in varying} == {
            k: v for k, v in unbound.items() if k not in varying
        }
        assert {k: v for k, v in bound["letter"].items() if k != "id"} == {
            k: v for k, v in unbound["letter"].items() if k != "id"
        }
        assert [(h["action"], h["to_state"], h["reason"]) for h in bound["history"]] == [
            (h["action"], h["to_state"], h["reason"]) for h in unbound["history"]
        ]
        if typed_name:
            assert bound["applicant_name"] == unbound["applicant_name"] == typed_name
        else:
            assert re.fullmatch(r"未登记持卡人（3104\*+1234）", bound["applicant_name"])
            assert re.fullmatch(r"未登记持卡人（3104\*+6789）", unbound["applicant_name"])
        assert not leaks_qian(str(bound))

    def test_a_second_filing_says_only_what_b_already_filed(
        self, client: TestClient, parties: Parties
    ) -> None:
        first = file_by_card(client, parties, QIAN_CARD.card_no)
        again = client.post(
            TRANSFERS,
            json={"to_org_id": parties.world.committee_id, "card_no": QIAN_CARD.card_no},
            headers=parties.b_committee,
        )
        assert (again.status_code, again.json()["error"]) == (409, "transfer_already_pending")
        assert str(first["id"]) in again.json()["detail"]
        assert not leaks_qian(again.text)

    def test_filing_is_rate_limited_per_caller(self, client: TestClient, parties: Parties) -> None:
        body = {"to_org_id": parties.world.committee_id, "card_no": NEWCOMER_CARD.card_no}
        statuses = [
            client.post(TRANSFERS, json=body, headers=parties.b_committee).status_code for _ in range(31)
        ]
        assert statuses[0] == 201
        assert set(statuses[1:30]) == {409}  # already pending: each still counts
        limited = client.post(TRANSFERS, json=body, headers=parties.b_committee)
        assert (limited.status_code, limited.json()["error"]) == (429, "rate_limited")
        assert int(limited.headers["Retry-After"]) >= 1


class TestMembersOwnTap:
    def test_a_tap_confirms_but_does_not_release(
        self, client: TestClient, parties: Parties, world: World, clock: FakeClock
    ) -> None:
        filed = file_by_card(client, parties, QIAN_CARD.card_no)
        batch = {
            "envelopes": [
                world.keys.seal(world.payload(QIAN_CARD, at=NOW, mode=TapMode.TRANSFER_IN)).model_dump(
                    mode="json"
                )
            ]
        }
        tapped = client.post("/api/v1/taps", json=batch)
        assert tapped.status_code == 200, tapped.text
        assert tapped.json()["receipts"][0]["status"] == "accepted"

        seen = client.get(f"{TRANSFERS}/{filed['id']}", headers=parties.b_committee).json()
        assert seen["state"] == "awaiting_source"
        assert seen["member_confirmed_at"] is not None
        assert not leaks_qian(str(seen))
        assert act(client, filed["id"], parties.b_committee, "receive").status_code == 409
        outgoing = client.get(f"{TRANSFERS}/outgoing/{filed['id']}", headers=parties.a_branch).json()
        assert outgoing["member_confirmed_at"] is not None


def web_client(
    client: TestClient, engine: Engine, *, username: str, role: UserRole, org_id: int
) -> TestClient:
    """Another client of the same app, signed in as a new web user at ``org_id``."""
    password = f"{username}-pass-0001"
    with unit_of_work(engine) as session:
        add_user(
            session,
            username=username,
            display_name=username,
            password=password,
            role=role,
            org_id=org_id,
            now=NOW,
            caller=CLI_CALLER,
        )
    web = TestClient(client.app, base_url="http://testserver")
    page = web.get("/web/login")
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    signed_in = web.post(
        "/web/login",
        data={"username": username, "password": password, "csrf_token": match.group(1)},
        follow_redirects=False,
    )
    assert signed_in.status_code == 303, signed_in.text
    return web


def csrf(web: TestClient, url: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', web.get(url).text)
    assert match is not None
    return match.group(1)


class TestWebPages:
    def test_filing_on_the_form_then_releasing_on_the_outgoing_pages(
        self, client: TestClient, engine: Engine, parties: Parties
    ) -> None:
        b = web_client(
            client, engine, username="b-organiser", role=UserRole.ORGANISER, org_id=parties.world.committee_id
        )
        a_secretary = web_client(
            client, engine, username="a-secretary", role=UserRole.SECRETARY, org_id=parties.a.branch_id
        )
        a_organiser = web_client(
            client, engine, username="a-organiser", role=UserRole.ORGANISER, org_id=parties.a.committee_id
        )

        filed = b.post(
            "/web/transfers",
            data={
                "to_org_id": str(parties.world.committee_id),
                "card_no": QIAN_CARD.card_no,
                "csrf_token": csrf(b, "/web/transfers/new"),
            },
            follow_redirects=False,
        )
        assert filed.status_code == 303, filed.text
        detail_url = filed.headers["location"]
        transfer_id = int(detail_url.rsplit("/", 1)[1])
        page = b.get(detail_url)
        assert page.status_code == 200
        assert "待原组织同意转出或本人确认" in page.text
        assert not leaks_qian(page.text)

        listing = a_secretary.get("/web/transfers/outgoing")
        assert listing.status_code == 200
        assert "钱七" in listing.text
        assert a_secretary.get("/web/transfers").status_code == 200
        assert "1 件待本组织办理" in a_secretary.get("/web/transfers").text
        assert "有 1 件本组织党员的转出申请等待您同意或不同意转出" in a_secretary.get("/web/").text
        assert "转出申请等待" not in b.get("/web/").text
        outgoing_url = f"/web/transfers/outgoing/{transfer_id}"
        agreed = a_secretary.post(
            f"{outgoing_url}/decision",
            data={"action": "source_agree", "csrf_token": csrf(a_secretary, outgoing_url)},
            follow_redirects=False,
        )
        assert agreed.status_code == 303, agreed.text
        # A secretary may not release for the committee; the page offers nothing more.
        too_far = a_secretary.post(
            f"{outgoing_url}/decision",
            data={"action": "release", "csrf_token": csrf(a_secretary, outgoing_url)},
            follow_redirects=False,
        )
        assert too_far.status_code == 403
        assert not leaks_qian(b.get(detail_url).text)

        released = a_organiser.post(
            f"{outgoing_url}/decision",
            data={"action": "release", "csrf_token": csrf(a_organiser, outgoing_url)},
            follow_redirects=False,
        )
        assert released.status_code == 303, released.text
        after = b.get(detail_url)
        assert "钱七" in after.text
        assert "湖里第三党支部" in after.text
        # B's user cannot open A's half, not even by typing its address.
        assert b.get(outgoing_url).status_code == 404
        for web in (b, a_secretary, a_organiser):
            web.close()
