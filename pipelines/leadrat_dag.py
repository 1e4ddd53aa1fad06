"""Airflow 3 DAG `leadrat`: each hour, load the leads updated in the hour's data interval,
then push warehouse lead scores back into LeadRat.

- The load runs in dlt's `PipelineTasksGroup`. The data interval is the `updated_at`
  window (`external_scheduler=True`), so a backfill or a cleared past run loads exactly
  its interval; the analytics snapshot is the interval's start date.
- dlt's state is not kept on the worker: the group runs each task in a fresh temporary
  pipelines folder and wipes it afterwards (`wipe_local_data=True`); dlt restores the
  pipeline state and schema from the destination at the start of every run. An interval
  run does not need the state anyway: its window comes from Airflow.
- `reverse_sync` runs after a successful load and is skipped, with the reason in its log,
  while the dataset has no `lead_scores` table (nothing to push yet).

Configuration, read when the file is parsed and when tasks run (set it in the
environment of the scheduler, DAG processor and workers, or in `.dlt/` in the DAGs
folder, where dlt's helper points DLT_PROJECT_DIR):
- SOURCES__LEADRAT__API_KEY (secret), SOURCES__LEADRAT__BASE_URL;
- LEADRAT__DESTINATION: a profile of destinations.toml (default `duckdb`), whose
  credentials resolve as usual (DESTINATION__<PROFILE>__CREDENTIALS);
- LEADRAT__DATASET: the dataset (default: the profile's, else `leadrat`);
- for DuckDB, DESTINATION__DUCKDB__CREDENTIALS must be an absolute file path: the group
  points dlt's local directory at its temporary folder, where a relative file would be
  lost after each run.
A configuration or authentication problem fails the task at once, without retries.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from typing import cast

import dlt
from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from dlt.common.destination import TLoaderFileFormat
from dlt.common.destination.exceptions import DestinationUndefinedEntity
from dlt.extract import DltSource
from dlt.helpers.airflow_helper import PipelineTasksGroup

from leadrat_source.cli import EXIT_AUTH, EXIT_USAGE, exit_code_for
from leadrat_source.destinations import DestinationProfile, get_profile
from leadrat_source.load import LoadRequest, make_pipeline
from leadrat_source.reverse_sync import ReverseSyncRequest, run_reverse_sync
from leadrat_source.source import leadrat_source, make_client

log = logging.getLogger("leadrat_source.airflow")

#: The table the reverse sync reads (leadrat_source/reverse_sync/reader.py).
LEAD_SCORES_TABLE = "lead_scores"


def fail_fast_on_bad_setup(error: BaseException) -> BaseException:
    """Retrying cannot fix a configuration or authentication error: fail the task now."""
    if exit_code_for(error) in (EXIT_USAGE, EXIT_AUTH):
        return AirflowFailException(str(error))
    return error


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
            f"the DuckDB file ({now}): under Airflow a relative path lands in the task's "
            "temporary folder and is lost after the run"
        )


def interval_source() -> DltSource:
    """The source for the running task's data interval (called when the task runs, so
    neither the API key nor the interval is needed to parse the DAG). Bad credentials
    fail here, before dlt starts and wraps errors in its own."""
    interval_start = get_current_context()["data_interval_start"]
    try:
        with make_client() as client:
            # one lead: a wrong or revoked key fails the task now instead of after retries
            client.leads.list_page(per_page=1)
        return leadrat_source(
            external_scheduler=True,
            snapshot_date=dt.date(interval_start.year, interval_start.month, interval_start.day),
        )
    except Exception as error:
        raise fail_fast_on_bad_setup(error) from error


def lead_scores_exist(profile: DestinationProfile, dataset_name: str) -> bool:
    dataset = dlt.dataset(profile.destination(), dataset_name)
    with dataset.sql_client as client:
        table = client.make_qualified_table_name(LEAD_SCORES_TABLE)
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
    # The group must exist before dlt.pipeline(): it sets dlt's data folder for the run.
    group = PipelineTasksGroup("leadrat_load", use_data_folder=False, wipe_local_data=True)
    profile = get_profile(dlt.config.get("leadrat.destination"))
    request = LoadRequest(destination=profile.name, dataset=dlt.config.get("leadrat.dataset"))
    pipeline = make_pipeline(request, profile)
    load = group.add_run(
        pipeline,
        interval_source,
        decompose="none",
        loader_file_format=cast(TLoaderFileFormat, profile.loader_file_format),
        on_before_run=lambda: check_duckdb_file(profile),
    )

    @task(task_id="reverse_sync")
    def reverse_sync() -> None:
        if not lead_scores_exist(profile, pipeline.dataset_name):
            raise AirflowSkipException(
                f"no {LEAD_SCORES_TABLE} table in dataset {pipeline.dataset_name!r} of "
                f"{profile.name}: nothing to push back yet (create it with your scoring model)"
            )
        try:
            summary = run_reverse_sync(
                ReverseSyncRequest(destination=profile.name, dataset=pipeline.dataset_name)
            )
        except Exception as error:
            raise fail_fast_on_bad_setup(error) from error
        for line in summary.lines():
            log.info("%s", line)

    load[-1] >> reverse_sync()


leadrat()
