"""`music-genre train`: the paper's whole method as one reproducible run, and `music-genre evaluate`.

Order: load and clean, split 80/10/10, fit the feature extractor on train, SMOTE
on the encoded training split; train the paper's first design; search with
Optuna through `Trainer.hyperparameter_search`; retrain the best trial; test
once. Everything lands in one run folder (see README, "The run folder").
"""

import json
import logging
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

from modeling import GENRES, GenreFeatureExtractor, GenreFFNForSequenceClassification, save_model_folder
from training import figures
from training.calibration import calibrate
from training.data import GenreData, load_data, prepare_splits, split_indices
from training.environment import compute_record, evaluation_record, software_versions
from training.scoring import test_metrics
from training.search import SearchSettings, best_trial, hyperparameters_from, run_search, slot_of, trials_frame
from training.trainer import PAPER_INITIAL, SELECTION_METRIC, fit, predict_probabilities
from training.trust import trust_report

logger = logging.getLogger("music_genre")

# The published figures this project reproduces and has to beat (test split).
PAPER = {
    "initial": {"accuracy": 0.5514, "f1_weighted": 0.5392, "roc_auc_macro": 0.9115},
    "tuned": {"accuracy": 0.5952, "f1_weighted": 0.5937, "roc_auc_macro": 0.9338},
}
SUMMARY_METRICS = ("accuracy", "precision_weighted", "recall_weighted", "f1_weighted", "roc_auc_macro")
RUN_INFO = "training_run.json"


@dataclass
class RunOptions:
    data: str | None = None
    output: Path = field(default_factory=lambda: Path("runs/latest"))
    seed: int = 42
    split: str = "stratified"
    n_trials: int = 30
    timeout: float | None = None
    storage: str | None = None
    workers: int = 1
    trial_batch: int = 8
    encoding: str = "quantile-normal+log-standard"
    members: int = 3
    max_epochs: int = 25
    inference_dtype: str = "bfloat16"

    def command(self) -> str:
        """The exact command that reproduces this run."""
        parts = ["music-genre", "train", "--data", str(self.data), "--output", str(self.output)]
        parts += ["--seed", str(self.seed), "--split", self.split, "--n-trials", str(self.n_trials)]
        parts += ["--encoding", self.encoding, "--members", str(self.members), "--max-epochs", str(self.max_epochs)]
        parts += ["--inference-dtype", self.inference_dtype]
        if self.timeout is not None:
            parts += ["--timeout", str(self.timeout)]
        if self.storage is not None:
            parts += ["--storage", self.storage]
        parts += ["--trial-batch", str(self.trial_batch), "--workers", str(self.workers)]
        return shlex.join(parts)


def train_run(options: RunOptions) -> Path:
    """Run the whole method; returns the run folder."""
    torch.set_num_threads(1)
    started = time.perf_counter()
    out = Path(options.output)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    logger.info("run folder: %s", out.resolve())

    data = load_data(options.data)
    options.data = data.report["source"]
    extractor = GenreFeatureExtractor(numeric_encoding=options.encoding)
    prepared = prepare_splits(data, extractor, options.seed, options.split)
    test_rows = data.frame.iloc[prepared.indices["test"]]
    _write_json(out / "data_report.json", _data_report(data, prepared))
    _write_json(out / "splits.json", {name: rows.tolist() for name, rows in prepared.indices.items()})

    initial_settings = replace(PAPER_INITIAL, epochs=min(PAPER_INITIAL.epochs, options.max_epochs))
    logger.info("initial model: the paper's first design %s", initial_settings.to_dict())
    initial = fit(prepared, extractor, initial_settings, out / "checkpoints" / "initial", options.seed)
    initial_metrics = score(initial.model, extractor, test_rows, prepared.labels["test"])

    settings = SearchSettings(
        n_trials=options.n_trials,
        seed=options.seed,
        storage=options.storage or str(out / "optuna-study.journal"),
        study_name=f"genre-ffn-{options.split}-seed{options.seed}",
        timeout=options.timeout,
        workers=options.workers,
        max_epochs=options.max_epochs,
        trial_batch=options.trial_batch,
    )
    logger.info("search: %d trials, %d worker(s), study %s", options.n_trials, options.workers, settings.storage)
    # The search sees train and validation only: its objective can never read the test split.
    search_started = time.perf_counter()
    study = run_search(
        prepared.only("train", "validation"),
        extractor,
        settings,
        out / "checkpoints" / "search",
        options.storage is None,
    )
    search_seconds = time.perf_counter() - search_started
    trials = trials_frame(study)
    trials.to_csv(out / "trials.csv", index=False)
    chosen = best_trial(study)
    best = hyperparameters_from(chosen.params, options.members)

    logger.info("final model: best trial %d, %s", slot_of(chosen), best.to_dict())
    final_started = time.perf_counter()
    tuned = fit(prepared, extractor, best, out / "checkpoints" / "tuned", options.seed)
    final_seconds = time.perf_counter() - final_started
    # How the saved model computes at inference; its test figures below are measured that way.
    tuned.model.config.inference_dtype = options.inference_dtype
    # Temperature and conformal sets, fitted on validation and stored in the config the saved folder serves.
    calibrate(tuned.model, prepared.features["validation"], prepared.labels["validation"])
    save_model_folder(tuned.model, extractor, out / "model")
    run_info = {
        "seed": options.seed,
        "split_mode": options.split,
        "data_sha256": data.sha256,
        "data_source": options.data,
        "command": options.command(),
    }
    _write_json(out / "model" / RUN_INFO, run_info)
    tuned_metrics = evaluate_folder(out / "model", data)

    metrics = {
        "seed": options.seed,
        "split_mode": options.split,
        "data_sha256": data.sha256,
        "selection_metric": f"validation {SELECTION_METRIC}",
        "best_hyperparameters": best.to_dict(),
        "search": {
            "n_trials": options.n_trials,
            "best_trial": slot_of(chosen),
            "best_validation": chosen.value,
            "objective": f"best validation {SELECTION_METRIC} of the trial",
        },
        "initial": {**initial_metrics, "hyperparameters": initial_settings.to_dict()},
        "tuned": {**tuned_metrics, "hyperparameters": best.to_dict()},
        **trust_report(tuned.model, extractor, test_rows, prepared.labels["test"], out / "figures", options.seed),
        "paper": PAPER,
        # What the card reports of the run: how the test figures were computed, its timings and software.
        "evaluation": evaluation_record(tuned.model, len(test_rows)),
        "compute": compute_record(time.perf_counter() - started, search_seconds, final_seconds, options.workers),
        "software": software_versions(),
    }
    _write_json(out / "metrics.json", metrics)
    write_run_figures(out / "figures", data, prepared, extractor, tuned, trials)
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    print(results_table(metrics))
    logger.info("done: model, metrics.json, trials.csv, data_report.json and figures/ in %s", out.resolve())
    return out


def score(model: GenreFFNForSequenceClassification, extractor: GenreFeatureExtractor, rows, labels: np.ndarray) -> dict:
    """Test figures of a model on raw rows, encoded by its own feature extractor."""
    probabilities = predict_probabilities(model, extractor(rows)["input_features"])
    return test_metrics(labels, probabilities)


def evaluate_folder(model_dir: Path, data: GenreData | str | None = None, allow_other_data: bool = False) -> dict:
    """Recompute a saved model's test figures on the split its run recorded."""
    run_info = json.loads((Path(model_dir) / RUN_INFO).read_text())
    if not isinstance(data, GenreData):
        data = load_data(data or run_info["data_source"])
    if data.sha256 != run_info["data_sha256"] and not allow_other_data:
        raise ValueError(
            f"the data's sha256 {data.sha256} differs from the run's {run_info['data_sha256']}: "
            "its split would not be the run's (pass --allow-other-data to evaluate anyway)"
        )
    test = split_indices(data, run_info["seed"], run_info["split_mode"])["test"]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    return score(model, extractor, data.frame.iloc[test], data.labels[test])


def write_data_figures(folder: Path, data: GenreData, prepared, extractor, seed: int) -> None:
    """Transforms, PCA and t-SNE of the real training rows (before SMOTE's), as the fitted extractor encodes them."""
    train_rows = prepared.indices["train"]
    encoded = prepared.features["train"][: len(train_rows)]
    labels = prepared.labels["train"][: len(train_rows)]
    figures.plot_log_transforms(data.frame.iloc[train_rows], extractor, folder / "log_transform.png")
    figures.plot_pca(encoded, labels, folder / "pca.png")
    figures.plot_tsne(encoded, labels, folder / "tsne.png", seed=seed)


def write_run_figures(folder: Path, data: GenreData, prepared, extractor, tuned, trials) -> None:
    write_data_figures(folder, data, prepared, extractor, seed=0)
    figures.plot_loss_curves(tuned.state.log_history, folder / "loss_curves.png")
    probabilities = predict_probabilities(tuned.model, prepared.features["test"])
    figures.plot_roc_curves(prepared.labels["test"], probabilities, folder / "roc_curves.png")
    matrix = test_metrics(prepared.labels["test"], probabilities)["confusion_matrix"]
    figures.plot_confusion_matrix(matrix, folder / "confusion_matrix.png")
    figures.plot_optimization_history(trials, folder / "optimization_history.png")


def write_eda_figures(source: str | None, output: Path, seed: int = 42, split: str = "stratified") -> Path:
    """`music-genre eda`: the data figures (log transforms, PCA, t-SNE) from a fresh train-only fit."""
    output.mkdir(parents=True, exist_ok=True)
    data = load_data(source)
    extractor = GenreFeatureExtractor()
    prepared = prepare_splits(data, extractor, seed, split)
    write_data_figures(output, data, prepared, extractor, seed)
    _write_json(output / "data_report.json", _data_report(data, prepared))
    return output


def results_table(metrics: dict) -> str:
    """Initial vs tuned vs the paper's published figures, as the terminal shows them."""
    lines = [f"{'test split':<20}{'initial':>10}{'tuned':>10}{'paper initial':>15}{'paper tuned':>13}"]
    for name in SUMMARY_METRICS:
        paper = [metrics["paper"][stage].get(name) for stage in ("initial", "tuned")]
        cells = [f"{metrics[stage][name]:>10.4f}" for stage in ("initial", "tuned")]
        cells += [f"{value:>15.4f}" if value is not None else f"{'-':>15}" for value in paper[:1]]
        cells += [f"{value:>13.4f}" if value is not None else f"{'-':>13}" for value in paper[1:]]
        lines.append(f"{name:<20}" + "".join(cells))
    return "\n".join(lines)


def _data_report(data: GenreData, prepared) -> dict:
    return {
        **data.report,
        "sha256": data.sha256,
        "split_sizes": {name: len(rows) for name, rows in prepared.indices.items()},
        "train_rows_after_smote": len(prepared.labels["train"]),
        "genres": list(GENRES),
    }


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=_plain) + "\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
