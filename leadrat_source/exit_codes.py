"""Which exit code an error means, for the CLI and for schedulers that judge a failure.

0 ok; 2 usage or configuration error; 3 authentication or permission; 4 quota exhausted
(state is consistent: the next run resumes); 130 interrupted (Ctrl-C); 1 anything else.
The rules sit next to the errors so the CLI and the Airflow DAG read them from one place.
"""

from __future__ import annotations

from leadrat_source.errors import (
    AuthenticationFailed,
    ConfigurationError,
    LeadRatError,
    PermissionDenied,
    QuotaExhausted,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AUTH, EXIT_QUOTA = 0, 1, 2, 3, 4
#: The shell's code for a process ended by SIGINT (128 + 2).
EXIT_INTERRUPTED = 130


def exit_code_for(error: BaseException) -> int:
    """Map an error (possibly wrapped by dlt) onto the documented exit codes."""
    cause = root_cause(error)
    if isinstance(cause, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(cause, ConfigurationError):
        return EXIT_USAGE
    if isinstance(cause, (AuthenticationFailed, PermissionDenied)):
        return EXIT_AUTH
    if isinstance(cause, QuotaExhausted):
        return EXIT_QUOTA
    if _is_configuration_problem(cause):
        return EXIT_USAGE
    return EXIT_FAILED


def root_cause(error: BaseException) -> BaseException:
    """The first LeadRat error in the chain dlt wraps around it, else the innermost error."""
    seen: set[int] = set()
    current: BaseException | None = error
    last = error
    while current is not None and id(current) not in seen:
        if isinstance(current, LeadRatError):
            return current
        seen.add(id(current))
        last = current
        current = getattr(current, "exception", None) or current.__cause__ or current.__context__
    return last


def _is_configuration_problem(error: BaseException) -> bool:
    """A setting dlt cannot resolve, or a destination whose extra is not installed."""
    from dlt.common.configuration.exceptions import ConfigurationException
    from dlt.common.exceptions import MissingDependencyException

    return isinstance(error, (ConfigurationException, MissingDependencyException))
