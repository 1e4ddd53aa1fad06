"""Rate limits: fixed windows, the daily cap, and the headers on every API response."""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from leadrat_source.sandbox import Sandbox


def test_window_limit_then_429_with_retry_after(make_sandbox: Callable[..., Sandbox]) -> None:
    box = make_sandbox(rate_limit=5, window_seconds=2, daily_cap=None)
    http = requests.Session()
    http.headers["X-API-Key"] = box.read_write_key
    # Start at the beginning of a window so all six requests land in the same one.
    time.sleep(2 - time.time() % 2 + 0.05)
    responses = [http.get(f"{box.base_url}/leads", timeout=10) for _ in range(6)]
    assert [r.status_code for r in responses] == [200] * 5 + [429]
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in responses[:5]] == [4, 3, 2, 1, 0]
    limited = responses[-1]
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(limited.headers["Retry-After"]) <= 2
    reset = int(limited.headers["X-RateLimit-Reset"])
    assert time.time() < reset <= time.time() + 3
    assert all(r.headers["X-RateLimit-Limit"] == "5" for r in responses)
    time.sleep(reset - time.time() + 0.05)
    assert http.get(f"{box.base_url}/leads", timeout=10).status_code == 200
    assert box.stats()["rate_limited"] == 1


def test_headers_on_errors_and_limits_per_key(make_sandbox: Callable[..., Sandbox]) -> None:
    box = make_sandbox(rate_limit=3, window_seconds=30, daily_cap=None)
    for response in (requests.get(f"{box.base_url}/leads", timeout=10),
                     requests.get(f"{box.base_url}/leads/lead_x", timeout=10,
                                  headers={"X-API-Key": box.read_write_key}),
                     requests.get(f"{box.base_url}/leads", params={"per_page": 500}, timeout=10,
                                  headers={"X-API-Key": box.read_write_key})):
        assert response.status_code in (401, 404, 422)
        assert {"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"} <= set(
            response.headers)
    # The read key has its own budget.
    reader = requests.get(f"{box.base_url}/leads", headers={"X-API-Key": box.read_key},
                          timeout=10)
    assert reader.status_code == 200 and reader.headers["X-RateLimit-Remaining"] == "2"


def test_daily_cap_resets_at_next_utc_midnight(make_sandbox: Callable[..., Sandbox]) -> None:
    box = make_sandbox(rate_limit=0, daily_cap=3)
    headers = {"X-API-Key": box.read_write_key}
    statuses = [requests.get(f"{box.base_url}/pipelines", headers=headers, timeout=10)
                for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    capped = statuses[-1]
    midnight = (int(time.time()) // 86_400 + 1) * 86_400
    assert int(capped.headers["X-RateLimit-Reset"]) == midnight
    assert capped.headers["X-RateLimit-Remaining"] == "0"
    assert abs(int(capped.headers["Retry-After"]) - (midnight - time.time())) < 5


def test_no_limit_keeps_remaining_high(sandbox: Sandbox) -> None:
    headers = {"X-API-Key": sandbox.read_write_key}
    response = requests.get(f"{sandbox.base_url}/leads", headers=headers, timeout=10)
    assert int(response.headers["X-RateLimit-Remaining"]) > 10_000


def test_plan_limits_apply_by_default(make_sandbox: Callable[..., Sandbox]) -> None:
    box = make_sandbox(plan="free")
    response = requests.get(f"{box.base_url}/leads", headers={"X-API-Key": box.read_write_key},
                            timeout=10)
    assert response.headers["X-RateLimit-Limit"] == "30"
    assert response.headers["X-RateLimit-Remaining"] == "29"
