"""The `music-genre-classification` pipeline: raw Spotify rows in, genres with scores out.

    >>> classifier = pipeline(model="OWNER/NAME", trust_remote_code=True)
    >>> classifier({"popularity": 45, "key": "C#", "mode": "Major", "tempo": "?", ...}, top_k=3)
    [{'label': 'Jazz', 'score': 0.61}, {'label': 'Blues', 'score': 0.2}, {'label': 'Electronic', 'score': 0.1}]

As transformers' text-classification pipeline, it gives the most probable genre by default (`top_k=1`) and every
genre with `top_k=None`; a table of a million rows then stays one small dict per row.

With `coverage=0.9` (a calibrated model: 0.8, 0.9 and 0.95 are stored, other levels computed) each row gets the
genres of its conformal set instead of a top k, highest first; `explain=True` (needs captum) adds to each genre an
`"attributions"` dict: Integrated Gradients of its score per raw feature against the training-median row.

A dict is one row and gives one list of genres; a list of dicts or a DataFrame
gives one list per row, encoded and classified in chunks of CHUNK_ROWS rows so
that a large table never holds more than one chunk's intermediate arrays. A bad
value raises the feature extractor's error (a `ValueError` naming the column,
the row of the whole input, the value and the reason) unchanged.
"""

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import Pipeline

from .calibration_genre_ffn import genre_set_members


class GenreClassificationPipeline(Pipeline):
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        check_pairing(self.model.config, self.feature_extractor)

    def _sanitize_parameters(
        self, top_k: int | None | str = "", coverage: float | None = None, explain: bool | None = None, **kwargs
    ):
        # "" is "not given" (as in transformers' text-classification pipeline): None asks for every genre.
        forward_params, postprocess_params = {}, {}
        if top_k is None:
            postprocess_params["top_k"] = None
        elif top_k != "":
            if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
                raise ValueError(f"top_k must be a whole number of genres, 1 or more (or None for all), got {top_k!r}")
            postprocess_params["top_k"] = int(top_k)
        if coverage is not None:
            if top_k != "":
                raise ValueError("give top_k or coverage, not both: a coverage set has its own size for each row")
            postprocess_params["threshold"] = self.model.config.conformal_threshold(coverage)
        if explain is not None:
            if not isinstance(explain, bool):
                raise ValueError(f"explain must be True or False, got {explain!r}")
            forward_params["explain"] = postprocess_params["explain"] = explain
        return {}, forward_params, postprocess_params

    def __call__(self, rows: Any, **kwargs) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        single = isinstance(rows, Mapping)
        table = [rows] if single else rows
        is_table = hasattr(table, "iloc") or (isinstance(table, Sequence) and not isinstance(table, (str, bytes)))
        if not is_table or len(table) <= CHUNK_ROWS:  # anything else goes whole to the extractor, which explains it
            results = super().__call__(_Rows(table), **kwargs)
        else:
            results = []
            rows_of = table.iloc.__getitem__ if hasattr(table, "iloc") else table.__getitem__
            for start in range(0, len(table), CHUNK_ROWS):
                chunk = _Rows(rows_of(slice(start, start + CHUNK_ROWS)), first_row=start)
                # Each chunk is wrapped so the base class sees one input and encodes it in one batch.
                results.extend(super().__call__(chunk, **kwargs))
        return results[0] if single else results

    def genre_set_members(self, probabilities: Any, coverage: float) -> tuple[torch.Tensor, torch.Tensor]:
        """The conformal genre set at `coverage` of each row of `probabilities` ((rows, genres), softmax of the
        model's logits), as `coverage=` gives them, for a caller that computes the probabilities once for several
        outputs (e.g. the Space's table): genre ids most probable first, (rows, largest set), of which row r's set
        is the first `sizes[r]`; and `sizes`."""
        threshold = self.model.config.conformal_threshold(coverage)
        return genre_set_members(torch.as_tensor(probabilities), threshold)

    def preprocess(self, inputs: "_Rows") -> dict[str, torch.Tensor]:
        return self.feature_extractor(inputs.rows, return_tensors="pt", row_offset=inputs.first_row)

    def _forward(self, model_inputs: dict[str, torch.Tensor], explain: bool = False) -> dict[str, torch.Tensor]:
        outputs = {"logits": self.model(**model_inputs).logits}
        if explain:  # Integrated Gradients runs in postprocess, once the genres to explain are known
            outputs["input_features"] = model_inputs["input_features"]
        return outputs

    def postprocess(
        self,
        model_outputs: dict[str, torch.Tensor],
        top_k: int | None = 1,
        threshold: float | None = None,
        explain: bool = False,
    ) -> list[list[dict]]:
        probabilities = model_outputs["logits"].float().softmax(dim=-1)
        if threshold is not None:
            ids, sizes = genre_set_members(probabilities, threshold)
            scores = probabilities.gather(-1, ids)
        else:
            k = probabilities.shape[-1] if top_k is None else min(top_k, probabilities.shape[-1])
            (scores, ids), sizes = probabilities.topk(k, dim=-1), None
        id2label = self.model.config.id2label
        labels = np.asarray([id2label[i] for i in range(len(id2label))], dtype=object)
        results = ranked_genres(labels, scores, ids, sizes)
        if explain:
            add_attributions(results, ids, sizes, model_outputs["input_features"], self.model, self.feature_extractor)
        return results


# Rows encoded and classified at a time: bounds the intermediate arrays of a large table.
CHUNK_ROWS = 16_384


def check_pairing(config, feature_extractor) -> None:
    """Refuse a feature extractor that does not encode what the model reads: the config's `feature_names` (the
    published record of the raw columns) must be the extractor's, and its `input_size` the extractor's width."""
    if feature_extractor is None:
        raise ValueError(
            "this pipeline encodes raw rows with the feature extractor saved with the model "
            "(preprocessor_config.json); none was given"
        )
    model_names, extractor_names = (
        list(names) if isinstance(names, (list, tuple)) else names
        for names in (getattr(config, "feature_names", None), feature_extractor.feature_names)
    )
    if model_names != extractor_names:
        raise ValueError(
            f"the model reads the columns {model_names} (config.feature_names) but the feature extractor encodes "
            f"{extractor_names}: use the feature extractor saved with the model"
        )
    if config.input_size != feature_extractor.encoded_size:
        raise ValueError(
            f"the model takes {config.input_size} encoded columns (config.input_size) but the feature extractor's "
            f"{feature_extractor.numeric_encoding!r} encoding makes {feature_extractor.encoded_size}: use the feature "
            "extractor saved with the model"
        )


def ranked_genres(labels: np.ndarray, scores: torch.Tensor, ids: torch.Tensor, sizes: torch.Tensor | None) -> list:
    """Each row's genres as `{"label", "score"}` dicts: the first `sizes[r]` (all, without `sizes`) of row r of the
    (rows, k) `scores` and genre `ids`, named by `labels` (an object array).

    Built flat, one dict per genre and one list per row and nothing else per row: a million-row table makes
    millions of these, and fewer objects is less work for the garbage collector, which stays on.
    """
    if sizes is None:  # every row has k genres: read off in slices of k
        flat_ids, flat_scores = ids.reshape(-1), scores.reshape(-1)
    else:
        kept = torch.arange(ids.shape[-1]) < sizes.unsqueeze(-1)  # boolean indexing keeps row-major order
        flat_ids, flat_scores = ids[kept], scores[kept]
    names = labels[flat_ids.numpy()].tolist()
    genres = [{"label": name, "score": score} for name, score in zip(names, flat_scores.tolist())]
    if sizes is None:
        k = ids.shape[-1]
        return [genres[start : start + k] for start in range(0, len(genres), k)]
    return [genres[end - size : end] for end, size in zip(sizes.cumsum(dim=0).tolist(), sizes.tolist())]


class _Rows:
    """Raw rows carried through the base pipeline as one input; `first_row` numbers the rows in errors."""

    def __init__(self, rows: Any, first_row: int = 0):
        self.rows = rows
        self.first_row = first_row


def add_attributions(
    results: list[list[dict]],
    ids: torch.Tensor,
    sizes: torch.Tensor | None,
    input_features: torch.Tensor,
    model,
    feature_extractor,
) -> None:
    """Add to each returned genre (row r: the first `sizes[r]` of `ids[r]`, all without `sizes`) the attributions of
    its score to the raw features (see `feature_attributions`)."""
    names = list(model.config.feature_names)
    for rank in range(ids.shape[-1]):
        rows = torch.arange(len(ids)) if sizes is None else (sizes > rank).nonzero().squeeze(-1)
        attributions = feature_attributions(model, feature_extractor, input_features[rows], ids[rows, rank])
        for r, values in zip(rows.tolist(), attributions.tolist()):
            results[r][rank]["attributions"] = dict(zip(names, values))


def feature_attributions(model, feature_extractor, input_features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Integrated Gradients of each row's probability of genre `targets[i]` against the extractor's reference row
    (training medians), the encoded columns of each raw feature summed: shape (rows, 13), in config order."""
    reference = torch.as_tensor(feature_extractor(feature_extractor.reference_row())["input_features"][0])
    names = list(model.config.feature_names)
    columns_to_features = torch.zeros(len(feature_extractor.column_features), len(names))
    for column, name in enumerate(feature_extractor.column_features):
        columns_to_features[column, names.index(name)] = 1.0
    return model.integrated_gradients(input_features, reference, targets).cpu() @ columns_to_features
