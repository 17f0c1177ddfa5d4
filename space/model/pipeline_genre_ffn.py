"""The `music-genre-classification` pipeline: raw Spotify rows in, genres with scores out.

    >>> classifier = pipeline(model="OWNER/NAME", trust_remote_code=True)
    >>> classifier({"popularity": 45, "key": "C#", "mode": "Major", "tempo": "?", ...}, top_k=3)
    [{'label': 'Jazz', 'score': 0.61}, {'label': 'Blues', 'score': 0.2}, {'label': 'Electronic', 'score': 0.1}]

A dict is one row and gives one list of genres; a list of dicts or a DataFrame
gives one list per row, encoded and classified in a single batch.
"""

from collections.abc import Mapping
from typing import Any

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
            postprocess_params["top_k"] = top_k
        return {}, {}, postprocess_params

    def __call__(self, rows: Any, **kwargs) -> list[dict[str, Any]] | list[list[dict[str, Any]]]:
        single = isinstance(rows, Mapping)
        # Wrapped so the base class sees one input and the whole table is encoded in one batch.
        results = super().__call__(_Rows([rows] if single else rows), **kwargs)
        return results[0] if single else results

    def preprocess(self, inputs: "_Rows") -> dict[str, torch.Tensor]:
        return self.feature_extractor(inputs.rows, return_tensors="pt")

    def _forward(self, model_inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"logits": self.model(**model_inputs).logits}

    def postprocess(self, model_outputs: dict[str, torch.Tensor], top_k: int | None = None) -> list[list[dict]]:
        probabilities = model_outputs["logits"].float().softmax(dim=-1)
        k = min(top_k or probabilities.shape[-1], probabilities.shape[-1])
        scores, ids = probabilities.topk(k, dim=-1)
        id2label = self.model.config.id2label
        return [
            [{"label": id2label[int(i)], "score": float(s)} for s, i in zip(row_scores, row_ids)]
            for row_scores, row_ids in zip(scores.tolist(), ids.tolist())
        ]


class _Rows:
    """Raw rows carried through the base pipeline as one input."""

    def __init__(self, rows: Any):
        self.rows = rows
