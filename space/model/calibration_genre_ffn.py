"""Conformal genre sets, in one place: the score, the stored calibration, the threshold and the set rule.

Split conformal prediction with adaptive prediction sets (APS; Romano, Sesia and Candes, 2020), not randomised. A
genre's score is the probability mass the model ranks above it; `conformal_config` stores the sorted scores of
the calibration rows' true genres (in the model config's `conformal`), `conformal_threshold` turns them into
q_hat for a coverage level, and a row's set is its genres whose score is at most q_hat (`genre_sets`).

The model config (`GenreFFNConfig.conformal_threshold`), the pipeline (`coverage=`, `GenreClassificationPipeline
.genre_sets`) and the training run (`music_genre.training.calibration`, which fits the temperature and measures
coverage) all use these functions; this file ships with the model as remote code, so it needs torch and numpy only.
"""

import math
from numbers import Real

import numpy as np

# Coverage levels whose conformal thresholds a calibrated config stores; other levels come from its stored scores.
COVERAGE_LEVELS = (0.8, 0.9, 0.95)
# Scores are stored rounded up to this step: q_hat can only grow, so the coverage guarantee holds.
SCORE_STEP = 1e-6


def ranked_mass(probabilities):
    """Each row's genres from most to least probable (a (rows, genres) tensor of ids), and the probability mass
    ranked above each of them (float64): the nonconformity score, so the top genre scores 0."""
    sorted_probabilities, order = probabilities.double().sort(dim=-1, descending=True, stable=True)
    return order, sorted_probabilities.cumsum(dim=-1) - sorted_probabilities


def conformity_scores(probabilities, labels) -> np.ndarray:
    """Each row's score of its true genre (`labels`, ids): the probability mass the model ranks above it."""
    import torch

    order, mass_above = ranked_mass(torch.as_tensor(probabilities))
    rank = (order == torch.as_tensor(labels).reshape(-1, 1)).double().argmax(dim=-1, keepdim=True)
    return mass_above.gather(-1, rank).squeeze(-1).numpy()


def conformal_config(scores, levels: tuple[float, ...] = COVERAGE_LEVELS) -> dict:
    """What a calibrated model config stores in `conformal`: the sorted calibration scores (rounded up) and q_hat
    for each level (a level needing more scores than there are is left to call time, as JSON has no infinity)."""
    stored = np.sort(np.ceil(np.asarray(scores, dtype=np.float64) / SCORE_STEP) * SCORE_STEP).round(6)
    config = {
        "method": "aps",
        "randomized": False,
        "score": "probability mass of the genres ranked above the true genre",
        "n_calibration": len(stored),
        "scores": stored.tolist(),
    }
    thresholds = {f"{level:g}": conformal_threshold(config, level) for level in levels}
    return {**config, "thresholds": {level: q for level, q in thresholds.items() if math.isfinite(q)}}


def conformal_threshold(conformal: dict | None, coverage: float) -> float:
    """The split conformal threshold q_hat of a stored calibration (`conformal_config`) for a coverage level: the
    stored level's, else the ceil((n + 1) * coverage)-th smallest of the n calibration scores (infinite, i.e. every
    genre, when n is too small for that level).

    A genre enters a row's set when its score (the probability mass ranked above it) is at most q_hat, which
    covers the true genre with probability at least `coverage` for rows exchangeable with the calibration rows.
    """
    if isinstance(coverage, bool) or not isinstance(coverage, Real) or not 0 < coverage < 1:
        raise ValueError(f"coverage must be a number strictly between 0 and 1, got {coverage!r}")
    if not conformal:
        raise ValueError("this model has no conformal calibration: coverage sets need a calibrated model")
    stored = conformal.get("thresholds", {}).get(f"{coverage:g}")
    if stored is not None:
        return float(stored)
    scores = conformal.get("scores")
    if not scores:
        levels = ", ".join(conformal.get("thresholds", {}))
        raise ValueError(f"coverage {coverage!r} is not calibrated for this model; stored levels: {levels}")
    rank = math.ceil((len(scores) + 1) * coverage - 1e-9)  # (n + 1) * coverage may land a hair above an integer
    return float(scores[rank - 1]) if rank <= len(scores) else math.inf


def genre_set_members(probabilities, threshold: float):
    """Each row's set as tensors: genre ids most probable first ((rows, largest set), only the first `sizes[r]` of
    row r in its set) and the set sizes; never empty, since the top genre has no mass above it."""
    order, mass_above = ranked_mass(probabilities)
    sizes = (mass_above <= threshold).sum(dim=-1).clamp(min=1)
    return (order[:, : int(sizes.max())] if len(sizes) else order), sizes


def genre_sets(probabilities, threshold: float) -> tuple[list[list[float]], list[list[int]]]:
    """Each row's conformal set at `threshold` as Python lists: the genres' probabilities and ids, most probable
    first."""
    ids, sizes = genre_set_members(probabilities, threshold)
    scores, ids, sizes = probabilities.gather(-1, ids).tolist(), ids.tolist(), sizes.tolist()
    return [row[:size] for row, size in zip(scores, sizes)], [row[:size] for row, size in zip(ids, sizes)]
