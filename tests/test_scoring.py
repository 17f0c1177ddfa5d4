"""Each shipped `evaluate` module (scikit-learn's metrics behind `evaluate`'s interface) against scikit-learn called
directly on the same predictions, to the last digit, and the two scoring entry points."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax as scipy_softmax
from sklearn.metrics import (
    accuracy_score,
    classification_report,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_auc_score,
)
from transformers import EvalPrediction

from music_genre.training.scoring import (
    SUMMARY_METRICS,
    compute_metrics,
    metric_module,
    softmax,
    summary_metrics,
    test_metrics,
)
from tests.conftest import GENRES

NEVER_PREDICTED = 7


@pytest.fixture(scope="module")
def predictions():
    """Coarse probabilities (multiples of 1/20, rows summing to 1), so many ties; genre 7 scores 0: never predicted."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(GENRES), 3000)
    logits = rng.normal(size=(3000, len(GENRES))) + 1.5 * np.eye(len(GENRES))[labels]
    logits[:, NEVER_PREDICTED] = -np.inf
    probabilities = np.stack([rng.multinomial(20, row) for row in softmax(logits)]) / 20
    predicted = probabilities.argmax(axis=1)
    # The fixture must hold what it claims, or the comparisons below prove less than they say.
    assert NEVER_PREDICTED not in predicted and (labels == NEVER_PREDICTED).any()
    assert all(len(np.unique(column)) < 25 for column in probabilities.T)
    return labels, probabilities, predicted


def test_modules_load_by_path_offline_into_the_private_hf_home():
    import evaluate.config

    assert os.environ["HF_EVALUATE_OFFLINE"] == "1" and evaluate.config.HF_EVALUATE_OFFLINE
    for name in ("genre_accuracy", "genre_precision_recall_f1", "genre_roc_auc"):
        module = metric_module(name)
        assert module.name == name and module.citation and module.description
        assert metric_module(name) is module  # loaded once
    # The copy evaluate imports lands under the tests' temporary HF_HOME, not the user's cache.
    copies = Path(os.environ["HF_HOME"], "modules", "evaluate_modules", "metrics")
    assert {path.name for path in copies.iterdir() if path.is_dir()} >= {"genre_accuracy", "genre_roc_auc"}


def test_accuracy_equals_scikit_learn(predictions):
    labels, _, predicted = predictions
    ours = metric_module("genre_accuracy").compute(predictions=predicted, references=labels)["accuracy"]
    assert ours == accuracy_score(labels, predicted)


def test_weighted_precision_recall_f1_equal_scikit_learn(predictions):
    labels, _, predicted = predictions
    ours = metric_module("genre_precision_recall_f1").compute(
        predictions=predicted, references=labels, num_classes=len(GENRES), average="weighted"
    )
    theirs = precision_recall_fscore_support(labels, predicted, average="weighted", zero_division=0)
    assert [ours["precision"], ours["recall"], ours["f1"]] == list(theirs[:3])


def test_macro_roc_auc_equals_scikit_learn_with_ties(predictions):
    labels, probabilities, _ = predictions
    ours = metric_module("genre_roc_auc").compute(prediction_scores=probabilities, references=labels)
    theirs = roc_auc_score(labels, probabilities, multi_class="ovr", average="macro")
    assert ours["roc_auc"] == theirs
    for k, auc in enumerate(ours["per_class"]):
        assert auc == roc_auc_score(labels == k, probabilities[:, k])
    assert ours["per_class"][NEVER_PREDICTED] == 0.5  # one score for every row: all ties


def test_roc_auc_is_the_pairwise_definition():
    # Positives 0.9, 0.5, 0.5 against negatives 0.5, 0.1: 6 pairs, the two 0.5-0.5 ties count half.
    scores = np.array([[0.1, 0.9], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.9, 0.1]])
    result = metric_module("genre_roc_auc").compute(prediction_scores=scores, references=[1, 1, 1, 0, 0])
    assert result["per_class"][1] == pytest.approx(5 / 6)
    with pytest.raises(ValueError, match="both sides"):
        metric_module("genre_roc_auc").compute(prediction_scores=scores, references=[1, 1, 1, 1, 1])


def test_compute_metrics_through_an_eval_prediction(predictions):
    labels = predictions[0]
    logits = np.random.default_rng(1).normal(size=(len(labels), len(GENRES))) + 2.0 * np.eye(len(GENRES))[labels]
    from_trainer = compute_metrics(EvalPrediction(predictions=logits, label_ids=labels))
    assert tuple(from_trainer) == tuple(SUMMARY_METRICS)
    probabilities, predicted = scipy_softmax(logits, axis=1), logits.argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(labels, predicted, average="weighted", zero_division=0)
    assert from_trainer == pytest.approx(
        {
            "accuracy": accuracy_score(labels, predicted),
            "precision_weighted": precision,
            "recall_weighted": recall,
            "f1_weighted": f1,
            "roc_auc_macro": roc_auc_score(labels, probabilities, multi_class="ovr", average="macro"),
        },
        abs=1e-12,
    )
    # A model that returns extra outputs hands Trainer a tuple with the logits first.
    from_tuple = compute_metrics(EvalPrediction(predictions=(logits, np.zeros(3)), label_ids=labels))
    assert from_tuple == from_trainer


def test_results_table_equals_scikit_learns_report(predictions):
    labels, probabilities, predicted = predictions
    table = test_metrics(labels, probabilities, GENRES)
    report = classification_report(
        labels, predicted, labels=range(len(GENRES)), target_names=GENRES, output_dict=True, zero_division=0
    )
    for genre in GENRES:
        ours, theirs = table["per_genre"][genre], report[genre]
        assert [ours["precision"], ours["recall"], ours["f1"]] == pytest.approx(
            [theirs["precision"], theirs["recall"], theirs["f1-score"]], abs=1e-12
        )
        assert ours["support"] == theirs["support"]
    assert table["per_genre"][GENRES[NEVER_PREDICTED]]["precision"] == 0.0
    assert table["f1_weighted"] == pytest.approx(report["weighted avg"]["f1-score"], abs=1e-12)
    assert table["confusion_matrix"] == confusion_matrix(labels, predicted, labels=range(len(GENRES))).tolist()
    assert table["rows"] == len(labels)
    assert table == json.loads(json.dumps(table))  # plain Python numbers: metrics.json takes it as it is


def test_bad_shapes_are_refused(predictions):
    labels, probabilities, _ = predictions
    with pytest.raises(ValueError, match="probabilities must be"):
        test_metrics(labels[:-1], probabilities, GENRES)
    with pytest.raises(ValueError, match=r"labels must be genre ids 0\.\.8, got 0\.\.9"):
        summary_metrics(labels, probabilities[:, :-1])  # a genre more in the labels than the probabilities have
    with pytest.raises(ValueError, match="probabilities must be"):
        summary_metrics(labels, probabilities[:, 0])


def test_the_classes_are_the_arguments_not_ten_genres():
    # Three classes, class 2 absent from both lists: it still gets its row, column and zeros.
    prf = metric_module("genre_precision_recall_f1")
    table = prf.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0], num_classes=3, average=None)
    assert table["confusion_matrix"] == [[2, 1, 0], [0, 1, 0], [0, 0, 0]]
    assert table["support"] == [3, 1, 0] and table["precision"] == [1.0, 0.5, 0.0]
    # Given the classes, scikit-learn would silently leave an id outside them out of the averages.
    with pytest.raises(ValueError, match=r"references must be class ids in \[0, 3\), got values in \[0, 3\]"):
        prf.compute(predictions=[0, 1, 2], references=[0, 1, 3], num_classes=3)
    scores = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.3, 0.3, 0.4]])
    auc = metric_module("genre_roc_auc").compute(prediction_scores=scores, references=[0, 1, 2, 2])
    assert len(auc["per_class"]) == 3 and auc["roc_auc"] == roc_auc_score([0, 1, 2, 2], scores, multi_class="ovr")
