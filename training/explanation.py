"""Why this genre, checked: how faithful the per-song attributions are, and which features matter overall.

`faithfulness` is the issue's deletion check of the Integrated Gradients the pipeline returns with `explain=True`:
on each row, setting the 3 most-attributed raw features to the reference row (training medians) should lower the
predicted genre's probability more than setting 3 random features does. `permutation_importances` is the global
view: scikit-learn's `permutation_importance` on raw rows, through a thin classifier wrapper.
"""

import numpy as np
import pandas as pd
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.inspection import permutation_importance

from music_genre.modeling import FEATURE_NAMES, GenreFeatureExtractor, GenreFFNForSequenceClassification
from music_genre.modeling.pipeline_genre_ffn import feature_attributions
from music_genre.training.trainer import predict_probabilities

PERMUTATION_REPEATS = 5


def faithfulness(
    model: GenreFFNForSequenceClassification,
    extractor: GenreFeatureExtractor,
    features: np.ndarray,
    n_features: int = 3,
    seed: int = 0,
) -> dict:
    """The deletion check on encoded rows: the fraction of rows where referencing the `n_features` most-attributed
    features (largest signed attributions: those pushing the predicted genre up) lowers the predicted genre's
    probability more than referencing `n_features` random ones (one random draw per row), and the mean drops.
    Probabilities are the ones the model serves."""
    features = np.asarray(features, dtype=np.float32)
    rows = np.arange(len(features))
    probabilities = predict_probabilities(model, features)
    predicted = probabilities.argmax(axis=-1)
    attributions = feature_attributions(model, extractor, torch.as_tensor(features), torch.as_tensor(predicted))
    reference = extractor(extractor.reference_row())["input_features"][0]
    names = list(model.config.feature_names)
    column_feature = np.asarray([names.index(name) for name in extractor.column_features])

    def probability_with_reference(chosen: np.ndarray) -> np.ndarray:
        # Each encoded column depends on one raw feature only, so this equals encoding the edited raw row.
        replaced = (column_feature[None, None, :] == chosen[:, :, None]).any(axis=1)
        return predict_probabilities(model, np.where(replaced, reference, features))[rows, predicted]

    most_attributed = np.argsort(-attributions.numpy(), axis=1, kind="stable")[:, :n_features]
    rng = np.random.default_rng(seed)
    random = np.stack([rng.choice(len(names), n_features, replace=False) for _ in rows])
    drop_top = probabilities[rows, predicted] - probability_with_reference(most_attributed)
    drop_random = probabilities[rows, predicted] - probability_with_reference(random)
    return {
        "rows": len(rows),
        "n_features": n_features,
        "fraction_top_beats_random": float((drop_top > drop_random).mean()),
        "mean_drop_top": float(drop_top.mean()),
        "mean_drop_random": float(drop_random.mean()),
    }


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
