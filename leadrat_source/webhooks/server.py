"""`leadrat webhooks serve`: the receiver under uvicorn, with its journal and flusher.

Start: load what a killed receiver left, start the committer and the flusher, listen.
SIGTERM or SIGINT (uvicorn's handlers): stop accepting, answer the requests in flight,
then flush the journal into the warehouse and exit 0 (1 if the warehouse kept failing:
the events stay in the journal and the next start loads them).
"""

from __future__ import annotations

import dataclasses
import fcntl
import logging
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, Any

import uvicorn
from dlt.common.pipeline import get_dlt_pipelines_dir

from leadrat_source.destinations import get_profile
from leadrat_source.errors import ConfigurationError
from leadrat_source.gc_pause import fewer_collections
from leadrat_source.webhooks.app import WEBHOOK_PATH, create_app
from leadrat_source.webhooks.flusher import FlusherProcess, FlusherSpec
from leadrat_source.webhooks.journal import GroupCommitter, Journal
from leadrat_source.webhooks.metrics import Metrics
from leadrat_source.webhooks.settings import (
    MAX_BODY_BYTES,
    default_journal_path,
    receiver_settings,
)
from leadrat_source.webhooks.signature import SignatureVerifier

log = logging.getLogger("leadrat_source.webhooks.server")


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8787
    destination: str | None = None
    dataset: str | None = None
    journal: Path | None = None


def serve(options: ServeOptions) -> int:
    settings = receiver_settings()
    profile = get_profile(options.destination)
    dataset = profile.dataset(options.dataset)
    pipeline_name = f"leadrat_webhooks_{profile.name}_{dataset}"
    working_folder = claim_working_folder(pipeline_name)
    journal = Journal(options.journal or default_journal_path(profile.name, dataset),
                      settings.dedup_days)
    metrics = Metrics()
    committer = GroupCommitter(journal)
    # its own pipeline (state, schema) beside the scheduled load's, into the same dataset
    flusher = FlusherProcess(FlusherSpec(
        journal_path=journal.path, profile=profile, dataset=dataset,
        pipeline_name=pipeline_name,
        settings=dataclasses.replace(settings, secrets=()),
        log_level=logging.getLogger().getEffectiveLevel(),
        log_formatter=next((handler.formatter for handler in logging.getLogger().handlers),
                           None),
    ), metrics.flushes)
    app = create_app(SignatureVerifier(settings.secrets, settings.tolerance_seconds), committer,
                     journal, metrics, MAX_BODY_BYTES, flusher.is_alive)
    listener = socket.create_server((options.host, options.port), backlog=2048)
    host, port = listener.getsockname()[:2]
    committer.start()
    flusher.start()
    log.info("receiving LeadRat webhooks at http://%s:%d%s into %s dataset %r (journal %s, "
             "%d secret(s))", host, port, WEBHOOK_PATH, profile.name, dataset, journal.path,
             len(settings.secrets))
    # the URL on stdout, for scripts and tests that start the receiver on port 0
    print(f"LEADRAT_WEBHOOK_URL=http://{host}:{port}{WEBHOOK_PATH}", flush=True)
    server = uvicorn.Server(uvicorn.Config(
        # proxy_headers off: nothing reads the client's address, and uvicorn's middleware
        # for X-Forwarded-For would otherwise run on every delivery
        app, log_config=None, access_log=False, lifespan="off", backlog=2048,
        proxy_headers=False,
        timeout_graceful_shutdown=10, **_fast_stack()))
    for signum in (signal.SIGINT, signal.SIGTERM):
        # uvicorn handles the first signal, then raises it again once it stopped serving;
        # this handler lets that second one through without killing the final flush
        signal.signal(signum, _already_stopping)
    try:
        # the start-up heap (dlt, uvicorn, Starlette: ~100k objects) frozen, young passes
        # rarer: the collector took ~15% of the server's CPU per acknowledgement
        with fewer_collections():
            server.run(sockets=[listener])
    finally:
        committer.stop()
        flushed = flusher.stop()
        journal.close()
        working_folder.close()
    log.info("stopped; %s", "journal flushed" if flushed else "events left in the journal")
    return 0 if flushed else 1


def claim_working_folder(pipeline_name: str) -> IO[str]:
    """Hold the flusher's dlt working folder for this receiver's life; returns the lock's
    file (closing it, or the process dying, ends the claim).

    Two receivers of one profile and dataset with one `DLT_DATA_DIR` would share that
    folder (even with separate `--journal`s): one flusher would load the other's package,
    then drop its own batch from its journal as loaded.
    """
    folder = Path(get_dlt_pipelines_dir())
    folder.mkdir(parents=True, exist_ok=True)
    lock_file = (folder / f"{pipeline_name}.receiver-lock").open("a")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise ConfigurationError(
            f"another `leadrat webhooks serve` for this destination profile and dataset is "
            f"running with dlt's data folder {folder.parent}; give each receiver its own "
            "DLT_DATA_DIR (its journal goes there too)") from None
    return lock_file


def _already_stopping(signum: int, frame: FrameType | None) -> None:
    log.info("stopping: flushing the journal into the warehouse")


def _fast_stack() -> dict[str, Any]:
    """uvloop and httptools when installed (`leadrat-source[webhooks]`): about twice the
    acknowledgements per second of the pure-Python defaults."""
    options: dict[str, Any] = {}
    try:
        import httptools  # noqa: F401

        options["http"] = "httptools"
    except ImportError:
        pass
    try:
        import uvloop  # noqa: F401

        options["loop"] = "uvloop"
    except ImportError:
        pass
    return options
