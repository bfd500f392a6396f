"""``ecard sim issuer``: the simulated card issuer's verification service over HTTP.

It prints one line, ``issuer listening on http://HOST:PORT``, then serves until SIGTERM or
Ctrl-C. Point the server at it with ``ECARD_ISSUER_URL``. The master key comes from
``--master-key`` or, to keep it out of process listings, ``ECARD_SIM_ISSUER_MASTER_KEY``.
Cards personalised under the same master key answer its challenges (``firmware_sim.cards.issued_card``).

Also runnable as ``python -m firmware_sim.issuer_cli``.
"""

from __future__ import annotations

import contextlib
from typing import Annotated

import typer

issuer_app = typer.Typer(
    add_completion=False, help="Simulated card issuer: checks cards' answers to kiosk challenges."
)


def _master_key(text: str) -> bytes:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise typer.BadParameter("the master key is hex", param_hint="--master-key") from None
    if len(key) != 16:
        raise typer.BadParameter("the master key has 16 bytes (32 hex digits)", param_hint="--master-key")
    return key


@issuer_app.callback(invoke_without_command=True)
def serve(
    master_key: Annotated[
        str,
        typer.Option(
            "--master-key",
            envvar="ECARD_SIM_ISSUER_MASTER_KEY",
            help="SM4 issuer master key, 32 hex digits.",
            show_default=False,
        ),
    ],
    port: Annotated[int, typer.Option(help="TCP port; 0 picks a free one (see the ready line).")] = 0,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    key_id: Annotated[
        int, typer.Option(help="Key id the cards answer under (P2 of 00 88).", min=0, max=255)
    ] = 1,
) -> None:
    """Serve the simulated issuer until interrupted."""
    import signal
    import threading

    from firmware_sim.issuer import IssuerServer, SimIssuer

    key = _master_key(master_key)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _signo, _frame: stop.set())
    try:
        server = IssuerServer(SimIssuer(key, key_id=key_id), host=host, port=port)
    except OSError as exc:
        typer.echo(f"error: cannot listen on {host}:{port}: {exc.strerror}", err=True)
        raise typer.Exit(2) from exc
    with server:
        typer.echo(f"issuer listening on {server.url}")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    issuer_app()
