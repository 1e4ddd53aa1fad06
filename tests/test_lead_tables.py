"""Flattening and typing of lead pages into Arrow tables."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import math
from typing import Any

import pyarrow as pa
import pytest
from dlt.common.normalizers.naming.snake_case import NamingConvention

from leadrat_source.custom_fields import CustomFieldLayout, CustomFieldsConfig
from leadrat_source.errors import ConfigurationError
from leadrat_source.lead_tables import NO_TAGS_MARKER, LeadTableBuilder, lead_tags_table
from leadrat_source.scan_slices import CUT_PROBES, Slicing, cut_at_max_leads, split_window


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


def test_fields_are_read_alike_whether_every_lead_has_them_or_one_lacks_one() -> None:
    full = [lead(f"lead_{n}", phone=f"+91 98{n}", company=f"Co {n}", source="web", score=n,
                 pipeline_id=None, stage_id=f"stage_{n}") for n in range(3)]
    lacking = [*full[:2], {key: value for key, value in full[2].items() if key != "phone"}]
    full_rows = LeadTableBuilder().leads_table(full).to_pylist()
    lacking_rows = LeadTableBuilder().leads_table(lacking).to_pylist()
    for rows in (full_rows, lacking_rows):
        assert [(row["id"], row["company"], row["score"], row["stage_id"]) for row in rows] == [
            (f"lead_{n}", f"Co {n}", float(n), f"stage_{n}") for n in range(3)]
    assert [row["phone"] for row in full_rows] == ["+91 980", "+91 981", "+91 982"]
    assert [row["phone"] for row in lacking_rows] == ["+91 980", "+91 981", None]


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
    builder = LeadTableBuilder({"custom_fields__budget": {"data_type": "bigint"}})
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


def test_a_cut_is_counted_into_place_where_leads_crowd_into_recent_months() -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    # 10,000 leads whose density grows with time, as a CRM's updates do
    times = [start + dt.timedelta(days=365 * math.sqrt(n / 10_000)) for n in range(10_000)]
    end = times[-1] + dt.timedelta(seconds=1)
    counted: list[tuple[dt.datetime, dt.datetime]] = []

    def count(since: dt.datetime, until: dt.datetime) -> int:
        counted.append((since, until))
        return bisect.bisect_left(times, until) - bisect.bisect_left(times, since)

    even = cut_at_max_leads(start, end, len(times), 1_000)
    cut = cut_at_max_leads(start, end, len(times), 1_000, count)
    assert even is not None and cut is not None
    assert bisect.bisect_left(times, even) < 400, "an even spread in time was assumed"
    assert 950 <= bisect.bisect_left(times, cut) <= 1_050
    assert len(counted) <= CUT_PROBES
    assert cut_at_max_leads(start, end, 900, 1_000, count) is None, "fewer leads: no cut"


def test_a_slice_much_fuller_than_it_was_cut_to_be_is_cut_again() -> None:
    """Leads are rarely spread evenly in time: a slice holding twice the pages it was cut
    to hold is cut again (read by one cursor it would end the scan alone, below the
    budget); one only somewhat fuller is not (each slice costs a partial page)."""
    slicing = Slicing(per_page=100, workers=8, pages_per_slice=10)
    start = (dt.datetime(2026, 1, 1, tzinfo=dt.UTC), "lead_1")
    end = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    window = slicing.split(start, end, total=40_000, max_leads=None)
    assert window is not None and len(window.slices) == 16 and window.pages_each == 25
    assert slicing.split(start, end, total=4_900, max_leads=None, pages_each=25) is None
    fuller = slicing.split(start, end, total=6_200, max_leads=None, pages_each=25)
    assert fuller is not None and len(fuller.slices) == 2 and fuller.pages_each == 31


def test_booleans_never_turn_into_numbers_and_huge_integers_are_kept() -> None:
    table = LeadTableBuilder({"custom_fields__employees": {"data_type": "bigint"}}).leads_table(
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


def wide_builder(max_columns: int, known: dict[str, dict[str, Any]] | None = None,
                 mode: str = "columns+overflow") -> LeadTableBuilder:
    config = CustomFieldsConfig(mode, max_columns=max_columns)
    layout = CustomFieldLayout(config, known or {}, NamingConvention().normalize_path, "duckdb")
    return LeadTableBuilder(known, layout)


def test_keys_past_the_budget_go_to_the_overflow_the_most_used_keep_columns() -> None:
    # 13 lead fields + 24 reserved leave 3 columns of a 40-column budget
    leads = [lead(f"lead_{n}", custom_fields={"common": n, "usual": n % 2 == 0, "often": "",
                                               **({"rare": [n]} if n == 0 else {}),
                                               f"own {n}": {"n": n}})
             for n in range(3)]
    builder = wide_builder(40)
    rows = builder.leads_table(leads).to_pylist()
    assert [name for name in rows[0] if name.startswith("custom_fields__")] == [
        "custom_fields__common", "custom_fields__usual", "custom_fields__often",
        "custom_fields__overflow"]
    assert [json.loads(row["custom_fields__overflow"]) for row in rows] == [
        {"rare": [0], "own 0": {"n": 0}}, {"own 1": {"n": 1}}, {"own 2": {"n": 2}}]
    assert builder.layout.crowded_out == {"rare", "own 0", "own 1", "own 2"}


def test_a_key_keeps_the_column_the_schema_gives_it_and_alike_names_do_not_share() -> None:
    known = {"custom_fields__budget_total": {"data_type": "double",
                                             "x-leadrat-custom-field": "Budget Total"}}
    builder = wide_builder(1_600, known)
    rows = builder.leads_table([lead("lead_1", custom_fields={
        "budget_total": 1.5, "Budget Total": 2.5, "overflow": True})]).to_pylist()
    assert rows[0]["custom_fields__budget_total"] == 2.5
    assert json.loads(rows[0]["custom_fields__overflow"]) == {"budget_total": 1.5,
                                                              "overflow": True}


def test_columns_mode_past_a_hard_limit_is_a_clear_error() -> None:
    config = CustomFieldsConfig("columns")
    layout = CustomFieldLayout(config, {}, NamingConvention().normalize_path, "postgres")
    leads = [lead("lead_1", custom_fields={f"k{n}": n for n in range(1_600)})]
    with pytest.raises(ConfigurationError, match="columns\\+overflow"):
        LeadTableBuilder(None, layout).leads_table(leads)


@pytest.mark.parametrize(("config", "destination", "budget"), [
    (CustomFieldsConfig(), "postgres", (1_600, True)),
    (CustomFieldsConfig(max_columns=5_000), "postgres", (1_600, True)),
    (CustomFieldsConfig(max_columns=500), "bigquery", (500, False)),
    (CustomFieldsConfig(), "duckdb", (1_600, False)),
    (CustomFieldsConfig("columns"), "duckdb", (None, False)),
])
def test_column_budget_per_warehouse(config: CustomFieldsConfig, destination: str,
                                     budget: tuple[int | None, bool]) -> None:
    assert config.budget(destination) == budget


@pytest.mark.parametrize(("settings", "message"), [
    (("column", None, None), "custom_fields must be one of"),
    (("json", ["budget"], None), "custom_field_columns .* needs custom_fields"),
    (("columns+overflow", None, 10), "leads_max_columns must be more than"),
])
def test_bad_custom_field_settings_are_clear_errors(
    settings: tuple[str, list[str] | None, int | None], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CustomFieldsConfig.from_settings(*settings)
