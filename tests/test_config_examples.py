""".dlt/config.toml.example and .dlt/secrets.toml.example: the settings the README lists
and the code reads, with the code's defaults, and a load that works when a user copies
them and fills in the key."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path
from typing import Any

import duckdb
from leadrat_process import leadrat

from leadrat_source.destinations import DEFAULT_PROFILE
from leadrat_source.reverse_sync import ReverseSyncRequest
from leadrat_source.sandbox import Sandbox
from leadrat_source.source import leadrat_source
from leadrat_source.webhooks.settings import receiver_settings

ROOT = Path(__file__).resolve().parents[1]
CONFIG_EXAMPLE = ROOT / ".dlt" / "config.toml.example"
SECRETS_EXAMPLE = ROOT / ".dlt" / "secrets.toml.example"
#: arguments a caller passes per run, not settings of the config files
PER_RUN = {"since", "until", "snapshot_date", "client", "notes"}
SECRETS = {"api_key", "bearer_token", "webhook_secret"}


def commented_keys(path: Path, section: str) -> set[str]:
    """Keys of `[section]` written as `# key = value` (settings without a TOML default)."""
    keys, current = set(), None
    for line in path.read_text().splitlines():
        if header := re.match(r"^#?\s*\[([\w.]+)\]\s*$", line):
            current = header.group(1)
        elif current == section and (key := re.match(r"^#\s*(\w+)\s*=", line)):
            keys.add(key.group(1))
    return keys


def readme_settings() -> set[str]:
    """The settings named in the first column of the README's settings tables."""
    names: set[str] = set()
    readme = (ROOT / "README.md").read_text()
    for row in re.findall(r"^\| (`[^|]+) \|", readme, re.MULTILINE):
        names |= set(re.findall(r"`(\w+)`", row))
    return names


def signature_defaults(function: Any) -> dict[str, Any]:
    parameters = inspect.signature(inspect.unwrap(function)).parameters
    return {name: parameter.default for name, parameter in parameters.items()}


def test_the_config_example_lists_every_setting_the_code_reads_with_its_default() -> None:
    written = tomllib.loads(CONFIG_EXAMPLE.read_text())["sources"]["leadrat"]
    without_default = commented_keys(CONFIG_EXAMPLE, "sources.leadrat")
    code = {**signature_defaults(leadrat_source), **signature_defaults(receiver_settings)}
    settings = set(code) - PER_RUN - SECRETS
    assert set(written) | without_default == settings
    for name, value in written.items():
        assert value == code[name], f"{name} = {value!r} in the example, {code[name]!r} in code"
    assert all(code[name] is None for name in without_default)
    missing = (settings | SECRETS) - readme_settings()
    assert not missing, f"settings the README's tables do not list: {sorted(missing)}"


def test_the_config_example_lists_the_commands_settings_with_their_defaults() -> None:
    """`[leadrat]` (every command's destination and dataset) and `[leadrat.reverse_sync]`."""
    commands = tomllib.loads(CONFIG_EXAMPLE.read_text())["leadrat"]
    reverse_sync = commands.pop("reverse_sync")
    assert commands == {"destination": DEFAULT_PROFILE}
    assert commented_keys(CONFIG_EXAMPLE, "leadrat") == {"dataset"}
    request = ReverseSyncRequest()  # nothing configured: the code's defaults
    assert reverse_sync == {name: getattr(request, name) for name in reverse_sync}
    assert set(reverse_sync) == {"null_clears", "workers", "batch_rows", "batch_seconds"}
    assert commented_keys(CONFIG_EXAMPLE, "leadrat.reverse_sync") == {"table", "query"}
    assert (request.table, request.query) == (None, None)
    named = {*commands, "dataset", *reverse_sync, "table", "query"}
    missing = named - readme_settings()
    assert not missing, f"settings the README's tables do not list: {sorted(missing)}"


def test_the_secrets_example_names_the_secrets_and_holds_none() -> None:
    text = SECRETS_EXAMPLE.read_text()
    secrets = tomllib.loads(text)["sources"]["leadrat"]
    assert set(secrets) | commented_keys(SECRETS_EXAMPLE, "sources.leadrat") == SECRETS
    values = re.findall(r'=\s*"([^"]*)"', text)
    # placeholders only (and an example path for the DuckDB file)
    assert values and all("<" in value or value.startswith("/") for value in values), values


def test_a_load_with_the_examples_copied_and_the_key_filled_in(
    make_sandbox: Any, tmp_path: Path
) -> None:
    server: Sandbox = make_sandbox(leads=150, rate_limit=0)
    dlt_folder = tmp_path / ".dlt"
    dlt_folder.mkdir()
    config = CONFIG_EXAMPLE.read_text().replace(
        'base_url = "https://api.crm.builder.leadratd.com"', f'base_url = "{server.base_url}"')
    (dlt_folder / "config.toml").write_text(config)
    (dlt_folder / "secrets.toml").write_text(SECRETS_EXAMPLE.read_text().replace(
        "<your LeadRat API key>", server.read_key))
    result = leadrat("load", env={"DLT_DATA_DIR": str(tmp_path / "dlt")}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with duckdb.connect(str(tmp_path / "leadrat_warehouse.duckdb"), read_only=True) as db:
        loaded = {row[0] for row in db.sql("select id from leadrat.leads").fetchall()}
    assert loaded == {lead["id"] for lead in server.export_leads()}
