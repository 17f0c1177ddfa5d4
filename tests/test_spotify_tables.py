"""A user's own Spotify table: the Hub's "Spotify Tracks Dataset" layout (`track_genre` in lower case, `artists`,
`key` as a pitch-class integer, `mode` as 1/0, extra columns, a leading unnamed index), made from the real CSV at
test time, through train, evaluate, push --stage-only, the Space and the pipeline without the project; the genres
are the data's (merged and kept from the command line), and a genre too small to split is refused by name."""

import json
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
from transformers import pipeline

from music_genre import main
from music_genre.modeling import FEATURE_NAMES, KEY_NAMES
from music_genre.space.app import GenreApp, examples_for, label_column
from music_genre.training.data import (
    MIN_ROWS_PER_GENRE,
    DataError,
    load_data,
    read_table,
    split_indices,
)
from music_genre.training.options import GenreSelection, GenreSelectionError, RunOptions
from tests.conftest import REPO_ID, SPACE_REPO_ID, load_in_clean_process

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")  # raised inside gradio's queue


def run_json(run: Path, name: str) -> dict:
    return json.loads((run / name).read_text())


def test_the_run_on_the_spotify_table_has_the_datas_genres(spotify_run, spotify_tables):
    genres = list(spotify_tables["genres"])
    config = run_json(spotify_run / "model", "config.json")
    assert [config["id2label"][str(i)] for i in range(len(genres))] == genres
    assert config["label2id"] == {genre: i for i, genre in enumerate(genres)}
    assert spotify_tables["renamed"] in genres and spotify_tables["merged"][0] not in genres
    metrics = run_json(spotify_run, "metrics.json")
    for stage_name in ("initial", "tuned"):
        assert list(metrics[stage_name]["per_genre"]) == genres
        assert np.asarray(metrics[stage_name]["confusion_matrix"]).shape == (len(genres), len(genres))
    assert set(metrics["conformal"]["0.9"]["per_genre_coverage"]) <= set(genres)

    report = run_json(spotify_run, "data_report.json")
    table = spotify_tables["table"]
    left_out = int((table["track_genre"] == spotify_tables["left_out"]).sum())
    assert report["label_column"] == "track_genre" and report["genres"] == genres
    assert report["rows_dropped"] == {"entirely_empty": 0, "no_genre": 0, "genre_not_selected": left_out,
                                      "total": left_out}  # fmt: skip
    merged_from, merged_into = spotify_tables["merged"]
    assert report["rows_per_genre"][merged_into] == int(table["track_genre"].isin([merged_from, merged_into]).sum())
    assert report["missing_values"]["key"] == int(((table["key"] == -1) & (table["track_genre"] != spotify_tables[
        "left_out"])).sum()) > 0  # fmt: skip

    # The command, run.json and training_run.json record how the genres were read.
    recorded = {"label_column": None, "genres": genres, "merge_genres": {merged_into: [merged_from, merged_into]}}
    training_run = run_json(spotify_run / "model", "training_run.json")
    assert training_run["genre_selection"] == recorded and training_run["genres"] == genres
    assert f"--merge-genres {spotify_tables['merge']}" in training_run["command"]
    assert "--genres" in training_run["command"] and "spotify_tracks.parquet" in training_run["command"]
    settings = run_json(spotify_run, "run.json")["settings"]
    assert settings["merge_genres"] == [spotify_tables["merge"]] and settings["genres"] == ",".join(genres)
    card = (spotify_run / "model" / "README.md").read_text()
    assert all(genre in card for genre in genres) and spotify_tables["merge"] in card


def test_evaluate_reproduces_the_runs_metrics_from_its_table(spotify_run, spotify_tables, capsys):
    capsys.readouterr()
    model = str(spotify_run / "model")
    assert main(["evaluate", "--model", model, "--data", str(spotify_tables["parquet"]), "--json"]) == 0
    recomputed = json.loads(capsys.readouterr().out)["tuned"]
    recorded = run_json(spotify_run, "metrics.json")["tuned"]
    assert recomputed["per_genre"] == recorded["per_genre"] and recomputed["accuracy"] == recorded["accuracy"]
    # The same rows as CSV are other bytes: refused, then evaluated when allowed, with the run's genres.
    assert main(["evaluate", "--model", model, "--data", str(spotify_tables["csv"])]) == 2
    assert "differs from the run's" in capsys.readouterr().err
    assert main(["evaluate", "--model", model, "--data", str(spotify_tables["csv"]), "--allow-other-data"]) == 0


@pytest.fixture(scope="module")
def staged(spotify_run, spotify_tables, tmp_path_factory) -> Path:
    """`music-genre push --stage-only` of the Spotify run, with a Space."""
    out = tmp_path_factory.mktemp("spotify-hub")
    arguments = ["push", "--run", str(spotify_run), "--repo-id", REPO_ID, "--space-repo-id", SPACE_REPO_ID]
    assert main([*arguments, "--stage-only", str(out), "--data", str(spotify_tables["parquet"])]) == 0
    return out


def test_push_stages_the_runs_genres_in_the_dataset_card_and_space(spotify_run, spotify_tables, staged):
    out = staged
    genres = list(spotify_tables["genres"])
    published = datasets.load_dataset(str(out / "dataset"))
    assert published["train"].features["genre"].names == genres
    # The published splits are the run's, and load back as the same genres.
    splits = run_json(spotify_run, "splits.json")
    assert {name: len(part) for name, part in published.items()} == {name: len(rows) for name, rows in splits.items()}
    reloaded = load_data(out / "dataset")
    assert reloaded.genres == tuple(genres) and reloaded.fixed_splits is not None
    dataset_card = (out / "dataset" / "README.md").read_text()
    assert "spotify_tracks.parquet" in dataset_card and str(spotify_tables["parquet"].parent) not in dataset_card
    assert "Kaggle" not in dataset_card and f"merged into {spotify_tables['merged'][1]}" in dataset_card
    # The app's own example songs are of other genres: the staged Space gets songs of the run's test split.
    examples = examples_for(genres, out / "space" / "examples.json")
    assert examples and {genre for _, _, genre, _ in examples} <= set(genres)
    assert len(examples) == len(json.loads((out / "space" / "examples.json").read_text()))
    test_tracks = set(published["test"]["track_name"])
    assert all(track in test_tracks and len(values) == 13 for _, track, _, values in examples)
    model_card = (out / "model" / "README.md").read_text()
    assert all(genre in model_card for genre in genres)


def test_the_space_serves_the_runs_genres_and_compares_with_track_genre(spotify_run, spotify_tables, staged, tmp_path):
    from gradio_client import Client, handle_file

    from music_genre.space.app import build_demo
    from tests.conftest import free_port

    genres = list(spotify_tables["genres"])
    app = GenreApp(spotify_run / "model", explain=False)
    assert app.genres == genres
    assert app.examples == []  # the built-in songs are filed under the CSV's genres, which this model lacks
    example = examples_for(genres, staged / "space" / "examples.json")[0]

    table = spotify_tables["table"].head(40)
    upload = tmp_path / "upload.csv"
    table.to_csv(upload, index=False)
    demo = build_demo(spotify_run / "model", explain=False)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        song, _, _ = client.predict(*example[3], api_name="/predict_song")
        scores = {item["label"]: item["confidence"] for item in song["confidences"]}
        assert song["label"] in genres and set(scores) <= set(genres)
        results, _, _, status, counts, confusion = client.predict(handle_file(str(upload)), api_name="/predict_csv")
    finally:
        demo.close()
    frame = pd.DataFrame(results["data"], columns=results["headers"])
    assert len(frame) == 40 and set(frame["predicted_genre"]) <= set(genres)
    # Extra columns are carried into the results; the key as an integer and the mode as 1/0 are read.
    assert {"track_id", "artists", "explicit", "track_genre"} <= set(frame.columns)
    expected = [best[0]["label"] for best in app.classifier(table[list(FEATURE_NAMES)].to_dict("records"))]
    assert frame["predicted_genre"].tolist() == expected
    assert label_column(frame) == "track_genre" and "`track_genre` column" in status
    assert "<code>track_genre</code>" in confusion and sum(row[1] for row in counts["data"]) == 40


def test_the_pipeline_without_the_project_reads_spotify_rows(spotify_run, spotify_tables):
    rows = spotify_tables["table"].head(5)[list(FEATURE_NAMES)]
    assert rows["key"].dtype.kind == "i" and set(rows["mode"]) <= {0, 1}
    result = load_in_clean_process(spotify_run / "model", rows.to_dict("records"))
    local = pipeline(model=str(spotify_run / "model"), trust_remote_code=True)(rows.to_dict("records"), top_k=2)
    assert result["pipeline"] == json.loads(json.dumps(local))
    assert {item["label"] for row in result["pipeline"] for item in row} <= set(spotify_tables["genres"])


def test_every_format_reads_the_same_rows(spotify_tables, tmp_path):
    csv, parquet = read_table(spotify_tables["csv"]), read_table(spotify_tables["parquet"])
    assert list(csv.frame.columns) == list(parquet.frame.columns) and csv.frame.columns[0] == "Unnamed: 0"
    pd.testing.assert_frame_equal(csv.frame, parquet.frame, check_dtype=False)
    table = spotify_tables["table"]
    table.to_json(tmp_path / "tracks.jsonl", orient="records", lines=True, force_ascii=False)
    datasets.Dataset.from_pandas(table, preserve_index=False).save_to_disk(tmp_path / "saved")
    # A dataset with its own train/validation/test (as `load_dataset` gives a Hub id's splits) keeps them.
    parts = {"train": table.iloc[:400], "validation": table.iloc[400:500], "test": table.iloc[500:]}
    (tmp_path / "hub_like").mkdir()
    for name, part in parts.items():
        part.to_parquet(tmp_path / "hub_like" / f"{name}.parquet", index=False)
    selection = GenreSelection.parse(merges=[spotify_tables["merge"]])
    loaded = {
        name: load_data(path, selection)
        for name, path in {
            "csv": spotify_tables["csv"],
            "parquet": spotify_tables["parquet"],
            "jsonl": tmp_path / "tracks.jsonl",
            "saved": tmp_path / "saved",
            "hub_like": tmp_path / "hub_like",
        }.items()
    }
    reference = loaded["parquet"]
    assert reference.frame["key"].isna().sum() == (table["key"] == -1).sum()
    assert set(reference.frame["key"].dropna()) <= set(KEY_NAMES) and set(reference.frame["mode"]) == {"Major", "Minor"}
    assert (reference.frame["artist_name"] == table["artists"]).all()  # several artists: one group of the split
    for name, data in loaded.items():
        assert data.genres == reference.genres, name
        pd.testing.assert_frame_equal(data.frame, reference.frame, check_dtype=False, obj=name)
    # A folder or Hub dataset is hashed by its rows' content: the same rows give the same sha256.
    assert loaded["saved"].sha256 == load_data(tmp_path / "saved", selection).sha256 != loaded["parquet"].sha256
    assert loaded["saved"].report["source"] == "saved" and loaded["hub_like"].report["source"] == "hub_like"
    fixed = split_indices(loaded["hub_like"], seed=1)
    assert {name: len(rows) for name, rows in fixed.items()} == {"train": 400, "validation": 100, "test": 100}


def test_the_label_column_is_chosen_or_named(spotify_tables, tmp_path):
    table = spotify_tables["table"].rename(columns={"track_genre": "style"})
    table.to_parquet(tmp_path / "styled.parquet")
    with pytest.raises(DataError, match="no genre column .*--label-column.*style"):
        load_data(tmp_path / "styled.parquet")
    with pytest.raises(DataError, match="no column 'genre_name' \\(--label-column\\)"):
        load_data(tmp_path / "styled.parquet", GenreSelection.parse("genre_name"))
    data = load_data(tmp_path / "styled.parquet", GenreSelection.parse("style"))
    assert data.report["label_column"] == "style" and set(data.genres) == set(table["style"])
    # music_genre comes first of the defaults, before genre and track_genre.
    both = spotify_tables["table"].assign(genre="x")
    both["music_genre"] = both["track_genre"].str.upper()
    both.to_parquet(tmp_path / "both.parquet")
    assert set(load_data(tmp_path / "both.parquet").genres) == set(both["music_genre"])


def test_a_genre_too_small_to_split_is_refused_by_name_with_what_to_do(spotify_tables, tmp_path, capsys):
    table = spotify_tables["table"]
    small = spotify_tables["renamed"]
    few = MIN_ROWS_PER_GENRE - 3
    keep = table[(table["track_genre"] != small) | (table.groupby("track_genre").cumcount() < few)]
    keep.to_csv(tmp_path / "small.csv", index=False)
    message = f"too few: '{small}' ({few} rows)"
    with pytest.raises(DataError, match="--genres .*--merge-genres") as refused:
        load_data(tmp_path / "small.csv")
    assert message in str(refused.value)
    capsys.readouterr()
    assert main(["train", "--data", str(tmp_path / "small.csv"), "--output", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "run").exists()
    # Left out, or merged into another genre, it trains.
    others = [genre for genre in dict.fromkeys(keep["track_genre"]) if genre != small]
    assert small not in load_data(tmp_path / "small.csv", GenreSelection.parse(genres=",".join(others))).genres
    merged = load_data(tmp_path / "small.csv", GenreSelection.parse(merges=[f"{others[0]}={small},{others[0]}"]))
    assert small not in merged.genres and merged.report["rows_per_genre"][others[0]] == 60 + few


def test_group_split_refuses_a_genre_of_too_few_songs(spotify_tables, tmp_path):
    table = spotify_tables["table"].copy()
    small = spotify_tables["renamed"]
    # Every row of that genre is one song now: a group split cannot give it a validation and a test sample.
    table.loc[table["track_genre"] == small, ["artists", "track_name"]] = ["one artist", "one song"]
    table.to_parquet(tmp_path / "one_song.parquet")
    data = load_data(tmp_path / "one_song.parquet")
    split_indices(data, mode="stratified")
    with pytest.raises(DataError, match=f"--split group.*'{small}' \\(1 songs\\)"):
        split_indices(data, mode="group")
    table.drop(columns=["artists", "track_name"]).to_parquet(tmp_path / "no_songs.parquet")
    unnamed = load_data(tmp_path / "no_songs.parquet")
    assert len(split_indices(unnamed, mode="stratified")["test"]) == 60
    with pytest.raises(DataError, match="names no artist and track .*--split stratified"):
        split_indices(unnamed, mode="group")


def test_genre_names_in_the_flags_must_be_the_datas(spotify_tables):
    merged_from, merged_into = spotify_tables["merged"]
    source = spotify_tables["parquet"]
    with pytest.raises(DataError, match=f"--merge-genres: the data has no genre '{merged_from.upper()}'; did you mean "
                                        f"'{merged_from}'"):  # fmt: skip
        load_data(source, GenreSelection.parse(merges=[f"{merged_into}={merged_from.upper()}"]))
    with pytest.raises(DataError, match="--genres: the data has no genre 'no such genre'"):
        load_data(source, GenreSelection.parse(genres=f"{merged_into},no such genre"))
    with pytest.raises(DataError, match="at least two"):
        load_data(source, GenreSelection.parse(genres=merged_into))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"merge_genres": ("a,b",)}, "write NEW=A,B"),
        ({"merge_genres": ("=a,b",)}, "write NEW=A,B"),
        ({"merge_genres": ("x=a,,b",)}, "empty genre name"),
        ({"merge_genres": ("x=a,b", "y=b,c")}, "'b' is merged twice"),
        ({"genres": "a,b,a"}, "names a more than once"),
        ({"label_column": " "}, "--label-column is empty"),
    ],
)
def test_malformed_genre_flags_are_refused_before_anything_runs(flags, message):
    with pytest.raises(GenreSelectionError, match=message):
        RunOptions(**flags)


def test_genre_flags_are_recorded_in_the_command_as_given():
    options = RunOptions(data="t.parquet", label_column="track_genre", genres="a b,ç", merge_genres=("x=a,b", "y=c"))
    command = options.command()
    assert "--label-column track_genre --genres 'a b,ç' --merge-genres x=a,b --merge-genres y=c" in command
    selection = options.genre_selection()
    assert selection.genres == ("a b", "ç") and selection.merges == (("x", ("a", "b")), ("y", ("c",)))
    assert GenreSelection.from_record(selection.record()) == selection
    assert "--genres" not in RunOptions().command() and "--merge-genres" not in RunOptions().command()


def test_the_spaces_chart_and_matrix_stay_readable_with_a_hundred_genres():
    """A model of 114 genres (the Hub's table): the chart names the 19 most predicted and sums the rest in one bar;
    the confusion table lists the genres the file or the predictions hold, not all 114."""
    from types import SimpleNamespace

    genres = [f"género {i}" for i in range(114)]
    app = SimpleNamespace(genres=genres)
    predicted = [genres[i % 30] for i in range(300)]  # 30 genres predicted, 10 times each
    results = pd.DataFrame({"predicted_genre": predicted, "track_genre": [genres[(i + 1) % 30] for i in range(300)]})
    counts = GenreApp.genre_counts(app, results)
    assert len(counts) == 20 and counts["songs"].sum() == 300
    assert counts["genre"].iloc[-1] == "95 other genres" and counts["songs"].iloc[-1] == 110
    table = GenreApp.confusion_matrix(app, results)
    assert table.count('<th scope="col">') == 31 and "género 31" not in table  # 30 genres and the corner cell
    assert GenreApp.genre_list(app) == ", ".join(genres[:20]) + " and 94 more"  # the page's header
