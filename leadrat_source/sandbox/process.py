"""`SandboxProcess`: the sandbox in a child process, with the same attributes as `Sandbox`.

Benchmarks need the server off the test's GIL, and crash tests need to kill it; the
admin calls go over HTTP to /_sandbox/*.
"""

from __future__ import annotations

import os
import subprocess
import sys
from types import TracebackType
from typing import Any, Self

import requests

from leadrat_source.sandbox.cli import parse_credentials
from leadrat_source.sandbox.config import SandboxConfig


def command(config: SandboxConfig) -> list[str]:
    args = [sys.executable, "-m", "leadrat_source.sandbox", "--host", config.host,
            "--port", str(config.port), "--leads", str(config.leads), "--seed", str(config.seed),
            "--plan", config.plan, "--pipelines", str(config.pipelines),
            "--window-seconds", str(config.window_seconds),
            "--day-seconds", str(config.day_seconds), "--churn",
            str(config.churn_per_minute), "--custom-keys", str(config.custom_keys)]
    if config.rate_limit is not None:
        args += ["--rate-limit", str(config.rate_limit)]
    args += ["--no-daily-cap"] if config.daily_cap is None else [
        "--daily-cap", str(config.daily_cap)]
    if not config.cursor:
        args.append("--no-cursor")
    if config.webhook_url:
        args += ["--webhook-url", config.webhook_url]
    return args


class SandboxProcess:
    """Starts `python -m leadrat_source.sandbox` on enter, terminates it on exit."""

    def __init__(self, config: SandboxConfig):
        self.config = config
        self.process: subprocess.Popen[str] | None = None
        self.base_url = self.read_write_key = self.read_key = self.bearer_token = ""
        self._http = requests.Session()

    def start(self) -> None:
        # Secrets travel by environment, never on the command line (visible in `ps`).
        env = dict(os.environ)
        args = command(self.config)
        for flag, var, value in (("--webhook-secret-env", "LEADRAT_SANDBOX_WEBHOOK_SECRET",
                                  self.config.webhook_secret),
                                 ("--api-key-env", "LEADRAT_SANDBOX_API_KEY", self.config.api_key),
                                 ("--read-key-env", "LEADRAT_SANDBOX_READ_KEY",
                                  self.config.read_key)):
            if value:
                env[var] = value
                args += [flag, var]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=env)
        assert self.process.stdout is not None
        try:
            values = parse_credentials(self.process.stdout)
        except RuntimeError:
            raise RuntimeError(f"sandbox exited early with code {self.process.wait()}") from None
        self.base_url = values["base_url"]
        self.read_write_key = values["read_write_key"]
        self.read_key = values["read_key"]
        self.bearer_token = values["bearer_token"]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._http.close()

    def kill(self) -> None:
        """SIGKILL, for tests of what a client does when the server vanishes."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def _admin(self, method: str, path: str, body: Any = None) -> Any:
        response = self._http.request(method, f"{self.base_url}/_sandbox/{path}", json=body,
                                      timeout=60)
        response.raise_for_status()
        return response.json()

    def churn(self, changes: int) -> list[dict[str, Any]]:
        return self._admin("POST", "churn", {"changes": changes})["changes"]

    def export_leads(self) -> list[dict[str, Any]]:
        return self._admin("GET", "export")

    def stats(self) -> dict[str, Any]:
        return self._admin("GET", "stats")

    def reset_stats(self) -> None:
        self._admin("POST", "stats/reset")

    def set_faults(self, **faults: Any) -> None:
        self._admin("POST", "faults", faults)

    def next_day(self) -> int:
        return int(self._admin("POST", "next_day")["days_played"])

    def add_lead_fields(self, **fields: Any) -> None:
        self._admin("POST", "lead_fields", {"fields": fields})

    def remove_pipeline(self, pipeline_id: str) -> None:
        self._admin("POST", "remove_pipeline", {"pipeline_id": pipeline_id})
