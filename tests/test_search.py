"""The batch-synchronous search: the same trials and the same model whatever the number of workers, processes,
storages and interruptions."""

import dataclasses
import hashlib
import inspect
import json
import os
import pickle
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import numpy as np
import optuna
import pytest
import transformers

import music_genre.training.search
from music_genre.modeling import GenreFeatureExtractor
from music_genre.training.data import PreparedSplits
from music_genre.training.search import (
    FINISHED,
    SEARCH_SPACE,
    SEARCH_SPACE_VERSION,
    SET_ASIDE,
    SLOT,
    TABM_MEMBERS,
    BatchSynchronousPruner,
    BatchSynchronousSampler,
    BestValidationObjective,
    EpochReportingTrainer,
    SearchSettings,
    claim_slot,
    hp_space,
    hyperparameters_from,
    load_study,
    run_search,
    run_worker,
    sample_architecture,
    search_trials,
    work_through_slots,
)
from music_genre.training.trainer import TRAINING_ARGUMENTS, Hyperparameters, build_model, make_trainer
from tests.conftest import GENRES, RUN_FIGURES

N_TRIALS, TRIAL_BATCH = 8, 3
STUDY = "genre-ffn-stratified-seed5"


def train_command(data: Path, output: Path, workers: int = 1, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "music_genre", "train", "--data", str(data), "--output", str(output),
        "--seed", "5", "--n-trials", str(N_TRIALS), "--trial-batch", str(TRIAL_BATCH), "--max-epochs", "2",
        "--members", "1", "--workers", str(workers), "--reevaluate-top", "2", "--reevaluation-splits", "1", *extra,
    ]  # fmt: skip


def run_command(command: list[str], log: Path) -> None:
    with open(log, "wb") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=600)
    assert result.returncode == 0, log.read_text()[-3000:]


def outcome(run: Path, study: optuna.Study | None = None) -> dict:
    """What must not depend on workers, interruptions or the run (same seed): trials by slot, metrics.json, weights."""
    study = study or load_study(SearchSettings(N_TRIALS, 5, str(run / "optuna-study.journal"), STUDY))
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["compute"]  # wall-clock seconds and the number of workers: the only figures allowed to differ
    return {
        "trials": [(t.user_attrs[SLOT], t.params, t.state, t.value) for t in search_trials(study)],
        # The search, the re-evaluation, the initial model (with two workers trained in a process of its own, with
        # one in the run's), the tuned model, calibration, conformal sets, importance: every figure of the run.
        "metrics": metrics,
        "weights": hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest(),
    }


@pytest.fixture(scope="module")
def reference_run(slice_csv, tmp_path_factory) -> Path:
    """An uninterrupted search of 8 trials in batches of 3 with two worker processes."""
    run = tmp_path_factory.mktemp("reference") / "run"
    run_command(train_command(slice_csv, run, 2), run.parent / "log")
    return run


@pytest.fixture(scope="module")
def reference(reference_run) -> dict:
    return outcome(reference_run)


def test_the_reference_search_is_complete(reference):
    assert [slot for slot, *_ in reference["trials"]] == list(range(N_TRIALS))
    assert all(state in FINISHED for _, _, state, _ in reference["trials"])


def test_a_two_worker_run_draws_every_figure(reference_run):
    """With two workers the data figures are drawn in the initial model's process, beside the final training."""
    assert {path.name for path in (reference_run / "figures").iterdir()} == RUN_FIGURES


def test_a_killed_search_resumed_by_one_worker_ends_as_an_uninterrupted_run_of_two(reference, slice_csv, tmp_path):
    """Killed after 4 of its 8 trials, a two-worker run is resumed with one worker: that worker runs the remaining
    trials, the re-evaluation and the initial model in the run's own process, and every trial, figure and weight is
    the uninterrupted two-worker run's, so the worker count changes nothing either."""
    run, journal = tmp_path / "run", tmp_path / "run" / "optuna-study.journal"
    settings = SearchSettings(N_TRIALS, 5, str(journal), STUDY)
    with open(tmp_path / "first.log", "wb") as log:
        process = subprocess.Popen(
            train_command(slice_csv, run, 2), start_new_session=True, stdout=log, stderr=subprocess.STDOUT
        )
        deadline, finished = time.time() + 240, []
        while time.time() < deadline and process.poll() is None and len(finished) < 4:
            time.sleep(0.3)
            if journal.exists():
                finished = load_study(settings).get_trials(states=FINISHED)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert 4 <= len(finished) < N_TRIALS, (tmp_path / "first.log").read_text()[-2000:]

    run_command(train_command(slice_csv, run, 1), tmp_path / "second.log")
    assert outcome(run) == reference


def synthetic_objective(trial: optuna.Trial, pause: random.Random) -> float:
    """A quick stand-in for a training: three reported steps, so the pruner takes part, and random pauses, so the
    workers finish in a different order at each run."""
    claim_slot(trial)
    x = trial.suggest_float("x", -4.0, 4.0)
    width = trial.suggest_categorical("width", [16, 32, 64])
    value = 0.0
    for step in range(3):
        time.sleep(pause.uniform(0.0, 0.02))
        value = -((x - 1.0) ** 2) - abs(width - 32) / 32 + step
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return value


def synthetic_search(storage: str, workers: int, n_trials: int = 20, trial_batch: int = 4) -> list[tuple]:
    def study() -> optuna.Study:
        return optuna.create_study(
            study_name="synthetic",
            storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage)),
            load_if_exists=True,
            direction="maximize",
            sampler=BatchSynchronousSampler(seed=3, trial_batch=trial_batch),
            pruner=BatchSynchronousPruner(optuna.pruners.MedianPruner(n_startup_trials=2), trial_batch),
        )

    def worker(number: int) -> None:
        pause = random.Random(number * 7919 + time.monotonic_ns())
        work_through_slots(
            study, lambda: study().optimize(lambda t: synthetic_objective(t, pause), n_trials=1), n_trials, trial_batch
        )

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [(t.user_attrs[SLOT], t.params, t.state, t.value) for t in search_trials(study())]


def test_the_sampler_and_pruner_see_only_earlier_batches_whatever_the_timing(tmp_path):
    """20 trials in batches of 4: TPE takes over after 8 (its start-up trials), and the median pruner prunes."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    one = synthetic_search(str(tmp_path / "one.journal"), workers=1)
    three = synthetic_search(str(tmp_path / "three.journal"), workers=3)
    again = synthetic_search(str(tmp_path / "again.journal"), workers=3)
    assert one == three == again
    assert {state for *_, state, _ in one} == set(FINISHED)  # some pruned, some complete
    assert len({round(params["x"], 6) for _, params, *_ in one}) == 20


def test_a_second_trial_for_a_taken_slot_is_set_aside_without_training(tmp_path):
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal")))
    study = optuna.create_study(storage=storage, direction="maximize", sampler=BatchSynchronousSampler(1, 2))
    for slot in (0, 1, 0):  # slot 0 twice, as two machines queueing at once would
        study.enqueue_trial({}, user_attrs={SLOT: slot})
    study.optimize(lambda trial: synthetic_objective(trial, random.Random(0)), n_trials=4)
    trials = study.get_trials()
    reasons = [t.user_attrs.get("set_aside") for t in trials]
    assert reasons == [None, None, "slot 0 already has trial 0", "every slot was taken"]
    assert [t.state for t in trials[2:]] == [optuna.trial.TrialState.PRUNED] * 2
    assert all(not t.params and not t.intermediate_values for t in trials[2:])
    assert [t.user_attrs[SLOT] for t in search_trials(study)] == [0, 1]


# A real PostgreSQL server, started by the test in a temporary folder: two `train` processes started separately on
# one study (as on two machines) end with the same trials and the same model as one process.


def postgres_binaries() -> Path | None:
    if shutil.which("pg_ctl") and shutil.which("initdb"):
        return Path(shutil.which("pg_ctl")).resolve().parent  # Debian links them from its versioned folder
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@pytest.fixture(scope="module")
def postgres_url():
    binaries = postgres_binaries()
    if binaries is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL's server binaries (initdb, pg_ctl) are missing; .ci/run installs `postgresql`")
        pytest.skip("PostgreSQL's server binaries (initdb, pg_ctl) are not installed: apt-get install postgresql")
    pytest.importorskip("psycopg", reason="the PostgreSQL driver: pip install -e '.[dev]'")
    root = Path(tempfile.mkdtemp(prefix="music-genre-pg-"))
    data, sockets = root / "data", root / "sockets"
    sockets.mkdir()
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the server runs as Debian's `postgres` user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
        root.chmod(0o755)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    subprocess.run([*as_user, str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-k {sockets} -p {port} -c listen_addresses=''"
    subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l",
                    str(root / "server.log"), "start"], check=True, capture_output=True)  # fmt: skip
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={sockets}&port={port}"
    finally:
        subprocess.run([*as_user, str(binaries / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(root, ignore_errors=True)


def test_two_processes_on_one_postgresql_study_end_as_one_process(reference, postgres_url, slice_csv, tmp_path):
    runs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    logs = [open(tmp_path / f"{run.name}.log", "wb") for run in runs]
    try:
        processes = [
            subprocess.Popen(train_command(slice_csv, run, 1, "--storage", postgres_url), stdout=log,
                             stderr=subprocess.STDOUT)
            for run, log in zip(runs, logs)
        ]  # fmt: skip
        codes = [process.wait(timeout=600) for process in processes]
    finally:
        for log in logs:
            log.close()
    assert codes == [0, 0], [(tmp_path / f"{run.name}.log").read_text()[-2000:] for run in runs]
    settings = SearchSettings(N_TRIALS, 5, postgres_url, STUDY)
    study = load_study(settings)
    for run in runs:
        assert outcome(run, study) == reference
    # Both processes ran trials of the one study.
    assert len({t.user_attrs["process"] for t in search_trials(study)}) == 2


# The search space, declared once in training.search: the study samples exactly it, and decoding inverts sampling.

# The space of the published studies and trials.csv (a 2-layer trial, max_epochs 25): a change here is a new search
# space, so SEARCH_SPACE_VERSION goes up with it.
PUBLISHED_SPACE = [
    ("n_layers", optuna.distributions.IntDistribution(2, 4)),
    ("width_0", optuna.distributions.CategoricalDistribution((64, 128, 256, 512))),
    ("width_1", optuna.distributions.CategoricalDistribution((64, 128, 256, 512))),
    ("dropout", optuna.distributions.FloatDistribution(0.0, 0.5)),
    ("ensemble", optuna.distributions.CategoricalDistribution(("independent", "tabm"))),
    ("numeric_embedding", optuna.distributions.CategoricalDistribution((None, "piecewise-linear"))),
    ("learning_rate", optuna.distributions.FloatDistribution(1e-4, 3e-3, log=True)),
    ("batch_size", optuna.distributions.CategoricalDistribution((32, 64, 128, 256))),
    ("weight_decay", optuna.distributions.FloatDistribution(1e-6, 1e-1, log=True)),
    ("epochs", optuna.distributions.IntDistribution(5, 25)),
]


def search_distributions(params: dict, max_epochs: int) -> dict[str, optuna.distributions.BaseDistribution]:
    """Every study parameter a trial with `params` sampled, in sampling order, with its declared distribution."""
    return {name: d for setting in SEARCH_SPACE for name, d in setting.distributions(params, max_epochs).items()}


def test_the_declared_space_is_the_published_one():
    assert list(search_distributions({"n_layers": 2}, 25).items()) == PUBLISHED_SPACE, (
        "the search space changed: raise SEARCH_SPACE_VERSION (a stored study is then not resumed) and update this list"
    )
    assert SEARCH_SPACE_VERSION == 3
    # A run with fewer epochs samples from min(5, max_epochs) up to its max_epochs.
    assert search_distributions({"n_layers": 4}, 3)["epochs"] == optuna.distributions.IntDistribution(3, 3)
    assert list(search_distributions({"n_layers": 4}, 25))[1:5] == ["width_0", "width_1", "width_2", "width_3"]
    assert {setting.field for setting in SEARCH_SPACE} <= {f.name for f in dataclasses.fields(Hyperparameters)}


class RecordingTrial:
    """A trial that notes the name of each parameter suggested, in order."""

    def __init__(self, trial: optuna.Trial):
        self.trial, self.suggested = trial, []

    def __getattr__(self, name: str):
        attribute = getattr(self.trial, name)
        if not name.startswith("suggest_"):
            return attribute

        def suggest(parameter: str, *args, **kwargs):
            self.suggested.append(parameter)
            return attribute(parameter, *args, **kwargs)

        return suggest


@pytest.mark.parametrize("max_epochs", [25, 3])
def test_a_real_study_samples_the_declared_space_in_order_and_decoding_gives_back_what_was_sampled(max_epochs):
    """12 trials in batches of 4 through the search's own sampler, so TPE (after 8 start-up trials) takes part."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=BatchSynchronousSampler(seed=5, trial_batch=4))
    sampled = {}

    def objective(trial: optuna.Trial) -> float:
        recording = RecordingTrial(trial)
        architecture = sample_architecture(recording)  # as model_init does, then hp_space as Trainer does
        arguments = hp_space(recording, 5, max_epochs)
        sampled[trial.number] = (recording.suggested, architecture, arguments)
        return arguments["learning_rate"] * 100 - abs(sum(architecture["hidden_sizes"]) - 600) / 600

    for slot in range(12):
        study.enqueue_trial({}, user_attrs={SLOT: slot})
    study.optimize(objective, n_trials=12)

    renamed = {argument: name for name, argument in TRAINING_ARGUMENTS.items()}
    for trial in study.trials:
        suggested, architecture, arguments = sampled[trial.number]
        declared = search_distributions(trial.params, max_epochs)
        # The study's parameters are exactly the declared ones, with their distributions, suggested in their order.
        assert list(trial.distributions.items()) == list(declared.items())
        assert suggested == list(declared) == list(trial.params)
        assert arguments["seed"] == 5 * 1000 + trial.user_attrs[SLOT]
        optimiser = {renamed[name]: value for name, value in arguments.items() if name != "seed"}
        # A TabM trial's members are part of its architecture; an independent one trains 1 and the run its own number.
        expected = Hyperparameters(**{"num_members": 3, **architecture, **optimiser})
        assert hyperparameters_from(trial.params, 3) == expected
        assert (architecture.get("num_members") == TABM_MEMBERS) == (architecture["ensemble"] == "tabm")
        # A trial given those parameters samples them back.
        fixed = optuna.trial.FixedTrial(trial.params)
        fixed.set_user_attr(SLOT, trial.user_attrs[SLOT])
        assert sample_architecture(fixed) == architecture and hp_space(fixed, 5, max_epochs) == arguments
    assert len({tuple(params) for params in (t.params for t in study.trials)}) > 1  # several depths were tried


def test_hp_space_sets_training_arguments_fields():
    """Trainer only warns about, and skips, a key that is not a TrainingArguments field."""
    fixed = optuna.trial.FixedTrial({"learning_rate": 1e-3, "batch_size": 64, "weight_decay": 1e-4, "epochs": 7})
    fixed.set_user_attr(SLOT, 2)
    arguments = hp_space(fixed, 5, 25)
    names = {f.name for f in dataclasses.fields(transformers.TrainingArguments)}
    assert set(arguments) <= names
    assert arguments == {
        "learning_rate": 1e-3, "per_device_train_batch_size": 64, "weight_decay": 1e-4, "num_train_epochs": 7,
        "seed": 5002,
    }  # fmt: skip


def test_epoch_reporting_still_overrides_a_method_of_trainer():
    """EpochReportingTrainer reports to the pruner per epoch by overriding Trainer's private
    `_report_to_hp_search(self, trial, step, metrics)`; a transformers release that renames it or changes its
    arguments would leave the override silently unused (pruning then compares global steps)."""
    version = transformers.__version__
    method = getattr(transformers.Trainer, "_report_to_hp_search", None)
    assert method is not None, (
        f"transformers {version} has no Trainer._report_to_hp_search: EpochReportingTrainer (training/search.py) no "
        "longer reports per epoch; find the method Trainer now reports to the search with, and override that"
    )
    parameters = list(inspect.signature(method).parameters)
    assert parameters == ["self", "trial", "step", "metrics"], (
        f"transformers {version} changed Trainer._report_to_hp_search to {parameters}; EpochReportingTrainer "
        "(training/search.py) overrides it as (self, trial, step, metrics)"
    )


def test_a_worker_whose_first_trial_is_set_aside_goes_on(tmp_path, raw_rows):
    """Two workers that queue a batch at once make a duplicate of each slot; the second is set aside (pruned). Before
    any trial of the study has completed, transformers' `study.best_trial` after that trial raises; the worker must
    go on, not die (a 2-worker `train` lost a worker to it)."""
    rng = np.random.default_rng(0)
    extractor = GenreFeatureExtractor().fit(raw_rows)
    features = rng.normal(size=(64, extractor.encoded_size)).astype(np.float32)
    prepared = PreparedSplits(
        {"train": np.arange(64), "validation": np.arange(32)},
        {"train": features, "validation": features[:32]},
        {"train": np.arange(64) % 10, "validation": np.arange(32) % 10},
        extractor,
        GENRES,
    )
    settings = SearchSettings(2, 0, str(tmp_path / "s.journal"), "race", timeout=5, max_epochs=1, trial_batch=2)
    study = load_study(settings)
    study.enqueue_trial({}, user_attrs={SLOT: 0})
    study.enqueue_trial({}, user_attrs={SLOT: 0})  # the other worker's copy, queued at the same moment
    study.enqueue_trial({}, user_attrs={SLOT: 1})
    study.ask()  # the other worker runs slot 0's first trial (trial 0), still running
    # This worker sees slot 1 waiting, but Optuna hands out the oldest waiting trial: slot 0's copy, set aside.
    run_worker(prepared, extractor, settings, 0, tmp_path / "out")  # then slot 1; then waits for slot 0 until timeout
    first, copy, second = load_study(settings).trials
    assert first.state == optuna.trial.TrialState.RUNNING
    assert copy.state == optuna.trial.TrialState.PRUNED and "slot 0 already has trial 0" in copy.user_attrs[SET_ASIDE]
    assert second.state == optuna.trial.TrialState.COMPLETE and second.user_attrs[SLOT] == 1


def test_a_search_trial_reports_to_its_pruner_at_each_epoch(tmp_path, raw_rows):
    """Two epochs of four steps each: the pruner sees steps 1 and 2 (epochs), not 4 and 8 (global steps)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(64, 24)).astype(np.float32)
    labels = np.arange(64) % 10
    extractor = GenreFeatureExtractor().fit(raw_rows)
    prepared = PreparedSplits(
        {"train": np.arange(64), "validation": np.arange(32)},
        {"train": features, "validation": features[:32]},
        {"train": labels, "validation": labels[:32]},
        extractor,
        GENRES,
    )
    trainer = make_trainer(
        prepared, extractor, Hyperparameters(hidden_sizes=[8]), tmp_path / "out", 0, keep_best=False, quiet=True,
        model_init=lambda trial: build_model(Hyperparameters(hidden_sizes=[8]), None, 24, dict(enumerate(GENRES))),
        trainer_class=EpochReportingTrainer,
    )  # fmt: skip
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(tmp_path / "s.journal")))
    trainer.hyperparameter_search(
        hp_space=lambda trial: {"num_train_epochs": 2, "per_device_train_batch_size": 16},
        compute_objective=BestValidationObjective(),
        n_trials=1,
        direction="maximize",
        backend="optuna",
        study_name="epochs",
        storage=storage,
    )
    (trial,) = optuna.load_study(study_name="epochs", storage=storage).trials
    assert sorted(trial.intermediate_values) == [1, 2], (
        f"transformers {transformers.__version__}: the pruner saw steps {sorted(trial.intermediate_values)}"
    )


class StartedWorker:
    """Stands for a spawned worker: notes the environment it starts with, then finishes every slot at once."""

    started_with: list[dict] = []
    fail = False

    def __init__(self, target, args):
        self.settings = pickle.loads(args[2])[2]  # args: parent pid, target, payload

    def start(self) -> None:
        StartedWorker.started_with.append(dict(os.environ))
        if StartedWorker.fail:
            raise OSError("no process could start")
        study = load_study(self.settings)
        for slot in range(self.settings.n_trials):
            study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={SLOT: slot}))

    exitcode = 0

    def is_alive(self) -> bool:
        return False

    def join(self) -> None:
        pass


@pytest.mark.parametrize("fail", [False, True])
def test_run_search_leaves_the_callers_environment_as_it_was(tmp_path, monkeypatch, fail):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setattr(StartedWorker, "started_with", [])
    monkeypatch.setattr(StartedWorker, "fail", fail)
    context = types.SimpleNamespace(Process=StartedWorker)
    monkeypatch.setattr(music_genre.training.search.multiprocessing, "get_context", lambda method: context)
    before = dict(os.environ)
    settings = SearchSettings(2, 5, str(tmp_path / "s.journal"), "environment", workers=2)
    if fail:
        with pytest.raises(OSError, match="no process could start"):
            run_search(None, None, settings, tmp_path, local_storage=True)
    else:
        assert len(search_trials(run_search(None, None, settings, tmp_path, local_storage=True))) == 2
    assert dict(os.environ) == before
    assert [env["OMP_NUM_THREADS"] for env in StartedWorker.started_with] == ["1"] * (1 if fail else 2)


@pytest.mark.parametrize("grouped", [False, True])
def test_the_reevaluation_resplits_the_real_training_and_validation_rows_only(grouped):
    """Each further split pools the real training rows (not SMOTE's) and the validation rows, keeps the validation
    share, keeps an (artist, track) group on one side in a group run, and is the same at every call."""
    from music_genre.training.search import resplit
    from tests.test_trainer_settings import _prepared

    prepared = _prepared(rows=400, synthetic=80)
    groups = {"train": np.arange(400) // 4, "validation": 1000 + np.arange(50) // 2} if grouped else None
    settings = SearchSettings(4, 5, "unused", "unused", groups=groups)
    train, validation = resplit(prepared, 0, settings)
    pooled = np.concatenate([prepared.features["train"][:400], prepared.features["validation"]])
    position = {row.tobytes(): i for i, row in enumerate(pooled)}
    validation_rows = [position[row.tobytes()] for row in validation.features.numpy()]  # a KeyError: not a real row
    real_train = [position.get(row.tobytes()) for row in train.features.numpy()]
    assert len(validation_rows) == pytest.approx(450 * 50 / 450, abs=8)
    assert set(validation_rows).isdisjoint(i for i in real_train if i is not None)
    assert {i for i in real_train if i is not None} | set(validation_rows) == set(range(450))
    assert train.features.numpy()[:, :11].max() < 20  # none of the far-out synthetic rows
    if grouped:
        group_of = np.concatenate([groups["train"], groups["validation"]])
        assert set(group_of[validation_rows]).isdisjoint(group_of[[i for i in real_train if i is not None]])
    again, other = resplit(prepared, 0, settings), resplit(prepared, 1, settings)
    assert np.array_equal(again[1].features, validation.features)
    assert not np.array_equal(other[1].features, validation.features)


def test_a_tabm_trial_over_the_inference_budget_is_measured_by_its_matrices():
    """`multiply_adds` counts each member's matrices (TabM's shared ones once per member) and the embeddings' maps;
    the budget is twice the bundled model's."""
    import torch

    from music_genre.training.search import BUDGET_REFERENCE_NETWORK, INFERENCE_BUDGET, multiply_adds
    from tests.conftest import make_model

    bundled = make_model(hidden_sizes=[512, 256, 128], num_members=3, input_size=35)
    linear = sum(m.weight.numel() for m in bundled.modules() if isinstance(m, torch.nn.Linear))
    assert multiply_adds(*BUDGET_REFERENCE_NETWORK) == linear and INFERENCE_BUDGET == 2 * linear
    settings = Hyperparameters(
        hidden_sizes=[64, 32], ensemble="tabm", num_members=4, numeric_embedding="piecewise-linear"
    )
    tabm = make_model(hidden_sizes=[64, 32], ensemble="tabm", num_members=4, input_size=35, **{
        "numeric_embedding": "piecewise-linear", "embedding_size": 16,
        "embedding_bins": [[float(i) for i in range(49)]] * 22,
    })  # fmt: skip
    shared = sum(block[0].weight.numel() for block in tabm.ensemble.blocks) * 4 + tabm.ensemble.head.weight.numel()
    assert multiply_adds(settings, 35, 10) == shared + tabm.numeric_embedding.weight.numel()
