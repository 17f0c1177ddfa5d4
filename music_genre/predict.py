"""`music-genre predict`: its arguments (`add_predict_arguments`) and handler (`run_predict`), which the
`music-genre` command lists in its table of commands, and `PredictError`.

Cheap to import: the work (`predict_file`, music_genre/table_prediction.py) imports numpy, pyarrow, torch and
transformers when the command runs. A refused input, output or option is raised as `PredictError`, which the
`music-genre` command shows as one line with exit status 2.
"""

import argparse
from pathlib import Path

DEFAULT_CHUNK_ROWS = 16_384
DEFAULT_TOP_K = 3


class PredictError(ValueError):
    """An input, output or option `predict` refuses; the message says what is wrong and what to do."""


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="a model folder or Hub id (e.g. space/model, the bundled one)")
    parser.add_argument(
        "--data",
        required=True,
        help="the table to classify: .csv (also ; or tab separated, UTF-8/UTF-16/latin-1), .parquet or .jsonl; "
        "- reads CSV from stdin",
    )
    parser.add_argument("--output", type=Path, required=True, help="the predictions: a .csv or .parquet file")
    parser.add_argument(
        "--top-k",
        type=int,
        default=DEFAULT_TOP_K,
        help="genres given per row, with probabilities (default: %(default)s)",
    )
    parser.add_argument(
        "--coverage",
        type=float,
        help="also give each row's conformal genre set at this coverage, e.g. 0.9 (a calibrated model only)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output (and its side file)")
    parser.add_argument("--workers", type=int, default=1, help="processes that classify chunks (default: %(default)s)")
    parser.add_argument(
        "--chunk-rows",
        type=int,
        default=DEFAULT_CHUNK_ROWS,
        help="rows (lines of a text file) read and classified at a time; memory grows with it (default: %(default)s)",
    )


def run_predict(args: argparse.Namespace) -> int:
    from music_genre.table_prediction import predict_file

    summary = predict_file(
        args.model,
        args.data,
        args.output,
        top_k=args.top_k,
        coverage=args.coverage,
        chunk_rows=args.chunk_rows,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    print(f"predicted {summary.rows_out:,} of {summary.rows_in:,} rows into {summary.output}")
    if summary.rows_rejected:
        print(
            f"{summary.rows_rejected:,} row(s) could not be classified; their row and line numbers and reasons are in "
            f"{summary.rejected_path} (first: {summary.first_rejection})"
        )
    return 0
