"""The contract's timestamps as aware UTC datetimes.

Apart from the Arrow builder so that the CLI, the scan, the webhook receiver and the
tests can read a timestamp without importing pyarrow.
"""

from __future__ import annotations

import datetime as dt


def parse_timestamp(value: str | dt.datetime) -> dt.datetime:
    """Parse a contract timestamp (ISO 8601, `Z` or offset) into an aware UTC datetime."""
    if isinstance(value, dt.datetime):
        parsed = value
    else:
        parsed = dt.datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)
