"""The one metric definition: `evaluate` modules shipped in `training/metrics/`, loaded by path (works offline)."""

from functools import cache
from pathlib import Path

import evaluate
import numpy as np
from transformers import EvalPrediction

from modeling import GENRES

METRICS_DIR = Path(__file__).resolve().parent / "metrics"
MODULES = ("genre_accuracy", "genre_precision_recall_f1", "genre_roc_auc")


@cache
def metric_module(name: str) -> evaluate.EvaluationModule:
    return evaluate.load(str(METRICS_DIR / name), keep_in_memory=True)


def summary_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """Accuracy, weighted precision/recall/F1 and macro one-vs-rest ROC AUC."""
    predictions = probabilities.argmax(axis=-1)
    prf = metric_module("genre_precision_recall_f1").compute(
        predictions=predictions, references=labels, num_classes=len(GENRES), average="weighted"
    )
    return {
        "accuracy": metric_module("genre_accuracy").compute(predictions=predictions, references=labels)["accuracy"],
        "precision_weighted": prf["precision"],
        "recall_weighted": prf["recall"],
        "f1_weighted": prf["f1"],
        "roc_auc_macro": metric_module("genre_roc_auc").compute(prediction_scores=probabilities, references=labels)[
            "roc_auc"
        ],
    }


def compute_metrics(eval_pred: EvalPrediction) -> dict[str, float]:
    """For `Trainer`: the summary figures from logits."""
    logits = np.asarray(eval_pred.predictions, dtype=np.float64)
    probabilities = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    return summary_metrics(np.asarray(eval_pred.label_ids), probabilities)


def test_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict:
    """The paper's results table for one model: summary figures, per-genre figures, confusion matrix."""
    predictions = probabilities.argmax(axis=-1)
    per_class = metric_module("genre_precision_recall_f1").compute(
        predictions=predictions, references=labels, num_classes=len(GENRES), average=None
    )
    matrix = np.zeros((len(GENRES), len(GENRES)), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return {
        **summary_metrics(labels, probabilities),
        "per_genre": {
            genre: {name: per_class[name][i] for name in ("precision", "recall", "f1", "support")}
            for i, genre in enumerate(GENRES)
        },
        "confusion_matrix": matrix.tolist(),
        "rows": len(labels),
    }


test_metrics.__test__ = False  # a metric function, not a pytest test
