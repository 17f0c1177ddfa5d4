"""Precision, recall and F1 per genre, or averaged with each genre weighted by its support."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "Per class: precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R), each 0 where undefined. "
    "average='weighted' averages them weighted by the number of true rows of each class; average=None returns lists."
)
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted class ids.
    references (`list[int]`): true class ids.
    num_classes (`int`): number of classes.
    average (`str` or None): "weighted" or None.
Returns:
    precision, recall, f1 (`float`, or `list[float]` per class when average is None), and support per class.
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GenrePrecisionRecallF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, num_classes: int, average: str | None = "weighted") -> dict:
        predictions, references = np.asarray(predictions), np.asarray(references)
        matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
        np.add.at(matrix, (references, predictions), 1)
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
            }
        if average != "weighted":
            raise ValueError(f"average must be 'weighted' or None, got {average!r}")
        weights = support / support.sum()
        return {
            name: float(values @ weights) for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
        }
