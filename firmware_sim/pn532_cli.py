"""``ecard sim pn532``: a simulated PN532 reader on a pty, driven from stdin or a script.

It prints where it serves, then takes one command per line::

    tap <card-no> <uid-hex>   put a T-Union 易通卡 (19-digit card number) on the reader
    uid <uid-hex>             put a card without the T-Union application on the reader
    remove                    take the card away
    sleep <seconds>           wait (for scripts)
    unplug / replug           pull the reader's cable / plug it back (same path)
    quit                      stop

A card stays on the reader until ``remove`` or the next ``tap``/``uid``, like a card laid down.
Blank lines and ``#`` comments are ignored.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

if TYPE_CHECKING:
    from firmware_sim.pn532 import Pn532Sim

pn532_app = typer.Typer(add_completion=False, help="Simulated PN532 reader (nfcpy pn532 driver) on a pty.")


class CommandError(ValueError):
    """A script line that is not a valid command."""


@dataclass(frozen=True, slots=True)
class SimCommand:
    verb: str
    args: tuple[str, ...] = ()


_ARITY = {"tap": 2, "uid": 1, "remove": 0, "sleep": 1, "unplug": 0, "replug": 0, "quit": 0}


def parse_command(line: str) -> SimCommand | None:
    """One script line → a command; ``None`` for blank lines and comments."""
    words = shlex.split(line, comments=True)
    if not words:
        return None
    verb, args = words[0].lower(), tuple(words[1:])
    arity = _ARITY.get(verb)
    if arity is None:
        raise CommandError(f"unknown command {verb!r}; commands: {', '.join(_ARITY)}")
    if len(args) != arity:
        raise CommandError(f"{verb} takes {arity} argument(s), got {len(args)}")
    if verb in ("tap", "uid"):
        _parse_uid(args[-1])
    if verb == "tap" and not (len(args[0]) == 19 and args[0].isdigit()):
        raise CommandError("a T-Union card number has 19 digits")
    if verb == "sleep":
        try:
            float(args[0])
        except ValueError as exc:
            raise CommandError(f"sleep needs seconds, got {args[0]!r}") from exc
    return SimCommand(verb, args)


def _parse_uid(text: str) -> bytes:
    try:
        uid = bytes.fromhex(text)
    except ValueError as exc:
        raise CommandError(f"a UID is hex, got {text!r}") from exc
    if len(uid) not in (4, 7, 10):
        raise CommandError("a UID has 4, 7 or 10 bytes")
    return uid


def run_commands(sim: Pn532Sim, lines: Iterable[str], out: TextIO) -> None:
    """Apply command lines to *sim* until ``quit`` or the end of *lines*; bad lines are reported."""
    from firmware_sim.cards import uid_only_card, xiamen_card
    from schemas.masking import mask_uid

    for line in lines:
        try:
            command = parse_command(line)
        except ValueError as exc:  # CommandError, or shlex on an unclosed quote
            print(f"error: {exc}", file=out, flush=True)
            continue
        if command is None:
            continue
        verb, args = command.verb, command.args
        if verb == "quit":
            return
        if verb == "tap":
            uid = _parse_uid(args[1])
            sim.present(xiamen_card(args[0], uid))
            print(f"card {mask_uid(uid)} on the reader (T-Union)", file=out, flush=True)
        elif verb == "uid":
            uid = _parse_uid(args[0])
            sim.present(uid_only_card(uid))
            print(f"card {mask_uid(uid)} on the reader (UID only)", file=out, flush=True)
        elif verb == "remove":
            sim.remove()
            print("card removed", file=out, flush=True)
        elif verb == "sleep":
            time.sleep(float(args[0]))
        elif verb == "unplug":
            sim.unplug()
            print("reader unplugged", file=out, flush=True)
        elif verb == "replug":
            sim.replug()
            print(f"reader plugged in again on {sim.pty_path}", file=out, flush=True)


@pn532_app.callback(invoke_without_command=True)
def serve(
    script: Annotated[
        Path | None,
        typer.Option(help="Run the commands in this file, then exit (default: read stdin).", exists=True),
    ] = None,
    link: Annotated[
        Path | None,
        typer.Option(
            help="Stable path (a symlink to the current pty). Default: /dev/pn532sim-<pid>-0 when /dev "
            "is writable, so nfcpy's own tty:<name>:pn532 finds it; else a temp directory."
        ),
    ] = None,
) -> None:
    """Serve a simulated PN532 on a pty; print its reader spec; take commands."""
    import os
    import signal

    from firmware_sim.pn532 import Pn532Sim, dev_link_path

    # A demo stops us with SIGTERM: leave through the with-block so the /dev link is removed.
    signal.signal(signal.SIGTERM, lambda _signo, _frame: sys.exit(0))
    if link is None and os.access("/dev", os.W_OK):
        link = dev_link_path()
    with Pn532Sim(link=link) as sim:
        out = sys.stdout
        print(f"pty: {sim.pty_path}", file=out)
        print(f"path: {sim.path}", file=out)
        print(f"spec: {sim.spec}", file=out, flush=True)
        try:
            if script is not None:
                run_commands(sim, script.read_text(encoding="utf-8").splitlines(), out)
            else:
                run_commands(sim, sys.stdin, out)
        except KeyboardInterrupt:
            pass
