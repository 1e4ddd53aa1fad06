"""History mode (`history=true`): `leads` as SCD2, one version per change of the lead.

dlt's `scd2` strategy starts a new version of a record when its row version differs from
the active one. By default that is dlt's hash of the row as normalized, which for a lead
also covers the NULLs of columns that other leads in its batch brought (a new custom
field) and the columns the table happens to have: an unchanged lead re-read by the
lookback beside a lead with a new key would get a new, identical version. So the row
version is computed here from the lead alone, as LeadRat sent it: a new version exactly
when the lead's state in LeadRat changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pyarrow as pa
from dlt.common.schema.typing import TWriteDispositionConfig

#: dlt's scd2 `row_version_column_name`: a hash of the lead's own fields.
ROW_VERSION_COLUMN = "_leadrat_row_version"

HISTORY_DISPOSITION: TWriteDispositionConfig = {
    "disposition": "merge",
    "strategy": "scd2",
    "row_version_column_name": ROW_VERSION_COLUMN,
}


def row_version(lead: Mapping[str, Any]) -> str:
    """The same for the same lead state, whatever else is read with it: canonical JSON
    (sorted keys; tags are a set, so sorted too) hashed."""
    canonical = {**lead, "tags": sorted(lead.get("tags") or ())}
    text = orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)
    return hashlib.blake2b(text, digest_size=16).hexdigest()


def with_row_versions(table: pa.Table, leads: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The leads table of `leads` (same order) with their row versions."""
    versions = pa.array([row_version(lead) for lead in leads], pa.string())
    return table.append_column(pa.field(ROW_VERSION_COLUMN, pa.string(), nullable=False),
                               versions)
