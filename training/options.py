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
DATA_HELP = (
    "a table of Spotify audio features and a genre column: CSV, Parquet or JSON Lines, a `datasets` folder "
    "(save_to_disk or staged by push) or a Hub dataset id (default: MUSIC_GENRE_CSV)"
)
# The genre column a table is read with when --label-column is not given: the first of these it has.
LABEL_COLUMNS = ("music_genre", "genre", "track_genre")
LABEL_COLUMN_HELP = f"the column holding each row's genre (default: the first of {', '.join(LABEL_COLUMNS)} present)"
GENRES_HELP = "keep only these genres, comma-separated as the data writes them (after --merge-genres); default: all"
MERGE_HELP = (
    "merge genres into one, NEW=A,B (rows of A and B become NEW; NEW may be one of them); repeat the flag for "
    "several merges"
)
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
    repeated: bool = False,
) -> Any:
    """A run setting: its default and how the command line shows it. `recorded` is "always", "when-set" (left out
    of the recorded command while None) or "never" (an instruction to this invocation, not a property of the run).
    `repeated`: the flag may be given several times; the setting is the tuple of its values, in order."""
    metadata = {
        "help": help,
        "flag": flag,
        "type": type,
        "choices": choices,
        "recorded": recorded,
        "repeated": repeated,
    }
    if isinstance(default, Path):
        return field(default_factory=lambda: default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class RunOptions:
    """One run's settings. The field order is the order of the recorded command."""

    data: str | None = option(None, DATA_HELP)
    label_column: str | None = option(None, LABEL_COLUMN_HELP, recorded="when-set")
    genres: str | None = option(None, GENRES_HELP, recorded="when-set")
    merge_genres: tuple[str, ...] = option((), MERGE_HELP, recorded="when-set", repeated=True)
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
    reevaluate_top: int = option(
        3,
        "the search's top trials trained again on further splits of train and validation; the best mean is the "
        "final configuration (0: the search's best trial)",
        type=int,
    )
    reevaluation_splits: int = option(
        3, "further splits of train and validation each top trial is trained on", type=int
    )
    workers: int = option(1, "search processes, one torch thread each", type=int)
    fresh_study: bool = option(
        False,
        "start a new search study in this folder (the old journal is kept under a dated name)",
        recorded="never",
    )

    def __post_init__(self) -> None:
        self.genre_selection()  # a malformed --genres or --merge-genres is refused before anything runs

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "RunOptions":
        values = {spec.name: getattr(args, spec.name) for spec in fields(cls)}
        values["merge_genres"] = tuple(values["merge_genres"] or ())
        return cls(**values)

    def genre_selection(self) -> "GenreSelection":
        """The label column, kept genres and merges these settings ask for."""
        return GenreSelection.parse(self.label_column, self.genres, self.merge_genres)

    def command(self) -> str:
        """The command that reproduces this run, naming files only: no path of this machine is published."""
        parts = ["music-genre", "train"]
        for spec in fields(self):
            value, recorded = getattr(self, spec.name), spec.metadata["recorded"]
            if recorded == "never" or (recorded == "when-set" and value in (None, ())):
                continue
            if spec.metadata["repeated"]:
                parts += [part for item in value for part in (_flag(spec), str(item))]
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
        if meta["repeated"]:
            parser.add_argument(flag, dest=spec.name, action="append", metavar="NEW=A,B", help=meta["help"])
            continue
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


class GenreSelectionError(ValueError):
    """A --label-column, --genres or --merge-genres setting that cannot be applied, in one line."""


@dataclass(frozen=True)
class GenreSelection:
    """Which column holds the genre, which genres to merge into one and which to keep, applied in that order.

    Genre names are kept as the data writes them (case, spaces, any script); nothing here lists genres of its own.
    """

    label_column: str | None = None
    genres: tuple[str, ...] | None = None
    merges: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def parse(
        cls, label_column: str | None = None, genres: str | None = None, merges: tuple[str, ...] | list[str] = ()
    ) -> "GenreSelection":
        """From the command line's strings: `genres` "A,B,C", each merge "NEW=A,B"."""
        kept = None if genres is None else _names(genres, "--genres")
        parsed, merged = [], {}
        for text in merges or ():
            target, equals, sources = text.partition("=")
            target = target.strip()
            if not equals or not target:
                raise GenreSelectionError(f"--merge-genres {text!r}: write NEW=A,B (rows of A and B become NEW)")
            names = _names(sources, f"--merge-genres {text!r}")
            for name in names:
                if name in merged:
                    raise GenreSelectionError(
                        f"--merge-genres: genre {name!r} is merged twice ({merged[name]} and {text})"
                    )
                merged[name] = text
            parsed.append((target, names))
        if label_column is not None and not label_column.strip():
            raise GenreSelectionError("--label-column is empty: give the name of the column holding the genre")
        return cls(label_column, kept, tuple(parsed))

    def record(self) -> dict:
        """As a run records it (run.json, training_run.json, the card): None where not set."""
        return {
            "label_column": self.label_column,
            "genres": list(self.genres) if self.genres is not None else None,
            "merge_genres": {target: list(sources) for target, sources in self.merges},
        }

    @classmethod
    def from_record(cls, record: dict | None) -> "GenreSelection":
        """What `record` wrote; a run recorded before these settings existed selected nothing."""
        record = record or {}
        genres = record.get("genres")
        merges = tuple((target, tuple(sources)) for target, sources in (record.get("merge_genres") or {}).items())
        return cls(record.get("label_column"), tuple(genres) if genres is not None else None, merges)


def _names(text: str, flag: str) -> tuple[str, ...]:
    """Comma-separated genre names, stripped of the spaces around the commas only; refused if any is empty."""
    names = tuple(name.strip() for name in text.split(","))
    if not names or any(not name for name in names):
        raise GenreSelectionError(f"{flag} {text!r} has an empty genre name: separate names by single commas")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise GenreSelectionError(f"{flag} {text!r} names {', '.join(duplicates)} more than once")
    return names


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
