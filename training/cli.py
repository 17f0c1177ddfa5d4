"""The `music-genre` command: train, evaluate, eda, serve, push, bundle.

Importing this module is cheap (no torch, transformers, datasets or gradio): each command imports its stack
when it runs, so `--help` answers at once. A fault ends as one line on stderr and exit status 2; `--debug`
(or MUSIC_GENRE_DEBUG=1) shows the traceback instead.
"""

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from hub_card.cli import add_bundle_parser, add_push_parser

# As in modeling.feature_extraction_genre_ffn.ENCODINGS and RunOptions.encoding (this module imports neither, to start
# fast; tests/test_run.py checks they agree).
ENCODINGS = ("log-standard", "quantile-normal", "quantile-normal+log-standard")
DEFAULT_ENCODING = "quantile-normal+log-standard"
# As in modeling.configuration_genre_ffn.INFERENCE_DTYPES and RunOptions.inference_dtype.
INFERENCE_DTYPES = ("float32", "bfloat16")
DEFAULT_INFERENCE_DTYPE = "bfloat16"
# As in training.data.SPLIT_MODES.
SPLIT_MODES = ("stratified", "group")
FAULT_STATUS = 2
DEBUG_VARIABLE = "MUSIC_GENRE_DEBUG"
DATA_HELP = "a CSV in the Kaggle format, a dataset folder staged by push or a Hub dataset id (default: MUSIC_GENRE_CSV)"
SEED_HELP = "seed of the split, SMOTE, the initialisations and the search (default: %(default)s)"
SPLIT_HELP = "stratified by genre, or group: each (artist, track) pair on one side (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="music-genre", description=__doc__.split("\n")[0])
    debug_help = f"show the traceback of a fault (also {DEBUG_VARIABLE}=1)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    # Accepted after the command too; SUPPRESS keeps the top-level value when it is not given there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train",
        parents=[common],
        help="the reproducible run: initial model, Optuna search, tuned model",
        description="The paper's method as one run: clean, split 80/10/10, train the initial design, search, "
        "retrain the best trial, test once. One command at a time per --output folder.",
    )
    train.add_argument("--data", help=DATA_HELP)
    train.add_argument("--output", type=Path, default=Path("runs/latest"), help="the run folder (default: %(default)s)")
    train.add_argument("--seed", type=int, default=42, help=SEED_HELP)
    train.add_argument("--split", choices=SPLIT_MODES, default="stratified", help=SPLIT_HELP)
    train.add_argument(
        "--n-trials", type=int, default=30, help="trials in the study, counting finished ones (default: %(default)s)"
    )
    train.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    train.add_argument("--storage", help="an Optuna storage URL shared by workers (default: a journal in the run)")
    train.add_argument(
        "--workers", type=int, default=1, help="search processes, one torch thread each (default: %(default)s)"
    )
    train.add_argument(
        "--trial-batch",
        type=int,
        default=8,
        help="trials per synchronous batch of the search: each sees the trials of earlier batches only, so the result "
        "does not depend on --workers (a run setting, part of the study's identity)",
    )
    train.add_argument(
        "--encoding",
        choices=ENCODINGS,
        default=DEFAULT_ENCODING,
        help="numeric encoding: the paper's clip+log+standardise, quantile-normal, or both side by side (see bench/)",
    )
    train.add_argument(
        "--members", type=int, default=3, help="networks averaged in the final model (search: 1; default: %(default)s)"
    )
    train.add_argument(
        "--max-epochs", type=int, default=25, help="upper bound of the epochs the search samples (default: %(default)s)"
    )
    train.add_argument(
        "--inference-dtype",
        choices=INFERENCE_DTYPES,
        default=DEFAULT_INFERENCE_DTYPE,
        help="how the saved model computes at inference: bfloat16 where the hardware has it natively (see bench/)",
    )
    train.add_argument(
        "--fresh-study",
        action="store_true",
        help="start a new search study in this folder (the old journal is kept under a dated name)",
    )

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common],
        help="recompute a saved model's test figures on its run's split",
        description="Recompute the test figures of a model folder written by train; beside its run folder, the "
        "initial model's figures are shown too. The run folder is checked against its manifest run.json.",
    )
    evaluate.add_argument("--model", type=Path, required=True, help="a model folder written by train (RUN/model)")
    evaluate.add_argument(
        "--data", help="the run's data (default: the file it recorded, found via MUSIC_GENRE_CSV or as given)"
    )
    evaluate.add_argument("--allow-other-data", action="store_true", help="evaluate data whose sha256 differs")
    evaluate.add_argument("--json", action="store_true", help="print the full record as JSON instead of a table")

    eda = commands.add_parser("eda", parents=[common], help="data figures: log transforms, PCA, t-SNE")
    eda.add_argument("--data", help=DATA_HELP)
    eda.add_argument("--output", type=Path, required=True, help="the folder the figures and data_report.json go to")
    eda.add_argument("--seed", type=int, default=42, help="seed of the split and of t-SNE (default: %(default)s)")

    serve = commands.add_parser("serve", parents=[common], help="start the Gradio Space locally")
    serve.add_argument("--model", help="a model folder or Hub id (default: the bundled space/model)")
    serve.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    serve.add_argument("--port", type=int, default=7860, help="the port to listen on (default: %(default)s)")

    add_push_parser(commands, parents=[common])
    add_bundle_parser(commands, parents=[common])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    debug = args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print(f"music-genre {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # every fault: one line (the traceback on request)
        if debug:
            traceback.print_exc()
        print(f"music-genre {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return FAULT_STATUS


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    if not text:
        text = type(error).__name__
    elif not isinstance(error, (ValueError, RuntimeError, OSError)):
        text = f"{type(error).__name__}: {text}"
    return text if len(text) <= 400 else text[:397] + "..."


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "train":
        from training.run import RunOptions, train_run

        options = RunOptions(
            data=args.data,
            output=args.output,
            seed=args.seed,
            split=args.split,
            n_trials=args.n_trials,
            timeout=args.timeout,
            storage=args.storage,
            workers=args.workers,
            trial_batch=args.trial_batch,
            encoding=args.encoding,
            members=args.members,
            max_epochs=args.max_epochs,
            inference_dtype=args.inference_dtype,
            fresh_study=args.fresh_study,
        )
        train_run(options)
    elif args.command == "evaluate":
        from training.run import evaluate_report, evaluation_table

        report = evaluate_report(args.model, args.data, allow_other_data=args.allow_other_data)
        print(json.dumps(report, indent=2) if args.json else evaluation_table(report))
    elif args.command == "eda":
        from training.run import write_eda_figures

        folder = write_eda_figures(args.data, args.output, seed=args.seed)
        logging.getLogger("music_genre").info("figures in %s", folder)
    elif args.command == "serve":
        from space.app import launch

        launch(model=args.model, host=args.host, port=args.port)
    else:
        return args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
