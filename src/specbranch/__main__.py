import sys

from specbranch.cli import main

sys.exit(main())
