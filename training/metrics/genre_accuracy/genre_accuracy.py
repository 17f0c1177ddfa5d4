"""Accuracy: the share of predictions equal to the reference genre."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy = correct predictions / all predictions."
_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[int]`): predicted genre ids.
    references (`list[int]`): true genre ids.
Returns:
    accuracy (`float`): in [0, 1].
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GenreAccuracy(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references) -> dict:
        return {"accuracy": float(np.mean(np.asarray(predictions) == np.asarray(references)))}
