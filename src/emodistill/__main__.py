"""``python -m emodistill ...``: the ``emodistill`` command."""

import sys

from emodistill.cli import main

sys.exit(main())
