"""ScriptedReader: the in-process reader the agent tests and demos stand on."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from reader_agent.readers import (
    CardRead,
    CardReadError,
    CardTimeout,
    ReaderDisconnected,
    ReaderUnavailable,
    open_reader,
)
from reader_agent.readers.scripted import ScriptedReader, Wait
from schemas import CardApplication, CardFacts, ReaderBackend

CARD_NO = "3104390000000000001"
TUNION = CardFacts(uid="A1B2C3D4", application=CardApplication.TUNION, card_no=CARD_NO, city_code="3930")
UID_ONLY = CardFacts(uid="04A1B2C3D4E5F6", application=CardApplication.UID_ONLY)


def card_line(card: CardFacts) -> str:
    return json.dumps({"card": card.model_dump(mode="json", exclude_none=True)}) + "\n"


class TestScriptedReader:
    def test_plays_steps_in_order(self) -> None:
        """Each poll takes the next step: bare card facts become reads attributed to this reader."""
        explicit = CardRead(card=UID_ONLY, backend=ReaderBackend.PCSC, reader_name="ACS ACR122U")
        reader = ScriptedReader([TUNION, explicit], name="desk")
        first = reader.poll(0.1)
        assert first == CardRead(card=TUNION, backend=ReaderBackend.SCRIPTED, reader_name="desk")
        assert reader.poll(0.1) == explicit
        assert reader.poll(0.05) is None

    def test_raises_scripted_errors(self) -> None:
        """A ReaderError step is raised by the poll that reaches it; later steps still play."""
        reader = ScriptedReader([CardTimeout("card left"), TUNION])
        with pytest.raises(CardReadError) as excinfo:
            reader.poll(0.1)
        assert excinfo.value.code == "card_timeout"
        assert reader.poll(0.1) is not None

    def test_empty_poll_waits_out_its_timeout(self) -> None:
        """With nothing scripted, poll blocks for the timeout (not longer) and returns None."""
        reader = ScriptedReader()
        started = time.monotonic()
        assert reader.poll(0.2) is None
        assert 0.15 <= time.monotonic() - started < 1.0

    def test_wait_step_holds_back_the_next_card(self) -> None:
        """A Wait step makes polls return None until it has elapsed."""
        reader = ScriptedReader([Wait(0.3), TUNION])
        assert reader.poll(0.05) is None
        started = time.monotonic()
        read = None
        while read is None and time.monotonic() - started < 2:
            read = reader.poll(0.05)
        assert read is not None
        assert time.monotonic() - started >= 0.2

    def test_feed_wakes_a_blocked_poll(self) -> None:
        """A card fed from another thread is returned by a poll already waiting."""
        reader = ScriptedReader()
        timer = threading.Timer(0.1, reader.feed, args=(TUNION,))
        timer.start()
        started = time.monotonic()
        read = reader.poll(3.0)
        timer.join()
        assert read is not None
        assert time.monotonic() - started < 2.0

    def test_closed_reader_reports_disconnection(self) -> None:
        """Polling after close raises ReaderDisconnected; close is idempotent."""
        reader = ScriptedReader([TUNION])
        reader.close()
        reader.close()
        assert reader.closed
        with pytest.raises(ReaderDisconnected):
            reader.poll(0.1)


class TestOpenReader:
    def test_bare_spec_is_an_empty_reader(self) -> None:
        """``scripted`` opens through the registry as a reader with no cards."""
        reader = open_reader("scripted")
        try:
            assert reader.poll(0.05) is None
            assert reader.name == "scripted"
        finally:
            reader.close()

    def test_missing_script_file_is_unavailable(self, tmp_path: Path) -> None:
        """A script path that does not exist is like a reader that is not plugged in."""
        with pytest.raises(ReaderUnavailable):
            open_reader(f"scripted:{tmp_path / 'nope.jsonl'}")

    def test_follows_a_growing_file(self, tmp_path: Path) -> None:
        """Lines already in the file play first; lines appended later (even in pieces) play too."""
        script = tmp_path / "taps.jsonl"
        script.write_text("# a comment\n\n" + card_line(TUNION))
        reader = open_reader(f"scripted:{script}")
        try:
            first = reader.poll(0.5)
            assert first is not None
            assert first.card == TUNION
            assert first.reader_name == "scripted:taps.jsonl"
            line = card_line(UID_ONLY)
            with script.open("a") as fh:
                fh.write(line[:10])
                fh.flush()
                assert reader.poll(0.2) is None  # half a line is not a card yet
                fh.write(line[10:])
            second = reader.poll(1.0)
            assert second is not None
            assert second.card == UID_ONLY
        finally:
            reader.close()

    def test_bad_lines_are_read_errors_that_do_not_echo_the_line(self, tmp_path: Path) -> None:
        """A malformed line is a failed read naming its line number, never its (sensitive) content."""
        script = tmp_path / "taps.jsonl"
        script.write_text(
            '{"card": {"uid": "A1B2C3D4", "application": "tunion", "card_no": "31043900"}}\n'
            "not json " + CARD_NO + "\n"
            '{"error": "no_such_code"}\n' + card_line(TUNION)
        )
        reader = open_reader(f"scripted:{script}")
        try:
            for line_no in (1, 2, 3):
                with pytest.raises(CardReadError) as excinfo:
                    reader.poll(0.5)
                assert f"line {line_no}" in str(excinfo.value)
                assert "31043900" not in str(excinfo.value)
            assert reader.poll(0.5) is not None
        finally:
            reader.close()

    def test_reopening_resumes_after_consumed_lines(self, tmp_path: Path) -> None:
        """After a scripted disconnect, the reopened reader continues the script instead of replaying it."""
        script = tmp_path / "taps.jsonl"
        script.write_text(card_line(TUNION) + '{"error": "reader_disconnected"}\n' + card_line(UID_ONLY))
        reader = open_reader(f"scripted:{script}")
        assert reader.poll(0.5) is not None
        with pytest.raises(ReaderDisconnected):
            reader.poll(0.5)
        reader.close()
        reopened = open_reader(f"scripted:{script}")
        try:
            read = reopened.poll(0.5)
            assert read is not None
            assert read.card == UID_ONLY
            assert reopened.poll(0.1) is None
        finally:
            reopened.close()

    def test_wait_lines_pace_the_script(self, tmp_path: Path) -> None:
        """``{"wait": s}`` keeps the next card back for s seconds."""
        script = tmp_path / "taps.jsonl"
        script.write_text('{"wait": 0.3}\n' + card_line(TUNION))
        reader = open_reader(f"scripted:{script}")
        try:
            assert reader.poll(0.1) is None
            assert reader.poll(1.0) is not None
        finally:
            reader.close()
