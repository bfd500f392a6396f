"""``ScriptedReader``: a typed, in-process reader that plays back a script of card presentations.

It implements the :class:`~reader_agent.readers.base.Reader` protocol for everything above the
reader seam (agent loop, uploader, demos). It does not simulate a wire: the real backends are
tested against ``firmware_sim`` instead.

=====================  ======================================================================
Spec                   Behaviour
=====================  ======================================================================
``scripted``           an empty reader: every poll waits out its timeout and returns None
``scripted:<path>``    follows a JSON-lines file like ``tail -f``: lines already in the file
                       play first, lines appended later play as they arrive
=====================  ======================================================================

A script line is one JSON object (blank lines and lines starting with ``#`` are skipped)::

    {"card": {"uid": "A1B2C3D4", "application": "tunion",
              "card_no": "3104390000000000001", "city_code": "3930"}}   (one line in the file)
    {"card": {"uid": "04A1B2C3D4E5F6", "application": "uid_only"}}
    {"wait": 1.5}                              no card for 1.5 s
    {"error": "reader_disconnected"}           raise that ReaderError (any code in the error tree)

A malformed line surfaces as :class:`CardReadError` (garbage from the "wire"), never as a
crash. Reopening ``scripted:<path>`` in the same process resumes after the last line the
previous reader consumed, as a real reader would not replay cards that were already read; so a
scripted ``reader_disconnected`` followed by the agent's reopen continues the script.

Capabilities: card applications yes (whatever the script says); removal: not modelled, every
script step is one presentation.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from reader_agent.readers.base import (
    CardRead,
    CardReadError,
    CardTimeout,
    ReaderDisconnected,
    ReaderError,
    ReaderUnavailable,
    UnsupportedCard,
)
from schemas import CardFacts, ReaderBackend

ERRORS_BY_CODE: dict[str, type[ReaderError]] = {
    cls.code: cls
    for cls in (
        ReaderError,
        ReaderUnavailable,
        ReaderDisconnected,
        CardReadError,
        CardTimeout,
        UnsupportedCard,
    )
}

FILE_POLL_INTERVAL_S = 0.05  # how often a followed file is checked for new lines


@dataclass(frozen=True, slots=True)
class Wait:
    """No card for *seconds*: polls in that time return None."""

    seconds: float


ScriptStep = CardRead | CardFacts | ReaderError | Wait
"""A card (bare facts are attributed to this reader), an error to raise, or a pause."""


class ScriptedReader:
    """Plays back :data:`ScriptStep` s, one per poll; more can be fed at any time, from any thread."""

    def __init__(self, steps: Iterable[ScriptStep] = (), *, name: str = "scripted") -> None:
        self._name = name
        self._steps: collections.deque[ScriptStep] = collections.deque(steps)
        self._changed = threading.Condition()
        self._resume_at = 0.0
        self._closed = False
        self._source: _JsonLinesSource | None = None

    @classmethod
    def follow(cls, path: Path) -> ScriptedReader:
        """A reader fed by the JSON-lines script at *path* (see the module docstring)."""
        reader = cls(name=f"scripted:{path.name}")
        reader._source = _JsonLinesSource.open(path)
        return reader

    @property
    def name(self) -> str:
        return self._name

    @property
    def closed(self) -> bool:
        return self._closed

    def feed(self, *steps: ScriptStep) -> None:
        with self._changed:
            self._steps.extend(steps)
            self._changed.notify_all()

    def poll(self, timeout: float) -> CardRead | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                if self._closed:
                    raise ReaderDisconnected(f"{self._name} is closed")
                now = time.monotonic()
                if now < self._resume_at:
                    if now >= deadline:
                        return None
                    self._changed.wait(min(self._resume_at, deadline) - now)
                    continue
                if not self._steps and self._source is not None:
                    from_file = self._source.next_step()
                    if from_file is not None:
                        self._steps.append(from_file)
                if self._steps:
                    step = self._steps.popleft()
                    if isinstance(step, Wait):
                        self._resume_at = now + step.seconds
                        continue
                    if isinstance(step, ReaderError):
                        raise step
                    if isinstance(step, CardFacts):
                        return CardRead(card=step, backend=ReaderBackend.SCRIPTED, reader_name=self._name)
                    return step
                if now >= deadline:
                    return None
                wait = deadline - now
                if self._source is not None:
                    wait = min(wait, FILE_POLL_INTERVAL_S)
                self._changed.wait(wait)

    def close(self) -> None:
        with self._changed:
            if self._closed:
                return
            self._closed = True
            if self._source is not None:
                self._source.close()
            self._changed.notify_all()


def open_reader(target: str) -> ScriptedReader:
    """``scripted`` -> an empty reader; ``scripted:<path>`` -> follow that JSON-lines file."""
    if not target:
        return ScriptedReader()
    return ScriptedReader.follow(Path(target))


# Where each followed file was left by its last reader in this process (see module docstring).
_resume_offsets: dict[Path, tuple[int, int]] = {}
_resume_lock = threading.Lock()


class _JsonLinesSource:
    """Reads a script file one line per step, remembering how far the steps were consumed."""

    def __init__(self, path: Path, fh: IO[bytes], offset: int, line_no: int) -> None:
        self._path = path
        self._fh = fh
        self._consumed_offset = offset
        self._line_no = line_no
        self._unparsed = b""  # read from the file, not yet turned into a step

    @classmethod
    def open(cls, path: Path) -> _JsonLinesSource:
        resolved = path.resolve()
        try:
            fh = resolved.open("rb")
        except OSError as exc:
            raise ReaderUnavailable(f"cannot open reader script {path}: {exc.strerror}") from exc
        with _resume_lock:
            offset, line_no = _resume_offsets.get(resolved, (0, 0))
        fh.seek(offset)
        return cls(resolved, fh, offset, line_no)

    def next_step(self) -> ScriptStep | None:
        """The step on the next complete line, or None until one has been written."""
        while True:
            newline = self._unparsed.find(b"\n")
            if newline < 0:
                try:
                    data = self._fh.read()
                except OSError as exc:
                    raise ReaderDisconnected(
                        f"cannot read reader script {self._path}: {exc.strerror}"
                    ) from exc
                if not data:
                    return None  # an incomplete last line waits for its newline
                self._unparsed += data
                continue
            raw, self._unparsed = self._unparsed[:newline], self._unparsed[newline + 1 :]
            self._line_no += 1
            self._consumed_offset += newline + 1
            with _resume_lock:
                _resume_offsets[self._path] = (self._consumed_offset, self._line_no)
            text = raw.decode("utf-8", errors="replace").strip()
            if text and not text.startswith("#"):
                return _parse_step(text, self._line_no)

    def close(self) -> None:
        self._fh.close()


def _parse_step(text: str, line_no: int) -> ScriptStep:
    # Messages name the line, never its content: the line may hold a card number.
    try:
        obj: Any = json.loads(text)
    except ValueError:
        return CardReadError(f"script line {line_no}: not JSON")
    if not isinstance(obj, dict):
        return CardReadError(f"script line {line_no}: not a JSON object")
    if "card" in obj:
        try:
            return CardFacts.model_validate(obj["card"])
        except ValidationError:
            return CardReadError(f"script line {line_no}: invalid card facts")
    if "error" in obj:
        error_class = ERRORS_BY_CODE.get(str(obj["error"]))
        if error_class is None:
            return CardReadError(f"script line {line_no}: unknown error code")
        return error_class(str(obj.get("message", f"scripted {error_class.code}")))
    if "wait" in obj:
        try:
            return Wait(max(0.0, float(obj["wait"])))
        except (TypeError, ValueError):
            return CardReadError(f"script line {line_no}: wait needs a number of seconds")
    return CardReadError(f"script line {line_no}: expected one of card, error, wait")
