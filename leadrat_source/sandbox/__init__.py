"""A local LeadRat API server with synthetic data, rate limits, faults, churn and webhooks.

It follows ../../shared/api/CONTRACT.md and imports nothing from the package except
`leadrat_source.contract`, so it can catch the client's mistakes instead of sharing them.
The server's modules load on first use of `Sandbox` or `SandboxConfig`, so that `leadrat`
can offer the `sandbox` command without importing the server for every other command.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leadrat_source.sandbox.config import SandboxConfig
    from leadrat_source.sandbox.service import Sandbox

__all__ = ["Sandbox", "SandboxConfig"]

_HOMES = {"Sandbox": "leadrat_source.sandbox.service",
          "SandboxConfig": "leadrat_source.sandbox.config"}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'leadrat_source.sandbox' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
