"""Flattening and typing of lead pages into Arrow tables."""

from __future__ import annotations

import datetime as dt
import itertools

import pyarrow as pa
import pytest

from leadrat_source.lead_scan import split_window
from leadrat_source.lead_tables import NO_TAGS_MARKER, LeadTableBuilder, lead_tags_table


def lead(lead_id: str, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "id": lead_id,
        "name": "Zoë Ølsen",
        "email": f"{lead_id}@example.com",
        "status": "new",
        "tags": [],
        "custom_fields": {},
        "created_at": "2026-04-17T08:30:00.123Z",
        "updated_at": "2026-04-17T08:30:00.123Z",
        "deleted_at": None,
    }
    base.update(fields)
    return base


def test_contract_fields_are_typed_and_timestamps_parsed() -> None:
    table = LeadTableBuilder().leads_table([lead("lead_1", score=42)])
    row = table.to_pylist()[0]
    assert table.schema.field("score").type == pa.float64()
    assert row["score"] == 42.0
    assert row["updated_at"] == dt.datetime(2026, 4, 17, 8, 30, 0, 123000, tzinfo=dt.UTC)
    assert row["deleted_at"] is None and row["phone"] is None
    assert "tags" not in table.column_names and "custom_fields" not in table.column_names


def test_custom_fields_and_unknown_fields_become_columns() -> None:
    table = LeadTableBuilder().leads_table(
        [
            lead("lead_1", custom_fields={"budget": 5000, "vip": True, "address": {"city": "Pune"}},
                 region="APAC"),
            lead("lead_2", custom_fields={"budget": 7000}),
        ]
    )
    rows = {row["id"]: row for row in table.to_pylist()}
    assert table.schema.field("custom_fields__budget").type == pa.int64()
    assert rows["lead_1"]["custom_fields__vip"] is True
    assert rows["lead_1"]["custom_fields__address"] == '{"city":"Pune"}'
    assert rows["lead_1"]["region"] == "APAC" and rows["lead_2"]["region"] is None
    assert rows["lead_2"]["custom_fields__budget"] == 7000


def test_a_value_that_does_not_fit_its_column_goes_to_a_variant_column() -> None:
    builder = LeadTableBuilder({"custom_fields__budget": "bigint"})
    table = builder.leads_table(
        [lead("lead_1", custom_fields={"budget": "a lot"}), lead("lead_2", custom_fields={"budget": 3})]
    )
    rows = {row["id"]: row for row in table.to_pylist()}
    assert rows["lead_1"]["custom_fields__budget"] is None
    assert rows["lead_1"]["custom_fields__budget__v_text"] == "a lot"
    assert rows["lead_2"]["custom_fields__budget"] == 3


def test_integers_widen_into_a_float_column_without_loss() -> None:
    builder = LeadTableBuilder()
    builder.leads_table([lead("lead_1", custom_fields={"ratio": 0.5})])
    table = builder.leads_table([lead("lead_2", custom_fields={"ratio": 2})])
    assert table.schema.field("custom_fields__ratio").type == pa.float64()
    assert table.column("custom_fields__ratio").to_pylist() == [2.0]


def test_a_contract_violation_in_a_fixed_field_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="'updated_at'"):
        LeadTableBuilder().leads_table([lead("lead_1", updated_at=17)])


def test_lead_tags_rows_and_the_marker_for_a_lead_without_tags() -> None:
    rows = lead_tags_table(
        [lead("lead_1", tags=["vip", "hot", "vip"]), lead("lead_2", tags=[])]
    ).to_pylist()
    for row in rows:
        assert row.pop("updated_at") == dt.datetime(2026, 4, 17, 8, 30, 0, 123000, tzinfo=dt.UTC)
    assert rows == [
        {"lead_id": "lead_1", "tag": "hot", NO_TAGS_MARKER: False},
        {"lead_id": "lead_1", "tag": "vip", NO_TAGS_MARKER: False},
        {"lead_id": "lead_2", "tag": "", NO_TAGS_MARKER: True},
    ]


def test_split_window_covers_the_window_without_overlap() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    end = dt.datetime(2026, 1, 2, 0, 0, 0, 7000, tzinfo=dt.UTC)
    slices = split_window(start, end, 7)
    assert slices[0][0] == start and slices[-1][1] == end
    assert all(a[1] == b[0] for a, b in itertools.pairwise(slices))
    assert all(a < b for a, b in slices) and len(slices) == 7


def test_booleans_never_turn_into_numbers_and_huge_integers_are_kept() -> None:
    table = LeadTableBuilder({"custom_fields__employees": "bigint"}).leads_table(
        [
            lead("lead_1", custom_fields={"employees": True}),
            lead("lead_2", custom_fields={"employees": 2**70}),
            lead("lead_3", custom_fields={"employees": 12}),
        ]
    )
    rows = {row["id"]: row for row in table.to_pylist()}
    assert rows["lead_1"]["custom_fields__employees"] is None
    assert rows["lead_1"]["custom_fields__employees__v_text"] == "true"
    assert rows["lead_2"]["custom_fields__employees__v_text"] == str(2**70)
    assert rows["lead_3"]["custom_fields__employees"] == 12
