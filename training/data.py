"""The one loader: raw data through `datasets`, cleaning with a report, the 80/10/10 split, SMOTE.

A source is a local CSV in the public Kaggle format, or a dataset published by
`music-genre push` (a Hub dataset id, or its staged local folder), whose
train/validation/test splits are the run's exact split.
"""

import copy
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

from music_genre.modeling import FEATURE_NAMES, GENRES, GenreFeatureExtractor
from music_genre.training.options import SPLIT_MODES

# Seen from the project root (where the tests, the benchmarks and CI run), never from the installed package.
DEFAULT_CSV = Path("..") / "shared" / "data" / "music_genre.csv"
SPLITS = ("train", "validation", "test")
GROUP_COLUMNS = ("artist_name", "track_name")
KEPT_COLUMNS = (*FEATURE_NAMES, "genre", *GROUP_COLUMNS)
# The fewest rows of a genre that an 80/10/10 stratified split and SMOTE's 5 neighbours can work with.
MIN_ROWS_PER_GENRE = 10


class DataError(ValueError):
    """Data that cannot be trained or evaluated on, in one line naming what is wrong."""


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


def run_data_source(recorded: str) -> str:
    """Where a run's recorded data source (a file name or a Hub id, never a path) is now.

    A CSV name is looked up as given, else at MUSIC_GENRE_CSV / the default path (the caller checks its sha256).
    """
    if Path(recorded).exists() or not recorded.endswith(".csv"):
        return recorded
    return str(default_csv())


def load_data(source: str | Path | None = None) -> GenreData:
    """Load and clean a CSV path, a published dataset folder or a Hub dataset id.

    The report's `source` is the file or folder name, or the Hub id: never a path of this machine.
    """
    source = str(source or default_csv())
    if Path(source).is_file():
        frame = _read_csv(source)
        if "music_genre" in frame.columns:
            frame = frame.rename(columns={"music_genre": "genre"})
        frame, report = clean_rows(frame)
        report["source"] = Path(source).name
        check_trainable(report, source)
        return GenreData(frame, report, file_sha256(source))
    if Path(source).is_dir() and not (Path(source) / "README.md").is_file() and not any(Path(source).glob("*.csv")):
        raise DataError(f"--data {source} is a folder holding no CSV nor published dataset")
    if not Path(source).exists() and (os.path.isabs(source) or source.endswith(".csv") or source.count("/") != 1):
        raise FileNotFoundError(f"data file not found: {source} (set MUSIC_GENRE_CSV or pass --data)")
    return _load_published(source)


def _read_csv(source: str) -> pd.DataFrame:
    if Path(source).stat().st_size == 0:
        raise DataError(f"data file {source} is empty")
    try:
        return datasets.load_dataset("csv", data_files=source, split="train").to_pandas()
    except PermissionError as error:
        raise DataError(f"data file {source} cannot be read: permission denied") from error
    except ValueError as error:
        if "corresponds to no data" not in str(error):
            cause = " ".join(str(error).split())[:200]
            raise DataError(f"data file {source} is not a readable CSV: {cause}") from error
        raise DataError(f"data file {source} holds no rows (a header only?)") from error
    except (datasets.exceptions.DatasetGenerationError, UnicodeDecodeError) as error:
        cause = error.__cause__ or error
        raise DataError(f"data file {source} is not a readable CSV: {' '.join(str(cause).split())[:200]}") from error


def check_trainable(report: dict, source: str) -> None:
    """Refuse data with no rows left after cleaning, or a genre with too few rows to split, in our words."""
    dropped = report["rows_dropped"]
    if not report["rows_kept"]:
        reasons = ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in dropped.items() if n and why != "total")
        raise DataError(
            f"no rows left in {source} after cleaning ({report['rows_in']} read" + (f": {reasons})" if reasons else ")")
        )
    counts = report["rows_per_genre"]
    present = [name for name, n in counts.items() if n]
    if len(present) < 2:
        raise DataError(
            f"{source} holds rows of {len(present)} genre(s) ({', '.join(present)}): a classifier needs several; "
            f"the model's genres are {', '.join(GENRES)}"
        )
    scarce = [f"{name} ({n})" for name, n in counts.items() if n < MIN_ROWS_PER_GENRE]
    if scarce:
        raise DataError(
            f"{source}: every genre needs at least {MIN_ROWS_PER_GENRE} rows to split 80/10/10; too few: "
            + ", ".join(scarce)
        )


def _load_published(source: str) -> GenreData:
    """A dataset written by `music-genre push`: its splits are the run's split, its card names the source sha256."""
    try:
        published = datasets.load_dataset(source)
    except (ConnectionError, OSError, datasets.exceptions.DatasetsError) as error:
        raise DataError(
            f"cannot load the dataset {source}: {' '.join(str(error).split())[:200]} (a Hub id needs the Hub "
            "reachable; a local CSV needs an existing path)"
        ) from error
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
    report["source"] = Path(source).name if Path(source).exists() else source
    check_trainable(report, source)
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
    """Encoded features and genre ids per split (only `train` is oversampled), and the extractor that encoded them,
    fitted on the training rows."""

    indices: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    extractor: GenreFeatureExtractor

    def only(self, *names: str) -> "PreparedSplits":
        """The same data restricted to some splits, e.g. what a search may see."""
        parts = ({name: part[name] for name in names} for part in (self.indices, self.features, self.labels))
        return PreparedSplits(*parts, extractor=self.extractor)


def prepare_splits(
    data: GenreData, extractor: GenreFeatureExtractor, seed: int = 42, mode: str = "stratified"
) -> PreparedSplits:
    """Split, fit a copy of `extractor` on the training rows only, encode every split, SMOTE the training split.

    `extractor` is a template (its settings, e.g. the encoding) and is left as it was; the fitted copy is
    `PreparedSplits.extractor`.
    """
    indices = split_indices(data, seed, mode)
    labels = data.labels
    extractor = copy.deepcopy(extractor).fit(data.frame.iloc[indices["train"]])
    features, split_labels = {}, {}
    for name, rows in indices.items():
        features[name] = extractor(data.frame.iloc[rows])["input_features"]
        split_labels[name] = labels[rows]
    features["train"], split_labels["train"] = oversample(features["train"], split_labels["train"], seed)
    features["train"] = features["train"].astype(np.float32)
    return PreparedSplits(indices, features, split_labels, extractor)
