"""Configuration of the genre feedforward network (GenreFFN).

This module is the one place that knows the 13 Spotify audio features and the
10 genres; the feature extractor, the pipeline and the training code import
them from here.
"""

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
# 11 numeric features, a one-hot key and a 0/1 mode.
ENCODED_SIZE = len(NUMERIC_FEATURES) + len(KEY_NAMES) + 1
INFERENCE_DTYPES = ("float32", "bfloat16")


class GenreFFNConfig(PreTrainedConfig):
    r"""
    Args:
        feature_names (`list[str]`): the raw columns the model reads, in order.
        input_size (`int`): width of the encoded `input_features` the feature extractor produces.
        hidden_sizes (`list[int]`): one Linear/BatchNorm/ReLU/Dropout block per entry.
        dropout (`float`): dropout probability after each hidden block.
        num_members (`int`): networks in the ensemble; their probabilities are averaged.
        class_weights (`list[float]`, *optional*): per-genre weights of the cross-entropy loss.
        label_smoothing (`float`): label smoothing of the cross-entropy loss.
        inference_dtype (`str`): `"float32"`, or `"bfloat16"` to run the members in bfloat16 at inference (eval
            mode: BatchNorm folded into the Linear layers, weights and activations in bfloat16, logits returned in
            float32) where the hardware computes it natively (a CPU with AVX-512 BF16 or AMX, a GPU that supports
            it); elsewhere, and always in training, the model computes in float32.
    """

    model_type = "genre_ffn"

    def __init__(
        self,
        feature_names: list[str] | None = None,
        input_size: int = ENCODED_SIZE,
        hidden_sizes: list[int] | None = None,
        dropout: float = 0.2,
        num_members: int = 1,
        class_weights: list[float] | None = None,
        label_smoothing: float = 0.0,
        inference_dtype: str = "float32",
        **kwargs,
    ):
        if inference_dtype not in INFERENCE_DTYPES:
            raise ValueError(f"inference_dtype must be one of {INFERENCE_DTYPES}, got {inference_dtype!r}")
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
        super().__init__(**kwargs)
