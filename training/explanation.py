"""Which features matter overall: scikit-learn's `permutation_importance` on raw rows, through a thin classifier
wrapper (`permutation_importances`). How faithful the per-song attributions are is measured by the trust benchmark
(`bench/trust.py`, `faithfulness`).
"""

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.inspection import permutation_importance

from music_genre.modeling import FEATURE_NAMES, GenreFeatureExtractor, GenreFFNForSequenceClassification
from music_genre.training.trainer import predict_probabilities

PERMUTATION_REPEATS = 5


class RawRowsClassifier(ClassifierMixin, BaseEstimator):
    """A trained model and its feature extractor as a scikit-learn classifier of raw rows (already fitted)."""

    def __init__(self, model: GenreFFNForSequenceClassification, extractor: GenreFeatureExtractor):
        self.model = model
        self.extractor = extractor

    def fit(self, rows: pd.DataFrame, labels: np.ndarray) -> "RawRowsClassifier":
        self.classes_ = np.arange(self.model.config.num_labels)  # nothing is learned: the model was trained before
        return self

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        return predict_probabilities(self.model, self.extractor(rows)["input_features"])

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        return self.predict_proba(rows).argmax(axis=-1)


def permutation_importances(
    model: GenreFFNForSequenceClassification,
    extractor: GenreFeatureExtractor,
    rows: pd.DataFrame,
    labels: np.ndarray,
    n_repeats: int = PERMUTATION_REPEATS,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of the accuracy lost when each raw feature's column is shuffled."""
    raw = rows[list(FEATURE_NAMES)].reset_index(drop=True)
    estimator = RawRowsClassifier(model, extractor).fit(raw, labels)
    result = permutation_importance(
        estimator, raw, np.asarray(labels), scoring="accuracy", n_repeats=n_repeats, random_state=seed
    )
    return {
        name: {"mean": float(mean), "std": float(std)}
        for name, mean, std in zip(FEATURE_NAMES, result.importances_mean, result.importances_std)
    }
