"""The music-genre-ffn Space: one song from its audio features, or a whole CSV in the public dataset's format.

The model is loaded exactly as a Hub user loads it, `pipeline(model=MODEL_ID, trust_remote_code=True)`;
MODEL_ID is a Hub id or a folder, by default the trained model bundled next to this file. This file is
the Space repo's `app.py` as published, so it imports nothing from the project.
"""

import os
import re
import sys
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd
from huggingface_hub import ModelCard
from transformers import pipeline

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = HERE / "model"
MAX_ROWS = 100_000
ERROR_PATTERN = re.compile(r"column '(?P<column>[^']+)', row (?P<row>\d+): (?P<reason>.*)")
UNIT_FEATURES = ("acousticness", "danceability", "energy", "instrumentalness", "liveness", "speechiness", "valence")
SONG_INPUTS = (
    "popularity", "acousticness", "danceability", "duration", "energy", "instrumentalness", "key",
    "liveness", "loudness", "mode", "speechiness", "tempo", "valence",
)  # fmt: skip
# Real songs of the public dataset (artist, track, genre filed under, then the inputs above).
EXAMPLES = [
    ("Jóhann Jóhannsson", "Flight From The City", "Classical",
     [66, 0.932, 0.13, "6:31", 0.086, 0.912, "A#", 0.108, -21.92, "Major", 0.0373, 90.223, 0.0375]),
    ("Post Malone", "Better Now", "Rap",
     [93, 0.354, 0.68, "3:51", 0.563, 0.0, "A#", 0.136, -5.843, "Major", 0.0454, 145.028, 0.374]),
    ("Kane Brown", "Heaven", "Country",
     [79, 0.263, 0.677, "2:59", 0.556, 0.0, "A", 0.105, -6.544, "Major", 0.0306, 80.009, 0.521]),
    ("Blur", "Song 2 - 2012 Remastered Version", "Electronic",
     [76, 0.00178, 0.674, "2:01", 0.789, 0.0071, "G#", 0.0754, -6.903, "Major", 0.0676, 129.804, 0.918]),
    ("A Tribe Called Quest", "Can I Kick It?", "Jazz",
     [71, 0.173, 0.848, "4:12", 0.666, 0.000699, "C", 0.129, -6.547, "Major", 0.274, 96.662, 0.744]),
]  # fmt: skip


class InputProblem(ValueError):
    """Input the app can explain to its user."""


def parse_duration(text: str | float | None) -> float:
    """`m:ss`, `h:mm:ss` or seconds to milliseconds; empty means unknown (-1, the dataset's marker)."""
    text = "" if text is None else str(text).strip()
    if not text:
        return -1.0
    try:
        parts = [float(part) for part in text.split(":")]
    except ValueError:
        raise InputProblem(f"duration {text!r} is not m:ss or a number of seconds") from None
    if len(parts) > 3 or any(part < 0 for part in parts) or (len(parts) > 1 and parts[-1] >= 60):
        raise InputProblem(f"duration {text!r} is not m:ss or a number of seconds")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds * 1000.0


class GenreApp:
    """The classifier and what the two tabs do with it."""

    def __init__(self, model: str | os.PathLike | None = None, max_rows: int = MAX_ROWS):
        self.model_id = str(model or os.environ.get("MODEL_ID") or DEFAULT_MODEL)
        self.max_rows = max_rows
        self.classifier = pipeline(model=self.model_id, trust_remote_code=True)
        config = self.classifier.model.config
        self.features = list(config.feature_names)
        self.genres = [config.id2label[i] for i in range(config.num_labels)]
        # The key and mode names the model's own feature extractor accepts.
        extractor_module = sys.modules[type(self.classifier.feature_extractor).__module__]
        self.key_names = list(extractor_module.KEY_NAMES)
        self.mode_names = list(extractor_module.MODE_NAMES)

    def song_row(self, *values) -> dict:
        row = dict(zip(SONG_INPUTS, values, strict=True))
        row["duration_ms"] = parse_duration(row.pop("duration"))
        return row

    def predict_song(self, *values) -> dict[str, float]:
        try:
            genres = self.classifier(self.song_row(*values))
        except ValueError as error:  # InputProblem included
            raise gr.Error(str(error)) from None
        return {item["label"]: item["score"] for item in genres}

    def read_table(self, path: str | None) -> pd.DataFrame:
        if path is None:
            raise InputProblem("Upload a CSV file first.")
        try:
            frame = pd.read_csv(path)
        except pd.errors.EmptyDataError:
            raise InputProblem("The file is empty.") from None
        except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
            raise InputProblem(f"This file could not be read as CSV ({type(error).__name__}).") from None
        if frame.empty:
            raise InputProblem("The file has a header but no rows.")
        missing = [name for name in self.features if name not in frame.columns]
        if missing:
            raise InputProblem(
                f"The file is missing the column(s) {', '.join(missing)}; it needs the 13 feature columns "
                f"{', '.join(self.features)}."
            )
        if len(frame) > self.max_rows:
            raise InputProblem(f"The file has {len(frame):,} rows; the limit is {self.max_rows:,}. Split it up.")
        return frame

    def find_problems(self, frame: pd.DataFrame) -> pd.DataFrame:
        """One line per bad row: its number in the file (1 = first data row), column, value, reason."""
        problems = []
        chunk = 1000
        for start in range(0, len(frame), chunk):
            part = frame.iloc[start : start + chunk]
            try:
                self.classifier.feature_extractor(part)
                continue
            except ValueError:
                pass
            for offset in range(len(part)):
                try:
                    self.classifier.feature_extractor(part.iloc[offset : offset + 1])
                except ValueError as error:
                    problems.append(self._problem(frame, start + offset, str(error)))
        return pd.DataFrame(problems, columns=["row", "column", "value", "reason"])

    def _problem(self, frame: pd.DataFrame, position: int, message: str) -> dict:
        match = ERROR_PATTERN.match(message)
        column = match["column"] if match else ""
        value = frame.iloc[position][column] if column in frame.columns else ""
        return {
            "row": position + 1,
            "column": column,
            "value": str(value),
            "reason": match["reason"] if match else message,
        }

    def predict_table(self, path: str | None) -> tuple[pd.DataFrame, pd.DataFrame, str | None, str]:
        """Results table, problem table, downloadable CSV and a status line; never raises."""
        empty_results, empty_problems = pd.DataFrame(), pd.DataFrame(columns=["row", "column", "value", "reason"])
        try:
            frame = self.read_table(path)
        except InputProblem as problem:
            return empty_results, empty_problems, None, f"**Error:** {problem}"
        problems = self.find_problems(frame)
        good = frame.drop(index=frame.index[problems["row"].to_numpy(dtype=int) - 1])
        if good.empty:
            return empty_results, problems, None, f"**Error:** none of the {len(frame):,} rows has valid values."
        genres = self.classifier(good, top_k=3)
        extra = [name for name in good.columns if name not in self.features]
        results = pd.DataFrame(
            {
                "row": good.index.to_numpy() + 1,
                "predicted_genre": [row[0]["label"] for row in genres],
                "probability": [round(row[0]["score"], 4) for row in genres],
                "top_3": [", ".join(f"{g['label']} {g['score']:.2f}" for g in row) for row in genres],
            },
            index=good.index,
        ).join(good[extra])
        download = Path(tempfile.mkdtemp(prefix="genres-")) / "predicted_genres.csv"
        results.to_csv(download, index=False)
        status = f"Predicted {len(results):,} of {len(frame):,} rows."
        if len(problems):
            status += f" {len(problems):,} row(s) have bad values and are listed under *Rows with problems*."
        return results, problems, str(download), status

    def description(self) -> str:
        accuracy, repo_id = self._card_facts()
        lines = [
            "# Music genre from Spotify audio features",
            "A feedforward network (Linear, BatchNorm, ReLU, Dropout blocks; an ensemble averaged into one model) "
            f"that tells {len(self.genres)} genres ({', '.join(self.genres)}) apart from 13 audio features.",
            f"Test accuracy: **{accuracy}**." if accuracy else "Test accuracy: not recorded in this model's card.",
        ]
        if repo_id:
            lines.append(f"Model: [{repo_id}](https://huggingface.co/{repo_id})")
        return "\n\n".join(lines)

    def _card_facts(self) -> tuple[str | None, str | None]:
        folder = Path(self.model_id)
        repo_id = None if folder.exists() else self.model_id
        try:
            card = ModelCard.load(folder / "README.md") if folder.exists() else ModelCard.load(self.model_id)
        except Exception:  # no card, or the Hub is unreachable: the page still works
            return None, repo_id
        for result in card.data.eval_results or []:
            if result.metric_type == "accuracy":
                return f"{result.metric_value:.4f}", repo_id or card.data.model_name
        return None, repo_id or card.data.model_name


def build_demo(model: str | os.PathLike | None = None, max_rows: int = MAX_ROWS) -> gr.Blocks:
    app = GenreApp(model, max_rows)
    with gr.Blocks(title="Music genre classifier") as demo:
        gr.Markdown(app.description())
        with gr.Tab("One song"):
            with gr.Row():
                with gr.Column():
                    popularity = gr.Number(label="Popularity (0-100)", value=50, minimum=0, maximum=100)
                    duration = gr.Textbox(label="Duration (m:ss or seconds)", value="3:30")
                    tempo = gr.Number(label="Tempo (BPM)", value=120, minimum=0, maximum=300)
                    loudness = gr.Number(label="Loudness (dB)", value=-7.0, minimum=-60, maximum=5)
                    key = gr.Dropdown(app.key_names, value="C", label="Key")
                    mode = gr.Radio(app.mode_names, value="Major", label="Mode")
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
            )
            predict.click(app.predict_song, inputs=inputs, outputs=label, api_name="predict_song")
        with gr.Tab("Many songs"):
            gr.Markdown(
                "Upload a CSV in the public dataset's format: the 13 feature columns are required, other columns "
                f"(artist, track, ids) are carried into the results. Up to {max_rows:,} rows; `?` and empty cells "
                "are missing values."
            )
            upload = gr.File(label="CSV file", file_types=[".csv"], type="filepath")
            run = gr.Button("Predict the genres", variant="primary")
            status = gr.Markdown()
            results = gr.Dataframe(label="Predicted genres", interactive=False)
            problems = gr.Dataframe(label="Rows with problems", interactive=False)
            download = gr.File(label="Download the results")
            run.click(
                app.predict_table, inputs=upload, outputs=[results, problems, download, status], api_name="predict_csv"
            )
    return demo


def launch(model: str | None = None, host: str = "127.0.0.1", port: int = 7860) -> None:
    build_demo(model).launch(server_name=host, server_port=port)


if __name__ == "__main__":
    launch(host=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))
