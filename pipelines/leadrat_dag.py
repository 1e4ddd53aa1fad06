"""Airflow 3 DAG `leadrat`: every hour, load LeadRat into the warehouse, then push
warehouse lead scores back into LeadRat.

- **First deployment needs no manual step.** The load task keeps no dlt state on the
  worker (a temporary pipelines folder per try): dlt restores the state from the
  destination. On an empty warehouse there is none, so the first run loads the
  account's whole history (from `initial_updated_at`) up to now, however old its data
  interval; each later run whose interval the cursor has not passed continues from the
  cursor, so the hours go on from there, and a run after downtime (`catchup=False`
  skips the missed intervals) fills the gap.
- **A re-run or backfill of a past interval** (the cursor is already past the
  interval's end) loads exactly that interval as a window, without moving the cursor:
  `airflow tasks clear leadrat -s <start> -e <end>` or `airflow backfill create ...`.
- **The daily quota runs out during the task:** what was read is loaded and the cursor
  set where the gap-free part ends (the history of a first load is kept too); the task
  does not succeed but goes to `up_for_reschedule` until LeadRat's X-RateLimit-Reset
  (`AirflowRescheduleException`, which spends no retry and holds no worker slot), then
  reads the rest. The next intervals wait behind it (`max_active_runs=1`).
- The analytics snapshot is dated by the data interval's start.
- No task keeps dlt state on the worker: each try works in a temporary pipelines folder
  and dlt restores the state (cursor, reverse-sync ledger) from the destination.
- `reverse_sync` runs after a successful load and is skipped, with the reason in its log,
  while the dataset has no `lead_scores` table (or the table `[leadrat.reverse_sync]`
  names; nothing to push yet).

Configuration, read when the file is parsed and when tasks run (set it in the
environment of the scheduler, DAG processor and workers, or in `.dlt/` in the DAGs
folder, which becomes DLT_PROJECT_DIR unless that is set):
- SOURCES__LEADRAT__API_KEY (secret), SOURCES__LEADRAT__BASE_URL, and any other
  `sources.leadrat` setting (e.g. SOURCES__LEADRAT__MAX_WAIT_SECONDS: a rate-limit reset
  further away than this reschedules the task instead of holding the worker);
- LEADRAT__DESTINATION: a profile of destinations.toml (default `duckdb`), whose
  credentials resolve as usual (DESTINATION__<PROFILE>__CREDENTIALS);
- LEADRAT__DATASET: the dataset (default: the profile's, else `leadrat`);
- LEADRAT__REVERSE_SYNC__<NAME>: the reverse sync's settings (table or query, workers,
  batch_rows, batch_seconds, null_clears);
  these `[leadrat]` settings are the ones `leadrat` and the cron scripts read too;
- for DuckDB, DESTINATION__DUCKDB__CREDENTIALS must be an absolute file path (a relative
  one would land in whatever directory the worker runs in).
A configuration or authentication problem fails the task at once, without retries.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
from pathlib import Path

import dlt
from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task
from airflow.sdk.exceptions import (
    AirflowFailException,
    AirflowRescheduleException,
    AirflowSkipException,
)
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.destination.exceptions import DestinationUndefinedEntity

from leadrat_source.destinations import DestinationProfile, get_profile
from leadrat_source.errors import QuotaExhausted
from leadrat_source.exit_codes import EXIT_AUTH, EXIT_USAGE, exit_code_for
from leadrat_source.load import LoadRequest, run_load
from leadrat_source.reverse_sync import ReverseSyncRequest, run_reverse_sync
from leadrat_source.reverse_sync.reader import DEFAULT_TABLE

log = logging.getLogger("leadrat_source.airflow")

#: X-RateLimit-Reset has whole seconds: come back a little after it.
RESCHEDULE_MARGIN = dt.timedelta(seconds=5)
#: When the API named no reset time, look again after this long.
RESCHEDULE_UNKNOWN_RESET = dt.timedelta(minutes=15)


def use_dags_folder_config() -> None:
    """Read `.dlt/` from the DAGs folder unless DLT_PROJECT_DIR says otherwise (what dlt's
    own Airflow helper does: set the variable, then have dlt reload its config providers)."""
    if "DLT_PROJECT_DIR" not in os.environ:
        os.environ["DLT_PROJECT_DIR"] = str(Path(__file__).resolve().parent)
        Container()[PluggableRunContext].reload_providers()


def fail_fast_on_bad_setup(error: BaseException) -> BaseException:
    """Retrying cannot fix a configuration or authentication error: fail the task now."""
    if exit_code_for(error) in (EXIT_USAGE, EXIT_AUTH):
        return AirflowFailException(str(error))
    return error


def reschedule_after(error: QuotaExhausted) -> AirflowRescheduleException:
    """Come back once LeadRat's quota is back; what was read is already loaded."""
    if error.resets_at is not None:
        when = error.resets_at + RESCHEDULE_MARGIN
    else:
        when = dt.datetime.now(dt.UTC) + RESCHEDULE_UNKNOWN_RESET
    log.warning("%s; rescheduling the load for %s", error, when.isoformat())
    return AirflowRescheduleException(reschedule_date=when)


def check_duckdb_file(profile: DestinationProfile) -> None:
    """A DuckDB profile needs an absolute file path under Airflow (see the module doc)."""
    if profile.destination_type != "duckdb":
        return
    key = f"destination.{profile.name}.credentials"
    path = profile.settings.get("credentials") or dlt.secrets.get(key)
    if not isinstance(path, str) or ("://" not in path and not os.path.isabs(path)):
        now = f"it is {path!r}" if path else "it is unset"
        raise AirflowFailException(
            f"set DESTINATION__{profile.name.upper()}__CREDENTIALS to the absolute path of "
            f"the DuckDB file ({now}): under Airflow a relative path lands in the worker's "
            "working directory, which changes between runs"
        )


def worker_pipelines_dir() -> tempfile.TemporaryDirectory[str]:
    """dlt's pipelines folder for one task try, removed afterwards: no dlt state is kept
    on workers (dlt restores it from the destination), so no worker's stale local state
    (say, of an earlier warehouse) can ever be taken for the warehouse's own."""
    return tempfile.TemporaryDirectory(prefix="leadrat-dlt-")


def load_interval(profile: DestinationProfile, dataset: str | None) -> None:
    """Load the running task's data interval (see the module doc for which window)."""
    context = get_current_context()
    start, end = context["data_interval_start"], context["data_interval_end"]
    if start is None or end is None:
        raise AirflowFailException("the leadrat DAG needs a data interval (a timetable's run)")
    check_duckdb_file(profile)
    with worker_pipelines_dir() as pipelines_dir:
        request = LoadRequest(
            destination=profile.name, dataset=dataset, pipelines_dir=pipelines_dir,
            interval=(start, end), snapshot_date=dt.date(start.year, start.month, start.day),
        )
        try:
            summary = run_load(request)
        except QuotaExhausted as error:
            raise reschedule_after(error) from error
        except Exception as error:
            raise fail_fast_on_bad_setup(error) from error
    for line in summary.lines():
        log.info("%s", line)


def lead_scores_exist(profile: DestinationProfile, dataset_name: str,
                      table_name: str = DEFAULT_TABLE) -> bool:
    """Whether the reverse sync's input table is there (`lead_scores`, or the configured)."""
    dataset = dlt.dataset(profile.destination(), dataset_name)
    with dataset.sql_client as client:
        table = client.make_qualified_table_name(table_name)
        try:
            client.execute_sql(f"SELECT 1 FROM {table} WHERE 1 = 0")
        except DestinationUndefinedEntity:
            return False
    return True


@dag(
    dag_id="leadrat",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=1,  # runs of one pipeline must not overlap (dlt state, reverse sync)
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=5)},
    tags=["leadrat", "dlt"],
)
def leadrat() -> None:
    use_dags_folder_config()
    profile = get_profile(None)  # `[leadrat] destination`, as for `leadrat` and cron
    dataset_name = profile.dataset()

    @task(task_id="load")
    def load() -> None:
        load_interval(profile, dataset_name)

    @task(task_id="reverse_sync")
    def reverse_sync() -> None:
        spec = ReverseSyncRequest().input_spec()  # `[leadrat.reverse_sync]` table or query
        table = spec.table or DEFAULT_TABLE
        if spec.query is None and not lead_scores_exist(profile, dataset_name, table):
            raise AirflowSkipException(
                f"no {table} table in dataset {dataset_name!r} of "
                f"{profile.name}: nothing to push back yet (create it with your scoring model)"
            )
        with worker_pipelines_dir() as pipelines_dir:
            request = ReverseSyncRequest(
                destination=profile.name, dataset=dataset_name, pipelines_dir=pipelines_dir
            )
            try:
                summary = run_reverse_sync(request)
            except Exception as error:
                raise fail_fast_on_bad_setup(error) from error
        for line in summary.lines():
            log.info("%s", line)

    load() >> reverse_sync()


leadrat()
