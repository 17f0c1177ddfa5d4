"""GenreFFN as a Hugging Face model: config, network, feature extractor and pipeline.

Importing this package registers all four with the Auto classes and the pipeline
registry, and marks them for remote code, so a folder written by `save_model_folder`
loads anywhere with `trust_remote_code=True`.
"""

from pathlib import Path

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModelForSequenceClassification,
)
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_genre_ffn import (
    ENCODINGS,
    FEATURE_NAMES,
    KEY_NAMES,
    PAPER_ENCODING,
    GenreFFNConfig,
    encoded_size,
)
from .feature_extraction_genre_ffn import GenreFeatureExtractor, parse_rows
from .modeling_genre_ffn import GenreFFNForSequenceClassification
from .pipeline_genre_ffn import GenreClassificationPipeline

# The Hub's task for this model (the card's `pipeline_tag`); the name the first releases used is still accepted.
TASK = "tabular-classification"
TASK_ALIASES = ("music-genre-classification",)

AutoConfig.register(GenreFFNConfig.model_type, GenreFFNConfig, exist_ok=True)
AutoModelForSequenceClassification.register(GenreFFNConfig, GenreFFNForSequenceClassification, exist_ok=True)
AutoFeatureExtractor.register(GenreFFNConfig, GenreFeatureExtractor, exist_ok=True)
GenreFFNConfig.register_for_auto_class()
GenreFFNForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
GenreFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
# TASK last: the pipeline class remembers the last task registered, and a saved folder's config.json names that one
# only, so `pipeline(model=folder, trust_remote_code=True)` can still infer its task.
for registered_task in (*TASK_ALIASES, TASK):
    PIPELINE_REGISTRY.register_pipeline(
        registered_task,
        pipeline_class=GenreClassificationPipeline,
        pt_model=AutoModelForSequenceClassification,
        type="multimodal",
    )


def save_model_folder(
    model: GenreFFNForSequenceClassification, feature_extractor: GenreFeatureExtractor, directory: str | Path
) -> Path:
    """Write a complete Hub model folder: config, safetensors weights, preprocessor config and the remote code."""
    classifier = GenreClassificationPipeline(model=model, feature_extractor=feature_extractor, task=TASK)
    classifier.save_pretrained(directory)
    return Path(directory)


__all__ = [
    "ENCODINGS",
    "FEATURE_NAMES",
    "KEY_NAMES",
    "PAPER_ENCODING",
    "TASK",
    "TASK_ALIASES",
    "GenreClassificationPipeline",
    "GenreFFNConfig",
    "GenreFFNForSequenceClassification",
    "GenreFeatureExtractor",
    "encoded_size",
    "parse_rows",
    "save_model_folder",
]
