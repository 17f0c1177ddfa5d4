"""Macro one-vs-rest ROC AUC from class probabilities (the Mann-Whitney statistic, ties counted half)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "For each class, the probability that a random row of that class scores higher for it than a random row of "
    "another class, tied scores counting one half (the Mann-Whitney U statistic over n_pos * n_neg, computed from "
    "average ranks); the macro average is the unweighted mean over classes. Every class needs rows on both sides."
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


def average_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..n of the scores, tied scores sharing their mean rank."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    _, tie_group = np.unique(scores, return_inverse=True)
    return (np.bincount(tie_group, ranks) / np.bincount(tie_group))[tie_group]


def one_vs_rest_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUC of `scores` separating the `positive` rows from the others: (rank sum - n_pos(n_pos+1)/2) / (n_pos n_neg)."""
    n_positive = int(positive.sum())
    n_negative = len(positive) - n_positive
    rank_sum = average_ranks(scores)[positive].sum()
    return float((rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))


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
        per_class = []
        for k in range(scores.shape[1]):
            positive = references == k
            if positive.all() or not positive.any():
                raise ValueError(f"class {k} needs rows on both sides to define a one-vs-rest AUC")
            per_class.append(one_vs_rest_auc(scores[:, k], positive))
        return {"roc_auc": float(np.mean(per_class)), "per_class": per_class}
