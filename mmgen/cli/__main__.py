"""``python -m mmgen.cli ...``: the same as the ``mmgen`` command."""

import sys

from mmgen.cli import main

sys.exit(main())
