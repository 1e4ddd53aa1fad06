"""How a LeadRat client is configured: from dlt's config and secrets (`[sources.leadrat]`
in .dlt/config.toml and .dlt/secrets.toml, or SOURCES__LEADRAT__* variables).

The source resolves the same settings through its own signature and builds its client
with `new_client`; the commands that share one client across runs or talk to the API
outside a source (load, check, reverse sync) use `make_client`, through `open_client`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dlt
from dlt.common.configuration.inject import with_config
from dlt.common.configuration.specs import known_sections
from dlt.common.typing import TSecretStrValue

from leadrat_source import settings
from leadrat_source.client import LeadRatClient
from leadrat_source.contract import DEFAULT_BASE_URL
from leadrat_source.errors import ConfigurationError

_NO_CREDENTIALS = (
    "No LeadRat credentials: set sources.leadrat.api_key in .dlt/secrets.toml or the "
    "environment variable SOURCES__LEADRAT__API_KEY (or sources.leadrat.bearer_token / "
    "SOURCES__LEADRAT__BEARER_TOKEN for an OAuth token)."
)


def new_client(
    base_url: str, api_key: str | None, bearer_token: str | None, timeout: float,
    max_attempts: int, max_wait_seconds: float,
) -> LeadRatClient:
    """A client from resolved settings; a ConfigurationError when there are no credentials."""
    if not api_key and not bearer_token:
        raise ConfigurationError(_NO_CREDENTIALS)
    return LeadRatClient(
        base_url=base_url, api_key=api_key or None, bearer_token=bearer_token or None,
        timeout=timeout, max_attempts=max_attempts, max_wait_seconds=max_wait_seconds,
    )


@with_config(sections=(known_sections.SOURCES, "leadrat"))
def make_client(
    base_url: str = DEFAULT_BASE_URL,
    api_key: TSecretStrValue | None = dlt.secrets.value,
    bearer_token: TSecretStrValue | None = dlt.secrets.value,
    timeout: float = settings.REQUEST_TIMEOUT_SECONDS,
    max_attempts: int = settings.MAX_ATTEMPTS,
    max_wait_seconds: float = settings.MAX_WAIT_SECONDS,
) -> LeadRatClient:
    """A client configured the dlt way (`[sources.leadrat]`, `SOURCES__LEADRAT__API_KEY`, ...),
    for the commands that talk to the API outside a source (check, reverse sync)."""
    return new_client(base_url, api_key, bearer_token, timeout, max_attempts, max_wait_seconds)


@contextmanager
def open_client(client: LeadRatClient | None) -> Iterator[LeadRatClient]:
    """The caller's client, left open (it may serve several runs and count their requests),
    or, when there is none, a client from dlt's config that is closed on the way out."""
    if client is not None:
        yield client
        return
    with make_client() as own:
        yield own
