"""The Optuna search through `Trainer.hyperparameter_search`, in resumable storage, over worker processes.

The study lives in storage (a journal file in the run folder by default, or any
Optuna storage URL), so a killed search started again continues the same study,
and several processes, here or on other machines, can work on it at once.

The search is batch-synchronous, so its result does not depend on how many
workers run it or on their timing. The study holds one trial per *slot*
0..n_trials-1, queued up front. Slots run in batches of `trial_batch`: slot s's
parameters come from a TPE sampler seeded by (seed, s) that sees exactly the
finished trials of the batches before s's, its pruner compares it with those
trials only, and a batch starts once the batch before it has finished. Every
trial is seeded by its slot and scored on the validation split only. A trial cut
off by a kill is marked FAIL and its slot queued again, so a resumed search ends
as an uninterrupted one would.

One validation split cannot rank configurations whose scores differ by less than
its noise, so the search ends with a re-evaluation (`run_reevaluation`): the top
trials are trained again on further splits of the training and validation rows
(never the test rows), in a second study of fixed slots, and the final
configuration is the one with the best mean over those splits; the spread is
reported. A trial's score is that of its last epochs' weights averaged
(`AVERAGE_LAST`, the run's rule for the final model too).
"""

import logging
import multiprocessing
import os
import pickle
import socket
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import sqlalchemy
import torch
import transformers
from tqdm.auto import tqdm
from transformers import set_seed

from music_genre.modeling import KEY_NAMES, GenreFeatureExtractor
from music_genre.training.data import PreparedSplits, balanced_class_weights, oversample
from music_genre.training.trainer import (
    AVERAGE_LAST,
    AVERAGED_EPOCHS,
    SELECTION_METRIC,
    FeatureDataset,
    GenreTrainer,
    Hyperparameters,
    LastEpochsWeights,
    as_training_arguments,
    average_weights,
    build_model,
    make_trainer,
    training_rows,
)
from music_genre.training.workers import environment_set, progress_bars_shown, start_worker

# Capped at 512: in a 30-trial search with 1024 allowed, 1024-wide layers gained less than a split's noise
# (validation 0.6120 against 0.6094) at several times the cost per row.
WIDTHS = [64, 128, 256, 512]
BATCH_SIZES = [32, 64, 128, 256]
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
# Trials per synchronous batch: a run setting, never derived from the worker count. 8 divides among 1, 2, 4 or 8
# workers and equals TPE's random start-up trials, so the first batch is exactly the random phase.
TRIAL_BATCH = 8
TPE_STARTUP_TRIALS = 8
# A trial's user attributes: its slot, and why a trial was set aside (a second trial for a taken slot, or one
# created when every slot was already taken).
SLOT = "slot"
SET_ASIDE = "set_aside"
WAIT_POLL_S = 0.5

logger = logging.getLogger("music_genre")
# Raised whenever the sampled space or its meaning changes: a study made under another version is not resumed.
# 2: trials run in slots of synchronous batches. 3: the ensemble and the numeric embeddings are sampled, and a trial
# scores its last epochs' weights averaged.
SEARCH_SPACE_VERSION = 3
# How a trial's (and the final model's) weights are chosen: the run's rule (see bench/network_options/).
KEEP_EPOCH_BY = AVERAGE_LAST
# TabM members in a trial and in the final model: k shares the weights, so a trial cannot stand for a larger k; 4 keeps
# inference within 2x of the reference network's rows/s (bench/inference_speed.md).
TABM_MEMBERS = 4
# The inference budget's reference: the network bundled before TabM (3 independent members of 512, 256, 128 on the 35
# encoded columns of the run's default encoding, 10 genres). A TabM trial whose network takes more than twice its
# multiply-adds per row is pruned before it trains, so the model the search picks stays within 2x of its inference
# rows/s (bench/inference_speed.md measured TabM k = 4 with piecewise-linear embeddings at widths 512, 256, 128, 2.6
# times its multiply-adds, at 0.35x to 0.47x its rows/s). It is fixed here, not read from space/model: a run never
# depends on the model bundled at the time.
BUDGET_REFERENCE_NETWORK = (Hyperparameters(hidden_sizes=[512, 256, 128], num_members=3), 35, 10)
# The re-evaluation: the top trials, each trained again on further splits of the training and validation rows.
REEVALUATED_TRIALS = 3
REEVALUATION_SPLITS = 3
# Seeds of the re-evaluation's trainings start here, far from the search's own slots.
REEVALUATION_SEED_OFFSET = 500


class StudyMismatch(ValueError):
    """The stored study was made under other settings than this run's."""


class NoCompletedTrial(RuntimeError):
    """The search ended without a completed trial (a timeout too short, too few trials)."""


@dataclass
class SearchSettings:
    n_trials: int
    seed: int
    storage: str
    study_name: str
    timeout: float | None = None
    workers: int = 1
    max_epochs: int = 25
    trial_batch: int = TRIAL_BATCH
    reevaluated_trials: int = REEVALUATED_TRIALS
    reevaluation_splits: int = REEVALUATION_SPLITS
    # Each training and validation row's (artist, track) group in a group-split run, so the re-evaluation's splits
    # keep a song on one side; None in a stratified run.
    groups: dict[str, np.ndarray] | None = None
    # What the study's trials were measured on (data sha256, encoding, split, ...); recorded at creation and
    # compared on every rerun, so a study is never resumed under other settings.
    identity: dict | None = None


def suggest(trial: optuna.Trial, name: str, distribution: optuna.distributions.BaseDistribution) -> Any:
    """`trial`'s value for the parameter `name` drawn from `distribution`, through the public `suggest_*` calls."""
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    if isinstance(distribution, optuna.distributions.FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, step=distribution.step, log=distribution.log
        )
    raise TypeError(f"no suggest call for {type(distribution).__name__}")


@dataclass(frozen=True)
class Sampled:
    """A `Hyperparameters` field sampled as the one study parameter of the same name.

    `up_to_max_epochs` marks the number of epochs: a run samples it from `distribution.low` (or its max_epochs, if
    smaller) up to its max_epochs; `distribution` is the range at the default max_epochs.
    """

    field: str
    distribution: optuna.distributions.BaseDistribution
    up_to_max_epochs: bool = False

    def distributions(
        self, params: dict, max_epochs: int | None = None
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        """The study parameter behind this field and its distribution in a run of `max_epochs`."""
        if not self.up_to_max_epochs:
            return {self.field: self.distribution}
        if max_epochs is None:
            raise ValueError(f"{self.field} is sampled up to the run's max_epochs: pass max_epochs")
        low = min(self.distribution.low, max_epochs)
        return {self.field: optuna.distributions.IntDistribution(low, max_epochs)}

    def sample(self, trial: optuna.Trial, max_epochs: int | None = None) -> Any:
        ((name, distribution),) = self.distributions({}, max_epochs).items()
        return suggest(trial, name, distribution)

    def decode(self, params: dict) -> Any:
        return params[self.field]


@dataclass(frozen=True)
class SampledWidths:
    """`hidden_sizes`: a depth `n_layers`, then a width `width_{i}` for each hidden layer i, in that order."""

    depth: optuna.distributions.IntDistribution
    width: optuna.distributions.CategoricalDistribution
    field: str = "hidden_sizes"

    def distributions(
        self, params: dict, max_epochs: int | None = None
    ) -> dict[str, optuna.distributions.BaseDistribution]:
        """`n_layers` and the `width_{i}` a trial with `params["n_layers"]` layers samples."""
        return {"n_layers": self.depth} | {f"width_{i}": self.width for i in range(params["n_layers"])}

    def sample(self, trial: optuna.Trial, max_epochs: int | None = None) -> list[int]:
        n_layers = suggest(trial, "n_layers", self.depth)
        return [suggest(trial, f"width_{i}", self.width) for i in range(n_layers)]

    def decode(self, params: dict) -> list[int]:
        return [params[f"width_{i}"] for i in range(params["n_layers"])]


# The search space, declared once, in the order a trial samples it; sampling, `hp_space` and decoding a trial into
# `Hyperparameters` all derive from it. Its parameter names are those of the stored studies and trials.csv, and TPE's
# seeded draws depend on them, their distributions and this order: a change here bumps SEARCH_SPACE_VERSION.
# The architecture is sampled in `model_init`, which builds the network before `hp_space` sets the optimiser.
ARCHITECTURE_SPACE = (
    SampledWidths(
        depth=optuna.distributions.IntDistribution(2, 4), width=optuna.distributions.CategoricalDistribution(WIDTHS)
    ),
    Sampled("dropout", optuna.distributions.FloatDistribution(0.0, 0.5)),
    Sampled("ensemble", optuna.distributions.CategoricalDistribution(["independent", "tabm"])),
    Sampled("numeric_embedding", optuna.distributions.CategoricalDistribution([None, "piecewise-linear"])),
)
OPTIMISER_SPACE = (
    Sampled("learning_rate", optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)),
    Sampled("batch_size", optuna.distributions.CategoricalDistribution(BATCH_SIZES)),
    Sampled("weight_decay", optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True)),
    Sampled("epochs", optuna.distributions.IntDistribution(5, SearchSettings.max_epochs), up_to_max_epochs=True),
)
SEARCH_SPACE = (*ARCHITECTURE_SPACE, *OPTIMISER_SPACE)


def sample_architecture(trial: optuna.Trial) -> dict:
    """The network's sampled `Hyperparameters` fields, for `model_init` (a TabM trial has its TABM_MEMBERS)."""
    architecture = {setting.field: setting.sample(trial) for setting in ARCHITECTURE_SPACE}
    if architecture["ensemble"] != "independent":
        architecture["num_members"] = TABM_MEMBERS
    return architecture


def hp_space(trial: optuna.Trial, seed: int, max_epochs: int) -> dict:
    """The optimiser's sampled settings and the trial's seed, as `Trainer.hyperparameter_search` sets them on its
    TrainingArguments."""
    sampled = {setting.field: setting.sample(trial, max_epochs) for setting in OPTIMISER_SPACE}
    return {**as_training_arguments(sampled), "seed": trial_seed(seed, slot_of(trial))}


def trial_seed(seed: int, slot: int) -> int:
    return seed * 1000 + slot


def hyperparameters_from(params: dict, num_members: int) -> Hyperparameters:
    """A trial's parameters (the chosen trial's: the final model's training settings) as `Hyperparameters`; an
    independent ensemble gets `num_members` (a trial trains one), a TabM one its TABM_MEMBERS."""
    decoded = {setting.field: setting.decode(params) for setting in SEARCH_SPACE}
    return Hyperparameters(**decoded, num_members=num_members if decoded["ensemble"] == "independent" else TABM_MEMBERS)


class BestValidationObjective:
    """A trial's objective: its best validation metric so far (Trainer reports after every epoch)."""

    def __init__(self):
        self.best = float("-inf")

    def reset(self) -> None:
        self.best = float("-inf")

    def __call__(self, metrics: dict[str, float]) -> float:
        self.best = max(self.best, metrics[f"eval_{SELECTION_METRIC}"])
        return self.best


class EpochReportingTrainer(GenreTrainer):
    """Reports to the pruner per epoch, so trials with different batch sizes are compared at the same step; with
    `averaged` (a `LastEpochsWeights` among its callbacks) a trial that ends averages its last epochs' weights and
    its objective is their validation metric.

    Trainer has no public hook for this: a callback could only report beside Trainer's own per-step report, which
    would change the pruner's decisions. `_report_to_hp_search` is private, so tests/test_search.py checks that it
    keeps its name and arguments and that a trial's reports land on epochs.
    """

    averaged: LastEpochsWeights | None = None

    def _report_to_hp_search(self, trial, step: int, metrics: dict[str, float]) -> None:
        super()._report_to_hp_search(trial, round(self.state.epoch or 0), metrics)

    def train(self, *args, trial=None, **kwargs):
        output = super().train(*args, trial=trial, **kwargs)
        if trial is not None and self.averaged is not None:  # a pruned trial raised above and is not averaged
            batch_size = self.args.per_device_train_batch_size
            average_weights(self.model, self.averaged.snapshots, self.train_dataset.features.numpy(), batch_size)
            self.objective = self.evaluate()[f"eval_{SELECTION_METRIC}"]
        return output


def make_storage(storage: str) -> optuna.storages.BaseStorage:
    """A journal file for a path; for a database URL, an RDB storage whose heartbeat fails a dead worker's trial after
    2 minutes without a beat, so that the other machines run its slot again."""
    if "://" not in storage:
        Path(storage).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(storage, heartbeat_interval=30, grace_period=120)
        except sqlalchemy.exc.IntegrityError:
            # Machines that start at once race to create Optuna's tables in an empty database; the loser retries.
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def slot_of(trial: optuna.trial.FrozenTrial | optuna.Trial) -> int | None:
    value = trial.user_attrs.get(SLOT)
    return int(value) if value is not None else None


def slot_trials(trials: list[optuna.trial.FrozenTrial]) -> dict[int, optuna.trial.FrozenTrial]:
    """The trial that stands for each slot: the lowest-numbered one that has not failed and was not set aside."""
    chosen: dict[int, optuna.trial.FrozenTrial] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        slot = slot_of(trial)
        if slot is None or SET_ASIDE in trial.user_attrs or trial.state == optuna.trial.TrialState.FAIL:
            continue
        chosen.setdefault(slot, trial)
    return chosen


def work_through_slots(
    load: Callable[[], optuna.Study],
    run_one_trial: Callable[[], object],
    n_trials: int,
    trial_batch: int,
    timeout: float | None = None,
    params_of: Callable[[int], dict] = lambda slot: {},
) -> None:
    """A worker's loop: run queued slots one trial at a time; once none is queued, queue the slots still missing from
    the first unfinished batch (with `params_of(slot)` fixed), or wait for the trials other workers are running in
    it. Only that batch is ever queued, so no worker holds a trial that waits for a slot queued behind it."""
    started = time.monotonic()
    while timeout is None or time.monotonic() - started < timeout:
        study = load()
        chosen = slot_trials(study.get_trials(deepcopy=False))
        unfinished = [slot for slot in range(n_trials) if slot not in chosen or chosen[slot].state not in FINISHED]
        if not unfinished:
            return
        if any(trial.state == optuna.trial.TrialState.WAITING for trial in chosen.values()):
            run_one_trial()
            continue
        start = unfinished[0] - unfinished[0] % trial_batch
        missing = [slot for slot in range(start, min(start + trial_batch, n_trials)) if slot not in chosen]
        for slot in missing:
            study.enqueue_trial(params_of(slot), user_attrs={SLOT: slot})
        if not missing:  # the batch's last trials run elsewhere; a dead machine's trial fails by its heartbeat
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            time.sleep(WAIT_POLL_S)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial:
    """The completed slot with the highest value; a tie goes to the lowest slot, whatever the trial numbers."""
    complete = [
        t for t in slot_trials(study.get_trials(deepcopy=False)).values() if t.state == optuna.trial.TrialState.COMPLETE
    ]
    if not complete:
        raise NoCompletedTrial("the search completed no trial; raise --n-trials or --timeout")
    return max(complete, key=lambda t: (t.value, -slot_of(t)))


def search_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The search as the run reports it: one trial per slot, in slot order."""
    return [trial for _, trial in sorted(slot_trials(study.get_trials(deepcopy=False)).items())]


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """`trials.csv`: one row per slot, numbered by slot (a slot run again after a kill keeps its number)."""
    slots = optuna.create_study(direction="maximize")
    slots.add_trials(search_trials(study))
    return slots.trials_dataframe()


def history_before(study: optuna.Study, slot: int, trial_batch: int) -> optuna.Study | None:
    """An in-memory study of the finished trials of the batches before `slot`'s, or None while one is unfinished."""
    start = slot - slot % trial_batch
    chosen = slot_trials(study.get_trials(deepcopy=False))
    earlier = [chosen.get(s) for s in range(start)]
    if any(t is None or t.state not in FINISHED for t in earlier):
        return None
    history = optuna.create_study(direction="maximize")
    history.add_trials(earlier)
    return history


class BatchSynchronousSampler(optuna.samplers.BaseSampler):
    """TPE, made independent of the worker count: slot s is sampled by a TPE sampler seeded by (seed, s) that sees
    the finished trials of the batches before s's, and waits until they have all finished."""

    def __init__(self, seed: int, trial_batch: int = TRIAL_BATCH, n_startup_trials: int = TPE_STARTUP_TRIALS):
        self._seed, self._trial_batch, self._n_startup_trials = seed, trial_batch, n_startup_trials
        self._current: dict[int, tuple[optuna.samplers.TPESampler, optuna.Study]] = {}

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        slot = slot_of(trial)
        chosen = slot_trials(study.get_trials(deepcopy=False)).get(slot) if slot is not None else None
        if chosen is None or chosen.number != trial.number:
            return  # set aside before it samples anything (see `claim_slot`)
        waited = 0.0
        while (history := history_before(study, slot, self._trial_batch)) is None:
            if waited and waited % 60 < WAIT_POLL_S:
                logger.info("slot %d waits for the batch before it to finish", slot)
            time.sleep(WAIT_POLL_S)
            waited += WAIT_POLL_S
        seed = int(np.random.SeedSequence([self._seed, slot]).generate_state(1)[0])
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=self._n_startup_trials)
        self._current[trial.number] = (sampler, history)

    def infer_relative_search_space(self, study, trial) -> dict:
        return {}

    def sample_relative(self, study, trial, search_space) -> dict:
        return {}

    def sample_independent(self, study, trial, param_name: str, param_distribution) -> Any:
        if trial.number not in self._current:  # a trial set aside: any value, it never trains
            return optuna.samplers.RandomSampler(seed=0).sample_independent(
                study, trial, param_name, param_distribution
            )
        sampler, history = self._current[trial.number]
        return sampler.sample_independent(history, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._current.pop(trial.number, None)


class BatchSynchronousPruner(optuna.pruners.BasePruner):
    """A pruner that compares slot s with the finished trials of the batches before s's only."""

    def __init__(self, pruner: optuna.pruners.BasePruner, trial_batch: int = TRIAL_BATCH):
        self._pruner, self._trial_batch = pruner, trial_batch

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        slot = slot_of(trial)
        history = history_before(study, slot, self._trial_batch) if slot is not None else None
        return history is not None and self._pruner.prune(history, trial)


def multiply_adds(hyperparameters: Hyperparameters, input_size: int, num_labels: int) -> int:
    """Multiply-adds per row of the network's inference: every member's Linear layers (TabM's shared matrices are
    applied once per member), and the piecewise-linear embeddings' maps."""
    numeric = input_size - len(KEY_NAMES) - 1
    width, total = input_size, 0
    if hyperparameters.numeric_embedding is not None:
        width = input_size + numeric * (hyperparameters.embedding_size - 1)
    if hyperparameters.numeric_embedding == "piecewise-linear":
        total += numeric * hyperparameters.num_bins * hyperparameters.embedding_size
    layers = 0
    for hidden in hyperparameters.hidden_sizes:
        layers, width = layers + width * hidden, hidden
    return total + hyperparameters.num_members * (layers + width * num_labels)


INFERENCE_BUDGET = 2 * multiply_adds(*BUDGET_REFERENCE_NETWORK)


def claim_slot(trial: optuna.Trial) -> int:
    """The slot `trial` runs; a trial that has no slot of its own is set aside (pruned before it trains)."""
    slot = slot_of(trial)
    chosen = slot_trials(trial.study.get_trials(deepcopy=False)).get(slot) if slot is not None else None
    if chosen is None or chosen.number != trial.number:
        reason = "every slot was taken" if slot is None else f"slot {slot} already has trial {chosen.number}"
        trial.set_user_attr(SET_ASIDE, reason)
        raise optuna.TrialPruned(reason)
    return slot


def study_arguments(settings: SearchSettings, reevaluation: bool = False) -> dict:
    """What `optuna.create_study` gets, here and through `Trainer.hyperparameter_search`. The re-evaluation's trials
    have fixed parameters (no sampling) and are never pruned."""
    if reevaluation:
        sampler, pruner = optuna.samplers.RandomSampler(seed=settings.seed), optuna.pruners.NopPruner()
    else:
        sampler = BatchSynchronousSampler(settings.seed, settings.trial_batch)
        pruner = BatchSynchronousPruner(
            optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2), settings.trial_batch
        )
    return {
        "study_name": settings.study_name,
        "storage": make_storage(settings.storage),
        "load_if_exists": True,
        "sampler": sampler,
        "pruner": pruner,
    }


def load_study(settings: SearchSettings, reevaluation: bool = False) -> optuna.Study:
    return optuna.create_study(direction="maximize", **study_arguments(settings, reevaluation))


def open_study(settings: SearchSettings) -> optuna.Study:
    """The study in storage (created if new), its recorded settings checked against `settings.identity`."""
    study = load_study(settings)
    if settings.identity is not None:
        check_study_identity(study, settings.identity)
    return study


def check_study_identity(study: optuna.Study, identity: dict) -> None:
    """Record `identity` on a new study; refuse a stored one whose recorded settings differ."""
    recorded = study.user_attrs.get("identity")
    if recorded is None:
        if study.get_trials(deepcopy=False):
            raise StudyMismatch(
                f"the study {study.study_name} holds trials but records no settings (not made by `music-genre train`); "
                "pass --fresh-study to start a new one beside it"
            )
        study.set_user_attr("identity", identity)
        return
    for name in sorted(set(identity) | set(recorded)):
        if recorded.get(name) != identity.get(name):
            raise StudyMismatch(
                f"the study {study.study_name} was made with {name} = {recorded.get(name)!r}, this run has "
                f"{identity.get(name)!r}; pass --fresh-study to start a new study (the old one is kept)"
            )


@dataclass(frozen=True)
class Reevaluation:
    """The re-evaluation study: `candidates` (the top trials' params, best first) each trained on `splits` further
    splits of the training and validation rows; slot s is candidate s // splits on split s % splits."""

    candidates: tuple[dict, ...]
    splits: int

    @property
    def n_slots(self) -> int:
        return len(self.candidates) * self.splits

    def params_of(self, slot: int) -> dict:
        return self.candidates[slot // self.splits]


def reevaluation_settings(settings: SearchSettings) -> SearchSettings:
    """The re-evaluation's study: beside the search's, in the same storage."""
    return replace(settings, study_name=f"{settings.study_name}-reevaluation")


def resplit(prepared: PreparedSplits, split: int, settings: SearchSettings) -> tuple[FeatureDataset, FeatureDataset]:
    """Further split `split` of the training and validation rows (SMOTE's synthetic rows left out), in the original
    proportions, stratified by genre (by (artist, track) group in a group-split run), its training part oversampled
    again; the test rows are never among them."""
    from sklearn.model_selection import GroupShuffleSplit, train_test_split

    features = np.concatenate([training_rows(prepared), prepared.features["validation"]])
    labels = np.concatenate([prepared.labels["train"][: len(prepared.indices["train"])], prepared.labels["validation"]])
    share = len(prepared.labels["validation"]) / len(labels)
    seed = int(np.random.SeedSequence([settings.seed, REEVALUATION_SEED_OFFSET, split]).generate_state(1)[0])
    rows = np.arange(len(labels))
    if settings.groups is None:
        train, validation = train_test_split(rows, test_size=share, stratify=labels, random_state=seed)
    else:
        groups = np.concatenate([settings.groups["train"], settings.groups["validation"]])
        train, validation = next(GroupShuffleSplit(1, test_size=share, random_state=seed).split(rows, groups=groups))
    train_features, train_labels = oversample(features[train], labels[train], seed)
    return (
        FeatureDataset(train_features.astype(np.float32), train_labels),
        FeatureDataset(features[validation], labels[validation]),
    )


def run_worker(
    prepared: PreparedSplits,
    extractor: GenreFeatureExtractor,
    settings: SearchSettings,
    worker: int,
    output_dir: Path,
    reevaluation: Reevaluation | None = None,
) -> None:
    """One search process: queued slots through `Trainer.hyperparameter_search`, a trial a call, until none is left;
    with `reevaluation`, the slots of the re-evaluation study (fixed parameters, each on its further split).

    It runs in a worker process of its own (see `run_search`), so the threads and log levels it sets are that
    process's only."""
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    transformers.logging.set_verbosity_error()
    class_weights = balanced_class_weights(prepared.labels["train"], len(prepared.genres))
    objective = BestValidationObjective()
    current: list[int] = []  # the number of the trial this process is on
    splits: dict[int, tuple[FeatureDataset, FeatureDataset]] = {}

    def seed_of(trial: optuna.Trial) -> int:
        slot = slot_of(trial)
        return trial_seed(settings.seed, slot if reevaluation is None else REEVALUATION_SEED_OFFSET + slot)

    def model_init(trial: optuna.Trial | None):
        objective.reset()
        if trial is None:  # Trainer builds one model before the search starts
            return build_model(Hyperparameters(), class_weights, extractor.encoded_size, prepared.id2label)
        current[:] = [trial.number]
        # model_init runs first in a trial, so a trial without a slot of its own never samples or trains.
        slot = claim_slot(trial)
        train_rows = training_rows(prepared)
        if reevaluation is not None:  # the datasets of this slot's split, before Trainer builds its data loaders
            split = slot % reevaluation.splits
            if split not in splits:
                splits[split] = resplit(prepared, split, settings)
            trainer.train_dataset, trainer.eval_dataset = splits[split]
            train_rows = trainer.train_dataset.features.numpy()
        set_seed(seed_of(trial))
        trial.set_user_attr("worker", worker)
        trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")
        architecture = sample_architecture(trial)
        cost = multiply_adds(Hyperparameters(**architecture), extractor.encoded_size, len(prepared.genres))
        if architecture["ensemble"] != "independent" and cost > INFERENCE_BUDGET:
            trial.set_user_attr("pruned_for", f"{cost:,} multiply-adds per row, over {INFERENCE_BUDGET:,}")
            raise optuna.TrialPruned(f"{cost} multiply-adds per row: over the inference budget {INFERENCE_BUDGET}")
        return build_model(
            Hyperparameters(**architecture), class_weights, extractor.encoded_size, prepared.id2label, train_rows
        )

    trainer = make_trainer(
        prepared,
        extractor,
        Hyperparameters(),
        output_dir / f"worker-{worker}",
        settings.seed,
        keep_best=False,
        quiet=True,
        model_init=model_init,
        trainer_class=EpochReportingTrainer,
    )
    if KEEP_EPOCH_BY == AVERAGE_LAST:
        trainer.averaged = LastEpochsWeights(AVERAGED_EPOCHS)
        trainer.add_callback(trainer.averaged)

    def load() -> optuna.Study:
        return optuna.load_study(study_name=settings.study_name, storage=make_storage(settings.storage))

    def run_one_trial() -> None:
        current.clear()
        try:
            trainer.hyperparameter_search(
                hp_space=lambda trial: {**hp_space(trial, settings.seed, settings.max_epochs), "seed": seed_of(trial)},
                compute_objective=objective,
                n_trials=1,
                direction="maximize",
                backend="optuna",
                **study_arguments(settings, reevaluation is not None),
            )
        except ValueError:
            # After its trial, transformers reads `study.best_trial`, which raises while no trial of the study has
            # completed: a first trial set aside (two workers queued a batch at once) or pruned. That trial itself
            # ended as it should; a trial that failed is not this case.
            if not current or load().trials[current[0]].state != optuna.trial.TrialState.PRUNED:
                raise

    if reevaluation is None:
        work_through_slots(load, run_one_trial, settings.n_trials, settings.trial_batch, settings.timeout)
    else:  # every slot at once: fixed parameters need no history, and nothing is pruned
        work_through_slots(
            load, run_one_trial, reevaluation.n_slots, reevaluation.n_slots, None, reevaluation.params_of
        )


def run_search(
    prepared: PreparedSplits,
    extractor: GenreFeatureExtractor,
    settings: SearchSettings,
    output_dir: Path,
    local_storage: bool,
) -> optuna.Study:
    """Run the slots the study still lacks over `settings.workers` processes; returns the study."""
    study = open_study(settings)
    _run_slots(study, settings.n_trials, (prepared, extractor, settings, output_dir), settings, local_storage)
    best_trial(study)  # raises when no slot completed
    return study


def run_reevaluation(
    prepared: PreparedSplits,
    extractor: GenreFeatureExtractor,
    settings: SearchSettings,
    study: optuna.Study,
    output_dir: Path,
    local_storage: bool,
) -> tuple[optuna.trial.FrozenTrial, dict | None]:
    """The top `settings.reevaluated_trials` completed trials of `study`, each trained again on
    `settings.reevaluation_splits` further splits of the training and validation rows (`resplit`) through
    `Trainer.hyperparameter_search`, in a study of fixed slots (so the result is the same for any number of
    workers); returns the trial with the best mean over those splits (a tie: the better search rank) and a report
    of every candidate's scores, mean and standard deviation (None, and the search's best, with no re-evaluation)."""
    if settings.reevaluated_trials < 1 or settings.reevaluation_splits < 1:
        return best_trial(study), None
    complete = [t for t in search_trials(study) if t.state == optuna.trial.TrialState.COMPLETE]
    top = sorted(complete, key=lambda t: (-t.value, slot_of(t)))[: settings.reevaluated_trials]
    reevaluation = Reevaluation(tuple(t.params for t in top), settings.reevaluation_splits)
    again = reevaluation_settings(settings)
    again_study = load_study(again, reevaluation=True)
    check_study_identity(again_study, {"candidate_slots": [slot_of(t) for t in top], **(settings.identity or {})})
    if reevaluation.n_slots:
        payload = (prepared, extractor, again, output_dir / "reevaluation", reevaluation)
        _run_slots(again_study, reevaluation.n_slots, payload, again, local_storage)
    scores = {slot: t.value for slot, t in slot_trials(again_study.get_trials(deepcopy=False)).items()}
    candidates = []
    for rank, trial in enumerate(top):
        values = [scores.get(rank * reevaluation.splits + split) for split in range(reevaluation.splits)]
        values = [float(v) for v in values if v is not None]
        candidates.append(
            {
                "slot": slot_of(trial),
                "search_validation": trial.value,
                "further_splits": values,
                "mean": float(np.mean(values)) if values else None,
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
            }
        )
    scored = [c for c in candidates if c["mean"] is not None]
    chosen = max(scored, key=lambda c: c["mean"]) if scored else candidates[0]  # max keeps the better rank on a tie
    report = {
        "candidates": candidates,
        "splits": reevaluation.splits,
        "chosen_slot": chosen["slot"],
        "how": (
            f"the top {len(top)} trials by search validation, each trained again on {reevaluation.splits} further "
            "splits of the training and validation rows (same proportions, "
            + ("(artist, track) groups kept whole" if settings.groups is not None else "stratified by genre")
            + f", SMOTE again on each training part); the chosen trial has the best mean validation {SELECTION_METRIC}"
        ),
    }
    return next(t for t in top if slot_of(t) == chosen["slot"]), report


def _run_slots(study: optuna.Study, n_slots: int, payload: tuple, settings: SearchSettings, local_storage: bool):
    """Run the slots `study` still lacks over `settings.workers` processes, each `run_worker(*payload[:3], worker,
    *payload[3:])`."""
    if local_storage:
        # Only this run uses its own storage, so a trial still RUNNING there was cut off by a kill: it fails and its
        # slot is queued again (a database study shared by machines does the same through the heartbeat).
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    done = sum(t.state in FINISHED for t in slot_trials(study.get_trials(deepcopy=False)).values())
    if done >= n_slots:
        return
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=start_worker,
            args=(
                os.getpid(),
                "music_genre.training.search:run_worker",
                pickle.dumps((*payload[:3], worker, *payload[3:])),
                progress_bars_shown(),
            ),
        )
        for worker in range(settings.workers)
    ]
    try:
        with environment_set(OMP_NUM_THREADS="1"):  # a worker's torch reads it at import: one thread each
            for process in processes:
                process.start()
        _follow(study, processes, n_slots, done)
    except BaseException:
        # Interrupted (Ctrl-C or SIGINT to this process alone): the workers stop with it instead of finishing their
        # trials, which the exit of a non-daemon process would wait for; their cut-off trials run again on restart.
        for process in processes:
            if getattr(process, "pid", None) is not None:  # started
                process.kill()
                process.join()
        raise
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"{len(failed)} search worker(s) failed (exit codes {failed}); see the log above")


def _follow(study: optuna.Study, processes: list, n_trials: int, already: int) -> None:
    """A progress bar over the study's finished slots while the workers run; a log line per trial off a terminal."""
    interactive = sys.stderr.isatty()
    with tqdm(total=n_trials, initial=already, desc="search trials", unit="trial", disable=not interactive) as bar:
        reported = already
        while any(p.is_alive() for p in processes):
            time.sleep(1.0)
            finished = [t for t in slot_trials(study.get_trials(deepcopy=False)).values() if t.state in FINISHED]
            best = [t.value for t in finished if t.state == optuna.trial.TrialState.COMPLETE]
            bar.n = min(len(finished), n_trials)
            if best:
                bar.set_postfix(best=f"{max(best):.4f}")
            bar.refresh()
            if not interactive and len(finished) > reported:
                reported = len(finished)
                best_text = f", best validation {max(best):.4f}" if best else ""
                logger.info("search: %d/%d trials finished%s", min(reported, n_trials), n_trials, best_text)
        for process in processes:
            process.join()
