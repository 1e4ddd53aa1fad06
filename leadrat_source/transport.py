"""HTTP transport of the LeadRat client: one place where requests are sent and answers read.

It owns the connection pools (a keep-alive `requests.Session` per thread), the
authentication header, pacing (`RateLimitPacer`), retries (`RetryPolicy`) and the
translation of every HTTP answer into data or one `LeadRatError`. The API key or token
only ever lives in the auth object, whose repr is redacted, and no `requests` exception
is chained onto the errors raised here (its prepared request carries the headers).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState

from leadrat_source import __version__
from leadrat_source.contract import (
    API_KEY_HEADER,
    AUTHORIZATION_HEADER,
    LOOPBACK_HOSTS,
    RETRY_AFTER_HEADER,
)
from leadrat_source.errors import (
    ConfigurationError,
    DuplicateLead,
    LeadRatError,
    NotFound,
    QuotaExhausted,
    RateLimitExceeded,
    ServerError,
    TransportError,
    advice_for,
    error_class_for,
)
from leadrat_source.pacing import RateLimitPacer, RateLimitStatus
from leadrat_source.retrying import RetryPolicy
from leadrat_source.stats import RequestStats

logger = logging.getLogger("leadrat_source.client")

USER_AGENT = f"leadrat-source/{__version__}"
REQUEST_ID_HEADER = "X-Request-Id"


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
        self._timeout = timeout
        self._policy = policy
        self._pacer = pacer
        self._stats = stats
        # One pool of keep-alive connections shared by all threads (urllib3's pool is
        # thread-safe); each thread gets a light Session of its own over it, since a
        # Session itself is not documented as thread-safe.
        self._adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        # requests re-reads proxy and CA-bundle settings from the environment on every
        # call (~2 ms each, a real cost at 100 pages/s); resolve them once, the same way.
        environment = requests.Session().merge_environment_settings(
            self.base_url, {}, None, None, None
        )
        self._proxies: dict[str, str] = environment["proxies"]
        self._verify: bool | str = environment["verify"]
        self._local = threading.local()

    def __repr__(self) -> str:
        return f"Transport(base_url={self.base_url!r}, auth={self._auth!r})"

    def close(self) -> None:
        """Close the pooled connections."""
        self._adapter.close()

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
        ambiguous = False

        def before_sleep(state: RetryCallState) -> None:
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

        for attempt in self._policy.retrying(before_sleep):
            with attempt:
                number = attempt.retry_state.attempt_number
                try:
                    return self._attempt(method, path, query, payload, number)
                except NotFound:
                    if missing_ok_after_retry and ambiguous:
                        logger.debug("%s %s: 404 after an ambiguous failure; done", method, path)
                        return None
                    raise
                except DuplicateLead as error:
                    if ambiguous:
                        error.message += (
                            " An earlier attempt of this request failed without a clear answer,"
                            " so it may itself have created this lead: look it up by email."
                        )
                    raise
                except (ServerError, TransportError):
                    ambiguous = True
                    raise
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _session(self) -> requests.Session:
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

    def _attempt(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        payload: bytes | None,
        number: int,
    ) -> Any:
        """One HTTP exchange: pace, send, read. Raises outside `except` blocks on purpose,
        so no `requests` exception (holding the auth headers) ends up in `__context__`."""
        self._pacer.acquire(self._policy.max_wait_seconds)
        response: requests.Response | None = None
        content = b""
        failure: str | None = None
        started = time.monotonic()
        try:
            # Streamed so that a body cut short still leaves us the status and headers.
            response = self._session().request(
                method,
                self.base_url + path,
                params=query,
                data=payload,
                headers={"Content-Type": "application/json"} if payload is not None else None,
                auth=self._auth,
                timeout=self._timeout,
                stream=True,
            )
            content = response.content
        except requests.Timeout:
            failure = f"timed out after {self._timeout:g} s"
        except requests.RequestException as error:
            failure = f"connection failed ({type(error).__name__})"
        finally:
            if response is not None:
                response.close()  # back to the pool, or discarded if the body broke
            self._pacer.release(response.headers if response is not None else None)
        elapsed_ms = (time.monotonic() - started) * 1000
        if response is None:
            self._stats.record_transport_error()
            logger.debug(
                "%s %s -> %s, attempt %d, %.1f ms", method, path, failure, number, elapsed_ms
            )
            raise TransportError(
                f"{method} {self.base_url}{path}: {failure}{self._gave_up(number)}. Check the "
                "network and the base URL (sources.leadrat.base_url), or raise `timeout`.",
                code="transport_error",
            )
        self._stats.record_response(response.status_code)
        logger.debug(
            "%s %s -> %d%s, attempt %d, %.1f ms",
            method,
            path,
            response.status_code,
            f" ({failure} reading the body)" if failure else "",
            number,
            elapsed_ms,
        )
        return self._read(method, path, response, content, number)

    def _read(
        self, method: str, path: str, response: requests.Response, content: bytes, number: int
    ) -> Any:
        """Decode a 2xx body, or raise the error the response stands for.

        A 2xx whose body is cut short or not JSON is a retryable `TransportError`; an error
        status stands on its own even when its body is unreadable.
        """
        status = response.status_code
        decoded: Any = None
        malformed = False
        if content:
            try:
                decoded = orjson.loads(content)
            except orjson.JSONDecodeError:
                malformed = True
        elif 200 <= status < 300 and status != 204 and _declared_length(response) != 0:
            malformed = True  # the body was promised but never arrived
        if 200 <= status < 300:
            if malformed:
                raise TransportError(
                    f"{method} {path}: the {status} response body is cut short or not JSON"
                    f"{self._gave_up(number)}.",
                    code="malformed_response",
                    status=status,
                )
            return decoded
        raise self._error(method, path, response, decoded, number)

    def _error(
        self, method: str, path: str, response: requests.Response, decoded: Any, number: int
    ) -> LeadRatError:
        status = response.status_code
        error = decoded.get("error") if isinstance(decoded, dict) else None
        error = error if isinstance(error, dict) else {}
        code = error.get("code") if isinstance(error.get("code"), str) else None
        api_message = error.get("message") or response.reason or "no message"
        details = error.get("details") if isinstance(error.get("details"), list) else []
        request_id = response.headers.get(REQUEST_ID_HEADER)
        klass = error_class_for(code, status)
        common: dict[str, Any] = {
            "code": code or (None if klass is LeadRatError else _default_code(status)),
            "status": status,
            "details": details,
            "request_id": request_id,
        }
        message = f"{method} {path} -> {status}: {api_message}."
        if klass is RateLimitExceeded:
            wait = _requested_wait(response.headers)
            if wait is not None and wait > self._policy.max_wait_seconds:
                return QuotaExhausted.until(_resets_at(response.headers, wait), status=status)
            return RateLimitExceeded(
                f"{message}{self._gave_up(number)} {advice_for(klass)}",
                retry_after=wait,
                **common,
            )
        if klass is ServerError:
            return ServerError(
                f"{message}{self._gave_up(number)} {advice_for(klass)}",
                retry_after=_retry_after(response.headers),
                **common,
            )
        return klass(f"{message} {advice_for(klass)}".strip(), **common)

    def _gave_up(self, number: int) -> str:
        if number >= self._policy.max_attempts:
            return f" (gave up after {number} attempts)"
        return ""


def _default_code(status: int) -> str | None:
    """The contract code for a status, for answers (like gateway 503s) without a body."""
    return "server_error" if status >= 500 else None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The Retry-After header in seconds; both of HTTP's forms (seconds, HTTP-date)."""
    value = headers.get(RETRY_AFTER_HEADER)
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def _requested_wait(headers: Mapping[str, str]) -> float | None:
    """A 429's wait: Retry-After, and when the budget is spent, the time until the reset.

    A 429 that still reports budget left (a blip) does not wait for the window's end.
    """
    waits = [w for w in (_retry_after(headers),) if w is not None]
    status = RateLimitStatus.from_headers(headers)
    if status is not None and status.remaining == 0:
        waits.append(status.reset.timestamp() - time.time())
    return max(max(waits), 0.0) if waits else None


def _resets_at(headers: Mapping[str, str], wait: float) -> datetime:
    status = RateLimitStatus.from_headers(headers)
    return status.reset if status else datetime.fromtimestamp(time.time() + wait, UTC)


def _declared_length(response: requests.Response) -> int | None:
    try:
        return int(response.headers["Content-Length"])
    except (KeyError, ValueError):
        return None


def _describe(error: BaseException | None) -> str:
    """A short name of a failure for the retry warning: the status, or the error's code."""
    if isinstance(error, TransportError):
        return error.code or "transport error"
    if isinstance(error, LeadRatError) and error.status is not None:
        return str(error.status)
    return type(error).__name__ if error else "an error"
