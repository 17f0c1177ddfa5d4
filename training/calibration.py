"""Calibration after training: a temperature for the probabilities and split conformal genre sets.

`calibrate` fits both on the validation split and stores them in the model's config (so the saved folder serves
them); `calibration_report` measures them on the test split for `metrics.json` and the benchmarks. The conformal
score, the stored record, the threshold and the set rule are the model's own (`music_genre.modeling
.calibration_genre_ffn`, shipped with it as remote code), so the run fits exactly what the pipeline serves.

The temperature is the one that minimises validation negative log-likelihood (Guo et al., 2017); dividing the
logits by it changes no argmax. The sets are adaptive prediction sets (Romano, Sesia and Candes, 2020) without
randomisation: a genre's score is the probability mass the model ranks above it, and q_hat is the
ceil((n + 1) * level)-th smallest of the n validation scores, so a test row exchangeable with the validation rows
has its true genre in its set with probability at least `level` (and at most level + 1 / (n + 1) without ties).

What the guarantee rests on: test rows exchangeable with the validation rows (the same distribution, e.g. a
random split of the same CSV; not songs of another era or source), and coverage on average over rows, not per
genre or per song. Validation also picked the best epoch and trial and fitted the one-number temperature, a mild
dependence the guarantee does not account for; the test coverage that `calibration_report` measures checks it.
"""

import math
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from music_genre.modeling import GenreFFNConfig, GenreFFNForSequenceClassification
from music_genre.modeling.calibration_genre_ffn import conformal_config, conformity_scores, genre_sets
from music_genre.training.scoring import calibration_metrics, softmax, summary_metrics
from music_genre.training.trainer import eval_logits, predict_probabilities

# log T is searched in this range: T from about 0.05 to 20.
LOG_TEMPERATURE_BOUNDS = (-3.0, 3.0)


def model_logits(model: GenreFFNForSequenceClassification, features: np.ndarray) -> np.ndarray:
    """The eval-mode logits the model serves (its temperature applied), float64."""
    return eval_logits(model, features).double().numpy()


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of softmax(logits / T)."""
    logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        raise ValueError("fit_temperature needs at least one labelled row")

    def nll(log_temperature: float) -> float:
        return calibration_metrics(labels, softmax(logits / math.exp(log_temperature)))["nll"]

    result = minimize_scalar(nll, bounds=LOG_TEMPERATURE_BOUNDS, method="bounded", options={"xatol": 1e-6})
    return float(math.exp(result.x))


def calibrate(model: GenreFFNForSequenceClassification, features: np.ndarray, labels: np.ndarray) -> dict:
    """Fit the temperature, then the conformal sets on the calibrated probabilities, on validation rows; both go into
    `model.config`. Returns what was stored."""
    model.config.calibration_temperature, model.config.conformal = 1.0, None
    logits = model_logits(model, features)
    model.config.calibration_temperature = fit_temperature(logits, labels)
    # Scored on the probabilities the pipeline will serve (float32 softmax of the divided logits), not a re-derivation.
    model.config.conformal = conformal_config(conformity_scores(predict_probabilities(model, features), labels))
    return {"temperature": model.config.calibration_temperature, "conformal": model.config.conformal}


def set_coverage(
    probabilities: np.ndarray, labels: np.ndarray, threshold: float, genres: Sequence[str] | None = None
) -> tuple[float, float, dict[str, float]]:
    """Empirical coverage, mean set size and coverage per true genre of the sets `threshold` gives (keyed by the
    name `genres[i]` of label id i; without `genres`, by the id as text)."""
    _, ids = genre_sets(torch.as_tensor(probabilities), threshold)
    covered = np.asarray([label in row for label, row in zip(labels.tolist(), ids)])
    names = list(genres) if genres is not None else [str(g) for g in range(np.shape(probabilities)[1])]
    per_genre = {genre: float(covered[labels == g].mean()) for g, genre in enumerate(names) if (labels == g).any()}
    return float(covered.mean()), float(np.mean([len(row) for row in ids])), per_genre


def probability_metrics(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """ECE, NLL, Brier and the one-vs-rest AUC, which a temperature can move slightly (accuracy it cannot)."""
    return {
        **calibration_metrics(labels, probabilities),
        "roc_auc_macro": summary_metrics(labels, probabilities)["roc_auc_macro"],
    }


def coverage_by_level(
    probabilities: np.ndarray, labels: np.ndarray, config: GenreFFNConfig, genres: Sequence[str] | None = None
) -> dict:
    """Coverage, mean set size and per-genre coverage of the config's conformal sets at each stored level (genres
    named by `genres`, else by the config's `id2label` when it has one per column of `probabilities`)."""
    if genres is None and config.num_labels == np.shape(probabilities)[1]:
        genres = [config.id2label[i] for i in range(config.num_labels)]
    return {
        level: dict(
            zip(
                ("coverage", "mean_set_size", "per_genre_coverage"),
                set_coverage(probabilities, labels, config.conformal_threshold(float(level)), genres),
            )
        )
        for level in config.conformal["thresholds"]
    }


def calibration_report(model: GenreFFNForSequenceClassification, features: np.ndarray, labels: np.ndarray) -> dict:
    """The calibrated model's metrics on (test) rows: ECE, NLL and Brier before and after the temperature, and the
    coverage and mean size of the conformal sets at each stored level."""
    labels = np.asarray(labels, dtype=np.int64)
    temperature = model.config.calibration_temperature
    before = softmax(model_logits(model, features) * temperature)  # the served logits are already divided by T
    after = predict_probabilities(model, features)
    report = {
        "calibration": {
            "temperature": temperature,
            "before": probability_metrics(labels, before),
            "after": probability_metrics(labels, after),
        }
    }
    if model.config.conformal:
        report["conformal"] = coverage_by_level(after, labels, model.config)
    return report
