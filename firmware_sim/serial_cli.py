"""``ecard sim serial``: a serial UID reader on a pty, driven by typed commands or a script.

Start it, point the agent at the printed spec, then type ``tap 04A1B2C3``. ``help`` lists the
commands; the same commands, one per line (``#`` starts a comment), work from ``--script``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated

import typer

from firmware_sim.cards import uid_only_card
from firmware_sim.serial_reader import Fault, HexlineStyle, ReaderFormat, SerialReaderSim

serial_app = typer.Typer(help="A serial UID reader (RDM6300, hex line, Wiegand-26) on a pseudo-terminal.")

DEFAULT_HOLD_MS = 800

HELP = """commands:
  tap <uid-hex> [hold-ms]   put a card on the reader, hold it (default 800 ms), take it away
  present <uid-hex>         put a card on the reader and leave it there
  remove [mid-frame]        take the card away (mid-frame: while a frame is on the wire)
  fault <kind>...           spoil the next frames: bad_checksum, noise, truncated
  noise [hex]               write garbage now (random if no bytes given)
  pace <bytes> <ms> | pace off
                            dribble each frame in pieces, <ms> apart (a slow reader)
  unplug | replug           pull the reader out / plug it back in (same port path)
  sleep <ms>                wait (for scripts)
  status                    show the port and what is on the reader
  help | quit"""


class CommandError(Exception):
    """A command line the shell cannot run; the message says why."""


class SerialSimShell:
    """Runs text commands against a :class:`SerialReaderSim` (stdin, scripts, tests)."""

    def __init__(
        self, sim: SerialReaderSim, echo: Callable[[str], None], sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._sim = sim
        self._echo = echo
        self._sleep = sleep
        self._on_reader: str | None = None

    def run(self, lines: Iterable[str]) -> None:
        """Run commands until ``quit`` or the end of *lines*; a bad command is reported, not fatal."""
        for line in lines:
            try:
                if not self.run_line(line):
                    return
            except CommandError as exc:
                self._echo(f"error: {exc}")

    def run_line(self, line: str) -> bool:
        """Run one command; False when it was ``quit``."""
        words = line.split("#", 1)[0].split()
        if not words:
            return True
        command, args = words[0].lower(), words[1:]
        if command in ("quit", "exit"):
            return False
        handler = self._commands().get(command)
        if handler is None:
            raise CommandError(f"unknown command {command!r}; try 'help'")
        handler(args)
        return True

    def _commands(self) -> dict[str, Callable[[list[str]], None]]:
        return {
            "tap": self._tap,
            "present": self._present,
            "remove": self._remove,
            "fault": self._fault,
            "noise": self._noise,
            "pace": self._pace,
            "unplug": self._unplug,
            "replug": self._replug,
            "sleep": self._sleep_ms,
            "status": self._status,
            "help": lambda _: self._echo(HELP),
        }

    def _tap(self, args: list[str]) -> None:
        if len(args) not in (1, 2):
            raise CommandError("usage: tap <uid-hex> [hold-ms]")
        hold_ms = _number(args[1], "hold-ms") if len(args) == 2 else DEFAULT_HOLD_MS
        self._present(args[:1])
        self._sleep(hold_ms / 1000)
        self._remove([])

    def _present(self, args: list[str]) -> None:
        if len(args) != 1:
            raise CommandError("usage: present <uid-hex>")
        uid = _uid(args[0])
        try:
            self._sim.present(uid_only_card(uid))
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        # Even simulated UIDs are shown masked: demo output ends up in screenshots and tickets.
        self._on_reader = f"{len(uid)}-byte card …{uid[-1:].hex().upper()}"
        self._echo(f"card on the reader: {self._on_reader}")

    def _remove(self, args: list[str]) -> None:
        if args not in ([], ["mid-frame"]):
            raise CommandError("usage: remove [mid-frame]")
        self._sim.remove(mid_frame=bool(args))
        self._on_reader = None
        self._echo("card removed")

    def _fault(self, args: list[str]) -> None:
        try:
            faults = [Fault(arg.replace("-", "_")) for arg in args]
        except ValueError:
            raise CommandError(f"fault kinds: {', '.join(Fault)}") from None
        if not faults:
            raise CommandError(f"usage: fault <kind>...; kinds: {', '.join(Fault)}")
        self._sim.inject(*faults)
        self._echo(f"next {len(faults)} frame(s) spoiled: {', '.join(faults)}")

    def _noise(self, args: list[str]) -> None:
        try:
            data = bytes.fromhex("".join(args)) if args else None
        except ValueError:
            raise CommandError("usage: noise [hex bytes]") from None
        self._sim.send_noise(data)
        self._echo("noise sent")

    def _pace(self, args: list[str]) -> None:
        if args == ["off"]:
            self._sim.pace_writes(None)
            self._echo("frames written whole")
            return
        if len(args) != 2:
            raise CommandError("usage: pace <bytes> <ms> | pace off")
        chunk, delay_ms = _number(args[0], "bytes"), _number(args[1], "ms")
        if chunk < 1:
            raise CommandError("pace needs at least 1 byte per piece")
        self._sim.pace_writes(chunk, delay_ms / 1000)
        self._echo(f"frames written {chunk} byte(s) at a time, {delay_ms} ms apart")

    def _unplug(self, args: list[str]) -> None:
        self._no_args(args, "unplug")
        self._sim.unplug()
        self._echo("reader unplugged")

    def _replug(self, args: list[str]) -> None:
        self._no_args(args, "replug")
        self._sim.replug()
        self._echo(f"reader plugged in again at {self._sim.port}")

    def _sleep_ms(self, args: list[str]) -> None:
        if len(args) != 1:
            raise CommandError("usage: sleep <ms>")
        self._sleep(_number(args[0], "ms") / 1000)

    def _status(self, args: list[str]) -> None:
        self._no_args(args, "status")
        device = self._sim.device or "unplugged"
        card = self._on_reader or "none"
        self._echo(f"{self._sim.frame_format} reader at {self._sim.port} ({device}); card: {card}")

    @staticmethod
    def _no_args(args: list[str], command: str) -> None:
        if args:
            raise CommandError(f"{command} takes no arguments")


def _uid(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        raise CommandError(f"not a hex UID: {text!r}") from None


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise CommandError(f"{what} must be a whole number, not {text!r}")
    return int(text)


@serial_app.callback(invoke_without_command=True)
def serial_reader(
    frame_format: Annotated[ReaderFormat, typer.Option("--format", help="What the reader prints.")],
    repeat_ms: Annotated[
        int, typer.Option(help="Repeat a card's frame this often while it stays; 0 = once per card.")
    ] = 150,
    hexline_style: Annotated[
        HexlineStyle, typer.Option(help="hexline only: 04A1B2C3 or 'Card UID: 04 A1 B2 C3'.")
    ] = HexlineStyle.PLAIN,
    script: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Run these commands, then exit.")
    ] = None,
    link_dir: Annotated[
        Path | None,
        typer.Option(file_okay=False, help="Put the stable port symlink here (default: a temp dir)."),
    ] = None,
) -> None:
    """Emulate a serial UID reader on a pty and drive it from stdin (or --script)."""
    with SerialReaderSim(
        frame_format,
        repeat_interval=repeat_ms / 1000 if repeat_ms > 0 else None,
        hexline_style=hexline_style,
        link_dir=link_dir,
    ) as sim:
        typer.echo(f"{frame_format} reader on {sim.port} -> {sim.device}")
        typer.echo(f"reader spec: serial:{sim.port}?format={frame_format}")
        shell = SerialSimShell(sim, typer.echo)
        if script is not None:
            shell.run(script.read_text(encoding="utf-8").splitlines())
        else:
            typer.echo("type 'help' for commands")
            shell.run(sys.stdin)
