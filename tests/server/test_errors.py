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


def test_every_domain_error_has_an_http_status() -> None:
    """Adding an error without a row in HTTP_STATUS fails here, not in production."""
    codes = {cls.code for cls in all_subclasses(errors.DomainError)}
    assert codes <= set(errors.HTTP_STATUS)


def test_codes_are_unique() -> None:
    classes = all_subclasses(errors.DomainError)
    assert len({cls.code for cls in classes}) == len(classes)


def test_every_rejection_code_has_a_kiosk_message() -> None:
    assert set(REJECTION_MESSAGES) == set(RejectionCode)
    assert all(REJECTION_MESSAGES.values())
