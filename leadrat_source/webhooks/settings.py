"""The receiver's settings, the dlt way (`[sources.leadrat]`, `SOURCES__LEADRAT__...`).

The signing secret is `sources.leadrat.webhook_secret` (`.dlt/secrets.toml` or
`SOURCES__LEADRAT__WEBHOOK_SECRET`); `LEADRAT_WEBHOOK_SECRET` is accepted too, the name
LeadRat's dashboard suggests (a top-level dlt secret, so dlt reads that variable as well).
Several secrets, comma-separated, during a rotation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dlt
from dlt.common.configuration.inject import with_config
from dlt.common.configuration.specs import known_sections
from dlt.common.typing import TSecretStrValue

from leadrat_source.contract import WEBHOOK_TOLERANCE_SECONDS
from leadrat_source.custom_fields import COLUMNS_AND_OVERFLOW, CustomFieldsConfig
from leadrat_source.errors import ConfigurationError

#: The dashboard's name for the secret: a top-level dlt secret, so LEADRAT_WEBHOOK_SECRET.
DASHBOARD_SECRET_KEY = "leadrat_webhook_secret"
#: LeadRat retries a delivery for up to 3 days; ids are remembered a day longer.
DEFAULT_DEDUP_DAYS = 4.0
DEFAULT_FLUSH_SECONDS = 5.0
DEFAULT_FLUSH_EVENTS = 5_000
#: Largest body accepted; a lead event is a few KB.
MAX_BODY_BYTES = 1024 * 1024


@dataclass(frozen=True)
class ReceiverSettings:
    secrets: tuple[str, ...]
    tolerance_seconds: float = WEBHOOK_TOLERANCE_SECONDS
    flush_seconds: float = DEFAULT_FLUSH_SECONDS
    flush_events: int = DEFAULT_FLUSH_EVENTS
    dedup_days: float = DEFAULT_DEDUP_DAYS
    delete_mode: str = "soft"
    history: bool = False
    custom_fields: CustomFieldsConfig = field(default_factory=CustomFieldsConfig)

    def __repr__(self) -> str:  # never print the secrets
        return (f"ReceiverSettings(secrets=<{len(self.secrets)}>, "
                f"tolerance_seconds={self.tolerance_seconds}, flush_seconds={self.flush_seconds}, "
                f"flush_events={self.flush_events}, dedup_days={self.dedup_days})")


def split_secrets(value: str) -> tuple[str, ...]:
    return tuple(secret.strip() for secret in value.split(",") if secret.strip())


@with_config(sections=(known_sections.SOURCES, "leadrat"))
def receiver_settings(
    webhook_secret: TSecretStrValue | None = dlt.secrets.value,
    webhook_tolerance_seconds: float = WEBHOOK_TOLERANCE_SECONDS,
    webhook_flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    webhook_flush_events: int = DEFAULT_FLUSH_EVENTS,
    webhook_dedup_days: float = DEFAULT_DEDUP_DAYS,
    delete_mode: str = "soft",
    history: bool = False,
    custom_fields: str = COLUMNS_AND_OVERFLOW,
    custom_field_columns: list[str] | None = None,
    leads_max_columns: int | None = None,
) -> ReceiverSettings:
    """The settings from dlt's config; a clear error when no secret is configured."""
    secrets = split_secrets(webhook_secret or dlt.secrets.get(DASHBOARD_SECRET_KEY, str) or "")
    if not secrets:
        raise ConfigurationError(
            "No webhook signing secret: set sources.leadrat.webhook_secret in .dlt/secrets.toml "
            f"or the environment variable SOURCES__LEADRAT__WEBHOOK_SECRET (or "
            f"{DASHBOARD_SECRET_KEY.upper()}); "
            "during a rotation give both secrets, comma-separated."
        )
    if history:
        raise ConfigurationError(
            "sources.leadrat.history=true keeps `leads` as SCD2, which the webhook receiver "
            "does not write; every event is in `lead_events` instead. Run the receiver into a "
            "dataset whose loads keep history off."
        )
    if webhook_tolerance_seconds <= 0 or webhook_flush_seconds <= 0 or webhook_flush_events < 1:
        raise ConfigurationError(
            "webhook_tolerance_seconds and webhook_flush_seconds must be > 0 and "
            "webhook_flush_events >= 1 (sources.leadrat)"
        )
    return ReceiverSettings(
        secrets=secrets,
        tolerance_seconds=webhook_tolerance_seconds,
        flush_seconds=webhook_flush_seconds,
        flush_events=webhook_flush_events,
        dedup_days=webhook_dedup_days,
        delete_mode=delete_mode,
        history=history,
        # the same custom field columns as the scheduled load writes into `leads`
        custom_fields=CustomFieldsConfig.from_settings(
            custom_fields, custom_field_columns, leads_max_columns),
    )


def default_journal_path(profile: str, dataset: str) -> Path:
    """One journal per destination profile and dataset, where dlt keeps pipeline data
    (`DLT_DATA_DIR`, else dlt's global folder)."""
    return Path(dlt.current.run_context().data_dir) / "webhooks" / f"{profile}__{dataset}.sqlite"
