"""`python -m cli`: the `music-genre` command."""

import sys

from music_genre import main

sys.exit(main())
