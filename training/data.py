"""The one loader: raw data through `datasets`, cleaning with a report, the 80/10/10 split, SMOTE.

A source is a local CSV in the public Kaggle format, or a dataset published by
`music-genre push` (a Hub dataset id, or its staged local folder), whose
train/validation/test splits are the run's exact split.
"""

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
from huggingface_hub import DatasetCard
from imblearn.over_sampling import SMOTE
from sklearn.model_selection import train_test_split
from sklearn.utils.class_weight import compute_class_weight

from modeling import FEATURE_NAMES, GENRES, GenreFeatureExtractor

DEFAULT_CSV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "music_genre.csv"
SPLITS = ("train", "validation", "test")
SPLIT_MODES = ("stratified", "group")
GROUP_COLUMNS = ("artist_name", "track_name")
KEPT_COLUMNS = (*FEATURE_NAMES, "genre", *GROUP_COLUMNS)


def default_csv() -> Path:
    """The real dataset: `MUSIC_GENRE_CSV`, else `../shared/data/music_genre.csv` beside the project."""
    return Path(os.environ.get("MUSIC_GENRE_CSV", DEFAULT_CSV))


@dataclass
class GenreData:
    """Cleaned rows (13 raw features, `genre` name, artist and track) and what cleaning did."""

    frame: pd.DataFrame
    report: dict
    sha256: str
    # Row positions of each split when the source fixes them (a published dataset), else None.
    fixed_splits: dict[str, np.ndarray] | None = field(default=None)

    @property
    def labels(self) -> np.ndarray:
        return self.frame["genre"].map({name: i for i, name in enumerate(GENRES)}).to_numpy()


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_data(source: str | Path | None = None) -> GenreData:
    """Load and clean a CSV path, a published dataset folder or a Hub dataset id."""
    source = str(source or default_csv())
    if Path(source).is_file():
        table = datasets.load_dataset("csv", data_files=source, split="train")
        frame = table.to_pandas()
        if "music_genre" in frame.columns:
            frame = frame.rename(columns={"music_genre": "genre"})
        frame, report = clean_rows(frame)
        report["source"] = source
        return GenreData(frame, report, file_sha256(source))
    if not Path(source).exists() and (os.path.isabs(source) or source.endswith(".csv")):
        raise FileNotFoundError(f"data file not found: {source} (set MUSIC_GENRE_CSV or pass --data)")
    return _load_published(source)


def _load_published(source: str) -> GenreData:
    """A dataset written by `music-genre push`: its splits are the run's split, its card names the source sha256."""
    published = datasets.load_dataset(source)
    missing = [name for name in SPLITS if name not in published]
    if missing:
        raise ValueError(f"dataset {source} has no split(s) {missing}; expected {list(SPLITS)}")
    frames, fixed, start = [], {}, 0
    for name in SPLITS:
        part = published[name]
        frame = part.to_pandas()
        if isinstance(part.features["genre"], datasets.ClassLabel):
            frame["genre"] = [part.features["genre"].int2str(int(i)) for i in frame["genre"]]
        frames.append(frame)
        fixed[name] = np.arange(start, start + len(frame))
        start += len(frame)
    frame, report = clean_rows(pd.concat(frames, ignore_index=True))
    if report["rows_dropped"]["total"]:
        raise ValueError(f"published dataset {source} holds rows that cleaning drops: {report['rows_dropped']}")
    report["source"] = source
    return GenreData(frame, report, _published_sha256(source), fixed)


# The dataset card's YAML key naming the sha256 of the CSV the published splits came from.
PUBLISHED_SHA256_KEY = "source_csv_sha256"


def _published_sha256(source: str) -> str:
    """The source CSV's sha256 from the dataset card's YAML (`datasets` does not carry card fields into its info)."""
    readme = Path(source) / "README.md"
    if Path(source).is_dir() and not readme.is_file():
        raise ValueError(f"dataset folder {source} has no README.md recording the sha256 of its source CSV")
    card = DatasetCard.load(readme if readme.is_file() else source, repo_type="dataset")
    sha256 = card.data.get(PUBLISHED_SHA256_KEY)
    if not sha256:
        raise ValueError(f"dataset {source} does not record `{PUBLISHED_SHA256_KEY}` in its card's YAML")
    return str(sha256)


def clean_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Drop empty rows, mark `?` tempo and -1 duration as missing; returns the kept columns and a report."""
    missing_columns = [name for name in (*FEATURE_NAMES, "genre") if name not in frame.columns]
    if missing_columns:
        raise ValueError(f"data is missing column(s): {', '.join(missing_columns)}")
    rows_in = len(frame)
    empty = frame.isna().all(axis=1)
    no_genre = ~empty & frame["genre"].isna()
    unknown_genre = ~empty & ~no_genre & ~frame["genre"].isin(GENRES)
    frame = frame[~(empty | no_genre | unknown_genre)].copy()
    for column in GROUP_COLUMNS:
        if column not in frame.columns:
            frame[column] = ""
    frame["tempo"] = _to_number(frame["tempo"].replace("?", np.nan), "tempo")
    frame["duration_ms"] = _to_number(frame["duration_ms"], "duration_ms").replace(-1.0, np.nan)
    frame = frame[list(KEPT_COLUMNS)].reset_index(drop=True)

    genres_per_pair = frame.groupby(list(GROUP_COLUMNS))["genre"].agg(lambda g: sorted(set(g)))
    shared = genres_per_pair[genres_per_pair.map(len) > 1]
    report = {
        "rows_in": rows_in,
        "rows_kept": len(frame),
        "rows_dropped": {
            "entirely_empty": int(empty.sum()),
            "no_genre": int(no_genre.sum()),
            "unknown_genre": int(unknown_genre.sum()),
            "total": int(rows_in - len(frame)),
        },
        "missing_values": {name: int(frame[name].isna().sum()) for name in FEATURE_NAMES},
        "rows_per_genre": {name: int((frame["genre"] == name).sum()) for name in GENRES},
        "distinct_artist_track_pairs": len(genres_per_pair),
        "pairs_under_several_genres": len(shared),
        "pairs_under_several_genres_list": [
            {"artist_name": artist, "track_name": track, "genres": genres} for (artist, track), genres in shared.items()
        ],
    }
    return frame, report


def _to_number(column: pd.Series, name: str) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    bad = values.isna() & column.notna()
    if bad.any():
        row = bad.to_numpy().nonzero()[0][0]
        raise ValueError(f"column '{name}', row {row}: {column.iloc[row]!r} is not a number")
    return values


def split_indices(data: GenreData, seed: int = 42, mode: str = "stratified") -> dict[str, np.ndarray]:
    """Row positions of an 80/10/10 split stratified by genre; `group` keeps each (artist, track) on one side."""
    if data.fixed_splits is not None:
        return data.fixed_splits
    if mode not in SPLIT_MODES:
        raise ValueError(f"split mode must be one of {SPLIT_MODES}, got {mode!r}")
    labels = data.labels
    if mode == "stratified":
        units, unit_labels = np.arange(len(labels)), labels
    else:
        # Split whole (artist, track) pairs, stratified by the genre of each pair's first row.
        units = data.frame.groupby(list(GROUP_COLUMNS), sort=False).ngroup().to_numpy()
        first_rows = np.unique(units, return_index=True)[1]
        unit_labels = labels[first_rows]
    unit_ids = np.arange(len(unit_labels))
    train, rest = train_test_split(unit_ids, test_size=0.2, stratify=unit_labels, random_state=seed)
    validation, test = train_test_split(rest, test_size=0.5, stratify=unit_labels[rest], random_state=seed)
    if mode == "group":
        train, validation, test = (np.flatnonzero(np.isin(units, part)) for part in (train, validation, test))
    return {"train": np.sort(train), "validation": np.sort(validation), "test": np.sort(test)}


def oversample(features: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE on preprocessed training features; call it on the training split only."""
    if np.unique(np.bincount(labels)).size == 1:
        return features, labels  # already balanced: SMOTE would add nothing
    return SMOTE(random_state=seed).fit_resample(features, labels)


def balanced_class_weights(labels: np.ndarray) -> list[float]:
    """Per-genre loss weights, n_samples / (n_classes * count), from the labels the loss will see."""
    classes = np.arange(len(GENRES))
    return compute_class_weight("balanced", classes=classes, y=labels).round(6).tolist()


@dataclass
class PreparedSplits:
    """Encoded features and genre ids per split; only `train` is oversampled."""

    indices: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]

    def only(self, *names: str) -> "PreparedSplits":
        """The same data restricted to some splits, e.g. what a search may see."""
        return PreparedSplits(
            *({name: part[name] for name in names} for part in (self.indices, self.features, self.labels))
        )


def prepare_splits(
    data: GenreData, extractor: GenreFeatureExtractor, seed: int = 42, mode: str = "stratified"
) -> PreparedSplits:
    """Split, fit `extractor` on the training rows only, encode every split, SMOTE the training split."""
    indices = split_indices(data, seed, mode)
    labels = data.labels
    extractor.fit(data.frame.iloc[indices["train"]])
    features, split_labels = {}, {}
    for name, rows in indices.items():
        features[name] = extractor(data.frame.iloc[rows])["input_features"]
        split_labels[name] = labels[rows]
    features["train"], split_labels["train"] = oversample(features["train"], split_labels["train"], seed)
    features["train"] = features["train"].astype(np.float32)
    return PreparedSplits(indices, features, split_labels)
