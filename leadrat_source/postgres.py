"""dlt's PostgreSQL destination, taking URLs without a password the way libpq does.

`postgresql://postgres@127.0.0.1:5432/mydb` is how people write a URL for trust or peer
authentication, a `~/.pgpass` file or `PGPASSWORD`. dlt 1.31's `PostgresCredentials`
declares the password required and stops such a URL at configuration time, although
psycopg2 and the ADBC driver (both libpq) would connect. This module changes only that:
the password is optional, so libpq applies its own password sources, and a server that
refuses the login gets one short error naming the variable to fix, not a traceback.
Everything else (SQL, merge, COPY and ADBC loading) is dlt's own code.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2
from dlt.common.configuration import configspec
from dlt.common.typing import TSecretStrValue
from dlt.destinations import postgres as dlt_postgres
from dlt.destinations.impl.postgres.configuration import (
    PostgresClientConfiguration,
    PostgresCredentials,
)
from dlt.destinations.impl.postgres.postgres import PostgresClient
from dlt.destinations.impl.postgres.sql_client import Psycopg2SqlClient

from leadrat_source.errors import ConfigurationError

#: What libpq says when the server wants a password and has none, or a wrong one.
_LOGIN_REFUSED = ("no password supplied", "password authentication failed")


@configspec(init=False)
class LibpqPostgresCredentials(PostgresCredentials):
    """dlt's credentials with the password optional (libpq finds one, or needs none)."""

    password: TSecretStrValue | None = None  # type: ignore[assignment]


@configspec
class LibpqPostgresConfiguration(PostgresClientConfiguration):
    credentials: LibpqPostgresCredentials = None  # type: ignore[assignment]


def credentials_variable(destination_name: str | None) -> str:
    """The environment variable that holds a PostgreSQL profile's credentials."""
    return f"DESTINATION__{(destination_name or 'postgres').upper()}__CREDENTIALS"


@contextmanager
def explained_login_errors(credentials: PostgresCredentials, variable: str) -> Iterator[None]:
    """Turn libpq's refusal of the login into one line saying where the password goes."""
    try:
        yield
    except psycopg2.OperationalError as error:
        if not any(reason in str(error) for reason in _LOGIN_REFUSED):
            raise
        given = "no password" if "no password supplied" in str(error) else "a wrong password"
        raise ConfigurationError(
            f"PostgreSQL at {credentials.host}:{credentials.port} refused user "
            f"{credentials.username!r} ({given}): put the password in {variable} "
            "(postgresql://user:password@host:port/database), or in ~/.pgpass or PGPASSWORD"
        ) from None


class LoginCheckingSqlClient(Psycopg2SqlClient):
    """dlt's psycopg2 client that explains a refused login in one line."""

    credentials_variable = credentials_variable(None)

    def open_connection(self) -> Any:
        with explained_login_errors(self.credentials, self.credentials_variable):
            return super().open_connection()


class LibpqPostgresClient(PostgresClient):
    def __init__(self, schema: Any, config: LibpqPostgresConfiguration, capabilities: Any):
        super().__init__(schema, config, capabilities)
        sql_client = LoginCheckingSqlClient(
            self.sql_client.dataset_name, self.sql_client.staging_dataset_name,
            config.credentials, capabilities,
        )
        sql_client.credentials_variable = credentials_variable(config.destination_name)
        self.sql_client = sql_client


class postgres(dlt_postgres):  # dlt names destination factories in lower case
    """`destination_type = "postgres"` of destinations.toml."""

    spec = LibpqPostgresConfiguration  # type: ignore[assignment]

    @property
    def client_class(self) -> type[PostgresClient]:
        return LibpqPostgresClient
