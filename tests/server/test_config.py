"""Settings and the server secret: defaults, URL normalising, the key file, placeholder refusal."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from pydantic import ValidationError

from server.config import ConfigError, ServerSettings, load_secret_key


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ECARD_DATABASE_URL", "ECARD_DATA_DIR", "ECARD_SECRET_KEY", "ECARD_TIMEZONE"):
        monkeypatch.delenv(name, raising=False)


class TestSettings:
    def test_default_database_is_sqlite_in_the_data_dir(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without ECARD_DATABASE_URL the server keeps a SQLite file in ECARD_DATA_DIR."""
        monkeypatch.setenv("ECARD_DATA_DIR", str(tmp_path))
        assert ServerSettings().database_url == f"sqlite:///{tmp_path}/ecard.sqlite"

    @pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
    def test_plain_postgres_urls_use_psycopg3(self, monkeypatch: pytest.MonkeyPatch, scheme: str) -> None:
        """Operators paste libpq URLs; we route them to the driver we ship."""
        monkeypatch.setenv("ECARD_DATABASE_URL", f"{scheme}://u:p@db:5432/ecard")
        assert ServerSettings().database_url == "postgresql+psycopg://u:p@db:5432/ecard"

    @pytest.mark.parametrize("secret", ["changeme", "secret", "x" * 40, "short-but-random-9f3"])
    def test_placeholder_or_short_secret_is_refused(
        self, monkeypatch: pytest.MonkeyPatch, secret: str
    ) -> None:
        """A guessable key would make card digests reversible, so settings refuse it."""
        monkeypatch.setenv("ECARD_SECRET_KEY", secret)
        with pytest.raises(ValidationError, match="secret key"):
            ServerSettings()

    def test_rejected_secret_is_not_echoed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The error names the problem, never the value (it may be a real, just short, key)."""
        monkeypatch.setenv("ECARD_SECRET_KEY", "almost-a-real-key-42")
        with pytest.raises(ValidationError) as excinfo:
            ServerSettings()
        assert "almost-a-real-key-42" not in str(excinfo.value)

    def test_blank_secret_means_unset(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ECARD_SECRET_KEY", "")
        assert ServerSettings().secret_key is None

    def test_unknown_timezone_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("ECARD_TIMEZONE", "Mars/Olympus")
        with pytest.raises(ValidationError, match="timezone"):
            ServerSettings()


class TestSecretKey:
    def test_created_once_private_and_reused(self, tmp_path: Path) -> None:
        """The first caller creates <data_dir>/secret.key (0600); later callers read the same key."""
        settings = ServerSettings(data_dir=tmp_path / "data")
        first = load_secret_key(settings)
        path = tmp_path / "data" / "secret.key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_secret_key(ServerSettings(data_dir=tmp_path / "data")) == first
        assert len(first) >= 32
        assert not [p for p in path.parent.iterdir() if p.name != "secret.key"]  # no temp files left

    def test_environment_key_wins_over_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        key = "env-secret-0123456789abcdefghijklmnopqrstuv"
        monkeypatch.setenv("ECARD_SECRET_KEY", key)
        assert load_secret_key(ServerSettings(data_dir=tmp_path)) == key.encode()
        assert not (tmp_path / "secret.key").exists()

    def test_placeholder_in_the_file_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "secret.key").write_text("changeme\n")
        os.chmod(tmp_path / "secret.key", 0o600)
        with pytest.raises(ConfigError, match="placeholder"):
            load_secret_key(ServerSettings(data_dir=tmp_path))

    def test_empty_file_is_refused(self, tmp_path: Path) -> None:
        (tmp_path / "secret.key").write_text("")
        with pytest.raises(ConfigError, match="empty"):
            load_secret_key(ServerSettings(data_dir=tmp_path))
