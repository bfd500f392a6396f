"""What a kiosk keeps in its state directory, and the lock that lets only one agent use it.

Layout of ``--state-dir`` (created with mode 0700)::

    kiosk_key.pem      Ed25519 private key, mode 0600 (see reader_agent.signing)
    enrollment.json    who the server says this kiosk is (written once, at enrollment)
    outbox.sqlite3     signed taps and their receipts (plus -wal/-shm files; see reader_agent.outbox)
    agent.lock         held (flock) by the running agent
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

STATE_DIR_MODE = 0o700


class StateError(Exception):
    """The state directory is not in the shape a command needs."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class StateDir:
    root: Path

    @property
    def key_path(self) -> Path:
        return self.root / "kiosk_key.pem"

    @property
    def enrollment_path(self) -> Path:
        return self.root / "enrollment.json"

    @property
    def outbox_path(self) -> Path:
        return self.root / "outbox.sqlite3"

    @property
    def lock_path(self) -> Path:
        return self.root / "agent.lock"

    def create(self) -> None:
        """Create the directory if need be, and make it private to this user.

        The outbox in it holds raw card numbers, so an existing directory is tightened too.
        """
        try:
            self.root.mkdir(mode=STATE_DIR_MODE, parents=True, exist_ok=True)
            self.root.chmod(STATE_DIR_MODE)
        except OSError as exc:
            raise StateError(
                "state_dir_unusable", f"cannot create state directory {self.root}: {exc}"
            ) from exc


class Enrollment(BaseModel):
    """The kiosk's identity as granted by the server; taps carry ``kiosk_id`` and ``kid``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    server_url: str
    kiosk_id: str
    kid: str
    kiosk_name: str
    venue_name: str
    enrolled_at: AwareDatetime


def save_enrollment(state: StateDir, enrollment: Enrollment) -> None:
    """Write the record atomically: a crash leaves the old file or the new one, never half of one."""
    path = state.enrollment_path
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(enrollment.model_dump_json(indent=2) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def load_enrollment(state: StateDir) -> Enrollment:
    path = state.enrollment_path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise StateError(
            "not_enrolled", f"this kiosk is not enrolled ({path} missing); run `ecard agent enroll` first"
        ) from exc
    except OSError as exc:
        raise StateError("state_dir_unusable", f"cannot read {path}: {exc.strerror}") from exc
    try:
        return Enrollment.model_validate_json(text)
    except ValidationError as exc:
        raise StateError("enrollment_corrupt", f"{path} is not a valid enrollment record") from exc


@contextmanager
def run_lock(state: StateDir) -> Iterator[None]:
    """Hold the state directory exclusively while an agent runs.

    Two agents on one outbox would both upload the same taps and race for the reader; the kernel
    drops a flock when its process dies, so a crashed agent never leaves a stale lock behind.
    """
    fd = os.open(state.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StateError(
                "agent_already_running", f"another agent is already running with state directory {state.root}"
            ) from exc
        yield
    finally:
        os.close(fd)
