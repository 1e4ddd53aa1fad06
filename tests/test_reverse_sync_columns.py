"""Input column mapping: which columns are accepted, and what a row turns into."""

from __future__ import annotations

from decimal import Decimal

import pytest

from leadrat_source.errors import ConfigurationError
from leadrat_source.reverse_sync.columns import ColumnMap


def test_row_becomes_partial_update_tags_and_move() -> None:
    columns = ColumnMap.from_columns(
        ["LEAD_ID", "Score", "custom_fields__churnRisk", "tags_add", "pipeline_id", "stage_id",
         "_dlt_id"])
    change = columns.change_for({
        "LEAD_ID": "lead_1", "Score": Decimal(80), "custom_fields__churnRisk": 0.25,
        "tags_add": " hot,ml ,hot", "pipeline_id": "pipe_1", "stage_id": "stage_2",
        "_dlt_id": "x"})
    assert change.update == {"score": 80, "custom_fields": {"churnRisk": 0.25}}
    assert change.tags == ["hot", "ml"] and change.stage == ("pipe_1", "stage_2")
    same = columns.change_for({
        "LEAD_ID": "lead_1", "Score": 80.0, "custom_fields__churnRisk": 0.25,
        "tags_add": ["ml", "hot"], "pipeline_id": "pipe_1", "stage_id": "stage_2"})
    assert same.digest() == change.digest()  # NUMERIC 80 and DOUBLE 80.0 are one change


def test_nulls_are_left_alone_unless_asked_and_only_where_nullable() -> None:
    columns = ColumnMap.from_columns(["lead_id", "score", "status", "custom_fields__k"])
    row = {"lead_id": "lead_1", "score": None, "status": None, "custom_fields__k": None}
    assert columns.change_for(row).is_empty
    assert columns.change_for(row, null_clears=True).update == {
        "score": None, "custom_fields": {"k": None}}


@pytest.mark.parametrize(("names", "message"), [
    (["lead_id", "scroe"], "unknown input column.*'scroe'"),
    (["score"], "no 'lead_id' column"),
    (["lead_id", "stage_id"], "needs both 'pipeline_id' and 'stage_id'"),
    (["lead_id"], "nothing to push"),
])
def test_bad_columns_are_clear_errors(names: list[str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ColumnMap.from_columns(names)


def test_custom_fields_from_json_objects_and_columns_alike() -> None:
    columns = ColumnMap.from_columns(
        ["lead_id", "custom_fields__overflow", "CUSTOM_FIELDS", "custom_fields__tier"])
    change = columns.change_for({
        "lead_id": "lead_1",
        "custom_fields__overflow": '{"nps": 9, "ratio": 80.0, "note": "", "vip": true, '
                                   '"gone": null}',
        "CUSTOM_FIELDS": {"region": "APAC", "tier": "from the object"},
        "custom_fields__tier": "gold"})
    # types as the JSON has them; the key's own column wins; a JSON null is left alone
    assert change.update == {"custom_fields": {
        "nps": 9, "ratio": 80.0, "note": "", "vip": True, "region": "APAC", "tier": "gold"}}
    assert isinstance(change.update["custom_fields"]["ratio"], float)
    cleared = columns.change_for({"lead_id": "lead_1", "custom_fields__overflow": '{"gone": null}',
                                  "CUSTOM_FIELDS": None, "custom_fields__tier": None},
                                 null_clears=True)
    assert cleared.update == {"custom_fields": {"gone": None, "tier": None}}


@pytest.mark.parametrize("value", ["not json", "[1, 2]"])
def test_a_custom_fields_object_that_is_not_one_is_a_row_error(value: str) -> None:
    columns = ColumnMap.from_columns(["lead_id", "custom_fields__overflow"])
    with pytest.raises(ValueError, match="custom_fields__overflow"):
        columns.change_for({"lead_id": "lead_1", "custom_fields__overflow": value})
