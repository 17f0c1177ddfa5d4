"""What the benchmarks share: the repository's paths, the real CSV, the network's tuned configuration, a log line,
and the machine and software lines their reports print.

Only the standard library is imported here: the heavy stack (pandas, datasets, torch) is imported by the function
that needs it, so that a light benchmark (`bench.cli_help`) does not load it for a path.
"""

import importlib.metadata
import json
import os
import platform
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# The Space's bundled model, which the inference, trust and Space benchmarks measure.
SPACE_MODEL = REPO / "space" / "model"
DEFAULT_CONFIG = BENCH / "tuned_config.json"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def csv_path(data: str | Path | None = None) -> Path:
    """The CSV given, else the real dataset (`MUSIC_GENRE_CSV`, default `../shared/data/music_genre.csv`)."""
    from music_genre.training.data import default_csv

    return default_csv() if data is None else Path(data)


def read_raw_rows(data: str | Path | None = None) -> "pd.DataFrame":
    """The CSV as pandas reads it (tempo stays text with its `?`), entirely empty lines dropped, index kept."""
    import pandas as pd

    return pd.read_csv(csv_path(data)).dropna(how="all")


def load_config(path: Path) -> tuple[dict, str]:
    """The network's fixed configuration (encoding, inference dtype, `Hyperparameters` fields) and where it came
    from, as the reports name it."""
    from music_genre.training.trainer import Hyperparameters

    if not path.is_file():
        raise FileNotFoundError(f"no configuration file at {path} (the tuned one: {DEFAULT_CONFIG.relative_to(REPO)})")
    config = json.loads(path.read_text())
    known = {f.name for f in fields(Hyperparameters)}
    unknown = sorted(set(config["hyperparameters"]) - known)
    if unknown:
        raise ValueError(f"{path}: unknown hyperparameter(s) {unknown}; expected fields of Hyperparameters {known}")
    return config, str(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


def machine() -> str:
    """`x86_64 Linux, 2 logical CPUs shared with other jobs`."""
    return f"{platform.machine()} {platform.system()}, {os.cpu_count()} logical CPUs shared with other jobs"


def cpu_name() -> str:
    """The processor's model name from /proc/cpuinfo, else what `platform` knows."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            names = [line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")]
        return names[0] if names else cpu
    except OSError:
        return cpu


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, `4.93, 5.10, 5.02`."""
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def versions(*distributions: str) -> str:
    """`Python 3.11.7, torch 2.13.0+cpu, ...`: the interpreter and each installed distribution's version."""
    named = [f"{name} {importlib.metadata.version(name)}" for name in distributions]
    return ", ".join([f"Python {platform.python_version()}", *named])
