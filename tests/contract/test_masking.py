"""Kiosk, simulators and server mask a card the same way, so no two outputs together reveal more."""

from __future__ import annotations

import pytest

from reader_agent.feedback import mask_card
from schemas import CardApplication, CardFacts
from schemas.masking import mask_uid
from server.masking import mask_card_no as server_mask_card_no
from server.masking import mask_uid as server_mask_uid


@pytest.mark.parametrize("uid", ["A1B2C3D4", "04A1B2C3D4E5F6", "04A1B2C3D4E5F60718A9"])
def test_a_uid_is_masked_identically_everywhere(uid: str) -> None:
    """The kiosk's feedback line, logs (bytes) and the server's stored display form agree."""
    kiosk = mask_card(CardFacts(uid=uid, application=CardApplication.UID_ONLY))
    assert kiosk == server_mask_uid(uid) == mask_uid(bytes.fromhex(uid))
    assert uid[:4] not in kiosk  # the head never shows, anywhere


def test_a_card_number_is_masked_identically_everywhere() -> None:
    card = CardFacts(uid="A1B2C3D4", application=CardApplication.TUNION, card_no="3104390012345678901")
    assert mask_card(card) == server_mask_card_no("3104390012345678901") == "3104********8901"
