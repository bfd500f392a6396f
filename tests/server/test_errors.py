"""The error catalogue: every code has an HTTP status and every rejection a Chinese message."""

from __future__ import annotations

import server.errors as errors
from server.taps.service import REJECTION_MESSAGES
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
