"""Which exceptions the `music-genre` command shows as a user's mistake, and how.

Like huggingface_hub's CLI (`cli/_errors.py`), only *known* errors become one line: the project's typed errors,
whose messages name what is wrong and what to do next, and the operating system's refusals (a missing file, a
folder where a file was expected, no permission, a full disk). Anything else is a bug: the command prints its
traceback and asks for a report. Cheap to import: a class is recognised by its module and name, so nothing is
imported to classify an error, and the remote code's copy of `RawInputError` (loaded from a model folder under
another module name) is recognised as well as the package's own.
"""

import errno

# A known class: the tail of its module path and its name. The remote code ships under `transformers_modules.*`
# when a model folder is loaded, so its module is matched by the file name only.
KNOWN_ERRORS = (
    ("training.data", "DataError"),
    ("training.options", "GenreSelectionError"),
    ("training.run_folder", "RunFolderError"),
    ("training.search", "StudyMismatch"),
    ("training.search", "NoCompletedTrial"),
    ("hub_card.publish", "PublishError"),
    ("music_genre.predict", "PredictError"),
    ("feature_extraction_genre_ffn", "RawInputError"),
    ("music_genre.predict", "PredictError"),
)
# What to do next after a refusal of the operating system, whose message names only the path.
OS_HINTS = {
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "check the path: a part of it is a file",
    errno.EISDIR: "give a file, not a folder",
    errno.EACCES: "check the permissions of the path",
    errno.EPERM: "check the permissions of the path",
    errno.ENOSPC: "free some space on that disk",
}
MAX_CHARS = 400


def is_known(error: BaseException) -> bool:
    """True for an error that is the user's to mend (bad data, a busy or changed run folder, a refused file)."""
    if isinstance(error, OSError):
        return error.errno in OS_HINTS or isinstance(error, (FileNotFoundError, NotADirectoryError, PermissionError))
    return any(_matches(cls) for cls in type(error).__mro__)


def one_line(error: BaseException) -> str:
    """The error's message on one line, with what to do next for the operating system's refusals."""
    text = " ".join(str(error).split())
    if isinstance(error, OSError) and error.filename is not None and error.strerror:
        text = f"{error.strerror}: {error.filename}"
    if isinstance(error, OSError) and error.errno in OS_HINTS:
        text = f"{text} ({OS_HINTS[error.errno]})"
    text = text or type(error).__name__
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 3] + "..."


def _matches(cls: type) -> bool:
    module = f".{cls.__module__}"
    return any(cls.__name__ == name and module.endswith(f".{tail}") for tail, name in KNOWN_ERRORS)
