"""Offline test set-up: no Hub, no telemetry, a private HF_HOME, one torch thread."""

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="music-genre-tests-")
os.environ.update(
    HF_HUB_OFFLINE="1",
    HF_EVALUATE_OFFLINE="1",
    HF_DATASETS_OFFLINE="1",
    HF_HUB_DISABLE_TELEMETRY="1",
    GRADIO_ANALYTICS_ENABLED="False",
    HF_HOME=os.path.join(_HOME, "hf"),
    OMP_NUM_THREADS="1",
    MPLBACKEND="Agg",
)

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent

# The start of a `python -c` script that runs with the project unimportable, as on a Hub user's machine.
WITHOUT_PROJECT = f"""
import importlib.abc, json, sys
BLOCKED = {{"modeling", "training", "hub_card", "space"}}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked: {{name}}")
sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".", {str(REPO)!r})]
"""


@pytest.fixture(scope="session")
def csv_path() -> Path:
    """The real CSV; a missing file fails under CI and skips elsewhere."""
    from training.data import default_csv

    path = default_csv()
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real dataset is missing at {path} (MUSIC_GENRE_CSV)")
        pytest.skip(f"the real dataset is not at {path}; set MUSIC_GENRE_CSV")
    return path


@pytest.fixture(scope="session")
def real_data(csv_path):
    from training.data import load_data

    return load_data(csv_path)


@pytest.fixture(scope="session")
def slice_csv(csv_path, tmp_path_factory):
    """200 raw rows per genre of the real CSV, written at test time (never kept in the repo)."""
    frame = pd.read_csv(csv_path, dtype={"tempo": str})
    frame = frame.dropna(how="all").groupby("music_genre", group_keys=False).sample(200, random_state=0)
    path = tmp_path_factory.mktemp("slice") / "slice.csv"
    frame.sample(frac=1.0, random_state=1).to_csv(path, index=False)
    return path


@pytest.fixture
def raw_rows() -> list[dict]:
    """Hand-made raw rows in the CSV's format: `?` tempo, -1 duration, every key name, both modes."""
    from modeling import KEY_NAMES

    rows = []
    for i, key in enumerate(KEY_NAMES):
        rows.append(
            {
                "popularity": 20.0 + 5 * i,
                "acousticness": 0.05 * i + 0.01,
                "danceability": 0.3 + 0.04 * i,
                "duration_ms": -1.0 if i % 4 == 0 else 150000.0 + 10000 * i,
                "energy": 0.9 - 0.05 * i,
                "instrumentalness": 0.0 if i % 3 == 0 else 10.0 ** (-i % 6),
                "key": key,
                "liveness": 0.1 + 0.02 * i,
                "loudness": -12.0 + 0.7 * i,
                "mode": "Major" if i % 2 else "Minor",
                "speechiness": 0.03 + 0.01 * i,
                "tempo": "?" if i % 5 == 0 else f"{90 + 4.5 * i}",
                "valence": 0.2 + 0.05 * i,
                "artist_name": f"artist {i}",
                "track_name": f"track {i}",
                "music_genre": "Jazz",
            }
        )
    return rows
