"""The entry point of a search worker process: bound to its parent before anything heavy is imported.

A spawned worker unpickles its arguments (and so imports torch, transformers and optuna) before its target
runs; a parent killed in those seconds would leave an orphan. The arguments therefore travel as bytes and are
unpickled only after the worker has armed its death with the parent.
"""

import ctypes
import os
import pickle
import signal
import sys
import threading
import time

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


def start_worker(parent: int, payload: bytes) -> None:
    """Bind to `parent`, then run `training.search.run_worker(*pickle.loads(payload))`."""
    die_with_parent(parent)
    from training.search import run_worker

    run_worker(*pickle.loads(payload))
