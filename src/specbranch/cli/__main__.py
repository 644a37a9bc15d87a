"""`python -m specbranch.cli` (the same as `specbranch` and `python -m specbranch`)."""

import sys

from specbranch.cli import main

sys.exit(main())
