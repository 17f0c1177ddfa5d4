"""The Space through its HTTP API, called with gradio_client on 127.0.0.1 (no telemetry, no Hub)."""

import ast
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import pipeline

from music_genre.space.app import (
    EXAMPLES,
    SONG_INPUTS,
    TABLE_CHUNK_ROWS,
    GenreApp,
    TableWorker,
    _terminate,
    architecture_words,
    build_demo,
    card_facts,
    neutralise_formula,
    parse_duration,
    remove_expired,
    safe_csv_frame,
    song_row,
)
from tests.conftest import REPO, free_port
from tests.doc_blocks import doc_block

BUNDLED_MODEL = REPO / "space" / "model"
LIMIT = 300  # the served app's row limit, small so that going over it is cheap
MAX_MB = 2  # the served app's upload limit, small for the same reason
pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # raised inside gradio's queue


@pytest.fixture(scope="module")
def uncalibrated_folder(model_folder, tmp_path_factory) -> Path:
    """The same model as saved before calibration existed: no temperature, no conformal scores."""
    folder = tmp_path_factory.mktemp("uncalibrated") / "model"
    shutil.copytree(model_folder, folder)
    config = json.loads((folder / "config.json").read_text())
    del config["calibration_temperature"], config["conformal"]
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def client(model_folder):
    demo = build_demo(model_folder, max_rows=LIMIT, max_file_mb=MAX_MB)
    port = free_port()
    demo.launch(
        server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, max_file_size=f"{MAX_MB}mb"
    )
    try:
        yield Client(f"http://127.0.0.1:{port}/", verbose=False)
    finally:
        demo.close()


def predict_csv(client: Client, path: Path | None) -> tuple[pd.DataFrame, pd.DataFrame, str | None, str]:
    return predict_csv_all(client, path)[:4]


def predict_csv_all(client: Client, path: Path | None) -> tuple:
    """All six outputs: results, problems, download, status, genre counts (a frame) and the confusion matrix HTML."""
    results, problems, download, status, counts, confusion = client.predict(
        handle_file(str(path)) if path else None, api_name="/predict_csv"
    )
    as_frame = lambda table: pd.DataFrame(table["data"], columns=table["headers"])  # noqa: E731
    counts = pd.DataFrame(counts["data"] if counts else [], columns=["genre", "songs"])
    return as_frame(results), as_frame(problems), download, status, counts, confusion


def test_duration_parsing():
    assert parse_duration("3:45") == 225_000.0
    assert parse_duration(" 1:02:03 ") == 3_723_000.0
    assert parse_duration("200") == 200_000.0 and parse_duration("3:05.5") == 185_500.0
    assert parse_duration("") == -1.0 and parse_duration(None) == -1.0
    for bad in ("3:75", "three", "-5", "1:2:3:4", "inf", "3:"):
        with pytest.raises(ValueError, match="is not m:ss"):
            parse_duration(bad)


def test_app_py_runs_without_the_project():
    """The published Space has app.py and requirements.txt only: no import of modeling/ or training/."""
    tree = ast.parse((REPO / "space" / "app.py").read_text())
    nodes = list(ast.walk(tree))
    roots = {alias.name.split(".")[0] for node in nodes if isinstance(node, ast.Import) for alias in node.names}
    roots |= {node.module.split(".")[0] for node in nodes if isinstance(node, ast.ImportFrom) and node.module}
    assert roots - set(sys.stdlib_module_names) == {"gradio", "transformers", "torch", "pandas", "huggingface_hub"}
    requirements = (REPO / "space" / "requirements.txt").read_text()
    for package in ("gradio", "transformers", "torch", "safetensors", "pandas", "huggingface_hub", "captum"):
        assert package in requirements


def test_one_song_matches_the_pipeline(client, local_pipeline):
    assert local_pipeline.model.config.calibration_temperature != 1.0  # the served probabilities are calibrated
    for _, _, _, values in EXAMPLES[:3]:
        result, summary, chart = client.predict(*values, api_name="/predict_song")
        row = song_row(*values)
        expected = local_pipeline(row, top_k=None)
        assert result["label"] == expected[0]["label"]
        shown = [(item["label"], item["confidence"]) for item in result["confidences"]]
        assert [label for label, _ in shown] == [item["label"] for item in expected[:5]]
        assert [score for _, score in shown] == pytest.approx([item["score"] for item in expected[:5]], abs=1e-6)
        # The 90 % set in words, highest first, and the top genre's attributions in percentage points.
        genre_set = [item["label"] for item in local_pipeline(row, coverage=0.9)]
        assert set_in_words(summary) == genre_set
        attributions = local_pipeline(row, top_k=1, explain=True)[0]["attributions"]
        bars = chart_frame(chart)
        assert sorted(bars["feature"]) == sorted(attributions)
        assert bars["effect"].abs().tolist() == sorted(bars["effect"].abs(), reverse=True)  # strongest first
        for feature, effect, direction in bars.itertuples(index=False):
            assert effect == pytest.approx(100 * attributions[feature], abs=0.006)
            assert direction == ("towards the top genre" if effect >= 0 else "away from it")
        assert f"**Why {expected[0]['label']}:**" in summary


def set_in_words(summary: str) -> list[str]:
    """The genres of "most likely A, B or C." in the one-song summary."""
    named = re.search(r"genre set: most likely (.*?)\.\*\*", summary)[1]
    return re.split(r", | or ", named)


def chart_frame(chart: dict) -> pd.DataFrame:
    """A bar chart output of the API as a frame."""
    return pd.DataFrame(chart["data"], columns=[column for column in chart["columns"]])


@pytest.mark.parametrize(
    ("position", "value", "message"),
    [("duration", "four minutes", "duration 'four minutes' is not m:ss"), ("popularity", 150, "100")],
    ids=["bad-duration", "popularity-over-100"],
)
def test_one_song_bad_input_is_a_message(client, position, value, message):
    values = list(EXAMPLES[0][3])
    values[SONG_INPUTS.index(position)] = value
    with pytest.raises(AppError, match=message):
        client.predict(*values, api_name="/predict_song")


def test_batch_csv_matches_the_pipeline_row_by_row(client, local_pipeline, songs, songs_csv):
    results, problems, download, status = predict_csv(client, songs_csv)
    expected = local_pipeline(songs, top_k=3)
    assert len(results) == 50 and problems.empty and status.startswith("Predicted 50 of 50 rows.")
    assert "agrees with the file's `music_genre` column" in status
    assert results["row"].tolist() == list(range(1, 51))
    assert results["predicted_genre"].tolist() == [genres[0]["label"] for genres in expected]
    assert results["probability"].tolist() == pytest.approx([genres[0]["score"] for genres in expected], abs=1e-4)
    assert results["top_3"][0].split(", ")[1].startswith(expected[0][1]["label"])
    sets = [", ".join(genre["label"] for genre in genres) for genres in local_pipeline(songs, coverage=0.9)]
    assert results["genre_set_90"].tolist() == sets
    mean_size = sum(s.count(", ") + 1 for s in sets) / len(sets)
    assert f"`genre_set_90`: each row's 90% genre set (mean size {mean_size:.2f})." in status
    # Every column that is not a feature is carried through.
    for name in ("instance_id", "artist_name", "track_name", "obtained_date", "music_genre"):
        assert results[name].tolist() == songs[name].tolist()
    downloaded = pd.read_csv(download)
    assert downloaded["predicted_genre"].tolist() == results["predicted_genre"].tolist()
    assert downloaded["genre_set_90"].tolist() == sets
    assert downloaded["artist_name"].tolist() == songs["artist_name"].tolist()


def test_a_table_over_several_chunks_gets_the_pipelines_top_3_and_sets(model_folder, local_pipeline, real_data):
    """The CSV worker classifies a table once, in chunks, and derives the top 3 and the 90 % set from the same
    probabilities: over more than one chunk they equal the pipeline's `top_k=3` and `coverage=0.9`."""
    frame = real_data.frame.sample(TABLE_CHUNK_ROWS + 500, random_state=0).reset_index(drop=True)
    columns = GenreApp(model_folder, explain=False).classify_table(frame)
    top = local_pipeline(frame, top_k=3)
    sets = local_pipeline(frame, coverage=0.9)
    assert columns["predicted_genre"] == [genres[0]["label"] for genres in top]
    assert columns["probability"] == [round(genres[0]["score"], 4) for genres in top]
    assert columns["top_3"] == [", ".join(f"{g['label']} {g['score']:.2f}" for g in genres) for genres in top]
    assert columns["genre_set_90"] == [", ".join(g["label"] for g in genres) for genres in sets]
    assert len({len(s.split(", ")) for s in columns["genre_set_90"]}) > 2  # sets of several sizes were compared


def test_bad_rows_are_reported_and_good_rows_still_predicted(client, local_pipeline, songs, tmp_path):
    frame = songs.astype({name: object for name in ("tempo", "key", "mode", "loudness")})
    frame.loc[4, "tempo"] = "fast"
    frame.loc[9, "key"] = "H"
    frame.loc[20, "loudness"] = float("inf")
    frame.loc[30, ["tempo", "mode"]] = ["1,20", "sometimes"]  # two bad cells in one row
    features = list(local_pipeline.model.config.feature_names)
    frame.loc[40, features] = None  # a row with no feature values at all
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    results, problems, _, status = predict_csv(client, path)
    assert problems[["row", "column", "value"]].values.tolist() == [
        [5, "tempo", "fast"],
        [10, "key", "H"],
        [21, "loudness", "inf"],
        [31, "mode", "sometimes"],
        [31, "tempo", "1,20"],
        [41, "", ""],
    ]
    reasons = problems["reason"].tolist()
    assert "not a number" in reasons[0] and "unknown key 'H'" in reasons[1] and "not a finite number" in reasons[2]
    assert "no feature values" in reasons[5]
    assert status.startswith("Predicted 45 of 50 rows.") and "5 row(s) have bad values" in status
    good = songs.drop(index=[4, 9, 20, 30, 40])
    assert results["row"].tolist() == (good.index + 1).tolist()
    assert results["predicted_genre"].tolist() == [genres[0]["label"] for genres in local_pipeline(good)]


def test_other_encodings_and_separators_are_read(client, local_pipeline, songs, tmp_path):
    """A spreadsheet export: semicolons and latin-1 (artist names with accents)."""
    frame = songs.head(5).copy()
    frame.loc[0, "artist_name"] = "Sigur Rós"
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False, sep=";", encoding="latin-1")
    results, _, _, status = predict_csv(client, path)
    assert status.startswith("Predicted 5 of 5 rows.") and results["artist_name"][0] == "Sigur Rós"
    assert results["predicted_genre"].tolist() == [genres[0]["label"] for genres in local_pipeline(frame)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "Upload a CSV file first."),
        (b"", "The file is empty."),
        (b"\n  \n", "The file is empty."),
        (bytes(range(256)) * 20, "not a CSV file: it holds binary data"),
        (b"popularity,tempo\n1,2\n", "missing the column(s) acousticness, danceability"),
        ("header-only", "a header but no rows"),
        ("duplicated-header", "The header names the column(s) 'tempo' more than once"),
        ("too-many-columns", "The header has 300 columns; at most 32"),
        ("over-limit", f"more than {LIMIT} rows"),
    ],
    ids=[
        "no-file",
        "empty",
        "blank",
        "binary",
        "missing-columns",
        "header-only",
        "duplicated-header",
        "too-many-columns",
        "over-limit",
    ],  # fmt: skip
)
def test_bad_files_get_a_message(client, songs, csv_path, tmp_path, content, message):
    path = tmp_path / "upload.csv"
    if content == "over-limit":
        pd.read_csv(csv_path, nrows=LIMIT + 1).to_csv(path, index=False)
    elif content == "header-only":
        songs.head(0).to_csv(path, index=False)
    elif content == "duplicated-header":
        songs.head(3).rename(columns={"track_name": " tempo "}).to_csv(path, index=False)
    elif content == "too-many-columns":
        songs.head(3).reindex(columns=[*songs.columns, *(f"x{i}" for i in range(300 - songs.shape[1]))]).to_csv(
            path, index=False
        )
    elif content is not None:
        path.write_bytes(content)
    results, problems, download, status = predict_csv(client, path if content is not None else None)
    assert status.startswith("**Error:**") and message in status
    assert results.empty and problems.empty and download is None


def test_model_card_gives_accuracy_and_repo(model_folder, tmp_path):
    assert card_facts(model_folder) == (None, None)  # a folder without a card
    assert card_facts("someone/music-genre-ffn") == (None, "someone/music-genre-ffn")  # offline: no card, a link
    split_results = [
        EvalResult(
            task_type="tabular-classification",
            dataset_type="vicsuperman/prediction-of-music-genre",
            dataset_name="Prediction of Music Genre",
            dataset_split=split,
            metric_type="accuracy",
            metric_value=value,
        )
        for split, value in (("validation", 0.61), ("test", 0.5834))
    ]
    data = ModelCardData(model_name="music-genre-ffn", eval_results=split_results)
    ModelCard(f"---\n{data.to_yaml()}\n---\n# A card\n").save(tmp_path / "README.md")
    assert card_facts(tmp_path) == (pytest.approx(0.5834), None)  # model_name is no repo id
    data = ModelCardData(model_name="music-genre-ffn", repo_id="someone/music-genre-ffn", eval_results=split_results)
    ModelCard(f"---\n{data.to_yaml()}\n---\n# A card\n").save(tmp_path / "README.md")
    assert card_facts(tmp_path) == (pytest.approx(0.5834), "someone/music-genre-ffn")
    data = ModelCardData(model_name="genre-ffn", base_model="someone/genre-base", eval_results=split_results)
    ModelCard(f"---\n{data.to_yaml()}\n---\n# A card\n").save(tmp_path / "README.md")
    assert card_facts(tmp_path) == (pytest.approx(0.5834), "someone/genre-base")


def test_the_page_says_what_it_knows(client, model_folder):
    info = client.view_api(print_info=False, return_format="dict")
    assert {"/predict_song", "/predict_csv"} <= set(info["named_endpoints"])
    description = GenreApp(model_folder).description()
    assert "hidden layers 64-32" in description and "Test accuracy: not recorded" in description
    temperature = json.loads((model_folder / "config.json").read_text())["calibration_temperature"]
    assert f"Probabilities are calibrated (a temperature of {temperature:.3f} fitted on the validation split)" in (
        description
    )
    assert "huggingface.co" not in description


def test_the_header_names_the_ensemble_and_the_embeddings_the_config_has():
    from music_genre.modeling import GenreFFNConfig

    assert architecture_words(GenreFFNConfig(num_members=1)) == ""
    assert architecture_words(GenreFFNConfig(num_members=3)) == "; an ensemble of 3 networks"
    tabm = GenreFFNConfig(num_members=4, ensemble="tabm", numeric_embedding="periodic")
    assert architecture_words(tabm) == (
        "; a TabM-style ensemble of 4 networks sharing their weights; numeric features embedded periodically"
    )


def test_a_model_without_calibration_still_predicts_and_says_what_it_lacks(uncalibrated_folder, songs_csv):
    app = GenreApp(uncalibrated_folder)
    assert app.set_coverage is None and "saved without calibration" in app.description()
    genres, summary, chart = app.predict_song(*EXAMPLES[1][3])
    expected = pipeline(model=str(uncalibrated_folder), trust_remote_code=True)(song_row(*EXAMPLES[1][3]), top_k=None)
    assert list(genres) == [item["label"] for item in expected]
    assert "**90% genre set:** not available for this model" in summary
    assert len(chart) == 13  # the explanation needs no calibration
    results, problems, download, status, _, _ = app.predict_table(str(songs_csv))
    assert status.startswith("Predicted 50 of 50 rows. This model has no conformal calibration, so no 90% genre sets.")
    assert "genre_set_90" not in results.columns and "genre_set_90" not in pd.read_csv(download).columns


def test_without_captum_the_page_has_no_chart_and_says_why(model_folder, songs_csv, monkeypatch):
    app = GenreApp(model_folder)
    monkeypatch.setitem(sys.modules, "captum", None)  # an import of captum now fails, as where it is not installed
    monkeypatch.setitem(sys.modules, "captum.attr", None)
    genres, summary, chart = app.predict_song(*EXAMPLES[2][3])
    assert genres and chart.empty and list(chart.columns) == ["feature", "effect", "direction"]
    assert "The chart of features needs the `captum` package, which is not installed here." in summary
    assert "90% genre set: most likely" in summary
    assert app.predict_song(*EXAMPLES[3][3])[2].empty  # later songs too, without trying again


def test_a_failed_explanation_costs_the_chart_of_that_song_only(model_folder, monkeypatch):
    app = GenreApp(model_folder)
    classify = app.classifier

    def failing_explanations(rows, **keywords):
        if keywords.get("explain"):
            raise RuntimeError("out of memory")
        return classify(rows, **keywords)

    monkeypatch.setattr(app, "classifier", failing_explanations)
    genres, summary, chart = app.predict_song(*EXAMPLES[2][3])
    assert genres and chart.empty and "90% genre set: most likely" in summary
    assert "The chart of features could not be computed (RuntimeError: out of memory)." in summary
    monkeypatch.setattr(app, "classifier", classify)
    assert len(app.predict_song(*EXAMPLES[2][3])[2]) == 13  # the next song is explained again


def test_model_id_comes_from_the_environment(model_folder, monkeypatch):
    monkeypatch.setenv("MODEL_ID", str(model_folder))
    assert GenreApp().model_id == str(model_folder)


@pytest.mark.skipif(not (BUNDLED_MODEL / "config.json").exists(), reason="no bundled model in space/model yet")
def test_default_is_the_bundled_model(monkeypatch):
    monkeypatch.delenv("MODEL_ID", raising=False)
    demo = build_demo()
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        result, summary, chart = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(
            *EXAMPLES[0][3], api_name="/predict_song"
        )
    finally:
        demo.close()
    expected = pipeline(model=str(BUNDLED_MODEL), trust_remote_code=True)(song_row(*EXAMPLES[0][3]))
    assert result["label"] == expected[0]["label"]
    # With or without conformal scores (today's bundled model has none), the page answers and says which.
    assert "90% genre set: most likely" in summary or "90% genre set:** not available for this model" in summary
    app = GenreApp()
    assert app.model_id == str(BUNDLED_MODEL.resolve())
    if (BUNDLED_MODEL / "README.md").exists():
        assert "Test accuracy: **" in app.description()


FORMULAS = [
    '=HYPERLINK("http://example.com","x")', "+cmd|' /C calc'!A0", "@SUM(1+1)*cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1",
]  # fmt: skip


def test_downloaded_csv_cells_never_run_as_formulas(client, songs, tmp_path):
    frame = songs.head(len(FORMULAS) + 2).copy()
    frame["artist_name"] = [*FORMULAS, "-12.5", "plain"]
    path = tmp_path / "formulas.csv"
    frame.to_csv(path, index=False, quoting=csv.QUOTE_NONNUMERIC)  # a carriage return inside a cell stays in it
    results, problems, download, status = predict_csv(client, path)
    assert problems.empty and status.startswith(f"Predicted {len(frame)} of {len(frame)} rows.")
    downloaded = pd.read_csv(download, dtype=str, keep_default_na=False)
    assert downloaded["artist_name"].tolist() == [f"'{cell}" for cell in FORMULAS] + ["-12.5", "plain"]
    assert results["artist_name"].tolist() == [
        cell[:60] for cell in frame["artist_name"]
    ]  # the page shows them as text


def test_the_fast_formula_screen_changes_exactly_what_the_cell_rule_changes():
    """`safe_csv_frame` scans whole columns first; it must neutralise the same cells as the rule applied to each,
    so each risky cell gets a column of its own among clean cells (and non-text ones)."""
    risky = [*FORMULAS, "  =1+1", " -x", "x\0=1"]
    harmless = ["-12.5", "+3", "a=b", "plain", "", "\0", "7"]
    frame = pd.DataFrame({f"c{i}": ["plain", cell, float("nan"), None, 7] for i, cell in enumerate(risky + harmless)})
    frame["number"] = range(len(frame))
    safe = safe_csv_frame(frame)
    assert [safe[f"c{i}"][1] for i in range(len(risky))] == [f"'{cell}" for cell in risky[:-1]] + ["x\0=1"]
    pd.testing.assert_frame_equal(safe, frame.map(neutralise_formula))
    assert frame["c0"][1] == FORMULAS[0]  # the caller's frame is left as it is
    clean = frame[[f"c{len(risky) + i}" for i in range(len(harmless))] + ["number"]]
    assert safe_csv_frame(clean) is clean


def test_a_row_wider_than_the_header_is_a_problem_row_and_never_stalls(client, songs, tmp_path):
    """The issue's file: its first data row holds about 1 MB of extra fields."""
    lines = songs.head(20).to_csv(index=False).splitlines()
    wide = lines[1] + ",1" * 500_000
    path = tmp_path / "wide.csv"
    path.write_text("\n".join([lines[0], wide, *lines[2:], ""]))
    assert path.stat().st_size > 1_000_000
    results, problems, _, status = predict_csv(client, path)
    assert status.startswith("Predicted 19 of 20 rows.") and "1 row(s) have bad values" in status
    assert problems.values.tolist() == [
        [1, "", "500018 fields", "the row has 500018 fields, the header 18; a value holding the separator must be in "
         "double quotes"]
    ]  # fmt: skip
    assert results["row"].tolist() == list(range(2, 21))
    assert results["artist_name"].tolist() == songs["artist_name"][1:20].tolist()  # columns not shifted


def test_an_upload_over_the_size_limit_is_refused_with_a_message(client, model_folder, tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(b"a,b\n" + b"1,2\n" * (MAX_MB * 2**20 // 4))
    with pytest.raises(ValueError, match=f"exceeds the maximum file size of {MAX_MB * 2**20} bytes"):
        predict_csv(client, path)  # Gradio refuses the upload
    app = GenreApp(model_folder, max_file_mb=MAX_MB)  # a path given directly is checked too
    _, _, _, status, _, _ = app.predict_table(str(path))
    assert status == f"**Error:** The file is 2.0 MB; the limit is {MAX_MB} MB."


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-8-sig"])
def test_utf16_and_utf8_with_bom_are_read(client, local_pipeline, songs, tmp_path, encoding):
    frame = songs.head(4).copy()
    frame.loc[0, "artist_name"] = "Sigur Rós"
    path = tmp_path / "export.csv"
    frame.to_csv(path, index=False, encoding=encoding)
    results, _, _, status = predict_csv(client, path)
    assert status.startswith("Predicted 4 of 4 rows.") and results["artist_name"][0] == "Sigur Rós"
    assert results["predicted_genre"].tolist() == [genres[0]["label"] for genres in local_pipeline(frame)]


def test_long_values_are_cut_in_messages_and_tables(client, songs, tmp_path):
    values = list(EXAMPLES[0][3])
    values[SONG_INPUTS.index("duration")] = "9" * 100_000 + "x"
    with pytest.raises(AppError) as caught:
        client.predict(*values, api_name="/predict_song")
    assert "is not m:ss" in str(caught.value) and len(str(caught.value)) < 200
    frame = songs.head(3).astype({"tempo": object})
    frame.loc[1, "tempo"] = "fast" * 10_000
    path = tmp_path / "long.csv"
    frame.to_csv(path, index=False)
    _, problems, _, _ = predict_csv(client, path)
    assert problems["value"].str.len().max() <= 60 and problems["reason"].str.len().max() < 120


def test_batch_tab_charts_count_genres_and_compare_with_music_genre(client, songs, songs_csv, tmp_path):
    results, _, _, _, counts, confusion = predict_csv_all(client, songs_csv)
    predicted = results["predicted_genre"].value_counts()
    assert len(counts) == 10 and counts["songs"].sum() == 50
    assert dict(zip(counts["genre"], counts["songs"])) == {g: predicted.get(g, 0) for g in counts["genre"]}
    assert counts["songs"].tolist() == sorted(counts["songs"], reverse=True)
    cells = html_table(confusion).set_index("file \\ predicted").astype(int)
    truth = pd.crosstab(results["music_genre"], results["predicted_genre"])
    for genre, row in truth.iterrows():
        assert row.to_dict() == {name: cells.loc[genre, name] for name in row.index}
    assert int(cells.to_numpy().sum()) == 50
    no_truth = tmp_path / "no_truth.csv"
    songs.drop(columns="music_genre").to_csv(no_truth, index=False)
    assert predict_csv_all(client, no_truth)[5] == ""  # no `music_genre` column: no matrix


def html_table(markup: str) -> pd.DataFrame:
    """The cells' text of an HTML table (its first row the header); no HTML parser library needed."""
    rows = re.findall(r"<tr>(.*?)</tr>", markup, flags=re.S)
    cells = [[re.sub(r"<[^>]+>", "", cell) for cell in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row)] for row in rows]
    return pd.DataFrame(cells[1:], columns=cells[0])


def test_the_api_names_its_parameters_and_outputs(client, local_pipeline):
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    song = info["/predict_song"]
    assert [p["parameter_name"] for p in song["parameters"]] == list(SONG_INPUTS)
    assert "tempo_bpm" in SONG_INPUTS and "loudness_db" in SONG_INPUTS
    assert {p["parameter_name"]: p["label"] for p in song["parameters"]}["tempo_bpm"] == "Tempo (BPM)"
    assert [r["label"] for r in song["returns"]] == [
        "Genres", "Genre set and explanation", "Features that moved the top genre"
    ]  # fmt: skip
    assert [r["label"] for r in info["/predict_csv"]["returns"]] == [
        "Predicted genres (table)", "Rows with problems", "Download the results (CSV)", "Status", "Predicted genres",
        "Confusion matrix against the file's genre column",
    ]  # fmt: skip
    values = dict(zip(SONG_INPUTS, EXAMPLES[1][3]))
    assert (
        client.predict(**values, api_name="/predict_song")[0]["label"]
        == local_pipeline(song_row(*EXAMPLES[1][3]))[0]["label"]
    )


def test_the_documented_calls_work(client, local_pipeline):
    """docs/space.md's API examples, and the README's short one, as written there."""
    url = client.src.rstrip("/")
    expected = local_pipeline(song_row(*EXAMPLES[0][3]))[0]["label"]
    namespace: dict = {}
    exec(doc_block("space-api-python").replace("http://127.0.0.1:7860", url), namespace)
    assert namespace["genres"]["label"] == expected
    assert "90% genre set: most likely" in namespace["genre_set"]
    assert len(namespace["features"]["data"]) == 13
    short: dict = {}
    exec(doc_block("readme-space-api-python").replace("http://127.0.0.1:7860", url), short)
    assert short["genres"]["label"] in local_pipeline.model.config.id2label.values()
    assert "genre set" in short["genre_set"]
    script = doc_block("space-api-bash").replace("http://127.0.0.1:7860", url)
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "event: complete" in done.stdout and f'"label": "{expected}"' in done.stdout.replace('":"', '": "')


def test_a_result_is_stored_once_and_removed_after_its_ttl(client, songs_csv, tmp_path):
    from gradio.processing_utils import hash_file
    from gradio.utils import get_upload_folder

    http = httpx.Client(base_url=client.src.rstrip("/"), timeout=60)
    with open(songs_csv, "rb") as handle:
        server_path = http.post("/gradio_api/upload", files={"files": handle}).raise_for_status().json()[0]
    payload = {"data": [{"path": server_path, "meta": {"_type": "gradio.FileData"}}]}
    event = http.post("/gradio_api/call/predict_csv", json=payload).raise_for_status().json()["event_id"]
    body = http.get(f"/gradio_api/call/predict_csv/{event}").raise_for_status().text
    data = json.loads(body.split("event: complete\ndata: ", 1)[1].splitlines()[0])
    result = Path(data[2]["path"])
    assert result.name == "predicted_genres.csv" and result.is_file()
    assert result.is_relative_to(get_upload_folder())  # in Gradio's cache already: served without a copy
    assert not (Path(get_upload_folder()) / hash_file(result) / result.name).exists()
    remove_expired(result.parent.parent, ttl_s=3600)
    assert result.is_file()
    remove_expired(result.parent.parent, ttl_s=0)
    assert not result.parent.exists()


def test_results_are_removed_when_the_app_exits(model_folder, songs_csv, tmp_path):
    script = (
        "import sys; from music_genre.space.app import GenreApp; app = GenreApp(sys.argv[1]); "
        "print(app.predict_table(sys.argv[2])[2])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(model_folder), str(songs_csv)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = Path(done.stdout.strip().splitlines()[-1])
    assert result.name == "predicted_genres.csv" and not result.parent.parent.exists()


def test_closing_a_pool_never_waits_without_end():
    """Pool.terminate can block for good on its task queue's lock; the app gives it a bounded time."""
    release = threading.Event()

    class StuckPool:
        def terminate(self) -> None:
            release.wait()

    started = time.monotonic()
    try:
        assert _terminate(StuckPool(), timeout_s=0.5) is False
        assert time.monotonic() - started < 5
    finally:
        release.set()
    assert _terminate(StuckPool(), timeout_s=5) is True


def test_a_file_over_the_time_limit_is_abandoned_and_the_worker_replaced(model_folder, songs_csv):
    app = GenreApp(model_folder)
    worker = TableWorker(app, timeout_s=0.001)  # no file is that fast: the first call must time out
    try:
        _, _, download, status, _, _ = worker.predict_table(str(songs_csv))
        assert status == "**Error:** this file took more than 0 s to process and was abandoned." and download is None
        worker.timeout_s = 120
        _, _, download, status, _, _ = worker.predict_table(str(songs_csv))  # a fresh worker takes the next file
        assert status.startswith("Predicted 50 of 50 rows.") and Path(download).is_relative_to(app.downloads)
    finally:
        worker.close()


def test_ctrl_c_stops_serve_cleanly(songs_csv):
    """`music-genre serve` stopped as a terminal does (SIGINT to its process group, after a CSV went through the
    worker process): it exits at once with status 0, and nothing is printed on the way out: no worker's traceback,
    no leaked semaphore reported by multiprocessing's resource tracker, no progress bar."""
    port = free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "music_genre", "serve", "--port", str(port)],  # the bundled model, as a user runs it
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A process group of its own, as a shell gives a command, and SIGINT handled (a shell's background job
        # would start with it ignored).
        preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL), os.setpgid(0, 0)),
    )
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and serve.poll() is None:
            try:
                httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.5)
        status = predict_csv(Client(f"http://127.0.0.1:{port}/", verbose=False), songs_csv)[3]
        assert status.startswith("Predicted 50 of 50 rows."), status
        os.killpg(serve.pid, signal.SIGINT)
        _, stderr = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait()
    assert serve.returncode == 0, stderr
    for noise in ("leaked semaphore", "resource_tracker", "Traceback", "KeyboardInterrupt", "Loading weights"):
        assert noise not in stderr, stderr
