"""Built-in Verba: the current date and time, in any IANA time zone."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import Field

from app.verbas.base import VerbaError, VerbaResult, verba


def _zone(name: str | None) -> tuple[datetime, str]:
    if not name or not name.strip() or name.strip().lower() in ("local", "here"):
        now = datetime.now().astimezone()
        return now, now.tzname() or "local time"
    key = name.strip().replace(" ", "_")
    if key.upper() in ("UTC", "GMT", "Z"):
        return datetime.now(UTC), "UTC"
    try:
        return datetime.now(ZoneInfo(key)), key
    except (ZoneInfoNotFoundError, ValueError):
        pass
    # "tokyo" -> "Asia/Tokyo": match the last part of a known zone, case-insensitively.
    wanted = key.lower()
    for zone in sorted(available_timezones()):
        if zone.rsplit("/", 1)[-1].lower() == wanted:
            return datetime.now(ZoneInfo(zone)), zone
    raise VerbaError(f"unknown time zone {name!r} (use an IANA name such as Europe/Paris)")


@verba(id="clock", name="Clock",
       description="Tells the current date, time and weekday, in the local or a given time zone.",
       when_to_use="the user asks what time or date it is (anywhere), or the day of the week.",
       default_enabled=True)
def clock(timezone: Annotated[str | None, Field(
        description="IANA time zone such as Europe/Paris or a city such as Tokyo; "
                    "omit for local time", max_length=64)] = None) -> VerbaResult:
    """Current date and time."""
    now, label = _zone(timezone)
    text = f"It is {now:%A %d %B %Y, %H:%M} ({label}, UTC{now:%z})."
    return VerbaResult.success(text, {"iso": now.isoformat(timespec="seconds"), "zone": label,
                                      "weekday": now.strftime("%A")})
