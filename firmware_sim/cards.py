"""Virtual contactless cards that answer APDUs like a Xiamen 易通卡 (docs/card-protocols.md §1, §7.1).

The same card objects sit behind every simulated stack: vpcd for PC/SC, the PN532 emulator for
nfcpy, and (UID only) the serial reader emulators.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

TUNION_AID = bytes.fromhex("A000000632010105")
PPSE = b"2PAY.SYS.DDF01"
XIAMEN_CITY_CODE = "3930"

SW_OK = b"\x90\x00"
SW_FILE_NOT_FOUND = b"\x6a\x82"
SW_RECORD_NOT_FOUND = b"\x6a\x83"
SW_WRONG_P1P2 = b"\x6a\x86"
SW_INS_NOT_SUPPORTED = b"\x6d\x00"
SW_CLA_NOT_SUPPORTED = b"\x6e\x00"
SW_FUNCTION_NOT_SUPPORTED = b"\x6a\x81"
SW_WRONG_LENGTH = b"\x67\x00"
SW_CONDITIONS_NOT_SATISFIED = b"\x69\x85"
SW_REFERENCED_DATA_NOT_FOUND = b"\x6a\x88"

# ATS: TL=0B, T0=78 (TA,TB,TC present, FSCI 8 = 256 bytes), TA=80, TB=90 (FWI 9), TC=02, 6 historical bytes.
DEFAULT_HISTORICAL = bytes.fromhex("8031805F7C0B")


def _tlv(tag: bytes, value: bytes) -> bytes:
    assert len(value) < 0x80
    return tag + bytes([len(value)]) + value


def wrong_le(expected: int) -> bytes:
    return bytes([0x6C, expected & 0xFF])


def respond(data: bytes, le: int | None) -> bytes:
    """R-APDU for *data* honouring Le: ``6C XX`` when a non-zero Le disagrees with the length."""
    if le is not None and le not in (0, len(data)) and len(data) <= 0xFF:
        return wrong_le(len(data))
    return data + SW_OK


@dataclass
class Apdu:
    cla: int
    ins: int
    p1: int
    p2: int
    data: bytes
    le: int | None

    @classmethod
    def parse(cls, raw: bytes) -> Apdu:
        """Short APDUs only (cases 1-4); raises ValueError for anything else."""
        if len(raw) < 4:
            raise ValueError("APDU shorter than 4 bytes")
        cla, ins, p1, p2 = raw[:4]
        body = raw[4:]
        if not body:
            return cls(cla, ins, p1, p2, b"", None)
        if len(body) == 1:
            return cls(cla, ins, p1, p2, b"", body[0])
        lc = body[0]
        if lc == 0 or len(body) not in (1 + lc, 2 + lc):
            raise ValueError("Lc does not match the APDU length")
        le = body[1 + lc] if len(body) == 2 + lc else None
        return cls(cla, ins, p1, p2, body[1 : 1 + lc], le)


@dataclass
class VirtualCard:
    """An ISO 14443-4 card with no applications: every application command answers 6A 82.

    Subclasses add applications. ``uid`` is the anti-collision UID; a UID starting 08 is random
    and changes on every activation when ``random_uid`` is set.
    """

    uid: bytes
    historical_bytes: bytes = DEFAULT_HISTORICAL
    atqa: bytes = b"\x00\x08"  # PN532 order (SENS_RES MSB first)
    sak: int = 0x28
    random_uid: bool = False
    apdu_log: list[bytes] = field(default_factory=list, repr=False)

    @property
    def uid_hex(self) -> str:
        return self.uid.hex().upper()

    def activate(self) -> None:
        """Called when the card enters a field (or is powered/reset): clears selection state."""
        if self.random_uid:
            self.uid = b"\x08" + os.urandom(3)
        self.reset()

    def reset(self) -> None:
        """Return to the MF: no application selected."""

    def ats(self) -> bytes:
        body = bytes([0x78, 0x80, 0x90, 0x02]) + self.historical_bytes
        return bytes([len(body) + 1]) + body

    def atr(self) -> bytes:
        """PC/SC Part 3 ATR of an ISO 14443-4 card: 3B 8n 80 01 <historical bytes> TCK."""
        hist = self.historical_bytes[:15]
        body = bytes([0x80 | len(hist), 0x80, 0x01]) + hist
        tck = 0
        for b in body:
            tck ^= b
        return b"\x3b" + body + bytes([tck])

    def process_apdu(self, raw: bytes) -> bytes:
        """Answer one C-APDU with an R-APDU (data + SW1 SW2). Never raises."""
        self.apdu_log.append(raw)
        try:
            apdu = Apdu.parse(raw)
        except ValueError:
            return SW_WRONG_LENGTH
        if apdu.cla == 0xFF:
            return self.pseudo_apdu(apdu)
        if apdu.cla & 0xF0 not in (0x00, 0x80):
            return SW_CLA_NOT_SUPPORTED
        return self.application_apdu(apdu)

    def pseudo_apdu(self, apdu: Apdu) -> bytes:
        """PC/SC reader pseudo-APDUs (CLA FF), which vpcd passes to the card unchanged."""
        if apdu.ins == 0xCA and apdu.p1 == 0x00 and apdu.p2 == 0x00:
            return respond(self.uid, apdu.le)
        if apdu.ins == 0xCA and apdu.p1 == 0x01 and apdu.p2 == 0x00:
            return respond(self.ats(), apdu.le)
        return SW_FUNCTION_NOT_SUPPORTED

    def application_apdu(self, apdu: Apdu) -> bytes:
        if apdu.ins in (0xA4, 0xB0, 0xB2, 0x5C, 0x84, 0x88):
            return SW_FILE_NOT_FOUND
        return SW_INS_NOT_SUPPORTED


@dataclass
class TUnionCard(VirtualCard):
    """A China T-Union (交通联合) 易通卡: PPSE, the T-Union ADF, EF15, EF17, EF18, balance.

    With an ``auth_key`` (see :func:`issued_card`) the card answers INTERNAL AUTHENTICATE
    ``00 88 00 <auth_key_id> 10 <16-byte challenge> 00`` inside the T-Union application with the
    16-byte SM4-CMAC of the challenge under that key. Without one it answers ``6D 00``, as a card
    (or a clone) without an issuer key does.
    """

    card_no: str = "3104390012345678901"
    city_code: str = XIAMEN_CITY_CODE
    balance_fen: int = 2755
    start_date: str = "20200101"
    expiry_date: str = "20391231"
    auth_key: bytes | None = field(default=None, repr=False)
    auth_key_id: int = 1
    _selected: str = field(default="mf", repr=False)

    def __post_init__(self) -> None:
        if len(self.card_no) != 19 or not self.card_no.isdigit():
            raise ValueError("a T-Union card number has 19 digits")
        if len(self.city_code) != 4:
            raise ValueError("a city code has 4 BCD digits")

    def reset(self) -> None:
        self._selected = "mf"

    def ef15(self) -> bytes:
        issuer = bytes.fromhex("0101") + bytes.fromhex(self.city_code) + b"\xff" * 4
        serial = bytes.fromhex("0" + self.card_no)
        return (
            issuer
            + b"\x02\x01"
            + serial
            + bytes.fromhex(self.start_date)
            + bytes.fromhex(self.expiry_date)
            + b"\x00\x00"
        )

    def ef17(self) -> bytes:
        """Management data: international code, province, city, interoperability flag, card type."""
        return (
            bytes.fromhex("00000156")
            + bytes.fromhex("3500")
            + bytes.fromhex(self.city_code)
            + b"\x00\x01\x01"
        ).ljust(60, b"\x00")

    def fci_ppse(self) -> bytes:
        entry = _tlv(b"\x4f", TUNION_AID) + _tlv(b"\x50", b"MOT_T_EP") + _tlv(b"\x87", b"\x01")
        return _tlv(b"\x6f", _tlv(b"\x84", PPSE) + _tlv(b"\xa5", _tlv(b"\xbf\x0c", _tlv(b"\x61", entry))))

    def fci_tunion(self) -> bytes:
        prop = _tlv(b"\x9f\x08", b"\x01") + _tlv(b"\x9f\x0c", self.ef15())
        return _tlv(b"\x6f", _tlv(b"\x84", TUNION_AID) + _tlv(b"\xa5", prop))

    def application_apdu(self, apdu: Apdu) -> bytes:
        if apdu.ins == 0xA4:
            return self._select(apdu)
        if apdu.ins == 0xB0:
            return self._read_binary(apdu)
        if apdu.ins == 0xB2:
            return self._read_record(apdu)
        if apdu.ins == 0x5C and apdu.cla == 0x80:
            return self._get_balance(apdu)
        if apdu.ins == 0x84:
            if apdu.le not in (4, 8):
                return SW_WRONG_LENGTH
            return os.urandom(apdu.le) + SW_OK
        if apdu.ins == 0x88 and self.auth_key is not None:
            return self._internal_authenticate(apdu)
        return SW_INS_NOT_SUPPORTED

    def _internal_authenticate(self, apdu: Apdu) -> bytes:
        from firmware_sim.issuer import internal_auth_mac

        assert self.auth_key is not None
        if self._selected != "tunion":
            return SW_CONDITIONS_NOT_SATISFIED
        if apdu.p1 != 0x00 or apdu.p2 != self.auth_key_id:
            return SW_REFERENCED_DATA_NOT_FOUND
        if len(apdu.data) != 16:
            return SW_WRONG_LENGTH
        return respond(internal_auth_mac(self.auth_key, apdu.data), apdu.le)

    def _select(self, apdu: Apdu) -> bytes:
        if apdu.p1 == 0x04:
            if apdu.data == PPSE:
                return respond(self.fci_ppse(), apdu.le)
            if apdu.data == TUNION_AID:
                self._selected = "tunion"
                return respond(self.fci_tunion(), apdu.le)
            return SW_FILE_NOT_FOUND
        if apdu.p1 == 0x00 and apdu.data in (b"\x3f\x00",):
            self._selected = "mf"
            return SW_OK
        return SW_FILE_NOT_FOUND

    def _read_binary(self, apdu: Apdu) -> bytes:
        if self._selected != "tunion" or not apdu.p1 & 0x80:
            return SW_FILE_NOT_FOUND
        files = {0x15: self.ef15(), 0x17: self.ef17()}
        data = files.get(apdu.p1 & 0x1F)
        if data is None:
            return SW_FILE_NOT_FOUND
        return respond(data[apdu.p2 :], apdu.le)

    def _read_record(self, apdu: Apdu) -> bytes:
        if self._selected != "tunion":
            return SW_FILE_NOT_FOUND
        sfi = apdu.p2 >> 3
        if sfi not in (0x18, 0x1E) or apdu.p2 & 0x07 != 0x04:
            return SW_FILE_NOT_FOUND
        return SW_RECORD_NOT_FOUND  # a fresh card has no transactions or trips

    def _get_balance(self, apdu: Apdu) -> bytes:
        if self._selected != "tunion":
            return b"\x69\x85"
        if apdu.p2 not in (0x01, 0x02) or apdu.p1 not in (0x00, 0x01, 0x02, 0x03):
            return SW_WRONG_P1P2
        value = self.balance_fen if apdu.p1 in (0x00, 0x03) else 0
        return respond(value.to_bytes(4, "big"), apdu.le)


# PC/SC Part 3 ATR of a MIFARE Classic 1K storage card (docs/card-protocols.md §2.2).
MIFARE_1K_ATR = bytes.fromhex("3B8F8001804F0CA000000306030001000000006A")


@dataclass
class UidOnlyCard(VirtualCard):
    """An M1-like card: only the UID is readable (no T-Union application)."""

    def atr(self) -> bytes:
        return MIFARE_1K_ATR


def uid_only_card(uid: bytes) -> VirtualCard:
    return UidOnlyCard(uid=uid, sak=0x20)


def xiamen_card(card_no: str, uid: bytes) -> TUnionCard:
    return TUnionCard(uid=uid, card_no=card_no)


def issued_card(card_no: str, uid: bytes, master_key: bytes, *, key_id: int = 1) -> TUnionCard:
    """A genuine card of the issuer holding *master_key*: it carries its diversified key."""
    from firmware_sim.issuer import card_key

    return TUnionCard(uid=uid, card_no=card_no, auth_key=card_key(master_key, card_no), auth_key_id=key_id)
