"""Form tokens on both databases: two copies of one form sent at the same moment do the work once,
and the copy that lost answers with what the first one did (server.web.form_tokens)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine
from starlette.requests import Request

from server.caller import CLI_CALLER
from server.db import unit_of_work
from server.users.service import add_user
from server.vocabulary import UserRole
from server.web.form_tokens import RepeatedSubmission, claim_submission, note_redirect

TOKEN = "0f5e2c1a-7b3d-4e8f-9a6b-2c1d0e9f8a7b"


def form_post(path: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "POST",
            "scheme": "http",
            "server": ("testserver", 80),
            "path": path,
            "root_path": "",
            "query_string": b"",
            "headers": [],
        }
    )


def a_user(engine: Engine, now: datetime) -> int:
    with unit_of_work(engine) as session:
        user = add_user(
            session,
            username="tokens",
            display_name="表单测试",
            password="form-token-test-pass",
            role=UserRole.ADMIN,
            org_id=None,
            now=now,
            caller=CLI_CALLER,
        )
        assert user.id is not None
        return user.id


def test_two_copies_at_once_do_the_work_once(engine: Engine) -> None:
    now = datetime.now(UTC)
    user_id = a_user(engine, now)
    second_answer: list[RepeatedSubmission | BaseException | None] = []
    first_claimed = threading.Event()

    def second_copy() -> None:
        first_claimed.wait(10)
        try:
            with unit_of_work(engine) as session:
                claim_submission(session, form_post("/web/events"), user_id=user_id, token=TOKEN, now=now)
            second_answer.append(None)
        except BaseException as exc:  # handed to the test thread
            second_answer.append(exc)

    racer = threading.Thread(target=second_copy)
    racer.start()
    with unit_of_work(engine) as session:
        first = form_post("/web/events")
        claim_submission(session, first, user_id=user_id, token=TOKEN, now=now)
        first_claimed.set()
        time.sleep(0.3)  # the second copy is waiting on the unique index (or SQLite's writer turn)
        note_redirect(first, "/web/events/42", toast="已创建活动：一月支部党员大会", level="success")
    racer.join(15)

    (answer,) = second_answer
    assert isinstance(answer, RepeatedSubmission), answer
    assert answer.redirect_to == "/web/events/42"
    assert answer.toast == "已创建活动：一月支部党员大会"


def test_a_token_answers_only_for_its_own_form(engine: Engine) -> None:
    now = datetime.now(UTC)
    user_id = a_user(engine, now)
    with unit_of_work(engine) as session:
        first = form_post("/web/events")
        claim_submission(session, first, user_id=user_id, token=TOKEN, now=now)
        note_redirect(first, "/web/events/42", toast="已创建", level="success")
    with pytest.raises(RepeatedSubmission) as repeated, unit_of_work(engine) as session:
        claim_submission(session, form_post("/web/transfers"), user_id=user_id, token=TOKEN, now=now)
    assert repeated.value.redirect_to is None  # nothing done, and no jump to the other form's page
