"""`predict_file`, the work of `music-genre predict`: classify a table of any size with a saved model, in chunks.

The input (CSV, Parquet or JSON Lines; `-` is CSV on stdin; a `datasets` folder, a folder of data files or a Hub
dataset id, every split) is read a chunk of rows at a time, so memory stays constant whatever its size; each chunk
is screened, encoded and classified by the model's own feature extractor and network (loaded as a Hub user loads
it, `pipeline(model=..., trust_remote_code=True)`), and the results are written in input order to a temporary file
beside the output, renamed over it at the end: a failure or Ctrl-C leaves nothing. With `workers > 1` the chunks go
round-robin to worker processes (the main process only splits the input's bytes at record boundaries and writes),
and the output is the same, row for row, as with one.

Rows the model cannot classify (a bad value, a row wider than the header, bytes that are not the file's encoding, a
huge cell, a row with no feature values) go to a side file, `OUTPUT_STEM.rejected.csv`, with their row and line
numbers and the reason; every other row is predicted, and rows in = rows predicted + rows refused. The output holds
`row` (1 = the input's first data row), the input's other columns as written, `predicted_genre`, `probability`,
`genre_K`/`probability_K` up to the top k and, with a coverage, `genre_set_NN` (a JSON list in CSV, a list in
Parquet). The hostile-input rules are the Space's (space/app.py, which stays standalone): `text_encoding`,
`csv_separator` and `neutralise_formulas` are their public versions here.
"""

import codecs
import csv
import io
import itertools
import json
import math
import os
import re
import sys
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from music_genre.predict import DEFAULT_CHUNK_ROWS, DEFAULT_TOP_K, PredictError

# Bytes read from the input at a time.
READ_BLOCK_BYTES = 4 * 2**20
# The bytes whose encoding is sniffed (as the Space does).
HEAD_BYTES = 64 * 1024
# A chunk ends after chunk_rows lines or at the last record boundary within this many bytes, whichever comes first,
# so memory stays bounded whatever the lines' length; one record longer than this (an unclosed quote?) is refused.
MAX_CHUNK_BYTES = 64 * 2**20
# A feature holds a number or a short name: a longer cell is refused before it is parsed (a text array of a chunk is
# as wide as its longest cell).
MAX_FEATURE_CHARS = 256
# Values echoed in the side file are cut to this many characters (a cell may be megabytes long).
SHOWN_CHARS = 60
# Distinct key and mode values (and bad numeric values) checked by the extractor, remembered per worker process.
MAX_REMEMBERED_VALUES = 10_000
# A spreadsheet runs a text cell starting with one of these as a formula (OWASP, "CSV Injection"), as in the Space.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?"
# Missing-value markers of the feature extractor (any case, surrounding spaces ignored).
# The features read as names (any case) or codes; the others are numbers.
CATEGORIES = ("key", "mode")
MISSING_MARKERS = ("", "?", "nan", "none", "null", "na", "n/a", "<na>", "nat")
REJECTED_COLUMNS = ["row", "line", "column", "value", "reason"]
FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
OUTPUT_FORMATS = {".csv": "csv", ".parquet": "parquet"}
# What the fork server imports once for every worker (see `_Classifier`): torch, the pipeline's transformers modules,
# pandas and this module make up most of a worker's memory.
WORKER_PRELOAD = ["torch", "pandas", "transformers.pipelines", "music_genre.table_prediction"]


@dataclass
class PredictionSummary:
    """What `predict_file` did: rows read, predicted and rejected, and where they went."""

    output: Path
    rows_in: int
    rows_out: int
    rows_rejected: int
    rejected_path: Path | None
    first_rejection: str | None = None


# The hostile-input rules of the Space, public here


def text_encoding(head: bytes) -> str:
    """The encoding of a text file from its first bytes: a byte-order mark, UTF-16 without one, UTF-8, else latin-1
    (spreadsheet exports are often not UTF-8, and latin-1 decodes any byte). Binary data is refused."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        # ASCII text in UTF-16 has a zero byte in every pair: the second for little-endian, the first for big.
        if odd.count(0) > 0.9 * len(odd) and not even.count(0):
            return "utf-16-le"
        if even.count(0) > 0.9 * len(even) and not odd.count(0):
            return "utf-16-be"
        raise PredictError("the input holds binary data, not text: give a CSV, Parquet or JSON Lines file")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A character cut by the end of the head is still UTF-8.
        if error.start < len(head) - 3 or error.reason != "unexpected end of data":
            return "latin-1"
    return "utf-8"


def csv_separator(header_line: str) -> str:
    """Comma, semicolon or tab, whichever the header line uses (spreadsheets export all three)."""
    try:
        return csv.Sniffer().sniff(header_line, delimiters=",;\t").delimiter
    except csv.Error:
        return ","


def neutralise_formulas(values: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Text cells a spreadsheet would run as a formula (starting with = + - @ tab or CR, spaces ignored, plain numbers
    excepted), prefixed with `'` so they are shown as text (OWASP); the Space's rule, on a whole column at once."""
    starts = pc.match_substring_regex(
        pc.utf8_ltrim(values, characters=" "), "^[" + re.escape("".join(FORMULA_STARTS)) + "]"
    )
    number = pc.match_substring_regex(pc.utf8_trim_whitespace(values), f"^{PLAIN_NUMBER}$")
    formula = pc.and_(starts, pc.invert(number))
    if not pc.any(formula).as_py():
        return values
    return pc.if_else(formula, pc.binary_join_element_wise("'", values, ""), values)


def shown(value: Any) -> str:
    """A cell as text for the side file, cut to SHOWN_CHARS characters."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, default=str)
        if isinstance(value, (list, dict))
        else str(value)
    )
    return text if len(text) <= SHOWN_CHARS else f"{text[: SHOWN_CHARS - 3]}..."


# The public function


def predict_file(
    model: str | os.PathLike,
    data: str | os.PathLike | IO[bytes],
    output: str | os.PathLike,
    *,
    top_k: int = DEFAULT_TOP_K,
    coverage: float | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    workers: int = 1,
    overwrite: bool = False,
    progress: bool | None = None,
) -> PredictionSummary:
    """Classify every row of `data` with `model` into `output` (.csv or .parquet); see the module's docstring.

    `data` is a path (.csv, .tsv, .parquet, .jsonl), `-` (CSV on stdin) or a binary stream of CSV. `progress` shows
    a bar on stderr (default: when stderr is a terminal). Raises `PredictError` for an input, output or option it
    refuses; rows it cannot classify are counted and written to the side file instead.
    """
    output = Path(output)
    _check_options(top_k, coverage, chunk_rows, workers)
    output_format = OUTPUT_FORMATS.get(output.suffix.lower())
    if output_format is None:
        raise PredictError(f"--output must end in .csv or .parquet, got {output.name!r}")
    rejected_path = output.with_name(f"{output.stem}.rejected.csv")
    for path in (output, rejected_path):
        if path.exists() and not overwrite:
            raise PredictError(f"{path} exists; give --overwrite to replace it")
    if not output.parent.is_dir():
        raise PredictError(f"the output's folder {output.parent} does not exist")
    show = sys.stderr.isatty() if progress is None else progress
    temporary, source = [], None
    try:
        with _Classifier(str(model), workers) as classifier:
            # The model first: it says which columns are features (its config's `feature_names`).
            features, checked = classifier.check_model(top_k, coverage)
            source = _open_source(data, chunk_rows, features)
            counts = _predict_source(
                source,
                classifier,
                output,
                rejected_path,
                temporary,
                show,
                job=_Job(
                    model=str(model),
                    top_k=top_k,
                    coverage=coverage,
                    source=source.format,
                    header=source.header,
                    delimiter=source.delimiter,
                    carried=source.carried,
                    text_sets=output_format == "csv",
                    features=features,
                    checked=checked,
                ),
            )
    finally:
        if source is not None:
            source.close()
        for path in temporary:
            path.unlink(missing_ok=True)
    return PredictionSummary(
        output=output,
        rows_in=counts.records,
        rows_out=counts.predicted,
        rows_rejected=counts.rejected,
        rejected_path=rejected_path if counts.rejected else None,
        first_rejection=counts.first_rejection,
    )


def _predict_source(source: "_Source", classifier: "_Classifier", output: Path, rejected_path: Path,
                    temporary: list[Path], show: bool, job: "_Job") -> "_Counts":  # fmt: skip
    """Write the predictions and the side file to temporary files beside them (listed in `temporary` until renamed)."""
    schema = _output_schema(job, source.carried_types)
    output_format = OUTPUT_FORMATS[output.suffix.lower()]
    out_handle = _temporary_beside(output)
    temporary.append(Path(out_handle.name))
    rejected_handle = _temporary_beside(rejected_path)
    temporary.append(Path(rejected_handle.name))
    with out_handle, rejected_handle:
        counts = _write_all(source, classifier, job, schema, output_format, out_handle, rejected_handle, show)
    os.replace(temporary[0], output)
    temporary.pop(0)
    if counts.rejected:
        os.replace(temporary[0], rejected_path)
    else:
        os.unlink(temporary[0])
        rejected_path.unlink(missing_ok=True)  # a side file of an earlier run (only with --overwrite)
    temporary.clear()
    return counts


def _check_options(top_k: Any, coverage: Any, chunk_rows: Any, workers: Any) -> None:
    for name, value in (("--top-k", top_k), ("--chunk-rows", chunk_rows), ("--workers", workers)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PredictError(f"{name} must be a whole number, 1 or more; got {value!r}")
    if coverage is not None and (
        isinstance(coverage, bool) or not isinstance(coverage, float | int) or not 0 < coverage < 1
    ):
        raise PredictError(f"--coverage must be a fraction between 0 and 1 (e.g. 0.9), got {coverage!r}")


def _temporary_beside(path: Path) -> IO[bytes]:
    """A new file in `path`'s folder (so that os.replace is a rename on one file system), hidden by its name."""
    return tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False)


# Reading the input: chunks of raw records, cut by the main process


@dataclass
class _Chunk:
    payload: Any  # the chunk's bytes (CSV, JSON Lines) or a pyarrow RecordBatch (Parquet)
    first_line: int | None  # the file's line of the chunk's first byte (1 = the header), None for Parquet
    size: int  # what the progress bar counts: bytes, or rows for Parquet


@dataclass
class _Source:
    format: str
    chunks: Iterator[_Chunk]
    header: list[str] = field(default_factory=list)
    delimiter: str = ","
    carried: list[str] = field(default_factory=list)
    carried_types: dict[str, pa.DataType] = field(default_factory=dict)
    total: int | None = None
    unit: str = "B"
    handle: IO[bytes] | None = None

    def close(self) -> None:
        if self.handle is not None and self.handle is not sys.stdin.buffer:
            self.handle.close()


def _open_source(data: str | os.PathLike | IO[bytes], chunk_rows: int, features: tuple[str, ...]) -> _Source:
    if hasattr(data, "read"):
        return _text_source(data, "csv", chunk_rows, features, total=None)
    if str(data) == "-":
        return _text_source(sys.stdin.buffer, "csv", chunk_rows, features, total=None)
    path = Path(data)
    if path.is_dir() or (not path.exists() and str(data).count("/") == 1 and not path.suffix):
        return _dataset_source(str(data), chunk_rows, features)
    if not path.is_file():
        raise PredictError(
            f"{path} does not exist (give a .csv, .parquet or .jsonl file, a `datasets` folder, a Hub dataset id, "
            "or - for stdin)"
        )
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise PredictError(
            f"{path.name}: give a .csv, .tsv, .parquet or .jsonl file (the format is read from its name)"
        )
    if kind == "parquet":
        return _parquet_source(path, chunk_rows, features)
    return _text_source(open(path, "rb"), kind, chunk_rows, features, total=path.stat().st_size)


def _dataset_source(source: str, chunk_rows: int, features: tuple[str, ...]) -> _Source:
    """A `datasets` folder (`save_to_disk`, memory-mapped) or a folder of data files or Hub dataset id (streamed),
    every split in turn; with several splits, a `split` column says which each row came from."""
    import datasets

    path = Path(source)
    try:
        if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
            loaded = datasets.load_from_disk(source)
        else:
            loaded = datasets.load_dataset(source, streaming=True)
    except (ConnectionError, OSError, ValueError, datasets.exceptions.DatasetsError) as error:
        raise PredictError(f"cannot read the dataset {source}: {' '.join(str(error).split())[:300]}") from None
    splits = dict(loaded) if isinstance(loaded, dict) else {None: loaded}
    first = next(iter(splits.values()))
    if first.features is None:
        raise PredictError(f"the dataset {source} does not declare its columns; save it as Parquet and give that")
    names = list(first.features)
    _check_header(names, f"the dataset {source}", features)
    with_split = len(splits) > 1 and "split" not in names
    streamed = isinstance(first, datasets.IterableDataset)
    carried = [name for name in names if name not in features] + (["split"] if with_split else [])
    schema = first.features.arrow_schema
    # Streamed batches are typed batch by batch: their carried columns are written as text, one type throughout.
    types = {name: pa.string() if streamed or name == "split" else schema.field(name).type for name in carried}

    def chunks() -> Iterator[_Chunk]:
        for split, dataset in splits.items():
            for batch in dataset.with_format("arrow").iter(batch_size=chunk_rows):
                table = batch if isinstance(batch, pa.Table) else pa.Table.from_pydict(batch)
                if streamed:
                    for name in carried:
                        if name in table.column_names and table.schema.field(name).type != pa.string():
                            index = table.column_names.index(name)
                            table = table.set_column(index, name, pc.cast(table.column(name), pa.string()))
                if with_split:
                    table = table.append_column("split", pa.array([split] * table.num_rows, pa.string()))
                yield _Chunk(table.combine_chunks().to_batches()[0] if table.num_rows else table, None, table.num_rows)

    total = None if streamed else sum(dataset.num_rows for dataset in splits.values())
    return _Source("parquet", chunks(), header=names, carried=carried, carried_types=types, total=total, unit="rows")


def _parquet_source(path: Path, chunk_rows: int, features: tuple[str, ...]) -> _Source:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise PredictError(f"{path.name} could not be read as Parquet: {error}") from None
    schema = parquet.schema_arrow
    names = list(schema.names)
    _check_header(names, path.name, features)
    carried = [name for name in names if name not in features]

    def chunks() -> Iterator[_Chunk]:
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            yield _Chunk(batch, None, batch.num_rows)

    types = {name: schema.field(name).type for name in carried}
    return _Source("parquet", chunks(), header=names, carried=carried, carried_types=types,
                   total=parquet.metadata.num_rows, unit="rows", handle=None)  # fmt: skip


def _text_source(
    handle: IO[bytes], kind: str, chunk_rows: int, features: tuple[str, ...], total: int | None
) -> _Source:
    head = handle.read(HEAD_BYTES)
    if not head.strip():
        raise PredictError("the input is empty")
    encoding = text_encoding(head)
    blocks = _utf8_blocks(head, handle, encoding)
    lines = _LineSplitter(blocks, quotes=kind == "csv")
    header_bytes, header_line = lines.header()
    if header_bytes is None:
        raise PredictError("the input is empty")
    text = header_bytes.decode("utf-8", "replace")
    if kind == "csv":
        delimiter = csv_separator(text.splitlines()[0] if text else "")
        names = next(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter), [])
        names = [name.strip() or f"Unnamed: {i}" for i, name in enumerate(names)]
        _check_header(names, "the header", features)
        chunks = lines.chunks(chunk_rows, first_line=header_line + header_bytes.count(b"\n"), header=None)
    else:
        delimiter = ","
        names = _jsonl_names(header_bytes, header_line, features)
        # The first record is data too: it goes back in front of the first chunk.
        chunks = lines.chunks(chunk_rows, first_line=header_line, header=header_bytes)
    carried = [name for name in names if name not in features]
    types = dict.fromkeys(carried, pa.string())  # text as written (leading zeros of ids kept)
    return _Source(kind, chunks, header=names, delimiter=delimiter, carried=carried, carried_types=types,
                   total=total, handle=handle)  # fmt: skip


def _jsonl_names(first: bytes, line: int, features: tuple[str, ...]) -> list[str]:
    try:
        record = json.loads(first)
    except ValueError as error:
        raise PredictError(f"line {line} is not JSON ({error}); a JSON Lines file holds one object per line") from None
    if not isinstance(record, dict):
        raise PredictError(f"line {line} is a JSON {type(record).__name__}, not an object of column name to value")
    names = [str(name) for name in record]
    _check_header(names, f"the first record (line {line})", features)
    return names


def _check_header(names: list[str], where: str, features: tuple[str, ...]) -> None:
    repeated = sorted({name for name in names if names.count(name) > 1}, key=names.index)
    if repeated:
        raise PredictError(f"{where} names the column(s) {', '.join(map(repr, repeated))} more than once; keep one")
    missing = [name for name in features if name not in names]
    if missing:
        raise PredictError(
            f"{where} lacks the feature column(s) {', '.join(missing)}; the model needs the {len(features)} columns "
            f"{', '.join(features)} (other columns are carried into the output)"
        )


def _utf8_blocks(head: bytes, handle: IO[bytes], encoding: str) -> Iterator[bytes]:
    """The input as UTF-8 blocks: passed through when it is UTF-8, transcoded as it streams otherwise."""
    rest = iter(lambda: handle.read(READ_BLOCK_BYTES), b"")
    if encoding == "utf-8":
        yield head
        yield from rest
        return
    if encoding == "utf-8-sig":
        yield head[len(codecs.BOM_UTF8) :]
        yield from rest
        return
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    try:
        for block in itertools.chain([head], rest):
            yield decoder.decode(block).encode("utf-8")
        yield decoder.decode(b"", final=True).encode("utf-8")
    except UnicodeDecodeError as error:
        raise PredictError(f"the input is not {encoding} text throughout ({error.reason}); save it as UTF-8") from None


class _LineSplitter:
    """Cuts a stream of UTF-8 blocks into chunks of whole records: after about `chunk_rows` lines, at a line break
    outside double quotes (an even number of quotes before it, RFC 4180), so a quoted value with line breaks stays in
    one chunk. Only counts bytes: parsing is the workers'."""

    def __init__(self, blocks: Iterator[bytes], quotes: bool):
        self.blocks = blocks
        self.quotes = quotes
        self.pending = bytearray()
        self.line = 1  # the file's line at the start of `pending`
        self.done = False

    def _read(self) -> bool:
        block = next(self.blocks, None)
        if block is None:
            self.done = True
            return False
        self.pending += block
        return True

    def _boundary(self, after_lines: int) -> int | None:
        """The end (one past the line break) of the first record boundary at or after `after_lines` lines, or None
        when `pending` holds no such boundary yet."""
        newlines = np.flatnonzero(np.frombuffer(self.pending, dtype=np.uint8) == 10)
        if len(newlines) < after_lines:
            return None
        start = int(newlines[after_lines - 1]) + 1
        if not self.quotes:
            return start
        odd = self.pending.count(b'"', 0, start) % 2
        for position in newlines[after_lines:]:
            if not odd:
                return start
            end = int(position) + 1
            odd ^= self.pending.count(b'"', start, end) % 2
            start = end
        return None if odd else start

    def _last_boundary(self, limit: int) -> int | None:
        """The end of the last record boundary within the first `limit` bytes of `pending`, or None."""
        newlines = np.flatnonzero(np.frombuffer(self.pending, dtype=np.uint8)[:limit] == 10)
        if not self.quotes:
            return int(newlines[-1]) + 1 if len(newlines) else None
        end = min(limit, len(self.pending))
        quotes = self.pending.count(b'"', 0, end)
        for position in newlines[::-1]:
            quotes -= self.pending.count(b'"', int(position) + 1, end)
            end = int(position) + 1
            if quotes % 2 == 0:
                return end
        return None

    def _too_long(self) -> PredictError:
        where = " outside double quotes: an unclosed quote?" if self.quotes else ""
        return PredictError(
            f"the record at line {self.line} is longer than {MAX_CHUNK_BYTES // 2**20} MiB (no line break{where}); "
            "predict reads records up to that size"
        )

    def header(self) -> tuple[bytes | None, int]:
        """The first non-blank record and its line."""
        while True:
            while (cut := self._boundary(1)) is None and len(self.pending) < MAX_CHUNK_BYTES and self._read():
                pass
            if cut is None and len(self.pending) >= MAX_CHUNK_BYTES:
                raise self._too_long()
            if cut is None:
                cut = len(self.pending)
                if not cut:
                    return None, self.line
            record = bytes(self.pending[:cut])
            del self.pending[:cut]
            if record.strip():
                line, self.line = self.line, self.line + record.count(b"\n")
                return record, line
            self.line += record.count(b"\n")

    def chunks(self, chunk_rows: int, first_line: int, header: bytes | None) -> Iterator[_Chunk]:
        """Chunks of about `chunk_rows` lines; `header` (a data record already taken out) goes first."""
        self.line = first_line
        if header is not None:
            self.pending[0:0] = header
        while True:
            cut = self._boundary(chunk_rows)
            if cut is None and len(self.pending) >= MAX_CHUNK_BYTES:
                cut = self._last_boundary(MAX_CHUNK_BYTES)
                if cut is None:
                    raise self._too_long()
            if cut is None:
                if self._read():
                    continue
                if not self.pending:
                    return
                if self.quotes and self.pending.count(b'"') % 2:
                    raise PredictError(
                        f"a double quote opened at line {self.line} or after is never closed: the file is not valid "
                        "CSV (a value holding the separator or a line break must be in double quotes, a quote inside "
                        'it doubled: "")'
                    )
                cut = len(self.pending)
            chunk = bytes(self.pending[:cut])
            del self.pending[:cut]
            yield _Chunk(chunk, self.line, len(chunk))
            self.line += chunk.count(b"\n")


# Classifying a chunk (in the main process or a worker)


@dataclass(frozen=True)
class _Job:
    """What every chunk is classified with; sent to the workers with each chunk."""

    model: str
    top_k: int
    coverage: float | None
    source: str
    header: list[str]
    delimiter: str
    carried: list[str]
    text_sets: bool
    features: tuple[str, ...]  # the model's raw columns (its config's feature_names)
    checked: tuple[str, ...]  # the same, in the order its extractor checks them (numbers, then key, then mode)


@dataclass
class _Rejected:
    record: int  # the record's index in its chunk (0 = the chunk's first record)
    line: int | None
    column: str
    value: Any
    reason: str


@dataclass
class _ChunkResult:
    table: pa.Table  # the predictions; its `row` column counts from 1 at the chunk's first record
    rejected: list[_Rejected]
    records: int


class _Model:
    """The pipeline of one model folder or Hub id, with what a chunk needs of it; one per process."""

    loaded: dict[str, "_Model"] = {}

    def __init__(self, model: str):
        import torch
        from transformers import pipeline

        if not Path(model).is_dir() and (os.path.isabs(model) or model.startswith(".") or model.count("/") != 1):
            raise PredictError(f"no model folder at {model} (give a folder written by train, or a Hub id OWNER/NAME)")
        try:
            self.classifier = pipeline(model=model, trust_remote_code=True)
        except (OSError, ValueError) as error:
            raise PredictError(f"the model {model!r} could not be loaded: {' '.join(str(error).split())}") from None
        self.torch = torch
        self.extractor = self.classifier.feature_extractor
        self.network = self.classifier.model.eval()
        config = self.network.config
        self.labels = np.asarray([config.id2label[i] for i in range(config.num_labels)], dtype=object)
        self.reference = self.extractor.reference_row()
        self.checked: dict[tuple[str, str, Any], str | None] = {}

    @classmethod
    def of(cls, model: str) -> "_Model":
        if model not in cls.loaded:
            cls.loaded[model] = cls(model)
        return cls.loaded[model]

    def threshold(self, coverage: float | None) -> float | None:
        if coverage is None:
            return None
        config = self.network.config
        if not hasattr(self.classifier, "genre_set_members") or not hasattr(config, "conformal_threshold"):
            raise PredictError("this model's code has no conformal genre sets; run without --coverage")
        try:
            return config.conformal_threshold(coverage)
        except ValueError as error:
            raise PredictError(f"--coverage {coverage}: {error}") from None

    def cell_problem(self, name: str, value: Any) -> str | None:
        """The extractor's reason for refusing `value` in column `name` of an otherwise typical row, or None."""
        try:
            key = (name, type(value).__name__, value)
            hash(key)
        except TypeError:
            key = None
        if key is not None and key in self.checked:
            return self.checked[key]
        try:
            self.extractor({**self.reference, name: value})
            reason = None
        except ValueError as error:
            reason = getattr(error, "reason", str(error))
        if key is not None and len(self.checked) < MAX_REMEMBERED_VALUES:
            self.checked[key] = reason
        return reason

    def probabilities(self, features: dict[str, np.ndarray]) -> "Any":
        import pandas as pd

        inputs = self.extractor(pd.DataFrame(features, copy=False), return_tensors="pt")
        with self.torch.inference_mode():
            logits = self.network(**inputs.to(self.network.device)).logits
        return logits.float().softmax(dim=-1).cpu()


def _check_model(model_id: str, top_k: int, coverage: float | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Load the model (in this process), check the options against it, and return its feature columns, as given
    and in the order its extractor checks them."""
    model = _Model.of(model_id)
    if top_k > len(model.labels):
        raise PredictError(f"--top-k {top_k} is more than the model's {len(model.labels)} genres")
    model.threshold(coverage)
    features = tuple(model.network.config.feature_names)
    numeric = tuple(name for name in features if name not in CATEGORIES)
    return features, (*numeric, *CATEGORIES)


def classify_chunk(job: _Job, chunk: _Chunk) -> _ChunkResult:
    """Parse, screen and classify one chunk: its predictions and the records it rejects, with their reasons."""
    model = _Model.of(job.model)
    if job.source == "csv":
        columns, records, rejected, lines, total = _parse_csv(job, chunk)
    elif job.source == "jsonl":
        columns, records, rejected, lines, total = _parse_jsonl(job, chunk)
    else:
        columns = {name: chunk.payload.column(name) for name in chunk.payload.schema.names}
        records, rejected, lines, total = np.arange(chunk.payload.num_rows), [], None, chunk.payload.num_rows
    # In the order the extractor checks them (numbers, then key, then mode), so a row's first bad cell is its.
    features = {name: _prepared(columns[name]) for name in job.checked}
    n = len(records)
    bad = _screen(model, features, n)
    good = np.setdiff1d(np.arange(n), np.fromiter(bad, dtype=np.int64, count=len(bad)))
    values = {name: _take_values(column, good) for name, column in features.items()}
    try:
        probabilities = model.probabilities(values) if len(good) else None
    except ValueError:  # the screen let a bad value through: every row on its own finds it
        bad.update(_row_by_row(model, features, good))
        good = np.setdiff1d(good, np.fromiter(bad, dtype=np.int64, count=len(bad)))
        values = {name: _take_values(column, good) for name, column in features.items()}
        probabilities = model.probabilities(values) if len(good) else None
    for row, (name, value, reason) in bad.items():
        rejected.append(_Rejected(int(records[row]), None, name, value, reason))
    if rejected and lines is not None:
        line_of = lines()
        for item in rejected:
            item.line = line_of.get(item.record) if line_of else None
    table = _result_table(job, model, columns, records, good, probabilities)
    return _ChunkResult(table, sorted(rejected, key=lambda item: item.record), total)


def _prepared(column: Any) -> np.ndarray | pa.Array:
    """A feature column as floats where every cell is a number (the common case, converted once), else as it is:
    text (pyarrow) or Python values (a numpy object array)."""
    if isinstance(column, np.ndarray):
        return column
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    kind = column.type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            return pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return column.fill_null("")
    return np.asarray(column.to_pylist(), dtype=object)


def _take_values(column: np.ndarray | pa.Array, rows: np.ndarray) -> np.ndarray:
    """The cells of `rows` as a numpy array the extractor reads (floats, or objects)."""
    if isinstance(column, np.ndarray):
        return column[rows]
    return column.take(pa.array(rows, type=pa.int64())).to_numpy(zero_copy_only=False)


def _screen(model: _Model, features: dict[str, Any], n: int) -> dict[int, tuple[str, Any, str]]:
    """The rows of a chunk the extractor would refuse, each with its first bad cell (in feature order) and reason.

    Each column is screened at once; only cells that are not plainly a number or missing (and every distinct key and
    mode) go to the model's extractor, one distinct value at a time, so the model decides, as in the Space.
    """
    bad: dict[int, tuple[str, Any, str]] = {}
    missing_everywhere = np.ones(n, dtype=bool)
    for name, column in features.items():
        categorical = name in CATEGORIES
        missing, suspects, too_long = _suspect_cells(column, n, categorical)
        missing_everywhere &= missing
        for row in too_long:
            if row not in bad:
                value = _cell(column, row)
                reason = (
                    f"the value is {len(value):,} characters long; a feature holds a number or a short name "
                    f"(at most {MAX_FEATURE_CHARS})"
                )
                bad[int(row)] = (name, value, reason)
        for row in suspects:
            if row in bad:
                continue
            value = _cell(column, row)
            reason = model.cell_problem(name, value)
            if reason is not None:
                bad[int(row)] = (name, value, reason)
    for row in np.flatnonzero(missing_everywhere):
        bad.setdefault(int(row), ("", "", "the row has no feature values"))
    return bad


def _cell(column: np.ndarray | pa.Array, row: int) -> Any:
    value = column[int(row)]
    return value.as_py() if isinstance(value, pa.Scalar) else value.item() if isinstance(value, np.generic) else value


def _suspect_cells(column: Any, n: int, categorical: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A column's missing cells (mask), the rows whose cells the extractor must judge, and the rows whose cells are
    too long to parse. Numbers are judged in bulk; text that is not a plain number, and every distinct category, is a
    suspect."""
    if isinstance(column, np.ndarray) and column.dtype.kind == "f":
        missing = np.isnan(column)
        if categorical:
            missing |= column == -1
            return missing, _distinct_rows(column), np.empty(0, dtype=np.int64)
        return missing, np.flatnonzero(np.isinf(column)), np.empty(0, dtype=np.int64)
    if isinstance(column, np.ndarray):  # Python values (JSON Lines, Parquet's other types)
        return _suspect_objects(column, categorical)
    too_long = pc.greater(pc.utf8_length(column), MAX_FEATURE_CHARS).to_numpy(zero_copy_only=False)
    normal = pc.utf8_lower(pc.utf8_trim_whitespace(column))
    missing = pc.is_in(normal, pa.array(MISSING_MARKERS)).to_numpy(zero_copy_only=False)
    long_rows = np.flatnonzero(too_long)
    if categorical:
        missing |= pc.is_in(normal, pa.array(["-1", "-1.0"])).to_numpy(zero_copy_only=False)
        return missing, np.setdiff1d(_distinct_rows(column), long_rows), long_rows
    import pandas as pd

    short = column if not len(long_rows) else pc.if_else(pa.array(too_long), "", column)
    numbers = pd.to_numeric(pd.Series(short.to_numpy(zero_copy_only=False), dtype=object), errors="coerce")
    numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    suspect = (np.isnan(numbers) & ~missing) | np.isinf(numbers)
    suspect[long_rows] = False
    return missing, np.flatnonzero(suspect), long_rows


def _distinct_rows(column: np.ndarray | pa.Array) -> np.ndarray:
    """The first row of each distinct value of a column."""
    import pandas as pd

    values = column if isinstance(column, np.ndarray) else column.to_numpy(zero_copy_only=False)
    _, first = np.unique(pd.factorize(values, use_na_sentinel=False)[0], return_index=True)
    return first


def _suspect_objects(values: np.ndarray, categorical: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_suspect_cells` for a column of Python values, cell by cell."""
    missing = np.zeros(len(values), dtype=bool)
    suspects, too_long, seen = [], [], {}
    for i, value in enumerate(values):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            missing[i] = True
        elif isinstance(value, str):
            if len(value) > MAX_FEATURE_CHARS:
                too_long.append(i)
                continue
            text = value.strip().lower()
            if text in MISSING_MARKERS or (categorical and text in ("-1", "-1.0")):
                missing[i] = True
            elif categorical:
                if text not in seen:
                    seen[text] = i
                    suspects.append(i)
            else:
                try:
                    if not math.isfinite(float(value)):
                        suspects.append(i)
                except ValueError:
                    suspects.append(i)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if categorical:
                missing[i] = value == -1
                if value not in seen:
                    seen[value] = i
                    suspects.append(i)
            elif not math.isfinite(float(value)) if abs(value) < 1e308 or isinstance(value, float) else True:
                suspects.append(i)
        else:
            suspects.append(i)
    return missing, np.asarray(suspects, dtype=np.int64), np.asarray(too_long, dtype=np.int64)


def _row_by_row(model: _Model, features: dict[str, Any], rows: np.ndarray) -> dict[int, tuple[str, Any, str]]:
    """Every row through the extractor on its own: the fallback when the screen missed a value it refuses."""
    bad = {}
    for row in rows:
        values = {name: _take_values(column, np.asarray([row])) for name, column in features.items()}
        try:
            model.extractor({name: cells[0] for name, cells in values.items()})
        except ValueError as error:
            name = getattr(error, "column", None) or ""
            value = getattr(error, "value", None)
            bad[int(row)] = (name, value, getattr(error, "reason", str(error)))
    return bad


def _result_table(job: _Job, model: _Model, columns: dict[str, Any], records: np.ndarray, good: np.ndarray,
                  probabilities: Any) -> pa.Table:  # fmt: skip
    """The chunk's predictions: its row numbers, carried columns, top genres and (with a coverage) genre sets."""
    rows = pa.array(records[good] + 1, type=pa.int64())
    out = {"row": rows}
    for name in job.carried:
        column = columns[name]
        out[name] = (
            pa.array(column[good], type=pa.string())
            if isinstance(column, np.ndarray)
            else column.take(pa.array(good, type=pa.int64()))
        )
    k = job.top_k
    if probabilities is None:
        scores = np.empty((0, k), dtype=np.float32)
        ids = np.empty((0, k), dtype=np.int64)
    else:
        top = probabilities.topk(k, dim=-1)
        scores, ids = top.values.numpy(), top.indices.numpy()
    for rank in range(k):
        genre, probability = (
            ("predicted_genre", "probability") if rank == 0 else (f"genre_{rank + 1}", f"probability_{rank + 1}")
        )
        out[genre] = pa.array(model.labels[ids[:, rank]], type=pa.string())
        out[probability] = pa.array(scores[:, rank], type=pa.float32())
    if job.coverage is not None:
        sets = []
        if probabilities is not None:
            ids, sizes = model.classifier.genre_set_members(probabilities, job.coverage)
            sets = [row[:size] for row, size in zip(ids.tolist(), sizes.tolist())]
        named = [[model.labels[i] for i in row] for row in sets]
        out[_set_column(job.coverage)] = (
            pa.array([json.dumps(row, ensure_ascii=False) for row in named], type=pa.string())
            if job.text_sets
            else pa.array(named, type=pa.list_(pa.string()))
        )
    return pa.table(out)


def _set_column(coverage: float) -> str:
    return f"genre_set_{coverage * 100:g}"


def _output_schema(job: _Job, carried_types: dict[str, pa.DataType]) -> pa.Schema:
    fields = [pa.field("row", pa.int64())]
    fields += [pa.field(name, carried_types[name]) for name in job.carried]
    for rank in range(job.top_k):
        genre, probability = (
            ("predicted_genre", "probability") if rank == 0 else (f"genre_{rank + 1}", f"probability_{rank + 1}")
        )
        fields += [pa.field(genre, pa.string()), pa.field(probability, pa.float32())]
    if job.coverage is not None:
        fields.append(pa.field(_set_column(job.coverage), pa.string() if job.text_sets else pa.list_(pa.string())))
    names = [f.name for f in fields]
    clashes = sorted({name for name in job.carried if names.count(name) > 1})
    if clashes:
        raise PredictError(
            f"the input has the column(s) {', '.join(map(repr, clashes))}, which predict writes; rename them"
        )
    return pa.schema(fields)


def _parse_csv(job: _Job, chunk: _Chunk) -> tuple[dict[str, pa.Array], np.ndarray, list[_Rejected], Any, int]:
    """A CSV chunk as text columns; the indices of its records that became rows; the records rejected while
    parsing (too many or too few fields, bytes that are not UTF-8); and a function giving each record's line."""
    import pyarrow.csv as pv

    data: bytes = chunk.payload
    width = len(job.header)
    invalid: list[int] = []

    def skip(row) -> str:
        invalid.append(row.number - 1)  # pyarrow numbers the chunk's records from 1, blank lines left out
        return "skip"

    def read(payload: bytes) -> pa.Table:
        return pv.read_csv(
            io.BytesIO(payload),
            read_options=pv.ReadOptions(column_names=job.header, use_threads=False, block_size=len(payload) + 1),
            parse_options=pv.ParseOptions(delimiter=job.delimiter, newlines_in_values=True, invalid_row_handler=skip),
            convert_options=pv.ConvertOptions(
                column_types=dict.fromkeys(job.header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )

    not_utf8: set[int] = set()
    try:
        table = read(data)
    except pa.ArrowInvalid:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            raise
        # Bytes that are not UTF-8 in a file whose head was: the records holding them are rejected.
        invalid.clear()
        not_utf8 = {
            index
            for index, (_, fields, text_ok) in enumerate(_csv_records(data, job.delimiter, chunk.first_line))
            if not text_ok
        }
        table = read(data.decode("utf-8", "replace").encode("utf-8"))
    n_records = table.num_rows + len(invalid)
    invalid_set = set(invalid)
    records = (
        np.asarray([i for i in range(n_records) if i not in invalid_set], dtype=np.int64)
        if invalid
        else np.arange(n_records)
    )
    rejected = []
    cached: dict[str, Any] = {}

    def record_facts() -> list[tuple[int, int, bool]]:
        if "facts" not in cached:
            facts = _csv_records(data, job.delimiter, chunk.first_line)
            cached["facts"] = facts if len(facts) == n_records else None
        return cached["facts"]

    if invalid:
        facts = record_facts()
        for index in invalid:
            fields = facts[index][1] if facts else None
            count = f"{fields} fields" if fields is not None else "a different number of fields"
            rejected.append(_Rejected(index, None, "", "", f"the row has {count}, the header {width}; a value holding "
                                      "the separator must be in double quotes"))  # fmt: skip
    keep = np.ones(len(records), dtype=bool)
    if not_utf8:
        for position, index in enumerate(records):
            if int(index) in not_utf8:
                keep[position] = False
                rejected.append(_Rejected(int(index), None, "", "", "the row holds bytes that are not UTF-8 (the "
                                          "encoding of the file's start); save the file as UTF-8"))  # fmt: skip
        table = table.filter(pa.array(keep))
        records = records[keep]

    def lines() -> dict[int, int] | None:
        facts = record_facts()
        return None if facts is None else {index: line for index, (line, _, _) in enumerate(facts)}

    columns = {name: table.column(name).combine_chunks() for name in job.header}
    return columns, records, rejected, lines, n_records


def _csv_records(data: bytes, delimiter: str, first_line: int) -> list[tuple[int, int, bool]]:
    """Each record of a CSV chunk, blank lines left out as pyarrow does: its line in the file, its number of fields,
    and whether its bytes are UTF-8."""
    text = data.decode("utf-8", "surrogateescape")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    facts, before = [], 0
    # A chunk's record may be as long as the chunk (the csv module's default limit is 128 KiB per field).
    limit = csv.field_size_limit(MAX_CHUNK_BYTES)
    try:
        for record in reader:
            if record:
                text_ok = True
                try:
                    "".join(record).encode("utf-8")
                except UnicodeEncodeError:
                    text_ok = False
                facts.append((first_line + before, len(record), text_ok))
            before = reader.line_num
    finally:
        csv.field_size_limit(limit)
    return facts


def _parse_jsonl(job: _Job, chunk: _Chunk) -> tuple[dict[str, np.ndarray], np.ndarray, list[_Rejected], Any, int]:
    """A JSON Lines chunk: one object per line; a line that is not a JSON object is rejected with the reason."""
    features = job.features
    names = list(dict.fromkeys([*features, *job.carried]))
    cells: dict[str, list] = {name: [] for name in names}
    records, rejected, line_of = [], [], {}
    index = 0
    for offset, raw in enumerate(chunk.payload.split(b"\n")):
        if not raw.strip():
            continue
        line = chunk.first_line + offset
        line_of[index] = line
        try:
            record = json.loads(raw)
        except ValueError as error:
            rejected.append(_Rejected(index, line, "", shown(raw.decode("utf-8", "replace")), f"not JSON: {error}"))
            index += 1
            continue
        if not isinstance(record, dict):
            reason = f"a JSON {type(record).__name__}, not an object of column name to value"
            rejected.append(_Rejected(index, line, "", shown(record), reason))
            index += 1
            continue
        for name in names:
            value = record.get(name)
            if name not in features and value is not None and not isinstance(value, str):
                value = json.dumps(value, ensure_ascii=False)
            cells[name].append(value)
        records.append(index)
        index += 1
    columns = {}
    for name, values in cells.items():
        column = np.empty(len(values), dtype=object)
        column[:] = values
        columns[name] = column
    return columns, np.asarray(records, dtype=np.int64), rejected, lambda: line_of, index


# Running the chunks in order, in this process or in workers


def _start_worker(caller: int) -> None:
    import torch

    from music_genre.training.workers import die_with

    die_with(caller)  # a killed `predict` leaves no worker behind (the fork server, not it, is their parent)
    torch.set_num_threads(1)  # the workers are the parallelism: one thread each (a second one only contends)


class _Classifier:
    """Classifies chunks in this process (`workers=1`) or round-robin in worker processes, in input order."""

    def __init__(self, model: str, workers: int):
        self.model = model
        self.workers = workers
        self.pool = None

    def __enter__(self) -> "_Classifier":
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # Forked from multiprocessing's fork server, which imported WORKER_PRELOAD before any thread or model
            # existed: the workers share those pages instead of each importing its own copy (a fork of this
            # process would copy threads mid-flight; a spawn would import everything once per worker).
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(WORKER_PRELOAD)
            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=context, initializer=_start_worker, initargs=(os.getpid(),)
            )
        return self

    def __exit__(self, *exc_info) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=exc_info[0] is None, cancel_futures=True)

    def check_model(self, top_k: int, coverage: float | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The model's feature columns (see `_check_model`); with workers, only they load the model."""
        if self.pool is None:
            return _check_model(self.model, top_k, coverage)
        return self.pool.submit(_check_model, self.model, top_k, coverage).result()

    def results(self, job: _Job, chunks: Iterable[_Chunk]) -> Iterator[tuple[_Chunk, _ChunkResult]]:
        if self.pool is None:
            for chunk in chunks:
                yield chunk, classify_chunk(job, chunk)
            return
        # Two chunks per worker in flight: workers never wait, and memory stays bounded.
        pending = deque()
        for chunk in chunks:
            pending.append((chunk, self.pool.submit(classify_chunk, job, chunk)))
            while len(pending) >= 2 * self.workers:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


@dataclass
class _Counts:
    records: int = 0
    predicted: int = 0
    rejected: int = 0
    first_rejection: str | None = None


def _write_all(source: _Source, classifier: _Classifier, job: _Job, schema: pa.Schema, output_format: str,
               out_handle: IO[bytes], rejected_handle: IO[bytes], show: bool) -> _Counts:  # fmt: skip
    from tqdm.auto import tqdm

    if output_format == "csv":
        import pyarrow.csv as pv

        writer = pv.CSVWriter(out_handle, schema, write_options=pv.WriteOptions(quoting_style="needed"))
    else:
        import pyarrow.parquet as pq

        writer = pq.ParquetWriter(out_handle, schema)
    rejected_text = io.TextIOWrapper(rejected_handle, encoding="utf-8", newline="")
    rejected_csv = csv.writer(rejected_text, quoting=csv.QUOTE_NONNUMERIC)
    rejected_csv.writerow(REJECTED_COLUMNS)
    counts = _Counts()
    bar = tqdm(total=source.total, unit=source.unit, unit_scale=True, desc="predict", disable=not show, file=sys.stderr)
    try:
        for chunk, result in classifier.results(job, source.chunks):
            table = result.table
            table = table.set_column(0, "row", pc.add(table.column("row"), counts.records))
            if output_format == "csv":
                table = _safe_for_spreadsheets(table)
            writer.write_table(table.cast(schema))
            for item in result.rejected:
                row = counts.records + item.record + 1
                value, reason = (
                    str(neutralise_formulas(pa.array([text]))[0]) for text in (shown(item.value), item.reason)
                )
                rejected_csv.writerow([row, "" if item.line is None else item.line, item.column, value, reason])
                if counts.first_rejection is None:
                    where = f"line {item.line}" if item.line is not None else f"row {row}"
                    column = f", column {item.column!r}" if item.column else ""
                    counts.first_rejection = f"{where}{column}: {item.reason}"
            counts.records += result.records
            counts.predicted += table.num_rows
            counts.rejected += len(result.rejected)
            bar.update(chunk.size)
    finally:
        bar.close()
        writer.close()
        rejected_text.flush()
        rejected_text.detach()
    if counts.predicted + counts.rejected != counts.records:  # every row is accounted for, or this is a bug
        raise RuntimeError(
            f"{counts.records} rows read but {counts.predicted} predicted and {counts.rejected} rejected"
        )
    return counts


def _safe_for_spreadsheets(table: pa.Table) -> pa.Table:
    for i, name in enumerate(table.column_names):
        if pa.types.is_string(table.schema.field(i).type):
            table = table.set_column(i, name, neutralise_formulas(table.column(i)))
    return table
