"""Shared fixtures: a real sandbox over loopback HTTP, real DuckDB files, real PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import sqlalchemy as sa
from emulators import missing

from leadrat_source.sandbox import Sandbox, SandboxConfig

POSTGRES_URL_ENV = "LEADRAT_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """One read-mostly sandbox for tests that do not change data or inject faults."""
    with Sandbox(SandboxConfig(leads=1_000, seed=7, plan="pro", rate_limit=0)) as server:
        yield server


@pytest.fixture
def make_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start a sandbox of one's own (any SandboxConfig field as keyword); stopped after the test."""
    with ExitStack() as stack:

        def start(**config: Any) -> Sandbox:
            config.setdefault("leads", 300)
            config.setdefault("seed", 11)
            return stack.enter_context(Sandbox(SandboxConfig(**config)))

        yield start


def sqlalchemy_engine(url: str) -> sa.Engine:
    """An engine for a plain postgresql:// URL through psycopg2, the driver dlt uses
    (SQLAlchemy 2.1 would otherwise pick psycopg 3, which is not installed)."""
    parsed = sa.make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return sa.create_engine(parsed)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the test PostgreSQL; unreachable means skip locally and fail under CI."""
    url = os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL)
    engine = sqlalchemy_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("select 1"))
    except sa.exc.OperationalError as error:
        missing(f"PostgreSQL at {POSTGRES_URL_ENV} is unreachable: {error.orig}")
    finally:
        engine.dispose()
    return url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A unique schema name for one test, dropped (with everything dlt put in it) afterwards."""
    name = f"leadrat_test_{uuid.uuid4().hex[:10]}"
    yield name
    engine = sqlalchemy_engine(postgres_url)
    with engine.begin() as connection:
        # dlt creates the dataset schema plus a staging schema beside it.
        for schema in (name, f"{name}_staging"):
            connection.execute(sa.text(f'drop schema if exists "{schema}" cascade'))
    engine.dispose()


@pytest.fixture
def make_client() -> Iterator[Callable[..., Any]]:
    """A LeadRatClient for a sandbox (read_write key unless given), with fast retries."""
    from leadrat_source.client import LeadRatClient

    with ExitStack() as stack:

        def start(server: Sandbox, **options: Any) -> LeadRatClient:
            if "api_key" not in options and "bearer_token" not in options:
                options["api_key"] = server.read_write_key
            options.setdefault("backoff_base", 0.01)
            options.setdefault("backoff_cap", 0.05)
            options.setdefault("timeout", 10.0)
            return stack.enter_context(LeadRatClient(server.base_url, **options))

        yield start


@pytest.fixture
def make_warehouse(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, make_client: Callable[..., Any]
) -> Callable[..., Any]:
    """A Warehouse (tests/warehouse.py) loading from a sandbox with its read-only key into a
    DuckDB file of this test, or into `destination="postgres"` and a `dataset` of the test."""
    from warehouse import Warehouse

    monkeypatch.setenv("DESTINATION__DUCKDB__CREDENTIALS", str(tmp_path / "warehouse.duckdb"))

    def create(server: Sandbox, destination: str = "duckdb", dataset: str = "leadrat",
               **client_options: Any) -> Warehouse:
        client = make_client(server, api_key=server.read_key, **client_options)
        return Warehouse(server, client, tmp_path / "pipelines", destination, dataset)

    return create
