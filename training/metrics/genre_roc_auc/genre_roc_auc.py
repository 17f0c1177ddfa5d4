"""Macro one-vs-rest ROC AUC from class probabilities (the Mann-Whitney statistic, ties counted half)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = (
    "For each class, the probability that a random row of that class scores higher for it than a random row of "
    "another class (ties count one half); the macro average over classes."
)
_KWARGS_DESCRIPTION = """
Args:
    prediction_scores (`list[list[float]]`): per row, the probability of each class.
    references (`list[int]`): true class ids.
Returns:
    roc_auc (`float`): the unweighted mean of the per-class one-vs-rest AUCs.
"""


def _average_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks 1..n, tied scores sharing their mean rank."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores), dtype=np.float64)
    ranks[order] = np.arange(1, len(scores) + 1)
    _, tie_group = np.unique(scores, return_inverse=True)
    return (np.bincount(tie_group, ranks) / np.bincount(tie_group))[tie_group]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class GenreRocAuc(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "prediction_scores": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, prediction_scores, references) -> dict:
        scores, references = np.asarray(prediction_scores, dtype=np.float64), np.asarray(references)
        aucs = []
        for k in range(scores.shape[1]):
            positive = references == k
            n_positive, n_negative = positive.sum(), (~positive).sum()
            if n_positive == 0 or n_negative == 0:
                raise ValueError(f"class {k} needs rows on both sides to define a one-vs-rest AUC")
            rank_sum = _average_ranks(scores[:, k])[positive].sum()
            aucs.append((rank_sum - n_positive * (n_positive + 1) / 2) / (n_positive * n_negative))
        return {"roc_auc": float(np.mean(aucs))}
