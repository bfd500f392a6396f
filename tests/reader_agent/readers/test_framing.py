"""The pure serial frame parsers and the presentation tracker: table-driven cases and properties."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.serial_reader import HexlineStyle, ReaderFormat, corrupt_frame, encode_frame
from reader_agent.readers.framing import (
    UID_LENGTHS,
    PresentationTracker,
    Rejection,
    SerialFormat,
    make_parser,
)

H = bytes.fromhex


def parse(frame_format: SerialFormat, data: bytes) -> list[bytes]:
    return make_parser(frame_format).feed(data)


def frame(frame_format: SerialFormat, uid: bytes, style: HexlineStyle = HexlineStyle.PLAIN) -> bytes:
    return encode_frame(ReaderFormat(frame_format.value), uid, hexline_style=style)


class TestRdm6300:
    @pytest.mark.parametrize(
        ("wire", "uids"),
        [
            # Forum sample from docs/card-protocols.md §5.1: 01^00^CD^A4^EC = 84.
            (b"\x020100CDA4EC84\x03", [H("0100CDA4EC")]),
            (b"\x020100cda4ec84\x03", [H("0100CDA4EC")]),
            (b"\x020100CDA4EC84\x03\x020100CDA4EC84\x03", [H("0100CDA4EC"), H("0100CDA4EC")]),
            (b"\xff\x00junk\x03\x020100CDA4EC84\x03\r\n", [H("0100CDA4EC")]),
            (b"\x020100CD\x020100CDA4EC84\x03", [H("0100CDA4EC")]),  # truncated, then whole
        ],
    )
    def test_reads_valid_frames(self, wire: bytes, uids: list[bytes]) -> None:
        """Well-formed frames yield their 5 data bytes, whatever surrounds them."""
        assert parse(SerialFormat.RDM6300, wire) == uids

    @pytest.mark.parametrize(
        ("wire", "reason"),
        [
            (b"\x020100CDA4EC85\x03", Rejection.BAD_CHECKSUM),
            (b"\x020100CDA4EC84\x04", Rejection.MALFORMED),  # no ETX
            (b"\x020100CDA4EC8\x03", Rejection.MALFORMED),  # one digit short
            (b"\x020100CDXAEC84\x03", Rejection.MALFORMED),
            (b"\x020100CDA4EC84\r\n\x03", Rejection.MALFORMED),  # ID-12LA style: not supported
            (b"\x020100CD\x02", Rejection.TRUNCATED),
        ],
    )
    def test_drops_bad_frames(self, wire: bytes, reason: Rejection) -> None:
        """A damaged frame yields nothing and is counted by reason."""
        parser = make_parser(SerialFormat.RDM6300)
        assert parser.feed(wire) == []
        assert parser.rejected[reason] == 1

    def test_reset_forgets_partial_frame(self) -> None:
        """After a reconnect the half frame from before it cannot complete."""
        parser = make_parser(SerialFormat.RDM6300)
        assert parser.feed(b"\x020100CDA4") == []
        parser.reset()
        assert parser.feed(b"EC84\x03") == []


class TestHexLine:
    @pytest.mark.parametrize(
        ("wire", "uid"),
        [
            (b"04A1B2C3\r\n", "04A1B2C3"),
            (b"04a1b2c3\n", "04A1B2C3"),
            (b"Card UID: 04 A1 B2 C3\r\n", "04A1B2C3"),
            (b"uid=04:a1:b2:c3\r", "04A1B2C3"),
            (b"UID: 0x04A1B2C3  \r\n", "04A1B2C3"),
            (b"04-A1-B2-C3-D4-E5-F6\r\n", "04A1B2C3D4E5F6"),
            (b"04A1B2C3D4E5F6071829\r\n", "04A1B2C3D4E5F6071829"),
            (b"\xfe\x9fCard UID: 04 A1 B2 C3\r\n", "04A1B2C3"),  # noise glued in front
        ],
    )
    def test_reads_uid_lines(self, wire: bytes, uid: str) -> None:
        """The last token of a line is the UID, plain or separated, any case."""
        assert parse(SerialFormat.HEXLINE, wire) == [H(uid)]

    @pytest.mark.parametrize(
        "line",
        [
            b"04A1B2",  # 3 bytes
            b"04A1B2C3D4",  # 5 bytes
            b"04A1B2C3D",  # odd number of digits
            b"04 A1:B2 C3",  # mixed separators
            b"Tag AB 04 A1 B2 C3",  # label ending in a hex pair: ambiguous, refused
            b"CardUID04A1B2C3",  # 'D' glues onto the UID
            b"Scan PICC to see UID",
            b"04A1B2CG",  # garbled digit
        ],
    )
    def test_refuses_lines_without_a_clear_uid(self, line: bytes) -> None:
        """A line whose UID is not unambiguous yields nothing rather than a guess."""
        parser = make_parser(SerialFormat.HEXLINE)
        assert parser.feed(line + b"\r\n") == []
        assert parser.rejected[Rejection.MALFORMED] == 1

    def test_empty_lines_are_not_errors(self) -> None:
        """CR LF line ends and blank lines are framing, not rejections."""
        parser = make_parser(SerialFormat.HEXLINE)
        assert parser.feed(b"\r\n\r\n\n04A1B2C3\r\n\r\n") == [H("04A1B2C3")]
        assert not parser.rejected

    def test_overlong_garbage_is_skipped_to_the_line_end(self) -> None:
        """A runaway line is dropped whole, even if it happens to end like a UID."""
        parser = make_parser(SerialFormat.HEXLINE)
        assert parser.feed(b"A" * 200 + b"04A1B2C3\r\n" + b"0000AAAA\r\n") == [H("0000AAAA")]
        assert parser.rejected[Rejection.OVERLONG] == 1


class TestWiegand26:
    @pytest.mark.parametrize(
        ("wire", "uid"),
        [
            (b"A1B2C3\r", "A1B2C3"),
            (b"a1b2c3\r\n", "A1B2C3"),
            (b"\x80\xffA1B2C3\r", "A1B2C3"),
        ],
    )
    def test_reads_six_hex_digits(self, wire: bytes, uid: str) -> None:
        """Facility code and card number arrive as 3 bytes."""
        assert parse(SerialFormat.WIEGAND26, wire) == [H(uid)]

    @pytest.mark.parametrize("line", [b"0001217496", b"A1B2C", b"1A1B2C3", b"A1B2CG"])
    def test_refuses_other_lines(self, line: bytes) -> None:
        """Decimal converters, short or long numbers are rejected, not misread."""
        parser = make_parser(SerialFormat.WIEGAND26)
        assert parser.feed(line + b"\r") == []
        assert parser.rejected[Rejection.MALFORMED] == 1


# -- properties over every format ------------------------------------------------------------

FORMATS = list(SerialFormat)


def uids_for(frame_format: SerialFormat) -> st.SearchStrategy[bytes]:
    return st.sampled_from(UID_LENGTHS[frame_format]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


def styles_for(frame_format: SerialFormat) -> st.SearchStrategy[HexlineStyle]:
    if frame_format is SerialFormat.HEXLINE:
        return st.sampled_from(list(HexlineStyle))
    return st.just(HexlineStyle.PLAIN)


def noise_for(frame_format: SerialFormat) -> st.SearchStrategy[bytes]:
    """Arbitrary bytes that do not themselves frame a UID.

    Line formats have no start marker, so noise ends with a line break there; a frame glued to
    the end of arbitrary garbage is the subject of its own test.
    """
    raw = st.binary(max_size=40)
    if frame_format is not SerialFormat.RDM6300:
        raw = raw.map(lambda noise: noise + b"\n")
    return raw.filter(lambda noise: parse(frame_format, noise) == [])


@st.composite
def stream(draw: st.DrawFn, frame_format: SerialFormat) -> tuple[bytes, list[bytes]]:
    """Valid frames interleaved with noise: (the bytes, the UIDs expected in order)."""
    uids = draw(st.lists(uids_for(frame_format), max_size=6))
    style = draw(styles_for(frame_format))
    wire = draw(noise_for(frame_format))
    for uid in uids:
        wire += frame(frame_format, uid, style) + draw(noise_for(frame_format))
    return wire, uids


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


@pytest.mark.parametrize("frame_format", FORMATS)
class TestFramingProperties:
    @given(data=st.data())
    def test_noise_and_frames_yield_exactly_the_frames(
        self, frame_format: SerialFormat, data: st.DataObject
    ) -> None:
        """Any interleaving of valid frames and noise yields exactly the valid UIDs, in order."""
        wire, uids = data.draw(stream(frame_format))
        assert parse(frame_format, wire) == uids

    @given(data=st.data())
    def test_chunking_does_not_matter(self, frame_format: SerialFormat, data: st.DataObject) -> None:
        """Splitting the byte stream anywhere yields the same frames and the same rejections."""
        wire, _ = data.draw(stream(frame_format))
        cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
        whole = make_parser(frame_format)
        expected = whole.feed(wire)
        parser = make_parser(frame_format)
        got = [uid for chunk in chunked(wire, cuts) for uid in parser.feed(chunk)]
        assert got == expected
        assert parser.rejected == whole.rejected

    @given(data=st.data())
    def test_corrupted_frames_are_dropped(self, frame_format: SerialFormat, data: st.DataObject) -> None:
        """Bad checksums (RDM6300) and garbled digits (line formats) drop that frame only."""
        items = data.draw(st.lists(st.tuples(uids_for(frame_format), st.booleans()), max_size=8))
        style = data.draw(styles_for(frame_format))
        wire = b"".join(
            corrupt_frame(ReaderFormat(frame_format.value), frame(frame_format, uid, style))
            if bad
            else frame(frame_format, uid, style)
            for uid, bad in items
        )
        parser = make_parser(frame_format)
        assert parser.feed(wire) == [uid for uid, bad in items if not bad]
        expected_reason = (
            Rejection.BAD_CHECKSUM if frame_format is SerialFormat.RDM6300 else Rejection.MALFORMED
        )
        assert parser.rejected[expected_reason] == sum(bad for _, bad in items)

    @given(data=st.data())
    def test_high_bit_garbage_glued_in_front_is_tolerated(
        self, frame_format: SerialFormat, data: st.DataObject
    ) -> None:
        """Line garbage (a baud glitch) directly before a frame does not cost that frame."""
        uid = data.draw(uids_for(frame_format))
        style = data.draw(styles_for(frame_format))
        garbage = data.draw(st.binary(max_size=20).map(lambda b: bytes(0x80 | x for x in b)))
        assert parse(frame_format, garbage + frame(frame_format, uid, style)) == [uid]


@given(uid=uids_for(SerialFormat.RDM6300), second=uids_for(SerialFormat.RDM6300), data=st.data())
def test_rdm6300_resyncs_after_a_truncated_frame(uid: bytes, second: bytes, data: st.DataObject) -> None:
    """A frame cut off anywhere (card pulled mid-frame) does not cost the next one."""
    first = frame(SerialFormat.RDM6300, uid)
    cut = data.draw(st.integers(1, len(first) - 1))
    assert parse(SerialFormat.RDM6300, first[:cut] + frame(SerialFormat.RDM6300, second)) == [second]


# -- presentations ---------------------------------------------------------------------------

A, B = H("04A1B2C3"), H("04D4E5F6")
GAP = 0.6


class TestPresentationTracker:
    @pytest.mark.parametrize(
        ("frames", "presentations"),
        [
            ([(A, 0.0), (A, 0.15), (A, 0.3), (A, 0.45)], [A]),  # card held: one
            ([(A, 0.0), (A, 0.6)], [A]),  # exactly the gap: still there
            ([(A, 0.0), (A, 0.61)], [A, A]),  # silence longer than the gap: new presentation
            ([(A, 0.0), (B, 0.05)], [A, B]),  # two members in quick succession
            ([(A, 0.0), (B, 0.1), (A, 0.2), (B, 0.3)], [A, B]),  # two cards on the reader at once
            ([(A, 0.0), (A, 0.5), (A, 1.0), (A, 1.5), (A, 2.0)], [A]),  # held long, frames keep coming
        ],
    )
    def test_repeated_frames_make_presentations(
        self, frames: list[tuple[bytes, float]], presentations: list[bytes]
    ) -> None:
        """Repeats within the gap are one presentation; new cards and returns after silence count."""
        tracker = PresentationTracker(GAP)
        assert [uid for uid, now in frames if tracker.observe(uid, now)] == presentations

    def test_cards_present_follows_silence(self) -> None:
        """Removal is inferred from silence longer than the gap."""
        tracker = PresentationTracker(GAP)
        tracker.observe(A, 10.0)
        assert tracker.cards_present(10.5) == {A}
        assert tracker.cards_present(10.7) == frozenset()

    def test_gap_must_be_positive(self) -> None:
        with pytest.raises(ValueError, match="positive"):
            PresentationTracker(0)

    @settings(max_examples=200)
    @given(
        presentations=st.lists(
            st.tuples(
                st.sampled_from([A, B]),
                st.lists(st.floats(0.0, GAP - 1e-6), max_size=8),  # repeat intervals (float-safe margin)
                st.floats(GAP + 0.001, 30.0),  # silence before the next presentation
            ),
            max_size=8,
        )
    )
    def test_first_frame_of_each_presentation_and_only_it_counts(
        self, presentations: list[tuple[bytes, list[float], float]]
    ) -> None:
        """One card at a time: True exactly on the first frame after a silence longer than the gap."""
        tracker = PresentationTracker(GAP)
        now = 100.0
        for uid, intervals, silence in presentations:
            assert tracker.observe(uid, now)
            for interval in intervals:
                now += interval
                assert not tracker.observe(uid, now)
            now += silence
