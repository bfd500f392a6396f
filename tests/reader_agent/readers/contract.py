"""The contract every reader backend passes, run through firmware_sim at the wire.

A backend's test module provides a ``rig`` fixture (a :class:`ReaderRig`) and subclasses
:class:`ReaderContract`. The rig drives the simulated hardware; the tests only use the public
:class:`~reader_agent.readers.Reader` interface, opened from the rig's spec string.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Protocol

import pytest

from firmware_sim.cards import TUnionCard, VirtualCard, uid_only_card
from reader_agent.readers import CardRead, Reader, ReaderDisconnected, ReaderUnavailable, open_reader
from schemas import CardApplication

# Generous: pcscd notices a vpcd card within ~0.4 s, nfcpy polls, serial readers stream.
PRESENT_TIMEOUT = 5.0


class ReaderRig(Protocol):
    """Simulated hardware behind one reader."""

    spec: str
    reads_card_applications: bool  # False for UID-only serial readers

    def present(self, card: VirtualCard) -> None:
        """Put *card* on the reader (it stays until :meth:`remove`)."""

    def remove(self) -> None:
        """Take the card away; returns once the reader could notice."""

    def unplug(self) -> None:
        """The reader disappears (cable pulled, port closed, daemon stopped)."""

    def replug(self) -> None:
        """The reader comes back."""


def poll_until_read(reader: Reader, deadline_s: float = PRESENT_TIMEOUT) -> CardRead:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        read = reader.poll(timeout=0.2)
        if read is not None:
            return read
    raise AssertionError(f"no card read within {deadline_s} s")


def poll_until_error(reader: Reader, deadline_s: float = PRESENT_TIMEOUT) -> None:
    """Poll until the reader raises (the caller expects it to); return quietly if it never does."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        reader.poll(timeout=0.2)


def assert_quiet(reader: Reader, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        read = reader.poll(timeout=0.2)
        assert read is None, f"unexpected extra read {read}"


def tunion(n: int) -> TUnionCard:
    return TUnionCard(uid=bytes([0xA1, 0xB2, 0xC3, n]), card_no=f"31043900{n:011d}")


class ReaderContract:
    @pytest.fixture
    def reader(self, rig: ReaderRig) -> Iterator[Reader]:
        reader = open_reader(rig.spec)
        try:
            yield reader
        finally:
            reader.close()

    def test_no_card_means_no_tap(self, reader: Reader) -> None:
        """Polling an empty reader returns None after the timeout."""
        assert reader.poll(timeout=0.3) is None

    def test_reads_a_tunion_card(self, rig: ReaderRig, reader: Reader) -> None:
        """A presented 易通卡 yields its UID and, where the reader can, its T-Union card number and city."""
        card = tunion(1)
        rig.present(card)
        read = poll_until_read(reader)
        rig.remove()
        assert read.reader_name == reader.name
        if rig.reads_card_applications:
            assert read.card.uid == card.uid_hex
            assert read.card.application is CardApplication.TUNION
            assert read.card.card_no == card.card_no
            assert read.card.city_code == "3930"
        else:
            assert read.card.application is CardApplication.UID_ONLY
            assert read.card.card_no is None
            assert card.uid_hex.endswith(read.card.uid[-6:])

    def test_uid_only_card_falls_back_to_uid(self, rig: ReaderRig, reader: Reader) -> None:
        """A card without the T-Union application is identified by its UID alone."""
        card = uid_only_card(bytes.fromhex("04A1B2C3"))
        rig.present(card)
        read = poll_until_read(reader)
        rig.remove()
        assert read.card.application is CardApplication.UID_ONLY
        assert read.card.card_no is None
        assert card.uid_hex.endswith(read.card.uid[-6:])

    def test_card_held_on_reader_counts_once(self, rig: ReaderRig, reader: Reader) -> None:
        """A card left on the reader is one presentation, however long it stays."""
        rig.present(tunion(2))
        poll_until_read(reader)
        assert_quiet(reader, 1.5)
        rig.remove()

    def test_card_presented_again_counts_again(self, rig: ReaderRig, reader: Reader) -> None:
        """Taking a card away and presenting it again is a second presentation."""
        card = tunion(3)
        rig.present(card)
        first = poll_until_read(reader)
        rig.remove()
        rig.present(card)
        second = poll_until_read(reader)
        rig.remove()
        assert first.card.uid == second.card.uid

    def test_two_cards_in_quick_succession_both_count(self, rig: ReaderRig, reader: Reader) -> None:
        """Two members tapping one right after the other are two taps, in order."""
        a, b = tunion(4), tunion(5)
        rig.present(a)
        first = poll_until_read(reader)
        rig.remove()
        rig.present(b)
        second = poll_until_read(reader)
        rig.remove()
        assert [first.card.uid[-2:], second.card.uid[-2:]] == [a.uid_hex[-2:], b.uid_hex[-2:]]

    def test_unplugged_reader_raises_and_reopens(self, rig: ReaderRig, reader: Reader) -> None:
        """An unplugged reader raises a ReaderError the agent understands; after replug it reads again."""
        rig.unplug()
        with pytest.raises((ReaderDisconnected, ReaderUnavailable)):
            poll_until_error(reader)
        reader.close()
        rig.replug()
        reopened = open_reader(rig.spec)
        try:
            rig.present(tunion(6))
            read = poll_until_read(reopened)
            rig.remove()
            assert read.card.uid.endswith("06")
        finally:
            reopened.close()

    def test_close_is_idempotent(self, reader: Reader) -> None:
        """Closing twice is harmless."""
        reader.close()
        reader.close()
