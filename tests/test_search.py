"""The batch-synchronous search: the same trials and the same model whatever the number of workers, processes,
storages and interruptions."""

import hashlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import pytest

from training.search import (
    FINISHED,
    SLOT,
    BatchSynchronousPruner,
    BatchSynchronousSampler,
    SearchSettings,
    claim_slot,
    load_study,
    search_trials,
    work_through_slots,
)

N_TRIALS, TRIAL_BATCH = 8, 3
STUDY = "genre-ffn-stratified-seed5"


def train_command(data: Path, output: Path, workers: int = 1, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "cli", "train", "--data", str(data), "--output", str(output),
        "--seed", "5", "--n-trials", str(N_TRIALS), "--trial-batch", str(TRIAL_BATCH), "--max-epochs", "2",
        "--members", "1", "--workers", str(workers), *extra,
    ]  # fmt: skip


def run_command(command: list[str], log: Path) -> None:
    with open(log, "wb") as handle:
        result = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, timeout=600)
    assert result.returncode == 0, log.read_text()[-3000:]


def outcome(run: Path, study: optuna.Study | None = None) -> dict:
    """What must not depend on workers or interruptions: trials by slot, the chosen trial, weights, test figures."""
    study = study or load_study(SearchSettings(N_TRIALS, 5, str(run / "optuna-study.journal"), STUDY))
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "trials": [(t.user_attrs[SLOT], t.params, t.state, t.value) for t in search_trials(study)],
        "search": metrics["search"],
        "tuned": metrics["tuned"],
        "weights": hashlib.sha256((run / "model" / "model.safetensors").read_bytes()).hexdigest(),
    }


@pytest.fixture(scope="module")
def reference(slice_csv, tmp_path_factory) -> dict:
    """An uninterrupted search of 8 trials in batches of 3 with two worker processes."""
    run = tmp_path_factory.mktemp("reference") / "run"
    run_command(train_command(slice_csv, run, 2), run.parent / "log")
    return outcome(run)


def test_the_reference_search_is_complete(reference):
    assert [slot for slot, *_ in reference["trials"]] == list(range(N_TRIALS))
    assert all(state in FINISHED for _, _, state, _ in reference["trials"])


def test_one_worker_gives_the_same_trials_and_model_as_two(reference, slice_csv, tmp_path):
    run_command(train_command(slice_csv, tmp_path / "run", 1), tmp_path / "log")
    assert outcome(tmp_path / "run") == reference


def test_a_killed_search_resumed_ends_as_an_uninterrupted_one(reference, slice_csv, tmp_path):
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
