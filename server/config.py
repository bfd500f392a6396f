"""Server settings (environment prefix ``ECARD_``) and the server secret.

Settings are built once by the CLI and handed to :func:`server.app.create_app`; nothing here runs
at import time.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from collections.abc import Callable
from datetime import date, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from server.db import DEFAULT_POOL_SIZE
from server.vocabulary import Cadence, CardCheckLevel

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "secret.key"
MIN_SECRET_LENGTH = 32

# Values people paste from tutorials; a key that is guessable makes every card HMAC reversible
# by brute force over the small space of card numbers, so refuse them outright.
_PLACEHOLDER_SECRETS = frozenset(
    {"changeme", "change-me", "change_me", "changethis", "secret", "secret-key", "password", "test", "dev"}
)


class ConfigError(Exception):
    """The configuration cannot be used; the message says what to fix."""


class RateLimits(BaseModel):
    """Requests a minute per source address, kiosk or caller (bursts up to the same); 0: no limit.

    Generous for honest use: a flash event of 1,000 taps through 10 kiosks behind one NAT stays
    far below them (kiosks send up to 200 taps a batch, a heartbeat a minute).
    """

    model_config = ConfigDict(extra="forbid")

    enroll_per_source: int = Field(default=10, ge=0, le=100_000)
    taps_per_source: int = Field(default=1200, ge=0, le=1_000_000)
    taps_per_kiosk: int = Field(default=240, ge=0, le=1_000_000)
    heartbeats_per_source: int = Field(default=600, ge=0, le=1_000_000)
    heartbeats_per_kiosk: int = Field(default=20, ge=0, le=100_000)
    transfers_per_source: int = Field(default=60, ge=0, le=100_000)
    transfers_per_caller: int = Field(default=30, ge=0, le=100_000)
    lookups_per_source: int = Field(default=120, ge=0, le=100_000)
    lookups_per_caller: int = Field(default=60, ge=0, le=100_000)
    max_keys: int = Field(default=20_000, ge=100, le=10_000_000, description="Buckets kept in memory.")


class PointsRules(BaseModel):
    """积分 and 星级 for a year (docs/supervision.md §积分): what each thing a member does is worth,
    and how an organisation's score (0–100) turns into stars. ``ECARD_POINTS_RULES`` as JSON."""

    model_config = ConfigDict(extra="forbid")

    core_meeting: int = Field(default=2, ge=0, le=100, description="三会一课 and 主题党日 attended.")
    review_meeting: int = Field(default=3, ge=0, le=100, description="组织生活会 or 民主评议 attended.")
    other_activity: int = Field(default=1, ge=0, le=100, description="Any other activity attended.")
    duty: int = Field(default=2, ge=0, le=100, description="主持人 or 记录人 of a meeting.")
    dues_month: int = Field(default=1, ge=0, le=100, description="A month's dues settled.")
    cadence_weight: int = Field(default=60, ge=0, le=100, description="Share of the score: 三会一课 held.")
    participation_weight: int = Field(default=20, ge=0, le=100, description="Members who took part.")
    dues_weight: int = Field(default=20, ge=0, le=100, description="Members without dues arrears.")
    star_thresholds: list[int] = Field(
        default_factory=lambda: [60, 70, 80, 90],
        min_length=4,
        max_length=4,
        description="Scores for ★★ … ★★★★★ (below the first: ★).",
    )


class ServerSettings(BaseSettings):
    # hide_input_in_errors: a rejected secret must not be echoed into logs or terminals.
    model_config = SettingsConfigDict(env_prefix="ECARD_", extra="ignore", hide_input_in_errors=True)

    data_dir: Path = Field(default=Path("./var"), description="Holds the SQLite file and secret.key.")
    database_url: str = Field(
        default="", description="SQLAlchemy URL; empty means sqlite:///<data_dir>/ecard.sqlite."
    )
    secret_key: SecretStr | None = Field(
        default=None, description="HMAC key for card identifiers and tokens; else <data_dir>/secret.key."
    )
    evidence_key: SecretStr | None = Field(
        default=None,
        description="AES-256 key (32 bytes, base64 or hex) sealing the signed bytes of taps; "
        "else <data_dir>/evidence.key. Kept apart from the database and its backups.",
    )
    enrollment_code_ttl: timedelta = Field(
        default=timedelta(hours=24),
        description="Lifetime of a kiosk enrollment code (seconds or ISO 8601, PT24H).",
    )
    max_clock_skew: timedelta = Field(
        default=timedelta(minutes=10), description="How far in the future a kiosk's tap time may be."
    )
    timezone: str = Field(default="Asia/Shanghai", description="For naive CLI times and for display.")
    unmatched_retention_days: int = Field(
        default=30,
        ge=1,
        le=3650,
        description="Days a tap outside every check-in window keeps its card digest before it is purged "
        "(unless a secretary assigns it to an event).",
    )
    worker_threads: int = Field(
        default=DEFAULT_POOL_SIZE,
        ge=1,
        le=200,
        description="Threads per server process that serve requests, and database connections per "
        "process on PostgreSQL (one each, so no request waits for a connection). Several processes "
        "together must stay below PostgreSQL's max_connections.",
    )
    ingest_workers: int = Field(
        default=1,
        ge=1,
        le=8,
        description="Threads per server process that decide tap uploads (server.taps.intake), each "
        "with its own database connection: uploads that arrive while they are busy are decided "
        "together in their next run. One merges the most; a second overlaps one run's database "
        "round trips with another's work (batches of 50: +10 %; single taps: -15 %, smaller runs).",
    )
    purge_interval_seconds: int = Field(
        default=24 * 3600,
        ge=1,
        le=7 * 24 * 3600,
        description="Seconds between the server's purges of expired unmatched taps; with several server "
        "processes on PostgreSQL one of them does each round.",
    )
    lecture_cadence: Cadence = Field(
        default=Cadence.QUARTERLY,
        description="How often a branch must hold a 党课 (monthly, quarterly, yearly): a local rule.",
    )
    min_card_check: CardCheckLevel = Field(
        default=CardCheckLevel.UID,
        description="Weakest card check a tap may pass with (uid, card-number, issuer-mac); "
        "taps below it are rejected as weak_card_check.",
    )
    issuer_url: str = Field(
        default="",
        description="Base URL of the card issuer's verification service; empty: issuer-mac is never reached.",
    )
    issuer_timeout: float = Field(
        default=2.0, gt=0, le=30, description="Seconds to wait for the issuer per card answer."
    )
    enrol_session_ttl: timedelta = Field(
        default=timedelta(minutes=5),
        description="How long a 刷卡绑定 request waits for the card to be tapped at a kiosk in enrol mode.",
    )
    booth_link_minutes: int = Field(
        default=5, ge=1, le=60, description="How long a 留言亭 link from a tap may wait to be opened."
    )
    booth_session_minutes: int = Field(
        default=15, ge=1, le=120, description="How long a member's 留言亭 page stays open once opened."
    )
    booth_links_per_card_per_day: int = Field(
        default=10, ge=1, le=1000, description="留言亭 links one card may get per day (message-mode taps)."
    )
    booth_messages_per_card_per_day: int = Field(
        default=3, ge=1, le=100, description="Messages one card's holder may leave per day."
    )
    booth_retention_days: int = Field(
        default=1095, ge=30, le=36500, description="Closed 留言亭 messages are purged this long after."
    )
    public_url: str = Field(
        default="",
        max_length=200,
        pattern=r"^(https?://[!-~]+)?$",
        description="The server's address as phones reach it (留言亭 links); empty: the address kiosks use.",
    )
    secure_cookies: bool | None = Field(
        default=None,
        description="Mark web sign-in cookies Secure; unset: only when the request came over HTTPS.",
    )
    transfer_sla_working_days: int = Field(
        default=5, ge=1, le=60, description="Working days a 组织关系转入 review step may take (then overdue)."
    )
    scheduler: bool = Field(
        default=True,
        description="Run the scheduled jobs (ecard admin jobs list) here; off: other processes run them.",
    )
    points_rules: PointsRules = Field(default_factory=PointsRules, description="积分 and 星级 (JSON).")
    escalate_after_working_days: int = Field(
        default=5,
        ge=1,
        le=60,
        description="Working days an unacknowledged reminder waits before the superior's 督办 queue.",
    )
    transfer_holidays: list[date] = Field(
        default_factory=list,
        description='Public holidays (not working days), JSON: ["2026-10-01", ...], from the yearly notice.',
    )
    transfer_makeup_workdays: list[date] = Field(
        default_factory=list, description="调休: weekend days that are working days, JSON like the holidays."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=1024 * 1024 * 1024,
        description="Largest request body, in bytes (file uploads such as the roster may be larger); "
        "bigger ones get 413 before they are read.",
    )
    rate_limits: RateLimits = Field(
        default_factory=RateLimits,
        description='Requests a minute, JSON: {"enroll_per_source": 10, "taps_per_kiosk": 240, ...}.',
    )
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description='Reverse proxies whose X-Forwarded-For is believed, JSON: ["127.0.0.1", "10.0.0.0/8"]; '
        "empty: the client address is always the direct peer.",
    )
    smtp_host: str = Field(
        default="", max_length=255, description="SMTP server for e-mail reminders; empty: e-mail is not sent."
    )
    smtp_port: int = Field(default=25, ge=1, le=65535, description="SMTP port (587: STARTTLS, 465: SMTPS).")
    smtp_from: str = Field(
        default="", max_length=255, description="Sender address of reminder e-mails (required with a host)."
    )
    smtp_user: str = Field(default="", max_length=255, description="SMTP sign-in name; empty: no sign-in.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password (never logged).")
    smtp_starttls: bool = Field(default=False, description="Upgrade the SMTP connection with STARTTLS.")
    smtp_ssl: bool = Field(default=False, description="Connect with TLS from the start (SMTPS, port 465).")
    smtp_timeout: float = Field(default=10.0, gt=0, le=120, description="Seconds per SMTP network step.")
    webhook_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds to wait for a group robot webhook to answer."
    )

    @field_validator("secret_key", "evidence_key", "smtp_password", mode="before")
    @classmethod
    def _blank_secret_means_unset(cls, value: object) -> object:
        # `ECARD_SECRET_KEY=` in an env file means "not set": fall back to the key file.
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("secret_key")
    @classmethod
    def _refuse_placeholder_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_secret(value.get_secret_value())
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _proxy_networks(cls, value: object) -> object:
        # Accept a bare address or a CIDR with host bits set (10.1.2.3/8 means 10.0.0.0/8).
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple):
            try:
                return [ip_network(str(item).strip(), strict=False) for item in value]
            except ValueError as exc:
                raise ValueError(f"not an IP address or network: {exc}") from exc
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value

    @field_validator("issuer_url")
    @classmethod
    def _http_issuer_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("the issuer URL must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _issuer_for_issuer_mac(self) -> ServerSettings:
        if self.min_card_check == CardCheckLevel.ISSUER_MAC and not self.issuer_url:
            raise ValueError("ECARD_MIN_CARD_CHECK=issuer-mac needs ECARD_ISSUER_URL (the card issuer)")
        return self

    @model_validator(mode="after")
    def _sender_for_smtp(self) -> ServerSettings:
        if self.smtp_host and "@" not in self.smtp_from:
            raise ValueError("ECARD_SMTP_HOST needs ECARD_SMTP_FROM (the sender address of reminder e-mails)")
        if self.smtp_ssl and self.smtp_starttls:
            raise ValueError("ECARD_SMTP_SSL and ECARD_SMTP_STARTTLS exclude each other")
        return self

    @model_validator(mode="after")
    def _resolve_database_url(self) -> ServerSettings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'ecard.sqlite'}"
        self.database_url = normalise_database_url(self.database_url)
        return self

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def unmatched_retention(self) -> timedelta:
        return timedelta(days=self.unmatched_retention_days)

    @property
    def purge_interval(self) -> timedelta:
        return timedelta(seconds=self.purge_interval_seconds)


def normalise_database_url(url: str) -> str:
    """Point bare PostgreSQL URLs at psycopg 3, the driver we ship (SQLAlchemy would pick psycopg2)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def check_secret(secret: str) -> None:
    """Raise ValueError for a secret that is short or an obvious placeholder."""
    stripped = secret.strip()
    if stripped.lower() in _PLACEHOLDER_SECRETS or len(set(stripped)) < 8:
        raise ValueError("the secret key is a placeholder; generate one with `openssl rand -base64 32`")
    if len(stripped) < MIN_SECRET_LENGTH:
        raise ValueError(f"the secret key must be at least {MIN_SECRET_LENGTH} characters")


def load_secret_key(settings: ServerSettings) -> bytes:
    """The server secret: ``ECARD_SECRET_KEY``, else ``<data_dir>/secret.key`` (created on first use).

    The admin CLI and the server both call this, so they derive the same card HMACs as long as
    they share the environment or the data directory.

    Raises:
        ConfigError: the key file is unreadable or holds a placeholder.
    """
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().strip().encode()
    path = settings.data_dir / SECRET_FILE_NAME
    text = read_key_file(path, what="server secret", new_key=lambda: secrets.token_urlsafe(32))
    if not text:
        raise ConfigError(f"{path} is empty; delete it to generate a new key, or restore it")
    try:
        check_secret(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return text.encode()


def read_key_file(path: Path, *, what: str, new_key: Callable[[], str]) -> str:
    """The stripped text of a private key file, created 0600 holding ``new_key()`` on first use.

    Used for ``secret.key`` and ``evidence.key``; warns when the file is readable by other users.

    Raises:
        ConfigError: the file cannot be created or read.
    """
    try:
        return _read_key_file(path, what=what)
    except FileNotFoundError:
        pass
    try:
        _create_key_file(path, new_key(), what=what)
    except OSError as exc:
        raise ConfigError(f"cannot create the {what} {path}: {exc}") from exc
    return _read_key_file(path, what=what)


def _create_key_file(path: Path, key: str, *, what: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write a private temp file, then link it into place: the link either creates the key with its
    # full content or fails because another process won the race, so nobody reads a half-written key.
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key + "\n")
        try:
            os.link(temp, path)
            log.info("created a new %s in %s", what, path)
        except FileExistsError:
            pass
    finally:
        temp.unlink(missing_ok=True)


def _read_key_file(path: Path, *, what: str) -> str:
    try:
        text = path.read_text().strip()
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {path}: {exc}") from exc
    if mode & 0o077:
        log.warning("%s is readable by other users (mode %o); chmod 600 it", path, mode)
    return text
