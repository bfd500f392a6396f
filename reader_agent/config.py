"""Agent settings: built once by the CLI from its options and ``ECARD_AGENT_*`` variables, then passed down.

Command-line options win over environment variables, which win over the defaults here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas import MAX_BATCH_SIZE, TapMode


def normalise_server_url(url: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; raises ValueError otherwise."""
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")) or len(url.split("://", 1)[1]) == 0:
        raise ValueError(f"server URL must start with http:// or https://, got {url!r}")
    return url


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ECARD_AGENT_", frozen=True, extra="forbid")

    state_dir: Path = Field(description="Directory holding the kiosk key, enrollment record and outbox.")
    reader: str = Field(
        default="pcsc", description="Reader spec, e.g. pcsc, pcsc:ACR122, scripted:taps.jsonl."
    )
    server_url: str | None = Field(
        default=None, description="Overrides the server URL stored at enrollment (e.g. after a move)."
    )
    mode: TapMode = TapMode.CHECKIN
    json_output: bool = Field(default=False, description="Print feedback lines as JSON objects.")

    poll_timeout_s: float = Field(default=0.5, gt=0, description="How long one reader poll may block.")
    receipt_wait_s: float = Field(
        default=1.5,
        ge=0,
        description="How long a member waits for the server's answer before 'recorded offline'.",
    )
    http_timeout_s: float = Field(default=10.0, gt=0)
    http_connect_timeout_s: float = Field(default=3.0, gt=0)
    upload_batch_size: int = Field(default=MAX_BATCH_SIZE, ge=1, le=MAX_BATCH_SIZE)
    upload_retry_initial_s: float = Field(default=1.0, gt=0)
    upload_retry_max_s: float = Field(default=60.0, gt=0)
    # A whole batch refused with a 4xx means this agent and the server disagree about the
    # contract; retrying quickly cannot help and only floods the server's logs.
    upload_incompatible_retry_s: float = Field(default=600.0, gt=0)
    upload_idle_recheck_s: float = Field(default=30.0, gt=0)
    reader_retry_initial_s: float = Field(default=0.5, gt=0)
    reader_retry_max_s: float = Field(default=10.0, gt=0)
    heartbeat_interval_s: float = Field(
        default=60.0, ge=0, le=86400, description="Seconds between signed heartbeats; 0 sends none."
    )
    screen_port: int = Field(
        default=8765, ge=0, le=65535, description="Port of the kiosk screen on 127.0.0.1; 0 serves none."
    )

    @field_validator("server_url")
    @classmethod
    def _server_url_is_http(cls, value: str | None) -> str | None:
        return None if value is None else normalise_server_url(value)

    @model_validator(mode="after")
    def _caps_not_below_initial(self) -> AgentSettings:
        if self.upload_retry_max_s < self.upload_retry_initial_s:
            raise ValueError("upload_retry_max_s must be >= upload_retry_initial_s")
        if self.reader_retry_max_s < self.reader_retry_initial_s:
            raise ValueError("reader_retry_max_s must be >= reader_retry_initial_s")
        return self
