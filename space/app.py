"""The music-genre-ffn Space: one song from its audio features, or a whole CSV in the public dataset's format.

The model is loaded exactly as a Hub user loads it, `pipeline(model=MODEL_ID, trust_remote_code=True)`;
MODEL_ID is a Hub id or a folder, by default the trained model bundled next to this file. This file is
the Space repo's `app.py` as published, so it imports nothing from the project.
"""

import csv
import math
import os
import re
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from huggingface_hub import ModelCard
from transformers import pipeline

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "model"
MAX_ROWS = 100_000
# The browser gets at most this many rows per table; the downloadable CSV always has all of them.
SHOWN_ROWS = 10_000
# Download folders older than this are removed when a new table is predicted.
DOWNLOAD_TTL_S = 3600
ERROR_PATTERN = re.compile(r"column '(?P<column>[^']+)', row (?P<row>\d+): (?P<reason>.*)")
PROBLEM_COLUMNS = ["row", "column", "value", "reason"]
RESULT_COLUMNS = ["row", "predicted_genre", "probability", "top_3"]
# Fallbacks for a model whose remote code does not export its key and mode names.
KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODE_NAMES = ("Major", "Minor")
UNIT_FEATURES = ("acousticness", "danceability", "energy", "instrumentalness", "liveness", "speechiness", "valence")
SONG_INPUTS = (
    "popularity", "acousticness", "danceability", "duration", "energy", "instrumentalness", "key",
    "liveness", "loudness", "mode", "speechiness", "tempo", "valence",
)  # fmt: skip
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


class InputProblem(ValueError):
    """Input the app can explain to its user."""


def parse_duration(text: str | float | None) -> float:
    """`m:ss`, `h:mm:ss` or seconds to milliseconds; empty means unknown (-1, the dataset's marker)."""
    text = "" if text is None else str(text).strip()
    if not text:
        return -1.0
    problem = InputProblem(f"duration {text!r} is not m:ss (like 3:45) or a number of seconds")
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
    row = dict(zip(SONG_INPUTS, values, strict=True))
    row["duration_ms"] = parse_duration(row.pop("duration"))
    return row


class GenreApp:
    """The classifier and what the two tabs do with it."""

    def __init__(self, model: str | os.PathLike | None = None, max_rows: int = MAX_ROWS):
        self.model_id = str(model or os.environ.get("MODEL_ID") or DEFAULT_MODEL)
        self.max_rows = max_rows
        self.classifier = pipeline(model=self.model_id, trust_remote_code=True)
        self.extractor = self.classifier.feature_extractor
        self.config = config = self.classifier.model.config
        self.features = list(config.feature_names)
        self.genres = [config.id2label[i] for i in range(config.num_labels)]
        # The key and mode names the model's own feature extractor accepts.
        extractor_module = sys.modules[type(self.extractor).__module__]
        self.key_names = list(getattr(extractor_module, "KEY_NAMES", KEY_NAMES))
        self.mode_names = sorted(getattr(extractor_module, "MODE_NAMES", MODE_NAMES), key=lambda name: name != "Major")
        # A row every model accepts; one cell at a time is swapped in to test a value.
        self.valid_row = song_row(*EXAMPLES[0][3])
        self.downloads = Path(tempfile.mkdtemp(prefix="genre-space-"))

    # One song

    def predict_song(self, *values: Any) -> dict[str, float]:
        try:
            genres = self.classifier(song_row(*values))
        except ValueError as error:  # InputProblem included
            raise gr.Error(str(error), print_exception=False) from None
        return {item["label"]: item["score"] for item in genres}

    # Many songs

    def read_table(self, path: str | None) -> pd.DataFrame:
        """The uploaded CSV as text cells parsed by pandas; an InputProblem says what is wrong with it."""
        if not path:
            raise InputProblem("Upload a CSV file first.")
        with open(path, "rb") as handle:
            head = handle.read(64 * 1024)
        if not head.strip():
            raise InputProblem("The file is empty.")
        if b"\x00" in head:
            raise InputProblem("This is not a CSV file: it holds binary data. Upload comma-separated text.")
        separator = _separator(head.decode("utf-8", errors="ignore"))
        try:
            try:
                frame = self._read_csv(path, separator, "utf-8-sig")
            except UnicodeDecodeError:  # spreadsheet exports are often not UTF-8; latin-1 decodes any byte
                frame = self._read_csv(path, separator, "latin-1")
        except pd.errors.EmptyDataError:
            raise InputProblem("The file is empty.") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
            detail = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            detail = detail.removeprefix("Error tokenizing data. C error: ")  # pandas' wording, not the user's
            raise InputProblem(f"This file could not be read as CSV: {detail}") from None
        frame.columns = [str(name).strip() for name in frame.columns]
        if frame.empty:
            raise InputProblem("The file has a header but no rows.")
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise InputProblem(
                f"The file is missing the column(s) {', '.join(missing)}; it needs the 13 feature columns "
                f"{', '.join(self.features)} (other columns are optional and carried into the results)."
            )
        if len(frame) > self.max_rows:
            raise InputProblem(f"The file has more than {self.max_rows:,} rows, the limit; split it into parts.")
        return frame.reset_index(drop=True)

    def _read_csv(self, path: str, separator: str, encoding: str) -> pd.DataFrame:
        # One row past the limit is enough to tell that a file is too long, without reading all of it.
        return pd.read_csv(path, sep=separator, nrows=self.max_rows + 1, encoding=encoding, skipinitialspace=True)

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
            [(position + 1, name, str(value), reason) for position, name, value, reason in problems],
            columns=PROBLEM_COLUMNS,
        )

    def _cell_problem(self, name: str, value: Any) -> str | None:
        """The feature extractor's reason for refusing `value` in column `name`, or None if it takes it."""
        try:
            self.extractor({**self.valid_row, name: value})
        except ValueError as error:
            match = ERROR_PATTERN.match(str(error))
            return match["reason"] if match else str(error)
        return None

    def _slow_problems(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Row by row through the extractor: the fallback if the screen missed something the model refuses."""
        problems = []
        for position in range(len(frame)):
            try:
                self.extractor(frame.iloc[position : position + 1])
            except ValueError as error:
                match = ERROR_PATTERN.match(str(error))
                name = match["column"] if match else ""
                value = frame[name].iloc[position] if name in frame.columns else ""
                problems.append((position + 1, name, str(value), match["reason"] if match else str(error)))
        return pd.DataFrame(problems, columns=PROBLEM_COLUMNS)

    def predict_table(self, path: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str | None, str]:
        """Results table, problem table, downloadable CSV and a status line; never raises."""
        try:
            return self._predict_table(path)
        except InputProblem as problem:
            return _empty_results(), _empty_problems(), None, f"**Error:** {problem}"
        except Exception as error:  # a bug or an exotic file must still end as a message, not a traceback
            message = f"**Error:** this file could not be processed ({type(error).__name__}: {error}".splitlines()[0]
            return _empty_results(), _empty_problems(), None, message[:400] + ")."

    def _predict_table(self, path: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str | None, str]:
        frame = self.read_table(path)
        problems = self.find_problems(frame)
        good = frame.drop(index=problems["row"].unique() - 1)
        try:
            genres = self.classifier(good, top_k=3) if len(good) else []
        except ValueError:  # the screen let a bad value through: fall back to checking every row
            problems = self._slow_problems(frame)
            good = frame.drop(index=problems["row"].unique() - 1)
            genres = self.classifier(good, top_k=3) if len(good) else []
        if good.empty:
            status = f"**Error:** none of the {len(frame):,} rows has valid values; see *Rows with problems*."
            return _empty_results(), problems.head(SHOWN_ROWS), None, status
        extra = [name for name in good.columns if name not in self.features and name not in RESULT_COLUMNS]
        results = pd.DataFrame(
            {
                "row": good.index.to_numpy() + 1,
                "predicted_genre": [row[0]["label"] for row in genres],
                "probability": [round(row[0]["score"], 4) for row in genres],
                "top_3": [", ".join(f"{g['label']} {g['score']:.2f}" for g in row) for row in genres],
            },
            index=good.index,
        ).join(good[extra])
        download = self._download_path()
        results.to_csv(download, index=False)
        status = [f"Predicted {len(results):,} of {len(frame):,} rows."]
        if len(problems):
            bad_rows = problems["row"].nunique()
            status.append(f"{bad_rows:,} row(s) have bad values and are listed under *Rows with problems*.")
        status.append(self._agreement(results))
        if len(results) > SHOWN_ROWS or len(problems) > SHOWN_ROWS:
            status.append(f"The tables show the first {SHOWN_ROWS:,} lines; the CSV to download has every row.")
        return results.head(SHOWN_ROWS), problems.head(SHOWN_ROWS), str(download), " ".join(filter(None, status))

    def _agreement(self, results: pd.DataFrame) -> str:
        """When the file has the dataset's own genre column, how often the prediction agrees with it."""
        if "music_genre" not in results.columns:
            return ""
        known = results["music_genre"].isin(self.genres)
        if not known.any():
            return ""
        agree = (results.loc[known, "predicted_genre"] == results.loc[known, "music_genre"]).mean()
        return f"The prediction agrees with the file's `music_genre` column on {agree:.1%} of {known.sum():,} rows."

    def _download_path(self) -> Path:
        """A fresh folder per table so concurrent users never share a file; old folders are removed."""
        now = time.time()
        for old in self.downloads.iterdir():
            if now - old.stat().st_mtime > DOWNLOAD_TTL_S:
                shutil.rmtree(old, ignore_errors=True)
        folder = self.downloads / uuid.uuid4().hex
        folder.mkdir()
        return folder / "predicted_genres.csv"

    # The page's header

    def description(self) -> str:
        accuracy, repo_id = card_facts(self.model_id)
        config = self.config
        members = getattr(config, "num_members", 1)
        hidden = "-".join(str(size) for size in getattr(config, "hidden_sizes", []))
        lines = [
            "# Music genre from Spotify audio features",
            f"A feedforward network (Linear, BatchNorm, ReLU and Dropout blocks; hidden layers {hidden}"
            + (f"; an ensemble of {members} networks" if members > 1 else "")
            + f") that tells {len(self.genres)} genres apart ({', '.join(self.genres)}) from 13 Spotify audio "
            "features of a track.",
            f"Test accuracy: **{accuracy:.1%}** (from the model card)."
            if accuracy is not None
            else "Test accuracy: not recorded (this model has no model card with an accuracy).",
        ]
        if repo_id:
            lines.append(f"Model repository: [{repo_id}](https://huggingface.co/{repo_id})")
        return "\n\n".join(lines)


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


def _separator(text: str) -> str:
    """Comma, semicolon or tab, whichever the header line uses (spreadsheets export all three)."""
    header = text.splitlines()[0] if text else ""
    try:
        return csv.Sniffer().sniff(header, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def _empty_results() -> pd.DataFrame:
    return pd.DataFrame(columns=RESULT_COLUMNS)


def _empty_problems() -> pd.DataFrame:
    return pd.DataFrame(columns=PROBLEM_COLUMNS)


def build_demo(model: str | os.PathLike | None = None, max_rows: int = MAX_ROWS) -> gr.Blocks:
    """The Space's page; `model` is a Hub id or a folder (default: env MODEL_ID, else the bundled `model/`)."""
    app = GenreApp(model, max_rows)
    # Gradio's copies of uploads and downloads are deleted after a day.
    with gr.Blocks(title="Music genre classifier", delete_cache=(3600, 86400)) as demo:
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
            label = gr.Label(num_top_classes=5, label="Genres")
            gr.Examples(
                [values for _, _, _, values in EXAMPLES],
                inputs=inputs,
                example_labels=[f"{artist} - {track} ({genre})" for artist, track, genre, _ in EXAMPLES],
                label="Real songs of the dataset (the genre it files them under)",
            )
            predict.click(app.predict_song, inputs=inputs, outputs=label, api_name="predict_song")
        with gr.Tab("Many songs"):
            gr.Markdown(
                "Upload a CSV in the public dataset's format. The 13 feature columns are required; other columns "
                f"(artist, track, ids) are carried into the results. Up to {max_rows:,} rows; `?` and empty cells "
                "are missing values. Rows with bad values are listed with their row number (1 = the first row "
                "under the header) while the others are still predicted."
            )
            upload = gr.File(label="CSV file", file_types=[".csv"], type="filepath")
            run = gr.Button("Predict the genres", variant="primary")
            status = gr.Markdown()
            results = gr.Dataframe(label="Predicted genres", interactive=False, max_height=400)
            problems = gr.Dataframe(label="Rows with problems", interactive=False, max_height=300)
            download = gr.File(label="Download the results (CSV)")
            run.click(
                app.predict_table, inputs=upload, outputs=[results, problems, download, status], api_name="predict_csv"
            )
    return demo


def launch(model: str | None = None, host: str = "127.0.0.1", port: int = 7860, **launch_kwargs: Any) -> gr.Blocks:
    """Serve the Space; extra keywords go to `gr.Blocks.launch` (e.g. prevent_thread_lock=True)."""
    demo = build_demo(model)
    demo.launch(server_name=host, server_port=port, **launch_kwargs)
    return demo


if __name__ == "__main__":
    # A Hugging Face Space sets GRADIO_SERVER_NAME=0.0.0.0; run locally, the app stays on loopback.
    launch(
        host=os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
