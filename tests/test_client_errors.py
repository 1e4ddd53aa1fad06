"""Each API error code becomes its exception, after exactly one request; secrets never leak."""

from __future__ import annotations

import logging
import traceback

import pytest
import requests

from leadrat_source.errors import (
    AuthenticationFailed,
    Conflict,
    DuplicateLead,
    InvalidRequest,
    LeadRatError,
    NotFound,
    PermissionDenied,
    RateLimitExceeded,
    ServerError,
    TransportError,
    ValidationFailed,
    error_class_for,
)


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("validation_error", 422, ValidationFailed),
        ("conflict", 409, DuplicateLead),
        ("something_new", 404, NotFound),  # unknown code: by status
        ("something_new", 418, LeadRatError),  # unknown code and status: the base
        (None, 502, ServerError),  # gateway error without a JSON body
        (None, 599, ServerError),
    ],
)
def test_error_class_mapping(code, status, expected) -> None:
    assert error_class_for(code, status) is expected


def _chain(error: BaseException) -> list[BaseException]:
    chain, current = [], error
    while current is not None:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def requests_made(server) -> int:
    return server.stats()["requests"]


def test_invalid_request_400(sandbox, make_client) -> None:
    client = make_client(sandbox)
    cursor = client.leads.list_page(per_page=2, status="new").next_cursor
    before = requests_made(sandbox)
    with pytest.raises(InvalidRequest) as caught:
        client.leads.list_page(per_page=2, cursor=cursor, status="lost")
    assert caught.value.code == "invalid_request" and caught.value.status == 400
    assert requests_made(sandbox) - before == 1


def test_authentication_failed_401_says_where_the_key_comes_from(sandbox, make_client) -> None:
    client = make_client(sandbox, api_key="lr_test_wrong_key")
    before = requests_made(sandbox)
    with pytest.raises(AuthenticationFailed) as caught:
        client.leads.list_page()
    error = caught.value
    assert error.code == "unauthorized" and error.status == 401
    assert "sources.leadrat.api_key" in error.message
    assert "SOURCES__LEADRAT__API_KEY" in error.message
    assert requests_made(sandbox) - before == 1


def test_permission_denied_403_for_a_read_key(sandbox, make_client) -> None:
    client = make_client(sandbox, api_key=sandbox.read_key)
    lead_id = client.leads.list_page(per_page=1).items[0]["id"]
    before = requests_made(sandbox)
    with pytest.raises(PermissionDenied) as caught:
        client.leads.update(lead_id, score=1)
    assert caught.value.code == "forbidden" and caught.value.status == 403
    assert "read_write" in caught.value.message
    assert requests_made(sandbox) - before == 1


def test_not_found_404(sandbox, make_client) -> None:
    client = make_client(sandbox)
    before = requests_made(sandbox)
    with pytest.raises(NotFound) as caught:
        client.leads.get("lead_DOESNOTEXIST")
    assert caught.value.code == "not_found" and caught.value.status == 404
    with pytest.raises(NotFound):
        client.pipelines.get("pipe_DOESNOTEXIST")
    assert requests_made(sandbox) - before == 2


def test_duplicate_lead_409(make_sandbox, make_client) -> None:
    server = make_sandbox()
    client = make_client(server)
    existing = client.leads.list_page(per_page=1).items[0]
    before = requests_made(server)
    with pytest.raises(DuplicateLead) as caught:
        client.leads.create(name="Someone Else", email=existing["email"])
    assert isinstance(caught.value, Conflict)
    assert caught.value.code == "conflict" and caught.value.status == 409
    assert requests_made(server) - before == 1


def test_validation_failed_422_carries_details(sandbox, make_client) -> None:
    client = make_client(sandbox)
    lead_id = client.leads.list_page(per_page=1).items[0]["id"]
    before = requests_made(sandbox)
    with pytest.raises(ValidationFailed) as caught:
        client.leads.update(lead_id, score=101)
    error = caught.value
    assert error.code == "validation_error" and error.status == 422
    assert any(detail["field"] == "score" for detail in error.details)
    assert "score" in str(error)
    with pytest.raises(ValidationFailed):
        client.leads.list_page(per_page=101)
    assert requests_made(sandbox) - before == 2


def test_rate_limit_exceeded_after_retries(make_sandbox, make_client) -> None:
    server = make_sandbox()
    client = make_client(server, max_attempts=2)
    server.set_faults(fail_next=[{"status": 429, "count": 5, "path_prefix": "/leads"}])
    with pytest.raises(RateLimitExceeded) as caught:
        client.leads.list_page(per_page=1)
    assert caught.value.code == "rate_limit_exceeded" and caught.value.status == 429
    assert "gave up after 2 attempts" in caught.value.message
    assert client.stats.rate_limited == 2 and server.stats()["requests"] == 2


@pytest.mark.parametrize("status", [500, 503])
def test_server_error_after_retries(make_sandbox, make_client, status: int) -> None:
    server = make_sandbox()
    client = make_client(server, max_attempts=3)
    server.set_faults(fail_next=[{"status": status, "count": 10, "path_prefix": "/leads"}])
    with pytest.raises(ServerError) as caught:
        client.leads.list_page(per_page=1)
    assert caught.value.status == status and caught.value.code == "server_error"
    assert server.stats()["requests"] == 3 and client.stats.retries == 2


def test_transport_error_after_retries(make_sandbox, make_client) -> None:
    server = make_sandbox()
    client = make_client(server, max_attempts=2, timeout=0.2)
    server.set_faults(latency_ms=600)
    with pytest.raises(TransportError) as caught:
        client.leads.list_page(per_page=1)
    assert "timed out" in caught.value.message and "gave up after 2 attempts" in caught.value.message
    # both attempts reached the server (counted on arrival, before the latency)
    assert server.stats()["by_route"] == {"GET /leads": 2}
    server.set_faults(latency_ms=0)


def _all_errors(server, make_client, key: str) -> list[LeadRatError]:
    """Provoke one error of each kind with `key` as credential (where the kind allows)."""
    errors: list[LeadRatError] = []
    client = make_client(server, api_key=key, max_attempts=2, timeout=0.3)

    def capture(call) -> None:
        with pytest.raises(LeadRatError) as caught:
            call()
        errors.append(caught.value)

    lead = client.leads.list_page(per_page=1).items[0]
    capture(lambda: client.leads.get("lead_DOESNOTEXIST"))
    capture(lambda: client.leads.update(lead["id"], score=500))
    capture(lambda: client.leads.create(name="X", email=lead["email"]))
    capture(lambda: client.leads.list_page(per_page=1, cursor="garbage", status="new"))
    server.set_faults(fail_next=[{"status": 503, "count": 2}])
    capture(lambda: client.leads.list_page(per_page=1))
    server.set_faults(fail_next=[{"status": 429, "count": 2}])
    capture(lambda: client.leads.list_page(per_page=1))
    server.set_faults(latency_ms=600)
    capture(lambda: client.leads.list_page(per_page=1))
    server.set_faults(latency_ms=0, drop_rate=1.0)
    capture(lambda: client.leads.list_page(per_page=1))
    server.set_faults(drop_rate=0.0)
    wrong = make_client(server, api_key=key + "x")
    capture(lambda: wrong.leads.list_page())
    return errors


def test_secrets_never_appear_in_errors_repr_or_logs(make_sandbox, make_client, caplog) -> None:
    server = make_sandbox()
    key = server.read_write_key
    caplog.set_level(logging.DEBUG)
    client = make_client(server, api_key=key)
    bearer = make_client(server, bearer_token=server.bearer_token)
    errors = _all_errors(server, make_client, key)
    kinds = {type(error) for error in errors}
    assert {NotFound, ValidationFailed, DuplicateLead, ServerError, RateLimitExceeded} <= kinds
    assert {TransportError, AuthenticationFailed} <= kinds
    texts = [repr(client), str(client), repr(bearer), repr(client.pacer), caplog.text]
    for error in errors:
        texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        # requests' exceptions hold the prepared request, auth header included: never chained.
        assert not any(isinstance(e, requests.RequestException) for e in _chain(error))
    for text in texts:
        assert key not in text
        assert server.bearer_token not in text
    assert "GET /leads" in caplog.text  # the debug lines were captured
