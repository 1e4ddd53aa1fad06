"""The breakage drill (`make breakages`): break one feature at a time, on purpose, and check
that the tests meant to guard it fail.

Each breakage is a textual substitution in one source file, applied in a temporary copy of
the checkout (the checkout itself is never touched), after which the breakage's tests run
there. A breakage whose tests still pass is reported as MISSED: the suite would not notice
that feature breaking. A pattern that no longer matches the source exactly once stops the
drill with the breakage's name, so the drill cannot rot silently when the code changes.

    python tests/breakages.py                      # every breakage
    python tests/breakages.py --only lookback-zero # some of them
    python tests/breakages.py --tests-from REF     # the same breakages, judged by the tests
                                                   # of git commit REF (before/after figures)
    python tests/breakages.py --list

Not part of `make test`: it runs the guarding tests once per breakage (several minutes).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv*", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    "*.duckdb", "*.egg-info", "build", "dist",
)


@dataclass(frozen=True)
class Breakage:
    """Replace `old` (which must occur exactly once) by `new` in `path`; `tests` must fail."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


BREAKAGES = (
    Breakage(
        "finish-interrupted-always-discards",
        "leadrat_source/warehouse_pipeline.py",
        "        pipeline.normalize()\n        pipeline.load()\n",
        "        raise RuntimeError('breakage drill: discard what the killed run left')\n",
        ("tests/test_kill_resume.py",),
    ),
    Breakage(
        "normalize-commit-not-completed",
        "leadrat_source/warehouse_pipeline.py",
        "    _finish_normalize_commits(pipeline)\n",
        "",
        ("tests/test_kill_resume.py::test_first_run_killed_at_a_commit_instant_is_completed_by_the_next_run",),
    ),
    Breakage(
        "killed-first-run-package-schema-not-adopted",
        "leadrat_source/warehouse_pipeline.py",
        "    _adopt_package_schema(pipeline)\n",
        "",
        ("tests/test_kill_resume.py::test_first_run_killed_at_a_commit_instant_is_completed_by_the_next_run",),
    ),
    Breakage(
        "quota-resume-point-ignored",
        "leadrat_source/source.py",
        '        cursor_state["last_value"] = progress.resume_point\n',
        "",
        ("tests/test_load_duckdb.py::test_a_spent_daily_quota_keeps_what_was_read_and_the_next_run_resumes",
         "tests/test_quota_days.py::test_a_first_load_over_several_days_reads_each_page_once_and_uses_each_days_cap"),
    ),
    Breakage(
        "quota-unread-ranges-forgotten",
        "leadrat_source/source.py",
        "        resource_state[SCAN_PROGRESS_KEY] = progress.as_state()\n",
        "",
        ("tests/test_quota_days.py", "tests/test_load_duckdb.py::test_a_spent_daily_quota_keeps_what_was_read_and_the_next_run_resumes"),
    ),
    Breakage(
        "no-catch-up-pass",
        "leadrat_source/lead_scan.py",
        "    catch_up_passes: int = 4\n",
        "    catch_up_passes: int = 0\n",
        ("tests/test_drift.py",),
    ),
    Breakage(
        "repeated-cursor-followed",
        "leadrat_source/pagination.py",
        "        if page.next_cursor in fetched:\n",
        "        if False:\n",
        ("tests/test_pagination.py",),
    ),
    Breakage(
        "cursor-cycle-followed",
        "leadrat_source/pagination.py",
        "        fetched.add(cursor)\n",
        "        fetched = {cursor}\n",
        ("tests/test_pagination.py::test_iter_pages_refuses_a_cursor_cycle",
         "tests/test_pagination.py::test_the_lead_scan_refuses_a_cursor_cycle"),
    ),
    Breakage(
        "load-collects-garbage-at-python-defaults",
        "leadrat_source/load.py",
        "    with open_client(client) as opened, fewer_collections():\n",
        "    with open_client(client) as opened:\n",
        ("tests/test_load_duckdb.py::test_a_load_collects_garbage_rarely_and_gives_the_collector_back",),
    ),
    Breakage(
        "collector-left-frozen-after-a-load",
        "leadrat_source/gc_pause.py",
        "        gc.unfreeze()\n",
        "        pass\n",
        ("tests/test_load_duckdb.py::test_a_load_collects_garbage_rarely_and_gives_the_collector_back",),
    ),
    Breakage(
        "part-cut-by-an-even-spread-in-time",
        "leadrat_source/range_reader.py",
        "count_leads=self._count):",
        "count_leads=None):",
        ("tests/test_load_duckdb.py::test_a_huge_first_load_runs_as_several_bounded_loads",),
    ),
    Breakage(
        "lock-wait-counted-from-the-run-start",
        "leadrat_source/warehouse_lock.py",
        "        deadline: float | None = None  # counted from the first lock met, not the run's start\n",
        "        deadline: float | None = time.monotonic() + wait_seconds\n",
        ("tests/test_load_duckdb.py::test_a_run_longer_than_the_lock_wait_still_waits_for_a_lock_met_at_its_end",),
    ),
    Breakage(
        "duckdb-lock-at-sync-not-waited",
        "leadrat_source/warehouse_lock.py",
        'if (error.step not in ("sync", "load")',
        'if (error.step not in ("load",)',
        ("tests/test_cli.py::test_a_load_started_while_another_process_holds_the_duckdb_file_waits_for_it",),
    ),
    Breakage(
        "receivers-share-a-working-folder",
        "leadrat_source/webhooks/server.py",
        "        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)\n",
        "        pass\n",
        ("tests/test_webhooks_cli.py::test_a_second_receiver_on_the_same_dlt_data_folder_is_refused",),
    ),
    Breakage(
        "receiver-stages-with-the-load",
        "leadrat_source/webhooks/flusher.py",
        "            staging_dataset_layout=receiver_staging_layout(spec.journal_path))\n",
        "            staging_dataset_layout=None)\n",
        ("tests/test_webhooks_durability.py::test_two_receivers_with_their_own_journals_land_an_event_once",
         "tests/test_webhooks_durability.py::test_a_receiver_does_not_load_between_another_ones_staging_and_merge"),
    ),
    Breakage(
        "interrupted-load-resumed-job-by-job",
        "leadrat_source/warehouse_pipeline.py",
        "    _restart_interrupted_loads(pipeline)\n",
        "    pass\n",
        ("tests/test_kill_resume.py::test_a_load_job_killed_after_its_commit_is_run_again_without_a_row_twice",
         "tests/test_webhooks_sandbox.py::test_receiver_killed_at_a_commit_instant_of_its_first_flush_is_completed_by_its_restart"),
    ),
    Breakage(
        "lead-tags-staged-twice-kept-twice",
        "leadrat_source/source.py",
        '            primary_key=["lead_id", "tag"],\n',
        "            primary_key=[],\n",
        ("tests/test_own_pipeline.py::test_a_run_killed_after_a_tag_job_committed_is_completed_exactly_by_dlts_resume",),
    ),
    Breakage(
        "lead-tags-old-tags-kept",
        "leadrat_source/lead_order.py",
        '"destination_scope": f"lead_id IN ({staged} WHERE {condition})"}',
        '"destination_scope": "1 = 0"}',
        ("tests/test_load_duckdb.py", "tests/test_webhooks_deliveries.py"),
    ),
    Breakage(
        "catch-up-loads-a-second-version",
        "leadrat_source/lead_scan.py",
        'if lead["id"] in self._delivered:',
        "if False:",
        ("tests/test_drift.py",),
    ),
    Breakage(
        "daily-total-spread-until-midnight",
        "leadrat_source/pacing.py",
        "        if reset - time.time() > self._horizon:\n",
        "        if False:\n",
        # the multi-day load test catches it too, but only at pytest's timeout (17 min)
        ("tests/test_quota_days.py::test_the_days_last_requests_are_used_not_spread_until_midnight",),
    ),
    Breakage(
        "pacer-twice-as-slow",
        "leadrat_source/pacing.py",
        "available = self._remaining - self._in_flight",
        "available = self._remaining // 2 - self._in_flight",  # half of each window used
        ("tests/test_pacing.py",
         "tests/test_load_duckdb.py::test_a_load_at_the_plan_limit_uses_the_budget_without_429s"),
    ),
    Breakage(
        "retry-after-ignored",
        "leadrat_source/retrying.py",
        "            seconds = max(seconds, hint)",
        "            pass",
        ("tests/test_client_retries.py::test_retry_after_is_honoured_with_the_production_backoff",
         "tests/test_own_pipeline.py::test_a_429_in_a_users_pipeline_is_retried_when_retry_after_says"),
    ),
    Breakage(
        "retried-page-dropped",
        "leadrat_source/transport.py",
        "                    return self._sender.attempt(method, path, query, payload, number)",
        "                    answer = self._sender.attempt(method, path, query, payload, number)\n"
        "                    if number > 1 and isinstance(answer, dict) and 'data' in answer:\n"
        "                        answer = {**answer, 'data': []}\n"
        "                    return answer",
        ("tests/test_load_duckdb.py::test_faults_during_a_load_lose_or_duplicate_nothing",),
    ),
    Breakage(
        "tags-marker-row-not-sent",
        "leadrat_source/lead_tables.py",
        'sorted(set(tags)) if (tags := lead.get("tags")) else [""]',
        'sorted(set(lead.get("tags") or ()))',
        ("tests/test_lead_tables.py",
         "tests/test_load_duckdb.py::test_first_load_then_churn_is_exact_and_costs_only_changed_pages"),
    ),
    Breakage(
        "partial-run-reported-as-complete",
        "leadrat_source/run_report.py",
        "    parts = unread_parts(pipeline)\n",
        "    parts: list[UnreadPart] = []\n",
        ("tests/test_own_pipeline.py::test_quota_cut_run_warns_fails_the_caller_and_the_next_run_completes",
         "tests/test_own_pipeline.py::test_huge_first_load_stops_at_max_leads_per_run_warns_and_goes_on"),
    ),
    Breakage(
        "lookback-zero",
        "leadrat_source/source.py",
        "        lag=lookback_seconds,\n",
        "        lag=0,\n",
        ("tests/test_load_duckdb.py::test_a_late_commit_within_the_lookback_is_picked_up_by_the_next_run",),
    ),
    Breakage(
        "reverse-sync-ledger-never-records",
        "leadrat_source/reverse_sync/ledger.py",
        "        self._confirmed.append(\n",
        "        [].append(\n",
        ("tests/test_reverse_sync.py", "tests/test_reverse_sync_resume.py"),
    ),
    Breakage(
        "webhook-dedup-off",
        "leadrat_source/webhooks/journal.py",
        "is_new = cursor.rowcount == 1",
        "is_new = True",
        ("tests/test_webhooks_deliveries.py::test_duplicate_is_acknowledged_and_stored_once",),
    ),
    Breakage(
        "webhook-older-state-overwrites",
        "leadrat_source/lead_order.py",
        '    return (\n        f"NOT EXISTS',
        '    return "1 = 1" or (\n        f"NOT EXISTS',
        ("tests/test_webhooks_deliveries.py::test_older_event_arriving_later_never_overwrites_the_newer_state",),
    ),
    Breakage(
        "webhook-future-timestamps-accepted",
        "leadrat_source/webhooks/signature.py",
        "if parsed.timestamp > now + self.tolerance_seconds:",
        "if False:",
        ("tests/test_webhooks_deliveries.py::test_timestamp_tolerance_is_two_sided",),
    ),
    Breakage(
        "webhook-killed-commit-not-repaired",
        "leadrat_source/webhooks/flusher.py",
        "            repair_killed_commits(pipeline)\n",
        "",
        ("tests/test_webhooks_sandbox.py::test_receiver_killed_at_a_commit_instant_of_its_first_flush_is_completed_by_its_restart",),
    ),
    Breakage(
        "hard-delete-tombstones-ignored",
        "leadrat_source/lead_order.py",
        'f"({deletion} OR NOT EXISTS',
        'f"(1 = 1 OR NOT EXISTS',
        ("tests/test_webhooks_sandbox.py::test_a_late_event_never_brings_back_a_hard_deleted_lead",),
    ),
    Breakage(
        "full-refresh-ignored",
        "leadrat_source/load.py",
        '{"refresh": "drop_sources"} if self.request.full_refresh else {}',
        "{}",
        ("tests/test_cli.py::test_full_refresh_reloads_everything_and_drops_what_is_not_in_leadrat",),
    ),
    Breakage(
        "dataset-flag-ignored",
        "leadrat_source/warehouse_pipeline.py",
        "dataset_name=profile.dataset(dataset),",
        "dataset_name=profile.dataset(None),",
        ("tests/test_cli.py::test_since_until_and_dataset_load_a_window_into_another_dataset",),
    ),
    Breakage(
        "analytics-window-31-days",
        "leadrat_source/source.py",
        "dt.timedelta(days=settings.ANALYTICS_DAYS - 1)",
        "dt.timedelta(days=settings.ANALYTICS_DAYS)",
        ("tests/test_load_duckdb.py::test_analytics_of_the_last_30_days_match_the_sandbox_and_a_rerun_replaces_the_day",),
    ),
    # exact values, history versions, commands that tell the truth (issue 9)
    Breakage(
        "postgres-loads-csv-empty-strings-become-null",
        "leadrat_source/destinations.toml",
        'loader_file_format = "parquet"\n\n[bigquery]',
        'loader_file_format = "csv"\n\n[bigquery]',
        ("tests/test_load_postgres.py::test_first_load_and_churn_are_exact_with_new_columns",),
    ),
    Breakage(
        "postgres-password-required",
        "leadrat_source/destinations.py",
        'OWN_FACTORIES = {"postgres": "leadrat_source.postgres.postgres"}',
        "OWN_FACTORIES: dict[str, str] = {}",
        ("tests/test_postgres_login.py",),
    ),
    Breakage(
        "a-bool-column-takes-0-and-1",
        "leadrat_source/lead_tables.py",
        "        if isinstance(value, bool):\n            return value\n",
        "        if isinstance(value, (bool, int)):\n            return bool(value)\n",
        ("tests/test_history_versions.py",),
    ),
    Breakage(
        "history-version-hashes-the-batch-row",
        "leadrat_source/lead_history.py",
        "[row_version(lead) for lead in leads]",
        "[row_version(row) for row in table.to_pylist()]",
        ("tests/test_history_versions.py",),
    ),
    Breakage(
        "dry-run-writes-its-run-row",
        "leadrat_source/reverse_sync/sync.py",
        "recorded = not self.request.dry_run and summary.status",
        "recorded = summary.status",
        ("tests/test_reverse_sync.py::test_dry_run_sends_nothing_and_writes_nothing",),
    ),
    Breakage(
        "check-probes-write-by-default",
        "leadrat_source/check.py",
        "scope = key_scope(client) if probe_write else None",
        "scope = key_scope(client)",
        ("tests/test_status_and_check.py::test_check_sends_only_reads_unless_asked_to_probe_write",),
    ),
    Breakage(
        "status-lists-the-ledger-loads",
        "leadrat_source/status.py",
        '.where("schema_name", "eq", pipeline.default_schema_name)',
        "",
        ("tests/test_status_and_check.py::test_status_without_the_pipeline_folder_reads_the_warehouse_and_lists_only_loads",),
    ),
    # wide accounts (issue 14)
    Breakage(
        "column-budget-ignores-existing-columns",
        "leadrat_source/custom_fields.py",
        "self._columns: set[str] = set(known_columns)",
        "self._columns: set[str] = set()",
        ("tests/test_wide_accounts.py::test_wide_account_first_and_incremental_loads_keep_every_value_once[duckdb-wider]",),
    ),
    Breakage(
        "overflow-values-dropped",
        "leadrat_source/lead_tables.py",
        "        fields[key] = value\n",
        "        pass\n",
        ("tests/test_wide_accounts.py::test_wide_account_first_and_incremental_loads_keep_every_value_once[duckdb-wider]",),
    ),
    Breakage(
        "custom-field-column-not-sticky",
        "leadrat_source/custom_fields.py",
        "        if column in self._columns or self._claim(column, key):",
        "        if self._claim(column, key):",
        ("tests/test_wide_accounts.py::test_wide_account_first_and_incremental_loads_keep_every_value_once[duckdb-wider]",),
    ),
    Breakage(
        "overflow-warning-silenced",
        "leadrat_source/custom_fields.py",
        "        if not self.crowded_out:\n            return",
        "        if True:\n            return",
        ("tests/test_wide_accounts.py::test_wide_account_first_and_incremental_loads_keep_every_value_once[duckdb-wider]",),
    ),
    Breakage(
        "data-dictionary-not-written",
        "leadrat_source/custom_fields.py",
        "                column[KEY_HINT] = key\n",
        "                pass\n",
        ("tests/test_wide_accounts.py::test_wide_account_first_and_incremental_loads_keep_every_value_once[duckdb-room-left]",),
    ),
    Breakage(
        "reverse-sync-ignores-json-custom-fields",
        "leadrat_source/reverse_sync/columns.py",
        "            given.update(custom_fields_object(row[column], column))",
        "            pass",
        ("tests/test_reverse_sync_columns.py",
         "tests/test_wide_accounts.py::test_reverse_sync_pushes_custom_fields_from_a_column_and_the_overflow[duckdb]"),
    ),
    Breakage(
        "unknown-lead-fields-dropped",
        "leadrat_source/lead_tables.py",
        "        extra_keys = set().union(*leads) - _NOT_EXTRA_KEYS\n",
        "        extra_keys: set[str] = set()\n",
        ("tests/test_load_shape_changes.py",),
    ),
    Breakage(
        "removed-pipeline-kept",
        "leadrat_source/source.py",
        'name="pipelines", write_disposition="replace"',
        'name="pipelines", write_disposition="merge"',
        ("tests/test_load_shape_changes.py::test_a_removed_pipeline_leaves_the_warehouse",),
    ),
)


@dataclass(frozen=True)
class Verdict:
    breakage: Breakage
    outcome: str  # "caught", "MISSED" or "ERROR (...)"
    seconds: float


def copy_checkout(tests_from: str | None) -> Path:
    """A temporary copy of the checkout; with `tests_from`, its tests/ from that commit."""
    copy = Path(tempfile.mkdtemp(prefix="leadrat-breakages-")) / "checkout"
    # links stay links: the top-level destinations.toml must show the breakage patched into
    # the package's file, not an unpatched copy of it
    shutil.copytree(ROOT, copy, symlinks=True, ignore=IGNORED)
    if tests_from:
        shutil.rmtree(copy / "tests")
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", tests_from, "tests"],
                                 check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(copy)], input=archive, check=True)
    return copy


def apply(copy: Path, breakage: Breakage) -> str:
    """Apply the breakage to the copy; returns the file's original text to restore."""
    target = copy / breakage.path
    original = target.read_text()
    found = original.count(breakage.old)
    if found != 1:
        raise SystemExit(
            f"breakage {breakage.name!r}: the pattern occurs {found} times in {breakage.path} "
            f"(expected once); update it in tests/breakages.py:\n{breakage.old}"
        )
    target.write_text(original.replace(breakage.old, breakage.new))
    return original


def run_tests(copy: Path, breakage: Breakage, log_dir: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(copy)}
    log = log_dir / f"{breakage.name}.log"
    with log.open("w") as output:
        code = subprocess.run(
            [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
             *breakage.tests],
            cwd=copy, env=env, stdout=output, stderr=subprocess.STDOUT, check=False,
        ).returncode
    if code == 1:
        return "caught"
    if code == 0:
        return "MISSED"
    return f"ERROR (pytest exit {code}, see {log})"


def drill(breakages: list[Breakage], tests_from: str | None) -> list[Verdict]:
    copy = copy_checkout(tests_from)
    log_dir = copy.parent / "logs"
    log_dir.mkdir()
    print(f"checkout copied to {copy}; pytest logs in {log_dir}", flush=True)
    verdicts = []
    try:
        for breakage in breakages:
            original = apply(copy, breakage)
            started = time.monotonic()
            try:
                outcome = run_tests(copy, breakage, log_dir)
            finally:
                (copy / breakage.path).write_text(original)
            verdicts.append(Verdict(breakage, outcome, time.monotonic() - started))
            print(f"{outcome:>8}  {breakage.name}  ({verdicts[-1].seconds:.0f} s)", flush=True)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return verdicts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these breakages")
    parser.add_argument("--tests-from", metavar="REF",
                        help="judge with the tests/ folder of this git commit")
    parser.add_argument("--list", action="store_true", help="list the breakages and exit")
    args = parser.parse_args(argv)
    chosen = [b for b in BREAKAGES if not args.only or b.name in args.only]
    unknown = set(args.only or ()) - {b.name for b in BREAKAGES}
    if unknown:
        parser.error(f"unknown breakage(s): {', '.join(sorted(unknown))}")
    if args.list:
        for breakage in chosen:
            print(f"{breakage.name}: {breakage.path}; guarded by {' '.join(breakage.tests)}")
        return 0
    verdicts = drill(chosen, args.tests_from)
    caught = sum(v.outcome == "caught" for v in verdicts)
    print(f"\n{caught} of {len(verdicts)} breakages caught")
    for verdict in verdicts:
        if verdict.outcome != "caught":
            print(f"  {verdict.outcome}: {verdict.breakage.name} "
                  f"({verdict.breakage.path}; tests {' '.join(verdict.breakage.tests)})")
    return 0 if caught == len(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
