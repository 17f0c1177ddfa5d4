"""The music-genre-ffn Space: one song from its audio features, or a whole CSV in the public dataset's format.

The model is loaded exactly as a Hub user loads it, `pipeline(model=MODEL_ID, trust_remote_code=True)`;
MODEL_ID is a Hub id or a folder, by default the trained model bundled next to this file. This file is
the Space repo's `app.py` as published, so it imports nothing from the project.

The page faces anyone: uploads are capped in size, rows and columns; a CSV is predicted in a worker process of its
own (so one-song requests never wait behind it, and a stuck file is cut off after CSV_TIMEOUT_S); each event has its
own queue with a bounded length; text cells of the downloadable CSV that a spreadsheet would run as a formula are
neutralised; results are kept once, in Gradio's cache, and removed after DOWNLOAD_TTL_S and at exit.

A calibrated model (a temperature and conformal scores in its config, fitted on the validation split) also gives
each song its 90 % genre set (`coverage=` of the pipeline) and, where captum is installed, the features that pushed
towards the top genre and away from it (`explain=True`). A model without them still serves its probabilities, and the
page says what it cannot show.
"""

import atexit
import codecs
import csv
import html
import json
import math
import multiprocessing
import multiprocessing.pool
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
import torch
import transformers
from gradio.utils import get_upload_folder
from huggingface_hub import ModelCard
from transformers import pipeline

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "model"
MAX_ROWS = 100_000
# The dataset has 18; more columns of 100,000 rows would cost seconds and gigabytes to read.
MAX_COLUMNS = 32
MAX_FILE_MB = 50
# The browser gets at most this many rows per table; the downloadable CSV always has all of them. The web process
# turns them into JSON while one-song requests wait for it, so it is kept small (bench/space_load.md).
SHOWN_ROWS = 1_000
# Values echoed back are cut to this many characters: in messages and the problem table, and in the results table.
SHOWN_CHARS = 60
SHOWN_CELL_CHARS = 200
# A table is encoded and classified this many rows at a time (bounds the intermediate arrays, as the pipeline does).
TABLE_CHUNK_ROWS = 16_384
# A result is removed this long after it was written (and when the app exits).
DOWNLOAD_TTL_S = 3600
# A CSV still being processed after this long is abandoned and its worker process replaced.
CSV_TIMEOUT_S = 60
# How long closing a worker pool may take. CPython's Pool.terminate first takes a lock of the pool's task queue, which
# it can wait for without end (seen once at the exit of a test session); the pool's workers are daemonic processes,
# ended at the latest by multiprocessing's own exit handler.
POOL_CLOSE_TIMEOUT_S = 10
# The CSV worker's scheduling priority below the web process's (os.nice).
WORKER_NICENESS = 10
# Queue limits (see bench/space_load.md): one-song calls are short and run side by side; each CSV takes the worker
# process; events beyond QUEUE_SIZE waiting are refused with Gradio's "queue is full" message.
SONG_CONCURRENCY = int(os.environ.get("GENRE_SPACE_SONG_CONCURRENCY", "8"))
CSV_CONCURRENCY = 1
QUEUE_SIZE = 64
PROBLEM_COLUMNS = ["row", "column", "value", "reason"]
# The coverage of the genre sets the page shows: a conformal set holds the true genre this often, over songs.
SET_COVERAGE = 0.9
SET_COLUMN = "genre_set_90"
RESULT_COLUMNS = ["row", "predicted_genre", "probability", "top_3", SET_COLUMN]
ATTRIBUTION_COLUMNS = ["feature", "effect", "direction"]
TOWARDS, AWAY = "towards the top genre", "away from it"
COUNT_COLUMNS = ["genre", "songs"]
# The predicted-genres chart names this many genres at most (the rest share one bar).
CHART_GENRES = 20
# Fallbacks for a model whose feature extractor does not name its keys and modes (`key_names`, `mode_names`).
KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODE_NAMES = ("Major", "Minor")
UNIT_FEATURES = ("acousticness", "danceability", "energy", "instrumentalness", "liveness", "speechiness", "valence")
# The `/predict_song` API's parameters in order (named after the features, with their units), and the CSV column
# each one fills; `duration` is m:ss or seconds and becomes `duration_ms`.
SONG_PARAMETERS = {
    "popularity": "popularity", "acousticness": "acousticness", "danceability": "danceability",
    "duration": "duration_ms", "energy": "energy", "instrumentalness": "instrumentalness", "key": "key",
    "liveness": "liveness", "loudness_db": "loudness", "mode": "mode", "speechiness": "speechiness",
    "tempo_bpm": "tempo", "valence": "valence",
}  # fmt: skip
SONG_INPUTS = tuple(SONG_PARAMETERS)
# A file's column holding the genre each song is filed under, compared with the prediction: the first present.
LABEL_COLUMNS = ("music_genre", "genre", "track_genre")
# Example songs beside the app (written by `music-genre push` from the run's test split): a list of {"artist",
# "track", "genre", "values": the inputs above}. Without it, EXAMPLES; only songs of the model's genres are shown.
EXAMPLES_FILE = HERE / "examples.json"
# Real songs of the public dataset (artist, track, genre it is filed under, then the inputs above).
EXAMPLES = [
    ("Jóhann Jóhannsson", "Flight From The City", "Classical",
     [66, 0.932, 0.13, "6:31", 0.086, 0.912, "A#", 0.108, -21.92, "Major", 0.0373, 90.223, 0.0375]),
    ("Post Malone", "Better Now", "Rap",
     [93, 0.354, 0.68, "3:51", 0.563, 0.0, "A#", 0.136, -5.843, "Major", 0.0454, 145.028, 0.374]),
    ("Kane Brown", "Heaven", "Country",
     [79, 0.263, 0.677, "2:59", 0.556, 0.0, "A", 0.105, -6.544, "Major", 0.0306, 80.009, 0.521]),
    ("TK from Ling tosite sigure", "Unravel", "Anime",
     [65, 0.0495, 0.507, "3:58", 0.889, 0.0, "G", 0.0983, -2.755, "Minor", 0.086, 135.021, 0.333]),
    ("Steve Miller Band", "The Joker", "Blues",
     [74, 0.394, 0.424, "4:24", 0.446, 0.00000378, "F", 0.16, -9.618, "Major", 0.0525, 165.158, 0.794]),
    ("Toto", "Africa", "Rock",
     [85, 0.257, 0.671, "4:56", 0.373, 0.0000795, "A", 0.0481, -18.064, "Major", 0.0323, 92.717, 0.732]),
]  # fmt: skip
# A spreadsheet runs a cell starting with one of these as a formula (OWASP, "CSV Injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_SCAN = re.compile("\0 *[" + re.escape("".join(FORMULA_STARTS)) + "]")
PLAIN_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class InputProblem(ValueError):
    """Input the app can explain to its user."""


def examples_for(genres: list[str], path: Path = EXAMPLES_FILE) -> list[tuple[str, str, str, list]]:
    """The example songs of these genres (so every example is one the model can name): from `path` when it exists,
    else the built-in EXAMPLES."""
    songs = EXAMPLES
    if path.is_file():
        songs = [(s["artist"], s["track"], s["genre"], list(s["values"])) for s in json.loads(path.read_text())]
    known = set(genres)
    return [song for song in songs if song[2] in known]


def label_column(frame: pd.DataFrame) -> str | None:
    """The file's genre column: the first of LABEL_COLUMNS it has, or None."""
    return next((name for name in LABEL_COLUMNS if name in frame.columns), None)


def shown(value: Any, chars: int = SHOWN_CHARS) -> str:
    """A value as text for the user, cut to `chars` characters."""
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return text if len(text) <= chars else f"{text[: chars - 3]}..."


def markdown_text(value: Any) -> str:
    """A value from a file, cut short and escaped so that Markdown shows it as text (no links, images or HTML)."""
    return re.sub(r"([\\`*_{}\[\]()<>#+\-.!|~])", r"\\\1", shown(value))


def parse_duration(text: str | float | None) -> float:
    """`m:ss`, `h:mm:ss` or seconds to milliseconds; empty means unknown (-1, the dataset's marker)."""
    text = "" if text is None else str(text).strip()
    if not text:
        return -1.0
    problem = InputProblem(f"duration {shown(text)!r} is not m:ss (like 3:45) or a number of seconds")
    try:
        parts = [float(part) for part in text.split(":")]
    except ValueError:
        raise problem from None
    if len(parts) > 3 or not all(math.isfinite(p) and p >= 0 for p in parts) or (len(parts) > 1 and parts[-1] >= 60):
        raise problem
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds * 1000.0


def song_row(*values: Any) -> dict[str, Any]:
    """The one-song inputs (in SONG_INPUTS order) as a raw row of the public CSV."""
    row = {SONG_PARAMETERS[name]: value for name, value in zip(SONG_INPUTS, values, strict=True)}
    row["duration_ms"] = parse_duration(row["duration_ms"])
    return row


def neutralise_formula(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula, prefixed with `'` so it is shown as text (OWASP)."""
    if isinstance(value, str) and value.lstrip(" ")[:1] in FORMULA_STARTS and not PLAIN_NUMBER.fullmatch(value.strip()):
        return "'" + value
    return value


def safe_csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame`, or a copy of it whose text cells are safe to open in a spreadsheet."""
    changed = {}
    for name in frame.columns:
        if pd.api.types.is_numeric_dtype(frame[name]):
            continue
        values = frame[name].tolist()
        if not _may_start_a_formula(values):  # one scan of the whole column finds most columns clean
            continue
        safe = [neutralise_formula(value) for value in values]
        if safe != values:
            changed[name] = pd.Series(safe, index=frame.index, dtype=object)
    if not changed:
        return frame
    frame = frame.copy(deep=False)  # the caller's frame is left as it is
    for name, column in changed.items():
        frame[name] = column
    return frame


def _may_start_a_formula(values: list) -> bool:
    """False when no cell of `values` can start like a formula: one regex scan over the cells joined by NUL (a
    non-text cell is joined as its text), so a cell that starts like one always follows a NUL."""
    try:
        joined = "\0".join(values)
    except TypeError:
        joined = "\0".join(map(str, values))
    return FORMULA_SCAN.search("\0" + joined) is not None


def _error_text(error: Exception) -> str:
    """`TypeName: message` of an unexpected error, cut short and escaped for the status Markdown."""
    return f"{type(error).__name__}: {markdown_text(error)}"


def _reason(error: ValueError) -> tuple[str, str | None, int | None]:
    """The extractor's reason, column and row (its RawInputError carries them; an older model's error is text)."""
    return getattr(error, "reason", str(error)), getattr(error, "column", None), getattr(error, "row", None)


class GenreApp:
    """The classifier and what the two tabs do with it."""

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        max_rows: int = MAX_ROWS,
        downloads: str | os.PathLike | None = None,
        max_file_mb: float = MAX_FILE_MB,
        explain: bool = True,
    ):
        self.model_id = str(model or os.environ.get("MODEL_ID") or DEFAULT_MODEL)
        self.max_rows = max_rows
        self.max_file_bytes = int(max_file_mb * 1024 * 1024)
        self.classifier = pipeline(model=self.model_id, trust_remote_code=True)
        self.extractor = self.classifier.feature_extractor
        self.config = config = self.classifier.model.config
        self.features = list(config.feature_names)
        self.genres = [config.id2label[i] for i in range(config.num_labels)]
        self.examples = examples_for(self.genres)
        # Genre sets need the conformal scores a calibrated run stores, and the pipeline's `genre_set_members`, which
        # makes the sets from them; an older model has neither.
        try:
            config.conformal_threshold(SET_COVERAGE)
            self.set_coverage = SET_COVERAGE if hasattr(self.classifier, "genre_set_members") else None
        except (AttributeError, ValueError):
            self.set_coverage = None
        # Why the attribution chart is missing: switched off, or explaining failed for a reason no input can change.
        self.explain_problem: str | None = None if explain else "is switched off for this page"
        # The key and mode names the model's own feature extractor accepts.
        self.key_names = list(getattr(self.extractor, "key_names", KEY_NAMES))
        self.mode_names = sorted(getattr(self.extractor, "mode_names", MODE_NAMES), key=lambda name: name != "Major")
        # A row every model accepts; one cell at a time is swapped in to test a value.
        self.valid_row = song_row(*EXAMPLES[0][3])
        if downloads is None:
            # Inside Gradio's cache folder, so that Gradio serves a result without copying it; this app's own.
            os.makedirs(get_upload_folder(), exist_ok=True)
            downloads = tempfile.mkdtemp(prefix="genre-space-", dir=get_upload_folder())
            atexit.register(shutil.rmtree, downloads, ignore_errors=True)
        self.downloads = Path(downloads)

    # One song

    def predict_song(
        self,
        popularity: float,
        acousticness: float,
        danceability: float,
        duration: str,
        energy: float,
        instrumentalness: float,
        key: str,
        liveness: float,
        loudness_db: float,
        mode: str,
        speechiness: float,
        tempo_bpm: float,
        valence: float,
    ) -> tuple[dict[str, float], str, pd.DataFrame]:
        """Genres of one song with their calibrated probabilities, its 90 % genre set in words, and how much each
        feature moved the top genre's probability (popularity 0-100, the unit features 0-1, duration m:ss or seconds,
        key a pitch name like C#, loudness in dB, mode Major or Minor, tempo in beats per minute)."""
        values = (popularity, acousticness, danceability, duration, energy, instrumentalness, key, liveness)
        values += (loudness_db, mode, speechiness, tempo_bpm, valence)
        try:
            row = song_row(*values)
            genres = self.classifier(row, top_k=None)  # every genre: the chart shows them all
        except ValueError as error:  # InputProblem and the extractor's RawInputError
            raise gr.Error(str(error), print_exception=False) from None
        attributions, explanation = self.explain_top_genre(row, genres[0])
        summary = f"{self.genre_set_sentence(row)}\n\n{explanation}"
        return {item["label"]: item["score"] for item in genres}, summary, attributions

    def genre_set_sentence(self, row: dict[str, Any]) -> str:
        """The song's 90 % conformal genre set in words ("most likely Rap or Hip-Hop"), or why there is none."""
        percent = f"{SET_COVERAGE:.0%}"
        if self.set_coverage is None:
            return (
                f"**{percent} genre set:** not available for this model: it was saved without the conformal "
                "calibration that sets need (train it again with the current `music-genre train`)."
            )
        genres = [item["label"] for item in self.classifier(row, coverage=self.set_coverage)]
        named = " or ".join(filter(None, [", ".join(genres[:-1]), genres[-1]]))
        if len(genres) == len(self.genres):
            named = f"any of the {len(genres)} genres (the features do not narrow this song down)"
        return (
            f"**{percent} genre set: most likely {named}.** For songs drawn like the ones the model was calibrated on, "
            f"a set made this way holds the song's genre {percent} of the time, on average over songs (more often for "
            "some genres, less often for others)."
        )

    def explain_top_genre(self, row: dict[str, Any], top: dict[str, Any]) -> tuple[pd.DataFrame, str]:
        """Each feature's push on the top genre's probability (Integrated Gradients against a typical song, in
        percentage points) as the chart's rows, strongest first, and a sentence; if unavailable, no rows and why."""
        if self.explain_problem is None:
            try:
                attributions = self.classifier(row, top_k=1, explain=True)[0].get("attributions")
            except ImportError:  # the remote code names captum as what is missing
                self.explain_problem = "needs the `captum` package, which is not installed here"
            except (TypeError, ValueError):  # remote code from before explanations
                self.explain_problem = "is not available: this model's code cannot explain its predictions"
            except Exception as error:  # anything else fails this song's chart only, never its prediction
                return _empty_attributions(), f"The chart of features could not be computed ({_error_text(error)})."
            else:
                if attributions is None:
                    self.explain_problem = "is not available: this model's code cannot explain its predictions"
        if self.explain_problem is not None:
            return _empty_attributions(), f"The chart of features {self.explain_problem}."
        ordered = sorted(attributions.items(), key=lambda item: -abs(item[1]))
        frame = pd.DataFrame(
            [(name, round(100 * value, 2), TOWARDS if value >= 0 else AWAY) for name, value in ordered],
            columns=ATTRIBUTION_COLUMNS,
        )
        # The attributions add up to p(song) - p(typical song), up to the integral's error (clipped at 0).
        typical = max(top["score"] - sum(attributions.values()), 0.0)
        return frame, (
            f"**Why {top['label']}:** each bar is how much a feature moved the probability of {top['label']} "
            f"(percentage points) from a typical song's {typical:.0%} (the training medians) to this song's "
            f"{top['score']:.0%}; blue bars pushed towards {top['label']}, red ones away from it, and together they "
            "add up to the difference (Integrated Gradients)."
        )

    # Many songs

    def read_table(self, path: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The uploaded CSV as a frame indexed by row (0 = first data row) and its rows with too many fields.

        Parsed with the `csv` module row by row, so a row wider than the header is a problem row (never an index),
        and reading stops one row past `max_rows`. An InputProblem says what is wrong with the file as a whole.
        """
        if not path:
            raise InputProblem("Upload a CSV file first.")
        size = os.path.getsize(path)
        if size > self.max_file_bytes:
            raise InputProblem(f"The file is {size / 2**20:.1f} MB; the limit is {self.max_file_bytes / 2**20:.0f} MB.")
        with open(path, "rb") as handle:
            head = handle.read(64 * 1024)
        if not head.strip():
            raise InputProblem("The file is empty.")
        encoding = _text_encoding(head)
        try:
            try:
                header, rows, numbers, wide = self._read_rows(path, encoding)
            except UnicodeDecodeError:  # spreadsheet exports are often not UTF-8; latin-1 decodes any byte
                header, rows, numbers, wide = self._read_rows(path, "latin-1")
        except (csv.Error, UnicodeError) as error:
            raise InputProblem(f"This file could not be read as CSV: {markdown_text(error)}") from None
        frame = pd.DataFrame(rows, columns=header, index=pd.Index(numbers, dtype="int64") - 1, dtype=object)
        del rows
        for name in header:
            # Feature columns stay text: the model's extractor reads them (and says which cell it refuses).
            frame[name] = _typed_column(frame[name], numbers=name not in self.features)
        if frame.empty and not wide:
            raise InputProblem("The file has a header but no rows.")
        problems = pd.DataFrame(
            [(number, "", f"{fields} fields", f"the row has {fields} fields, the header {len(header)}; "
              "a value holding the separator must be in double quotes") for number, fields in wide],
            columns=PROBLEM_COLUMNS,
        )  # fmt: skip
        return frame, problems

    def _read_rows(self, path: str, encoding: str) -> tuple[list[str], list[list[str]], list[int], list[tuple]]:
        with open(path, encoding=encoding, newline="") as handle:
            first = handle.readline(64 * 1024)
            handle.seek(0)
            reader = csv.reader(handle, delimiter=_separator(first), skipinitialspace=True)
            header = self._header(next(reader, []))
            width = len(header)
            rows, numbers, wide = [], [], []
            number = 0
            for record in reader:
                if not record:  # a blank line, skipped as pandas does
                    continue
                number += 1
                if number > self.max_rows:
                    raise InputProblem(
                        f"The file has more than {self.max_rows:,} rows, the limit; split it into parts."
                    )
                if len(record) > width:
                    wide.append((number, len(record)))
                    continue
                rows.append(record + [""] * (width - len(record)))
                numbers.append(number)
        return header, rows, numbers, wide

    def _header(self, names: list[str]) -> list[str]:
        """Column names, stripped; unnamed ones numbered as pandas does; duplicates, too many or no features refused."""
        if not names:
            raise InputProblem("The file is empty.")
        if len(names) > MAX_COLUMNS:
            raise InputProblem(f"The header has {len(names):,} columns; at most {MAX_COLUMNS} are accepted.")
        names = [name.strip() or f"Unnamed: {i}" for i, name in enumerate(names)]
        repeated = sorted({name for name in names if names.count(name) > 1}, key=names.index)
        if repeated:
            listed = ", ".join(f"'{markdown_text(name)}'" for name in repeated)
            raise InputProblem(f"The header names the column(s) {listed} more than once; rename or remove the copies.")
        missing = [name for name in self.features if name not in names]
        if missing:
            raise InputProblem(
                f"The file is missing the column(s) {', '.join(missing)}; it needs the 13 feature columns "
                f"{', '.join(self.features)} (other columns are optional and carried into the results)."
            )
        return names

    def find_problems(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One line per bad cell: row number in the file (1 = first data row), column, value and reason.

        Each column is screened at once; only values pandas cannot read as a finite number (and every distinct
        key and mode) go to the model's feature extractor, one distinct value at a time, so the model decides.
        """
        problems = []
        features = frame[self.features]
        empty = features.isna().all(axis=1)
        for position in empty.index[empty]:
            problems.append((int(position), "", "", "the row has no feature values"))
        for name in self.features:
            column = features[name]
            if name in ("key", "mode"):
                suspects = column
            else:
                numbers = pd.to_numeric(column, errors="coerce")
                suspects = column[numbers.isna() | numbers.abs().eq(math.inf)]
            suspects = suspects[~empty[suspects.index]]
            if suspects.empty:
                continue
            codes, distinct = pd.factorize(suspects, use_na_sentinel=True)
            for code, value in enumerate(distinct):
                reason = self._cell_problem(name, value)
                if reason:
                    for position in suspects.index[codes == code]:
                        problems.append((int(position), name, value, reason))
        problems.sort(key=lambda problem: (problem[0], self.features.index(problem[1]) if problem[1] else -1))
        return pd.DataFrame(
            [(position + 1, name, shown(value), reason) for position, name, value, reason in problems],
            columns=PROBLEM_COLUMNS,
        )

    def _cell_problem(self, name: str, value: Any) -> str | None:
        """The feature extractor's reason for refusing `value` in column `name`, or None if it takes it."""
        try:
            self.extractor({**self.valid_row, name: value})
        except ValueError as error:
            return _reason(error)[0]
        return None

    def _slow_problems(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Row by row through the extractor: the fallback if the screen missed something the model refuses."""
        problems = []
        for position in range(len(frame)):
            row = frame.iloc[position : position + 1]
            try:
                self.extractor(row)
            except ValueError as error:
                reason, name, _ = _reason(error)
                value = row[name].iloc[0] if name in row.columns else ""
                problems.append((int(row.index[0]) + 1, name or "", shown(value), reason))
        return pd.DataFrame(problems, columns=PROBLEM_COLUMNS)

    def predict_table(self, path: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str | None, str, pd.DataFrame, str]:
        """Results, problems, downloadable CSV, status line, genre counts and confusion matrix (HTML); never raises."""
        try:
            return self._predict_table(path)
        except InputProblem as problem:
            return _failed(f"**Error:** {problem}")
        except Exception as error:  # a bug or an exotic file must still end as a message, not a traceback
            return _failed(f"**Error:** this file could not be processed ({_error_text(error)}).")

    def _predict_table(self, path: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str | None, str, pd.DataFrame, str]:
        frame, wide = self.read_table(path)
        problems = self.find_problems(frame)
        good = frame.drop(index=problems["row"].unique() - 1)
        try:
            columns = self.classify_table(good)
        except ValueError:  # the screen let a bad value through: fall back to checking every row
            problems = self._slow_problems(frame)
            good = frame.drop(index=problems["row"].unique() - 1)
            columns = self.classify_table(good)
        problems = pd.concat([wide, problems]).sort_values("row", kind="stable") if len(wide) else problems
        total = len(frame) + len(wide)
        if good.empty:
            status = f"**Error:** none of the {total:,} rows has valid values; see *Rows with problems*."
            return _empty_results(), problems.head(SHOWN_ROWS), None, status, _empty_counts(), ""
        extra = [name for name in good.columns if name not in self.features and name not in RESULT_COLUMNS]
        results = pd.DataFrame({"row": good.index.to_numpy() + 1, **columns}, index=good.index).join(good[extra])
        download = self._download_path()
        # Every text cell quoted: a line break inside one stays inside it.
        safe_csv_frame(results).to_csv(download, index=False, quoting=csv.QUOTE_NONNUMERIC)
        status = [f"Predicted {len(results):,} of {total:,} rows."]
        if self.set_coverage is None:
            status.append(f"This model has no conformal calibration, so no {SET_COVERAGE:.0%} genre sets.")
        else:
            sizes = results[SET_COLUMN].str.count(", ") + 1
            status.append(f"`{SET_COLUMN}`: each row's {SET_COVERAGE:.0%} genre set (mean size {sizes.mean():.2f}).")
        if len(problems):
            bad_rows = problems["row"].nunique()
            status.append(f"{bad_rows:,} row(s) have bad values and are listed under *Rows with problems*.")
        status.append(self._agreement(results))
        if len(results) > SHOWN_ROWS or len(problems) > SHOWN_ROWS:
            status.append(f"The tables show the first {SHOWN_ROWS:,} lines; the CSV to download has every row.")
        shown_results = results.head(SHOWN_ROWS).map(shown_cell)
        return (
            shown_results,
            problems.head(SHOWN_ROWS),
            str(download),
            " ".join(filter(None, status)),
            self.genre_counts(results),
            self.confusion_matrix(results),
        )

    def classify_table(self, good: pd.DataFrame) -> dict[str, list]:
        """The results' genre columns in one pass of the model: the top genre, its probability, the top 3 and (a
        calibrated model) the 90 % genre set, the same as the pipeline's `top_k=3` and `coverage=0.9`, which would
        take two passes. Encoded in chunks, as the pipeline does; a value the extractor refuses raises its error."""
        model = self.classifier.model
        columns: dict[str, list] = {"predicted_genre": [], "probability": [], "top_3": []}
        labels = pd.Series(self.genres, dtype=object).to_numpy()  # a numpy array, indexed by genre id arrays
        if self.set_coverage is not None:
            columns[SET_COLUMN] = []
        for start in range(0, len(good), TABLE_CHUNK_ROWS):
            inputs = self.extractor(good.iloc[start : start + TABLE_CHUNK_ROWS], return_tensors="pt")
            with torch.inference_mode():
                logits = model(**inputs.to(model.device)).logits
            probabilities = logits.float().softmax(dim=-1).cpu()
            # Column by column from arrays: per-row lists, kept alive through a chunk, would each be scanned by the
            # garbage collector's full collections (a fifth of the time on 30,000 rows).
            scores, ids = probabilities.topk(min(3, len(self.genres)), dim=-1)
            names = labels[ids.numpy()]
            columns["predicted_genre"] += names[:, 0].tolist()
            columns["probability"] += [round(score, 4) for score in scores[:, 0].tolist()]
            ranked = [
                [f"{name} {score:.2f}" for name, score in zip(names[:, rank].tolist(), scores[:, rank].tolist())]
                for rank in range(ids.shape[1])
            ]
            columns["top_3"] += [", ".join(cells) for cells in zip(*ranked)]
            if self.set_coverage is not None:
                set_ids, sizes = self.classifier.genre_set_members(probabilities, self.set_coverage)
                set_names = labels[set_ids.numpy()]
                named = set_names[:, 0].copy()
                for rank in range(1, set_names.shape[1]):  # each set's genres joined, rank by rank
                    longer = (sizes > rank).numpy()
                    named[longer] = named[longer] + ", " + set_names[longer, rank]
                columns[SET_COLUMN] += named.tolist()
        return columns

    def _agreement(self, results: pd.DataFrame) -> str:
        """When the file has a genre column (LABEL_COLUMNS), how often the prediction agrees with it."""
        column = label_column(results)
        if column is None:
            return ""
        known = results[column].isin(self.genres)
        if not known.any():
            return ""
        agree = (results.loc[known, "predicted_genre"] == results.loc[known, column]).mean()
        return f"The prediction agrees with the file's `{column}` column on {agree:.1%} of {known.sum():,} rows."

    def genre_counts(self, results: pd.DataFrame) -> pd.DataFrame:
        """Songs per predicted genre, most frequent first: every genre, or with more than CHART_GENRES genres the
        most frequent ones and the rest summed in one bar."""
        counts = results["predicted_genre"].value_counts().reindex(self.genres, fill_value=0)
        counts = counts.sort_values(ascending=False, kind="stable")
        if len(counts) > CHART_GENRES:
            rest = counts.iloc[CHART_GENRES - 1 :]
            counts = pd.concat([counts.iloc[: CHART_GENRES - 1], pd.Series({f"{len(rest)} other genres": rest.sum()})])
        return pd.DataFrame({"genre": counts.index, "songs": counts.to_numpy()})

    def confusion_matrix(self, results: pd.DataFrame) -> str:
        """An HTML heat table of the file's genre column (LABEL_COLUMNS; rows) against the prediction (columns), over
        the model's genres; "" without such a column."""
        column = label_column(results)
        if column is None:
            return ""
        known = results[results[column].isin(self.genres)]
        if known.empty:
            return ""
        # The genres the file files its songs under or that were predicted: all of them for ten genres, a readable
        # table for a model of a hundred.
        shown = [genre for genre in self.genres if genre in set(known[column]) | set(known["predicted_genre"])]
        matrix = pd.crosstab(known[column], known["predicted_genre"]).reindex(index=shown, columns=shown, fill_value=0)
        totals = matrix.sum(axis=1)
        cells = []
        for true, counts in matrix.iterrows():
            row = [f'<th scope="row">{html.escape(true)}</th>']
            for predicted, count in counts.items():
                share = count / totals[true] if totals[true] else 0.0
                colour = f"rgba(37, 99, 235, {share:.2f})"
                text = "#fff" if share > 0.5 else "inherit"
                title = html.escape(f"{count:,} {true} songs predicted {predicted}", quote=True)
                row.append(f'<td title="{title}" style="background:{colour};color:{text}">{count:,}</td>')
            cells.append(f"<tr>{''.join(row)}</tr>")
        header = "".join(f'<th scope="col">{html.escape(genre)}</th>' for genre in shown)
        return (
            '<div style="overflow-x:auto"><table class="confusion-matrix" style="font-size:0.85em">'
            f"<caption>Confusion matrix. Rows: the file's <code>{html.escape(column)}</code> ({len(known):,} songs); "
            "columns: "
            "the predicted genre; shading: share of the row.</caption>"
            f'<thead><tr><th scope="col">file \\ predicted</th>{header}</tr></thead>'
            f"<tbody>{''.join(cells)}</tbody></table></div>"
        )

    def _download_path(self) -> Path:
        """A fresh folder per table so concurrent users never share a file; expired folders are removed."""
        remove_expired(self.downloads)
        folder = self.downloads / uuid.uuid4().hex
        folder.mkdir(parents=True)
        return folder / "predicted_genres.csv"

    # The page's header

    def genre_list(self) -> str:
        """The model's genres in words, the first CHART_GENRES of a longer list and how many more."""
        shown = ", ".join(self.genres[:CHART_GENRES])
        more = len(self.genres) - CHART_GENRES
        return shown if more <= 0 else f"{shown} and {more} more"

    def description(self) -> str:
        accuracy, repo_id = card_facts(self.model_id)
        config = self.config
        hidden = "-".join(str(size) for size in getattr(config, "hidden_sizes", []))
        lines = [
            "# Music genre from Spotify audio features",
            f"A feedforward network (Linear, BatchNorm, ReLU and Dropout blocks; hidden layers {hidden}"
            + architecture_words(config)
            + f") that tells {len(self.genres)} genres apart ({self.genre_list()}) from 13 Spotify audio "
            "features of a track.",
            f"Test accuracy: **{accuracy:.1%}** (from the model card)."
            if accuracy is not None
            else "Test accuracy: not recorded (this model has no model card with an accuracy).",
        ]
        temperature = getattr(config, "calibration_temperature", 1.0)
        lines.append(
            f"Probabilities are calibrated (a temperature of {temperature:.3f} fitted on the validation split) and "
            f"each song gets its {SET_COVERAGE:.0%} genre set (split conformal prediction, also fitted on validation)."
            if self.set_coverage is not None
            else "This model was saved without calibration: its probabilities are the network's own, and it has no "
            "genre sets."
        )
        if repo_id:
            lines.append(f"Model repository: [{repo_id}](https://huggingface.co/{repo_id})")
        return "\n\n".join(lines)


def architecture_words(config) -> str:
    """What the header adds to "hidden layers ...": the ensemble and the numeric embeddings, as `config` has them."""
    members = getattr(config, "num_members", 1)
    words = ""
    if members > 1 and getattr(config, "ensemble", "independent") != "independent":
        words += f"; a TabM-style ensemble of {members} networks sharing their weights"
    elif members > 1:
        words += f"; an ensemble of {members} networks"
    embedding = getattr(config, "numeric_embedding", None)
    if embedding:
        how = {"piecewise-linear": "piecewise-linearly", "periodic": "periodically"}.get(embedding, f"({embedding})")
        words += f"; numeric features embedded {how}"
    return words


def card_facts(model: str | os.PathLike) -> tuple[float | None, str | None]:
    """Test accuracy from the model card's model-index and the model's Hub repo id (each None if unknown).

    `model` is a Hub id or a folder; a folder's repo id is the one its card's metadata records (`base_model`,
    `repo_id`), or for the bundled `model/` of a published Space, the model the Space card lists.
    """
    folder = Path(model)
    is_folder = folder.exists()
    card = None
    try:
        card = ModelCard.load(folder / "README.md") if is_folder else ModelCard.load(str(model))
    except Exception:  # no card, or the Hub is unreachable: the page still works
        pass
    if is_folder:
        repo_id = _recorded_repo_id(card) or (_space_model_id() if folder.resolve() == DEFAULT_MODEL else None)
    else:
        repo_id = str(model)
    accuracy = None
    if card is not None:
        results = [r for r in card.data.eval_results or [] if r.metric_type == "accuracy"]
        # A card may list validation figures too: the test split's wins.
        results.sort(key=lambda r: (r.dataset_split or "test") != "test")
        if results:
            accuracy = float(results[0].metric_value)
    return accuracy, repo_id


def _space_model_id() -> str | None:
    """On the published Space the bundled model's repo is the first model the Space card lists."""
    try:
        models = ModelCard.load(HERE / "README.md").data.get("models") or []
    except Exception:  # no Space card beside app.py (a checkout of the project)
        return None
    return models[0] if models and _looks_like_repo_id(str(models[0])) else None


def _recorded_repo_id(card: ModelCard | None) -> str | None:
    if card is None:
        return None
    for key in ("base_model", "repo_id", "model_id", "model_name"):
        value = card.data.get(key)
        value = value[0] if isinstance(value, list) and value else value  # `base_model` may list several
        if isinstance(value, str) and _looks_like_repo_id(value):
            return value
    return None


def _looks_like_repo_id(value: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", value) is not None


def shown_cell(value: Any) -> Any:
    """A table cell for the browser: text cut to SHOWN_CELL_CHARS characters, anything else as it is."""
    return shown(value, SHOWN_CELL_CHARS) if isinstance(value, str) else value


def remove_expired(folder: Path, ttl_s: float = DOWNLOAD_TTL_S) -> None:
    """Remove the result folders in `folder` older than `ttl_s` seconds."""
    now = time.time()
    for old in folder.iterdir() if folder.is_dir() else ():
        try:
            if now - old.stat().st_mtime > ttl_s:
                shutil.rmtree(old, ignore_errors=True)
        except FileNotFoundError:  # another process removed it first
            pass


def _text_encoding(head: bytes) -> str:
    """The encoding of a file from its first bytes: a byte-order mark, UTF-16 without one, else UTF-8."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        # ASCII text in UTF-16 has a zero byte in every pair: the second for little-endian, the first for big.
        if odd.count(0) > 0.9 * len(odd) and not even.count(0):
            return "utf-16-le"
        if even.count(0) > 0.9 * len(even) and not odd.count(0):
            return "utf-16-be"
        raise InputProblem("This is not a CSV file: it holds binary data. Upload comma-separated text.")
    return "utf-8"


def _typed_column(column: pd.Series, numbers: bool = True) -> pd.Series:
    """Text cells as pandas' CSV reader would type them: blank is missing, all-numeric columns become numbers."""
    # The reader's skipinitialspace already made a cell of spaces "" (numpy's comparison: pandas' checks for NA first).
    empty = column.to_numpy() == ""
    has_empty = empty.any()
    if has_empty:
        column = column.mask(empty)
    if not numbers:
        return column
    present = column[~empty] if has_empty else column
    if pd.to_numeric(present.head(100), errors="coerce").isna().any():  # text: no need to try every cell
        return column
    converted = pd.to_numeric(column, errors="coerce")
    return converted if converted.notna().sum() == len(present) else column


def _separator(header_line: str) -> str:
    """Comma, semicolon or tab, whichever the header line uses (spreadsheets export all three)."""
    try:
        return csv.Sniffer().sniff(header_line, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _empty_results() -> pd.DataFrame:
    return pd.DataFrame(columns=RESULT_COLUMNS)


def _empty_attributions() -> pd.DataFrame:
    return pd.DataFrame(
        {"feature": pd.Series(dtype=str), "effect": pd.Series(dtype=float), "direction": pd.Series(dtype=str)}
    )


def _empty_problems() -> pd.DataFrame:
    return pd.DataFrame(columns=PROBLEM_COLUMNS)


def _empty_counts() -> pd.DataFrame:
    return pd.DataFrame({"genre": pd.Series(dtype=str), "songs": pd.Series(dtype="int64")})


def _failed(status: str) -> tuple[pd.DataFrame, pd.DataFrame, None, str, pd.DataFrame, str]:
    return _empty_results(), _empty_problems(), None, status, _empty_counts(), ""


# The worker process's own GenreApp (one per process, built by _start_worker).
_WORKER_APP: GenreApp | None = None


def _start_worker(model_id: str, max_rows: int, downloads: str, max_file_mb: float) -> None:
    global _WORKER_APP
    # Ctrl-C reaches the whole process group: stopping is the web process's to do (it closes the pool).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.nice(WORKER_NICENESS)  # on a busy machine the web process (one-song requests) gets the CPU first
    transformers.utils.logging.disable_progress_bar()  # no "Loading weights" bar on the console per worker
    _WORKER_APP = GenreApp(model_id, max_rows, downloads, max_file_mb)


def _worker_predict_table(path: str | None) -> tuple:
    return _WORKER_APP.predict_table(path)


class TableWorker:
    """`GenreApp.predict_table` in a worker process of its own.

    The web process keeps the interpreter lock for one-song requests and page traffic; a file the worker is still on
    after `timeout_s` is abandoned (the worker is killed and replaced) with a message, so no upload stalls the Space.
    """

    def __init__(self, app: GenreApp, processes: int = CSV_CONCURRENCY, timeout_s: float = CSV_TIMEOUT_S):
        self.arguments = (app.model_id, app.max_rows, str(app.downloads), app.max_file_bytes / 2**20)
        self.processes = processes
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pool = self._start()
        atexit.register(self.close)

    def _start(self) -> multiprocessing.pool.Pool:
        # Spawned, not forked: the web process runs threads, which a fork would copy mid-flight.
        context = multiprocessing.get_context("spawn")
        if threading.current_thread() is not threading.main_thread():  # a replacement: signal.signal is main-only
            return context.Pool(self.processes, initializer=_start_worker, initargs=self.arguments)
        # Started with SIGINT ignored (kept across exec), a worker stays quiet on a Ctrl-C while it still imports.
        caller = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            return context.Pool(self.processes, initializer=_start_worker, initargs=self.arguments)
        finally:
            signal.signal(signal.SIGINT, caller)

    def predict_table(self, path: str | None) -> tuple:
        with self._lock:
            pool = self._pool
        pending = pool.apply_async(_worker_predict_table, (path,))
        try:
            return pending.get(timeout=self.timeout_s)
        except multiprocessing.TimeoutError:
            self._replace(pool)
            return _failed(f"**Error:** this file took more than {self.timeout_s:.0f} s to process and was abandoned.")
        except Exception as error:  # the worker died (out of memory, killed): a message, and a fresh worker
            self._replace(pool)
            return _failed(f"**Error:** this file could not be processed ({_error_text(error)}).")

    def _replace(self, pool: multiprocessing.pool.Pool) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = self._start()
        _terminate(pool)

    def close(self) -> None:
        """End the worker processes and wait for them (bounded), so none outlives the app and nothing is left for
        multiprocessing's resource tracker to report at exit."""
        atexit.unregister(self.close)
        with self._lock:
            if _terminate(self._pool):
                self._pool.join()


def _terminate(pool: multiprocessing.pool.Pool, timeout_s: float = POOL_CLOSE_TIMEOUT_S) -> bool:
    """`pool.terminate()`, given at most `timeout_s` (in a daemon thread): no request and no exit waits on it for
    longer. True when it finished."""
    closer = threading.Thread(target=pool.terminate, name="genre-space-pool-close", daemon=True)
    closer.start()
    closer.join(timeout_s)
    return not closer.is_alive()


def build_demo(
    model: str | os.PathLike | None = None,
    max_rows: int = MAX_ROWS,
    max_file_mb: float = MAX_FILE_MB,
    explain: bool = True,
) -> gr.Blocks:
    """The Space's page; `model` is a Hub id or a folder (default: env MODEL_ID, else the bundled `model/`);
    `explain=False` leaves out the one-song feature chart (and its cost)."""
    app = GenreApp(model, max_rows, max_file_mb=max_file_mb, explain=explain)
    worker = TableWorker(app)
    sweeper = threading.Thread(target=_sweep, args=(app.downloads,), daemon=True, name="genre-space-sweeper")
    sweeper.start()
    # Gradio deletes its copies of uploads (and the results, which live in its cache) after DOWNLOAD_TTL_S.
    with gr.Blocks(title="Music genre classifier", delete_cache=(600, DOWNLOAD_TTL_S)) as demo:
        gr.Markdown(app.description())
        with gr.Tab("One song"):
            with gr.Row():
                with gr.Column():
                    popularity = gr.Number(label="Popularity (0-100)", value=50, minimum=0, maximum=100)
                    duration = gr.Textbox(label="Duration (m:ss or seconds)", value="3:30", max_lines=1)
                    tempo = gr.Number(label="Tempo (BPM)", value=120, minimum=0, maximum=300, step=0.1)
                    loudness = gr.Number(label="Loudness (dB)", value=-7.0, minimum=-60, maximum=5, step=0.1)
                    key = gr.Dropdown(app.key_names, value=app.key_names[0], label="Key")
                    mode = gr.Radio(app.mode_names, value=app.mode_names[0], label="Mode")
                with gr.Column():
                    sliders = {
                        name: gr.Slider(0, 1, value=0.5, step=0.001, label=f"{name.capitalize()} (0-1)")
                        for name in UNIT_FEATURES
                    }
            inputs = [
                popularity, sliders["acousticness"], sliders["danceability"], duration, sliders["energy"],
                sliders["instrumentalness"], key, sliders["liveness"], loudness, mode, sliders["speechiness"],
                tempo, sliders["valence"],
            ]  # fmt: skip
            predict = gr.Button("Predict the genre", variant="primary")
            with gr.Row():
                label = gr.Label(num_top_classes=5, label="Genres")
                with gr.Column():
                    summary = gr.Markdown(label="Genre set and explanation")
                    attributions = gr.BarPlot(
                        x="feature", y="effect", color="direction", label="Features that moved the top genre",
                        y_title="percentage points", color_map={TOWARDS: "#2563eb", AWAY: "#dc2626"},
                        sort="-y", x_label_angle=-30, height=300,
                    )  # fmt: skip
            if app.examples:
                gr.Examples(
                    [values for _, _, _, values in app.examples],
                    inputs=inputs,
                    example_labels=[f"{artist} - {track} ({genre})" for artist, track, genre, _ in app.examples],
                    label="Real songs of the dataset (the genre it files them under)",
                )
            predict.click(
                app.predict_song,
                inputs=inputs,
                outputs=[label, summary, attributions],
                api_name="predict_song",
                concurrency_limit=SONG_CONCURRENCY,
                concurrency_id="song",
            )
        with gr.Tab("Many songs"):
            gr.Markdown(
                "Upload a CSV in the public dataset's format. The 13 feature columns are required; other columns "
                f"(artist, track, ids) are carried into the results. Up to {max_rows:,} rows and {max_file_mb:g} MB; "
                "`?` and empty cells are missing values. Rows with bad values are listed with their row number "
                "(1 = the first row under the header) while the others are still predicted. In the CSV to "
                "download, a text cell that a spreadsheet would run as a formula starts with `'`."
            )
            upload = gr.File(label="CSV file", file_types=[".csv"], type="filepath")
            run = gr.Button("Predict the genres", variant="primary")
            status = gr.Markdown(label="Status")
            counts = gr.BarPlot(
                x="genre", y="songs", label="Predicted genres", sort="-y", x_label_angle=-30, height=300
            )
            confusion = gr.HTML(label="Confusion matrix against the file's genre column")
            results = gr.Dataframe(label="Predicted genres (table)", interactive=False, max_height=400)
            problems = gr.Dataframe(label="Rows with problems", interactive=False, max_height=300)
            download = gr.File(label="Download the results (CSV)")
            run.click(
                worker.predict_table,
                inputs=upload,
                outputs=[results, problems, download, status, counts, confusion],
                api_name="predict_csv",
                concurrency_limit=CSV_CONCURRENCY,
                concurrency_id="csv",
            )
    demo.queue(max_size=QUEUE_SIZE)
    return demo


def _sweep(folder: Path, every_s: float = 60) -> None:
    """Remove expired results once a minute, whether or not anyone predicts a table."""
    while True:
        time.sleep(every_s)
        remove_expired(folder)


def launch(model: str | None = None, host: str = "127.0.0.1", port: int = 7860, **launch_kwargs: Any) -> gr.Blocks:
    """Serve the Space; extra keywords go to `gr.Blocks.launch` (e.g. prevent_thread_lock=True)."""
    max_file_mb = launch_kwargs.pop("max_file_mb", MAX_FILE_MB)
    demo = build_demo(model, max_file_mb=max_file_mb, explain=launch_kwargs.pop("explain", True))
    demo.launch(server_name=host, server_port=port, max_file_size=f"{max_file_mb}mb", **launch_kwargs)
    return demo


if __name__ == "__main__":
    # A Hugging Face Space sets GRADIO_SERVER_NAME=0.0.0.0; run locally, the app stays on loopback.
    launch(
        host=os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
