"""Configuration of the genre feedforward network (GenreFFN).

This module is the one place that knows the 13 Spotify audio features and the
encodings of the features with their widths; the feature extractor, the pipeline
and the training code import them from here. The genres are no constant: a run's
genres are the labels of its training table, stored in the config's `id2label`.
"""

import math
from numbers import Real

from transformers import PreTrainedConfig

from .calibration_genre_ffn import conformal_threshold

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
KEY_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
MODE_NAMES = ("Minor", "Major")
NUMERIC_FEATURES = tuple(name for name in FEATURE_NAMES if name not in ("key", "mode"))
# How the feature extractor encodes the numeric features: one view, or both side by side ("a+b").
ENCODINGS = ("log-standard", "quantile-normal", "quantile-normal+log-standard")
# The paper's encoding: the feature extractor's default, and so the width a default config takes.
PAPER_ENCODING = "log-standard"
INFERENCE_DTYPES = ("float32", "bfloat16")
# How the members of the ensemble are made (see modeling_genre_ffn.py), and the embeddings of the numeric columns.
ENSEMBLES = ("independent", "tabm", "tabm-mini")
NUMERIC_EMBEDDINGS = ("piecewise-linear", "periodic")


def numeric_views(encoding: str) -> tuple[str, ...]:
    """The views each numeric feature gets under `encoding`, in column order."""
    if encoding not in ENCODINGS:
        raise ValueError(f"numeric_encoding must be one of {ENCODINGS}, got {encoding!r}")
    return tuple(encoding.split("+"))


def encoded_size(encoding: str) -> int:
    """Width of the encoded `input_features`: each view of every numeric feature, a one-hot key, then a 0/1 mode."""
    return len(numeric_views(encoding)) * len(NUMERIC_FEATURES) + len(KEY_NAMES) + 1


def numeric_columns(input_size: int) -> int:
    """How many leading columns of `input_size`-wide `input_features` are numeric (the rest: key one-hot, mode)."""
    return input_size - len(KEY_NAMES) - 1


def piecewise_linear_bins(numeric_features, num_bins: int) -> list[list[float]]:
    """Quantile bin edges of each column of `numeric_features` (training rows only; rows x numeric columns), for
    `numeric_embedding="piecewise-linear"`: `num_bins` + 1 quantiles per column, repeated edges merged (so a column
    with few distinct values gets fewer bins), as rtdl_num_embeddings' `compute_bins` makes them."""
    import torch

    values = torch.as_tensor(numeric_features, dtype=torch.float32)
    if values.ndim != 2 or len(values) < 2:
        raise ValueError(f"bins are fitted on a table of at least 2 rows, got shape {tuple(values.shape)}")
    if not 1 < num_bins < len(values):
        raise ValueError(f"num_bins must be between 2 and the number of rows - 1 ({len(values) - 1}), got {num_bins}")
    if not values.isfinite().all():
        raise ValueError("bins are fitted on finite values; the encoded training rows hold NaN or infinity")
    edges = torch.quantile(values, torch.linspace(0.0, 1.0, num_bins + 1), dim=0).T
    bins = [column.unique().tolist() for column in edges]
    constant = [i for i, column in enumerate(bins) if len(column) < 2]
    if constant:
        raise ValueError(f"numeric column(s) {constant} hold a single value in the training rows: no bins to fit")
    return bins


def _check_embedding_bins(bins, columns: int) -> list[list[float]]:
    """The bins as lists of floats, or a ValueError naming the first column whose edges are wrong."""
    if not isinstance(bins, list | tuple) or len(bins) != columns:
        got = len(bins) if isinstance(bins, list | tuple) else type(bins).__name__
        raise ValueError(f"embedding_bins must hold the bin edges of each of the {columns} numeric columns, got {got}")
    checked = []
    for i, edges in enumerate(bins):
        edges = [float(e) for e in edges] if isinstance(edges, list | tuple) else None
        if edges is None or len(edges) < 2 or not all(math.isfinite(e) for e in edges):
            raise ValueError(f"embedding_bins[{i}] must be at least 2 finite edges, got {bins[i]!r:.80}")
        if any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError(f"embedding_bins[{i}]: the edges must increase strictly, got {edges!r:.80}")
        checked.append(edges)
    return checked


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class GenreFFNConfig(PreTrainedConfig):
    r"""
    The genres are the config's `id2label` (label id -> genre name, as the training table writes it); a run sets
    them from its data.

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
        ensemble (`str`): how the `num_members` networks are made: `"independent"` (each its own weights),
            `"tabm"` (TabM: the members share every weight matrix, each Linear scaled and biased per member) or
            `"tabm-mini"` (the members share every Linear and differ by a scaling of the input); in all three each
            member has its own BatchNorm and head, the loss is the mean of the members' losses and their
            probabilities are averaged.
        numeric_embedding (`str`, *optional*): embed the numeric columns of `input_features` before the blocks:
            `"piecewise-linear"` (over `embedding_bins`) or `"periodic"`; None (the paper's): the columns as they are.
        embedding_size (`int`): the width of each numeric column's embedding.
        embedding_bins (`list[list[float]]`, *optional*): for `"piecewise-linear"`, the increasing bin edges of each
            numeric column, fitted on the training rows (`piecewise_linear_bins`).
        periodic_frequencies (`int`): for `"periodic"`, the learned frequencies per numeric column.
        periodic_scale (`float`): for `"periodic"`, the standard deviation the frequencies start from.
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
        ensemble: str = "independent",
        numeric_embedding: str | None = None,
        embedding_size: int = 16,
        embedding_bins: list[list[float]] | None = None,
        periodic_frequencies: int = 48,
        periodic_scale: float = 0.01,
        **kwargs,
    ):
        if inference_dtype not in INFERENCE_DTYPES:
            raise ValueError(f"inference_dtype must be one of {INFERENCE_DTYPES}, got {inference_dtype!r}")
        temperature = calibration_temperature
        if isinstance(temperature, bool) or not isinstance(temperature, Real) or not 0 < temperature < math.inf:
            raise ValueError(
                f"calibration_temperature must be a positive finite number, got {calibration_temperature!r}"
            )
        if kwargs.get("id2label") and not kwargs.get("label2id"):
            kwargs["label2id"] = {name: int(i) for i, name in kwargs["id2label"].items()}
        self.feature_names = list(feature_names or FEATURE_NAMES)
        self.input_size = input_size
        self.hidden_sizes = list(hidden_sizes or (256, 128, 64))
        self.dropout = dropout
        self.class_weights = list(class_weights) if class_weights is not None else None
        self.label_smoothing = label_smoothing
        self.inference_dtype = inference_dtype
        self.calibration_temperature = float(calibration_temperature)
        self.conformal = conformal
        if ensemble not in ENSEMBLES:
            raise ValueError(f"ensemble must be one of {ENSEMBLES}, got {ensemble!r}")
        if numeric_embedding is not None and numeric_embedding not in NUMERIC_EMBEDDINGS:
            raise ValueError(
                f"numeric_embedding must be None or one of {NUMERIC_EMBEDDINGS}, got {numeric_embedding!r}"
            )
        if numeric_columns(input_size) < 1:
            raise ValueError(f"input_size {input_size} leaves no numeric column beside the key and mode")
        if numeric_embedding == "piecewise-linear":
            embedding_bins = _check_embedding_bins(embedding_bins, numeric_columns(input_size))
        elif embedding_bins is not None:
            raise ValueError(f"embedding_bins are for numeric_embedding='piecewise-linear', not {numeric_embedding!r}")
        scale = periodic_scale
        if isinstance(scale, bool) or not isinstance(scale, Real) or not 0 < scale < math.inf:
            raise ValueError(f"periodic_scale must be a positive finite number, got {periodic_scale!r}")
        self.num_members = _positive_int("num_members", num_members)
        self.ensemble = ensemble
        self.numeric_embedding = numeric_embedding
        self.embedding_size = _positive_int("embedding_size", embedding_size)
        self.embedding_bins = embedding_bins
        self.periodic_frequencies = _positive_int("periodic_frequencies", periodic_frequencies)
        self.periodic_scale = float(periodic_scale)
        super().__init__(**kwargs)

    def conformal_threshold(self, coverage: float) -> float:
        """The split conformal threshold q_hat of this model's `conformal` calibration for a coverage level (see
        `calibration_genre_ffn.conformal_threshold`): a genre whose score is at most q_hat enters a row's set."""
        return conformal_threshold(self.conformal, coverage)
