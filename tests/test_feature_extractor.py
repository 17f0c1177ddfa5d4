import json

import numpy as np
import pandas as pd
import pytest

from music_genre.modeling import (
    FEATURE_NAMES,
    KEY_NAMES,
    PAPER_ENCODING,
    GenreFeatureExtractor,
    GenreFFNConfig,
    encoded_size,
)
from music_genre.modeling.configuration_genre_ffn import NUMERIC_FEATURES
from music_genre.modeling.feature_extraction_genre_ffn import ENCODINGS

N_NUMERIC = len(NUMERIC_FEATURES)


@pytest.fixture(params=ENCODINGS)
def fitted(request, raw_rows):
    return GenreFeatureExtractor(numeric_encoding=request.param, n_quantiles=8).fit(raw_rows)


def test_encodes_every_key_and_both_modes(fitted, raw_rows):
    features = fitted(raw_rows)["input_features"]
    assert features.shape == (len(raw_rows), fitted.encoded_size) and features.dtype == np.float32
    assert np.isfinite(features).all()
    numeric_width = fitted.encoded_size - len(KEY_NAMES) - 1
    key_block = features[:, numeric_width : numeric_width + len(KEY_NAMES)]
    np.testing.assert_array_equal(key_block, np.eye(len(KEY_NAMES)))
    np.testing.assert_array_equal(features[:, -1], [1.0 if row["mode"] == "Major" else 0.0 for row in raw_rows])


def test_missing_markers_are_imputed_with_training_medians(fitted, raw_rows):
    tempos = [float(row["tempo"]) for row in raw_rows if row["tempo"] != "?"]
    durations = [row["duration_ms"] for row in raw_rows if row["duration_ms"] != -1.0]
    assert fitted.medians["tempo"] == pytest.approx(np.median(tempos))
    assert fitted.medians["duration_ms"] == pytest.approx(np.median(durations))
    row = dict(raw_rows[0], tempo="?", duration_ms=-1.0)
    filled = dict(row, tempo=fitted.medians["tempo"], duration_ms=fitted.medians["duration_ms"])
    np.testing.assert_array_equal(fitted(row)["input_features"], fitted(filled)["input_features"])
    for marker in (None, float("nan"), "", " ? "):
        np.testing.assert_array_equal(fitted(dict(row, tempo=marker))["input_features"], fitted(row)["input_features"])


def test_formats_agree_and_extra_columns_are_ignored(fitted, raw_rows):
    as_list = fitted(raw_rows)["input_features"]
    as_frame = fitted(pd.DataFrame(raw_rows))["input_features"]
    bare = [{name: row[name] for name in FEATURE_NAMES} for row in raw_rows]
    np.testing.assert_array_equal(as_list, as_frame)
    np.testing.assert_array_equal(as_list, fitted(bare)["input_features"])
    np.testing.assert_array_equal(as_list[:1], fitted(raw_rows[0])["input_features"])


def test_spotify_codes_and_flat_names_equal_pitch_names(fitted, raw_rows):
    row = dict(raw_rows[1])  # key C#, mode Major
    for key, mode in ((1, 1), ("Db", "major"), (1.0, "MAJOR")):
        np.testing.assert_array_equal(
            fitted(dict(row, key=key, mode=mode))["input_features"], fitted(row)["input_features"]
        )


def test_outliers_are_clipped_to_training_bounds(fitted, raw_rows):
    huge = dict(raw_rows[1], duration_ms=4.8e6, loudness=-60.0)
    at_bounds = dict(raw_rows[1], duration_ms=fitted.clip_high["duration_ms"], loudness=fitted.clip_low["loudness"])
    np.testing.assert_allclose(fitted(huge)["input_features"], fitted(at_bounds)["input_features"], rtol=1e-6)


def test_log_standard_matches_a_manual_computation(raw_rows):
    extractor = GenreFeatureExtractor().fit(raw_rows)
    j = NUMERIC_FEATURES.index("speechiness")
    values = np.clip(
        [row["speechiness"] for row in raw_rows], extractor.clip_low["speechiness"], extractor.clip_high["speechiness"]
    )
    logged = np.log(values + extractor.log_features["speechiness"])
    expected = (logged - logged.mean()) / logged.std()
    np.testing.assert_allclose(extractor(raw_rows)["input_features"][:, j], expected, rtol=1e-5, atol=1e-6)


def test_statistics_come_from_the_training_rows_only(real_data):
    from music_genre.training.data import split_indices

    splits = split_indices(real_data, seed=0)
    train = real_data.frame.iloc[splits["train"]]
    extractor = GenreFeatureExtractor().fit(train)
    before = extractor.to_json_string()
    extractor(real_data.frame.iloc[splits["test"]])
    assert extractor.to_json_string() == before  # encoding never learns
    assert extractor.medians["tempo"] == pytest.approx(train["tempo"].median())
    full = GenreFeatureExtractor().fit(real_data.frame)
    assert extractor.mean != full.mean


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"key": "H"}, "column 'key', row 0: unknown key 'H'"),
        ({"mode": "Dorian"}, "column 'mode', row 0: unknown mode 'Dorian'"),
        ({"tempo": "fast"}, "column 'tempo', row 0: 'fast' is not a number"),
        ({"loudness": float("inf")}, "column 'loudness', row 0: inf is not a finite number"),
        ({"energy": "-inf"}, "column 'energy', row 0: '-inf' is not a finite number"),
        ({"key": 12}, "column 'key', row 0: unknown key 12"),
    ],
)
def test_bad_values_name_the_column_and_the_value(fitted, raw_rows, change, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        fitted(dict(raw_rows[0], **change))


def test_bad_shapes_give_clear_errors(fitted, raw_rows):
    with pytest.raises(ValueError, match="missing column.*tempo"):
        fitted({k: v for k, v in raw_rows[0].items() if k != "tempo"})
    with pytest.raises(ValueError, match="missing column.*valence"):
        fitted(pd.DataFrame(raw_rows).drop(columns="valence"))
    with pytest.raises(ValueError, match="row 1: missing column.*key"):
        fitted([raw_rows[0], {k: v for k, v in raw_rows[1].items() if k != "key"}])
    with pytest.raises(ValueError, match="no rows"):
        fitted([])
    with pytest.raises(ValueError, match="expected a dict, a list of dicts or a DataFrame"):
        fitted("popularity,acousticness")
    with pytest.raises(ValueError, match="not fitted"):
        GenreFeatureExtractor()(raw_rows)


def test_saved_config_is_plain_json_and_round_trips(fitted, raw_rows, tmp_path):
    fitted.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["numeric_encoding"] == fitted.numeric_encoding and saved["medians"] == fitted.medians
    reloaded = GenreFeatureExtractor.from_pretrained(tmp_path)
    np.testing.assert_array_equal(reloaded(raw_rows)["input_features"], fitted(raw_rows)["input_features"])


def test_both_views_side_by_side_equal_each_encoding_alone(raw_rows):
    single = [GenreFeatureExtractor(numeric_encoding=e, n_quantiles=8).fit(raw_rows) for e in ENCODINGS[:2]]
    both = GenreFeatureExtractor(numeric_encoding="quantile-normal+log-standard", n_quantiles=8).fit(raw_rows)
    # 11 numeric columns per view, 12 for the one-hot key, 1 for mode.
    assert [e.encoded_size for e in single] == [24, 24] and both.encoded_size == 35
    log_view, quantile_view = (e(raw_rows)["input_features"] for e in single)
    features = both(raw_rows)["input_features"]
    np.testing.assert_allclose(features[:, :N_NUMERIC], quantile_view[:, :N_NUMERIC], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(features[:, N_NUMERIC:], log_view, rtol=1e-6, atol=1e-6)


def test_pandas_missing_scalars_and_spotify_no_key_are_missing_values(fitted, raw_rows):
    row = dict(raw_rows[1])
    reference = fitted(dict(row, tempo=None, key=None))["input_features"]
    for missing in (pd.NA, pd.NaT, np.datetime64("NaT"), -1, "-1", -1.0):
        np.testing.assert_array_equal(fitted(dict(row, tempo=None, key=missing))["input_features"], reference)
    for missing in (pd.NA, pd.NaT):
        np.testing.assert_array_equal(fitted(dict(row, tempo=missing, key=None))["input_features"], reference)
    # A pandas `string` column with missing cells, as `pd.read_csv(dtype="string")` gives.
    frame = pd.DataFrame(raw_rows[:3]).astype({"tempo": "string", "key": "string", "mode": "string"})
    frame.loc[0, ["tempo", "key"]] = pd.NA
    expected = fitted([dict(raw_rows[0], tempo=None, key=None), *raw_rows[1:3]])["input_features"]
    np.testing.assert_array_equal(fitted(frame)["input_features"], expected)


@pytest.mark.parametrize(
    ("rows", "column", "row", "reason"),
    [
        (lambda r: dict(r[0], popularity=True), "popularity", 0, "True is not a number"),
        (lambda r: [r[0], dict(r[1], energy=np.bool_(False))], "energy", 1, "False is not a number"),
        (lambda r: pd.DataFrame(r).assign(popularity=True), "popularity", 0, "True is not a number"),
        (lambda r: [r[0], dict(r[1], tempo=10**400)], "tempo", 1, "is not a finite number"),
        (lambda r: {name: [v, v] for name, v in r[0].items()}, "popularity", 0, "a row holds one value per column"),
        (lambda r: dict(r[0], key=["C", "D"]), "key", 0, "unknown key ['C', 'D']"),
        (lambda r: dict(r[0], key=-2), "key", 0, "unknown key -2"),
    ],
    ids=["bool", "numpy-bool", "bool-column", "huge-int", "dict-of-lists", "list-key", "key-minus-2"],
)
def test_refused_values_raise_one_error_type_with_fields(fitted, raw_rows, rows, column, row, reason):
    from music_genre.modeling.feature_extraction_genre_ffn import RawInputError

    with pytest.raises(RawInputError) as caught:
        fitted(rows(raw_rows))
    error = caught.value
    assert isinstance(error, ValueError) and (error.column, error.row) == (column, row)
    assert reason in error.reason and str(error) == f"column '{column}', row {row}: {error.reason}"


@pytest.mark.parametrize("name", ["key", "tempo"])
def test_a_duplicated_feature_column_is_named(fitted, raw_rows, name):
    from music_genre.modeling.feature_extraction_genre_ffn import RawInputError

    frame = pd.DataFrame(raw_rows)
    doubled = pd.concat([frame, frame[[name]]], axis=1)
    with pytest.raises(RawInputError, match=f"column '{name}': the column appears 2 times") as caught:
        fitted(doubled)
    assert caught.value.column == name and caught.value.row is None


def test_echoed_values_are_cut_and_errors_survive_pickling(fitted, raw_rows):
    import pickle

    from music_genre.modeling.feature_extraction_genre_ffn import SHOWN_VALUE_CHARS, RawInputError

    long_value = "x" * 100_000
    with pytest.raises(RawInputError) as caught:
        fitted([raw_rows[0], raw_rows[1], dict(raw_rows[2], tempo=long_value)])
    assert len(str(caught.value)) < SHOWN_VALUE_CHARS + 60 and caught.value.value == long_value
    again = pickle.loads(pickle.dumps(caught.value))
    assert (again.column, again.row, again.value, str(again)) == ("tempo", 2, long_value, str(caught.value))


def test_the_encoded_width_is_one_function_of_the_encoding_and_a_default_config_takes_the_default_extractors():
    for encoding in ENCODINGS:
        extractor = GenreFeatureExtractor(numeric_encoding=encoding, n_quantiles=8)
        assert extractor.encoded_size == encoded_size(encoding) == len(extractor.column_features)
    assert GenreFeatureExtractor().numeric_encoding == PAPER_ENCODING == "log-standard"
    assert GenreFFNConfig().input_size == GenreFeatureExtractor().encoded_size == 24
    with pytest.raises(ValueError, match="numeric_encoding must be one of"):
        encoded_size("log")


def test_the_extractor_reads_the_one_list_of_feature_names_and_refuses_another(raw_rows, tmp_path):
    assert GenreFeatureExtractor().feature_names == list(FEATURE_NAMES) == GenreFFNConfig().feature_names
    GenreFeatureExtractor().fit(raw_rows).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    assert saved["feature_names"] == list(FEATURE_NAMES)
    assert GenreFeatureExtractor.from_pretrained(tmp_path).feature_names == list(FEATURE_NAMES)
    renamed = [*FEATURE_NAMES[:-1], "mood"]
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**saved, "feature_names": renamed}))
    with pytest.raises(
        ValueError, match=r"encodes the columns \['popularity'.*'valence'\].*given feature_names .*'mood'"
    ):
        GenreFeatureExtractor.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="given feature_names 'popularity'"):
        GenreFeatureExtractor(feature_names="popularity")
