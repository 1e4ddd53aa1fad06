"""dlt's configuration errors and missing extras, said in a few words a user can act on.

dlt explains a missing setting by listing every (provider, key) pair it tried: about 40
lines for one PostgreSQL URL. The CLI shows the short form below and keeps dlt's full
list for `--verbose`.
"""

from __future__ import annotations

from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    LookupTrace,
    LookupTraces,
)
from dlt.common.exceptions import MissingDependencyException

#: What a credentials value looks like, per dlt destination type.
EXAMPLE_CREDENTIALS = {
    "postgres": "postgresql://loader:password@db.example.com:5432/analytics",
    "snowflake": "snowflake://loader:password@account_id/analytics?warehouse=COMPUTE_WH"
    "&role=LOADER",
    "duckdb": "/var/lib/leadrat/warehouse.duckdb",
    "mssql": "mssql://loader:password@db.example.com:1433/analytics",
}


def describe_missing_configuration(error: ConfigFieldMissingException) -> str:
    """One or two lines: which setting is missing and how to set it, with an example."""
    profile = getattr(error.config, "destination_name", None)
    if profile and "credentials" in error.fields:
        missing = list(dict.fromkeys(  # a union of credential types repeats fields
            field for trace in error.traces["credentials"]
            if isinstance(trace, LookupTraces) for field in trace.traces
        ))
        return _missing_destination_credentials(
            profile, getattr(error.config, "destination_type", "") or "", missing
        )
    first_keys = [trace.key for traces in error.traces.values() for trace in traces[:1]
                  if isinstance(trace, LookupTrace)]
    where = f" (e.g. the environment variable {first_keys[0]})" if first_keys else ""
    return (
        f"missing setting(s) {', '.join(error.fields)} of {error.spec_name}{where}; "
        "run with --verbose to see every place dlt looked"
    )


def _missing_destination_credentials(
    profile: str, destination_type: str, missing: list[str]
) -> str:
    variable = f"DESTINATION__{profile.upper()}__CREDENTIALS"
    if destination_type == "bigquery":
        how = (
            f"set {variable}__PROJECT_ID, {variable}__PRIVATE_KEY and {variable}__CLIENT_EMAIL "
            "(a service account), or use Google application default credentials"
        )
    else:
        example = EXAMPLE_CREDENTIALS.get(destination_type, "<connection string>")
        how = f"set {variable}, e.g. {variable}={example}"
    lacking = f" (missing: {', '.join(missing)})" if missing else ""
    return (
        f"no complete credentials for destination profile {profile!r} ({destination_type})"
        f"{lacking}: {how}; "
        f"or put them under [destination.{profile}.credentials] in .dlt/secrets.toml "
        "(--verbose shows every place dlt looked)"
    )


#: Extras of leadrat-source that bring a dlt destination's packages (pyproject.toml).
PACKAGE_EXTRAS = ("bigquery", "snowflake")


def describe_missing_dependency(error: MissingDependencyException) -> str:
    """Which extra of this package to install, rather than dlt's own package names."""
    wanted = [
        f"leadrat-source[{extra}]" if (extra := dependency.removeprefix("dlt[").rstrip("]"))
        in PACKAGE_EXTRAS else dependency
        for dependency in error.dependencies
    ]
    return (
        f"{error.caller} needs packages that are not installed: "
        + "; ".join(f"pip install '{package}'" for package in wanted)
    )
