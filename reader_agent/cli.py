"""``ecard agent``: enroll a kiosk, run it (with its local screen and heartbeats), rotate its key,
show its state.

Only typer is imported at module level; each command imports what it uses when it runs. Feedback
lines go to stdout (flushed at once, so a parent process sees each tap as it happens); logs go
to stderr. Exit codes: 0 done, 1 the command failed, 2 bad options or configuration.
"""

from __future__ import annotations

import enum
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    import httpx

    from reader_agent.config import AgentSettings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Kiosk reader agent.")

EXIT_FAILED = 1
EXIT_USAGE = 2


class ModeOption(enum.StrEnum):
    CHECKIN = "checkin"
    TRANSFER_IN = "transfer-in"
    ENROL = "enrol"
    MESSAGE = "message"


class BadReaderSpec(Exception):
    """The reader spec names a known backend but a target it cannot use."""


STATE_DIR_HELP = "Kiosk state directory (key, enrollment, outbox). Env: ECARD_AGENT_STATE_DIR."


@app.command()
def enroll(
    server: str = typer.Option(..., help="Server base URL, e.g. https://ecard.example.org"),
    code: str = typer.Option(..., help="One-time enrollment code from the administrator."),
    state_dir: Path | None = typer.Option(None, help=STATE_DIR_HELP),
) -> None:
    """Generate this kiosk's key and register it with the server."""
    from reader_agent.config import normalise_server_url
    from reader_agent.enrollment import EnrollmentError
    from reader_agent.enrollment import enroll as enroll_kiosk
    from reader_agent.outbox import OutboxError
    from reader_agent.signing import KeyFileError
    from reader_agent.state import StateDir, StateError

    settings = _settings(state_dir=state_dir)
    try:
        server_url = normalise_server_url(server)
    except ValueError as exc:
        _fail("bad_option", str(exc), EXIT_USAGE)
    state = StateDir(settings.state_dir)
    try:
        with _http_client(server_url, settings) as client:
            enrollment = enroll_kiosk(
                client, state=state, server_url=server_url, code=code, agent_version=_agent_version()
            )
    except (EnrollmentError, KeyFileError, StateError, OutboxError) as exc:
        _fail(exc.code, f"注册失败 (enrollment failed): {exc.message}")
    print(f"已注册 (enrolled): {enrollment.kiosk_name} @ {enrollment.venue_name}", flush=True)
    print(f"kiosk_id: {enrollment.kiosk_id}", flush=True)
    print(f"kid: {enrollment.kid}", flush=True)
    print(f"server: {enrollment.server_url}", flush=True)


@app.command()
def run(
    reader: str | None = typer.Option(
        None,
        help="Reader spec: pcsc[:name-substring], nfc:<path>, serial:<port>, scripted[:file]. Default pcsc.",
    ),
    state_dir: Path | None = typer.Option(None, help=STATE_DIR_HELP),
    server: str | None = typer.Option(
        None, help="Use this server URL instead of the one stored at enrollment."
    ),
    mode: ModeOption | None = typer.Option(
        None,
        help="What a tap means: checkin (default), transfer-in, enrol (bind the card a secretary "
        "is waiting for on the web; never attendance), or message (留言亭: the screen shows a "
        "one-time QR code for the member's phone).",
    ),
    json_output: bool = typer.Option(False, "--json", help="Print each feedback line as a JSON object."),
    screen_port: int | None = typer.Option(
        None,
        help="Serve the kiosk screen on http://127.0.0.1:PORT/ (default 8765; 0: no screen). "
        "Show it with: chromium --kiosk --app=http://127.0.0.1:8765/",
    ),
    heartbeat_interval: float | None = typer.Option(
        None, help="Seconds between signed heartbeats to the server (default 60; 0: none)."
    ),
) -> None:
    """Read cards, sign and store each tap, upload in the background; Ctrl-C or SIGTERM stops."""
    import contextlib
    import logging
    import signal
    import threading

    from reader_agent.agent import Agent
    from reader_agent.feedback import Feedback
    from reader_agent.heartbeat import HeartbeatSender, ReaderWatch
    from reader_agent.outbox import Outbox, OutboxError
    from reader_agent.readers import Reader, backend_module, open_reader
    from reader_agent.rotation import next_key_path, rotation_unfinished
    from reader_agent.screen import Connectivity, ScreenError, ScreenRefresher, ScreenServer, ScreenState
    from reader_agent.signing import KeyFileError, load_key_file
    from reader_agent.state import StateDir, StateError, load_enrollment, run_lock
    from reader_agent.uploader import Backoff, Uploader

    overrides: dict[str, Any] = {
        "state_dir": state_dir,
        "reader": reader,
        "server_url": server,
        "screen_port": screen_port,
        "heartbeat_interval_s": heartbeat_interval,
    }
    if mode is not None:
        overrides["mode"] = mode.value.replace("-", "_")
    if json_output:
        overrides["json_output"] = True
    settings = _settings(**overrides)
    try:
        backend_module(settings.reader)
    except ValueError as exc:
        _fail("bad_option", str(exc), 2)
    _configure_logging()
    log = logging.getLogger("reader_agent")

    state = StateDir(settings.state_dir)
    if rotation_unfinished(state):
        # The server may have retired the current key already: taps signed with it would be lost.
        _fail(
            "rotation_unfinished",
            f"a key rotation is unfinished ({next_key_path(state)} exists); "
            "run `ecard agent rotate-key` to finish it",
        )
    try:
        enrollment = load_enrollment(state)
        key = load_key_file(state.key_path)
    except (StateError, KeyFileError) as exc:
        _fail(exc.code, exc.message)
    if key.kid != enrollment.kid:
        _fail(
            "key_mismatch",
            f"the key in {state.key_path} ({key.kid}) is not the enrolled one ({enrollment.kid})",
        )
    if not state.outbox_path.exists():
        # Enrollment creates the outbox. Without it seq would restart at 1 and the server would
        # answer every new tap as a duplicate of an old one.
        _fail(
            "outbox_missing",
            f"the outbox {state.outbox_path} of this enrolled kiosk is gone; taps would reuse old seq "
            "numbers. Enroll again with a new enrollment code and a new --state-dir.",
        )
    server_url = settings.server_url or enrollment.server_url

    reader_watch = ReaderWatch()
    connectivity = Connectivity()
    screen_state = (
        ScreenState(
            kiosk_name=enrollment.kiosk_name,
            venue_name=enrollment.venue_name,
            mode=settings.mode,
            now=local_now,
        )
        if settings.screen_port
        else None
    )

    def emit(line: Feedback) -> None:
        # One write per line: with unbuffered output, print() writes the text and its newline
        # apart, and a log line from another thread can land between them on a shared pipe.
        sys.stdout.write((line.to_json() if settings.json_output else line.to_text()) + "\n")
        sys.stdout.flush()
        reader_watch.observe(line)
        if screen_state is not None:
            screen_state.observe(line)

    def open_configured_reader() -> Reader:
        try:
            return open_reader(settings.reader)
        except ValueError as exc:  # a target the backend cannot parse: retrying will not help
            raise BadReaderSpec(str(exc)) from exc

    stop = threading.Event()
    try:
        with (
            run_lock(state),
            Outbox.open(state.outbox_path) as outbox,
            _http_client(server_url, settings) as client,
            contextlib.ExitStack() as services,
        ):
            uploader = Uploader(
                client,
                outbox,
                now=local_now,
                batch_size=settings.upload_batch_size,
                retry=Backoff(settings.upload_retry_initial_s, settings.upload_retry_max_s),
                incompatible_retry_s=settings.upload_incompatible_retry_s,
                idle_recheck_s=settings.upload_idle_recheck_s,
                on_result=connectivity.upload_result,
            )
            if settings.heartbeat_interval_s > 0:
                heartbeat = HeartbeatSender(
                    client,
                    key,
                    kiosk_id=enrollment.kiosk_id,
                    mode=settings.mode,
                    agent_version=_agent_version(),
                    interval_s=settings.heartbeat_interval_s,
                    outbox_stats=outbox.stats,
                    reader_state=lambda: reader_watch.state,
                    reader_name=settings.reader,
                    now=local_now,
                    on_result=connectivity.heartbeat_result,
                )
                heartbeat.start()
                services.callback(heartbeat.stop)
            if screen_state is not None:
                screen = ScreenServer(screen_state, port=settings.screen_port)
                try:
                    screen.start()
                except ScreenError as exc:
                    # The screen is a convenience; taps must be recorded without it.
                    log.error("%s; running without the kiosk screen", exc.message)
                else:
                    services.callback(screen.stop)
                    refresher = ScreenRefresher(
                        screen_state, pending=outbox.pending_count, connectivity=connectivity
                    )
                    refresher.start()
                    services.callback(refresher.stop)
                    log.info("kiosk screen at %s", screen.url)
            agent = Agent(
                open_reader=open_configured_reader,
                outbox=outbox,
                uploader=uploader,
                sealer=key,
                kiosk_id=enrollment.kiosk_id,
                mode=settings.mode,
                emit=emit,
                now=local_now,
                poll_timeout_s=settings.poll_timeout_s,
                receipt_wait_s=settings.receipt_wait_s,
                reader_retry=Backoff(settings.reader_retry_initial_s, settings.reader_retry_max_s),
            )
            log.info(
                "kiosk %s (%s) mode=%s server=%s reader=%s pending=%d",
                enrollment.kiosk_id,
                enrollment.kiosk_name,
                settings.mode.value,
                server_url,
                settings.reader,
                outbox.pending_count(),
            )
            previous = {
                sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
            }
            uploader.start()
            try:
                agent.run(stop)
            except BadReaderSpec as exc:
                _fail("bad_reader_spec", str(exc), EXIT_USAGE)
            finally:
                uploader.stop()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    except (StateError, OutboxError) as exc:
        _fail(exc.code, exc.message)


@app.command("rotate-key")
def rotate_key(
    state_dir: Path | None = typer.Option(None, help=STATE_DIR_HELP),
    server: str | None = typer.Option(
        None, help="Use this server URL instead of the one stored at enrollment."
    ),
) -> None:
    """Replace this kiosk's key with a new one; stop the agent first. Taps already stored still upload."""
    from reader_agent.outbox import OutboxError
    from reader_agent.rotation import RotationError
    from reader_agent.rotation import rotate_key as rotate_kiosk_key
    from reader_agent.signing import KeyFileError
    from reader_agent.state import StateDir, StateError, load_enrollment, run_lock

    settings = _settings(state_dir=state_dir, server_url=server)
    state = StateDir(settings.state_dir)
    try:
        server_url = settings.server_url or load_enrollment(state).server_url
        with run_lock(state), _http_client(server_url, settings) as client:
            rotation = rotate_kiosk_key(client, state=state, now=local_now)
    except (RotationError, StateError, KeyFileError, OutboxError) as exc:
        _fail(exc.code, f"密钥轮换失败 (key rotation failed): {exc.message}")
    print(f"密钥已轮换 (key rotated): {rotation.previous_kid} -> {rotation.kid}", flush=True)
    print(f"taps up to seq {rotation.last_seq} stay signed by the previous key", flush=True)


@app.command()
def status(
    state_dir: Path | None = typer.Option(None, help=STATE_DIR_HELP),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Show the kiosk's identity, how many taps wait for upload, and the last seq used."""
    import json

    from reader_agent.outbox import Outbox, OutboxError, OutboxStats
    from reader_agent.state import StateDir, StateError, load_enrollment

    settings = _settings(state_dir=state_dir)
    state = StateDir(settings.state_dir)
    try:
        enrollment = load_enrollment(state)
        if state.outbox_path.exists():
            with Outbox.open(state.outbox_path) as outbox:
                stats = outbox.stats()
        else:
            stats = OutboxStats(pending=0, sent=0, last_seq=0, oldest_pending_at=None)
    except (StateError, OutboxError) as exc:
        _fail(exc.code, exc.message)
    facts: dict[str, Any] = {
        "kiosk_id": enrollment.kiosk_id,
        "kiosk_name": enrollment.kiosk_name,
        "venue_name": enrollment.venue_name,
        "server_url": enrollment.server_url,
        "kid": enrollment.kid,
        "pending": stats.pending,
        "sent": stats.sent,
        "last_seq": stats.last_seq,
        "oldest_pending_at": stats.oldest_pending_at.isoformat() if stats.oldest_pending_at else None,
        "quarantined": stats.quarantined,
        "oldest_quarantined_seq": stats.oldest_quarantined_seq,
    }
    if json_output:
        print(json.dumps(facts, ensure_ascii=False), flush=True)
    else:
        for name, value in facts.items():
            print(f"{name}: {'-' if value is None else value}", flush=True)


@app.command()
def requeue(
    state_dir: Path | None = typer.Option(None, help=STATE_DIR_HELP),
) -> None:
    """Put the taps the server kept refusing (quarantined) back in line for upload, once the cause
    is fixed (e.g. the server was upgraded, or the kiosk's clock corrected). Stop the agent first."""
    from reader_agent.outbox import Outbox, OutboxError
    from reader_agent.state import StateDir, StateError, run_lock

    settings = _settings(state_dir=state_dir)
    state = StateDir(settings.state_dir)
    try:
        with run_lock(state), Outbox.open(state.outbox_path) as outbox:
            set_aside = outbox.quarantined()
            requeued = outbox.requeue_quarantined()
    except (StateError, OutboxError) as exc:
        _fail(exc.code, exc.message)
    for seq, problem in set_aside:
        print(f"seq {seq}: {problem or '-'}", flush=True)
    print(f"已重新排队上传 {requeued} 条 (requeued {requeued} quarantined taps)", flush=True)


def local_now() -> datetime:
    """Kiosk wall-clock time with the local UTC offset (what a tap's ``occurred_at`` records)."""
    return datetime.now().astimezone()


def _settings(**overrides: Any) -> AgentSettings:
    """Build the settings once: CLI options (when given) over ``ECARD_AGENT_*`` over defaults."""
    from pydantic import ValidationError

    from reader_agent.config import AgentSettings

    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return AgentSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            "--state-dir (or ECARD_AGENT_STATE_DIR) is required"
            if error["type"] == "missing" and error["loc"] == ("state_dir",)
            else f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        _fail("bad_configuration", problems, EXIT_USAGE)


def _http_client(server_url: str, settings: AgentSettings) -> httpx.Client:
    import httpx

    return httpx.Client(
        base_url=server_url,
        timeout=httpx.Timeout(settings.http_timeout_s, connect=settings.http_connect_timeout_s),
        headers={"User-Agent": f"ecard-agent/{_agent_version()}"},
    )


def _agent_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ecard-checkin")
    except PackageNotFoundError:
        return "0+unknown"


def _configure_logging() -> None:
    import logging

    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # httpx logs every request at INFO; the uploader already reports what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _fail(code: str, message: str, exit_code: int = EXIT_FAILED) -> NoReturn:
    print(f"错误 (error) [{code}]: {message}", file=sys.stderr, flush=True)
    raise typer.Exit(exit_code)
