"""History mode (SCD2) keeps one version per change of a lead, whatever else its batch holds."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from history import (
    assert_one_version_per_change,
    history_rereading_everything,
    load_with_churn,
)


def test_unchanged_leads_reread_beside_new_custom_keys_get_no_new_version(
    make_sandbox: Callable[..., Any], make_warehouse: Callable[..., Any],
    make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:
    history_rereading_everything(monkeypatch)
    monkeypatch.setenv("SOURCES__LEADRAT__LEADS_PER_BATCH", "150")
    warehouse = make_warehouse(make_sandbox(leads=400, seed=43, rate_limit=0))
    states = load_with_churn(warehouse, make_client)
    changed = sum(1 for lead_id, lead in states[-1].items() if states[0].get(lead_id) != lead)
    assert 0 < changed < len(states[-1]) / 2  # most leads unchanged, re-read twice
    assert_one_version_per_change(warehouse, states)
