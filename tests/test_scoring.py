"""Each shipped `evaluate` module against scikit-learn on the same predictions."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support, roc_auc_score
from transformers import EvalPrediction

from modeling import GENRES
from training.scoring import compute_metrics, metric_module, summary_metrics, test_metrics


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 3000)
    logits = rng.normal(size=(3000, 10)) + 1.5 * np.eye(10)[labels]
    logits[:, 7] = -50.0  # genre 7 is never predicted: precision 0 by convention
    logits[::3, 2] = np.round(logits[::3, 2])  # ties in the scores
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, logits, probabilities


def test_modules_load_by_path_offline():
    import os

    assert os.environ["HF_EVALUATE_OFFLINE"] == "1" and os.environ["HF_HUB_OFFLINE"] == "1"
    assert metric_module("genre_accuracy").name == "genre_accuracy"


def test_each_module_equals_scikit_learn(predictions):
    labels, _, probabilities = predictions
    predicted = probabilities.argmax(axis=1)
    accuracy = metric_module("genre_accuracy").compute(predictions=predicted, references=labels)["accuracy"]
    assert accuracy == pytest.approx(accuracy_score(labels, predicted), abs=1e-12)
    ours = metric_module("genre_precision_recall_f1").compute(
        predictions=predicted, references=labels, num_classes=10, average="weighted"
    )
    theirs = precision_recall_fscore_support(labels, predicted, average="weighted", zero_division=0)
    assert [ours["precision"], ours["recall"], ours["f1"]] == pytest.approx(theirs[:3], abs=1e-12)
    auc = metric_module("genre_roc_auc").compute(prediction_scores=probabilities, references=labels)["roc_auc"]
    assert auc == pytest.approx(roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"), abs=1e-12)


def test_trainer_metrics_and_the_results_table(predictions):
    labels, logits, probabilities = predictions
    from_logits = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert from_logits == pytest.approx(summary_metrics(labels, probabilities), abs=1e-12)
    table = test_metrics(labels, probabilities)
    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, zero_division=0)
    for i, genre in enumerate(GENRES):
        row = table["per_genre"][genre]
        assert [row["precision"], row["recall"], row["f1"]] == pytest.approx([precision[i], recall[i], f1[i]])
        assert row["support"] == support[i]
    assert table["per_genre"][GENRES[7]]["precision"] == 0.0
    assert table["confusion_matrix"] == confusion_matrix(labels, predicted, labels=range(10)).tolist()
    assert table["rows"] == 3000
