"""A lead event as LeadRat sends it (CONTRACT.md, Webhooks), checked before it is journaled.

An event that does not parse, or whose type or shape the contract does not know, is
answered 400 and not stored: LeadRat then retries it for three days, which gives the
operator time to notice (the rejection counter, the log line with the reason) and to
upgrade the receiver, instead of a quiet dead-letter table nobody reads.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from leadrat_source.contract import WEBHOOK_EVENT_TYPES
from leadrat_source.timestamps import parse_timestamp


class InvalidEvent(Exception):
    """The body is signed but is not a LeadRat lead event; the message is a short reason."""


@dataclass(frozen=True)
class LeadEvent:
    id: str
    type: str
    created_at: str
    lead: dict[str, Any]
    #: the lead's `updated_at`: orders events of the same lead
    lead_updated_at: dt.datetime

    @property
    def lead_id(self) -> str:
        return str(self.lead["id"])

    @classmethod
    def parse(cls, body: bytes) -> LeadEvent:
        try:
            event = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidEvent("body is not valid JSON") from None
        if not isinstance(event, dict):
            raise InvalidEvent("body is not a JSON object")
        event_id, event_type = event.get("id"), event.get("type")
        if not isinstance(event_id, str) or not event_id:
            raise InvalidEvent("event has no id")
        if event_type not in WEBHOOK_EVENT_TYPES:
            raise InvalidEvent("unknown event type")
        data = event.get("data")
        lead = data.get("lead") if isinstance(data, dict) else None
        if not isinstance(lead, dict) or not isinstance(lead.get("id"), str):
            raise InvalidEvent("event has no data.lead with an id")
        created_at = event.get("created_at")
        try:
            lead_updated_at = parse_timestamp(lead["updated_at"])
            parse_timestamp(created_at)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            raise InvalidEvent("event or lead timestamp missing or not ISO 8601") from None
        return cls(event_id, event_type, str(created_at), lead, lead_updated_at)
