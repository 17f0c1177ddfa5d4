"""Publishing a run: the model card generated from it (`card.py`) and the staged, uploaded repos (`publish.py`)."""

# The model repo the project publishes; the card of the Space's bundled copy names it.
BUNDLED_REPO_ID = "music-genre-ffn/genre-ffn"
