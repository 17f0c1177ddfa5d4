"""Hostile input, fuzzed: generated rows and tables (dicts, lists of dicts, DataFrames with pandas' own dtypes) through
the feature extractor and the bundled pipeline. Every input is encoded, one row per row, or refused with a
`RawInputError` that names a wrong cell's column and row (or the missing column, or the empty table); never another
exception, never a silently wrong row count.

The oracle knows which cells it made wrong: values are drawn from a pool the documented format accepts (numbers,
numeric text, missing markers, pitch names and 0-11, Major/Minor and 1/0) or from a pool it refuses (text that is no
number, infinities, floats beyond range, booleans, containers, complex numbers, dates, durations, unknown keys and
modes), so a refusal must point at a refused cell and an input without one must be encoded.
"""

import math
import sys
from contextlib import nullcontext
from datetime import timedelta
from unittest import mock

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import pipeline

from music_genre.modeling import FEATURE_NAMES, KEY_NAMES, GenreFeatureExtractor
from music_genre.modeling.configuration_genre_ffn import MODE_NAMES
from music_genre.modeling.feature_extraction_genre_ffn import FLAT_KEYS, MISSING_MARKERS, RawInputError
from tests.conftest import REPO

BUNDLED = REPO / "space" / "model"
# The same examples on every run (a failure reproduces), no example database written into the checkout.
FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# numpy's fixed-width strings drop trailing NULs, so "C\x00" reads as "C" on one path and not another: left out.
TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=12)
MISSING = st.sampled_from([None, math.nan, np.nan, pd.NA, pd.NaT, "", "?", " ? ", "NaN", "null", "N/A", "<NA>"])


def finite_or_nan_number(text: str) -> bool:
    """What the format reads as a number: Python's float() of the text, finite, or NaN (a missing value)."""
    try:
        return not math.isinf(float(text))
    except (ValueError, OverflowError):
        return False


def is_marker(text: str) -> bool:
    return text.strip().lower() in MISSING_MARKERS


GOOD_NUMBER = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),  # 1e308 included: clipped to the training bounds
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**6), 10**6).map(lambda i: f" {i} "),
    st.floats(-1e6, 1e6, width=32).map(np.float32),
    st.integers(-1000, 1000).map(np.int64),
    MISSING,
)
BAD_NUMBER = st.one_of(
    st.sampled_from([math.inf, -math.inf, "inf", "-Infinity", "1e400"]),
    st.sampled_from([True, False, np.bool_(True)]),
    st.integers(min_value=2**1024, max_value=2**1100),
    TEXT.filter(lambda text: not finite_or_nan_number(text) and not is_marker(text)),
    st.lists(st.integers(0, 9), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(0, 9), max_size=1),
    st.complex_numbers(allow_nan=False, allow_infinity=False, max_magnitude=1e6),
    st.datetimes().map(pd.Timestamp),
    st.timedeltas(max_value=timedelta(days=9999)),
    st.integers(0, 10**6).map(lambda days: np.datetime64(days, "D")),
    st.integers(0, 10**6).map(lambda seconds: np.timedelta64(seconds, "s")),
    st.floats(-1e6, 1e6).map(np.complex128),
)

KEY_TEXTS = {name.lower() for name in (*KEY_NAMES, *FLAT_KEYS)} | {str(i) for i in range(12)} | {"-1", "-1.0"}
KEY_TEXTS |= {f"{i}.0" for i in range(12)}
GOOD_KEY = st.one_of(
    st.sampled_from([*KEY_NAMES, *FLAT_KEYS, "c#", " Bb ", "-1", *map(str, range(12))]),
    st.integers(-1, 11),
    st.integers(-1, 11).map(float),
    MISSING,
)
BAD_KEY = st.one_of(
    st.integers().filter(lambda i: not -1 <= i <= 11),
    st.floats(allow_nan=False).filter(lambda x: not (x.is_integer() and -1 <= x <= 11 and str(x) != "-0.0")),
    TEXT.filter(lambda text: text.strip().lower() not in KEY_TEXTS and not is_marker(text)),
    st.sampled_from([True, False, "H", "C##", "Ｃ#", "do", [1], {}]),
)
MODE_TEXTS = {name.lower() for name in MODE_NAMES} | {"0", "1", "0.0", "1.0"}
GOOD_MODE = st.one_of(st.sampled_from([*MODE_NAMES, "major", " MINOR ", 1, 0, 1.0, 0.0, "1", "0"]), MISSING)
BAD_MODE = st.one_of(
    st.integers().filter(lambda i: i not in (0, 1)),
    TEXT.filter(lambda text: text.strip().lower() not in MODE_TEXTS and not is_marker(text)),
    st.sampled_from([True, False, 0.5, "Dorian", "majeur", [0]]),
)


def pools(column: str) -> tuple[st.SearchStrategy, st.SearchStrategy]:
    if column == "key":
        return GOOD_KEY, BAD_KEY
    if column == "mode":
        return GOOD_MODE, BAD_MODE
    return GOOD_NUMBER, BAD_NUMBER


@st.composite
def tables(draw) -> dict:
    """Rows of the 13 features (some cells wrong), extra columns, maybe a feature missing, as one of the three forms.

    Returns the input, its row count, the wrong cells {(column, row)} and the missing feature (or None)."""
    n_rows = draw(st.one_of(st.integers(0, 6), st.just(1)))
    # No wrong cell, exactly one (a wrong value must not slip through behind another), or about a third.
    wrongs = draw(st.sampled_from(["none", "one", "one", "many"]))
    only = (draw(st.sampled_from(FEATURE_NAMES)), draw(st.integers(0, max(n_rows - 1, 0))))
    rows, wrong = [], set()
    for r in range(n_rows):
        row = {}
        for column in FEATURE_NAMES:
            good, bad = pools(column)
            is_wrong = (column, r) == only if wrongs == "one" else wrongs == "many" and draw(st.integers(0, 2)) == 0
            row[column] = draw(bad if is_wrong else good)
            if is_wrong:
                wrong.add((column, r))
        rows.append(row)
    extras = draw(
        st.lists(
            st.sampled_from(["genre", "track_name", "artists", "explicit", "ключ", "Unnamed: 0"]),
            max_size=3,
            unique=True,
        )
    )
    for column in extras:
        values = draw(
            st.lists(st.one_of(TEXT, st.integers(), st.booleans(), st.none()), min_size=n_rows, max_size=n_rows)
        )
        for row, value in zip(rows, values):
            row[column] = value
    missing = None
    if draw(st.sampled_from([False] * 5 + [True])):  # a feature dropped, or renamed as a user's table might spell it
        missing = draw(st.sampled_from(FEATURE_NAMES))
        renamed = draw(st.sampled_from([None, missing.upper(), f" {missing}", f"{missing}_x"]))
        for row in rows:
            value = row.pop(missing)
            if renamed:
                row[renamed] = value
        wrong = {(column, r) for column, r in wrong if column != missing}
    form = draw(
        st.sampled_from(["dict", "list", "frame", "typed frame"] if n_rows == 1 else ["list", "frame", "typed frame"])
    )
    if form == "dict":
        data = rows[0]
    elif form == "list":
        data = rows
        missing = missing if rows else None  # no row, no columns to miss
    else:
        columns = list(rows[0]) if rows else [name for name in FEATURE_NAMES if name != missing]
        # As object columns, every cell stays as drawn; "typed frame" lets pandas infer (and convert) dtypes.
        data = pd.DataFrame({c: pd.Series([row[c] for row in rows], dtype=object) for c in columns})
        if form == "typed frame":
            data = data.infer_objects()
            if draw(st.booleans()):
                data = data.convert_dtypes()
    return {"data": data, "n_rows": n_rows, "wrong": wrong, "missing": missing, "form": form}


def check_refusal(error: BaseException, table: dict) -> None:
    """A refusal names what is wrong: the missing feature, the empty table, or a wrong cell by column and row."""
    assert isinstance(error, ValueError) and type(error).__name__ == "RawInputError", repr(error)
    data, wrong = table["data"], table["wrong"]
    if table["missing"] is not None:
        assert error.column is None and error.row is None and table["missing"] in str(error)
    elif table["n_rows"] == 0:
        assert str(error) == "no rows to encode"
    else:
        assert error.column in FEATURE_NAMES and 0 <= error.row < table["n_rows"], str(error)
        assert f"column '{error.column}', row {error.row}: " in str(error)
        if isinstance(data, pd.DataFrame) and data[error.column].dtype.kind in "bcmM":
            # pandas turned the whole column into booleans, complex numbers or dates: every cell is refused.
            assert any(column == error.column for column, _ in wrong), str(error)
        else:
            assert (error.column, error.row) in wrong, f"{error} (wrong cells: {sorted(wrong)})"


def expects_refusal(table: dict) -> bool:
    return bool(table["wrong"]) or table["missing"] is not None or table["n_rows"] == 0


@pytest.fixture(scope="module")
def extractor() -> GenreFeatureExtractor:
    return GenreFeatureExtractor.from_pretrained(BUNDLED)


@pytest.fixture(scope="module")
def classifier():
    """The bundled model folder loaded as a user loads it, with trust_remote_code=True."""
    return pipeline(model=str(BUNDLED), trust_remote_code=True)


@FUZZ
@given(table=tables())
def test_the_extractor_encodes_every_row_or_names_the_wrong_cell(extractor, table):
    try:
        features = extractor(table["data"])["input_features"]
    except Exception as error:  # noqa: BLE001 - the property is about which exceptions escape
        check_refusal(error, table)
        return
    assert not expects_refusal(table), f"encoded a table with wrong cells {sorted(table['wrong'])}"
    assert features.shape == (table["n_rows"], extractor.encoded_size) and np.isfinite(features).all()
    # Row by row gives the same rows: nothing shifted, dropped or mixed between rows.
    data = table["data"]
    for r in range(table["n_rows"]):
        alone = data.iloc[[r]] if isinstance(data, pd.DataFrame) else [data] if isinstance(data, dict) else [data[r]]
        np.testing.assert_allclose(extractor(alone)["input_features"][0], features[r], atol=1e-6)


@FUZZ
@given(table=tables(), top_k=st.sampled_from([1, 3, None]), chunk_rows=st.sampled_from([2, 16_384]))
def test_the_pipeline_classifies_every_row_or_names_the_wrong_cell(classifier, table, top_k, chunk_rows):
    # By the module object: the remote code's module name holds a hash, which may start with a digit.
    pipeline_module = sys.modules[type(classifier).__module__]
    data = table["data"]
    # Small chunks check that a later chunk's errors and results keep the whole table's row numbers and order.
    chunking = mock.patch.object(pipeline_module, "CHUNK_ROWS", chunk_rows) if chunk_rows != 16_384 else nullcontext()
    with chunking:
        try:
            results = classifier(data, top_k=top_k)
        except Exception as error:  # noqa: BLE001
            check_refusal(error, table)
            return
    assert not expects_refusal(table), f"classified a table with wrong cells {sorted(table['wrong'])}"
    rows = [results] if isinstance(data, dict) else results
    assert len(rows) == table["n_rows"]
    features = classifier.feature_extractor(data, return_tensors="pt")["input_features"]
    with torch.no_grad():
        probabilities = classifier.model(input_features=features).logits.float().softmax(-1)
    labels = classifier.model.config.label2id
    for r, genres in enumerate(rows):
        assert len(genres) == (len(labels) if top_k is None else top_k)
        scores = [genre["score"] for genre in genres]
        assert scores == sorted(scores, reverse=True)
        expected = [probabilities[r, labels[genre["label"]]].item() for genre in genres]
        assert scores == pytest.approx(expected, abs=1e-5)


def test_a_refused_row_is_named_in_the_whole_table_across_chunks(classifier):
    """One wrong cell deep in a table cut into chunks: the row number counts from the table's start."""
    rows = [dict(zip(FEATURE_NAMES, [50, 0.1, 0.5, 2e5, 0.5, 0.0, "C", 0.1, -5, "Major", 0.05, 120, 0.5]))] * 9
    rows = [*rows[:7], {**rows[0], "tempo": "fast"}, rows[0]]
    with mock.patch.object(sys.modules[type(classifier).__module__], "CHUNK_ROWS", 2):
        with pytest.raises(ValueError, match=r"^column 'tempo', row 7: 'fast' is not a number$") as caught:
            classifier(pd.DataFrame(rows))
    assert (caught.value.column, caught.value.row, caught.value.value) == ("tempo", 7, "fast")


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        (np.datetime64("2021-05-01"), "datetime.date(2021, 5, 1)"),
        (pd.Timestamp("2021-05-01"), "Timestamp('2021-05-01 00:00:00')"),
        (np.timedelta64(90, "s"), "datetime.timedelta(seconds=90)"),
        (np.complex128(120 + 0j), "(120+0j)"),
    ],
    ids=["numpy-date", "timestamp", "numpy-duration", "numpy-complex"],
)
def test_dates_durations_and_complex_numbers_are_not_numbers(extractor, cell, shown):
    """numpy converts these to floats without complaint (a date to its day count); they were once read as tempos."""
    row = dict(zip(FEATURE_NAMES, [50, 0.1, 0.5, 2e5, 0.5, 0.0, "C", 0.1, -5, "Major", 0.05, 120, 0.5]))
    for data in ([row, {**row, "tempo": cell}], pd.DataFrame([row, {**row, "tempo": cell}], dtype=object)):
        with pytest.raises(RawInputError) as caught:
            extractor(data)
        assert (caught.value.column, caught.value.row) == ("tempo", 1)
        assert str(caught.value) == f"column 'tempo', row 1: {shown} is not a number"
    column = pd.DataFrame([row, row]).assign(tempo=pd.Series([cell, cell]))  # a typed column: datetime64, complex
    with pytest.raises(RawInputError, match=r"^column 'tempo', row 0: .* is not a number$"):
        extractor(column)
