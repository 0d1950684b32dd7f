"""``python -m chamberlain``: the same as the ``chamberlain`` command."""

import sys

from chamberlain.cli import main

sys.exit(main())
