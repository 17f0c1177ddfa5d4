"""The one metric definition: `evaluate` modules shipped in `training/metrics/`, loaded by path (works offline).

`compute_metrics` is what `transformers.Trainer` calls on each evaluation; `test_metrics` is the results table
of one model on the test split; both report the same five metrics, computed by the same modules.
"""

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
MODULES = ("genre_accuracy", "genre_precision_recall_f1", "genre_roc_auc")
# The five summary metrics, each key with the name a reader sees: every table, report and card takes them from here.
SUMMARY_METRICS = {
    "accuracy": "accuracy",
    "precision_weighted": "weighted precision",
    "recall_weighted": "weighted recall",
    "f1_weighted": "weighted F1",
    "roc_auc_macro": "macro one-vs-rest ROC AUC",
}


@cache
def metric_module(name: str) -> evaluate.EvaluationModule:
    """One shipped module, loaded once per process; a local directory needs neither the Hub nor the network."""
    if name not in MODULES:
        raise ValueError(f"unknown metric module {name!r}; shipped: {MODULES}")
    # In memory: no cache files, so concurrent search workers never share an experiment's lock files.
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from logits, row by row."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))  # shift first: exp never overflows
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _checked(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels as int64 ids and probabilities as a float64 (rows, genres) array, one row per label."""
    labels, probabilities = np.asarray(labels).astype(np.int64), np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or len(probabilities) != len(labels) or probabilities.shape[1] < 2:
        raise ValueError(
            f"probabilities must be ({len(labels)}, number of genres) for {len(labels)} labels, "
            f"got {probabilities.shape}"
        )
    if len(labels) and not 0 <= labels.min() <= labels.max() < probabilities.shape[1]:
        raise ValueError(
            f"labels must be genre ids 0..{probabilities.shape[1] - 1}, got {labels.min()}..{labels.max()}"
        )
    return labels, probabilities


def summary_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, weighted precision/recall/F1 and macro one-vs-rest ROC AUC; predictions are the argmax."""
    labels, probabilities = _checked(labels, probabilities)
    predictions = probabilities.argmax(axis=-1)
    accuracy = metric_module("genre_accuracy").compute(predictions=predictions, references=labels)
    prf = metric_module("genre_precision_recall_f1").compute(
        predictions=predictions, references=labels, num_classes=probabilities.shape[1], average="weighted"
    )
    auc = metric_module("genre_roc_auc").compute(prediction_scores=probabilities, references=labels)
    values = (accuracy["accuracy"], prf["precision"], prf["recall"], prf["f1"], auc["roc_auc"])
    return dict(zip(SUMMARY_METRICS, values, strict=True))


def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """For `Trainer(compute_metrics=...)`: the five summary metrics from the logits and labels of an evaluation."""
    logits = eval_pred.predictions
    if isinstance(logits, tuple):
        logits = logits[0]  # a model returning extra outputs puts the logits first
    return summary_metrics(np.asarray(eval_pred.label_ids), softmax(logits))


def test_metrics(labels: np.ndarray, probabilities: np.ndarray, genres: Sequence[str]) -> dict:
    """The results table of one model: summary metrics, per-genre metrics (by the name `genres[i]` of label id i),
    confusion matrix and row count.

    Plain Python numbers only, so the table goes straight into `metrics.json`.
    """
    labels, probabilities = _checked(labels, probabilities)
    if len(genres) != probabilities.shape[1]:
        raise ValueError(f"{len(genres)} genre names for probabilities of {probabilities.shape[1]} genres")
    per_class = metric_module("genre_precision_recall_f1").compute(
        predictions=probabilities.argmax(axis=-1), references=labels, num_classes=len(genres), average=None
    )
    return {
        **summary_metrics(labels, probabilities),
        "per_genre": {
            genre: {name: per_class[name][i] for name in ("precision", "recall", "f1", "support")}
            for i, genre in enumerate(genres)
        },
        "confusion_matrix": per_class["confusion_matrix"],
        "rows": len(labels),
    }


test_metrics.__test__ = False  # a metric function, not a pytest test


# Equal-width confidence bins of the top-label expected calibration error (Guo et al., 2017).
ECE_BINS = 15


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Rows, mean top-label confidence and accuracy per equal-width confidence bin ((b/15, (b+1)/15]; empty bins
    give NaN means)."""
    labels, probabilities = _checked(labels, probabilities)
    confidence, correct = probabilities.max(axis=-1), probabilities.argmax(axis=-1) == labels
    bins = np.clip(np.ceil(confidence * ECE_BINS).astype(np.int64) - 1, 0, ECE_BINS - 1)
    counts = np.bincount(bins, minlength=ECE_BINS)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=ECE_BINS) / counts
        accuracy = np.bincount(bins, weights=correct.astype(np.float64), minlength=ECE_BINS) / counts
    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    return {"edges": edges, "counts": counts, "confidence": mean_confidence, "accuracy": accuracy}


def calibration_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """How far the probabilities can be taken at their word: top-label expected calibration error (15 equal-width
    bins), negative log-likelihood (natural log) and multiclass Brier score (squared error summed over genres)."""
    labels, probabilities = _checked(labels, probabilities)
    bins = reliability_bins(labels, probabilities)
    filled = bins["counts"] > 0
    gaps = np.abs(bins["accuracy"][filled] - bins["confidence"][filled])
    ece = float((bins["counts"][filled] * gaps).sum() / len(labels))
    rows = np.arange(len(labels))
    nll = float(-np.log(np.clip(probabilities[rows, labels], np.finfo(np.float64).tiny, None)).mean())
    one_hot = np.zeros_like(probabilities)
    one_hot[rows, labels] = 1.0
    brier = float(((probabilities - one_hot) ** 2).sum(axis=-1).mean())
    return {"ece": ece, "nll": nll, "brier": brier}
