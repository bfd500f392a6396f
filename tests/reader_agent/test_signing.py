"""Kiosk key: signatures the server can verify, and a key file nobody else can read."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reader_agent.signing import KeyFileError, KioskKey, load_key_file, write_key_file
from schemas import CardApplication, CardFacts, ReaderBackend, ReaderInfo, TapPayload
from schemas.messages import b64url_decode, key_id

CST = timezone(timedelta(hours=8))


def payload(seq: int = 1) -> TapPayload:
    return TapPayload(
        kiosk_id="kiosk-1",
        seq=seq,
        occurred_at=datetime(2026, 7, 1, 9, 30, tzinfo=CST),
        card=CardFacts(uid="A1B2C3D4", application=CardApplication.TUNION, card_no="3104390000000000001"),
        reader=ReaderInfo(backend=ReaderBackend.SCRIPTED, name="scripted"),
    )


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that would make new files world-readable, to prove the key file does not rely on it."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


class TestKioskKey:
    def test_envelope_verifies_with_the_public_key(self) -> None:
        """The server can check a sealed tap with the raw public key sent at enrollment."""
        key = KioskKey.generate()
        envelope = key.seal(payload())
        public = Ed25519PublicKey.from_public_bytes(b64url_decode(key.public_key_b64url))
        public.verify(envelope.signature_bytes(), envelope.payload_bytes())
        assert envelope.payload_bytes() == payload().to_bytes()
        assert TapPayload.model_validate_json(envelope.payload_bytes()) == payload()

    def test_kid_names_the_public_key(self) -> None:
        """The envelope's kid is the contract's fingerprint of this kiosk's public key."""
        key = KioskKey.generate()
        assert key.seal(payload()).kid == key.kid == key_id(key.public_key_raw)

    def test_signature_does_not_cover_other_bytes(self) -> None:
        """A signature over one tap does not verify another."""
        key = KioskKey.generate()
        public = Ed25519PublicKey.from_public_bytes(key.public_key_raw)
        with pytest.raises(InvalidSignature):
            public.verify(key.seal(payload(1)).signature_bytes(), payload(2).to_bytes())

    def test_repr_shows_no_key_material(self) -> None:
        """Printing the key (in a log or traceback) shows only its kid."""
        key = KioskKey.generate()
        assert repr(key) == f"KioskKey(kid={key.kid!r})"


@pytest.mark.usefixtures("open_umask")
class TestKeyFile:
    def test_round_trip_with_mode_0600(self, tmp_path: Path) -> None:
        """A written key loads back as the same key, from a file only its owner can read."""
        key = KioskKey.generate()
        path = tmp_path / "kiosk_key.pem"
        write_key_file(path, key)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_key_file(path).public_key_raw == key.public_key_raw
        assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind

    def test_never_overwrites_an_existing_key(self, tmp_path: Path) -> None:
        """Writing a second key over the first fails and keeps the first."""
        path = tmp_path / "kiosk_key.pem"
        first = KioskKey.generate()
        write_key_file(path, first)
        with pytest.raises(KeyFileError) as excinfo:
            write_key_file(path, KioskKey.generate())
        assert excinfo.value.code == "key_file_exists"
        assert load_key_file(path).kid == first.kid

    def test_refuses_a_key_others_can_read(self, tmp_path: Path) -> None:
        """Like ssh, a group- or world-readable key is refused with a hint how to fix it."""
        path = tmp_path / "kiosk_key.pem"
        write_key_file(path, KioskKey.generate())
        path.chmod(0o644)
        with pytest.raises(KeyFileError) as excinfo:
            load_key_file(path)
        assert excinfo.value.code == "key_file_insecure"
        assert "chmod 600" in excinfo.value.message

    def test_missing_key(self, tmp_path: Path) -> None:
        """No key file points the operator at enrollment."""
        with pytest.raises(KeyFileError) as excinfo:
            load_key_file(tmp_path / "kiosk_key.pem")
        assert excinfo.value.code == "key_file_missing"
        assert "enroll" in excinfo.value.message

    def test_corrupt_key(self, tmp_path: Path) -> None:
        """A truncated PEM is reported as corrupt, not as a crash."""
        path = tmp_path / "kiosk_key.pem"
        path.write_bytes(KioskKey.generate().to_pem()[:40])
        path.chmod(0o600)
        with pytest.raises(KeyFileError) as excinfo:
            load_key_file(path)
        assert excinfo.value.code == "key_file_corrupt"

    def test_other_key_types_are_refused(self, tmp_path: Path) -> None:
        """An EC key in the key file's place cannot sign taps and is refused."""
        path = tmp_path / "kiosk_key.pem"
        other = ec.generate_private_key(ec.SECP256R1())
        path.write_bytes(
            other.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        path.chmod(0o600)
        with pytest.raises(KeyFileError) as excinfo:
            load_key_file(path)
        assert excinfo.value.code == "key_file_wrong_type"
