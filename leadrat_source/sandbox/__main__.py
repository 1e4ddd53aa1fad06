"""`python -m leadrat_source.sandbox`: see cli.py."""

import sys

from leadrat_source.sandbox.cli import main

sys.exit(main())
