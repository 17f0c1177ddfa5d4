"""The `music-genre-classification` pipeline: raw Spotify rows in, genres with scores out.

    >>> classifier = pipeline(model="OWNER/NAME", trust_remote_code=True)
    >>> classifier({"popularity": 45, "key": "C#", "mode": "Major", "tempo": "?", ...}, top_k=3)
    [{'label': 'Jazz', 'score': 0.61}, {'label': 'Blues', 'score': 0.2}, {'label': 'Electronic', 'score': 0.1}]

A dict is one row and gives one list of genres; a list of dicts or a DataFrame
gives one list per row, encoded and classified in chunks of CHUNK_ROWS rows so
that a large table never holds more than one chunk's intermediate arrays. A bad
value raises the feature extractor's error (a `ValueError` naming the column,
the row of the whole input, the value and the reason) unchanged.
"""

import gc
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import Pipeline


class GenreClassificationPipeline(Pipeline):
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def _sanitize_parameters(self, top_k: int | None = None, **kwargs):
        postprocess_params = {}
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1:
                raise ValueError(f"top_k must be a whole number of genres, 1 or more (or None for all), got {top_k!r}")
            postprocess_params["top_k"] = int(top_k)
        return {}, {}, postprocess_params

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

    def preprocess(self, inputs: "_Rows") -> dict[str, torch.Tensor]:
        return self.feature_extractor(inputs.rows, return_tensors="pt", row_offset=inputs.first_row)

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs: dict[str, torch.Tensor], top_k: int | None = None) -> list[list[dict]]:
        probabilities = model_outputs["logits"].float().softmax(dim=-1)
        k = min(top_k or probabilities.shape[-1], probabilities.shape[-1])
        scores, ids = probabilities.topk(k, dim=-1)
        id2label = self.model.config.id2label
        # Labels looked up in numpy and shared between rows: the dicts are the only per-row objects built.
        names = np.asarray([id2label[i] for i in range(len(id2label))], dtype=object)
        collecting = gc.isenabled()
        gc.disable()  # millions of fresh dicts hold no cycles; scanning them again and again was most of the time
        try:
            return [
                [{"label": label, "score": score} for label, score in zip(row_labels, row_scores)]
                for row_labels, row_scores in zip(names[ids.numpy()].tolist(), scores.tolist())
            ]
        finally:
            if collecting:
                gc.enable()


# Rows encoded and classified at a time: bounds the intermediate arrays of a large table.
CHUNK_ROWS = 16_384


class _Rows:
    """Raw rows carried through the base pipeline as one input; `first_row` numbers the rows in errors."""

    def __init__(self, rows: Any, first_row: int = 0):
        self.rows = rows
        self.first_row = first_row
