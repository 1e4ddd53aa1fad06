"""leadrat-source: the LeadRat CRM API into your warehouse with dlt, and lead scores back."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: The installed distribution's version: one number for `leadrat --version`, the
    #: User-Agent and the wheel, set only in pyproject.toml.
    __version__ = version("leadrat-source")
except PackageNotFoundError:  # imported from a checkout that was never installed
    __version__ = "0+unknown"
