"""The Optuna search through `Trainer.hyperparameter_search`, in resumable storage, over worker processes.

The study lives in storage (a journal file in the run folder by default, or any
Optuna storage URL), so a killed search started again continues the same study,
and several processes, here or on other machines, can work on it at once.
Every trial is seeded by its number and scored on the validation split only.
"""

import logging
import multiprocessing
import os
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
import transformers
from tqdm.auto import tqdm
from transformers import set_seed

from modeling import GenreFeatureExtractor
from training.data import PreparedSplits, balanced_class_weights
from training.search_worker import start_worker
from training.trainer import SELECTION_METRIC, GenreTrainer, Hyperparameters, build_model, make_trainer

# Capped at 512: in a 30-trial search with 1024 allowed, 1024-wide layers gained less than a split's noise
# (validation 0.6120 against 0.6094) at several times the cost per row.
WIDTHS = [64, 128, 256, 512]
BATCH_SIZES = [32, 64, 128, 256]
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
# Raised whenever the sampled space or its meaning changes: a study made under another version is not resumed.
SEARCH_SPACE_VERSION = 1

logger = logging.getLogger("music_genre")


class StudyMismatch(ValueError):
    """The stored study was made under other settings than this run's."""


@dataclass
class SearchSettings:
    n_trials: int
    seed: int
    storage: str
    study_name: str
    timeout: float | None = None
    workers: int = 1
    max_epochs: int = 25
    # What the study's trials were measured on (data sha256, encoding, split, ...); recorded at creation and
    # compared on every rerun, so a study is never resumed under other settings.
    identity: dict | None = None


def sample_architecture(trial: optuna.Trial) -> dict:
    """Sampled in `model_init`, which builds the network before `hp_space` sets the optimiser."""
    n_layers = trial.suggest_int("n_layers", 2, 4)
    widths = [trial.suggest_categorical(f"width_{i}", WIDTHS) for i in range(n_layers)]
    return {"hidden_sizes": widths, "dropout": trial.suggest_float("dropout", 0.0, 0.5)}


def hp_space(trial: optuna.Trial, seed: int, max_epochs: int) -> dict:
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "per_device_train_batch_size": trial.suggest_categorical("batch_size", BATCH_SIZES),
        "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-1, log=True),
        "num_train_epochs": trial.suggest_int("epochs", min(5, max_epochs), max_epochs),
        "seed": trial_seed(seed, trial.number),
    }


def trial_seed(seed: int, number: int) -> int:
    return seed * 1000 + number


def hyperparameters_from(params: dict, num_members: int) -> Hyperparameters:
    """The best trial's parameters as the final model's training settings."""
    return Hyperparameters(
        hidden_sizes=[params[f"width_{i}"] for i in range(params["n_layers"])],
        dropout=params["dropout"],
        learning_rate=params["learning_rate"],
        batch_size=params["batch_size"],
        weight_decay=params["weight_decay"],
        epochs=params["epochs"],
        num_members=num_members,
    )


class BestValidationObjective:
    """A trial's objective: its best validation figure so far (Trainer reports after every epoch)."""

    def __init__(self):
        self.best = float("-inf")

    def reset(self) -> None:
        self.best = float("-inf")

    def __call__(self, metrics: dict[str, float]) -> float:
        self.best = max(self.best, metrics[f"eval_{SELECTION_METRIC}"])
        return self.best


class EpochReportingTrainer(GenreTrainer):
    """Reports to the pruner per epoch, so trials with different batch sizes are compared at the same step."""

    def _report_to_hp_search(self, trial, step: int, metrics: dict[str, float]) -> None:
        super()._report_to_hp_search(trial, round(self.state.epoch or 0), metrics)


def make_storage(storage: str) -> optuna.storages.BaseStorage | str:
    if "://" in storage:
        return storage
    Path(storage).parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))


def study_arguments(settings: SearchSettings, worker: int = 0) -> dict:
    """What `optuna.create_study` gets, here and through `Trainer.hyperparameter_search`."""
    return {
        "study_name": settings.study_name,
        "storage": make_storage(settings.storage),
        "load_if_exists": True,
        "sampler": optuna.samplers.TPESampler(seed=settings.seed + worker, n_startup_trials=8),
        "pruner": optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=2),
    }


def load_study(settings: SearchSettings) -> optuna.Study:
    return optuna.create_study(direction="maximize", **study_arguments(settings))


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
                f"the study {study.study_name} holds trials but records no settings (made by an older version); "
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


def run_worker(
    prepared: PreparedSplits,
    extractor: GenreFeatureExtractor,
    settings: SearchSettings,
    n_trials: int,
    worker: int,
    output_dir: Path,
) -> None:
    """One search process: `n_trials` trials of `Trainer.hyperparameter_search` on the shared study."""
    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    transformers.logging.set_verbosity_error()
    class_weights = balanced_class_weights(prepared.labels["train"])
    objective = BestValidationObjective()

    def model_init(trial: optuna.Trial | None):
        objective.reset()
        if trial is None:  # Trainer builds one model before the search starts
            return build_model(Hyperparameters(), class_weights, extractor.encoded_size)
        set_seed(trial_seed(settings.seed, trial.number))
        trial.set_user_attr("worker", worker)
        architecture = sample_architecture(trial)
        return build_model(Hyperparameters(**architecture), class_weights, extractor.encoded_size)

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
    trainer.hyperparameter_search(
        hp_space=lambda trial: hp_space(trial, settings.seed, settings.max_epochs),
        compute_objective=objective,
        n_trials=n_trials,
        direction="maximize",
        backend="optuna",
        timeout=settings.timeout,
        **study_arguments(settings, worker),
    )


def run_search(
    prepared: PreparedSplits,
    extractor: GenreFeatureExtractor,
    settings: SearchSettings,
    output_dir: Path,
    local_storage: bool,
) -> optuna.Study:
    """Run the trials the study still lacks over `settings.workers` processes; returns the study."""
    study = open_study(settings)
    if local_storage:
        # Only this run uses its own storage, so a trial still RUNNING there was cut off by a kill.
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    taken = len(study.get_trials(deepcopy=False, states=(*FINISHED, optuna.trial.TrialState.RUNNING)))
    remaining = max(settings.n_trials - taken, 0)
    if remaining:
        shares = [remaining // settings.workers + (i < remaining % settings.workers) for i in range(settings.workers)]
        context = multiprocessing.get_context("spawn")
        environment = {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"), "TQDM_DISABLE": None}
        os.environ["OMP_NUM_THREADS"] = "1"
        processes = [
            context.Process(
                target=start_worker,
                args=(os.getpid(), pickle.dumps((prepared, extractor, settings, share, worker, output_dir))),
                daemon=False,
            )
            for worker, share in enumerate(shares)
            if share
        ]
        for process in processes:
            process.start()
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        _follow(study, processes, settings.n_trials, taken)
        failed = [p.exitcode for p in processes if p.exitcode != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} search worker(s) failed (exit codes {failed}); see the log above")
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        raise RuntimeError("the search completed no trial; raise --n-trials or --timeout")
    return study


def _follow(study: optuna.Study, processes: list, n_trials: int, already: int) -> None:
    """A progress bar over the study's finished trials while the workers run; a log line per trial off a terminal."""
    interactive = sys.stderr.isatty()
    with tqdm(total=n_trials, initial=already, desc="search trials", unit="trial", disable=not interactive) as bar:
        reported = already
        while any(p.is_alive() for p in processes):
            time.sleep(1.0)
            finished = study.get_trials(deepcopy=False, states=FINISHED)
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
        bar.n = min(len(study.get_trials(deepcopy=False, states=FINISHED)), n_trials)
        bar.refresh()
