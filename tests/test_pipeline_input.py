"""The pipeline facing odd input: top_k checked, large tables in chunks, the extractor's errors passed on unchanged."""

import ast
import gc

import pandas as pd
import pytest
from transformers import pipeline

from music_genre.modeling import GenreFeatureExtractor
from music_genre.modeling import pipeline_genre_ffn as pipeline_module
from music_genre.modeling.feature_extraction_genre_ffn import RawInputError
from tests.conftest import REPO, make_model


@pytest.fixture
def classifier(raw_rows):
    model = make_model(hidden_sizes=[16])  # the genres are the config's id2label, no default
    extractor = GenreFeatureExtractor().fit(raw_rows)
    return pipeline(model=model, feature_extractor=extractor, task="music-genre-classification")


@pytest.mark.parametrize("top_k", [-1, 0, "3", 2.5, True])
def test_top_k_must_be_a_positive_whole_number(classifier, raw_rows, top_k):
    with pytest.raises(ValueError, match=f"top_k must be a whole number of genres, 1 or more .*got {top_k!r}"):
        classifier(raw_rows[0], top_k=top_k)


def test_top_k_beyond_the_genres_gives_every_genre(classifier, raw_rows):
    assert len(classifier(raw_rows[0], top_k=50)) == 10 and len(classifier(raw_rows[0], top_k=2)) == 2
    assert len(classifier(raw_rows[0], top_k=None)) == 10 and len(classifier(raw_rows[0])) == 1


def test_a_pipeline_made_for_every_genre_keeps_that_default(raw_rows):
    model = make_model(hidden_sizes=[16])  # the genres are the config's id2label, no default
    extractor = GenreFeatureExtractor().fit(raw_rows)
    every = pipeline(model=model, feature_extractor=extractor, task="music-genre-classification", top_k=None)
    assert len(every(raw_rows[0])) == 10 and len(every(raw_rows[0], top_k=2)) == 2


def test_chunks_give_the_same_results_and_number_errors_in_the_whole_table(classifier, raw_rows, monkeypatch):
    table = pd.DataFrame(raw_rows * 4)  # 48 rows
    whole = classifier(table, top_k=3)
    monkeypatch.setattr(pipeline_module, "CHUNK_ROWS", 5)
    chunked = classifier(table, top_k=3)
    assert len(chunked) == 48
    for rows in (chunked, classifier(raw_rows * 4, top_k=3)):  # a list of dicts is chunked the same way
        # Matrix products of other batch sizes round differently in the last bits.
        assert [[g["label"] for g in row] for row in rows] == [[g["label"] for g in row] for row in whole]
        assert [g["score"] for row in rows for g in row] == pytest.approx([g["score"] for r in whole for g in r])
    table.loc[37, "tempo"] = "fast"
    with pytest.raises(RawInputError) as caught:
        classifier(table)
    assert (caught.value.column, caught.value.row, caught.value.value) == ("tempo", 37, "fast")
    assert str(caught.value) == "column 'tempo', row 37: 'fast' is not a number"


def test_the_output_is_each_rows_ranked_genres_with_the_garbage_collector_left_on(classifier, raw_rows, monkeypatch):
    # The dicts are built flat from the probabilities (no per-row intermediates) and never with collection off:
    # switching it off would reach every thread of the caller's process.
    seen = []
    built = pipeline_module.ranked_genres
    monkeypatch.setattr(pipeline_module, "ranked_genres", lambda *args: seen.append(gc.isenabled()) or built(*args))
    every = classifier(raw_rows, top_k=None)
    assert seen == [True] and gc.isenabled()
    genres = classifier.model.config.id2label
    for k in (1, 3):
        top = classifier(raw_rows, top_k=k)
        assert top == [row[:k] for row in every]
    for row in every:
        assert [g["score"] for g in row] == sorted((g["score"] for g in row), reverse=True)
        assert sorted(g["label"] for g in row) == sorted(genres.values())
    for path in [*(REPO / "modeling").glob("*_genre_ffn.py"), REPO / "space" / "app.py"]:
        calls = {ast.unparse(node.func) for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Call)}
        assert not calls & {"gc.disable", "gc.freeze"}, f"{path.name} changes the process's garbage collection"
