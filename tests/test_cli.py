"""`leadrat` as a user runs it: a real process, real HTTP to the sandbox, exit codes and messages."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from leadrat_process import cli_env, leadrat

from leadrat_source.sandbox import Sandbox


@pytest.fixture
def env_for(tmp_path: Path) -> Callable[..., dict[str, str]]:
    def make(server: Sandbox | None = None, **extra: str) -> dict[str, str]:
        return cli_env(tmp_path, server, **extra)

    return make


def test_load_prints_a_summary_and_exits_0(sandbox: Sandbox, env_for: Any, tmp_path: Path) -> None:
    result = leadrat("load", env=env_for(sandbox), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "leads=1000" in result.stdout and "requests:" in result.stdout
    status = leadrat("status", env=env_for(sandbox), cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "leads=1000" in status.stdout and "cursor (updated_at): 20" in status.stdout


def test_missing_key_is_a_configuration_error(env_for: Any, tmp_path: Path) -> None:
    result = leadrat("load", env=env_for(SOURCES__LEADRAT__BASE_URL="http://127.0.0.1:9"),
                     cwd=tmp_path)
    assert result.returncode == 2
    assert "SOURCES__LEADRAT__API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_wrong_key_is_an_authentication_error_that_hides_the_key(
    sandbox: Sandbox, env_for: Any, tmp_path: Path
) -> None:
    wrong = "lr_test_not_a_real_key_0123456789"
    result = leadrat("load", env=env_for(sandbox, SOURCES__LEADRAT__API_KEY=wrong), cwd=tmp_path)
    assert result.returncode == 3
    assert "api_key" in result.stderr.lower()
    assert wrong not in result.stderr + result.stdout


def test_unreachable_host_fails_clearly(env_for: Any, tmp_path: Path) -> None:
    result = leadrat(
        "load",
        env=env_for(SOURCES__LEADRAT__BASE_URL="http://127.0.0.1:9",
                    SOURCES__LEADRAT__API_KEY="lr_test_x"),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "127.0.0.1:9" in result.stderr
    assert "Traceback" not in result.stderr


def test_plain_http_to_a_remote_host_is_refused(env_for: Any, tmp_path: Path) -> None:
    result = leadrat(
        "check",
        env=env_for(SOURCES__LEADRAT__BASE_URL="http://api.crm.builder.leadratd.com",
                    SOURCES__LEADRAT__API_KEY="lr_test_x"),
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "https://" in result.stderr


def test_unknown_resource_and_unknown_destination_name_the_valid_ones(
    sandbox: Sandbox, env_for: Any, tmp_path: Path
) -> None:
    resource = leadrat("load", "--resources", "leads,deals", env=env_for(sandbox), cwd=tmp_path)
    assert resource.returncode == 2
    assert "deals" in resource.stderr and "pipelines" in resource.stderr
    destination = leadrat("load", "--destination", "redshift", env=env_for(sandbox), cwd=tmp_path)
    assert destination.returncode == 2
    assert "redshift" in destination.stderr and "postgres" in destination.stderr


def test_missing_destination_credentials_name_the_setting(
    sandbox: Sandbox, env_for: Any, tmp_path: Path
) -> None:
    result = leadrat("check", "--destination", "postgres", env=env_for(sandbox), cwd=tmp_path)
    assert result.returncode == 2
    assert "DESTINATION__POSTGRES__CREDENTIALS" in result.stderr


def test_spent_daily_quota_exits_4_and_the_next_run_resumes(
    make_sandbox: Callable[..., Sandbox], env_for: Any, tmp_path: Path
) -> None:
    server = make_sandbox(leads=500, daily_cap=3)
    result = leadrat("load", env=env_for(server), cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    assert "quota" in result.stderr.lower() and "reset" in result.stderr.lower()


def test_check_reports_scope_plan_and_budget(
    make_sandbox: Callable[..., Sandbox], env_for: Any, tmp_path: Path
) -> None:
    server = make_sandbox(leads=50, plan="growth")
    read = leadrat("check", env=env_for(server), cwd=tmp_path)
    assert read.returncode == 0, read.stderr
    assert "scope read;" in read.stdout and "plan growth" in read.stdout
    write = leadrat("check", env=env_for(server, SOURCES__LEADRAT__API_KEY=server.read_write_key),
                    cwd=tmp_path)
    assert "scope read_write" in write.stdout
    assert server.read_write_key not in write.stdout + write.stderr


def test_json_logs_are_one_object_per_line(env_for: Any, tmp_path: Path) -> None:
    result = leadrat("--log-format", "json", "load",
                     env=env_for(SOURCES__LEADRAT__BASE_URL="http://127.0.0.1:9"), cwd=tmp_path)
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert entries and all({"ts", "level", "message"} <= entry.keys() for entry in entries)
    assert entries[-1]["level"] == "error"
