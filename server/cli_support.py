"""What every ``ecard admin`` verb shares: the --json/--db/--at/--reason options, the admin
context (settings, keyring, one unit of work, the time), and how outcomes, refusals and bad usage
are reported (one JSON object or one line; exit 0, 1 on a refusal, 2 on bad usage).

Only typer is imported here: the server stack loads when a command runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:
    from sqlmodel import Session

    from server.caller import Caller
    from server.config import ServerSettings
    from server.keyring import Keyring

JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a line of text.")]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Database URL; default ECARD_DATABASE_URL, else SQLite in ECARD_DATA_DIR."),
]
AtOption = Annotated[str | None, typer.Option("--at", help="When it takes effect (ISO 8601; default: now).")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (kept in the audit log).")]

EXIT_REFUSED = 1
EXIT_USAGE = 2


class CheckedArgsGroup(TyperGroup):
    """The group class of every command-line root (``typer.Typer(cls=CheckedArgsGroup)``): before
    any command parses them, each argument goes through :func:`server.inputs.check_text`; one with
    a refused character (NUL, a control character, bytes that are not UTF-8) exits 2 with
    ``invalid_text`` and a message naming its position (one JSON object with ``--json``)."""

    # ctx is typer's vendored click Context, which typer does not export by a public name.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        refuse_bad_arguments(args)
        return super().parse_args(ctx, args)


def refuse_bad_arguments(args: list[str]) -> None:
    from server.errors import InvalidText
    from server.inputs import REFUSED_CHARACTERS, check_text

    for index, arg in enumerate(args):
        label = f"第{index + 1}个命令行参数"
        if index and args[index - 1].startswith("-"):
            label += f"（{REFUSED_CHARACTERS.sub('?', args[index - 1])[:64]} 之后）"
        try:
            check_text(arg, field=f"argv[{index + 1}]", label=label)
        except InvalidText as exc:
            fail(exc.code, exc.message, "--json" in args, EXIT_USAGE)


@dataclass(frozen=True)
class AdminContext:
    """What a verb works with; ``caller`` is :data:`server.caller.CLI_CALLER` (unscoped: whoever
    runs ``ecard admin`` on the server already holds the database)."""

    session: Session
    keyring: Keyring
    settings: ServerSettings
    now: datetime
    caller: Caller


@dataclass(frozen=True)
class Outcome:
    """What a verb reports: the JSON object, and the line (or table) for people."""

    data: dict[str, Any]
    text: str


def effective_time(ctx: AdminContext, at: str | None) -> datetime:
    """The --at time, or now."""
    return parse_time(at, "--at", ctx.settings.tz) if at else ctx.now


def comma_list(text: str | None, parse: Callable[[str], Any], option: str) -> list[Any]:
    if not text:
        return []
    try:
        return [parse(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError as exc:
        raise typer.BadParameter(
            f"not a comma-separated list of valid values: {text!r}", param_hint=option
        ) from exc


def run_admin(action: Callable[[AdminContext], Outcome], *, db: str | None, json_output: bool) -> None:
    with refusals_reported(json_output), admin_context(db, json_output) as ctx:
        outcome = action(ctx)
    # Printed only after the commit: a script never sees an id that was rolled back.
    emit(outcome, json_output)


@contextmanager
def admin_context(db: str | None, json_output: bool) -> Iterator[AdminContext]:
    from server.caller import CLI_CALLER
    from server.clock import utc_now
    from server.config import load_secret_key
    from server.db import make_engine, unit_of_work
    from server.keyring import Keyring
    from server.migrate import migrate

    settings = load_settings(db, json_output)
    keyring = Keyring(load_secret_key(settings))
    engine = make_engine(settings.database_url)  # errors here are reported by refusals_reported
    try:
        migrate(engine)
        with unit_of_work(engine) as session:
            yield AdminContext(
                session=session, keyring=keyring, settings=settings, now=utc_now(), caller=CLI_CALLER
            )
    finally:
        engine.dispose()


@contextmanager
def refusals_reported(json_output: bool) -> Iterator[None]:
    """Turn domain refusals, configuration and database failures into messages and exit codes."""
    from sqlalchemy.exc import SQLAlchemyError

    from server.config import ConfigError
    from server.errors import DomainError

    try:
        yield
    except DomainError as exc:
        fail(exc.code, exc.message, json_output, EXIT_REFUSED)
    except ConfigError as exc:
        fail_usage(str(exc), json_output)
    except SQLAlchemyError as exc:
        # The driver's message names host and database but not the password.
        fail(
            "database_error",
            f"数据库错误: {exc.__class__.__name__}: {exc.args[0] if exc.args else exc}",
            json_output,
            EXIT_REFUSED,
        )


def load_settings(db: str | None, json_output: bool) -> ServerSettings:
    from pydantic import ValidationError

    from server.config import ServerSettings

    try:
        return ServerSettings(database_url=db) if db else ServerSettings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        fail_usage(f"invalid settings (ECARD_*): {problems}", json_output)


def parse_time(text: str, option: str, tz: tzinfo) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"not an ISO 8601 time: {text!r}", param_hint=option) from exc
    return value.replace(tzinfo=tz) if value.tzinfo is None else value


def iso(value: datetime, tz: tzinfo) -> str:
    return value.astimezone(tz).isoformat(timespec="seconds")


def emit(outcome: Outcome, json_output: bool) -> None:
    if json_output:
        typer.echo(json.dumps(outcome.data, ensure_ascii=False))
    else:
        typer.echo(outcome.text)


def fail(code: str, message: str, json_output: bool, exit_code: int) -> NoReturn:
    if json_output:
        typer.echo(json.dumps({"error": code, "detail": message}, ensure_ascii=False))
    else:
        typer.echo(f"错误 ({code}): {message}", err=True)
    raise typer.Exit(exit_code)


def fail_usage(message: str, json_output: bool) -> NoReturn:
    fail("invalid_configuration", message, json_output, EXIT_USAGE)
