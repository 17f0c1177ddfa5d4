"""Offline test set-up (no Hub, no telemetry, a private HF_HOME, one torch thread) and what several test modules
share: the real data and slices of it, a small run folder, a small trained model folder, hand-made rows and helpers."""

import json
import os
import socket
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING

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

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

if TYPE_CHECKING:
    from music_genre.modeling import GenreFFNForSequenceClassification

REPO = Path(__file__).resolve().parent.parent
# The real CSV's genres in label-id order, as the bundled model's config names them: the genres of tests on untrained
# models and synthetic logits (a run's genres come from its data).
GENRES = tuple(json.loads((REPO / "space" / "model" / "config.json").read_text())["id2label"].values())

# The start of a `python -c` script that runs with the project unimportable, as on a Hub user's machine.
WITHOUT_PROJECT = f"""
import importlib.abc, json, sys
BLOCKED = {{"music_genre", "modeling", "training", "hub_card", "space"}}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"blocked: {{name}}")
sys.meta_path.insert(0, Block())
sys.path = [p for p in sys.path if p not in ("", ".", {str(REPO)!r})]
"""
# Loads a saved folder through the remote code with the project unimportable, as on a Hub user's machine.
REMOTE_LOAD = (
    WITHOUT_PROJECT
    + r"""
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, pipeline
folder, rows = sys.argv[1], json.loads(sys.argv[2])
model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True).eval()
extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
logits = model(**extractor(rows, return_tensors="pt")).logits
classifier = pipeline(model=folder, trust_remote_code=True)
by_task = pipeline("tabular-classification", model=folder, trust_remote_code=True)  # the card's pipeline_tag
assert not any(name.split(".")[0] in BLOCKED for name in sys.modules)
print(json.dumps({"probabilities": logits.softmax(-1).tolist(), "pipeline": classifier(rows, top_k=2),
                  "pipeline_by_task": by_task(rows, top_k=2), "model_class": type(model).__module__}))
"""
)

# What a saved model folder holds: config, safetensors weights, the feature extractor and the remote code.
HUB_FOLDER_FILES = {
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "configuration_genre_ffn.py",
    "modeling_genre_ffn.py",
    "feature_extraction_genre_ffn.py",
    "pipeline_genre_ffn.py",
    "calibration_genre_ffn.py",
}
# The Hub repos the publishing tests stage for; nothing is ever uploaded.
REPO_ID = "someone/music-genre-ffn"
DATASET_REPO_ID = "someone/music-genre-data"
SPACE_REPO_ID = "someone/music-genre-space"


# Every figure a run folder's figures/ holds.
RUN_FIGURES = {
    "log_transform.png",
    "pca.png",
    "tsne.png",
    "loss_curves.png",
    "roc_curves.png",
    "confusion_matrix.png",
    "optimization_history.png",
    "reliability_diagram.png",
    "permutation_importance.png",
}


def make_model(**overrides) -> "GenreFFNForSequenceClassification":
    """An untrained `GenreFFNForSequenceClassification` of `GenreFFNConfig(**overrides)` (by default of the bundled
    model's genres), seeded, in eval mode."""
    from music_genre.modeling import GenreFFNConfig, GenreFFNForSequenceClassification

    overrides.setdefault("id2label", dict(enumerate(GENRES)))
    torch.manual_seed(0)
    return GenreFFNForSequenceClassification(GenreFFNConfig(**overrides)).eval()


def load_in_clean_process(folder: Path, rows: list[dict], script: str = REMOTE_LOAD) -> dict:
    """What `script` (by default `REMOTE_LOAD`) prints last as JSON for the model folder `folder` and `rows`, run in a
    fresh python with the project unimportable."""
    result = subprocess.run(
        [sys.executable, "-c", script, str(folder), json.dumps(rows)],
        capture_output=True,
        text=True,
        cwd=folder,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now, for a server a test starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def csv_path() -> Path:
    """The real CSV; a missing file fails under CI and skips elsewhere."""
    from music_genre.training.data import default_csv

    path = default_csv()
    if not path.is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the real dataset is missing at {path} (MUSIC_GENRE_CSV)")
        pytest.skip(f"the real dataset is not at {path}; set MUSIC_GENRE_CSV")
    return path


@pytest.fixture(scope="session")
def real_data(csv_path):
    from music_genre.training.data import load_data

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
    from music_genre.modeling import KEY_NAMES

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


@pytest.fixture(scope="session")
def small_run(csv_path, tmp_path_factory) -> Path:
    """A real run folder from `train_run` on a slice of the real CSV (two trials of one epoch), built once a session.

    The slice, `slice.csv` beside the run folder, holds 150 raw rows per genre, every row of 20 songs filed under
    several genres and two empty rows; it is written at test time, never kept in the repo.
    """
    from music_genre.hub_card.card import write_model_card
    from music_genre.training.options import RunOptions
    from music_genre.training.run import train_run

    root = tmp_path_factory.mktemp("small-run")
    frame = pd.read_csv(csv_path, dtype={"tempo": str})
    rows = frame.dropna(how="all")
    genres_per_pair = rows.groupby(["artist_name", "track_name"])["music_genre"].nunique()
    shared = genres_per_pair[genres_per_pair > 1].index[:20]
    shared_rows = rows.set_index(["artist_name", "track_name"]).loc[shared].reset_index()
    sample = rows.groupby("music_genre", group_keys=False).sample(150, random_state=0)
    empty = pd.DataFrame([[np.nan] * len(frame.columns)] * 2, columns=frame.columns)
    sliced = pd.concat([sample, shared_rows[frame.columns], empty]).sample(frac=1.0, random_state=1)
    csv = root / "slice.csv"
    sliced.to_csv(csv, index=False)
    options = RunOptions(
        data=str(csv), output=root / "run", seed=0, n_trials=2, max_epochs=1, reevaluate_top=1, reevaluation_splits=2
    )
    return train_run(options, write_card=write_model_card)


def spotify_tracks_table(rows: pd.DataFrame, names: dict[str, str]) -> pd.DataFrame:
    """Rows of the public CSV in the layout of the Hub's "Spotify Tracks Dataset": a leading unnamed index, track_id,
    artists (some joined by ";"), album_name, track_name, explicit, time_signature, `key` as a pitch-class integer
    (-1 for a few rows: unknown), `mode` as 1/0 and the genre, renamed by `names`, in `track_genre`."""
    from music_genre.modeling import KEY_NAMES

    rows = rows.reset_index(drop=True)
    rng = np.random.default_rng(0)
    artists = rows["artist_name"].where(np.arange(len(rows)) % 7 != 0, rows["artist_name"] + ";Second Artist")
    key = rows["key"].map(KEY_NAMES.index).where(np.arange(len(rows)) % 50 != 3, -1)
    table = pd.DataFrame(
        {
            "Unnamed: 0": np.arange(len(rows)),
            "track_id": [f"{i:022x}" for i in rng.integers(0, 2**62, len(rows))],
            "artists": artists,
            "album_name": "album " + rows["track_name"].astype(str),
            "track_name": rows["track_name"],
            "popularity": rows["popularity"],
            "duration_ms": rows["duration_ms"],
            "explicit": rng.random(len(rows)) < 0.2,
            "danceability": rows["danceability"],
            "energy": rows["energy"],
            "key": key.astype(int),
            "loudness": rows["loudness"],
            "mode": (rows["mode"] == "Major").astype(int),
            "speechiness": rows["speechiness"],
            "acousticness": rows["acousticness"],
            "instrumentalness": rows["instrumentalness"],
            "liveness": rows["liveness"],
            "valence": rows["valence"],
            "tempo": pd.to_numeric(rows["tempo"], errors="coerce"),  # the Hub's table has no "?" tempo
            "time_signature": 4,
            "track_genre": rows["music_genre"].map(names),
        }
    )
    return table


@pytest.fixture(scope="session")
def spotify_tables(csv_path, tmp_path_factory) -> dict:
    """The real CSV as the Hub's Spotify Tracks table (60 rows per genre; see `spotify_tracks_table`), as CSV (its
    index written as the leading unnamed column) and Parquet, with the genres in lower case and one renamed to a
    name with a space and non-ASCII letters; and the settings of `spotify_run`: the two genres that share the most
    songs merged, one genre left out. Written at test time, never kept in the repo."""
    frame = pd.read_csv(csv_path, dtype={"tempo": str}).dropna(how="all")
    rows = frame.groupby("music_genre", group_keys=False).sample(60, random_state=5).sample(frac=1.0, random_state=6)
    names = {genre: genre.lower() for genre in rows["music_genre"].unique()}
    renamed = list(names)[2]
    names[renamed] = f"música {names[renamed]}"  # names are kept as written: space, accent
    table = spotify_tracks_table(rows, names)
    # The pair of genres filing the most (artist, track) pairs under both in the whole CSV: merged into one.
    shared = frame.groupby(["artist_name", "track_name"])["music_genre"].agg(lambda g: tuple(sorted(set(g))))
    pair = shared[shared.map(len) == 2].value_counts().index[0]
    merged_into, merged_from = names[pair[1]], names[pair[0]]
    order = list(dict.fromkeys(table["track_genre"].replace({merged_from: merged_into})))
    left_out = next(name for name in order if name != merged_into and name != names[renamed])
    genres = tuple(name for name in order if name != left_out)
    folder = tmp_path_factory.mktemp("spotify")
    table.drop(columns="Unnamed: 0").to_csv(folder / "spotify_tracks.csv")  # the index as pandas writes it
    table.to_parquet(folder / "spotify_tracks.parquet", index=False)
    return {
        "table": table,
        "csv": folder / "spotify_tracks.csv",
        "parquet": folder / "spotify_tracks.parquet",
        "merge": f"{merged_into}={merged_from},{merged_into}",
        "merged": (merged_from, merged_into),
        "left_out": left_out,
        "renamed": names[renamed],
        "genres": genres,
    }


@pytest.fixture(scope="session")
def spotify_run(spotify_tables, tmp_path_factory) -> Path:
    """`music-genre train` on the Parquet Spotify Tracks table (two trials of one epoch, one member), two genres
    merged and one left out by the command line."""
    from music_genre import main

    keep = ",".join(spotify_tables["genres"])
    output = tmp_path_factory.mktemp("spotify-run") / "run"
    arguments = ["train", "--data", str(spotify_tables["parquet"]), "--output", str(output), "--seed", "0"]
    arguments += ["--merge-genres", spotify_tables["merge"], "--genres", keep]
    arguments += ["--n-trials", "2", "--max-epochs", "1", "--members", "1", "--reevaluate-top", "1"]
    assert main(arguments) == 0
    return output


@pytest.fixture(scope="session")
def model_folder(real_data, tmp_path_factory) -> Path:
    """A small network trained for two epochs on the real training split, calibrated (temperature and conformal
    sets) on the validation split as `music-genre train` does, saved as a Hub folder."""
    from music_genre.modeling import (
        GenreFeatureExtractor,
        GenreFFNConfig,
        GenreFFNForSequenceClassification,
        save_model_folder,
    )
    from music_genre.training.calibration import calibrate
    from music_genre.training.data import prepare_splits

    folder = tmp_path_factory.mktemp("space-model")
    prepared = prepare_splits(real_data, GenreFeatureExtractor(), seed=0)
    extractor = prepared.extractor
    torch.manual_seed(0)
    model = GenreFFNForSequenceClassification(GenreFFNConfig(hidden_sizes=[64, 32], id2label=real_data.id2label))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    features = torch.as_tensor(prepared.features["train"])
    labels = torch.as_tensor(prepared.labels["train"])
    model.train()
    for _ in range(2):
        for batch in torch.randperm(len(labels)).split(256):
            model(input_features=features[batch], labels=labels[batch]).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    calibrate(model.eval(), prepared.features["validation"], prepared.labels["validation"])
    save_model_folder(model, extractor, folder)
    return folder


@pytest.fixture(scope="module")
def local_pipeline(model_folder):
    """`model_folder` served in-process through its remote code, as the Space serves it."""
    from transformers import pipeline

    return pipeline(model=str(model_folder), trust_remote_code=True)


@pytest.fixture(scope="module")
def songs(csv_path) -> pd.DataFrame:
    """50 real rows in the public CSV's format (read at test time, never stored in the repo)."""
    frame = pd.read_csv(csv_path).dropna(how="all").sample(50, random_state=3).reset_index(drop=True)
    return frame.astype({"instance_id": int})


@pytest.fixture
def songs_csv(songs, tmp_path) -> Path:
    path = tmp_path / "songs.csv"
    songs.to_csv(path, index=False)
    return path
