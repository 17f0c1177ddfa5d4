"""The run folder: its layout, how it is written and how it is read, in one place.

What a run folder guarantees: one run at a time, atomic files, and a manifest tying the model to its metrics.

A run writes everything into a pending folder of its own (`.pending-*` inside the run folder), writes the
manifest `run.json` there last, then moves each entry into place. A run killed before the manifest leaves
the previous complete state (the pending folder is discarded by the next run); one killed while moving
entries is completed by the next command that opens the folder. `evaluate` and `push` check every file
against the manifest, so a model never stands beside metrics it was not measured with.
"""

import hashlib
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

if TYPE_CHECKING:
    import pandas as pd

# The layout `music-genre train` writes (README, "The run folder"); `read_run` reads it back for the card and push.
MODEL_DIR = "model"
FIGURES_DIR = "figures"
METRICS = "metrics.json"
TRIALS = "trials.csv"
DATA_REPORT = "data_report.json"
SPLITS = "splits.json"
# Inside the model folder: the seed, split, data sha256 and command of the run that made the weights.
RUN_INFO = "training_run.json"
STUDY_JOURNAL = "optuna-study.journal"
# What one run writes and commits together, under the manifest (the study journal lives beside them).
RUN_ENTRIES = [MODEL_DIR, FIGURES_DIR, METRICS, TRIALS, DATA_REPORT, SPLITS]
# What reading a run needs: the files the card and the publisher take their numbers from.
RUN_FILES = (METRICS, TRIALS, DATA_REPORT)
MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", RUN_INFO)
# The remote code `save_model_folder` copies beside the weights (what a Hub model repo ships).
REMOTE_CODE = (
    "configuration_genre_ffn.py",
    "modeling_genre_ffn.py",
    "feature_extraction_genre_ffn.py",
    "pipeline_genre_ffn.py",
    "calibration_genre_ffn.py",
)
MANIFEST = "run.json"
MANIFEST_FORMAT = 1
LOCK_FILE = ".run.lock"
HOLDER_FILE = ".run.lock.json"
PENDING_PREFIX = ".pending-"
# Written into each pending folder at creation: only folders holding it are ever removed.
PENDING_MARKER = ".music-genre-pending"
REPLACED = ".replaced"
# mkstemp makes files private (0600); a run's files get the mode an ordinary write would give them.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
# Files a Hugging Face loader would pick up beside the new model; one left by someone else is moved aside.
LOADER_FILE_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".msgpack", ".h5", ".onnx", ".gguf")
LOADER_FILE_NAMES = ("config.json", "preprocessor_config.json", "generation_config.json", "special_tokens_map.json")


class RunFolderError(RuntimeError):
    """A run folder that cannot be used as asked, in one line saying what to do."""


class RunFolderBusy(RunFolderError):
    """Another command holds the run folder."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, rename: readers see the old file or the new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, FILE_MODE)
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, payload: dict, default=None) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, default=default) + "\n")


def _fsync_folder(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename is still atomic there
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextmanager
def run_lock(folder: Path, command: str) -> Iterator[None]:
    """Hold the run folder exclusively; a busy folder raises `RunFolderBusy` naming the holder at once.

    The lock is an OS file lock (flock), which the kernel releases when its process dies, so a killed run
    never blocks the next one; the holder's pid, host and start time sit in a small JSON file beside it.
    """
    folder = Path(folder)
    lock = FileLock(folder / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        busy = f"run folder {folder} is busy: {_holder(folder)}; wait for it or pick another --output"
        raise RunFolderBusy(busy) from None
    holder = folder / HOLDER_FILE
    try:
        write_json_atomic(
            holder,
            {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": command,
            },
        )
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


def _holder(folder: Path) -> str:
    try:
        info = json.loads((folder / HOLDER_FILE).read_text())
        return f"held by pid {info['pid']} on {info['host']} since {info['started']} ({info.get('command', '?')})"
    except (OSError, ValueError, KeyError):
        return "held by another process (it has not yet recorded its pid)"


def new_pending(folder: Path) -> Path:
    """A fresh folder inside the run folder that this run alone writes into."""
    pending = Path(tempfile.mkdtemp(prefix=PENDING_PREFIX, dir=folder))
    (pending / PENDING_MARKER).write_text("written by music-genre train; removed when the run commits\n")
    return pending


def file_hashes(pending: Path, entries: list[str]) -> dict[str, str]:
    """sha256 of every file under the given top-level entries of `pending`, by path relative to it."""
    hashes = {}
    for entry in entries:
        path = pending / entry
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            hashes[file.relative_to(pending).as_posix()] = sha256_of(file)
    return hashes


def commit(folder: Path, pending: Path, manifest: dict) -> None:
    """Write the manifest into `pending` (the point of no return), then move the run's entries into `folder`."""
    write_json_atomic(pending / MANIFEST, {"format": MANIFEST_FORMAT, **manifest})
    _roll_forward(folder, pending)


def settle(folder: Path) -> list[str]:
    """Finish a commit a killed run left half done, discard uncommitted pending folders; returns what it did."""
    done = []
    for pending in sorted(Path(folder).glob(f"{PENDING_PREFIX}*")):
        if not (pending / PENDING_MARKER).is_file():
            continue  # not ours
        if (pending / MANIFEST).is_file():
            _roll_forward(Path(folder), pending)
            done.append(f"completed the interrupted commit of {pending.name}")
        else:
            shutil.rmtree(pending)
            done.append(f"discarded {pending.name}, left by a run killed before it finished")
    return done


def interrupted_commits(folder: Path) -> list[Path]:
    pending = Path(folder).glob(f"{PENDING_PREFIX}*")
    return [p for p in pending if (p / PENDING_MARKER).is_file() and (p / MANIFEST).is_file()]


def _roll_forward(folder: Path, pending: Path) -> None:
    """Idempotent: a kill at any step is finished by calling it again."""
    manifest = json.loads((pending / MANIFEST).read_text())
    replaced = pending / REPLACED
    replaced.mkdir(exist_ok=True)
    if (folder / MANIFEST).is_file() and not (replaced / MANIFEST).exists():
        shutil.copy2(folder / MANIFEST, replaced / MANIFEST)  # names the files the previous run wrote
    entries = sorted({name.split("/")[0] for name in manifest["files"]})
    for entry in entries:
        source, target = pending / entry, folder / entry
        if not source.exists():
            continue  # moved by an earlier, interrupted call
        if source.is_dir():
            if target.exists():
                os.rename(target, replaced / entry)
            os.rename(source, target)
        else:
            os.replace(source, target)
    # A copy: the pending manifest marks the commit as done-but-unsettled until the pending folder is gone.
    write_bytes_atomic(folder / MANIFEST, (pending / MANIFEST).read_bytes())
    _carry_over(folder, replaced, manifest)
    shutil.rmtree(pending)


def _carry_over(folder: Path, replaced: Path, manifest: dict) -> None:
    """Old folders replaced whole: drop the files the previous run wrote, keep everyone else's."""
    previous = replaced / MANIFEST
    # Without a manifest nothing in the folder is known to be a run's: everything is carried over or set aside.
    ours = set(json.loads(previous.read_text())["files"]) if previous.is_file() else set()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for old_folder in [p for p in replaced.iterdir() if p.is_dir()]:
        for file in sorted(p for p in old_folder.rglob("*") if p.is_file()):
            name = file.relative_to(replaced).as_posix()
            if name in ours:
                continue
            target = folder / name
            # Beside the new model, someone else's weights or configs would be loaded with it: moved aside.
            if target.exists() or name in manifest["files"] or _is_loader_file(file.name):
                target = folder / f"set-aside-{stamp}" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(file, target)


def _is_loader_file(name: str) -> bool:
    return name.endswith(LOADER_FILE_SUFFIXES) or name in LOADER_FILE_NAMES or name.startswith("tokenizer")


def verify(folder: Path) -> dict:
    """The manifest of a run folder whose files all match it; else `RunFolderError` saying what to do."""
    folder = Path(folder)
    rerun = f"run `music-genre train --output {folder}` again"
    if interrupted_commits(folder):
        raise RunFolderError(f"run folder {folder} holds an interrupted commit: {rerun} to complete it")
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise RunFolderError(
            f"run folder {folder} has no {MANIFEST} tying its model to its metrics (never finished, or not written "
            f"by `music-genre train`): {rerun}"
        )
    manifest = json.loads(manifest_path.read_text())
    for name, expected in manifest["files"].items():
        path = folder / name
        if not path.is_file():
            raise RunFolderError(f"run folder {folder} lacks {name}, which its {MANIFEST} lists: {rerun}")
        if sha256_of(path) != expected:
            raise RunFolderError(
                f"{name} in {folder} is not the file its {MANIFEST} records (changed after the run, or mixed "
                f"with another run's files): {rerun}"
            )
    return manifest


@dataclass
class RunFolder:
    """What `music-genre train` wrote, read once: the card and the publisher both start here."""

    path: Path
    metrics: dict
    trials: "pd.DataFrame"
    data_report: dict
    training_run: dict
    config: dict
    preprocessor: dict
    figures: list[str]

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL_DIR

    def commit_message(self) -> str:
        """Names the run a Hub commit came from."""
        run = self.training_run
        return f"music-genre run: seed {run['seed']}, {run['split_mode']} split, data sha256 {run['data_sha256'][:12]}"


def read_run(run_folder: str | Path) -> RunFolder:
    """Read a run folder; a missing file raises `FileNotFoundError` naming it."""
    import pandas as pd

    path = Path(run_folder)
    needed = [path / name for name in RUN_FILES] + [path / MODEL_DIR / name for name in MODEL_FILES]
    missing = [str(file.relative_to(path)) for file in needed if not file.is_file()]
    if missing:
        raise FileNotFoundError(f"run folder {path} lacks {', '.join(missing)} (write it with `music-genre train`)")
    figures_dir = path / FIGURES_DIR
    figures = sorted(p.name for p in figures_dir.glob("*.png")) if figures_dir.is_dir() else []
    return RunFolder(
        path=path,
        metrics=_read_json(path / METRICS),
        trials=pd.read_csv(path / TRIALS),
        data_report=_read_json(path / DATA_REPORT),
        training_run=_read_json(path / MODEL_DIR / RUN_INFO),
        config=_read_json(path / MODEL_DIR / "config.json"),
        preprocessor=_read_json(path / MODEL_DIR / "preprocessor_config.json"),
        figures=figures,
    )


def looks_like_run_folder(folder: Path, staged_model: bool = False) -> bool:
    """What train writes at a run folder's top. `staged_model`: `folder/model` is a staged model repo (which holds
    training_run.json too), not a run's model."""
    model_info = (folder / MODEL_DIR / RUN_INFO).is_file() and not staged_model
    metrics_and_model = (folder / METRICS).is_file() and (folder / MODEL_DIR).is_dir()
    own_files = (folder / MANIFEST).is_file() or (folder / STUDY_JOURNAL).is_file()
    return model_info or metrics_and_model or own_files


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text())
