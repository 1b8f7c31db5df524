"""``python -m kdlab ...`` (what torchrun launches) is the ``kdlab`` command."""

import sys

from kdlab.cli.main import main

sys.exit(main())
