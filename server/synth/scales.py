"""How big a synthetic city is. Everything else (branch sizes, meeting habits, attendance) is drawn
from the same distributions at every scale, so a tiny city is a small sample of a big one."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ScaleName(StrEnum):
    CITY = "city"
    TOWN = "town"
    TINY = "tiny"


@dataclass(frozen=True)
class Scale:
    name: ScaleName
    committees: int  # 基层党委; about 37 organisations and 620 members hang under each
    expected: str  # what the scale yields, for --help and the report


SCALES: dict[ScaleName, Scale] = {
    ScaleName.CITY: Scale(
        ScaleName.CITY,
        committees=525,
        expected="about 15,000 organisations, 250,000 members, 570,000 events, 5 million taps",
    ),
    ScaleName.TOWN: Scale(
        ScaleName.TOWN,
        committees=20,
        expected="about 750 organisations, 12,000 members, 28,000 events, 250,000 taps",
    ),
    ScaleName.TINY: Scale(
        ScaleName.TINY,
        committees=1,
        expected="one 基层党委: a few dozen organisations, a few hundred members, a year of meetings",
    ),
}
