"""Configuration of the genre feedforward network (GenreFFN).

This module is the one place that knows the 13 Spotify audio features, the
10 genres and the encodings of the features with their widths; the feature
extractor, the pipeline and the training code import them from here.
"""

import math
from numbers import Real

from transformers import PreTrainedConfig

# The paper's 13 model features, in the order of the public CSV.
FEATURE_NAMES = (
    "popularity",
    "acousticness",
    "danceability",
    "duration_ms",
    "energy",
    "instrumentalness",
    "key",
    "liveness",
    "loudness",
    "mode",
    "speechiness",
    "tempo",
    "valence",
)
GENRES = (
    "Electronic",
    "Anime",
    "Jazz",
    "Alternative",
    "Country",
    "Rap",
    "Blues",
    "Rock",
    "Classical",
    "Hip-Hop",
)
KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODE_NAMES = ("Minor", "Major")
NUMERIC_FEATURES = tuple(name for name in FEATURE_NAMES if name not in ("key", "mode"))
# How the feature extractor encodes the numeric features: one view, or both side by side ("a+b").
ENCODINGS = ("log-standard", "quantile-normal", "quantile-normal+log-standard")
# The paper's encoding: the feature extractor's default, and so the width a default config takes.
PAPER_ENCODING = "log-standard"
INFERENCE_DTYPES = ("float32", "bfloat16")
# Coverage levels whose conformal thresholds a calibrated config stores; other levels come from its stored scores.
COVERAGE_LEVELS = (0.8, 0.9, 0.95)


def numeric_views(encoding: str) -> tuple[str, ...]:
    """The views each numeric feature gets under `encoding`, in column order."""
    if encoding not in ENCODINGS:
        raise ValueError(f"numeric_encoding must be one of {ENCODINGS}, got {encoding!r}")
    return tuple(encoding.split("+"))


def encoded_size(encoding: str) -> int:
    """Width of the encoded `input_features`: each view of every numeric feature, a one-hot key, then a 0/1 mode."""
    return len(numeric_views(encoding)) * len(NUMERIC_FEATURES) + len(KEY_NAMES) + 1


class GenreFFNConfig(PreTrainedConfig):
    r"""
    Args:
        feature_names (`list[str]`): the raw columns the model reads, in order.
        input_size (`int`): width of the encoded `input_features` the feature extractor produces
            (`encoded_size(encoding)`; by default the width of the paper's encoding, the extractor's default).
        hidden_sizes (`list[int]`): one Linear/BatchNorm/ReLU/Dropout block per entry.
        dropout (`float`): dropout probability after each hidden block.
        num_members (`int`): networks in the ensemble; their probabilities are averaged.
        class_weights (`list[float]`, *optional*): per-genre weights of the cross-entropy loss.
        label_smoothing (`float`): label smoothing of the cross-entropy loss.
        inference_dtype (`str`): `"float32"`, or `"bfloat16"` to run the members in bfloat16 at inference (eval
            mode: BatchNorm folded into the Linear layers, weights and activations in bfloat16, logits returned in
            float32) where the hardware computes it natively (a CPU with AVX-512 BF16 or AMX, a GPU that supports
            it); elsewhere, and always in training, the model computes in float32.
        calibration_temperature (`float`): the ensemble's logits are divided by it outside training (fitted on the
            validation split after training, so probabilities are calibrated; it changes no argmax). 1.0: unchanged.
            (Not `temperature`, which transformers reserves for generation.)
        conformal (`dict`, *optional*): split conformal calibration of genre sets (see `conformal_threshold`):
            `method` ("aps"), `score` (what the nonconformity score is), `n_calibration`, `thresholds` per coverage
            level and the sorted calibration `scores`, from which any other level is computed.
    """

    model_type = "genre_ffn"

    def __init__(
        self,
        feature_names: list[str] | None = None,
        input_size: int = encoded_size(PAPER_ENCODING),
        hidden_sizes: list[int] | None = None,
        dropout: float = 0.2,
        num_members: int = 1,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        inference_dtype: str = "float32",
        calibration_temperature: float = 1.0,
        conformal: dict | None = None,
        **kwargs,
    ):
        if inference_dtype not in INFERENCE_DTYPES:
            raise ValueError(f"inference_dtype must be one of {INFERENCE_DTYPES}, got {inference_dtype!r}")
        temperature = calibration_temperature
        if isinstance(temperature, bool) or not isinstance(temperature, Real) or not 0 < temperature < math.inf:
            raise ValueError(
                f"calibration_temperature must be a positive finite number, got {calibration_temperature!r}"
            )
        kwargs.setdefault("id2label", dict(enumerate(GENRES)))
        kwargs.setdefault("label2id", {name: i for i, name in enumerate(GENRES)})
        self.feature_names = list(feature_names or FEATURE_NAMES)
        self.input_size = input_size
        self.hidden_sizes = list(hidden_sizes or (256, 128, 64))
        self.dropout = dropout
        self.num_members = num_members
        self.class_weights = list(class_weights) if class_weights is not None else None
        self.label_smoothing = label_smoothing
        self.inference_dtype = inference_dtype
        self.calibration_temperature = float(calibration_temperature)
        self.conformal = conformal
        super().__init__(**kwargs)

    def conformal_threshold(self, coverage: float) -> float:
        """The split conformal threshold q_hat for a coverage level: the ceil((n + 1) * coverage)-th smallest of the
        n calibration scores (infinite, i.e. every genre, when n is too small for that level).

        A genre enters a row's set when its score (the probability mass ranked above it) is at most q_hat, which
        covers the true genre with probability at least `coverage` for rows exchangeable with the calibration rows.
        """
        if isinstance(coverage, bool) or not isinstance(coverage, Real) or not 0 < coverage < 1:
            raise ValueError(f"coverage must be a number strictly between 0 and 1, got {coverage!r}")
        if not self.conformal:
            raise ValueError("this model has no conformal calibration: coverage sets need a calibrated model")
        stored = self.conformal.get("thresholds", {}).get(f"{coverage:g}")
        if stored is not None:
            return float(stored)
        scores = self.conformal.get("scores")
        if not scores:
            levels = ", ".join(self.conformal.get("thresholds", {}))
            raise ValueError(f"coverage {coverage!r} is not calibrated for this model; stored levels: {levels}")
        rank = math.ceil((len(scores) + 1) * coverage - 1e-9)  # (n + 1) * coverage may land a hair above an integer
        return float(scores[rank - 1]) if rank <= len(scores) else math.inf
