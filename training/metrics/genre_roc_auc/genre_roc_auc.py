"""Macro one-vs-rest ROC AUC from class scores (scikit-learn's `roc_auc_score`)."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import roc_auc_score

_DESCRIPTION = (
    "For each class, the area under the ROC curve of its score separating its rows from all others: the "
    "probability that a random row of that class scores higher for it than a random row of another class, tied "
    "scores counting one half (scikit-learn's `roc_auc_score` on the one-hot references, one AUC per class); the "
    "macro average is the unweighted mean over classes, as `roc_auc_score(multi_class='ovr', average='macro')`. "
    "Every class needs rows on both sides."
)
_KWARGS_DESCRIPTION = """
Args:
    prediction_scores (`list[list[float]]`): per row, the probability (or any score) of each class.
    references (`list[int]`): true class ids, column k of prediction_scores scoring class k.
Returns:
    roc_auc (`float`): the unweighted mean of the per-class one-vs-rest AUCs.
    per_class (`list[float]`): each class's one-vs-rest AUC.
Examples:
    >>> roc_auc = evaluate.load("training/metrics/genre_roc_auc")
    >>> roc_auc.compute(prediction_scores=[[0.8, 0.2], [0.4, 0.6], [0.5, 0.5]], references=[0, 1, 1])
    {'roc_auc': 1.0, 'per_class': [1.0, 1.0]}
"""
_CITATION = """\
@article{hanley1982meaning,
  title={The meaning and use of the area under a receiver operating characteristic (ROC) curve},
  author={Hanley, James A. and McNeil, Barbara J.},
  journal={Radiology},
  volume={143},
  number={1},
  pages={29--36},
  year={1982}
}
@article{fawcett2006introduction,
  title={An introduction to ROC analysis},
  author={Fawcett, Tom},
  journal={Pattern Recognition Letters},
  volume={27},
  number={8},
  pages={861--874},
  year={2006}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GenreRocAuc(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "prediction_scores": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/model_evaluation.html#roc-metrics"],
        )

    def _compute(self, prediction_scores, references) -> dict:
        scores, references = np.asarray(prediction_scores, dtype=np.float64), np.asarray(references)
        if scores.ndim != 2 or len(scores) != len(references):
            raise ValueError(
                f"prediction_scores must be (rows, classes) for {len(references)} rows, got {scores.shape}"
            )
        positive = references.reshape(-1, 1) == np.arange(scores.shape[1])
        one_sided = np.flatnonzero(positive.all(axis=0) | ~positive.any(axis=0))
        if one_sided.size:
            raise ValueError(f"class {one_sided[0]} needs rows on both sides to define a one-vs-rest AUC")
        # The one-hot form takes any scores; the multiclass form would insist that each row's sum to 1.
        per_class = roc_auc_score(positive, scores, average=None).tolist()
        return {"roc_auc": float(np.mean(per_class)), "per_class": per_class}
