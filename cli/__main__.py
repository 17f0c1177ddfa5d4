"""`python -m cli`: the `music-genre` command."""

import sys

from cli import main

sys.exit(main())
