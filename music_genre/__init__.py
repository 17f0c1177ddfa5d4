"""The `music-genre` command: train, evaluate, eda, serve, push, bundle.

It sits above the project's packages: `training` (train, evaluate, eda), `hub_card` (push, bundle) and `space`
(serve) never import it, and `training` never imports `hub_card` (train gets its card writer from here).
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from music_genre.hub_card.cli import add_bundle_parser, add_push_parser
from music_genre.training.options import DATA_HELP, add_run_arguments

FAULT_STATUS = 2
DEBUG_VARIABLE = "MUSIC_GENRE_DEBUG"


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
    add_run_arguments(train)

    evaluate = commands.add_parser(
        "evaluate",
        parents=[common],
        help="recompute a saved model's test metrics on its run's split",
        description="Recompute the test metrics of a model folder written by train; beside its run folder, the "
        "initial model's metrics are shown too. The run folder is checked against its manifest run.json.",
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


@contextmanager
def _one_bar_per_stage() -> Iterator[None]:
    """No "Writing model shards" bar per save, no dataset-generation bars on the console: one bar per stage of a
    run. The libraries' settings are restored afterwards (a test calling `main` keeps its own)."""
    import datasets
    import transformers

    bars = transformers.utils.logging.is_progress_bar_enabled(), not datasets.are_progress_bars_disabled()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if bars[0]:
            transformers.utils.logging.enable_progress_bar()
        if bars[1]:
            datasets.enable_progress_bars()


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "serve":
        from music_genre.space.app import launch

        launch(model=args.model, host=args.host, port=args.port)
        return 0
    with _one_bar_per_stage():
        return _run_command(args)


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "train":
        from music_genre.hub_card.card import write_model_card
        from music_genre.training.options import RunOptions
        from music_genre.training.run import train_run

        train_run(RunOptions.from_args(args), write_card=write_model_card)
    elif args.command == "evaluate":
        from music_genre.training.run import evaluate_report, evaluation_table

        report = evaluate_report(args.model, args.data, allow_other_data=args.allow_other_data)
        print(json.dumps(report, indent=2) if args.json else evaluation_table(report))
    elif args.command == "eda":
        from music_genre.training.run import write_eda_figures

        folder = write_eda_figures(args.data, args.output, seed=args.seed)
        logging.getLogger("music_genre").info("figures in %s", folder)
    else:
        return args.handler(args)
    return 0
