"""Precision, recall and F1 per class from the confusion matrix, or averaged with each class weighted by its support."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "From the confusion matrix (rows true class, columns predicted class), per class: precision = TP / (TP + FP), "
    "recall = TP / (TP + FN), F1 = 2PR / (P + R), each 0 where its denominator is 0 (a class never predicted has "
    "precision 0). average='weighted' averages them weighted by each class's support (its number of true rows); "
    "average=None returns per-class lists, the supports and the confusion matrix."
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids in [0, num_classes).
    references (`list[int]`): true class ids in [0, num_classes).
    num_classes (`int`): number of classes; classes absent from both lists still get a row and a column.
    average (`str` or None): "weighted" (default) or None.
Returns:
    average="weighted": precision, recall, f1 (`float`).
    average=None: precision, recall, f1 (`list[float]` per class), support (`list[int]` per class) and
    confusion_matrix (`list[list[int]]`, rows true class, columns predicted class).
Examples:
    >>> prf = evaluate.load("training/metrics/genre_precision_recall_f1")
    >>> prf.compute(predictions=[0, 0, 1], references=[0, 1, 1], num_classes=2)
    {'precision': 0.8333333333333333, 'recall': 0.6666666666666666, 'f1': 0.6666666666666666}
"""
_CITATION = """\
@article{sokolova2009systematic,
  title={A systematic analysis of performance measures for classification tasks},
  author={Sokolova, Marina and Lapalme, Guy},
  journal={Information Processing \\& Management},
  volume={45},
  number={4},
  pages={427--437},
  year={2009}
}
"""


def confusion_matrix(predictions: np.ndarray, references: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class) pairs, num_classes x num_classes."""
    for name, ids in (("predictions", predictions), ("references", references)):
        if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
            raise ValueError(
                f"{name} must be class ids in [0, {num_classes}), got values in [{ids.min()}, {ids.max()}]"
            )
    return np.bincount(references * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, -1)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GenrePrecisionRecallF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
            reference_urls=[
                "https://scikit-learn.org/stable/modules/model_evaluation.html#precision-recall-f-measure-metrics"
            ],
        )

    def _compute(self, predictions, references, num_classes: int, average: str | None = "weighted") -> dict:
        if average not in ("weighted", None):
            raise ValueError(f"average must be 'weighted' or None, got {average!r}")
        references = np.asarray(references, dtype=np.int64)
        matrix = confusion_matrix(np.asarray(predictions, dtype=np.int64), references, num_classes)
        true_positives = np.diag(matrix).astype(np.float64)
        predicted, support = matrix.sum(axis=0), matrix.sum(axis=1)
        precision = np.divide(true_positives, predicted, out=np.zeros(num_classes), where=predicted > 0)
        recall = np.divide(true_positives, support, out=np.zeros(num_classes), where=support > 0)
        total = precision + recall
        f1 = np.divide(2 * precision * recall, total, out=np.zeros(num_classes), where=total > 0)
        if average is None:
            return {
                "precision": precision.tolist(),
                "recall": recall.tolist(),
                "f1": f1.tolist(),
                "support": support.tolist(),
                "confusion_matrix": matrix.tolist(),
            }
        if support.sum() == 0:
            raise ValueError("weighted averages need at least one reference")
        weights = support / support.sum()
        return {
            name: float(values @ weights) for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
        }
