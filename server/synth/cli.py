"""``ecard admin synth``: a synthetic city-year for benchmarks and demos."""

from __future__ import annotations

from typing import Annotated

import typer

from server.cli_support import DbOption, JsonOption, Outcome, emit, load_settings, refusals_reported
from server.synth.scales import ScaleName


def synth_city(
    scale: Annotated[
        ScaleName, typer.Option("--scale", help="city: 15,000 organisations, 5 million taps; tiny: seconds.")
    ] = ScaleName.TINY,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, scale and year: the same data.")] = 1,
    year: Annotated[
        int | None, typer.Option("--year", help="The calendar year of the meetings; default last year.")
    ] = None,
    json_output: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Fill an EMPTY database with a synthetic city-year: organisations, members, cards, meetings, taps.

    For benchmarks and demos only; refuses a database that already has organisations (exit 1).
    """
    from server.clock import utc_now
    from server.config import load_secret_key
    from server.db import describe_url, make_engine
    from server.keyring import Keyring
    from server.migrate import migrate
    from server.roster.console import ProgressBars
    from server.synth.scales import SCALES
    from server.synth.service import build_city

    settings = load_settings(db, json_output)
    now = utc_now()
    with refusals_reported(json_output):
        keyring = Keyring(load_secret_key(settings))
        engine = make_engine(settings.database_url)
        try:
            migrate(engine)
            report = build_city(
                engine,
                keyring=keyring,
                scale=SCALES[scale],
                seed=seed,
                year=year or now.astimezone(settings.tz).year - 1,
                now=now,
                track=ProgressBars(min_items=2, unit="步"),
            )
        finally:
            engine.dispose()
    where = describe_url(settings.database_url)
    rows = report.rows
    text = (
        f"synthetic {report.scale} city, seed {report.seed}, year {report.year}, in {report.seconds:.0f} s: "
        f"{rows.get('organisation', 0)} organisations, {rows.get('member', 0)} members, "
        f"{rows.get('event', 0)} events, {rows.get('tap', 0)} taps → {where}"
    )
    emit(Outcome(report.as_dict() | {"database": where}, text), json_output)
