"""`python -m coalition`: the `coalition` command line."""

import sys

from coalition.cli import main

sys.exit(main())
