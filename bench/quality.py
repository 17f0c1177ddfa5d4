"""Quality benchmark: this project's tuned network against tuned LightGBM, HistGradientBoosting and logistic regression.

Every model sees the same 13 features and the same 80/10/10 splits (`training.data.split_indices`) of the real
CSV, over several split seeds and both split modes, and is scored by the project's one metric definition
(`training.scoring.summary_metrics`) on the test split. Validation picks epochs, iterations and trials; test is
read once per model and split.

    TQDM_DISABLE=1 python bench/quality.py --jobs 2       # 5 seeds x 2 modes, 2 splits at once; bench/quality.md/.json
    TQDM_DISABLE=1 python bench/quality.py --quick        # 1 seed, stratified, 3 trials, 3 epochs (bench/output/)

LightGBM's searches take nine tenths of the wall time and are deterministic (seeded sampler, seeded boosting, one
thread), so a run that changes only the network may take them from an earlier `quality.json` of the same data and
trial count (`--reuse-lightgbm bench/quality.json`). HistGradientBoosting is then rerun on every split and has to
match that file's figures exactly, which checks that the splits and the peers' code are the ones it was made with.
"""

import os

# One process, one thread: set before numpy, torch, LightGBM and scikit-learn load their thread pools.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from dataclasses import fields, replace  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import sklearn  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as `python bench/quality.py` from anywhere
    sys.path.insert(0, str(REPO))

from modeling import FEATURE_NAMES, GENRES, GenreFeatureExtractor, parse_rows  # noqa: E402
from training.data import SPLIT_MODES, GenreData, load_data, prepare_splits, split_indices  # noqa: E402
from training.run import PAPER  # noqa: E402
from training.scoring import summary_metrics  # noqa: E402
from training.trainer import Hyperparameters, fit, predict_probabilities  # noqa: E402

BENCH = Path(__file__).resolve().parent
DEFAULT_CONFIG = BENCH / "tuned_config.json"
# Used until the tuned configuration is written: the best trial of an earlier quantile-normal search.
FALLBACK_CONFIG = {
    "encoding": "quantile-normal",
    "hyperparameters": {
        "hidden_sizes": [512, 128, 64],
        "dropout": 0.1251,
        "learning_rate": 9.41e-4,
        "batch_size": 32,
        "epochs": 15,
        "num_members": 5,
    },
}
NETWORK = "GenreFFN (this project)"
LIGHTGBM = "LightGBM (Optuna-tuned)"
HIST_GB = "HistGradientBoosting"
LOGISTIC = "Logistic regression (log-standard)"
MODELS = (NETWORK, LIGHTGBM, HIST_GB, LOGISTIC)
METRICS = (("accuracy", "accuracy"), ("f1_weighted", "weighted F1"), ("roc_auc_macro", "macro OvR AUC"))
# Columns of the tree models' raw feature matrix that hold category codes.
CATEGORICAL = [FEATURE_NAMES.index("key"), FEATURE_NAMES.index("mode")]
STRETCH = {"accuracy": 0.61, "roc_auc_macro": 0.940}
LGBM_MAX_ROUNDS = 3000
LGBM_PATIENCE = 50


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def raw_features(rows: Any) -> np.ndarray:
    """The 13 raw features in CSV order, key and mode as category codes, missing values as NaN."""
    numeric, key, mode = parse_rows(rows)
    columns, numeric_columns = [], iter(numeric.T)
    for name in FEATURE_NAMES:
        if name == "key":
            columns.append(np.where(key < 0, np.nan, key))
        elif name == "mode":
            columns.append(np.where(mode < 0, np.nan, mode))
        else:
            columns.append(next(numeric_columns))
    return np.column_stack(columns).astype(np.float64)


def load_config(path: Path) -> tuple[dict, str]:
    """The network's fixed configuration and where it came from."""
    if not path.is_file():
        return FALLBACK_CONFIG, f"fallback (no {path.name} yet)"
    config = json.loads(path.read_text())
    known = {f.name for f in fields(Hyperparameters)}
    unknown = sorted(set(config["hyperparameters"]) - known)
    if unknown:
        raise ValueError(f"{path}: unknown hyperparameter(s) {unknown}; expected fields of Hyperparameters {known}")
    return config, str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


# The four models. Each takes the data, the split and the seed, and returns test probabilities and details.


def run_network(
    data: GenreData, split: dict[str, np.ndarray], seed: int, mode: str, config: dict, epochs: int | None
) -> tuple[np.ndarray, dict]:
    hyperparameters = Hyperparameters(**config["hyperparameters"])
    if epochs is not None:
        hyperparameters = replace(hyperparameters, epochs=epochs)
    extractor = GenreFeatureExtractor(numeric_encoding=config["encoding"])
    prepared = prepare_splits(data, extractor, seed, mode)
    _check_same_split(prepared.indices, split)
    with tempfile.TemporaryDirectory(prefix="bench-quality-") as output_dir:
        trainer = fit(prepared, extractor, hyperparameters, Path(output_dir), seed, quiet=True)
    # Scored as the bundled model serves (bfloat16 where the run saves it so), not only as it trains.
    trainer.model.config.inference_dtype = config.get("inference_dtype", "float32")
    probabilities = predict_probabilities(trainer.model, prepared.features["test"])
    evaluations = [entry for entry in trainer.state.log_history if "eval_accuracy" in entry]
    best_epoch = next(e["epoch"] for e in evaluations if e["eval_accuracy"] == trainer.state.best_metric)
    return probabilities, {
        "encoding": config["encoding"],
        "inference_dtype": trainer.model.config.inference_dtype,
        "hyperparameters": hyperparameters.to_dict(),
        "epochs_run": len(evaluations),
        "best_epoch": best_epoch,
        "best_validation_accuracy": trainer.state.best_metric,
    }


def run_lightgbm(data: GenreData, split: dict[str, np.ndarray], seed: int, n_trials: int) -> tuple[np.ndarray, dict]:
    features, labels = raw_features(data.frame), data.labels
    train = lgb.Dataset(
        features[split["train"]],
        labels[split["train"]],
        feature_name=list(FEATURE_NAMES),
        categorical_feature=CATEGORICAL,
        free_raw_data=False,
        # Trials change min_child_samples on the same Dataset, which pre-filtering would fix at construction.
        params={"feature_pre_filter": False, "verbosity": -1},
    )
    validation = train.create_valid(features[split["validation"]], labels[split["validation"]])
    validation_labels = labels[split["validation"]]
    best: dict[str, Any] = {"accuracy": -1.0}

    def objective(trial: optuna.Trial) -> float:
        params = {
            "objective": "multiclass",
            "num_class": len(GENRES),
            "metric": "multi_logloss",
            "num_threads": 1,
            "verbosity": -1,
            "seed": seed,
            "feature_pre_filter": False,
            "num_leaves": trial.suggest_int("num_leaves", 8, 256, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "min_child_samples": trial.suggest_int("min_child_samples", 5, 200, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
            "bagging_freq": 1,
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        }
        booster = lgb.train(
            params,
            train,
            num_boost_round=LGBM_MAX_ROUNDS,
            valid_sets=[validation],
            callbacks=[lgb.early_stopping(LGBM_PATIENCE, verbose=False)],
        )
        predicted = booster.predict(features[split["validation"]], num_iteration=booster.best_iteration)
        # Trials are ranked like the network's epochs and search trials: by validation accuracy.
        accuracy = float((predicted.argmax(axis=1) == validation_labels).mean())
        trial.set_user_attr("best_iteration", booster.best_iteration)
        if accuracy > best["accuracy"]:
            best.update(accuracy=accuracy, booster=booster, trial=trial.number, params=params)
        return accuracy

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    booster: lgb.Booster = best["booster"]
    probabilities = booster.predict(features[split["test"]], num_iteration=booster.best_iteration)
    return probabilities, {
        "trials": n_trials,
        "best_trial": best["trial"],
        "best_iteration": booster.best_iteration,
        "best_validation_accuracy": best["accuracy"],
        "params": {k: v for k, v in best["params"].items() if k in study.best_params or k == "bagging_freq"},
    }


def run_hist_gradient_boosting(data: GenreData, split: dict[str, np.ndarray], seed: int) -> tuple[np.ndarray, dict]:
    features, labels = raw_features(data.frame), data.labels
    settings = {
        "learning_rate": 0.05,
        "max_iter": 2000,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 20,
        "l2_regularization": 1.0,
        "early_stopping": True,
        "n_iter_no_change": 30,
        "scoring": "loss",
    }
    model = HistGradientBoostingClassifier(**settings, categorical_features=CATEGORICAL, random_state=seed)
    model.fit(
        features[split["train"]],
        labels[split["train"]],
        X_val=features[split["validation"]],
        y_val=labels[split["validation"]],
    )
    return model.predict_proba(features[split["test"]]), {**settings, "iterations": int(model.n_iter_)}


def run_logistic_regression(
    data: GenreData, split: dict[str, np.ndarray], seed: int, mode: str
) -> tuple[np.ndarray, dict]:
    extractor = GenreFeatureExtractor()
    prepared = prepare_splits(data, extractor, seed, mode)
    _check_same_split(prepared.indices, split)
    model = LogisticRegression(C=1.0, max_iter=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=FutureWarning)
        model.fit(prepared.features["train"], prepared.labels["train"])
    return model.predict_proba(prepared.features["test"]), {"encoding": "log-standard", "C": 1.0}


def _check_reproduced(cached: dict, figures: dict, mode: str, seed: int) -> None:
    differ = {key: (cached[key], figures[key]) for key, _ in METRICS if cached[key] != figures[key]}
    if differ:
        raise RuntimeError(
            f"{mode} seed {seed}: HistGradientBoosting gave {differ} (cached, now): the reused file was made with "
            "other splits or code, so its LightGBM figures cannot be reused; run without --reuse-lightgbm"
        )


def _check_same_split(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> None:
    if any(not np.array_equal(first[name], second[name]) for name in ("train", "validation", "test")):
        raise RuntimeError("prepare_splits and split_indices disagree on the split")


# Summary and report.


def summarize(results: list[dict], modes: list[str]) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """mode -> model -> metric -> mean/std/n over seeds."""
    summary: dict = {}
    for mode in modes:
        summary[mode] = {}
        for model in MODELS:
            rows = [r for r in results if r["mode"] == mode and r["model"] == model]
            if not rows:
                continue
            summary[mode][model] = {
                key: {
                    "mean": float(np.mean([r[key] for r in rows])),
                    "std": float(np.std([r[key] for r in rows], ddof=1)) if len(rows) > 1 else 0.0,
                    "n": len(rows),
                }
                for key, _ in METRICS
            }
    return summary


def target_lines(summary: dict, modes: list[str]) -> list[str]:
    lines = []

    def verdict(met: bool) -> str:
        return "**met**" if met else "**not met**"

    for mode in modes:
        network, lightgbm = summary[mode].get(NETWORK), summary[mode].get(LIGHTGBM)
        if network and lightgbm:
            acc, auc = network["accuracy"]["mean"], network["roc_auc_macro"]["mean"]
            lgb_acc, lgb_auc = lightgbm["accuracy"]["mean"], lightgbm["roc_auc_macro"]["mean"]
            met = acc >= lgb_acc and auc >= lgb_auc
            lines.append(
                f"- Network >= tuned LightGBM, {mode}: accuracy {acc:.4f} vs {lgb_acc:.4f} ({acc - lgb_acc:+.4f}), "
                f"AUC {auc:.4f} vs {lgb_auc:.4f} ({auc - lgb_auc:+.4f}): {verdict(met)}"
            )
    for mode in modes:
        network = summary[mode].get(NETWORK)
        if network:
            acc, auc = network["accuracy"]["mean"], network["roc_auc_macro"]["mean"]
            paper_acc, paper_auc = PAPER["tuned"]["accuracy"], PAPER["tuned"]["roc_auc_macro"]
            met = acc > paper_acc and auc > paper_auc
            lines.append(
                f"- Network > the paper's tuned figures (accuracy {paper_acc}, AUC {paper_auc}), {mode}: "
                f"accuracy {acc:.4f}, AUC {auc:.4f}: {verdict(met)}"
            )
    network = summary.get("stratified", {}).get(NETWORK)
    if network:
        acc, auc = network["accuracy"]["mean"], network["roc_auc_macro"]["mean"]
        met = acc >= STRETCH["accuracy"] and auc >= STRETCH["roc_auc_macro"]
        lines.append(
            f"- Stretch, stratified mean accuracy >= {STRETCH['accuracy']} and AUC >= {STRETCH['roc_auc_macro']}: "
            f"accuracy {acc:.4f}, AUC {auc:.4f}: {verdict(met)}"
        )
    return lines


def markdown_report(meta: dict, results: list[dict], modes: list[str]) -> str:
    summary = summarize(results, modes)
    seeds = sorted({r["seed"] for r in results})
    lines = [
        "# Quality benchmark",
        "",
        f"- Date: {meta['date']}",
        f"- Command: `{meta['command']}`",
        f"- Split seeds: {', '.join(map(str, seeds))}; split modes: {', '.join(modes)} "
        "(80/10/10, `training.data.split_indices`; `group` keeps every artist/track pair on one side)",
        f"- Data: `{meta['data_source']}` (sha256 `{meta['data_sha256'][:12]}...`, {meta['rows']} rows after cleaning)",
        f"- Network configuration ({meta['config_source']}): encoding `{meta['config']['encoding']}`, inference "
        f"dtype `{meta['config'].get('inference_dtype', 'float32')}`, "
        f"`{json.dumps(meta['config']['hyperparameters'])}`",
        f"- LightGBM: Optuna TPE (seeded by the split seed), {meta['lgbm_trials']} trials on validation accuracy, "
        f"early stopping on validation multi_logloss ({LGBM_PATIENCE} rounds), test at the best iteration",
        f"- Machine: {meta['machine']}",
        f"- Wall time: {meta.get('wall_minutes', float('nan')):.1f} min",
    ]
    if meta.get("reused_lightgbm"):
        reused = meta["reused_lightgbm"]
        lines.append(
            f"- LightGBM's figures are reused from `{reused['file']}` (run {reused['date']}, `{reused['command']}`): "
            "its searches are deterministic, and HistGradientBoosting, rerun here on every split, reproduced that "
            "file's figures exactly; its seconds per split are that run's"
        )
    if meta.get("note"):
        lines.append(f"- Note: {meta['note']}")
    planned = len(meta["seeds"]) * len(meta["modes"])
    finished = len({(r["mode"], r["seed"]) for r in results})
    if finished < planned:
        lines.append(f"- **Partial: {finished} of {planned} splits finished**; the run is still going or was stopped")
    for mode in modes:
        mode_seeds = sorted({r["seed"] for r in results if r["mode"] == mode})
        lines += [
            "",
            f"## {mode} split: test figures, mean ± std over {len(mode_seeds)} seed(s)",
            "",
            "| model | " + " | ".join(label for _, label in METRICS) + " | seconds per split |",
            "|---|" + "---|" * (len(METRICS) + 1),
        ]
        for model, figures in summary[mode].items():
            seconds = np.mean([r["seconds"] for r in results if r["mode"] == mode and r["model"] == model])
            cells = [f"{figures[key]['mean']:.4f} ± {figures[key]['std']:.4f}" for key, _ in METRICS]
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {seconds:.0f} |")
        paper = PAPER["tuned"]
        lines.append(
            "| the paper's tuned FFN (as published, its own split) | "
            + " | ".join(f"{paper[key]:.4f}" for key, _ in METRICS)
            + " | - |"
        )
    lines += ["", "## Targets", "", *target_lines(summary, modes), ""]
    lines += ["Per-seed figures, LightGBM's chosen parameters and the network's epochs: `quality.json`.", ""]
    return "\n".join(lines)


def machine_note(jobs: int) -> str:
    return (
        f"{platform.machine()} {platform.system()}, {os.cpu_count()} logical CPUs shared with other jobs, "
        f"{jobs} process(es) at once, 1 thread each (torch.set_num_threads(1), OMP_NUM_THREADS=1, LightGBM "
        "num_threads=1); "
        f"Python {platform.python_version()}, torch {torch.__version__}, transformers {transformers.__version__}, "
        f"lightgbm {lgb.__version__}, scikit-learn {sklearn.__version__}, optuna {optuna.__version__}, "
        f"pandas {pd.__version__}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="split seeds")
    parser.add_argument("--modes", nargs="+", choices=SPLIT_MODES, default=list(SPLIT_MODES), help="split modes")
    parser.add_argument("--lgbm-trials", type=int, default=30, help="Optuna trials for LightGBM per split")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the network's fixed configuration")
    parser.add_argument("--data", default=None, help="the CSV (default: MUSIC_GENRE_CSV or ../shared/data)")
    parser.add_argument("--output-dir", type=Path, default=None, help="default bench/ (bench/output/ with --quick)")
    parser.add_argument("--jobs", type=int, default=1, help="splits run at once, each in a one-thread process")
    parser.add_argument("--note", default="", help="a line added to the report")
    parser.add_argument("--quick", action="store_true", help="1 seed, stratified, 3 LightGBM trials, 3 epochs")
    parser.add_argument(
        "--reuse-lightgbm",
        type=Path,
        default=None,
        metavar="QUALITY_JSON",
        help="take LightGBM's results from an earlier quality.json (same data and trials); see above",
    )
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.quick:
        args.seeds, args.modes, args.lgbm_trials = args.seeds[:1], ["stratified"], 3
    if args.output_dir is None:
        args.output_dir = BENCH / "output" if args.quick else BENCH
    return args


# One split at a time: a worker process (with --jobs) or this one loads the data once and runs the four models.
_WORKER: dict[str, Any] = {}


def _init_worker(data_path: str | None, config: dict, lgbm_trials: int, epochs: int | None) -> None:
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _WORKER.update(data=load_data(data_path), config=config, lgbm_trials=lgbm_trials, epochs=epochs)


def load_reused(path: Path, data_sha256: str, lgbm_trials: int, quick: bool) -> tuple[dict, dict]:
    """LightGBM and HistGradientBoosting results per (mode, seed) from an earlier `quality.json`, and its meta."""
    earlier = json.loads(path.read_text())
    meta = earlier["meta"]
    if meta["data_sha256"] != data_sha256:
        raise ValueError(f"{path} was measured on data sha256 {meta['data_sha256'][:12]}..., not {data_sha256[:12]}")
    if meta["lgbm_trials"] != lgbm_trials or meta["quick"] != quick:
        raise ValueError(f"{path} ran {meta['lgbm_trials']} LightGBM trials (quick {meta['quick']}), not {lgbm_trials}")
    cached: dict[tuple[str, int], dict] = {}
    for result in earlier["results"]:
        if result["model"] in (LIGHTGBM, HIST_GB):
            cached.setdefault((result["mode"], result["seed"]), {})[result["model"]] = result
    return cached, meta


def run_split(mode: str, seed: int, reused: dict | None = None) -> list[dict]:
    """The four models on one split; returns one result per model. `reused`: this split's cached LightGBM and
    HistGradientBoosting results (see `load_reused`); LightGBM's is taken, HistGradientBoosting's must be matched."""
    data, config = _WORKER["data"], _WORKER["config"]
    runners: dict[str, Callable[[dict], tuple[np.ndarray, dict]]] = {
        NETWORK: lambda split: run_network(data, split, seed, mode, config, _WORKER["epochs"]),
        LIGHTGBM: lambda split: run_lightgbm(data, split, seed, _WORKER["lgbm_trials"]),
        HIST_GB: lambda split: run_hist_gradient_boosting(data, split, seed),
        LOGISTIC: lambda split: run_logistic_regression(data, split, seed, mode),
    }
    split = split_indices(data, seed, mode)
    test_labels = data.labels[split["test"]]
    results = []
    for model, runner in runners.items():
        if reused is not None and model == LIGHTGBM:
            result = {**reused[LIGHTGBM], "reused": True}
            results.append(result)
            log(f"{mode:<10} seed {seed}  {model:<36} accuracy {result['accuracy']:.4f}  (reused)")
            continue
        tick = time.time()
        probabilities, details = runner(split)
        figures = summary_metrics(test_labels, np.asarray(probabilities, dtype=np.float64))
        seconds = time.time() - tick
        if reused is not None and model == HIST_GB:
            _check_reproduced(reused[HIST_GB], figures, mode, seed)
        results.append({"model": model, "mode": mode, "seed": seed, **figures, "seconds": seconds, "details": details})
        log(
            f"{mode:<10} seed {seed}  {model:<36} accuracy {figures['accuracy']:.4f}  "
            f"F1 {figures['f1_weighted']:.4f}  AUC {figures['roc_auc_macro']:.4f}  ({seconds:.0f} s)"
        )
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    started = time.time()
    config, config_source = load_config(args.config)
    epochs = 3 if args.quick else None
    _init_worker(args.data, config, args.lgbm_trials, epochs)
    data = _WORKER["data"]
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(["python", "bench/quality.py", *(sys.argv[1:] if argv is None else argv)]),
        "seeds": args.seeds,
        "modes": args.modes,
        "lgbm_trials": args.lgbm_trials,
        "jobs": args.jobs,
        "quick": args.quick,
        "config": config,
        "config_source": config_source,
        "data_source": os.path.relpath(data.report["source"], REPO),
        "data_sha256": data.sha256,
        "rows": len(data.frame),
        "machine": machine_note(args.jobs),
        "note": args.note,
        "paper": PAPER,
    }
    cached: dict[tuple[str, int], dict] = {}
    if args.reuse_lightgbm is not None:
        cached, earlier = load_reused(args.reuse_lightgbm, data.sha256, args.lgbm_trials, args.quick)
        absent = [key for key in ((m, s) for m in args.modes for s in args.seeds) if len(cached.get(key, {})) < 2]
        if absent:
            raise SystemExit(f"--reuse-lightgbm {args.reuse_lightgbm}: no LightGBM or HistGB results for {absent}")
        meta["reused_lightgbm"] = {"file": str(args.reuse_lightgbm)} | {k: earlier[k] for k in ("date", "command")}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    splits = [(mode, seed) for mode in args.modes for seed in args.seeds]
    log(f"quality benchmark: seeds {args.seeds}, modes {args.modes}, {args.jobs} job(s), config {config_source}")
    done: dict[tuple[str, int], list[dict]] = {}

    def finished(key: tuple[str, int], results: list[dict]) -> None:
        done[key] = results
        meta["wall_minutes"] = (time.time() - started) / 60
        ordered = [r for split in splits if split in done for r in done[split]]
        _write(args.output_dir, meta, ordered, args.modes)  # partial results survive an interrupted run

    if args.jobs == 1:
        for key in splits:
            finished(key, run_split(*key, cached.get(key)))
    else:
        # Each worker is a fresh (spawned) process with one thread, like the run's search workers.
        context = multiprocessing.get_context("spawn")
        initargs = (args.data, config, args.lgbm_trials, epochs)
        with ProcessPoolExecutor(args.jobs, mp_context=context, initializer=_init_worker, initargs=initargs) as pool:
            futures = {pool.submit(run_split, *key, cached.get(key)): key for key in splits}
            for future in as_completed(futures):
                finished(futures[future], future.result())
    meta["wall_minutes"] = (time.time() - started) / 60
    report = _write(args.output_dir, meta, [r for split in splits for r in done[split]], args.modes)
    print(report, flush=True)
    log(f"done in {meta['wall_minutes']:.1f} min: {args.output_dir / 'quality.md'}, {args.output_dir / 'quality.json'}")


def _write(output_dir: Path, meta: dict, results: list[dict], modes: list[str]) -> str:
    done_modes = [mode for mode in modes if any(r["mode"] == mode for r in results)]
    report = markdown_report(meta, results, done_modes)
    (output_dir / "quality.md").write_text(report)
    payload = {"meta": meta, "summary": summarize(results, done_modes), "results": results}
    (output_dir / "quality.json").write_text(json.dumps(payload, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
