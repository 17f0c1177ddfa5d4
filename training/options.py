"""The settings of `music-genre train`, declared once.

Each field of `RunOptions` carries its flag, help and choices; the parser (`add_run_arguments`), the settings a
run receives (`RunOptions.from_args`) and the command a run records (`RunOptions.command`) are all derived from
these fields. Cheap to import: standard library only, so `music-genre --help` answers at once.
"""

import argparse
import shlex
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

SPLIT_MODES = ("stratified", "group")
# The feature extractor's encodings and the config's inference dtypes (modeling/): the CLI lists them here because
# importing modeling would import transformers; tests/test_run.py checks they are the library's.
ENCODINGS = ("log-standard", "quantile-normal", "quantile-normal+log-standard")
INFERENCE_DTYPES = ("float32", "bfloat16")
DATA_HELP = "a CSV in the Kaggle format, a dataset folder staged by push or a Hub dataset id (default: MUSIC_GENRE_CSV)"
SEED_HELP = "seed of the split, SMOTE, the initialisations and the search"
SPLIT_HELP = "stratified by genre, or group: each (artist, track) pair on one side"


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    type: Any = None,
    choices: tuple | None = None,
    recorded: str = "always",
) -> Any:
    """A run setting: its default and how the command line shows it. `recorded` is "always", "when-set" (left out
    of the recorded command while None) or "never" (an instruction to this invocation, not a property of the run)."""
    metadata = {"help": help, "flag": flag, "type": type, "choices": choices, "recorded": recorded}
    if isinstance(default, Path):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunOptions:
    """One run's settings. The field order is the order of the recorded command."""

    data: str | None = option(None, DATA_HELP)
    output: Path = option(Path("runs/latest"), "the run folder", type=Path)
    seed: int = option(42, SEED_HELP, type=int)
    split: str = option("stratified", SPLIT_HELP, choices=SPLIT_MODES)
    n_trials: int = option(30, "trials in the study, counting finished ones", type=int)
    encoding: str = option(
        "quantile-normal+log-standard",
        "numeric encoding: the paper's clip+log+standardise, quantile-normal, or both side by side (see bench/)",
        choices=ENCODINGS,
    )
    num_members: int = option(3, "networks averaged in the final model (search: 1)", flag="--members", type=int)
    max_epochs: int = option(25, "upper bound of the epochs the search samples", type=int)
    inference_dtype: str = option(
        "bfloat16",
        "how the saved model computes at inference: bfloat16 where the hardware has it natively (see bench/)",
        choices=INFERENCE_DTYPES,
    )
    timeout: float | None = option(
        None, "stop starting trials after this many seconds", type=float, recorded="when-set"
    )
    storage: str | None = option(
        None, "an Optuna storage URL shared by workers (default: a journal in the run)", recorded="when-set"
    )
    trial_batch: int = option(
        8,
        "trials per synchronous batch of the search: each sees the trials of earlier batches only, so the result "
        "does not depend on --workers (a run setting, part of the study's identity)",
        type=int,
    )
    workers: int = option(1, "search processes, one torch thread each", type=int)
    fresh_study: bool = option(
        False,
        "start a new search study in this folder (the old journal is kept under a dated name)",
        recorded="never",
    )

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RunOptions":
        return cls(**{spec.name: getattr(args, spec.name) for spec in fields(cls)})

    def command(self) -> str:
        """The command that reproduces this run, naming files only: no path of this machine is published."""
        parts = ["music-genre", "train"]
        for spec in fields(self):
            value, recorded = getattr(self, spec.name), spec.metadata["recorded"]
            if recorded == "never" or (recorded == "when-set" and value is None):
                continue
            parts += [_flag(spec), _recorded_value(spec.name, value)]
        return shlex.join(parts)

    def public_settings(self) -> dict:
        """The settings as a run's manifest records them (file names only, like the command)."""
        settings = {spec.name: getattr(self, spec.name) for spec in fields(self)}
        for name in ("output", "data", "storage"):
            if settings[name] is not None:
                settings[name] = _recorded_value(name, settings[name])
        return settings


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The `train` command's arguments, one per field of `RunOptions`, with its defaults and choices."""
    for spec in fields(RunOptions):
        meta = spec.metadata
        default = spec.default if spec.default is not MISSING else spec.default_factory()
        flag = _flag(spec)
        if isinstance(default, bool):
            parser.add_argument(flag, dest=spec.name, action="store_true", help=meta["help"])
            continue
        help_text = meta["help"] + (" (default: %(default)s)" if default is not None else "")
        parser.add_argument(
            flag,
            dest=spec.name,
            metavar=None if meta["choices"] else flag.removeprefix("--").replace("-", "_").upper(),
            type=meta["type"],
            choices=meta["choices"],
            default=default,
            help=help_text,
        )


def public_name(source: str) -> str:
    """A local path as its file name; a storage URL as its scheme and last part (never a host or password); a Hub
    dataset id as it is."""
    if "://" in source:
        scheme, _, rest = source.partition("://")
        rest = rest.split("?")[0]
        return f"{scheme}://{rest.rsplit('/', 1)[1] if '/' in rest else '...'}"
    path = Path(source)
    return path.name if path.is_absolute() or path.exists() or path.suffix == ".csv" else source


def _flag(spec) -> str:
    return spec.metadata["flag"] or "--" + spec.name.replace("_", "-")


def _recorded_value(name: str, value: Any) -> str:
    if name == "output":
        path = Path(value)
        return path.name if path.is_absolute() or ".." in path.parts else path.as_posix()
    if name in ("data", "storage"):
        return "None" if value is None else public_name(value)
    return str(value)
