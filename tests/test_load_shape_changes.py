"""LeadRat changing shape under a scheduled pipeline: lead fields the contract does not name
yet, and a pipeline someone deleted. Judged against the sandbox's own export and store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from warehouse import Warehouse, assert_equal_to_sandbox, same_value

from leadrat_source.sandbox import Sandbox

#: one of each JSON kind, as a newer LeadRat might send at the top level of a lead
NEW_FIELDS: dict[str, Any] = {
    "region": "emea",
    "assignee_note": "",
    "rating": 4.5,
    "is_partner_lead": False,
    "owner": {"id": "usr_7", "teams": ["north", "key accounts"]},
    "channels": ["email", "phone"],
}


def test_fields_beyond_the_contract_are_loaded_as_columns(
    make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Warehouse]
) -> None:
    server = make_sandbox(leads=300)
    server.add_lead_fields(**NEW_FIELDS)
    warehouse = make_warehouse(server)
    warehouse.load()
    # the oracle compares every top-level field of the export, the new ones included
    assert_equal_to_sandbox(warehouse)
    assert {"region", "owner", "channels"} <= set(warehouse.rows("leads")[0])


def test_a_field_that_appears_later_reaches_the_leads_read_after_it(
    make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Warehouse]
) -> None:
    server = make_sandbox(leads=300)
    warehouse = make_warehouse(server)
    warehouse.load()
    before = {lead["id"]: lead["updated_at"] for lead in server.export_leads()}
    server.add_lead_fields(region="apac", owner={"id": "usr_9"})
    server.churn(30)
    warehouse.load()
    changed = {lead["id"]: lead for lead in server.export_leads()
               if before.get(lead["id"]) != lead["updated_at"]}
    assert changed, "the churn changed no lead"
    rows = {row["id"]: row for row in warehouse.rows("leads")}
    wrong = [(lead_id, name) for lead_id, lead in changed.items() for name in ("region", "owner")
             if not same_value(rows[lead_id].get(name), lead[name])]
    assert not wrong, f"{len(wrong)} new values missing or wrong, e.g. {wrong[:3]}"
    # a lead the run did not read again (neither changed nor inside the lookback) keeps
    # what it had: NULL in the new columns; none holds anything but LeadRat's value
    not_read = [row for row in rows.values() if row["region"] is None]
    assert not_read and not any(row["id"] in changed for row in not_read)
    assert all(row["region"] == "apac" for row in rows.values() if row["region"] is not None)


def test_a_removed_pipeline_leaves_the_warehouse(
    make_sandbox: Callable[..., Sandbox], make_warehouse: Callable[..., Warehouse]
) -> None:
    server = make_sandbox(leads=50, pipelines=3)
    warehouse = make_warehouse(server)
    warehouse.load(resources=["pipelines"])
    removed = server.store.pipelines[1].id
    server.remove_pipeline(removed)
    warehouse.load(resources=["pipelines"])
    left = [server.store.pipeline(p.id) for p in server.store.pipelines]
    assert removed not in {p["id"] for p in left}
    assert {(row["id"], row["name"]) for row in warehouse.rows("pipelines")} == {
        (p["id"], p["name"]) for p in left}
    assert {(row["pipeline_id"], row["id"]) for row in warehouse.rows("pipeline_stages")} == {
        (p["id"], s["id"]) for p in left for s in p["stages"]}
