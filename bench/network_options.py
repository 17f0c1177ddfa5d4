"""The network's options measured against each other: which epoch is kept, the ensemble, the numeric embeddings.

For each configuration, split mode and split seed the network is trained once, exactly as `training.trainer.fit`
trains it (Trainer, early stopping on validation accuracy), keeping each of the last 3 epochs' weights; it is then
scored on the test split twice: with the best validation epoch (the run's rule before) and with the last 3 epochs'
weights averaged, batch-norm statistics recomputed on shuffled training rows (`AVERAGE_LAST`). One training for both
rules halves the CPU the comparison costs; the test split is read only to score. Splits, encodings and scoring are
bench/quality.py's, so its per-seed network figures are comparable.

    TQDM_DISABLE=1 python -m bench.network_options --set ensemble=tabm num_members=4 \\
        numeric_embedding=piecewise-linear --modes group --seeds 0 1 --output bench/network_options/tabm4_ple.json

`--set NAME=VALUE` overrides a field of the configuration's hyperparameters (JSON values; strings as they are).
"""

import argparse
import json
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import transformers

from bench.common import BENCH, DEFAULT_CONFIG, load_config, log, machine, versions
from music_genre.modeling import GenreFeatureExtractor
from music_genre.training.data import SPLIT_MODES, load_data, prepare_splits
from music_genre.training.scoring import summary_metrics
from music_genre.training.trainer import (
    AVERAGED_EPOCHS,
    Hyperparameters,
    LastEpochsWeights,
    average_weights,
    make_trainer,
    predict_probabilities,
)

OUTPUT_DIR = BENCH / "network_options"
RULES = ("best-epoch", "average-last-3")


def parse_overrides(pairs: list[str]) -> dict:
    overrides = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals:
            raise SystemExit(f"--set {pair!r}: write NAME=VALUE")
        try:
            overrides[name] = json.loads(text)
        except json.JSONDecodeError:
            overrides[name] = text
    return overrides


def run_split(data, config: dict, hyperparameters: Hyperparameters, mode: str, seed: int) -> dict:
    """Train once on one split; the test metrics of both rules, their validation accuracy and the seconds taken."""
    started = time.time()
    prepared = prepare_splits(data, GenreFeatureExtractor(numeric_encoding=config["encoding"]), seed, mode)
    with tempfile.TemporaryDirectory(prefix="bench-options-") as output_dir:
        trainer = make_trainer(prepared, prepared.extractor, hyperparameters, Path(output_dir), seed, quiet=True)
        weights = LastEpochsWeights(AVERAGED_EPOCHS)
        trainer.add_callback(weights)
        trainer.train()
    model = trainer.model.to("cpu")
    model.config.inference_dtype = config.get("inference_dtype", "float32")
    evaluations = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    result = {"mode": mode, "seed": seed, "epochs_run": len(evaluations), "train_seconds": time.time() - started}
    for rule in RULES:
        if rule == "average-last-3":
            average_weights(model, weights.snapshots, prepared.features["train"], hyperparameters.batch_size)
        validation = predict_probabilities(model, prepared.features["validation"])
        test = predict_probabilities(model, prepared.features["test"])
        result[rule] = {
            **summary_metrics(prepared.labels["test"], test),
            "validation_accuracy": float(np.mean(validation.argmax(-1) == prepared.labels["validation"])),
        }
    log(
        f"{mode:<10} seed {seed}  best epoch {result['best-epoch']['accuracy']:.4f} / "
        f"{result['best-epoch']['roc_auc_macro']:.4f}  averaged {result['average-last-3']['accuracy']:.4f} / "
        f"{result['average-last-3']['roc_auc_macro']:.4f}  ({result['train_seconds']:.0f} s)"
    )
    return result


def summary(results: list[dict]) -> dict:
    """Mean and standard deviation of each rule's test accuracy and macro AUC per mode, with the seeds they cover."""
    table = {}
    for mode in sorted({r["mode"] for r in results}):
        runs = [r for r in results if r["mode"] == mode]
        table[mode] = {"seeds": [r["seed"] for r in runs]}
        for rule in RULES:
            for metric in ("accuracy", "roc_auc_macro"):
                values = [r[rule][metric] for r in runs]
                table[mode][f"{rule} {metric}"] = {
                    "mean": float(np.mean(values)),
                    "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                }
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.network_options",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the network's configuration")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE", help="hyperparameter overrides")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="split seeds")
    parser.add_argument("--modes", nargs="+", choices=SPLIT_MODES, default=["group"], help="split modes")
    parser.add_argument("--data", default=None, help="the CSV (default: MUSIC_GENRE_CSV or ../shared/data)")
    parser.add_argument("--output", type=Path, required=True, help="the JSON written (results so far after each split)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    config, source = load_config(args.config)
    overrides = parse_overrides(args.set)
    hyperparameters = replace(Hyperparameters(**config["hyperparameters"]), **overrides)
    data = load_data(args.data)
    meta = {
        "command": shlex.join(["python", "-m", "bench.network_options", *(sys.argv[1:] if argv is None else argv)]),
        "config": source,
        "overrides": overrides,
        "hyperparameters": hyperparameters.to_dict(),
        "encoding": config["encoding"],
        "inference_dtype": config.get("inference_dtype", "float32"),
        "data_sha256": data.sha256,
        "machine": f"{machine()}; one process, one torch thread; " + versions("torch", "transformers"),
    }
    results = []
    for mode in args.modes:
        for seed in args.seeds:
            results.append(run_split(data, config, hyperparameters, mode, seed))
            args.output.parent.mkdir(parents=True, exist_ok=True)
            report = {"meta": meta, "summary": summary(results), "results": results}
            args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(summary(results), indent=2))


if __name__ == "__main__":
    main()
