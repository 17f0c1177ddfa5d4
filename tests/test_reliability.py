"""Faults and mistakes a new user makes: nothing they made is removed, nothing is mixed, a known fault is one line."""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import psutil
import pytest

import music_genre
from music_genre import main
from music_genre.hub_card.publish import PublishError, stage
from music_genre.predict import PredictError
from music_genre.training import run_folder
from music_genre.training.data import DataError
from music_genre.training.run_folder import RunFolderBusy, commit, run_lock, settle, verify
from music_genre.training.search import NoCompletedTrial, SearchSettings, StudyMismatch, load_study
from tests.conftest import REPO, REPO_ID, SPACE_REPO_ID


@pytest.fixture(scope="module")
def slice_csv(csv_path, tmp_path_factory) -> Path:
    """100 raw rows per genre of the real CSV and 3 rows without a genre, written at test time."""
    frame = pd.read_csv(csv_path, dtype={"tempo": str}).dropna(how="all")
    frame = frame.groupby("music_genre", group_keys=False).sample(100, random_state=0)
    frame.loc[frame.index[:3], "music_genre"] = None
    path = tmp_path_factory.mktemp("reliability") / "slice.csv"
    frame.sample(frac=1.0, random_state=1).to_csv(path, index=False)
    return path


def train_args(data: Path, output: Path, *extra: str) -> list[str]:
    # No re-evaluation (tested in test_search): it would only add a worker process and trainings to every run here.
    common = ["--seed", "3", "--n-trials", "2", "--max-epochs", "1", "--members", "1", "--reevaluate-top", "0"]
    return ["train", "--data", str(data), "--output", str(output), *common, *extra]


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# Staging writes only into what it owns.


def test_staging_refuses_folders_it_did_not_make_and_leaves_them_as_they_were(small_run, tmp_path):
    target = tmp_path / "checkout"
    (target / "space" / "model").mkdir(parents=True)
    (target / "space" / "app.py").write_text("my app\n")
    (target / "space" / "model" / "model.safetensors").write_bytes(b"my model")
    (target / "model").mkdir()
    (target / "model" / "notes.txt").write_text("mine\n")
    before = files_under(target)
    for kinds in ({}, {"space_repo_id": SPACE_REPO_ID}):
        with pytest.raises(PublishError, match="exists and was not made by staging") as error:
            stage(small_run, target, REPO_ID, **kinds, data=str(small_run.parent / "slice.csv"))
        assert "\n" not in str(error.value)
        assert files_under(target) == before


def test_staging_never_touches_a_run_folder(small_run, tmp_path):
    run = Path(shutil.copytree(small_run, tmp_path / "run"))
    before = files_under(run)
    with pytest.raises(PublishError, match="it is a run folder"):
        stage(run, run, REPO_ID)
    with pytest.raises(PublishError, match="it lies inside the run folder"):
        stage(run, run / "model", REPO_ID)
    assert files_under(run) == before


def test_staging_again_replaces_only_its_own_folders(small_run, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("kept\n")
    (out / "space").mkdir()
    (out / "space" / "app.py").write_bytes(b"my own app")
    first = stage(small_run, out, REPO_ID, data=str(small_run.parent / "slice.csv"))
    (first["model"] / "stale.txt").write_text("left by an earlier staging\n")
    stage(small_run, out, REPO_ID, data=str(small_run.parent / "slice.csv"))
    assert not (out / "model" / "stale.txt").exists() and (out / "model" / "README.md").is_file()
    # Not requested (no --space-repo-id) and not made by staging: the space folder stays, as does the user's file.
    assert (out / "space" / "app.py").read_bytes() == b"my own app" and (out / "mine.txt").is_file()


# One run per folder.


def test_a_second_command_into_a_busy_folder_exits_at_once_naming_the_holder(slice_csv, tmp_path, capsys):
    output = tmp_path / "run"
    output.mkdir()
    with run_lock(output, "music-genre train (the first)"):
        started = time.monotonic()
        assert main(train_args(slice_csv, output)) == 2
        assert time.monotonic() - started < 10
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"run folder {output} is busy: held by pid {os.getpid()} on {socket.gethostname()} since " in error
    assert not (output / "metrics.json").exists()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from music_genre.training.run_folder import run_lock\n"
            "with run_lock(Path(sys.argv[1]), 'holder'):\n    print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
    )
    assert holder.stdout.readline().strip() == b"held"
    with pytest.raises(RunFolderBusy, match=f"held by pid {holder.pid} on "):
        with run_lock(tmp_path, "second"):
            pass
    holder.kill()
    holder.wait()
    assert (tmp_path / run_folder.HOLDER_FILE).is_file()  # the stale holder record is there, and does not matter
    with run_lock(tmp_path, "third"):
        assert json.loads((tmp_path / run_folder.HOLDER_FILE).read_text())["pid"] == os.getpid()


# Workers die with the run.


@pytest.mark.parametrize(
    ("phase", "sent"),
    [
        ("search", signal.SIGKILL),
        ("final training", signal.SIGKILL),
        ("search", signal.SIGINT),
    ],
    ids=["kill-9-search", "kill-9-final-training", "interrupt-search"],
)
def test_kill_9_of_train_ends_every_worker(slice_csv, tmp_path, phase, sent):
    """The search's two workers, and the initial model's process beside the final training, die with the run; an
    interrupt of the main process alone (SIGINT, not the terminal's whole group) ends the run and its workers too,
    instead of waiting for their trials."""
    output = tmp_path / "run"
    command = [sys.executable, "-m", "music_genre", *train_args(slice_csv, output, "--workers", "2")]
    if phase == "search":
        command[command.index("--n-trials") + 1], expected = "50", 2
    else:  # long enough trainings that the kill lands while the initial model trains in its process
        command[command.index("--max-epochs") + 1], expected = "15", 1
    log_path = tmp_path / "train.log"
    with open(log_path, "wb") as log:
        # SIGINT at its default, as a terminal gives a command (and test_space's serve test does): a process inherits
        # an ignored SIGINT and Python then never raises KeyboardInterrupt. Without this line the interrupt case
        # failed in 2 full suite runs (the run searched on after the SIGINT) and passed alone; with it, it passed in
        # every run since (4 full suite runs and 1 of this file, 2026-12-03).
        main_process = subprocess.Popen(
            command,
            cwd=REPO,
            start_new_session=True,
            stdout=log,
            stderr=log,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    try:
        workers, deadline = [], time.time() + 300  # the search comes first
        while time.time() < deadline and len(workers) != expected and main_process.poll() is None:
            time.sleep(0.2)
            if phase != "search" and "beside the final model" not in log_path.read_text():
                continue
            children = psutil.Process(main_process.pid).children()
            workers = [p for p in children if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == expected, log_path.read_text()[-2000:]
        os.kill(main_process.pid, sent)  # the main process only: its workers must follow by themselves
        try:  # seconds on an idle machine; the margin is for a CPU shared four ways
            status = main_process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"train still running 60 s after {sent.name}:\n{log_path.read_text()[-2000:]}")
        assert status == (130 if sent == signal.SIGINT else -signal.SIGKILL)
        gone, alive = psutil.wait_procs(workers, timeout=5)
        assert not alive, f"workers still running 5 s after {sent.name} of train: {[p.pid for p in alive]}"
    finally:
        for process in psutil.Process().children(recursive=True):
            try:  # only on failure: whatever this test started must not outlive it
                if process.pid == main_process.pid or "spawn_main" in " ".join(process.cmdline()):
                    process.kill()
            except psutil.Error:  # gone, or a zombie (of this or another test) that only its parent can reap
                pass
    # The next run into the folder finds no orphan writing to its study, and the folder free.
    with run_lock(output, "after the kill"):
        pass


# Atomic, consistent run folders.


def fake_run(folder: Path, version: str) -> dict:
    """A run folder's shape without training: what `commit` moves, under a manifest."""
    pending = run_folder.new_pending(folder)
    (pending / "model").mkdir()
    (pending / "model" / "model.safetensors").write_text(f"weights {version}")
    (pending / "model" / "config.json").write_text(f"config {version}")
    (pending / "metrics.json").write_text(f"metrics {version}")
    return {"pending": pending, "files": run_folder.file_hashes(pending, ["model", "metrics.json"])}


@pytest.mark.parametrize("fail_at", range(6))
def test_a_commit_killed_at_any_step_ends_in_the_old_or_the_new_state(tmp_path, monkeypatch, fail_at):
    first = fake_run(tmp_path, "1")
    commit(tmp_path, first["pending"], {"files": first["files"]})
    old = files_under(tmp_path / "model") | {"metrics.json": (tmp_path / "metrics.json").read_bytes()}
    second = fake_run(tmp_path, "2")
    calls = {"n": 0}
    real_rename, real_replace = os.rename, os.replace

    def failing(real):
        def move(*args):
            calls["n"] += 1
            if calls["n"] > fail_at:
                raise KeyboardInterrupt("killed")
            return real(*args)

        return move

    monkeypatch.setattr(run_folder.os, "rename", failing(real_rename))
    monkeypatch.setattr(run_folder.os, "replace", failing(real_replace))
    try:
        commit(tmp_path, second["pending"], {"files": second["files"]})
    except KeyboardInterrupt:
        pass
    monkeypatch.setattr(run_folder.os, "rename", real_rename)
    monkeypatch.setattr(run_folder.os, "replace", real_replace)
    if not (second["pending"] / run_folder.MANIFEST).exists() and second["pending"].exists():
        # Killed before the manifest: readers still see the previous run, whole.
        state = files_under(tmp_path / "model") | {"metrics.json": (tmp_path / "metrics.json").read_bytes()}
        assert state == old and verify(tmp_path)["files"] == first["files"]
    settle(tmp_path)  # what the next command does
    manifest = verify(tmp_path)
    expected = "2" if manifest["files"] == second["files"] else "1"
    assert (tmp_path / "metrics.json").read_text() == f"metrics {expected}"
    assert (tmp_path / "model" / "model.safetensors").read_text() == f"weights {expected}"
    assert not list(tmp_path.glob(".pending-*"))


def test_a_model_that_does_not_match_its_manifest_is_refused_by_evaluate_and_push(small_run, tmp_path, capsys):
    run = Path(shutil.copytree(small_run, tmp_path / "run"))
    weights = run / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    assert main(["evaluate", "--model", str(run / "model"), "--data", str(small_run.parent / "slice.csv")]) == 2
    error = capsys.readouterr().err
    assert "model/model.safetensors" in error and "is not the file its run.json records" in error
    assert f"music-genre train --output {run}" in error and error.count("\n") == 1
    with pytest.raises(PublishError, match="is not the file its run.json records"):
        stage(run, tmp_path / "out", REPO_ID)
    (run / "run.json").unlink()
    with pytest.raises(PublishError, match="has no run.json"):
        stage(run, tmp_path / "out", REPO_ID)


@pytest.fixture(scope="module")
def one_member_run(slice_csv, tmp_path_factory) -> Path:
    """A finished run with 1 member, into a folder that already holds the user's files and a stale model."""
    output = tmp_path_factory.mktemp("own") / "run"
    (output / "checkpoints" / "my_experiment").mkdir(parents=True)
    (output / "checkpoints" / "my_experiment" / "weights.txt").write_text("mine\n")
    (output / "model").mkdir()
    (output / "model" / "pytorch_model.bin").write_bytes(b"an old model")
    (output / "model" / "tokenizer.json").write_text("{}")
    (output / "model" / "notes.txt").write_text("my notes\n")
    (output / "figures").mkdir()
    (output / "figures" / "my_plot.svg").write_text("<svg/>")
    assert main(train_args(slice_csv, output)) == 0
    return output


def test_train_removes_only_what_it_wrote(one_member_run):
    output = one_member_run
    assert (output / "checkpoints" / "my_experiment" / "weights.txt").read_text() == "mine\n"
    assert (output / "model" / "notes.txt").read_text() == "my notes\n"
    assert (output / "figures" / "my_plot.svg").read_text() == "<svg/>"
    # Someone else's weights and tokenizer beside the new model would be loaded with it: moved aside, not deleted.
    assert not (output / "model" / "pytorch_model.bin").exists() and not (output / "model" / "tokenizer.json").exists()
    (aside,) = output.glob("set-aside-*")
    assert (aside / "model" / "pytorch_model.bin").read_bytes() == b"an old model"
    assert (aside / "model" / "tokenizer.json").read_text() == "{}"
    verify(output)
    assert not list(output.glob(".pending-*"))


def test_the_run_records_no_path_of_the_machine_and_carries_a_model_card(one_member_run, slice_csv):
    output = one_member_run
    run_info = json.loads((output / "model" / "training_run.json").read_text())
    assert run_info["data_source"] == "slice.csv"
    assert str(slice_csv.parent) not in run_info["command"] and str(output.parent) not in run_info["command"]
    assert "--data slice.csv --output run " in run_info["command"]
    assert json.loads((output / "data_report.json").read_text())["source"] == "slice.csv"
    assert str(output.parent) not in (output / "run.json").read_text()
    assert (output / "model" / "README.md").read_text().startswith("---\n")
    assert verify(output)["files"]["model/README.md"]


def test_evaluate_without_data_finds_the_recorded_file_by_name_and_checks_its_sha256(
    one_member_run, slice_csv, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # the run recorded "slice.csv", which is not here
    monkeypatch.setenv("MUSIC_GENRE_CSV", str(slice_csv))
    assert main(["evaluate", "--model", str(one_member_run / "model"), "--json"]) == 0
    metrics = json.loads((one_member_run / "metrics.json").read_text())
    assert json.loads(capsys.readouterr().out)["tuned"]["accuracy"] == metrics["tuned"]["accuracy"]
    other = write(tmp_path / "other.csv", slice_csv.read_text().replace("Major", "Minor", 1))
    monkeypatch.setenv("MUSIC_GENRE_CSV", str(other))
    assert main(["evaluate", "--model", str(one_member_run / "model")]) == 2
    assert "pass --data with the run's slice.csv" in capsys.readouterr().err


def test_a_rerun_failing_midway_leaves_the_previous_run_whole(one_member_run, slice_csv, monkeypatch, capsys):
    from music_genre.training import run

    output = one_member_run
    kept = ("metrics.json", "run.json", "model/model.safetensors", "model/config.json")
    before = {name: (output / name).read_bytes() for name in kept}
    real_write = run._write_json

    def failing_write(path: Path, payload: dict) -> None:
        if path.name == "metrics.json":
            raise OSError(28, "No space left on device", str(path))
        real_write(path, payload)

    monkeypatch.setattr(run, "_write_json", failing_write)
    assert main(train_args(slice_csv, output, "--members", "2")) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert {name: (output / name).read_bytes() for name in before} == before
    verify(output)
    assert not list(output.glob(".pending-*"))


def test_kill_9_after_the_new_model_is_trained_leaves_the_previous_run_whole(one_member_run, slice_csv, tmp_path):
    output = Path(shutil.copytree(one_member_run, tmp_path / "run"))
    before = files_under(output)
    command = [sys.executable, "-m", "music_genre", *train_args(slice_csv, output, "--members", "2")]
    log_path = tmp_path / "rerun.log"
    with open(log_path, "wb") as log:
        rerun = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log)
    deadline = time.time() + 120
    while time.time() < deadline and rerun.poll() is None and "final model:" not in log_path.read_text():
        time.sleep(0.05)
    rerun.kill()  # while the 2-member model is trained, saved, scored and drawn
    rerun.wait()
    assert "final model:" in log_path.read_text() and "done:" not in log_path.read_text(), log_path.read_text()[-2000:]
    verify(output)
    # The lock files and the study journal (Optuna appends a line each time it opens a study) aside, byte for byte.
    unchanged = {name: data for name, data in before.items() if not name.startswith((".", "optuna-study"))}
    assert {name: data for name, data in files_under(output).items() if name in unchanged} == unchanged
    # New: only the killed run's hidden leftovers (pending folder, holder record), which the next run clears.
    assert all(name.startswith((".pending-", ".run.lock")) for name in set(files_under(output)) - set(before))


def test_a_study_made_under_other_settings_is_refused_and_fresh_study_keeps_the_old_one(
    one_member_run, slice_csv, tmp_path, capsys
):
    output = Path(shutil.copytree(one_member_run, tmp_path / "run"))
    settings = SearchSettings(2, 3, str(output / "optuna-study.journal"), "genre-ffn-stratified-seed3")
    trials = [(t.number, t.params, t.value) for t in load_study(settings).trials]
    assert main(train_args(slice_csv, output, "--encoding", "log-standard")) == 2
    error = capsys.readouterr().err
    assert "was made with encoding = 'quantile-normal+log-standard', this run has 'log-standard'" in error
    assert "--fresh-study" in error and error.count("\n") == 1
    other_data = tmp_path / "other.csv"
    other_data.write_text(slice_csv.read_text().replace("Major", "Minor", 1))
    assert main(train_args(other_data, output)) == 2
    assert "data_sha256" in capsys.readouterr().err
    assert main(train_args(slice_csv, output, "--max-epochs", "2")) == 2
    assert "max_epochs = 1, this run has 2" in capsys.readouterr().err
    assert [(t.number, t.params, t.value) for t in load_study(settings).trials] == trials
    journal = (output / "optuna-study.journal").read_bytes()

    assert main(train_args(slice_csv, output, "--encoding", "log-standard", "--fresh-study")) == 0
    (kept,) = output.glob("optuna-study.*Z.journal")
    assert kept.read_bytes() == journal
    assert load_study(settings).user_attrs["identity"]["encoding"] == "log-standard"
    assert verify(output)["settings"]["encoding"] == "log-standard"


# A known error (bad data, a refused folder or file, a wrong argument) is one line and exit status 2; anything
# else is a bug: its traceback, a request to report it, and exit status 1.


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def data_cases(slice_csv: Path, folder: Path) -> dict[str, tuple[str, str]]:
    frame = pd.read_csv(slice_csv, dtype={"tempo": str})
    header = slice_csv.read_text().splitlines()[0] + "\n"
    one_genre = folder / "one_genre.csv"
    frame[frame["music_genre"] == "Jazz"].to_csv(one_genre, index=False)
    empty_folder = folder / "a_folder"
    empty_folder.mkdir()
    binary = folder / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    no_genre = folder / "no_genre.csv"
    frame.assign(music_genre="").to_csv(no_genre, index=False)
    return {
        "missing file": (str(folder / "nowhere.csv"), "data file not found"),
        "empty file": (str(write(folder / "empty.csv", "")), "is empty"),
        "header only": (str(write(folder / "header.csv", header)), "holds no rows"),
        "one genre": (str(one_genre), "holds rows of 1 genre(s) (Jazz)"),
        "no genre in any row": (str(no_genre), "no rows left in"),
        "missing columns": (str(write(folder / "columns.csv", "a,b\n1,2\n")), "has no genre column"),
        "unreachable Hub dataset": ("someone/no-such-dataset", "cannot load the dataset someone/no-such-dataset"),
        "binary file": (str(binary), "is not a readable CSV"),
        "a folder": (str(empty_folder), "is a folder holding no data file, saved dataset nor published dataset"),
    }


def test_every_data_fault_is_one_line_and_status_2(slice_csv, tmp_path, capsys):
    for case, (data, message) in data_cases(slice_csv, tmp_path).items():
        assert main(train_args(Path(data), tmp_path / "run")) == 2, case
        error = capsys.readouterr().err
        assert error.startswith("music-genre train: error: ") and message in error, (case, error)
        assert error.count("\n") == 1 and "Traceback" not in error, case
        assert not (tmp_path / "run").exists(), case  # a failed first run leaves no folder behind


def test_output_faults_and_wrong_arguments_are_one_line_and_status_2(slice_csv, tmp_path, capsys):
    a_file = write(tmp_path / "a_file", "")
    for output, message in ((a_file, "is a file, not a folder"), (a_file / "run", "cannot create the run folder")):
        assert main(train_args(slice_csv, output)) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error
    with pytest.raises(SystemExit) as exit_status:
        main(["train", "--n-trials", "many"])
    assert exit_status.value.code == 2
    assert main(["evaluate", "--model", str(tmp_path / "none")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_a_fault_in_a_real_process_prints_no_traceback_unless_asked(tmp_path):
    command = [sys.executable, "-m", "music_genre", "train", "--data", str(tmp_path / "nowhere.csv")]
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    quiet = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True)
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip().splitlines()[-1].startswith("music-genre train: error: data file not found")
    loud = subprocess.run(command, cwd=tmp_path, env={**environment, "MUSIC_GENRE_DEBUG": "1"}, capture_output=True)
    assert loud.returncode == 2 and b"Traceback" in loud.stderr


def with_handler(command: str, handler) -> tuple:
    """The command table with `command`'s handler replaced."""
    return tuple(replace(c, handler=handler) if c.name == command else c for c in music_genre.COMMANDS)


@pytest.mark.parametrize(
    "error",
    [
        RunFolderBusy("run folder x is busy: held by pid 1; wait for it or pick another --output"),
        PublishError("no Hugging Face token: set HF_TOKEN or run `hf auth login`"),
        StudyMismatch("the study s was made with seed = 1, this run has 2; pass --fresh-study"),
        DataError("data is missing column(s): tempo"),
        NoCompletedTrial("the search completed no trial; raise --n-trials or --timeout"),
        PredictError("--output must end in .csv or .parquet, got 'genres.txt'"),
        PermissionError(13, "Permission denied", "/tmp/x.csv"),
    ],
    ids=type,
)
def test_a_known_error_is_one_line_naming_what_to_do_and_status_2(error, monkeypatch, tmp_path, capsys):
    def fail(args):
        raise error

    monkeypatch.setattr(music_genre, "COMMANDS", with_handler("eda", fail))
    assert main(["eda", "--output", str(tmp_path)]) == 2
    message = capsys.readouterr().err
    assert message.startswith("music-genre eda: error: ") and message.count("\n") == 1, message
    assert "Traceback" not in message and "bug" not in message
    if isinstance(error, OSError):
        assert message.strip().endswith("Permission denied: /tmp/x.csv (check the permissions of the path)")
    else:
        assert str(error) in message


def test_the_remote_codes_raw_input_error_is_known_too():
    """A model folder's own copy of the feature extractor raises its own class, under another module name."""
    from music_genre.errors import is_known

    remote = type("RawInputError", (ValueError,), {"__module__": "transformers_modules.m.feature_extraction_genre_ffn"})
    assert is_known(remote("row 3, column 'tempo': 'fast' is not a number"))
    assert not is_known(ValueError("row 3")) and not is_known(KeyError("tempo"))


def test_an_unexpected_exception_is_a_bug_with_its_traceback_and_status_1(monkeypatch, tmp_path, capsys):
    def divide(args):
        return 1 / 0

    monkeypatch.setattr(music_genre, "COMMANDS", with_handler("eda", divide))
    assert main(["eda", "--output", str(tmp_path)]) == 1
    message = capsys.readouterr().err
    assert "Traceback" in message and "ZeroDivisionError: division by zero" in message and "return 1 / 0" in message
    assert message.strip().splitlines()[-1].startswith("music-genre eda: this is a bug in music-genre")
    assert "please report it" in message


def test_the_console_is_quiet_unless_verbose(caplog):
    """No INFO line per HTTP request nor weight-loading bar by default; `--verbose` brings them back."""
    import optuna
    import transformers

    from music_genre import _console

    caplog.set_level("INFO")
    with _console(verbose=False):
        logging.getLogger("httpx").info("HTTP Request: GET https://huggingface.co/api/models")
        logging.getLogger("music_genre").info("search: 3 trials")
        assert not transformers.utils.logging.is_progress_bar_enabled()
        assert optuna.logging.get_verbosity() == optuna.logging.WARNING  # no line per study opened
    assert "HTTP Request" not in caplog.text and "search: 3 trials" in caplog.text
    assert transformers.utils.logging.is_progress_bar_enabled()  # the caller's setting, restored
    with _console(verbose=True):
        logging.getLogger("httpx").info("HTTP Request: GET https://huggingface.co/api/models")
        assert transformers.utils.logging.is_progress_bar_enabled()
    assert "HTTP Request" in caplog.text


def test_a_quiet_console_stays_quiet_in_the_runs_worker_processes():
    """A run's spawned processes (the initial model's, the search workers) start with the libraries' defaults: the
    parent's quiet setting travels to them, so no "Writing model shards" bar per checkpoint reaches the console."""
    from music_genre import _console
    from music_genre.training.workers import BackgroundCall

    target = "transformers.utils.logging:is_progress_bar_enabled"
    with _console(verbose=False), BackgroundCall(target, (), threads=1) as call:
        assert call.result() is False
    with _console(verbose=True), BackgroundCall(target, (), threads=1) as call:
        assert call.result() is True


def test_dropped_rows_are_summarised_on_the_console(slice_csv, tmp_path, caplog):
    from music_genre.training.data import load_data
    from music_genre.training.run import _log_dropped_rows

    _log_dropped_rows(load_data(slice_csv).report)
    assert "dropped 3 of 1000 rows: 3 no genre" in caplog.text


def test_importing_the_cli_imports_no_heavy_library():
    heavy = "{'torch', 'transformers', 'datasets', 'gradio'}"
    probe = f"import sys, music_genre; print(sorted({heavy} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
    assert (
        "push"
        in subprocess.run(
            [sys.executable, "-m", "music_genre", "--help"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout
    )


def test_a_tuned_model_below_the_initial_one_is_warned_about(caplog):
    from music_genre.training.run import _warn_if_tuned_is_worse

    _warn_if_tuned_is_worse({"initial": {"accuracy": 0.5}, "tuned": {"accuracy": 0.4}, "search": {"n_trials": 3}})
    assert "below the initial model's 0.5000" in caplog.text
    caplog.clear()
    _warn_if_tuned_is_worse({"initial": {"accuracy": 0.5}, "tuned": {"accuracy": 0.6}, "search": {"n_trials": 3}})
    assert not caplog.text


def test_training_log_lines_hold_numbers_and_no_progress_bar_off_a_terminal(caplog, capsys):
    from types import SimpleNamespace

    from music_genre.training.trainer import EpochProgressCallback

    caplog.set_level("INFO", logger="music_genre")
    callback, state = EpochProgressCallback("tuned"), SimpleNamespace(is_world_process_zero=True)
    callback.on_train_begin(SimpleNamespace(num_train_epochs=2), state, None)
    callback.on_log(None, state, None, logs={"loss": 1.234567, "epoch": 1.0, "total_flos": 5})
    callback.on_epoch_end(None, state, None)
    callback.on_train_end(None, state, None)
    assert "tuned: {'loss': 1.235, 'epoch': 1.0}" in caplog.text
    assert "\r" not in capsys.readouterr().err
