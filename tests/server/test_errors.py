"""The error catalogue: every code has an HTTP status and every rejection a Chinese message."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

import server.errors as errors
from schemas.messages import BatchReceipt
from server.taps.intake import IntakeClosed, TapIntake
from server.taps.service import REJECTION_MESSAGES, Upload
from server.vocabulary import RejectionCode


def all_subclasses(cls: type[errors.DomainError]) -> set[type[errors.DomainError]]:
    found = set(cls.__subclasses__())
    for sub in list(found):
        found |= all_subclasses(sub)
    return found


# Every status a domain error may answer with; a typo or a 2xx/5xx in ``http_status`` fails here.
SANE_STATUSES = {400, 401, 403, 404, 409, 410, 413, 422, 429}


def test_every_domain_error_has_an_http_status() -> None:
    """Each class's ``http_status`` (its own or inherited) is a client-error status we use."""
    for cls in {errors.DomainError} | all_subclasses(errors.DomainError):
        assert isinstance(cls.http_status, int), cls
        assert cls.http_status in SANE_STATUSES, (cls, cls.http_status)


def test_status_follows_the_base_class() -> None:
    """The base classes imply their status; status_for reads the class attribute."""
    for base, status in [
        (errors.NotFound, 404),
        (errors.InvalidInput, 400),
        (errors.Conflict, 409),
        (errors.Forbidden, 403),
    ]:
        assert base.http_status == status
        assert errors.status_for(base()) == status
    assert errors.status_for(errors.TransferLevelForbidden()) == 403
    assert errors.status_for(errors.RosterTooLarge()) == 413
    assert errors.status_for(errors.BadSignature()) == 401


def test_codes_are_unique() -> None:
    classes = all_subclasses(errors.DomainError)
    assert len({cls.code for cls in classes}) == len(classes)


def test_every_rejection_code_has_a_kiosk_message() -> None:
    assert set(REJECTION_MESSAGES) == set(RejectionCode)
    assert all(REJECTION_MESSAGES.values())


UPLOAD = {"schema_version": 1, "envelopes": [{"kid": "k", "payload": "p", "sig": "s"}]}


class TestServiceUnavailable:
    """When the server, not the request, is the problem: 503 with Retry-After and a stable code,
    so a kiosk keeps its taps and sends them again (never a bare 500)."""

    def test_an_upload_during_shutdown(self, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
        async def closed(_intake: TapIntake, _upload: Upload) -> BatchReceipt:
            raise IntakeClosed("the server is shutting down")

        monkeypatch.setattr(TapIntake, "submit", closed)
        answer = client.post("/api/v1/taps", json=UPLOAD)

        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "5"
        assert answer.json() == {"error": "shutting_down", "detail": "服务暂时不可用，请稍后再试"}

    def test_a_database_out_of_reach_is_logged_without_the_statement(
        self, client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
    ) -> None:
        async def unreachable(_intake: TapIntake, _upload: Upload) -> BatchReceipt:
            cause = Exception("server closed the connection unexpectedly\n\tThis probably means…")
            raise OperationalError("INSERT INTO tap (card_no_hmac) VALUES (%s)", ("digest-of-a-card",), cause)

        monkeypatch.setattr(TapIntake, "submit", unreachable)
        answer = client.post("/api/v1/taps", json=UPLOAD)

        assert answer.status_code == 503
        assert answer.json()["error"] == "database_unavailable"
        assert "server closed the connection unexpectedly" in caplog.text
        assert "digest-of-a-card" not in caplog.text
        assert "INSERT" not in caplog.text
