"""AutoGluon-Tabular on one split, run by the quality benchmark in a virtualenv of its own.

AutoGluon 1.6 requires pandas < 3 (and pulls torchvision, spaCy and fastai), which the project's pins (pandas >= 3.1)
rule out, so `bench.quality` installs it into `bench/output/autogluon-venv` (a virtualenv that sees the project's
torch, numpy and scikit-learn, with its own pandas) and runs this file there as a script:

    AUTOGLUON_PYTHON bench/autogluon_peer.py SPLIT.npz OUTPUT_DIR --preset medium_quality --time-limit 120

SPLIT.npz holds the raw features of the rows to fit (training plus validation, as AutoGluon's documentation advises:
no tuning_data, AutoGluon holds out or bags its own) and of the test rows, the feature names and which of them are
categorical. OUTPUT_DIR receives `test_probabilities.npy` and `details.json`. Only numpy, pandas and AutoGluon are
imported: nothing of the project, whose pins this environment does not meet.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LABEL = "genre"
# AutoGluon's log level: 2 logs each model fitted (or skipped, and why) to stderr, which the benchmark keeps.
VERBOSITY = int(os.environ.get("AUTOGLUON_VERBOSITY", "2"))


def frame(features: np.ndarray, names: list[str], categorical: list[str]):
    import pandas as pd

    table = pd.DataFrame(features, columns=names)
    for name in categorical:  # category codes as AutoGluon's categorical type; NaN stays missing
        table[name] = table[name].astype("Int64").astype("category")
    return table


def fit_and_predict(split_file: Path, output_dir: Path, preset: str, time_limit: float) -> dict:
    from autogluon.tabular import TabularPredictor

    split = np.load(split_file, allow_pickle=False)
    names, categorical = [str(n) for n in split["names"]], [str(n) for n in split["categorical"]]
    fit_rows = frame(split["fit_features"], names, categorical)
    fit_rows[LABEL] = split["fit_labels"].astype(np.int64)
    test_rows = frame(split["test_features"], names, categorical)
    tick = time.time()
    with tempfile.TemporaryDirectory(prefix="autogluon-") as models_dir:
        predictor = TabularPredictor(label=LABEL, eval_metric="accuracy", path=models_dir, verbosity=VERBOSITY)
        predictor.fit(fit_rows, presets=preset, time_limit=time_limit, num_cpus="auto", num_gpus=0)
        fit_seconds = time.time() - tick
        probabilities = predictor.predict_proba(test_rows, as_pandas=False)
        # Columns in label order 0..9, whatever order AutoGluon keeps its classes in.
        order = np.argsort(np.asarray(predictor.class_labels, dtype=np.int64))
        probabilities = np.asarray(probabilities, dtype=np.float64)[:, order]
        leaderboard = predictor.leaderboard(silent=True)
        details = {
            "preset": preset,
            "time_limit_s": time_limit,
            "fit_seconds": fit_seconds,
            "fitted_on": "training + validation rows (no tuning_data)",
            "best_model": predictor.model_best,
            "models_fitted": int(len(leaderboard)),
            "cpus": os.cpu_count(),
        }
    np.save(output_dir / "test_probabilities.npy", probabilities)
    (output_dir / "details.json").write_text(json.dumps(details, indent=2) + "\n")
    return details


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("split", type=Path, help="the .npz the quality benchmark wrote")
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--preset", required=True, choices=("medium_quality", "best_quality"))
    parser.add_argument("--time-limit", type=float, required=True, help="seconds for the whole fit")
    args = parser.parse_args(argv)
    if args.time_limit <= 0:
        parser.error(f"--time-limit must be positive, got {args.time_limit}")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    details = fit_and_predict(args.split, args.output_dir, args.preset, args.time_limit)
    print(json.dumps(details), file=sys.stderr)


if __name__ == "__main__":
    main()
