"""Training settings from one source each: the network's defaults from the config, one mapping to TrainingArguments."""

import pytest

from music_genre.modeling import GenreFFNConfig
from music_genre.training.trainer import (
    PAPER_INITIAL,
    TRAINING_ARGUMENTS,
    Hyperparameters,
    as_training_arguments,
    build_model,
    training_arguments,
)


def test_the_papers_first_design_is_unchanged():
    assert PAPER_INITIAL.to_dict() == {
        "hidden_sizes": [256, 128, 64],
        "dropout": 0.2,
        "learning_rate": 1e-3,
        "batch_size": 32,
        "weight_decay": 0.0,
        "epochs": 15,
        "num_members": 1,
        "label_smoothing": 0.0,
        "ensemble": "independent",
        "numeric_embedding": None,
        "embedding_size": 16,
        "num_bins": 48,
    }


def test_the_network_defaults_are_the_configs():
    config, default = GenreFFNConfig(), Hyperparameters()
    for name in ("hidden_sizes", "dropout", "num_members", "label_smoothing", "ensemble", "numeric_embedding"):
        assert getattr(default, name) == getattr(config, name), name
    built = build_model(default, None, config.input_size, config.id2label).config
    assert built.to_diff_dict() == config.to_diff_dict()
    default.hidden_sizes.append(8)  # each Hyperparameters has a list of its own
    assert Hyperparameters().hidden_sizes == config.hidden_sizes


def test_the_optimiser_settings_reach_training_arguments_under_their_names(tmp_path):
    settings = Hyperparameters(learning_rate=2e-3, batch_size=64, weight_decay=1e-4, epochs=7)
    arguments = training_arguments(tmp_path, settings, seed=3, keep_best=False, quiet=True)
    assert {name: getattr(arguments, argument) for name, argument in TRAINING_ARGUMENTS.items()} == {
        "learning_rate": 2e-3,
        "batch_size": 64,
        "weight_decay": 1e-4,
        "epochs": 7,
    }
    assert arguments.per_device_train_batch_size == 64 and arguments.seed == 3
    with pytest.raises(ValueError, match=r"not an optimiser setting of TrainingArguments: \['dropout'\]"):
        as_training_arguments({"dropout": 0.1})


@pytest.mark.parametrize(
    ("keep_epoch_by", "metric", "higher_is_better"),
    [(None, "accuracy", True), ("loss", "loss", False), ("roc_auc_macro", "roc_auc_macro", True)],
)
def test_the_epoch_kept_is_the_best_by_the_chosen_validation_metric(tmp_path, keep_epoch_by, metric, higher_is_better):
    """The run keeps the epoch of highest validation accuracy; `bench.quality --keep-epoch-by` the lowest loss or the
    highest AUC."""
    extra = {} if keep_epoch_by is None else {"keep_epoch_by": keep_epoch_by}
    arguments = training_arguments(tmp_path, Hyperparameters(), seed=0, keep_best=True, quiet=True, **extra)
    assert arguments.load_best_model_at_end and arguments.metric_for_best_model == metric
    assert arguments.greater_is_better is higher_is_better
