"""A newcomer's first hour with `leadrat`, over real processes: help and version, the
sandbox's settings pasted into a shell, progress on a terminal and in logs, the closing
JSON line, row counts per table on each destination, Ctrl-C, a missing warehouse password.

Oracles: the sandbox's own data and server-side counters (`leadrat_process.
expected_rows_written`, `/_sandbox/stats`), the package metadata, and a plain HTTP server
recording what the CLI sent.
"""

from __future__ import annotations

import argparse
import http.server
import importlib.metadata
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from leadrat_process import clean_env, cli_env, expected_rows_written, leadrat

from leadrat_source.cli import build_parser
from leadrat_source.sandbox import Sandbox
from leadrat_source.sandbox.cli import READY_LINE

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def json_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stderr.splitlines() if line.strip()]


def rows_of_summary(stdout: str) -> dict[str, int]:
    """`table=count` pairs of the summary's `rows written` line."""
    line = next(line for line in stdout.splitlines() if line.startswith("rows written"))
    return {table: int(count) for table, count in re.findall(r"(\w+)=(\d+)", line)}


def slow_sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """2,000 leads behind 4 requests per second: a load of about 25 requests takes ~6 s."""
    return make_sandbox(leads=2_000, seed=5, plan="growth", rate_limit=4, window_seconds=1.0)


def test_version_is_the_package_version(tmp_path: Path) -> None:
    result = leadrat("--version", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"leadrat {importlib.metadata.version('leadrat-source')}"


@pytest.fixture
def header_recorder() -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A plain HTTP server that answers 401 to everything and records request headers."""
    seen: list[dict[str, str]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(dict(self.headers.items()))
            body = b'{"error": {"code": "invalid_api_key", "message": "no"}}'
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", seen
    server.shutdown()


def test_user_agent_carries_the_package_version(
    header_recorder: tuple[str, list[dict[str, str]]], tmp_path: Path
) -> None:
    url, seen = header_recorder
    result = leadrat("check", env=cli_env(tmp_path, SOURCES__LEADRAT__BASE_URL=url,
                                          SOURCES__LEADRAT__API_KEY="lr_test_x"), cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    version = importlib.metadata.version("leadrat-source")
    assert seen and seen[0]["User-Agent"] == f"leadrat-source/{version}"


@pytest.mark.parametrize("command", ["load", "check", "status", "reverse-sync", "sandbox"])
def test_each_command_has_help_with_examples(command: str, tmp_path: Path) -> None:
    result = leadrat(command, "--help", env={}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    examples = result.stdout.split("examples:", 1)[1]
    assert f"leadrat {command}" in examples


def test_help_shows_defaults_and_every_sandbox_flag_is_explained(tmp_path: Path) -> None:
    def help_text(command: str) -> str:  # one line: argparse wraps to the terminal width
        return " ".join(leadrat(command, "--help", env={}, cwd=tmp_path).stdout.split())

    sandbox = help_text("sandbox")
    for default in ("(default: 8765)", "(default: 10000)", "(default: growth)",
                    "(default: 60.0)"):
        assert default in sandbox
    load = help_text("load")
    assert "(default: duckdb)" in load and "(default: leadrat)" in load
    commands = next(action for action in build_parser()._actions
                    if isinstance(action, argparse._SubParsersAction))
    undocumented = [
        f"{name} {option.option_strings[0]}"
        for name, parser in commands.choices.items()
        for option in parser._actions
        if option.option_strings and not option.help
    ]
    assert not undocumented


def test_log_options_work_after_the_subcommand_and_retries_name_the_host(
    tmp_path: Path
) -> None:
    result = leadrat(
        "load", "--log-format", "json",
        env=cli_env(tmp_path, SOURCES__LEADRAT__BASE_URL="http://127.0.0.1:9",
                    SOURCES__LEADRAT__API_KEY="lr_test_x"),
        cwd=tmp_path,
    )
    entries = json_lines(result.stderr)  # every line is JSON
    retries = [entry["message"] for entry in entries if entry["message"].startswith("Retrying")]
    assert retries and all("http://127.0.0.1:9/leads" in message for message in retries)
    assert entries[-1]["event"] == "run_finished" and entries[-1]["exit_code"] == 1
    assert result.returncode == 1


def test_sandbox_settings_work_pasted_into_a_shell_or_secrets_toml(tmp_path: Path) -> None:
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "leadrat_source.cli", "sandbox", "--port", "0", "--leads", "50"],
        stdout=subprocess.PIPE, text=True, env=clean_env({}),
    )
    try:
        assert sandbox.stdout is not None
        printed = []
        for line in sandbox.stdout:
            printed.append(line)
            if line.strip() == READY_LINE:
                break
        shell_lines = tmp_path / "sandbox.sh"
        shell_lines.write_text("".join(printed))
        env = cli_env(tmp_path)
        paste_and_check = (f". {shlex.quote(str(shell_lines))} && "
                           f"exec {shlex.quote(sys.executable)} -m leadrat_source.cli check")
        pasted = subprocess.run(
            ["sh", "-c", paste_and_check], env=clean_env(env), cwd=tmp_path,
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert pasted.returncode == 0, pasted.stderr
        assert "api: ok (http://127.0.0.1:" in pasted.stdout

        snippet = [line[len("#   "):] for line in printed if line.startswith("#   ")]
        project = tmp_path / "project"
        (project / ".dlt").mkdir(parents=True)
        (project / ".dlt" / "secrets.toml").write_text("".join(snippet))
        from_toml = leadrat("check", "--probe-write", env=env, cwd=project)
        assert from_toml.returncode == 0, from_toml.stderr
        assert "scope read_write" in from_toml.stdout
    finally:
        sandbox.send_signal(signal.SIGINT)
        assert sandbox.wait(timeout=30) == 0


def test_progress_on_a_terminal(make_sandbox: Callable[..., Sandbox], tmp_path: Path) -> None:
    server = slow_sandbox(make_sandbox)
    command = [sys.executable, "-m", "leadrat_source.cli", "load"]
    # `script` runs the command on a pseudo-terminal, as a user's shell would
    result = subprocess.run(
        ["script", "-qefc", shlex.join(command), "/dev/null"],
        env=clean_env(cli_env(tmp_path, server)), cwd=tmp_path, capture_output=True,
        text=True, timeout=180, check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    screen = ANSI_ESCAPE.sub("", result.stdout).replace("\r", "\n")
    frames = [line for line in screen.splitlines() if line.startswith("leads ")]
    assert len(frames) > 3, screen[-2000:]
    last = frames[-1]
    read, total = map(int, re.search(r"(\d+)/(\d+)", last).groups())  # type: ignore[union-attr]
    assert read == total >= len(server.export_leads())
    assert re.search(r"[\d,]+ leads/s  ETA \d+s  rate-limit wait \d+\.\ds", last), last
    # the window's budget ran out, so the run was held back and says so
    assert float(re.search(r"rate-limit wait (\d+\.\d)s", last).group(1)) > 0  # type: ignore[union-attr]
    assert any(re.search(r"\d+/2\d{3} .* ETA \d+s", frame) for frame in frames[:-1])
    assert "rows written" in screen


def test_json_log_shows_progress_and_ends_with_one_record_of_the_run(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    server = slow_sandbox(make_sandbox)
    result = leadrat("--log-format", "json", "load", env=cli_env(tmp_path, server),
                     cwd=tmp_path, timeout=180)
    assert result.returncode == 0, result.stderr
    entries = json_lines(result.stderr)
    progress = [entry["message"] for entry in entries if entry["logger"].endswith("progress")]
    assert progress, "no progress line in a run of several seconds"
    assert all(re.match(r"leads: [\d,]+ of about [\d,]+ read \(\d+%\), \d+/s, .*rate-limit wait",
                        line) for line in progress)
    final = entries[-1]
    assert [entry for entry in entries if entry.get("event") == "run_finished"] == [final]
    expected = expected_rows_written(server)
    markers = expected.pop("lead_tags_markers")
    assert final["exit_code"] == 0 and final["command"] == "load"
    assert final["rows"] == expected and final["lead_tags_markers"] == markers
    served = server.stats()
    assert final["requests"] == served["requests"]
    assert final["rate_limited"] == served["rate_limited"]
    assert final["rate_limit_wait_seconds"] > 0
    assert 0 < final["load_seconds"] <= final["duration_seconds"]


@pytest.mark.parametrize("destination", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_summary_counts_rows_written_per_table_on_each_destination(
    destination: str, make_sandbox: Callable[..., Sandbox], tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    server = make_sandbox(leads=600, seed=3, plan="pro", rate_limit=0)
    extra: dict[str, str] = {}
    target = ["--destination", destination]
    if destination == "postgres":
        extra["DESTINATION__POSTGRES__CREDENTIALS"] = request.getfixturevalue("postgres_url")
        target += ["--dataset", request.getfixturevalue("postgres_schema")]
    env = cli_env(tmp_path, server, **extra)
    result = leadrat("load", *target, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = expected_rows_written(server)
    markers = expected.pop("lead_tags_markers")
    assert rows_of_summary(result.stdout) == expected
    assert f"lead_tags={expected['lead_tags']} (incl. {markers} no-tag markers" in result.stdout
    status = leadrat("status", *target, env=env, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    # the table keeps the tags, not the markers
    assert f"lead_tags={expected['lead_tags'] - markers}," in status.stdout


def test_ctrl_c_exits_130_and_the_next_run_completes(
    make_sandbox: Callable[..., Sandbox], tmp_path: Path
) -> None:
    server = slow_sandbox(make_sandbox)
    env = clean_env(cli_env(tmp_path, server))
    load = subprocess.Popen(
        [sys.executable, "-m", "leadrat_source.cli", "load"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while server.stats()["by_route"].get("GET /leads", 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert load.poll() is None, "the load ended before it could be interrupted"
    os.killpg(load.pid, signal.SIGINT)  # what Ctrl-C does: SIGINT to the foreground group
    _, stderr = load.communicate(timeout=60)
    assert load.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "Traceback" not in stderr

    again = leadrat("load", env=env, cwd=tmp_path, timeout=180)
    assert again.returncode == 0, again.stderr
    with duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True) as warehouse:
        ids = [row[0] for row in warehouse.sql("select id from leadrat.leads").fetchall()]
    assert sorted(ids) == sorted(lead["id"] for lead in server.export_leads())


def test_missing_postgres_credentials_say_what_to_set(sandbox: Sandbox, tmp_path: Path) -> None:
    result = leadrat("load", "--destination", "postgres", env=cli_env(tmp_path, sandbox),
                     cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "DESTINATION__POSTGRES__CREDENTIALS=postgresql://" in result.stderr
    verbose = leadrat("load", "--destination", "postgres", "--verbose",
                      env=cli_env(tmp_path, sandbox), cwd=tmp_path)
    assert verbose.returncode == 2 and "were tried in order" in verbose.stderr
