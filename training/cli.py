"""The `music-genre` command: train, evaluate, eda, serve, push."""

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from training.data import SPLIT_MODES

# As in modeling.feature_extraction_genre_ffn.ENCODINGS and RunOptions.encoding (this module imports neither, to start
# fast; tests/test_run.py checks they agree).
ENCODINGS = ("log-standard", "quantile-normal", "quantile-normal+log-standard")
DEFAULT_ENCODING = "quantile-normal+log-standard"
# As in modeling.configuration_genre_ffn.INFERENCE_DTYPES and RunOptions.inference_dtype.
INFERENCE_DTYPES = ("float32", "bfloat16")
DEFAULT_INFERENCE_DTYPE = "bfloat16"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="music-genre", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="the reproducible run: initial model, Optuna search, tuned model")
    train.add_argument("--data", help="CSV path, published dataset folder or Hub dataset id (default MUSIC_GENRE_CSV)")
    train.add_argument("--output", type=Path, default=Path("runs/latest"), help="the run folder")
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--split", choices=SPLIT_MODES, default="stratified")
    train.add_argument("--n-trials", type=int, default=30, help="trials in the study, counting finished ones")
    train.add_argument("--timeout", type=float, help="stop starting trials after this many seconds")
    train.add_argument("--storage", help="an Optuna storage URL shared by workers (default: a file in the run)")
    train.add_argument("--workers", type=int, default=1, help="search processes, one torch thread each")
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
    train.add_argument("--members", type=int, default=3, help="networks averaged in the final model (search: 1)")
    train.add_argument("--max-epochs", type=int, default=25, help="upper bound of the epochs the search samples")
    train.add_argument(
        "--inference-dtype",
        choices=INFERENCE_DTYPES,
        default=DEFAULT_INFERENCE_DTYPE,
        help="how the saved model computes at inference: bfloat16 where the hardware has it natively (see bench/)",
    )

    evaluate = commands.add_parser("evaluate", help="recompute a saved model's test figures on its run's split")
    evaluate.add_argument("--model", type=Path, required=True, help="a model folder written by train")
    evaluate.add_argument("--data", help="the run's data (default: the source it recorded)")
    evaluate.add_argument("--allow-other-data", action="store_true", help="evaluate data whose sha256 differs")

    eda = commands.add_parser("eda", help="data figures: log transforms, PCA, t-SNE")
    eda.add_argument("--data")
    eda.add_argument("--output", type=Path, required=True)
    eda.add_argument("--seed", type=int, default=42)

    serve = commands.add_parser("serve", help="start the Gradio Space locally")
    serve.add_argument("--model", help="a model folder or Hub id (default: the bundled space/model)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)

    try:
        from hub_card.cli import add_push_parser
    except ImportError:  # publishing code not present in this checkout
        add_push_parser = None
    if add_push_parser is not None:
        add_push_parser(commands)

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        return _dispatch(args)
    except (ValueError, FileNotFoundError, RuntimeError) as error:
        print(f"music-genre {args.command}: error: {error}", file=sys.stderr)
        return 1


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
        )
        train_run(options)
    elif args.command == "evaluate":
        from training.run import evaluate_folder

        metrics = evaluate_folder(args.model, args.data, allow_other_data=args.allow_other_data)
        print(json.dumps(metrics, indent=2))
    elif args.command == "eda":
        from training.run import write_eda_figures

        folder = write_eda_figures(args.data, args.output, seed=args.seed)
        logging.getLogger("music_genre").info("figures in %s", folder.resolve())
    elif args.command == "serve":
        from space.app import launch

        launch(model=args.model, host=args.host, port=args.port)
    else:
        return args.handler(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
