"""``python -m predictgs``: the same command line as ``predictgs`` (for environments whose scripts folder is
not on the PATH)."""

import sys

from predictgs.cli import main

sys.exit(main())
