import numpy as np
import pandas as pd
import pytest

from music_genre.modeling import GenreFeatureExtractor
from music_genre.modeling.configuration_genre_ffn import NUMERIC_FEATURES
from music_genre.training.data import (
    GROUP_COLUMNS,
    GenreData,
    clean_rows,
    oversample,
    prepare_splits,
    split_indices,
    unseen_test_rows,
)
from tests.conftest import GENRES


def test_cleaning_report_on_the_real_csv(real_data):
    report = real_data.report
    assert report["rows_in"] == 50_005 and report["rows_kept"] == 50_000
    assert report["rows_dropped"] == {"entirely_empty": 5, "no_genre": 0, "genre_not_selected": 0, "total": 5}
    assert report["missing_values"]["tempo"] == 4_980
    assert report["missing_values"]["duration_ms"] == 4_939
    assert sum(report["missing_values"].values()) == 4_980 + 4_939
    assert report["rows_per_genre"] == {name: 5_000 for name in GENRES}
    assert real_data.genres == GENRES and report["label_column"] == "music_genre"  # the CSV's order of first rows
    assert report["distinct_artist_track_pairs"] == 46_165
    assert report["pairs_under_several_genres"] == 3_633 == len(report["pairs_under_several_genres_list"])
    assert real_data.sha256 == "6e1a77a46c88226e24aa36facf81235315b4680054bc7f3d3c609c1b05711078"
    assert real_data.frame["tempo"].dtype == np.float64 and real_data.frame["duration_ms"].min() > 0


def test_cleaning_rejects_an_unparseable_tempo():
    frame = pd.DataFrame(
        [
            {
                "genre": "Jazz",
                **dict.fromkeys(
                    NUMERIC_FEATURES,
                    1.0,
                ),
                "key": "C",
                "mode": "Major",
                "tempo": "fast",
            }
        ]
    )
    with pytest.raises(ValueError, match="column 'tempo', row 0: 'fast' is not a number"):
        clean_rows(frame)


@pytest.mark.parametrize("mode", ["stratified", "group"])
def test_split_is_80_10_10_balanced_and_seeded(real_data, mode):
    splits = split_indices(real_data, seed=7, mode=mode)
    sizes = {name: len(rows) for name, rows in splits.items()}
    assert sum(sizes.values()) == 50_000
    assert len(np.unique(np.concatenate(list(splits.values())))) == 50_000
    for name, share in (("train", 0.8), ("validation", 0.1), ("test", 0.1)):
        assert sizes[name] == pytest.approx(50_000 * share, rel=0.01)
        counts = np.bincount(real_data.labels[splits[name]], minlength=10)
        if mode == "stratified":
            assert (counts == sizes[name] // 10).all()
        else:  # whole songs move together, so the balance is close, not exact
            assert counts == pytest.approx(np.full(10, sizes[name] / 10), rel=0.05)
    again = split_indices(real_data, seed=7, mode=mode)
    assert all(np.array_equal(splits[name], again[name]) for name in splits)
    other = split_indices(real_data, seed=8, mode=mode)
    assert not np.array_equal(splits["test"], other["test"])


def test_group_split_keeps_every_artist_track_pair_on_one_side(real_data):
    splits = split_indices(real_data, seed=3, mode="group")
    pairs = real_data.frame[list(GROUP_COLUMNS)].apply(tuple, axis=1)
    sides = {name: set(pairs.iloc[rows]) for name, rows in splits.items()}
    assert not sides["train"] & sides["test"]
    assert not sides["train"] & sides["validation"]
    assert not sides["validation"] & sides["test"]
    stratified = split_indices(real_data, seed=3, mode="stratified")
    assert set(pairs.iloc[stratified["train"]]) & set(pairs.iloc[stratified["test"]])  # the leak group mode removes


def test_smote_touches_the_training_split_only(real_data):
    template = GenreFeatureExtractor()
    prepared = prepare_splits(real_data, template, seed=3, mode="group")
    assert template.to_dict() == GenreFeatureExtractor().to_dict()  # fitting is explicit: the caller's is untouched
    extractor = prepared.extractor
    assert extractor is not template and extractor.to_dict() != template.to_dict()
    train_rows = prepared.indices["train"]
    counts = np.bincount(prepared.labels["train"], minlength=10)
    assert len(set(counts)) == 1 and counts[0] == np.bincount(real_data.labels[train_rows]).max()
    assert len(prepared.labels["train"]) > len(train_rows)  # the group split is uneven, so SMOTE adds rows
    original = extractor(real_data.frame.iloc[train_rows])["input_features"]
    np.testing.assert_array_equal(prepared.features["train"][: len(train_rows)], original)
    for name in ("validation", "test"):
        rows = prepared.indices[name]
        assert len(prepared.features[name]) == len(rows)
        np.testing.assert_array_equal(prepared.features[name], extractor(real_data.frame.iloc[rows])["input_features"])
        np.testing.assert_array_equal(prepared.labels[name], real_data.labels[rows])
    assert extractor.medians["tempo"] == pytest.approx(real_data.frame["tempo"].iloc[train_rows].median())


def test_oversample_leaves_balanced_data_alone():
    features = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    labels = np.repeat(np.arange(4), 10)
    same_features, same_labels = oversample(features, labels, seed=0)
    assert same_features is features and same_labels is labels


def test_unseen_test_rows_are_those_whose_artist_and_track_no_training_or_validation_row_has():
    frame = pd.DataFrame(
        {
            "artist_name": ["a", "a", "b", "a", "c", "b", "a"],
            "track_name": ["x", "y", "x", "x", "x", "x", "z"],
            "genre": ["Rap", "Rock", "Jazz", "Hip-Hop", "Rap", "Jazz", "Rap"],
        }
    )
    data = GenreData(frame=frame, report={}, sha256="0" * 64)
    split = {"train": np.array([0, 1]), "validation": np.array([2]), "test": np.array([3, 4, 5, 6])}
    # Row 3 is (a, x) as training row 0, row 5 (b, x) as validation row 2; rows 4 and 6 are new tracks.
    assert unseen_test_rows(data, split).tolist() == [False, True, False, True]
    # A table without song names (no artist and track columns) has no such rows to name.
    assert unseen_test_rows(GenreData(frame=frame, report={"songs_named": False}, sha256="0" * 64), split) is None
