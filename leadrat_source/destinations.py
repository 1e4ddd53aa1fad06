"""Named destination profiles from `destinations.toml`, turned into dlt destinations.

The built-in profiles ship inside the package (`leadrat_source/destinations.toml`), so an
installed wheel knows them; a user's own `destinations.toml` adds profiles or replaces
built-in ones by name. The files hold only non-secret settings; credentials resolve through
dlt's config by profile name (`DESTINATION__<NAME>__CREDENTIALS`, `.dlt/secrets.toml`).

Which profile and dataset a command uses, when no flag says, is dlt config too: `[leadrat]
destination` and `dataset` (LEADRAT__DESTINATION, LEADRAT__DATASET), the same for the CLI,
cron and the Airflow DAG.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import dlt
from dlt.common.destination import Destination
from dlt.common.destination.capabilities import LOADER_FILE_FORMATS, TLoaderFileFormat

from leadrat_source import settings
from leadrat_source.errors import ConfigurationError

PROFILES_FILE = "destinations.toml"
#: dlt config keys, looked up exactly: a top-level key, so that its variable is the
#: documented LEADRAT_DESTINATIONS_FILE; then LEADRAT__DESTINATION and LEADRAT__DATASET.
PROFILES_FILE_KEY = "leadrat_destinations_file"
DESTINATION_KEY = "leadrat.destination"
DATASET_KEY = "leadrat.dataset"
DEFAULT_PROFILE = "duckdb"
#: The embedded default's file, in the working directory, unless configured otherwise.
#: Not `leadrat.duckdb`: DuckDB names the catalog after the file, and a catalog and a
#: schema (our dataset `leadrat`) of the same name make every query ambiguous.
DEFAULT_DUCKDB_FILE = "leadrat_warehouse.duckdb"
#: dlt destination types replaced by our own factory: dlt's PostgreSQL credentials insist
#: on a password that libpq does not need (leadrat_source/postgres.py).
OWN_FACTORIES = {"postgres": "leadrat_source.postgres.postgres"}


@dataclass(frozen=True)
class DestinationProfile:
    name: str
    destination_type: str
    loader_file_format: TLoaderFileFormat | None = None
    dataset_name: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def destination(self, **overrides: Any) -> Destination[Any, Any]:
        """The dlt destination of this profile, with `overrides` of its settings;
        credentials come from dlt's config."""
        settings = {**self.settings, **overrides}
        if self.destination_type == "duckdb" and "credentials" not in settings:
            configured: str | None = dlt.secrets.get(f"destination.{self.name}.credentials")
            settings["credentials"] = configured or DEFAULT_DUCKDB_FILE
        factory = OWN_FACTORIES.get(self.destination_type, self.destination_type)
        return dlt.destination(self.name, destination_type=factory, **settings)

    def dataset(self, given: str | None = None) -> str:
        """The dataset to work in: `given` (a flag), else `[leadrat] dataset` of dlt's
        config, else this profile's `dataset_name`, else `leadrat`."""
        configured: str | None = dlt.config.get(DATASET_KEY, str)
        return given or configured or self.dataset_name or settings.DATASET_NAME


def profiles_file() -> Path | None:
    """The user's profiles file, if any: `leadrat_destinations_file` of dlt's config
    ($LEADRAT_DESTINATIONS_FILE), else `destinations.toml` in the working directory, else
    in dlt's project directory ($DLT_PROJECT_DIR, where dlt finds `.dlt/` too)."""
    if explicit := dlt.config.get(PROFILES_FILE_KEY, str):
        path = Path(explicit)
        if not path.is_file():
            raise ConfigurationError(
                f"{PROFILES_FILE_KEY.upper()} points to {path}, which is not a file; fix or "
                "unset it."
            )
        return path
    candidates = [Path.cwd() / PROFILES_FILE,
                  Path(dlt.current.run_context().run_dir) / PROFILES_FILE]
    return next((path for path in candidates if path.is_file()), None)


def load_profiles(path: Path | None = None) -> dict[str, DestinationProfile]:
    """The built-in profiles, updated with those of the user's file (`path`, else the one
    `profiles_file` finds): a user's profile replaces the built-in one of its name."""
    builtin = resources.files("leadrat_source").joinpath(PROFILES_FILE)
    profiles = _parse_profiles(builtin.read_text(), f"the built-in {PROFILES_FILE}")
    path = path or profiles_file()
    if path is not None:
        profiles.update(_parse_profiles(path.read_text(), str(path)))
    return profiles


def _parse_profiles(text: str, path: str) -> dict[str, DestinationProfile]:
    """The profiles of one file's text; `path` names it in errors."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigurationError(f"{path} is not valid TOML: {error}") from None
    profiles = {}
    for name, table in raw.items():
        if not isinstance(table, dict) or "destination_type" not in table:
            raise ConfigurationError(
                f"profile [{name}] in {path} needs destination_type = \"duckdb\" | \"postgres\" "
                "| \"bigquery\" | \"snowflake\" | another dlt destination"
            )
        settings = dict(table)
        for key in ("credentials", "password"):
            # a DuckDB "credential" is just a file path; anything else is a secret
            if settings.get(key) and settings["destination_type"] != "duckdb":
                raise ConfigurationError(
                    f"profile [{name}] in {path} holds '{key}': secrets do not belong in "
                    f"{PROFILES_FILE}; set DESTINATION__{name.upper()}__CREDENTIALS instead"
                )
        file_format = settings.pop("loader_file_format", None)
        if file_format is not None and file_format not in LOADER_FILE_FORMATS:
            raise ConfigurationError(
                f"profile [{name}] in {path}: loader_file_format {file_format!r} is not one of "
                f"{', '.join(sorted(LOADER_FILE_FORMATS))}"
            )
        profiles[name] = DestinationProfile(
            name=name,
            destination_type=settings.pop("destination_type"),
            loader_file_format=file_format,
            dataset_name=settings.pop("dataset_name", None),
            settings=settings,
        )
    return profiles


def get_profile(name: str | None) -> DestinationProfile:
    """The profile `name` (a flag), else `[leadrat] destination` of dlt's config, else
    duckdb; or a clear error listing the ones there are."""
    profiles = load_profiles()
    name = name or dlt.config.get(DESTINATION_KEY, str) or DEFAULT_PROFILE
    if name not in profiles:
        raise ConfigurationError(
            f"unknown destination profile {name!r}; known profiles: {', '.join(sorted(profiles))} "
            f"(add one to {PROFILES_FILE})"
        )
    return profiles[name]
