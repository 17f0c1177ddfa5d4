"""The Space through its HTTP API, called with gradio_client on 127.0.0.1 (no telemetry, no Hub)."""

import socket

import numpy as np
import pandas as pd
import pytest
import torch
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from transformers import pipeline

from modeling import GenreFeatureExtractor, GenreFFNConfig, GenreFFNForSequenceClassification, save_model_folder
from space.app import EXAMPLES, SONG_INPUTS, build_demo, parse_duration
from tests.conftest import REPO
from training.data import prepare_splits


@pytest.fixture(scope="session")
def model_folder(real_data, tmp_path_factory):
    """A small network trained for two epochs on the real training split, saved as a Hub folder."""
    extractor = GenreFeatureExtractor(numeric_encoding="quantile-normal")
    prepared = prepare_splits(real_data, extractor, seed=0)
    torch.manual_seed(0)
    model = GenreFFNForSequenceClassification(GenreFFNConfig(hidden_sizes=[64, 32], num_members=2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    features = torch.as_tensor(prepared.features["train"])
    labels = torch.as_tensor(prepared.labels["train"])
    model.train()
    for _ in range(2):
        for batch in torch.randperm(len(labels)).split(256):
            model(input_features=features[batch], labels=labels[batch]).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("space-model")
    save_model_folder(model.eval(), extractor, folder)
    return folder


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def served(model_folder):
    demo = build_demo(model_folder, max_rows=300)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    yield demo, client, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture(scope="module")
def local_pipeline(model_folder):
    return pipeline(model=str(model_folder), trust_remote_code=True)


@pytest.fixture
def real_rows(csv_path, tmp_path):
    frame = pd.read_csv(csv_path).dropna(how="all").sample(50, random_state=3).reset_index(drop=True)
    path = tmp_path / "songs.csv"
    frame.to_csv(path, index=False)
    return frame, path


def test_duration_parsing():
    assert parse_duration("3:45") == 225_000.0
    assert parse_duration("1:02:03") == 3_723_000.0
    assert parse_duration("200") == 200_000.0
    assert parse_duration("") == -1.0
    for bad in ("3:75", "three", "-5", "1:2:3:4"):
        with pytest.raises(ValueError, match="is not m:ss or a number of seconds"):
            parse_duration(bad)


def test_one_song_matches_the_pipeline(served, local_pipeline):
    _, client, _ = served
    for _, _, _, values in EXAMPLES[:3]:
        result = client.predict(*values, api_name="/predict_song")
        row = dict(zip(SONG_INPUTS, values, strict=True))
        row["duration_ms"] = parse_duration(row.pop("duration"))
        expected = local_pipeline(row)
        assert result["label"] == expected[0]["label"]
        scores = {item["label"]: item["confidence"] for item in result["confidences"]}
        for item in expected[:5]:
            assert scores[item["label"]] == pytest.approx(item["score"], abs=1e-6)


def test_one_song_bad_duration_is_a_message(served):
    _, client, _ = served
    values = list(EXAMPLES[0][3])
    values[SONG_INPUTS.index("duration")] = "four minutes"
    with pytest.raises(AppError, match="duration 'four minutes' is not m:ss"):
        client.predict(*values, api_name="/predict_song")


def test_batch_csv_matches_the_pipeline_row_by_row(served, local_pipeline, real_rows):
    _, client, _ = served
    frame, path = real_rows
    results, problems, download, status = client.predict(handle_file(str(path)), api_name="/predict_csv")
    table = pd.DataFrame(results["data"], columns=results["headers"])
    assert len(table) == 50 and status.startswith("Predicted 50 of 50 rows")
    assert problems["data"] == [] or problems["data"] == [[]] or not any(problems["data"])
    expected = [genres[0]["label"] for genres in local_pipeline(frame)]
    assert table["predicted_genre"].tolist() == expected
    assert table["artist_name"].tolist() == frame["artist_name"].tolist()  # extra columns carried through
    downloaded = pd.read_csv(download)
    assert downloaded["predicted_genre"].tolist() == expected


def test_bad_rows_are_reported_and_good_rows_still_predicted(served, real_rows, tmp_path):
    _, client, _ = served
    frame, _ = real_rows
    frame = frame.astype({"tempo": object, "key": object})
    frame.loc[4, "tempo"] = "fast"
    frame.loc[9, "key"] = "H"
    frame.loc[20, "loudness"] = float("inf")
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    results, problems, _, status = client.predict(handle_file(str(path)), api_name="/predict_csv")
    reported = pd.DataFrame(problems["data"], columns=problems["headers"])
    assert reported[["row", "column", "value"]].values.tolist() == [
        [5, "tempo", "fast"],
        [10, "key", "H"],
        [21, "loudness", "inf"],
    ]
    assert "not a number" in reported["reason"][0] and "unknown key" in reported["reason"][1]
    assert len(results["data"]) == 47 and "3 row(s) have bad values" in status


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (bytes(range(256)) * 20, "could not be read as CSV"),
        (b"popularity,tempo\n1,2\n", "missing the column(s) acousticness, danceability"),
        (None, "the limit is 300"),
    ],
)
def test_bad_files_get_a_message(served, csv_path, tmp_path, content, message):
    _, client, _ = served
    path = tmp_path / "upload.csv"
    if content is None:  # more rows than this app's limit of 300
        pd.read_csv(csv_path).dropna(how="all").head(301).to_csv(path, index=False)
    else:
        path.write_bytes(content)
    results, _, download, status = client.predict(handle_file(str(path)), api_name="/predict_csv")
    assert status.startswith("**Error:**") and message in status
    assert download is None


@pytest.mark.skipif(not (REPO / "space" / "model" / "config.json").exists(), reason="no bundled model yet")
def test_default_is_the_bundled_model():
    from space.app import DEFAULT_MODEL, GenreApp

    app = GenreApp()
    assert app.model_id == str(DEFAULT_MODEL) and "Test accuracy: **0." in app.description()
    assert np.isclose(sum(app.predict_song(*EXAMPLES[0][3]).values()), 1.0, atol=1e-5)
