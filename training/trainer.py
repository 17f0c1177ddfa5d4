"""Training GenreFFN with `transformers.Trainer`: datasets, arguments, the fit of one configuration."""

import collections
import logging
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import (
    EarlyStoppingCallback,
    PrinterCallback,
    ProgressCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from music_genre.modeling import GenreFeatureExtractor, GenreFFNConfig, GenreFFNForSequenceClassification
from music_genre.modeling.configuration_genre_ffn import numeric_columns, piecewise_linear_bins
from music_genre.training.data import PreparedSplits, balanced_class_weights
from music_genre.training.scoring import compute_metrics

# The validation metric that picks the best epoch and ranks search trials.
SELECTION_METRIC = "accuracy"
# `keep_epoch_by` for the rule that keeps no single epoch: the weights of the last epochs that ran averaged
# (stochastic weight averaging's average, taken at each epoch's end), batch-norm statistics then recomputed.
AVERAGE_LAST = "average-last-3"
AVERAGED_EPOCHS = 3

logger = logging.getLogger("music_genre")
# The network's defaults are the published config's: Hyperparameters reads its architecture defaults from them.
NETWORK_DEFAULTS = GenreFFNConfig()


@dataclass
class Hyperparameters:
    """Everything that defines one training of the network (architecture and optimiser)."""

    hidden_sizes: list[int] = field(default_factory=lambda: list(NETWORK_DEFAULTS.hidden_sizes))
    dropout: float = NETWORK_DEFAULTS.dropout
    learning_rate: float = 1e-3
    batch_size: int = 32
    weight_decay: float = 0.0
    epochs: int = 15
    num_members: int = NETWORK_DEFAULTS.num_members
    label_smoothing: float = NETWORK_DEFAULTS.label_smoothing
    ensemble: str = NETWORK_DEFAULTS.ensemble
    numeric_embedding: str | None = NETWORK_DEFAULTS.numeric_embedding
    embedding_size: int = NETWORK_DEFAULTS.embedding_size
    # Quantile bins per numeric column of piecewise-linear embeddings, fitted on the training rows (TabM's default).
    num_bins: int = 48

    def to_dict(self) -> dict:
        return asdict(self)


# The paper's first design, trained as it describes; the run's initial model.
PAPER_INITIAL = Hyperparameters()

# The optimiser's settings as TrainingArguments names them: the one place `batch_size` becomes
# `per_device_train_batch_size` (for a fit, and for each search trial's `hp_space`).
TRAINING_ARGUMENTS = {
    "learning_rate": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "weight_decay": "weight_decay",
    "epochs": "num_train_epochs",
}


def as_training_arguments(settings: dict) -> dict:
    """Optimiser settings named as `Hyperparameters` fields (some or all of them), renamed for TrainingArguments."""
    unknown = set(settings) - set(TRAINING_ARGUMENTS)
    if unknown:
        raise ValueError(f"not an optimiser setting of TrainingArguments: {sorted(unknown)}")
    return {TRAINING_ARGUMENTS[name]: value for name, value in settings.items()}


class FeatureDataset(torch.utils.data.Dataset):
    """Encoded rows and genre ids; batches are sliced from two tensors instead of collated row by row."""

    def __init__(self, features: np.ndarray, labels: np.ndarray):
        self.features = torch.as_tensor(features, dtype=torch.float32)
        self.labels = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_features": self.features[index], "labels": self.labels[index]}

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        index = torch.as_tensor(indices)
        return {"input_features": self.features[index], "labels": self.labels[index]}


def collate_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`FeatureDataset.__getitems__` already returns the stacked batch."""
    return batch


def build_model(
    hyperparameters: Hyperparameters,
    class_weights: list[float] | None,
    input_size: int,
    id2label: dict[int, str],
    train_features: np.ndarray | None = None,
) -> GenreFFNForSequenceClassification:
    """A freshly initialised network for `input_size`-wide encoded rows (the extractor's `encoded_size`) and the
    genres `id2label` (the run's data's). Piecewise-linear embeddings get their bins from `train_features`, the
    encoded training rows (never validation or test rows)."""
    bins = None
    if hyperparameters.numeric_embedding == "piecewise-linear":
        if train_features is None:
            raise ValueError("piecewise-linear embeddings fit their bins on the training rows: pass train_features")
        bins = piecewise_linear_bins(train_features[:, : numeric_columns(input_size)], hyperparameters.num_bins)
    config = GenreFFNConfig(
        id2label=id2label,
        input_size=input_size,
        hidden_sizes=hyperparameters.hidden_sizes,
        dropout=hyperparameters.dropout,
        num_members=hyperparameters.num_members,
        label_smoothing=hyperparameters.label_smoothing,
        class_weights=class_weights,
        ensemble=hyperparameters.ensemble,
        numeric_embedding=hyperparameters.numeric_embedding,
        embedding_size=hyperparameters.embedding_size,
        embedding_bins=bins,
    )
    return GenreFFNForSequenceClassification(config)


def training_arguments(
    output_dir: Path,
    hyperparameters: Hyperparameters,
    seed: int,
    keep_best: bool,
    quiet: bool,
    keep_epoch_by: str = SELECTION_METRIC,
) -> TrainingArguments:
    """`keep_epoch_by`: the validation metric whose best epoch is kept (`"loss"`: the lowest; others the highest)."""
    optimiser = as_training_arguments({name: getattr(hyperparameters, name) for name in TRAINING_ARGUMENTS})
    return TrainingArguments(
        output_dir=str(output_dir),
        use_cpu=not torch.cuda.is_available(),
        seed=seed,
        **optimiser,
        per_device_eval_batch_size=2048,
        optim="adamw_torch",
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        logging_strategy="epoch",
        save_strategy="epoch" if keep_best else "no",
        save_total_limit=1 if keep_best else None,
        load_best_model_at_end=keep_best,
        metric_for_best_model=keep_epoch_by,
        greater_is_better=keep_epoch_by != "loss",
        save_only_model=True,
        dataloader_num_workers=0,
        report_to="none",
        disable_tqdm=quiet,
        remove_unused_columns=False,
    )


class GenreTrainer(Trainer):
    """`Trainer` with the same FLOP estimate, counted once per model instead of at every step.

    `Trainer.floating_point_ops` walks every module and parameter of the model at each step to count the
    parameters (6 x inputs x parameters); on this small network that walk cost about 4% of a training step.
    """

    _counted: tuple[torch.nn.Module, int] | None = None

    def floating_point_ops(self, inputs: dict) -> int:
        main_input = getattr(self.model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(self.model, "num_parameters"):
            return super().floating_point_ops(inputs)
        if self._counted is None or self._counted[0] is not self.model:  # a search builds a model per trial
            self._counted = (self.model, self.model.num_parameters(exclude_embeddings=True))
        return 6 * inputs[main_input].numel() * self._counted[1]


class EpochProgressCallback(TrainerCallback):
    """One bar per training (epochs, on a terminal), and each epoch's log as one line with numbers as numbers.

    Replaces `ProgressCallback`, whose step and evaluation bars and quoted log values fill a redirected log with
    carriage returns.
    """

    def __init__(self, description: str = "training"):
        self.description = description
        self.bar = None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.bar = tqdm(
                total=int(args.num_train_epochs), desc=self.description, unit="epoch", disable=not sys.stderr.isatty()
            )

    def on_epoch_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.update(1)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        shown = {k: (float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in logs.items() if k != "total_flos"}
        if self.bar is not None and not self.bar.disable:
            self.bar.write(str(shown))
        else:
            logger.info("%s: %s", self.description, shown)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def make_trainer(
    prepared: PreparedSplits,
    extractor: GenreFeatureExtractor,
    hyperparameters: Hyperparameters,
    output_dir: Path,
    seed: int,
    keep_best: bool = True,
    quiet: bool = False,
    model_init: Callable | None = None,
    patience: int = 3,
    trainer_class: type[Trainer] = GenreTrainer,
    description: str = "training",
    keep_epoch_by: str = SELECTION_METRIC,
) -> Trainer:
    """A Trainer on the prepared train/validation splits with class-weighted loss and early stopping."""
    class_weights = balanced_class_weights(prepared.labels["train"], len(prepared.genres))
    if model_init is None:
        set_seed(seed)
        model = build_model(
            hyperparameters, class_weights, extractor.encoded_size, prepared.id2label, training_rows(prepared)
        )
    else:
        model = None
    trainer = trainer_class(
        model=model,
        model_init=model_init,
        args=training_arguments(output_dir, hyperparameters, seed, keep_best, quiet, keep_epoch_by),
        train_dataset=FeatureDataset(prepared.features["train"], prepared.labels["train"]),
        eval_dataset=FeatureDataset(prepared.features["validation"], prepared.labels["validation"]),
        data_collator=collate_batch,
        processing_class=extractor,
        compute_metrics=compute_metrics,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)],
    )
    # With tqdm off Trainer prints every log dict (PrinterCallback); quiet runs show nothing, others one bar.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    if not quiet:
        trainer.add_callback(EpochProgressCallback(description))
    return trainer


def fit(
    prepared: PreparedSplits,
    extractor: GenreFeatureExtractor,
    hyperparameters: Hyperparameters,
    output_dir: Path,
    seed: int,
    quiet: bool = False,
    description: str = "training",
    keep_epoch_by: str = SELECTION_METRIC,
) -> Trainer:
    """Train one configuration, keeping the epoch with the best validation metric (`keep_epoch_by`), or with
    `AVERAGE_LAST` the average of the last epochs' weights; returns the trainer, its model on the CPU. The run scores,
    calibrates, explains and saves the model there, where it is served and where `music-genre evaluate` recomputes
    its figures, so a run trained on a GPU reports what its published model gives."""
    averaging = keep_epoch_by == AVERAGE_LAST
    trainer = make_trainer(
        prepared,
        extractor,
        hyperparameters,
        output_dir,
        seed,
        keep_best=not averaging,
        quiet=quiet,
        description=description,
        keep_epoch_by=SELECTION_METRIC if averaging else keep_epoch_by,
    )
    weights = LastEpochsWeights(AVERAGED_EPOCHS) if averaging else None
    if weights is not None:
        trainer.add_callback(weights)
    trainer.train()
    trainer.model.to("cpu")
    if weights is not None:
        average_weights(trainer.model, weights.snapshots, prepared.features["train"], hyperparameters.batch_size)
    return trainer


class LastEpochsWeights(TrainerCallback):
    """Keeps a copy of the model's weights at the end of each of the last `n` epochs (on the CPU)."""

    def __init__(self, n: int):
        self.snapshots: collections.deque[dict[str, torch.Tensor]] = collections.deque(maxlen=n)

    def on_train_begin(self, args, state, control, **kwargs):
        self.snapshots.clear()  # a search reuses the callback for every trial

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        self.snapshots.append({name: value.detach().to("cpu", copy=True) for name, value in model.state_dict().items()})


def average_weights(
    model: torch.nn.Module,
    snapshots: Iterable[dict[str, torch.Tensor]],
    features: np.ndarray,
    batch_size: int,
) -> None:
    """Loads the mean of `snapshots` into `model` (integer buffers from the last), then recomputes its batch-norm
    statistics on `features` in training mode with `torch.optim.swa_utils.update_bn`; leaves the model in eval mode.
    The rows are shuffled (seeded): the training split is in the table's order, grouped by genre, and batches of one
    genre would average the within-genre variance instead of the variance training saw."""
    snapshots = list(snapshots)
    if not snapshots:
        raise ValueError("no epoch's weights to average: the training ran no epoch")
    averaged = {
        name: torch.stack([s[name] for s in snapshots]).mean(dim=0) if value.is_floating_point() else value
        for name, value in snapshots[-1].items()
    }
    device = next(model.parameters()).device
    model.load_state_dict({name: value.to(device) for name, value in averaged.items()})
    loader = torch.utils.data.DataLoader(
        torch.as_tensor(features, dtype=torch.float32),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    torch.optim.swa_utils.update_bn(loader, model, device=device)
    model.eval()


def training_rows(prepared: PreparedSplits) -> np.ndarray:
    """The encoded training rows themselves, without the synthetic rows SMOTE appended after them."""
    return prepared.features["train"][: len(prepared.indices["train"])]


def eval_logits(model: GenreFFNForSequenceClassification, features: np.ndarray) -> torch.Tensor:
    """The eval-mode logits the model serves (its temperature applied), on the CPU, whichever device the model is on
    (the Trainer leaves it on the GPU when there is one)."""
    model.eval()
    with torch.no_grad():
        inputs = torch.as_tensor(features, dtype=torch.float32).to(model.device)
        return model(input_features=inputs).logits.cpu()


def predict_probabilities(model: GenreFFNForSequenceClassification, features: np.ndarray) -> np.ndarray:
    return eval_logits(model, features).softmax(dim=-1).numpy().astype(np.float64)
