"""Tools a persona can enable by name, without writing any."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def current_time(timezone: str = "") -> str:
    """The current date and time. You do not know them yourself: call this whenever the user
    asks the time, the date, the day of the week, the month or the year.

    Args:
        timezone: an IANA zone such as Europe/Paris; empty for the server's own zone.
    """
    if timezone:
        try:
            now = datetime.now(ZoneInfo(timezone))
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {timezone!r}") from None
    else:
        now = datetime.now().astimezone()
    return now.strftime("%A %d %B %Y, %H:%M (%Z)")


# The questions current_time answers. A small model (the default 1.5B) does not call the
# tool itself (voxgate bench tools: 0 of 10), so the session calls it when the user's
# words ask this, and the model answers from the result. "What time do shops open?"
# asks for a habit, not the clock.
_DAYS = "monday|tuesday|wednesday|thursday|friday|saturday|sunday"
CURRENT_TIME_INTENT = re.compile(
    r"\b(time is it|(tell me|know|have|got|give me|what'?s|what is) the (time|date)\b"
    r"(?! (of|for|when|that|they|we|you|he|she)\b)"  # "the date of the concert": not today
    r"|the (time|date) (now|please)"
    r"|what time(?! do| does| did| will| should| can| would)"
    r"|(what|which)('s| is)?( the)? (date|day|hour|month|year)\b"
    r"|what('s| is) today|today'?s date|the date today|day of the week|know the date"
    r"|how late is it|is it late|(morning|afternoon|evening|night) (right )?now"
    r"|how long (until|till)"
    r"|is (it|today) (already )?(a |the )?(" + _DAYS + r"|weekend|weekday)"
    r"|weekend (yet|today))",
    re.IGNORECASE,
)
