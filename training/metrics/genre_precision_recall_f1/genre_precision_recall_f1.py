"""Precision, recall and F1 per class, or averaged with each class weighted by its support (scikit-learn's)."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

_DESCRIPTION = (
    "scikit-learn's `precision_recall_fscore_support` over the classes 0..num_classes-1, per class: "
    "precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2TP / (2TP + FP + FN), each 0 where its denominator "
    "is 0 (a class never predicted has precision 0). average='weighted' averages them weighted by each class's "
    "support (its number of true rows); average=None returns per-class lists, the supports and scikit-learn's "
    "`confusion_matrix`."
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
    {'precision': 0.8333333333333334, 'recall': 0.6666666666666666, 'f1': 0.6666666666666666}
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


def check_class_ids(name: str, ids: np.ndarray, num_classes: int) -> None:
    """Refuse ids outside [0, num_classes): scikit-learn, given the labels, would leave them out silently."""
    if ids.size and (ids.min() < 0 or ids.max() >= num_classes):
        raise ValueError(f"{name} must be class ids in [0, {num_classes}), got values in [{ids.min()}, {ids.max()}]")


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
        predictions, references = np.asarray(predictions, dtype=np.int64), np.asarray(references, dtype=np.int64)
        for name, ids in (("predictions", predictions), ("references", references)):
            check_class_ids(name, ids, num_classes)
        if average is not None and len(references) == 0:
            raise ValueError("weighted averages need at least one reference")
        classes = list(range(num_classes))  # a class absent from both lists still gets its row, column and zeros
        scores = precision_recall_fscore_support(
            references, predictions, labels=classes, average=average, zero_division=0
        )
        if average is not None:
            return {name: float(value) for name, value in zip(("precision", "recall", "f1"), scores)}
        precision, recall, f1, support = scores
        return {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.tolist(),
            "confusion_matrix": confusion_matrix(references, predictions, labels=classes).tolist(),
        }
