"""GenreFeatureExtractor: raw Spotify rows in, the float32 `input_features` of GenreFFN out.

It follows scikit-learn's fit-on-train rule: `fit` learns medians, clip bounds,
quantiles and scaling statistics from training rows only, and every later call
applies exactly those, all of them saved as plain JSON in `preprocessor_config.json`.

Raw rows are what the public CSV holds: a dict (one row), a list of dicts, or a
pandas DataFrame, with the 13 feature columns; other columns are ignored. `key`
is a pitch name (`C#`; flats and Spotify's 0-11 pitch classes also work), `mode`
is `Major`/`Minor` (or 1/0), `?`, an empty cell, None, NaN, `pd.NA` or `pd.NaT`
mark a missing value, and so do a `duration_ms` of -1 and a `key` of -1 (Spotify's
"no key detected"). A value the extractor refuses raises `RawInputError`, a
`ValueError` that names the column, the row, the value and the reason.
"""

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from statistics import NormalDist
from typing import Any

import numpy as np
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin

from .configuration_genre_ffn import (
    ENCODINGS,
    FEATURE_NAMES,
    KEY_NAMES,
    MODE_NAMES,
    NUMERIC_FEATURES,
    PAPER_ENCODING,
    encoded_size,
    numeric_views,
)

MISSING_MARKERS = frozenset({"", "?", "nan", "none", "null", "na", "n/a", "<na>", "nat"})
# Pandas' missing scalars, recognised by type name so that this file need not import pandas.
MISSING_TYPES = frozenset({"NAType", "NaTType"})
# Spotify's "no key detected".
MISSING_KEYS = frozenset({"-1", "-1.0"})
# Values that convert to a float but are no feature's number: True is no popularity of 1, and a complex, a date or
# a duration is a wrong column (numpy's timedelta64 even counts as an integer).
NOT_NUMBERS = (bool, np.bool_, complex, np.complexfloating, np.datetime64, np.timedelta64)
# Values echoed in messages are cut to this many characters: a cell may be megabytes long.
SHOWN_VALUE_CHARS = 60
FLAT_KEYS = {"Db": "C#", "Eb": "D#", "Gb": "F#", "Ab": "G#", "Bb": "A#"}
# Offsets of log(x + offset): near the smallest non-zero value each feature takes.
DEFAULT_LOG_FEATURES = {"instrumentalness": 1e-6, "liveness": 1e-3, "speechiness": 1e-3, "duration_ms": 1.0}


class RawInputError(ValueError):
    """A raw value or shape the extractor refuses.

    `column` is the feature's name (None when the input as a whole is wrong), `row` the 0-based row of the input
    (None when the whole column is wrong), `value` the cell as given and `reason` what is wrong with it; the message
    reads `column 'tempo', row 3: 'fast' is not a number`.
    """

    def __init__(self, reason: str, column: str | None = None, row: int | None = None, value: Any = None):
        self.reason, self.column, self.row, self.value = reason, column, row, value
        if column is None:
            message = reason
        elif row is None:
            message = f"column '{column}': {reason}"
        else:
            message = f"column '{column}', row {row}: {reason}"
        super().__init__(message)

    def __reduce__(self):  # the fields survive pickling (a worker process sends errors back)
        return type(self), (self.reason, self.column, self.row, self.value)


def shown_value(value: Any) -> str:
    """`repr(value)` (of the Python value for a numpy scalar), cut to SHOWN_VALUE_CHARS characters."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= SHOWN_VALUE_CHARS else f"{text[: SHOWN_VALUE_CHARS - 3]}..."


class GenreFeatureExtractor(FeatureExtractionMixin):
    r"""
    Args:
        numeric_encoding (`str`): `"log-standard"` (the paper: clip, log-transform the skewed
            features, standardise), `"quantile-normal"` (map each numeric feature through its
            training quantiles onto a standard normal, then standardise), or
            `"quantile-normal+log-standard"` (both views of each numeric feature side by side).
        log_features (`dict[str, float]`): features to log-transform and the offset added first.
        clip_quantiles (`tuple[float, float]`): training quantiles that bound each numeric feature.
        n_quantiles (`int`): quantiles kept per feature for `"quantile-normal"`.
        feature_names (`list[str]`, *optional*): the raw columns read, as a saved extractor records them; they must
            be `FEATURE_NAMES`, the only columns this extractor encodes.
    """

    model_input_names = ["input_features"]
    # The names the `key` and `mode` columns take (besides flats, Spotify's numbers and missing markers), for a
    # caller that offers them as choices; class attributes, so not saved in preprocessor_config.json.
    key_names = KEY_NAMES
    mode_names = MODE_NAMES
    # The error a refused raw value raises, for a caller that loaded this code remotely and cannot import it by name.
    raw_input_error = RawInputError

    def __init__(
        self,
        numeric_encoding: str = PAPER_ENCODING,
        log_features: dict[str, float] | None = None,
        clip_quantiles: Sequence[float] = (0.005, 0.995),
        n_quantiles: int = 256,
        medians: dict[str, float] | None = None,
        key_fill: str | None = None,
        mode_fill: str | None = None,
        clip_low: dict[str, float] | None = None,
        clip_high: dict[str, float] | None = None,
        quantiles: dict[str, list[float]] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        feature_names: Sequence[str] | None = None,
        **kwargs,
    ):
        if numeric_encoding not in ENCODINGS:
            raise ValueError(f"numeric_encoding must be one of {ENCODINGS}, got {numeric_encoding!r}")
        if feature_names is not None:
            given = list(feature_names) if isinstance(feature_names, (list, tuple)) else None
            if given != list(FEATURE_NAMES):
                shown = repr(given) if given is not None else shown_value(feature_names)
                raise ValueError(
                    f"this feature extractor encodes the columns {list(FEATURE_NAMES)}, in that order; it was given "
                    f"feature_names {shown}"
                )
        super().__init__(**kwargs)
        self.feature_names = list(FEATURE_NAMES)
        self.numeric_encoding = numeric_encoding
        self.log_features = dict(DEFAULT_LOG_FEATURES if log_features is None else log_features)
        self.clip_quantiles = list(clip_quantiles)
        self.n_quantiles = n_quantiles
        self.medians = medians
        self.key_fill = key_fill
        self.mode_fill = mode_fill
        self.clip_low = clip_low
        self.clip_high = clip_high
        self.quantiles = quantiles
        self.mean = mean
        self.std = std

    @property
    def is_fitted(self) -> bool:
        return self.mean is not None

    @property
    def numeric_views(self) -> tuple[str, ...]:
        """The encodings each numeric feature gets, in column order."""
        return numeric_views(self.numeric_encoding)

    @property
    def encoded_size(self) -> int:
        """Width of `input_features`: every view of the numeric features, the one-hot key, then mode."""
        return encoded_size(self.numeric_encoding)

    @property
    def column_features(self) -> tuple[str, ...]:
        """The raw feature behind each column of `input_features`, in column order."""
        numeric = tuple(name for _ in self.numeric_views for name in NUMERIC_FEATURES)
        return (*numeric, *(["key"] * len(KEY_NAMES)), "mode")

    def reference_row(self) -> dict[str, Any]:
        """The typical training row: the training median of every numeric feature, the most frequent key and mode."""
        if not self.is_fitted:
            raise ValueError("This GenreFeatureExtractor is not fitted yet: call .fit(training_rows) first.")
        return {**self.medians, "key": self.key_fill, "mode": self.mode_fill}

    def fit(self, rows: Any) -> "GenreFeatureExtractor":
        """Learn every statistic from raw training rows; returns self."""
        numeric, key, mode = parse_rows(rows)
        self.medians = {name: _nan_stat(np.nanmedian, numeric[:, j]) for j, name in enumerate(NUMERIC_FEATURES)}
        self.key_fill = KEY_NAMES[_most_frequent(key, len(KEY_NAMES))]
        self.mode_fill = MODE_NAMES[_most_frequent(mode, len(MODE_NAMES))]
        numeric = self._impute(numeric)
        low, high = np.quantile(numeric, self.clip_quantiles, axis=0)
        self.clip_low = dict(zip(NUMERIC_FEATURES, low.tolist()))
        self.clip_high = dict(zip(NUMERIC_FEATURES, high.tolist()))
        if "quantile-normal" in self.numeric_views:
            levels = np.linspace(0.0, 1.0, self.n_quantiles)
            values = np.quantile(numeric, levels, axis=0)
            self.quantiles = {name: values[:, j].tolist() for j, name in enumerate(NUMERIC_FEATURES)}
        transformed = self._transform_numeric(numeric)
        self.mean = transformed.mean(axis=0).tolist()
        self.std = np.where(transformed.std(axis=0) > 0, transformed.std(axis=0), 1.0).tolist()
        return self

    def __call__(self, rows: Any, return_tensors: str | None = None, row_offset: int = 0, **kwargs) -> BatchFeature:
        """Encode raw rows into `input_features` of shape (rows, input_size), float32.

        `row_offset` is added to the row numbers of errors (the pipeline encodes a large table in chunks).
        """
        if not self.is_fitted:
            raise ValueError("This GenreFeatureExtractor is not fitted yet: call .fit(training_rows) first.")
        numeric, key, mode = parse_rows(rows, row_offset)
        numeric = self._transform_numeric(self._impute(numeric))
        numeric = (numeric - np.asarray(self.mean)) / np.asarray(self.std)
        key = np.where(key < 0, KEY_NAMES.index(self.key_fill), key)
        mode = np.where(mode < 0, MODE_NAMES.index(self.mode_fill), mode)
        features = np.zeros((len(numeric), self.encoded_size), dtype=np.float32)
        n_numeric = numeric.shape[1]
        features[:, :n_numeric] = numeric
        features[np.arange(len(key)), n_numeric + key] = 1.0
        features[:, -1] = mode
        return BatchFeature({"input_features": features}, tensor_type=return_tensors)

    def _impute(self, numeric: np.ndarray) -> np.ndarray:
        fill = np.asarray([self.medians[name] for name in NUMERIC_FEATURES])
        return np.where(np.isnan(numeric), fill, numeric)

    def _transform_numeric(self, numeric: np.ndarray) -> np.ndarray:
        """Clip to the training bounds, then quantile-map and/or log-transform (before scaling), one block per view."""
        low = np.asarray([self.clip_low[name] for name in NUMERIC_FEATURES])
        high = np.asarray([self.clip_high[name] for name in NUMERIC_FEATURES])
        numeric = np.clip(numeric, low, high)
        views = []
        for view in self.numeric_views:
            if view == "quantile-normal":
                quantiles = [self.quantiles[name] for name in NUMERIC_FEATURES]
                views.append(np.stack([_quantile_normal(numeric[:, j], q) for j, q in enumerate(quantiles)], axis=1))
            else:
                logged = numeric.copy()
                for name, offset in self.log_features.items():
                    j = NUMERIC_FEATURES.index(name)
                    logged[:, j] = np.log(logged[:, j] + offset)
                views.append(logged)
        return views[0] if len(views) == 1 else np.concatenate(views, axis=1)


def parse_rows(rows: Any, row_offset: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate raw rows; returns numeric values (NaN where missing), key and mode indices (-1 where missing)."""
    columns, n_rows = _columns(rows)
    numeric = np.empty((n_rows, len(NUMERIC_FEATURES)), dtype=np.float64)
    for j, name in enumerate(NUMERIC_FEATURES):
        numeric[:, j] = _parse_numeric(name, _cells(columns[name], n_rows), row_offset)
    key = _parse_category("key", _cells(columns["key"], n_rows), KEY_NAMES, FLAT_KEYS, row_offset, MISSING_KEYS)
    mode = _parse_category("mode", _cells(columns["mode"], n_rows), MODE_NAMES, {}, row_offset)
    return numeric, key, mode


def _columns(rows: Any) -> tuple[dict[str, Any], int]:
    if isinstance(rows, Mapping):
        rows = [rows]
    if hasattr(rows, "columns") and hasattr(rows, "__getitem__"):  # a pandas DataFrame, without importing pandas
        names = list(rows.columns)
        missing = [name for name in FEATURE_NAMES if name not in names]
        if missing:
            raise RawInputError(
                f"missing column(s): {', '.join(missing)}; expected the 13 features {list(FEATURE_NAMES)}"
            )
        for name in FEATURE_NAMES:
            if names.count(name) > 1:
                raise RawInputError(f"the column appears {names.count(name)} times; keep one", column=name)
        n_rows = len(rows)
        columns = {name: rows[name].to_numpy() for name in FEATURE_NAMES}
    elif isinstance(rows, Sequence) and not isinstance(rows, (str, bytes)):
        for i, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RawInputError(f"row {i} is a {type(row).__name__}, expected a mapping of column name to value")
            missing = [name for name in FEATURE_NAMES if name not in row]
            if missing:
                raise RawInputError(f"row {i}: missing column(s): {', '.join(missing)}")
        n_rows = len(rows)
        columns = {name: [row[name] for row in rows] for name in FEATURE_NAMES}
    else:
        raise RawInputError(f"expected a dict, a list of dicts or a DataFrame of raw rows, got {type(rows).__name__}")
    if n_rows == 0:
        raise RawInputError("no rows to encode")
    return columns, n_rows


def _cells(values: Any, n_rows: int) -> np.ndarray:
    """A column as a 1-D array of one cell per row; a cell holding a list stays one (refused) object."""
    if isinstance(values, np.ndarray) and values.ndim == 1:
        return values
    return np.fromiter(values, dtype=object, count=n_rows)


def _is_missing(value: Any) -> bool:
    if value is None or type(value).__name__ in MISSING_TYPES:
        return True
    if isinstance(value, (float, np.floating)) and math.isnan(value):
        return True
    if isinstance(value, (np.datetime64, np.timedelta64)) and np.isnat(value):
        return True
    return isinstance(value, str) and value.strip().lower() in MISSING_MARKERS


def _not_a_number(name: str, row: int, value: Any, row_offset: int) -> RawInputError:
    reason = f"{shown_value(value)} is not a number"
    if isinstance(value, (Sequence, Mapping, set, np.ndarray)) and not isinstance(value, str):
        reason += "; a row holds one value per column (many rows go in a list of dicts or a DataFrame)"
    return RawInputError(reason, column=name, row=row + row_offset, value=value)


def _parse_numeric(name: str, values: np.ndarray, row_offset: int = 0) -> np.ndarray:
    if values.dtype.kind in "iuf":
        parsed = values.astype(np.float64)
    else:
        parsed = None
        # numpy converts these in bulk without complaint (a date to its day count); cell by cell refuses them.
        if values.dtype.kind in "OUS" and not any(issubclass(t, NOT_NUMBERS) for t in set(map(type, values))):
            try:
                parsed = values.astype(np.float64)
            except (TypeError, ValueError, OverflowError):
                # Most often text with missing markers (`?`): mark those in bulk, convert the rest in bulk.
                try:
                    missing = np.isin(np.strings.lower(np.strings.strip(values.astype(str))), list(MISSING_MARKERS))
                    parsed = np.full(len(values), np.nan)
                    parsed[~missing] = values[~missing].astype(np.float64)
                except (TypeError, ValueError, OverflowError):
                    parsed = None
        if parsed is None:  # cell by cell, to name the one that is wrong
            parsed = np.empty(len(values), dtype=np.float64)
            for i, value in enumerate(values):
                parsed[i] = _parse_number(name, i, value, row_offset)
    if np.isinf(parsed).any():
        i = int(np.flatnonzero(np.isinf(parsed))[0])
        value = values[i].item() if isinstance(values[i], np.generic) else values[i]
        raise RawInputError(
            f"{shown_value(value)} is not a finite number", column=name, row=i + row_offset, value=value
        )
    if name == "duration_ms":
        parsed = np.where(parsed == -1, np.nan, parsed)
    return parsed


def _parse_number(name: str, i: int, value: Any, row_offset: int) -> float:
    """One cell that numpy could not convert in bulk: a missing marker, a number, or an error naming it."""
    if _is_missing(value):
        return math.nan
    if isinstance(value, NOT_NUMBERS) or not isinstance(value, (str, int, float, np.number)):
        raise _not_a_number(name, i, value, row_offset)
    try:
        return float(value)
    except OverflowError:  # an int beyond float's range
        raise RawInputError(
            f"{shown_value(value)} is not a finite number", column=name, row=i + row_offset, value=value
        ) from None
    except (TypeError, ValueError):
        raise _not_a_number(name, i, value, row_offset) from None


def _parse_category(
    name: str,
    values: np.ndarray,
    names: tuple[str, ...],
    aliases: dict[str, str],
    row_offset: int = 0,
    missing: frozenset[str] = frozenset(),
) -> np.ndarray:
    """Codes 0..len(names)-1 by name (any case) or by number, -1 where missing."""
    lookup = {label.lower(): i for i, label in enumerate(names)}
    lookup.update({alias.lower(): names.index(target) for alias, target in aliases.items()})
    lookup.update({str(i): i for i in range(len(names))})
    lookup.update({f"{i}.0": i for i in range(len(names))})
    lookup.update(dict.fromkeys(missing, -1))
    # Each distinct value is resolved once, so a column of 100,000 rows costs a handful of lookups.
    text = values.astype(str) if values.dtype.kind != "O" else np.asarray([str(v) for v in values], dtype=str)
    distinct, inverse = np.unique(text, return_inverse=True)
    codes = np.empty(len(distinct), dtype=np.int64)
    for u, label in enumerate(distinct):
        label = label.strip().lower()
        first = int(np.flatnonzero(inverse == u)[0]) if label not in lookup else -1
        if label in MISSING_MARKERS:
            codes[u] = -1
        elif label in lookup:
            codes[u] = lookup[label]
        elif _is_missing(values[first]):
            codes[u] = -1
        else:
            value = values[first].item() if isinstance(values[first], np.generic) else values[first]
            raise RawInputError(
                f"unknown {name} {shown_value(value)}; expected one of {', '.join(names)}",
                column=name,
                row=first + row_offset,
                value=value,
            )
    return codes[inverse.reshape(-1)]


def _most_frequent(codes: np.ndarray, n: int) -> int:
    return int(np.bincount(codes[codes >= 0], minlength=n).argmax())


def _nan_stat(stat, values: np.ndarray) -> float:
    if np.isnan(values).all():
        raise ValueError("cannot fit on a column with no values")
    return float(stat(values))


def _quantile_normal(values: np.ndarray, quantiles: list[float]) -> np.ndarray:
    """Map values through training quantiles onto a standard normal (ties averaged, as scikit-learn does)."""
    q = np.asarray(quantiles)
    z = _normal_levels(len(q))
    up = np.interp(values, q, z)
    if np.all(q[1:] > q[:-1]):  # no ties: interpolating from above gives the same values
        return up
    down = -np.interp(-values, -q[::-1], -z[::-1])
    return 0.5 * (up + down)


@lru_cache(maxsize=8)
def _normal_levels(n: int) -> np.ndarray:
    """Standard normal quantiles of n evenly spaced levels (the ends pulled in to stay finite)."""
    levels = np.clip(np.linspace(0.0, 1.0, n), 1e-7, 1 - 1e-7)
    return np.asarray([NormalDist().inv_cdf(level) for level in levels])
