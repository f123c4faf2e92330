"""Times on HQ's command line: Unix seconds, ISO 8601, ``now`` or an offset like ``+30d``."""

from __future__ import annotations

import datetime as dt
import re
import time

_OFFSET = re.compile(r"([+-])(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_time(text: str, now: float | None = None) -> int:
    """Seconds since the epoch for ``text``.

    Raises:
        ValueError: the text is none of the accepted forms.
    """
    base = time.time() if now is None else now
    text = text.strip()
    if text == "now":
        return int(base)
    if text.isdigit():
        return int(text)
    m = _OFFSET.fullmatch(text)
    if m:
        delta = int(m.group(2)) * _UNIT[m.group(3)]
        return int(base + delta if m.group(1) == "+" else base - delta)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a time (Unix seconds, ISO 8601, now, +2h, -1d)") \
            from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as an operator means it
    return int(parsed.timestamp())
