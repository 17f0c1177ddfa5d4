"""Publishing a run: the model card generated from it (`card.py`) and the staged, uploaded repos (`publish.py`)."""
