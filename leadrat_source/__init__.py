"""leadrat-source: the LeadRat CRM API into your warehouse with dlt, and lead scores back.

LeadRat CRM as a dlt source, the way dlt's verified sources are used:

    import dlt
    from leadrat_source import leadrat_source, raise_if_incomplete

    pipeline = dlt.pipeline("crm", destination="duckdb", dataset_name="crm")
    pipeline.run(leadrat_source())   # api_key from SOURCES__LEADRAT__API_KEY or secrets.toml
    raise_if_incomplete(pipeline)    # a run the quota cut short fails your job

The names are imported on first use, so the sandbox and the CLI's light commands do not
pay for importing dlt.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    #: The installed distribution's version: one number for `leadrat --version`, the
    #: User-Agent and the wheel, set only in pyproject.toml.
    __version__ = version("leadrat-source")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"

if TYPE_CHECKING:
    from leadrat_source.errors import LoadIncomplete, QuotaExhausted
    from leadrat_source.run_report import UnreadPart, raise_if_incomplete, unread_parts
    from leadrat_source.source import leadrat_source

__all__ = [
    "LoadIncomplete",
    "QuotaExhausted",
    "UnreadPart",
    "leadrat_source",
    "raise_if_incomplete",
    "unread_parts",
]

_HOMES = {
    "leadrat_source": "leadrat_source.source",
    "raise_if_incomplete": "leadrat_source.run_report",
    "unread_parts": "leadrat_source.run_report",
    "UnreadPart": "leadrat_source.run_report",
    "LoadIncomplete": "leadrat_source.errors",
    "QuotaExhausted": "leadrat_source.errors",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'leadrat_source' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
