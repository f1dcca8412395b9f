"""`python -m cli ...` runs the `headwise` command (what the console script runs)."""

import sys

from cli.main import main

sys.exit(main())
