"""`classify_spark`: classify a Spark DataFrame of Spotify rows with a saved model, on every executor of a cluster.

    >>> from music_genre.spark import classify_spark
    >>> predicted = classify_spark(spark.read.parquet("s3://catalogue/tracks/"), "space/model", top_k=3)
    >>> predicted.write.parquet("s3://catalogue/genres/")

The model folder (or Hub id) is read once, on the driver: its config, safetensors weights and preprocessor config, a
few megabytes, are broadcast, and each executor's Python worker builds the pipeline from them once (cached by the
files' digest, so later batches and later jobs reuse it). `mapInPandas` hands the worker Arrow batches as pandas
DataFrames and the pipeline classifies them `batch_size` rows at a time. The output is the input's columns, then
`predicted_genre`, `probability`, `genre_2`, `probability_2`, ... up to `top_k` (as `music-genre predict` names them),
`genre_set_90` (with `coverage=0.9`: the conformal set, most probable first) and `error`: null for a classified row,
and for a row the feature extractor refuses the reason (`column 'tempo': 'fast' is not a number`) with null
predictions, so one bad row never fails the job.

The executors need this package installed (`pip install "music-genre-ffn[spark]"`), as for any library a UDF calls;
the model itself travels with the job. pyspark is imported only when `classify_spark` runs.
"""

import hashlib
import numbers
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from music_genre.modeling import FEATURE_NAMES

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame

# What the executors rebuild the model from: weights, config and the feature extractor's statistics.
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
DEFAULT_BATCH_ROWS = 10_000

# Distinct cells judged per batch when a refusal sends its column to be screened.
MAX_VERDICTS = 10_000
# The pipelines an executor's Python worker has built, by the digest of their files: built once per worker.
_PIPELINES: dict[str, Any] = {}


def classify_spark(
    df: "DataFrame",
    model: str | Path,
    *,
    top_k: int = 1,
    coverage: float | None = None,
    batch_size: int = DEFAULT_BATCH_ROWS,
) -> "DataFrame":
    """The rows of `df` with their predicted genres (see the module's docstring for the columns); lazy, as any
    DataFrame transformation: nothing runs until an action (`write`, `count`, ...).

    `df` holds the 13 feature columns under their Spotify names (strings or numbers, as the pipeline reads them);
    other columns are carried through. `model` is a model folder or a Hub model id. `top_k` genres are given per
    row; `coverage` (e.g. 0.9, a calibrated model only) adds each row's conformal genre set. `batch_size` rows are
    encoded and classified at a time on an executor.
    """
    from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

    _check_columns(df.columns)
    _check_types(df.schema)
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number of rows, 1 or more, got {batch_size!r}")
    files = _read_model_files(model)
    classifier = _pipeline_from_files(files)  # on the driver too: checks top_k and coverage before any job starts
    labels = classifier.model.config.num_labels
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or not 1 <= top_k <= labels:
        raise ValueError(f"top_k must be a whole number of genres from 1 to the model's {labels}, got {top_k!r}")
    if coverage is not None:
        classifier._sanitize_parameters(coverage=coverage)  # the pipeline's own checks and messages

    added = [StructField("predicted_genre", StringType()), StructField("probability", DoubleType())]
    for rank in range(2, top_k + 1):
        added += [StructField(f"genre_{rank}", StringType()), StructField(f"probability_{rank}", DoubleType())]
    if coverage is not None:
        added.append(StructField(set_column(coverage), ArrayType(StringType())))
    added.append(StructField("error", StringType()))
    clashes = [field.name for field in added if field.name in df.columns]
    if clashes:
        raise ValueError(
            f"the DataFrame has the column(s) {', '.join(map(repr, clashes))}, which the predictions use; "
            "rename them first"
        )

    digest = hashlib.sha256(b"".join(hashlib.sha256(files[name]).digest() for name in MODEL_FILES)).hexdigest()
    broadcast = df.sparkSession.sparkContext.broadcast(files)
    options = {"top_k": int(top_k), "coverage": coverage, "batch_size": int(batch_size)}

    def classify_partition(frames: Iterator["pd.DataFrame"]) -> Iterator["pd.DataFrame"]:
        # Only this closure travels to the executors: the digest, the broadcast's handle and the options.
        return classify_frames(frames, digest, broadcast, **options)

    return df.mapInPandas(classify_partition, StructType([*df.schema.fields, *added]))


def set_column(coverage: float) -> str:
    """The conformal set's column at `coverage`: `genre_set_90` for 0.9, as `music-genre predict` names it."""
    return f"genre_set_{coverage * 100:g}"


def classify_frames(
    frames: Iterator["pd.DataFrame"], digest: str, files: Any, *, top_k: int, coverage: float | None, batch_size: int
) -> Iterator["pd.DataFrame"]:
    """On an executor: each frame's rows with their predictions, `batch_size` rows at a time. `files` is the
    broadcast of the model's files (or the files themselves), read only the first time this worker meets `digest`."""
    import pandas as pd

    if digest not in _PIPELINES:
        _PIPELINES[digest] = _pipeline_from_files(files.value if hasattr(files, "value") else files)
    classifier = _PIPELINES[digest]
    for frame in frames:
        for start in range(0, len(frame), batch_size):
            batch = frame.iloc[start : start + batch_size].reset_index(drop=True)
            predicted = classify_batch(classifier, batch[list(FEATURE_NAMES)], top_k=top_k, coverage=coverage)
            yield pd.concat([batch, predicted], axis=1)


def classify_batch(classifier: Any, rows: "pd.DataFrame", *, top_k: int, coverage: float | None) -> "pd.DataFrame":
    """The prediction columns for `rows`, one row each; a row the feature extractor refuses gets its reason in
    `error` and nulls elsewhere, the others exactly the pipeline's results."""
    import pandas as pd

    ranked, errors = _classify_rows(classifier, rows, top_k)
    good = [i for i, row in enumerate(ranked) if row is not None]
    columns: dict[str, list] = {}
    for rank in range(top_k):
        genre, probability = (
            ("predicted_genre", "probability") if rank == 0 else (f"genre_{rank + 1}", f"probability_{rank + 1}")
        )
        columns[genre] = [None if row is None else row[rank]["label"] for row in ranked]
        columns[probability] = [None if row is None else row[rank]["score"] for row in ranked]
    if coverage is not None:
        sets: list = [None] * len(rows)
        if good:
            for i, genres in zip(good, classifier(rows.iloc[good], coverage=coverage)):
                sets[i] = [genre["label"] for genre in genres]
        columns[set_column(coverage)] = sets
    columns["error"] = errors
    return pd.DataFrame(columns).astype({name: "float64" for name in columns if name.startswith("probability")})


def _classify_rows(classifier: Any, rows: "pd.DataFrame", top_k: int) -> tuple[list, list]:
    """The pipeline's top genres of each row, or None and the reason for each row it refuses.

    A refusal names one cell. The cells of its column that the extractor would refuse are then found at once
    (`_refused_cells`), set aside with their reasons, and the rest retried; whatever a screen misses is caught by
    the next refusal, and a group refused again for a single row is halved, so even a batch of many different bad
    rows costs O(n log n) rows classified rather than a call per row on the whole batch."""
    refused = _raw_input_error(classifier)
    ranked: list = [None] * len(rows)
    errors: list = [None] * len(rows)
    verdicts: dict = {}  # the extractor's reason for a (column, type, value), or None: each is judged once
    pending = [(np.arange(len(rows)), False)]
    while pending:
        positions, halve = pending.pop()
        if len(positions) == 0:
            continue
        try:
            results = classifier(rows.iloc[positions], top_k=top_k)
        except refused as error:
            if error.row is None or len(positions) == 1:
                if len(positions) == 1:
                    errors[positions[0]] = _reason(error)
                    continue
                found = {}  # a refusal of the whole group names no row: find the rows by halving
            else:
                values = rows[error.column].to_numpy()[positions]
                found = _refused_cells(classifier.feature_extractor, refused, error.column, values, verdicts)
                found[int(error.row)] = _reason(error)
            for index, reason in found.items():
                errors[positions[index]] = reason
            rest = np.delete(positions, list(found))
            if not found or (halve and len(found) == 1):
                middle = len(rest) // 2
                pending += [(rest[:middle], False), (rest[middle:], False)]
            else:
                pending.append((rest, True))
            continue
        for position, result in zip(positions, results):
            ranked[position] = result
    return ranked, errors


def _refused_cells(extractor: Any, refused: type[Exception], column: str, values: np.ndarray, verdicts: dict) -> dict:
    """{index: reason} of the cells of `column` the extractor refuses, each judged in the extractor's typical row.

    A missing value, or a number pandas reads as finite, is taken as fine without asking (a miss only costs a
    retry); a key or mode, and anything else, is judged once per distinct value."""
    import pandas as pd

    cells = pd.Series(values, dtype=object)
    suspect = ~cells.isna().to_numpy()
    if column not in ("key", "mode"):
        try:
            suspect &= ~np.isfinite(pd.to_numeric(cells, errors="coerce").to_numpy(dtype=float))
        except (TypeError, ValueError):
            pass
    suspects = np.flatnonzero(suspect)
    reference = extractor.reference_row()
    found = {}
    for index in suspects:
        value = values[index]
        try:
            key = (column, type(value), value)
            reason = verdicts.get(key, ...)
        except TypeError:  # unhashable: a list or a dict
            key, reason = None, ...
        if reason is ...:
            try:
                extractor({**reference, column: value})
                reason = None
            except refused as error:
                reason = _reason(error)
            if key is not None and len(verdicts) < MAX_VERDICTS:
                verdicts[key] = reason
        if reason is not None:
            found[int(index)] = reason
    return found


def _reason(error: Any) -> str:
    """The extractor's message for one row, without its row number (which counts within a batch)."""
    if getattr(error, "column", None) is None:
        return str(getattr(error, "reason", error))
    return f"column '{error.column}': {error.reason}"


def _raw_input_error(classifier: Any) -> type[Exception]:
    return getattr(classifier.feature_extractor, "raw_input_error", ValueError)


def _check_columns(columns: list[str]) -> None:
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise ValueError(
            f"the DataFrame has the column(s) {', '.join(map(repr, duplicated))} more than once; keep one of each"
        )
    missing = [name for name in FEATURE_NAMES if name not in columns]
    if missing:
        raise ValueError(
            f"the DataFrame lacks the feature column(s) {', '.join(missing)}; the model reads "
            f"{', '.join(FEATURE_NAMES)} (Spotify's names, case as written)"
        )


def _check_types(schema: Any) -> None:
    """Refuse a feature column no row of which could be read: a feature is a number or text (a date, a boolean or
    an array would be refused row by row, at the cost of a job)."""
    from pyspark.sql.types import NullType, NumericType, StringType

    readable = (NumericType, StringType, NullType)
    wrong = [
        f"{field.name} ({field.dataType.simpleString()})"
        for field in schema.fields
        if field.name in FEATURE_NAMES and not isinstance(field.dataType, readable)
    ]
    if wrong:
        raise ValueError(
            f"feature column(s) of a type the model cannot read: {', '.join(wrong)}; a feature is a "
            "number or text (key: a pitch name or 0-11, mode: Major/Minor or 1/0); cast them first"
        )


def _read_model_files(model: str | Path) -> dict[str, bytes]:
    """The bytes of the model's files, from a folder or downloaded from the Hub."""
    folder = Path(model)
    if folder.is_dir():
        missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
        if missing:
            raise ValueError(f"{folder} is not a saved model folder: it lacks {', '.join(missing)}")
        return {name: (folder / name).read_bytes() for name in MODEL_FILES}
    from huggingface_hub import hf_hub_download

    return {name: Path(hf_hub_download(str(model), name)).read_bytes() for name in MODEL_FILES}


def _pipeline_from_files(files: dict[str, bytes]) -> Any:
    """The model's pipeline built from its files' bytes, as `pipeline(model=folder)` builds it from the folder."""
    from transformers import pipeline

    from music_genre.modeling import TASK, GenreFeatureExtractor, GenreFFNForSequenceClassification

    with tempfile.TemporaryDirectory(prefix="music-genre-model-") as folder:
        for name, content in files.items():
            (Path(folder) / name).write_bytes(content)
        model = GenreFFNForSequenceClassification.from_pretrained(folder).eval()
        extractor = GenreFeatureExtractor.from_pretrained(folder)
    return pipeline(task=TASK, model=model, feature_extractor=extractor)
