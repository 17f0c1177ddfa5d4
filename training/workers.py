"""The entry point of a run's worker processes (search workers, the initial model's training): bound to the
parent before anything heavy is imported.

A spawned worker unpickles its arguments (and so imports torch, transformers and optuna) before its target
runs; a parent killed in those seconds would leave an orphan. The arguments therefore travel as bytes and are
unpickled only after the worker has armed its death with the parent.
"""

import ctypes
import importlib
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(parent: int) -> None:
    """End this process when `parent` dies, even by SIGKILL.

    Linux: the kernel sends SIGKILL on the parent's death (PR_SET_PDEATHSIG). Elsewhere, and as a second line,
    a thread polls the parent pid.
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def die_with(process: int) -> None:
    """End this process when `process`, an ancestor but not its parent (e.g. the process that asked a fork server for
    it), dies, even by SIGKILL: a thread polls it every half second (a zombie counts as dead)."""

    def alive() -> bool:
        try:
            os.kill(process, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        try:  # Linux: a killed process that its parent has not reaped yet is a zombie, state Z
            with open(f"/proc/{process}/stat", "rb") as stat:
                return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
        except OSError:
            return True

    def watch() -> None:
        while alive():
            time.sleep(0.5)
        os._exit(1)

    if not alive():
        os._exit(1)
    threading.Thread(target=watch, name="ancestor-watch", daemon=True).start()


def start_worker(parent: int, target: str, payload: bytes, progress_bars: bool = True) -> None:
    """Bind to `parent`, then call `target` ("module:function", imported only then) with `pickle.loads(payload)`;
    without `progress_bars` (the parent's console is quiet) transformers' and datasets' bars stay off here too."""
    die_with_parent(parent)
    if not progress_bars:
        import datasets
        import transformers

        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()
    resolve(target)(*pickle.loads(payload))


def progress_bars_shown() -> bool:
    """Whether this process shows transformers' progress bars (a quiet `music-genre` console turns them off), for
    `start_worker`'s `progress_bars`: a spawned process starts with the libraries' defaults, not its parent's."""
    transformers = sys.modules.get("transformers")
    return transformers is None or transformers.utils.logging.is_progress_bar_enabled()


def resolve(target: str):
    """The function named by `target`, "module:function" (the module imported now)."""
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


class BackgroundCall:
    """A context manager: `function(*arguments)` ("module:function") in a spawned process bound to this one (it dies
    with it) on `threads` torch threads; `result()` waits for its return value, and leaving the block ends the
    process if it still runs."""

    def __init__(self, target: str, arguments: tuple, threads: int):
        self.target, self.arguments, self.threads = target, arguments, threads

    def __enter__(self) -> "BackgroundCall":
        self.folder = Path(tempfile.mkdtemp(prefix="music-genre-background-"))
        payload = pickle.dumps((self.target, self.arguments, self.threads, self.folder / "result.pickle"))
        context = multiprocessing.get_context("spawn")
        with environment_set(OMP_NUM_THREADS=str(self.threads)):  # read by torch at import
            self.process = context.Process(
                target=start_worker,
                args=(os.getpid(), f"{__name__}:_call_into_file", payload, progress_bars_shown()),
                daemon=True,
            )
            self.process.start()
        return self

    def result(self):
        self.process.join()
        path = self.folder / "result.pickle"
        if self.process.exitcode != 0 or not path.exists():
            raise RuntimeError(f"{self.target} failed in its process (exit code {self.process.exitcode}); see above")
        return pickle.loads(path.read_bytes())

    def __exit__(self, *exc_info) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        shutil.rmtree(self.folder, ignore_errors=True)


def _call_into_file(target: str, arguments: tuple, threads: int, result: Path) -> None:
    """The background process: call `target` and pickle its return value into `result` (atomically)."""
    import torch

    from music_genre.training.run_folder import write_bytes_atomic

    torch.set_num_threads(threads)
    write_bytes_atomic(result, pickle.dumps(resolve(target)(*arguments)))


@contextmanager
def environment_set(**values: str) -> Iterator[None]:
    """Environment variables set for the block (processes started in it inherit them); afterwards, and after an
    exception, the caller's environment is as it was."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        os.environ.update(values)
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
