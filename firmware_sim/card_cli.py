"""``ecard sim card …``: put a virtual 易通卡 on a vpcd reader slot, so pcscd sees a real card.

Exit codes: 0 done (for ``tap``: a reader read the card), 1 no reader read the card,
2 the slot is unusable (pcscd not running, slot busy) or an option is invalid.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from firmware_sim.cards import VirtualCard

DEFAULT_CARD_NO = "3104390012345678901"
DEFAULT_UID = "A1B2C3D4"

card_app = typer.Typer(no_args_is_help=True, help="A virtual 易通卡 on a vpcd (PC/SC) reader slot.")

CardNoOption = Annotated[str, typer.Option("--card-no", help="19-digit T-Union card number.")]
UidOption = Annotated[str, typer.Option("--uid", help="Anti-collision UID, 4-10 bytes of hex.")]
CityOption = Annotated[str, typer.Option("--city", help="GB/T 13497 city code (Xiamen 3930).")]
UidOnlyOption = Annotated[
    bool, typer.Option("--uid-only", help="A card without the T-Union application (UID only).")
]
PortOption = Annotated[
    int, typer.Option("--port", help="vpcd slot: 35963 = 'Virtual PCD 00 00', 35964 = '… 00 01'.")
]


def _build_card(card_no: str, uid: str, city: str, uid_only: bool) -> VirtualCard:
    from firmware_sim.cards import TUnionCard, uid_only_card

    try:
        uid_bytes = bytes.fromhex(uid)
    except ValueError:
        raise typer.BadParameter("the UID must be hex, e.g. A1B2C3D4", param_hint="--uid") from None
    if not 4 <= len(uid_bytes) <= 10:
        raise typer.BadParameter("the UID has 4 to 10 bytes", param_hint="--uid")
    if uid_only:
        return uid_only_card(uid_bytes)
    try:
        return TUnionCard(uid=uid_bytes, card_no=card_no, city_code=city.upper())
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--card-no/--city") from None


def _describe(card: VirtualCard) -> str:
    from firmware_sim.cards import TUnionCard
    from schemas.masking import mask_uid

    # Card identifiers are personal data: even the simulator only echoes their tails.
    label = f"UID {mask_uid(card.uid)}"
    if isinstance(card, TUnionCard):
        label += f", card no …{card.card_no[-4:]}"
    return label


@card_app.command()
def tap(
    card_no: CardNoOption = DEFAULT_CARD_NO,
    uid: UidOption = DEFAULT_UID,
    city: CityOption = "3930",
    uid_only: UidOnlyOption = False,
    port: PortOption = 35963,
    hold: Annotated[
        float, typer.Option("--hold", min=0.0, help="Seconds the card stays on the reader.")
    ] = 0.8,
    wait_read: Annotated[
        float, typer.Option("--wait-read", min=0.0, help="Extra seconds to stay until a reader has read it.")
    ] = 0.0,
) -> None:
    """Tap a card: put it on the reader, hold it, take it away."""
    from firmware_sim.vpcd import VpcdError, VpcdSlot

    card = _build_card(card_no, uid, city, uid_only)
    slot = VpcdSlot(port=port)
    try:
        read = slot.tap(card, hold=hold, wait_read=wait_read)
    except VpcdError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    if not read:
        typer.echo(f"tapped {_describe(card)} on port {port}, but no reader read it", err=True)
        raise typer.Exit(1)
    typer.echo(f"tapped {_describe(card)} on port {port}; a reader read it")


@card_app.command()
def insert(
    card_no: CardNoOption = DEFAULT_CARD_NO,
    uid: UidOption = DEFAULT_UID,
    city: CityOption = "3930",
    uid_only: UidOnlyOption = False,
    port: PortOption = 35963,
) -> None:
    """Put a card on the reader and leave it there until Ctrl-C."""
    from firmware_sim.vpcd import VpcdError, VpcdSlot

    card = _build_card(card_no, uid, city, uid_only)
    with VpcdSlot(port=port) as slot:
        try:
            slot.insert(card)
        except VpcdError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(f"{_describe(card)} is on the reader at port {port}; Ctrl-C takes it away")
        try:
            while slot.card is not None:
                time.sleep(0.2)
        except KeyboardInterrupt:
            slot.remove()
            typer.echo("card removed")
            return
    typer.echo("pcscd dropped the card (was it stopped?)", err=True)
    raise typer.Exit(2)
