"""RateLimitPacer: on its own (headers fed by hand), then over HTTP against a tight sandbox."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from leadrat_source.errors import QuotaExhausted
from leadrat_source.pacing import RateLimitPacer, RateLimitStatus


def headers(limit: int, remaining: int, reset_in: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(time.time() + reset_in),
    }


def test_no_headers_means_no_pacing() -> None:
    pacer = RateLimitPacer()
    for _ in range(50):
        pacer.acquire()
        pacer.release({})  # a gateway error: no rate-limit headers, learns nothing
    assert pacer.status is None
    assert pacer.stats.waits == 0


def test_status_parsed_from_headers() -> None:
    status = RateLimitStatus.from_headers(
        {"X-RateLimit-Limit": "30", "X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "1713343260"}
    )
    assert status == RateLimitStatus(30, 7, datetime(2024, 4, 17, 8, 41, tzinfo=UTC))
    assert RateLimitStatus.from_headers({"X-RateLimit-Limit": "30"}) is None
    # A deployment sending seconds-until-reset instead of a Unix time is still understood.
    delta = RateLimitStatus.from_headers(
        {"X-RateLimit-Limit": "30", "X-RateLimit-Remaining": "7", "X-RateLimit-Reset": "42"}
    )
    assert delta is not None
    assert 41 <= (delta.reset - datetime.now(UTC)).total_seconds() <= 42


def test_spent_budget_waits_for_the_reset() -> None:
    pacer = RateLimitPacer(margin_seconds=0.0)
    pacer.acquire()
    pacer.release(headers(10, 0, 0.3))
    started = time.monotonic()
    pacer.acquire()
    assert 0.2 <= time.monotonic() - started < 1.0
    assert pacer.stats.waits == 1 and pacer.stats.wait_seconds > 0.2


def test_far_reset_raises_quota_exhausted_without_waiting() -> None:
    pacer = RateLimitPacer()
    pacer.acquire()
    pacer.release(headers(30, 0, 6 * 3600))
    started = time.monotonic()
    with pytest.raises(QuotaExhausted) as caught:
        pacer.acquire(max_wait_seconds=120)
    assert time.monotonic() - started < 0.1
    assert caught.value.resets_at is not None
    assert "resets at" in caught.value.message


def test_in_flight_requests_count_as_spent() -> None:
    """With 3 left and 3 in flight, a 4th request must wait for the window to reset."""
    pacer = RateLimitPacer(burst_fraction=1.0, margin_seconds=0.0)
    pacer.acquire()
    pacer.release(headers(5, 3, 0.4))
    for _ in range(3):
        pacer.acquire()
    fourth = threading.Event()

    def send_fourth() -> None:
        pacer.acquire()
        fourth.set()

    thread = threading.Thread(target=send_fourth)
    thread.start()
    assert not fourth.wait(0.2)
    assert fourth.wait(1.0)
    thread.join()


def test_budget_is_spread_over_the_window() -> None:
    """10 left over 1 s with no burst allowance: ~0.1 s apart, done within the window."""
    pacer = RateLimitPacer(burst_fraction=0.0, margin_seconds=0.0)
    pacer.acquire()
    pacer.release(headers(10, 10, 1.0))
    starts = []
    for _ in range(10):
        pacer.acquire()
        starts.append(time.monotonic())
        pacer.release(None)
    span = starts[-1] - starts[0]
    assert 0.6 < span < 1.1


def test_pacing_over_http_uses_the_budget_without_429s(make_sandbox, make_client) -> None:
    """8 threads, 40 requests, 10 per 2 s window: no 429 on the server's side, and done
    within 1.25 x the time the budget needs (40 / 10 x 2 s = 8 s)."""
    limit, window, total = 10, 2.0, 40
    server = make_sandbox(plan="free", rate_limit=limit, window_seconds=window, daily_cap=None)
    client = make_client(server)
    started = time.monotonic()
    client.leads.list_page(per_page=1)  # learn the budget, as any run's first request does
    with ThreadPoolExecutor(max_workers=8) as pool:
        pages = list(pool.map(lambda _: client.leads.list_page(per_page=5), range(total - 1)))
    elapsed = time.monotonic() - started
    assert all(len(page.items) == 5 for page in pages)
    stats = server.stats()
    assert stats["requests"] == total and stats["rate_limited"] == 0, stats
    ideal = total / limit * window
    assert elapsed <= 1.25 * ideal, f"{total} requests in {elapsed:.1f} s, ideal {ideal:.1f} s"
