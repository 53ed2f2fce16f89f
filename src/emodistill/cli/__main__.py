"""``python -m emodistill.cli ...`` (as used by ``torchrun -m emodistill.cli``)."""

import sys

from emodistill.cli import main

sys.exit(main())
