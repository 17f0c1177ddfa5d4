"""The one loader: raw data through `datasets`, cleaning with a report, the 80/10/10 split, SMOTE.

A source is any table of Spotify audio features with a genre column (`read_table`): a CSV, Parquet or JSON Lines
file, a `datasets` folder (`save_to_disk`, or a dataset staged by `music-genre push`) or a Hub dataset id. Columns
are read under their Spotify names: `key` as a pitch name or a pitch-class integer (-1 unknown), `mode` as
Major/Minor or 1/0, `artists` (the Hub's Spotify Tracks table) or `artist_name` with `track_name` for the group
split; other columns are ignored. A source with train/validation/test splits (a published dataset) gives the run's
exact split. The genres are the labels the table holds (`GenreSelection` picks the column, merges and keeps some):
no list of genres is fixed here.
"""

import copy
import difflib
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

from music_genre.modeling import FEATURE_NAMES, KEY_NAMES, GenreFeatureExtractor, parse_rows
from music_genre.modeling.configuration_genre_ffn import MODE_NAMES
from music_genre.training.options import LABEL_COLUMNS, SPLIT_MODES, GenreSelection

# Seen from the project root (where the tests, the benchmarks and CI run), never from the installed package.
DEFAULT_CSV = Path("..") / "shared" / "data" / "music_genre.csv"
SPLITS = ("train", "validation", "test")
GROUP_COLUMNS = ("artist_name", "track_name")
KEPT_COLUMNS = (*FEATURE_NAMES, "genre", *GROUP_COLUMNS)
# The fewest rows (group split: songs) of a genre that the 80/10/10 split can give a validation and a test sample
# and SMOTE's 5 neighbours can work with (8 training rows).
MIN_ROWS_PER_GENRE = 10
# File suffixes and the `datasets` builder that reads each.
FILE_BUILDERS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "json", ".json": "json",
                 ".ndjson": "json"}  # fmt: skip
FORMAT_NAMES = {"csv": "CSV", "parquet": "Parquet file", "json": "JSON Lines file"}
# The dataset card's YAML key naming the sha256 of the CSV the published splits came from.
PUBLISHED_SHA256_KEY = "source_csv_sha256"


class DataError(ValueError):
    """Data that cannot be trained or evaluated on, in one line naming what is wrong."""


def default_csv() -> Path:
    """The real dataset: `MUSIC_GENRE_CSV`, else `../shared/data/music_genre.csv` beside the project."""
    return Path(os.environ.get("MUSIC_GENRE_CSV", DEFAULT_CSV))


@dataclass
class Table:
    """A source's rows as read (every column, nothing cleaned), the row positions of its splits when it has
    train/validation/test, its public name (a file or folder name, or a Hub id: never a path), a sha256, and the
    names of each `ClassLabel` column in their declared order (its values are already those names)."""

    frame: pd.DataFrame
    splits: dict[str, np.ndarray] | None
    name: str
    sha256: str
    class_names: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class GenreData:
    """Cleaned rows (13 raw features, `genre` name, artist and track), what cleaning did, and the genres: label id i
    is `genres[i]`."""

    frame: pd.DataFrame
    report: dict
    sha256: str
    # Row positions of each split when the source fixes them (a published dataset), else None.
    fixed_splits: dict[str, np.ndarray] | None = field(default=None)
    genres: tuple[str, ...] = ()

    @property
    def labels(self) -> np.ndarray:
        return self.frame["genre"].map({name: i for i, name in enumerate(self.genres)}).to_numpy()

    @property
    def id2label(self) -> dict[int, str]:
        """The genres as a model config stores them."""
        return dict(enumerate(self.genres))


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


def load_data(source: str | Path | None = None, selection: GenreSelection | None = None) -> GenreData:
    """Load and clean a table (any source `read_table` reads), its genres taken from its label column as
    `selection` says (default: the first of LABEL_COLUMNS present, every genre, nothing merged).

    The report's `source` is the file or folder name, or the Hub id: never a path of this machine.
    """
    selection = selection or GenreSelection()
    source = str(source or default_csv())
    table = read_table(source)
    label_column = label_column_of(table.frame, selection.label_column, source)
    frame = spotify_columns(table.frame, label_column, source)
    frame, report = clean_rows(frame, selection, table.class_names.get(label_column), source)
    report["source"] = table.name
    report["label_column"] = label_column
    report["source_columns"] = [str(name) for name in table.frame.columns]
    if table.splits is not None and report["rows_dropped"]["total"]:
        raise DataError(
            f"dataset {source} has fixed train/validation/test splits, but cleaning drops rows of it "
            f"({report['rows_dropped']}): its splits would no longer be the published ones"
        )
    check_trainable(report, source)
    genres = tuple(name for name, n in report["rows_per_genre"].items() if n)
    return GenreData(frame, report, table.sha256, table.splits, genres)


def read_table(source: str | Path) -> Table:
    """Every row and column of a table: a CSV, Parquet or JSON Lines file (by its suffix), a `datasets` folder
    (`save_to_disk`, or any folder `datasets.load_dataset` reads: data files, a dataset staged by push) or a Hub
    dataset id.

    A source with train, validation and test splits keeps them (`Table.splits`); other splits are concatenated.
    The sha256 is the file's; for a dataset published by push, that of the CSV it was made from (its card
    records it); for other folders and Hub ids, that of the rows' content.
    """
    source = str(source)
    path = Path(source)
    if path.is_file():
        builder = FILE_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise DataError(
                f"data file {source}: unknown format {path.suffix or '(no suffix)'}; give a "
                f"{', '.join(sorted(FILE_BUILDERS))} file, a dataset folder or a Hub dataset id"
            )
        return Table(_read_file(source, builder), None, path.name, file_sha256(source))
    if path.is_dir():
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            try:
                saved = datasets.load_from_disk(source)
            except (OSError, ValueError) as error:  # FileNotFoundError, a damaged arrow file
                cause = " ".join(str(error).split())[:200]
                raise DataError(f"cannot read the dataset folder {source}: {cause}") from error
            return _read_dataset(source, saved)
        if not (path / "README.md").is_file() and not any(
            item.suffix.lower() in FILE_BUILDERS for item in path.rglob("*") if item.is_file()
        ):
            raise DataError(f"--data {source} is a folder holding no data file, saved dataset nor published dataset")
    elif os.path.isabs(source) or path.suffix.lower() in FILE_BUILDERS or source.count("/") != 1:
        raise FileNotFoundError(f"data file not found: {source} (set MUSIC_GENRE_CSV or pass --data)")
    try:
        loaded = datasets.load_dataset(source)
    except (ConnectionError, OSError, datasets.exceptions.DatasetsError) as error:
        raise DataError(
            f"cannot load the dataset {source}: {' '.join(str(error).split())[:200]} (a Hub id needs the Hub "
            "reachable; a local file needs an existing path)"
        ) from error
    return _read_dataset(source, loaded)


def _read_file(source: str, builder: str) -> pd.DataFrame:
    kind = FORMAT_NAMES[builder]
    if Path(source).stat().st_size == 0:
        raise DataError(f"data file {source} is empty")
    try:
        return datasets.load_dataset(builder, data_files=source, split="train").to_pandas()
    except PermissionError as error:
        raise DataError(f"data file {source} cannot be read: permission denied") from error
    except ValueError as error:
        if "corresponds to no data" not in str(error):
            cause = " ".join(str(error).split())[:200]
            raise DataError(f"data file {source} is not a readable {kind}: {cause}") from error
        raise DataError(f"data file {source} holds no rows (a header only?)") from error
    except (datasets.exceptions.DatasetGenerationError, UnicodeDecodeError) as error:
        cause = " ".join(str(error.__cause__ or error).split())[:200]
        raise DataError(f"data file {source} is not a readable {kind}: {cause}") from error


def _class_names_of(dataset: datasets.Dataset) -> dict[str, list[str]]:
    return {name: list(kind.names) for name, kind in dataset.features.items() if isinstance(kind, datasets.ClassLabel)}


def _read_dataset(source: str, loaded: datasets.Dataset | datasets.DatasetDict) -> Table:
    """A `datasets` object as a Table: ClassLabel columns as their names, train/validation/test kept as splits."""
    parts = {"train": loaded} if isinstance(loaded, datasets.Dataset) else dict(loaded)
    if not parts:
        raise DataError(f"dataset {source} has no split")
    fixed = all(name in parts for name in SPLITS)
    names = [*SPLITS, *(name for name in parts if name not in SPLITS)] if fixed else list(parts)
    frames, positions, start = [], {}, 0
    for name in names:
        frame = parts[name].to_pandas()
        for column, labels in _class_names_of(parts[name]).items():
            frame[column] = [labels[int(i)] if pd.notna(i) else None for i in frame[column]]
        frames.append(frame)
        positions[name] = np.arange(start, start + len(frame))
        start += len(frame)
    frame = pd.concat(frames, ignore_index=True)
    sha256 = _published_sha256(source) if _is_published(source) else _content_sha256(frame)
    name = Path(source).name if Path(source).exists() else source
    splits = {split: positions[split] for split in SPLITS} if fixed else None
    return Table(frame, splits, name, sha256, _class_names_of(parts[names[0]]))


def _is_published(source: str) -> bool:
    """A dataset staged or published by push: its card records the sha256 of the CSV it was made from."""
    readme = Path(source) / "README.md"
    if Path(source).is_dir():
        return readme.is_file() and PUBLISHED_SHA256_KEY in readme.read_text(errors="replace")
    try:
        return bool(DatasetCard.load(source, repo_type="dataset").data.get(PUBLISHED_SHA256_KEY))
    except Exception:  # no card, or no Hub: the dataset is hashed by its rows
        return False


def _published_sha256(source: str) -> str:
    """The source CSV's sha256 from the dataset card's YAML (`datasets` does not carry card fields into its info)."""
    readme = Path(source) / "README.md"
    card = DatasetCard.load(readme if readme.is_file() else source, repo_type="dataset")
    sha256 = card.data.get(PUBLISHED_SHA256_KEY)
    if not sha256:
        raise DataError(f"dataset {source} does not record `{PUBLISHED_SHA256_KEY}` in its card's YAML")
    return str(sha256)


def _content_sha256(frame: pd.DataFrame) -> str:
    """sha256 of the rows' content with the column names and order (the same rows give it in any format)."""
    digest = hashlib.sha256("\x1f".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame.astype(str), index=False).to_numpy().tobytes())
    return digest.hexdigest()


def label_column_of(frame: pd.DataFrame, label_column: str | None, source: str = "the data") -> str:
    """The column holding the genres: `label_column`, else the first of LABEL_COLUMNS the table has."""
    columns = ", ".join(map(str, frame.columns[:40]))
    if label_column is None:
        found = next((name for name in LABEL_COLUMNS if name in frame.columns), None)
        if found is None:
            raise DataError(
                f"{source} has no genre column (none of {', '.join(LABEL_COLUMNS)}): name it with --label-column; "
                f"its columns are {columns}"
            )
        return found
    if label_column not in frame.columns:
        raise DataError(f"{source} has no column {label_column!r} (--label-column); its columns are {columns}")
    return label_column


def spotify_columns(frame: pd.DataFrame, label_column: str, source: str = "the data") -> pd.DataFrame:
    """The table under this project's column names: `label_column` as `genre`, `artists` as `artist_name` (when the
    table has no `artist_name`), `key` as a pitch name and `mode` as Major/Minor (missing where unknown: -1 or
    empty); the other columns as they are. Refuses a table that lacks any of the 13 features, naming them."""
    missing = [name for name in FEATURE_NAMES if name not in frame.columns]
    if missing:
        raise DataError(f"{source} is missing column(s): {', '.join(missing)} (of the 13 Spotify audio features)")
    # A column called genre that is not the label column would collide with it.
    frame = frame.drop(columns=["genre"] if label_column != "genre" and "genre" in frame.columns else [])
    frame = frame.rename(columns={label_column: "genre"})
    if "artist_name" not in frame.columns and "artists" in frame.columns:
        frame = frame.rename(columns={"artists": "artist_name"})
    # One spelling of key and mode for every later step (figures, the published dataset), whichever the table used.
    present = frame.index[~frame.isna().all(axis=1)]
    if len(present):
        try:
            _, key, mode = parse_rows(frame.loc[present, list(FEATURE_NAMES)])
        except ValueError as error:  # RawInputError names the column and the row
            raise DataError(f"{source}: {error}") from error
        frame["key"], frame["mode"] = frame["key"].astype(object), frame["mode"].astype(object)
        frame.loc[present, "key"] = np.asarray([*KEY_NAMES, None], dtype=object)[np.where(key < 0, -1, key)]
        frame.loc[present, "mode"] = np.asarray([*MODE_NAMES, None], dtype=object)[np.where(mode < 0, -1, mode)]
    return frame


def check_trainable(report: dict, source: str) -> None:
    """Refuse data with no rows left after cleaning, fewer than two genres, or a genre with too few rows to split,
    naming each such genre with its count and what to do."""
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
            f"{source} holds rows of {len(present)} genre(s) ({', '.join(present)}) in its column "
            f"{report.get('label_column', 'genre')!r}: a classifier needs at least two (check --label-column, "
            "--genres and --merge-genres)"
        )
    scarce = {name: n for name, n in counts.items() if n < MIN_ROWS_PER_GENRE}
    if scarce:
        raise DataError(scarce_genres_message(scarce, source, "rows"))


def scarce_genres_message(scarce: dict[str, int], source: str, unit: str) -> str:
    """Why genres with too few rows (or songs) are refused, and the two ways out."""
    named = ", ".join(f"{name!r} ({n} {unit})" for name, n in scarce.items())
    return (
        f"{source}: every genre needs at least {MIN_ROWS_PER_GENRE} {unit} (the 80/10/10 split takes a validation and "
        f"a test sample of it, SMOTE 5 neighbours among its training rows); too few: {named}. Leave it out with "
        "--genres (the genres to keep, comma-separated) or merge it into a related genre with --merge-genres NEW=A,B"
    )


def select_genres(
    genre: pd.Series, selection: GenreSelection, declared: list[str] | None = None
) -> tuple[pd.Series, list[str]]:
    """`genre` with `selection`'s merges applied (a merged row takes the new name) and the genres kept, in the order
    the table first names them (or a ClassLabel column declares them). Rows of genres left out are not dropped here.

    Refuses a merged or kept name that the data does not hold, suggesting the closest names it does hold.
    """
    present = list(dict.fromkeys(genre.dropna()))
    if declared is not None:
        present = [name for name in declared if name in set(present)]
    merged_into = {}
    for target, sources in selection.merges:
        for name in sources:
            if name not in present:
                raise DataError(_unknown_genre(name, "--merge-genres", present))
            merged_into[name] = target
    genre = genre.map(lambda name: merged_into.get(name, name), na_action="ignore")
    order = list(dict.fromkeys(merged_into.get(name, name) for name in present))
    if selection.genres is not None:
        for name in selection.genres:
            if name not in order:
                raise DataError(_unknown_genre(name, "--genres", order))
        order = [name for name in order if name in selection.genres]
    return genre, order


def _unknown_genre(name: str, flag: str, present: list[str]) -> str:
    lowered = {str(p).casefold(): p for p in present}
    close = [lowered[name.casefold()]] if name.casefold() in lowered else difflib.get_close_matches(name, present, 3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    shown = ", ".join(map(repr, present[:30])) + (f" and {len(present) - 30} more" if len(present) > 30 else "")
    return f"{flag}: the data has no genre {name!r}{hint} (genres are matched as written; the data has {shown})"


def clean_rows(
    frame: pd.DataFrame,
    selection: GenreSelection | None = None,
    declared: list[str] | None = None,
    source: str = "the data",
) -> tuple[pd.DataFrame, dict]:
    """Drop empty rows, rows without a genre and rows of genres `selection` leaves out (counted by reason); mark
    `?` tempo and -1 duration as missing; returns the kept columns and a report. `frame` has this project's column
    names (`spotify_columns`)."""
    missing_columns = [name for name in (*FEATURE_NAMES, "genre") if name not in frame.columns]
    if missing_columns:
        raise DataError(f"{source} is missing column(s): {', '.join(missing_columns)}")
    rows_in = len(frame)
    empty = frame.isna().all(axis=1)
    # A genre is text as the table writes it; an empty cell is no genre.
    no_genre = ~empty & (frame["genre"].isna() | (frame["genre"].astype(str).str.strip() == ""))
    genre = frame["genre"].where(~no_genre & ~empty).map(str, na_action="ignore")
    genre, genres = select_genres(genre, selection or GenreSelection(), declared)
    not_selected = ~empty & ~no_genre & ~genre.isin(genres)
    frame = frame.assign(genre=genre)[~(empty | no_genre | not_selected)].copy()
    songs_named = all(column in frame.columns for column in GROUP_COLUMNS)
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
            "genre_not_selected": int(not_selected.sum()),
            "total": int(rows_in - len(frame)),
        },
        "missing_values": {name: int(frame[name].isna().sum()) for name in FEATURE_NAMES},
        "rows_per_genre": {name: int((frame["genre"] == name).sum()) for name in genres},
        "genre_selection": (selection or GenreSelection()).record(),
        # Whether the table names each row's artist and track (what the group split keeps together).
        "songs_named": songs_named,
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
        raise DataError(f"column '{name}', row {row}: {column.iloc[row]!r} is not a number")
    return values


def unseen_test_rows(data: "GenreData", indices: dict[str, np.ndarray]) -> np.ndarray | None:
    """A mask over the test rows: True where the row's (artist, track) appears in no training or validation row
    (None for a table without song names). A stratified split files some test rows under a song that training holds
    under another genre, and a model can learn to read that off; on a group split every test row is unseen."""
    if not data.report.get("songs_named", True):
        return None
    pairs = data.frame.groupby(list(GROUP_COLUMNS), sort=False, dropna=False).ngroup().to_numpy()
    seen = np.concatenate([pairs[indices["train"]], pairs[indices["validation"]]])
    return ~np.isin(pairs[indices["test"]], seen)


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
        if not data.report.get("songs_named", True):
            raise DataError(
                f"{data.report.get('source', 'the data')} names no artist and track (columns artist_name or artists, "
                "and track_name): --split group keeps each song on one side and needs them; use --split stratified"
            )
        # Split whole (artist, track) pairs, stratified by the genre of each pair's first row.
        units = data.frame.groupby(list(GROUP_COLUMNS), sort=False).ngroup().to_numpy()
        first_rows = np.unique(units, return_index=True)[1]
        unit_labels = labels[first_rows]
        songs = np.bincount(unit_labels, minlength=len(data.genres))
        scarce = {genre: int(n) for genre, n in zip(data.genres, songs) if n < MIN_ROWS_PER_GENRE}
        if scarce:
            source = data.report.get("source", "the data")
            raise DataError(scarce_genres_message(scarce, f"{source} (--split group)", "songs"))
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


def balanced_class_weights(labels: np.ndarray, num_genres: int | None = None) -> list[float]:
    """Per-genre loss weights, n_samples / (n_classes * count), from the labels the loss will see (every one of the
    `num_genres` genres must occur; by default the labels' largest id + 1)."""
    classes = np.arange(num_genres if num_genres is not None else int(np.max(labels)) + 1)
    return compute_class_weight("balanced", classes=classes, y=labels).round(6).tolist()


@dataclass
class PreparedSplits:
    """Encoded features and genre ids per split (only `train` is oversampled), the extractor that encoded them,
    fitted on the training rows, and the genres (label id i is `genres[i]`)."""

    indices: dict[str, np.ndarray]
    features: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    extractor: GenreFeatureExtractor
    genres: tuple[str, ...] = ()

    @property
    def id2label(self) -> dict[int, str]:
        """The genres as a model config stores them."""
        return dict(enumerate(self.genres))

    def only(self, *names: str) -> "PreparedSplits":
        """The same data restricted to some splits, e.g. what a search may see."""
        parts = ({name: part[name] for name in names} for part in (self.indices, self.features, self.labels))
        return PreparedSplits(*parts, extractor=self.extractor, genres=self.genres)


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
    return PreparedSplits(indices, features, split_labels, extractor, data.genres)
