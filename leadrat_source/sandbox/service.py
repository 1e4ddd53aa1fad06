"""`Sandbox`: builds the data and every moving part from a SandboxConfig, and serves it."""

from __future__ import annotations

from types import TracebackType
from typing import Any, Self

from leadrat_source.sandbox.admin import Admin
from leadrat_source.sandbox.app import Application
from leadrat_source.sandbox.auth import Keys, derived
from leadrat_source.sandbox.churn import Churn
from leadrat_source.sandbox.config import SandboxConfig
from leadrat_source.sandbox.faults import Faults
from leadrat_source.sandbox.ratelimit import RateLimiter
from leadrat_source.sandbox.routes import Api
from leadrat_source.sandbox.server import ServerThread
from leadrat_source.sandbox.stats import Stats
from leadrat_source.sandbox.store import Record, Store
from leadrat_source.sandbox.webhooks import WebhookSender


class Sandbox:
    """A local LeadRat API on loopback, in a background thread of this process.

    Use `Sandbox.spawn(config)` instead when the server must not share this process's
    GIL (benchmarks) or must be killable (crash tests).
    """

    def __init__(self, config: SandboxConfig):
        self.config = config
        keys = Keys.for_seed(config.seed, config.api_key, config.read_key)
        self.read_write_key = keys.read_write
        self.read_key = keys.read
        self.bearer_token = keys.bearer
        self.webhook_secret = config.webhook_secret or derived(config.seed, "webhook", "whsec_")
        self.store = Store(config.leads, config.seed, config.pipelines,
                           custom_keys=config.custom_keys)
        self.faults = Faults(config.seed)
        self.statistics = Stats()
        self._churn = Churn(self.store, config.seed)
        self.webhooks: WebhookSender | None = None
        if config.webhook_url:
            self.webhooks = WebhookSender(config.webhook_url, self.webhook_secret)
            self.store.on_change = self.webhooks.publish
        api = Api(self.store, config.cursor, before_list=self._maybe_drift)
        self._limiter = RateLimiter(config.window_limit, config.day_limit, config.window_seconds,
                                    day_seconds=config.day_seconds)
        admin = Admin(self.store, self.statistics, self.faults, self._churn, self._limiter,
                      self._webhook_stats)
        self._app = Application(api, keys, self._limiter, self.faults, self.statistics, admin)
        self._server: ServerThread | None = None
        self.base_url = ""

    @classmethod
    def spawn(cls, config: SandboxConfig) -> Any:
        """Run the sandbox in a child process; returns a started-on-enter SandboxProcess."""
        from leadrat_source.sandbox.process import SandboxProcess

        return SandboxProcess(config)

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = ServerThread(self.config.host, self.config.port, self._app)
        self.base_url = f"http://{self.config.host}:{self._server.port}"
        if self.webhooks is not None:
            self.webhooks.start()
        self._server.start()
        self._churn.start(self.config.churn_per_minute)

    def stop(self) -> None:
        self._churn.stop()
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self.webhooks is not None:
            self.webhooks.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def churn(self, changes: int) -> list[dict[str, Any]]:
        return self._churn.apply(changes)

    def export_leads(self) -> list[Record]:
        return self.store.export_leads()

    def stats(self) -> dict[str, Any]:
        return {**self.statistics.snapshot(), **self._webhook_stats()}

    def reset_stats(self) -> None:
        self.statistics.reset()

    def set_faults(self, **faults: Any) -> None:
        self.faults.set(**faults)

    def next_day(self) -> int:
        """Play a new UTC day: every key's daily cap starts afresh."""
        return self._limiter.next_day()

    def add_lead_fields(self, **fields: Any) -> None:
        """Every lead carries these top-level fields from now on (beyond the contract's)."""
        self.store.add_lead_fields(fields)

    def remove_pipeline(self, pipeline_id: str) -> None:
        """Remove a pipeline, as someone deleting it in LeadRat would."""
        self.store.remove_pipeline(pipeline_id)

    def _maybe_drift(self) -> None:
        if self.faults.roll("drift_rate"):
            self.statistics.fault()
            self._churn.drift()

    def _webhook_stats(self) -> dict[str, Any]:
        if self.webhooks is None:
            return {}
        return {"webhooks": {"delivered": self.webhooks.delivered,
                             "failed_attempts": self.webhooks.failed_attempts,
                             "pending": self.webhooks.pending()}}
