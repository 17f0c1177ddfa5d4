"""What the run reports about trusting a prediction, measured once on the test split at the end of the run:
calibration before and after the temperature, conformal set coverage per level, and permutation importance, with
the reliability diagram and the permutation-importance figure."""

from pathlib import Path

import numpy as np
import pandas as pd

from music_genre.modeling import GenreFeatureExtractor, GenreFFNForSequenceClassification
from music_genre.training import figures
from music_genre.training.calibration import calibration_report, model_logits
from music_genre.training.explanation import PERMUTATION_REPEATS, permutation_importances
from music_genre.training.scoring import softmax
from music_genre.training.trainer import predict_probabilities


def trust_report(
    model: GenreFFNForSequenceClassification,
    extractor: GenreFeatureExtractor,
    rows: pd.DataFrame,
    labels: np.ndarray,
    figures_dir: Path,
    seed: int = 0,
) -> dict:
    """`calibration`, `conformal` and `permutation_importance` of a calibrated model on raw (test) rows; writes
    reliability_diagram.png and permutation_importance.png into `figures_dir`."""
    labels = np.asarray(labels, dtype=np.int64)
    features = extractor(rows)["input_features"]
    report = calibration_report(model, features, labels)
    temperature = model.config.calibration_temperature
    before = softmax(model_logits(model, features) * temperature)
    after = predict_probabilities(model, features)
    figures.plot_reliability_diagram(labels, before, after, temperature, Path(figures_dir) / "reliability_diagram.png")
    importances = permutation_importances(model, extractor, rows, labels, seed=seed)
    figures.plot_permutation_importance(importances, Path(figures_dir) / "permutation_importance.png")
    return {
        **report,
        "permutation_importance": {"scoring": "accuracy", "n_repeats": PERMUTATION_REPEATS, "features": importances},
    }
