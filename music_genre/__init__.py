"""The `music-genre` command: train, evaluate, eda, serve, predict, push, bundle.

It sits above the project's packages: `training` (train, evaluate, eda), `hub_card` (push, bundle) and `space`
(serve) never import it, and `training` never imports `hub_card` (train gets its card writer from here). Every
command is one row of `COMMANDS`: its name, help, the function that adds its arguments and its handler.
Importing this module is cheap (no torch, transformers, datasets or gradio): each handler imports its stack when
it runs, so `--help` answers at once. A known error (music_genre/errors.py: bad data, a busy or changed run folder,
a missing file) ends as one line on stderr and exit status 2 (`--debug` or MUSIC_GENRE_DEBUG=1 adds the
traceback); anything else is a bug: its traceback, a request to report it, and exit status 1.
"""

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from music_genre.hub_card.cli import add_bundle_arguments, add_push_arguments, run_bundle, run_push
from music_genre.predict import add_predict_arguments, run_predict
from music_genre.training.options import (
    DATA_HELP,
    GENRES_HELP,
    LABEL_COLUMN_HELP,
    MERGE_HELP,
    SPLIT_HELP,
    SPLIT_MODES,
    add_run_arguments,
)

USER_ERROR_STATUS = 2  # argparse's status for a wrong argument, and ours for every known error
BUG_STATUS = 1
INTERRUPTED_STATUS = 130
DEBUG_VARIABLE = "MUSIC_GENRE_DEBUG"
# Loggers whose INFO lines are the libraries' chatter (a line per HTTP request): shown with --verbose only.
CHATTY_LOGGERS = ("httpx", "httpcore", "urllib3", "gradio", "huggingface_hub", "datasets", "transformers")


@dataclass(frozen=True)
class Command:
    """One `music-genre` command: `add_arguments(parser)` declares its arguments, `handler(args)` runs it and returns
    the exit status."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    handler: Callable[[argparse.Namespace], int]
    description: str | None = None


def train(args: argparse.Namespace) -> int:
    from music_genre.hub_card.card import write_model_card
    from music_genre.training.options import RunOptions
    from music_genre.training.run import train_run

    train_run(RunOptions.from_args(args), write_card=write_model_card)
    return 0


def add_evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a model folder written by train (RUN/model)")
    parser.add_argument(
        "--data", help="the run's data (default: the file it recorded, found via MUSIC_GENRE_CSV or as given)"
    )
    parser.add_argument("--allow-other-data", action="store_true", help="evaluate data whose sha256 differs")
    parser.add_argument("--json", action="store_true", help="print the full record as JSON instead of a table")


def evaluate(args: argparse.Namespace) -> int:
    from music_genre.training.run import evaluate_report, evaluation_table

    report = evaluate_report(args.model, args.data, allow_other_data=args.allow_other_data)
    print(json.dumps(report, indent=2) if args.json else evaluation_table(report))
    return 0


def add_eda_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", help=DATA_HELP)
    parser.add_argument("--output", type=Path, required=True, help="the folder the figures and data_report.json go to")
    parser.add_argument("--seed", type=int, default=42, help="seed of the split and of t-SNE (default: %(default)s)")
    parser.add_argument("--split", default="stratified", choices=SPLIT_MODES, help=SPLIT_HELP)
    parser.add_argument("--label-column", help=LABEL_COLUMN_HELP)
    parser.add_argument("--genres", help=GENRES_HELP)
    parser.add_argument("--merge-genres", action="append", metavar="NEW=A,B", help=MERGE_HELP)


def eda(args: argparse.Namespace) -> int:
    from music_genre.training.options import GenreSelection
    from music_genre.training.run import write_eda_figures

    selection = GenreSelection.parse(args.label_column, args.genres, tuple(args.merge_genres or ()))
    folder = write_eda_figures(args.data, args.output, seed=args.seed, split=args.split, selection=selection)
    logging.getLogger("music_genre").info("figures in %s", folder)
    return 0


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="a model folder or Hub id (default: the bundled space/model)")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=7860, help="the port to listen on (default: %(default)s)")


def serve(args: argparse.Namespace) -> int:
    from music_genre.space.app import launch

    launch(model=args.model, host=args.host, port=args.port)
    return 0


COMMANDS = (
    Command(
        "train",
        "the reproducible run: initial model, Optuna search, tuned model",
        add_run_arguments,
        train,
        "The paper's method as one run: clean, split 80/10/10, train the initial design, search, retrain the best "
        "trial, test once. One command at a time per --output folder.",
    ),
    Command(
        "evaluate",
        "recompute a saved model's test metrics on its run's split",
        add_evaluate_arguments,
        evaluate,
        "Recompute the test metrics of a model folder written by train; beside its run folder, the initial model's "
        "metrics are shown too. The run folder is checked against its manifest run.json.",
    ),
    Command("eda", "data figures: log transforms, PCA, t-SNE", add_eda_arguments, eda),
    Command("serve", "start the Gradio Space locally", add_serve_arguments, serve),
    Command(
        "predict",
        "classify a table of any size (CSV, Parquet, JSON Lines) into a .csv or .parquet of genres",
        add_predict_arguments,
        run_predict,
        "Classify every row of --data with --model, streamed in chunks (constant memory), into --output: the top "
        "genres with probabilities, the conformal set with --coverage, and the input's other columns. Rows that "
        "cannot be classified go to OUTPUT_STEM.rejected.csv with their line numbers and reasons.",
    ),
    Command(
        "push",
        "publish a run: the model repo with its card, and optionally the dataset and the Space",
        add_push_arguments,
        run_push,
        "Stage the model (card, figures), dataset and Space folders of a run, then upload them. The token comes "
        "from HF_TOKEN or the saved login (`hf auth login`).",
    ),
    Command(
        "bundle",
        "regenerate the Space's bundled model (space/model/) from a run folder",
        add_bundle_arguments,
        run_bundle,
        "Replace space/model/ with the model repo a push of RUN would stage: weights, remote code, the card "
        "generated from the run, figures.",
    ),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="music-genre", description=__doc__.split("\n")[0])
    debug_help = f"show the traceback of a known error too (also {DEBUG_VARIABLE}=1)"
    verbose_help = "show the libraries' INFO lines (HTTP requests) and progress bars (loading weights, datasets)"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    parser.add_argument("--verbose", action="store_true", help=verbose_help)
    # Accepted after the command too; SUPPRESS keeps the top-level value when it is not given there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help)
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command_parser = subparsers.add_parser(
            command.name, parents=[common], help=command.help, description=command.description
        )
        command.add_arguments(command_parser)
        command_parser.set_defaults(handler=command.handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    debug = args.debug or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")
    try:
        with _console(verbose=args.verbose):
            return args.handler(args)
    except KeyboardInterrupt:
        print(f"music-genre {args.command}: interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    except Exception as error:
        from music_genre.errors import is_known, one_line

        if not is_known(error):
            traceback.print_exc()
            print(
                f"music-genre {args.command}: this is a bug in music-genre, not a mistake of yours: please report it "
                "to the project's maintainers with the traceback above and the command you ran",
                file=sys.stderr,
            )
            return BUG_STATUS
        if debug:
            traceback.print_exc()
        print(f"music-genre {args.command}: error: {one_line(error)}", file=sys.stderr)
        return USER_ERROR_STATUS


@contextmanager
def _console(verbose: bool) -> Iterator[None]:
    """A quiet console unless `verbose`: the project's own lines (one per stage, and its own progress bars), no
    INFO line per HTTP request or Optuna study, no "Loading weights" or dataset-generation bars. The loggers' levels
    and the libraries' settings are restored afterwards (a test calling `main` keeps its own)."""
    if verbose:
        yield
        return
    levels = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    # Imported here, not at the top: `--help` and a wrong argument never pay for them.
    import datasets
    import optuna
    import transformers

    bars = transformers.utils.logging.is_progress_bar_enabled(), not datasets.are_progress_bars_disabled()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    # Optuna's own handler prints an INFO line per study opened or created; the run logs its own search lines.
    optuna_verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(optuna_verbosity)
        if bars[0]:
            transformers.utils.logging.enable_progress_bar()
        if bars[1]:
            datasets.enable_progress_bars()
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
