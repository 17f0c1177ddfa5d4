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


def _prepared(rows: int = 300, synthetic: int = 60, seed: int = 0):
    """Encoded-looking splits: `rows` real training rows, then `synthetic` rows far out (as SMOTE appends its rows
    after the real ones), and validation rows from another distribution."""
    import numpy as np

    from music_genre.modeling import encoded_size
    from music_genre.training.data import PreparedSplits

    generator = np.random.default_rng(seed)
    width = encoded_size("log-standard")

    def rows_of(n: int, shift: float) -> np.ndarray:
        block = np.zeros((n, width), dtype=np.float32)
        block[:, :11] = generator.normal(shift, 1.0, (n, 11))
        block[np.arange(n), 11 + generator.integers(12, size=n)] = 1.0
        return block

    train = np.concatenate([rows_of(rows, 0.0), rows_of(synthetic, 50.0)])
    labels = np.arange(len(train)) % 10
    return PreparedSplits(
        indices={"train": np.arange(rows), "validation": np.arange(rows, rows + 50)},
        features={"train": train, "validation": rows_of(50, -30.0)},
        labels={"train": labels, "validation": np.arange(50) % 10},
        extractor=None,
        genres=tuple(f"genre {i}" for i in range(10)),
    )


def test_piecewise_linear_bins_are_fitted_on_the_real_training_rows_only(tmp_path):
    """Not on validation rows, nor on the synthetic rows SMOTE appended to the training split."""
    from music_genre.modeling import GenreFeatureExtractor
    from music_genre.modeling.configuration_genre_ffn import piecewise_linear_bins
    from music_genre.training.trainer import make_trainer, training_rows

    prepared = _prepared()
    settings = Hyperparameters(hidden_sizes=[8], numeric_embedding="piecewise-linear", num_bins=6, epochs=1)
    trainer = make_trainer(prepared, GenreFeatureExtractor(), settings, tmp_path, seed=0, quiet=True)
    bins = trainer.model.config.embedding_bins
    assert len(training_rows(prepared)) == 300
    assert bins == piecewise_linear_bins(prepared.features["train"][:300, :11], 6)
    assert max(edges[-1] for edges in bins) < 10 and min(edges[0] for edges in bins) > -10  # neither far-out set
    with pytest.raises(ValueError, match="fit their bins on the training rows"):
        build_model(settings, None, 24, prepared.id2label)


def test_the_average_of_the_last_epochs_is_loaded_and_batch_norm_recomputed():
    """`average_weights`: the mean of the snapshots' float tensors, integer buffers from the last, then the
    batch-norm statistics of the given rows (not the snapshots' mean of them)."""
    import numpy as np
    import torch

    from music_genre.training.trainer import average_weights
    from tests.conftest import make_model

    model = make_model(hidden_sizes=[8], num_members=2)
    snapshots = []
    for scale in (1.0, 2.0, 4.0):
        state = {name: value.clone() for name, value in model.state_dict().items()}
        state["members.0.0.weight"] = state["members.0.0.weight"] * scale
        state["members.0.1.num_batches_tracked"] = torch.tensor(int(scale))
        snapshots.append(state)
    rows = np.random.default_rng(0).normal(3.0, 2.0, (256, model.config.input_size)).astype(np.float32)
    average_weights(model, snapshots, rows, batch_size=32)
    state = model.state_dict()
    torch.testing.assert_close(state["members.0.0.weight"], snapshots[0]["members.0.0.weight"] * 7 / 3)
    assert not model.training
    with torch.no_grad():
        hidden = model.members[0][0](torch.as_tensor(rows))
    torch.testing.assert_close(state["members.0.1.running_mean"], hidden.mean(0), rtol=1e-4, atol=1e-4)
