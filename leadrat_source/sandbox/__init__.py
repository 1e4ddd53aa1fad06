"""A local LeadRat API server with synthetic data, rate limits, faults, churn and webhooks.

It follows ../../shared/api/CONTRACT.md and imports nothing from the package except
`leadrat_source.contract`, so it can catch the client's mistakes instead of sharing them.
"""

from leadrat_source.sandbox.config import SandboxConfig
from leadrat_source.sandbox.service import Sandbox

__all__ = ["Sandbox", "SandboxConfig"]
