"""HTTP transport of the LeadRat client: one place where requests are sent.

It owns the connection pools (a keep-alive `requests.Session` per thread), the
authentication header, and runs each request through pacing (`RateLimitPacer`) and
retries (`RetryPolicy`); `response_errors` turns each answer into data or one
`LeadRatError`. The API key or token only ever lives in the auth object, whose repr is
redacted, and no `requests` exception is chained onto the errors raised here (its
prepared request carries the headers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState

from leadrat_source import __version__
from leadrat_source.contract import API_KEY_HEADER, AUTHORIZATION_HEADER, LOOPBACK_HOSTS
from leadrat_source.errors import (
    ConfigurationError,
    DuplicateLead,
    LeadRatError,
    NotFound,
    RateLimitExceeded,
    ServerError,
    TransportError,
)
from leadrat_source.pacing import RateLimitPacer
from leadrat_source.response_errors import read_response
from leadrat_source.retrying import RetryPolicy
from leadrat_source.stats import RequestStats

logger = logging.getLogger("leadrat_source.client")

USER_AGENT = f"leadrat-source/{__version__}"


def validate_base_url(base_url: str) -> str:
    """The base URL without a trailing slash; refuses plain http:// except on loopback."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"Invalid LeadRat base URL {base_url!r}: expected https://host, e.g. "
            "https://api.crm.builder.leadratd.com."
        )
    if parts.scheme == "http" and parts.hostname not in LOOPBACK_HOSTS:
        raise ConfigurationError(
            f"Refusing plain http:// for {parts.hostname}: the API key would travel unencrypted. "
            f"Use https://{parts.netloc}{parts.path} instead (http:// is only allowed for "
            "loopback hosts such as the local sandbox)."
        )
    return base_url.rstrip("/")


class CredentialsAuth(requests.auth.AuthBase):
    """Adds `X-API-Key` or `Authorization: Bearer` to each request; never shows the secret."""

    def __init__(self, *, api_key: str | None, bearer_token: str | None) -> None:
        if bool(api_key) == bool(bearer_token):
            raise ConfigurationError(
                "Give exactly one of api_key or bearer_token: set `sources.leadrat.api_key` in "
                ".dlt/secrets.toml or the env var SOURCES__LEADRAT__API_KEY (or "
                "`sources.leadrat.bearer_token` / SOURCES__LEADRAT__BEARER_TOKEN)."
            )
        if api_key:
            self._header, self._value = API_KEY_HEADER, api_key
        else:
            self._header, self._value = AUTHORIZATION_HEADER, f"Bearer {bearer_token}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers[self._header] = self._value
        return request

    def __repr__(self) -> str:
        return f"CredentialsAuth({self._header}=<redacted>)"


def encode_query(params: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters in the contract's wire format.

    None is omitted; booleans are `true`/`false`; datetimes are ISO 8601 UTC with
    milliseconds and `Z` (naive ones are taken as UTC); dates are `YYYY-MM-DD`.
    """
    query: dict[str, str] = {}
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            query[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC)
            query[name] = value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
        elif isinstance(value, date):
            query[name] = value.isoformat()
        else:
            query[name] = str(value)
    return query


class SessionPool:
    """Keep-alive connections shared by all threads, with a light `requests.Session` each.

    urllib3's pool is thread-safe, a Session is not documented to be: so threads share one
    adapter (`pool_size` connections; give at least as many as threads) and each gets a
    Session of its own over it.
    """

    def __init__(self, base_url: str, *, pool_size: int) -> None:
        self._adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        # requests re-reads proxy and CA-bundle settings from the environment on every
        # call (~2 ms each, a real cost at 100 pages/s); resolve them once, the same way.
        environment = requests.Session().merge_environment_settings(base_url, {}, None, None, None)
        self._proxies: dict[str, str] = environment["proxies"]
        self._verify: bool | str = environment["verify"]
        self._local = threading.local()

    def session(self) -> requests.Session:
        """This thread's Session, made on its first request."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.mount("https://", self._adapter)
            session.mount("http://", self._adapter)
            session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
            session.trust_env = False
            session.proxies.update(self._proxies)
            session.verify = self._verify
            self._local.session = session
        return session

    def close(self) -> None:
        """Close the pooled connections."""
        self._adapter.close()


@dataclass(frozen=True)
class PacedSender:
    """Sends one attempt of a request: paced, over this thread's pooled session, and read.

    Raises outside `except` blocks on purpose, so no `requests` exception (holding the
    auth headers) ends up in an error's `__context__`. The `Transport` retries it.
    """

    base_url: str
    auth: CredentialsAuth
    timeout: float
    policy: RetryPolicy
    pacer: RateLimitPacer
    sessions: SessionPool
    stats: RequestStats

    def attempt(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        payload: bytes | None,
        number: int,
    ) -> Any:
        """Attempt `number` of a request: pace, send, read; the decoded body or an error."""
        self.pacer.acquire(self.policy.max_wait_seconds)
        started = time.monotonic()
        response, content, failure = self._send(method, path, query, payload)
        elapsed_ms = (time.monotonic() - started) * 1000
        if response is None:
            self.stats.record_transport_error()
            logger.debug(
                "%s %s -> %s, attempt %d, %.1f ms", method, path, failure, number, elapsed_ms
            )
            raise TransportError(
                f"{method} {self.base_url}{path}: {failure}{self._gave_up(number)}. Check the "
                "network and the base URL (sources.leadrat.base_url), or raise `timeout`.",
                code="transport_error",
            )
        self.stats.record_response(response.status_code)
        logger.debug(
            "%s %s -> %d%s, attempt %d, %.1f ms",
            method,
            path,
            response.status_code,
            f" ({failure} reading the body)" if failure else "",
            number,
            elapsed_ms,
        )
        return read_response(
            response,
            content,
            request_line=f"{method} {path}",
            gave_up=self._gave_up(number),
            max_wait_seconds=self.policy.max_wait_seconds,
        )

    def _send(
        self, method: str, path: str, query: dict[str, str], payload: bytes | None
    ) -> tuple[requests.Response | None, bytes, str | None]:
        """Send once: the response (None when none came), its body, and what failed.

        Streamed so that a body cut short still leaves us the status and headers. Whatever
        happened, the pacer is told the request is done, with the budget the headers report.
        """
        response: requests.Response | None = None
        content = b""
        failure: str | None = None
        try:
            response = self.sessions.session().request(
                method,
                self.base_url + path,
                params=query,
                data=payload,
                headers={"Content-Type": "application/json"} if payload is not None else None,
                auth=self.auth,
                timeout=self.timeout,
                stream=True,
            )
            content = response.content
        except requests.Timeout:
            failure = f"timed out after {self.timeout:g} s"
        except requests.RequestException as error:
            failure = f"connection failed ({type(error).__name__})"
        finally:
            if response is not None:
                response.close()  # back to the pool, or discarded if the body broke
            self.pacer.release(response.headers if response is not None else None)
        return response, content, failure

    def _gave_up(self, number: int) -> str:
        """The note on a retryable error's message once attempt `number` was the last."""
        if number >= self.policy.max_attempts:
            return f" (gave up after {number} attempts)"
        return ""


class Transport:
    """Sends requests with pacing and retries; returns parsed JSON or raises a LeadRatError.

    Thread-safe: threads share the connection pool (`pool_size` connections; give at
    least as many as threads), the pacer and the stats.
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: CredentialsAuth,
        timeout: float,
        policy: RetryPolicy,
        pacer: RateLimitPacer,
        pool_size: int,
        stats: RequestStats,
    ) -> None:
        self.base_url = validate_base_url(base_url)
        self._auth = auth
        self._policy = policy
        self._stats = stats
        self._sessions = SessionPool(self.base_url, pool_size=pool_size)
        self._sender = PacedSender(
            self.base_url, auth, timeout, policy, pacer, self._sessions, stats
        )

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r}, auth={self._auth!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._sessions.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        missing_ok_after_retry: bool = False,
    ) -> Any:
        """Send with retries; return the decoded JSON body (None for an empty 2xx body).

        `missing_ok_after_retry`: a 404 after an earlier attempt failed ambiguously
        (timeout, dropped connection, 5xx) means that attempt already did the job —
        used for DELETE, whose effect is exactly "it is gone".
        """
        query = encode_query(params or {})
        payload = orjson.dumps(body) if body is not None else None
        ambiguous = False  # an earlier attempt failed without a clear answer
        for attempt in self._policy.retrying(partial(self._log_retry, method, path)):
            with attempt:
                number = attempt.retry_state.attempt_number
                try:
                    return self._sender.attempt(method, path, query, payload, number)
                except (NotFound, DuplicateLead) as error:
                    if ambiguous and _done_by_an_earlier_attempt(error, missing_ok_after_retry):
                        logger.debug("%s %s: 404 after an ambiguous failure; done", method, path)
                        return None
                    raise
                except (ServerError, TransportError):
                    ambiguous = True
                    raise
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _log_retry(self, method: str, path: str, state: RetryCallState) -> None:
        """tenacity's before_sleep: count the retry (and a 429's wait) and say why."""
        error = state.outcome.exception() if state.outcome else None
        rate_limited = isinstance(error, RateLimitExceeded)
        self._stats.record_retry(state.upcoming_sleep if rate_limited else 0.0)
        logger.warning(
            "Retrying %s %s%s after %s (attempt %d of %d) in %.2f s",
            method,
            self.base_url,
            path,
            _describe(error),
            state.attempt_number,
            self._policy.max_attempts,
            state.upcoming_sleep,
        )


def _done_by_an_earlier_attempt(error: LeadRatError, missing_ok: bool) -> bool:
    """Whether a 404 or a duplicate email, after an earlier attempt of the same request
    failed without a clear answer, means that attempt went through.

    A 404 is success when the request only had to make something gone (`missing_ok`: a
    DELETE). A duplicate email on a create may be the lead that attempt created, but
    cannot be proven so: the error stands, and its message says where to look.
    """
    if isinstance(error, NotFound):
        return missing_ok
    if isinstance(error, DuplicateLead):
        error.message += (
            " An earlier attempt of this request failed without a clear answer,"
            " so it may itself have created this lead: look it up by email."
        )
    return False


def _describe(error: BaseException | None) -> str:
    """A short name of a failure for the retry warning: the status, or the error's code."""
    if isinstance(error, TransportError):
        return error.code or "transport error"
    if isinstance(error, LeadRatError) and error.status is not None:
        return str(error.status)
    return type(error).__name__ if error else "an error"
