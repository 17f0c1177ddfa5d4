"""Publishing a run: stage exactly what the model, dataset and Space repos receive, then upload each folder.

`stage` writes `OUT/model` (the model folder, its card and figures), `OUT/dataset`
(the cleaned rows as one Parquet file per split of the run, with a card whose YAML
declares the splits, the features and the source CSV's sha256) and `OUT/space`
(the Gradio app with a copy of the model in `model/`, which the app serves by
default). `push` stages, then creates the repos and uploads the folders; a failure
raises `PublishError` and leaves the staged folders in place.
"""

import ast
import json
import logging
import os
import shutil
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import datasets
import httpx2  # huggingface_hub's HTTP client: refused connections and timeouts surface as its errors
import pyarrow as pa
import pyarrow.parquet as pq
from datasets.info import DatasetInfosDict
from datasets.utils.metadata import MetadataConfigs
from huggingface_hub import DatasetCard, DatasetCardData, HfApi, SpaceCard, SpaceCardData, get_token

from music_genre.hub_card import BUNDLED_REPO_ID
from music_genre.hub_card.card import (
    KAGGLE_DATASET,
    KAGGLE_URL,
    LICENSE,
    REPORTS,
    REPORTS_DIR,
    default_dataset_repo_id,
    render_template,
    run_genres,
    without_machine_paths,
    write_model_repo_card,
    write_run_records,
)
from music_genre.modeling import FEATURE_NAMES
from music_genre.training.data import KEPT_COLUMNS, PUBLISHED_SHA256_KEY, SPLITS, load_data, run_data_source
from music_genre.training.options import GenreSelection, public_name
from music_genre.training.run_folder import (
    FIGURES_DIR,
    MODEL_FILES,
    REMOTE_CODE,
    RunFolder,
    RunFolderError,
    looks_like_run_folder,
    read_run,
    verify,
    write_bytes_atomic,
    write_json_atomic,
)

logger = logging.getLogger("music_genre")

# Written into a staging root: the folders it lists were made by staging, and staging again may replace them.
STAGE_RECORD = ".music-genre-staging.json"

SPACE_DIR = Path(__file__).resolve().parent.parent / "space"
MODELING_DIR = SPACE_DIR.parent / "modeling"
SPACE_FILES = ("app.py", "requirements.txt")
# Packages of this project: a Space or a model repo that imports them would not run on the Hub.
PROJECT_PACKAGES = frozenset({"music_genre", "modeling", "training", "hub_card", "space"})
REPO_KINDS = ("model", "dataset", "space")
# Binary files go through Git LFS, so a staged folder can also be pushed with plain git (the Hub refuses them else).
GITATTRIBUTES = "".join(
    f"*.{extension} filter=lfs diff=lfs merge=lfs -text\n" for extension in ("safetensors", "parquet", "png")
)
# The source's placeholder for an unknown artist: published as a missing value.
EMPTY_ARTIST = "empty_field"
# What each published column means and its unit, after Spotify's audio-feature definitions.
COLUMN_MEANINGS = {
    "popularity": "Spotify's popularity of the track when collected, from its plays and their recency; 0 to 100",
    "acousticness": "confidence that the track is acoustic; 0 to 1",
    "danceability": "how suitable the track is for dancing (tempo, rhythm, beat strength, regularity); 0 to 1",
    "duration_ms": "length of the track in milliseconds; null where the source has -1",
    "energy": "perceptual intensity and activity; 0 to 1",
    "instrumentalness": "likelihood that the track has no vocals; 0 to 1",
    "key": "the track's key as a pitch-class name (C, C#, ..., B)",
    "liveness": "likelihood that the track was performed live (an audience in the recording); 0 to 1",
    "loudness": "overall loudness of the track in decibels (dB), mostly between -60 and 0",
    "mode": "modality, `Major` or `Minor`",
    "speechiness": "presence of spoken words; 0 to 1",
    "tempo": "estimated tempo in beats per minute (BPM); null where the source has `?`",
    "valence": "musical positiveness (happy, cheerful against sad, angry); 0 to 1",
    "genre": "the genre the source files the track under (its `music_genre` column); the label",
    "artist_name": "the artist, as the source spells it; null where the source has the placeholder `empty_field`",
    "track_name": "the track's title, as the source spells it",
}
# Source columns the published table leaves out, and why.
DROPPED_COLUMNS = {
    "instance_id": "the source's row id, not a property of the song",
    "obtained_date": "when the row was collected (5 values such as `4-Apr`, one malformed): collection metadata",
}


class PublishError(RuntimeError):
    """One line saying what failed; the staged folders stay as they are."""


def stage(
    run_folder: str | Path,
    out_dir: str | Path,
    repo_id: str,
    dataset_repo_id: str | None = None,
    space_repo_id: str | None = None,
    *,
    data: str | None = None,
    space_dir: str | Path = SPACE_DIR,
) -> dict[str, Path]:
    """Write `out_dir/model`, `out_dir/dataset` (by default for the repo `default_dataset_repo_id(repo_id)`) and
    `out_dir/space` when its repo id is given; returns the folders by kind.

    `data` overrides the CSV the run recorded (its sha256 must still be the run's).
    """
    run = _read_run(run_folder)
    out = Path(out_dir)
    dataset_repo_id = dataset_repo_id or default_dataset_repo_id(repo_id)  # the model-index names a Hub dataset
    requested = ["model"] + (["dataset"] if dataset_repo_id else []) + (["space"] if space_repo_id else [])
    _claim_staging_root(out, requested, run.path)
    staged = {"model": stage_model(run, repo_id, dataset_repo_id, out / "model", space_repo_id)}
    if dataset_repo_id:
        staged["dataset"] = stage_dataset(run, dataset_repo_id, out / "dataset", data)
    if space_repo_id:
        staged["space"] = stage_space(
            run, repo_id, dataset_repo_id, out / "space", Path(space_dir), staged["model"], staged.get("dataset")
        )
    owned = _staged_folders(out)
    for kind in REPO_KINDS:
        if kind not in staged and kind in owned and (out / kind).is_dir():
            shutil.rmtree(out / kind)  # made by an earlier staging here: this push does not send it
    _record_staged(out, sorted(staged))
    for kind, folder in staged.items():
        logger.info("staged the %s repo in %s", kind, folder)
    return staged


def push(
    run_folder: str | Path,
    repo_id: str,
    dataset_repo_id: str | None = None,
    space_repo_id: str | None = None,
    private: bool = False,
    stage_only: str | Path | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    data: str | None = None,
    space_dir: str | Path = SPACE_DIR,
) -> dict[str, Path]:
    """Stage (into `stage_only`, else `RUN/hub`), then, unless `stage_only`, create the repos and upload them.

    The token is `token`, else `HF_TOKEN` or the saved login; it is sent to the Hub only, never logged or staged.
    """
    out_dir = Path(stage_only) if stage_only is not None else Path(run_folder) / "hub"
    staged = stage(run_folder, out_dir, repo_id, dataset_repo_id, space_repo_id, data=data, space_dir=space_dir)
    if stage_only is not None:
        return staged
    token = token or get_token()
    if not token:
        raise PublishError(
            f"no Hugging Face token: set HF_TOKEN or run `hf auth login` (staged folders kept in {out_dir})"
        )
    api = HfApi(endpoint=endpoint, token=token)
    message = _read_run(run_folder).commit_message()
    repos = {"model": repo_id, "dataset": dataset_repo_id, "space": space_repo_id}
    for kind in REPO_KINDS:
        if kind not in staged:
            continue
        repo = repos[kind]
        logger.info("uploading %s to the %s repo %s at %s", staged[kind], kind, repo, api.endpoint)
        try:
            api.create_repo(
                repo,
                repo_type=kind,
                exist_ok=True,
                private=private,
                space_sdk="gradio" if kind == "space" else None,
            )
            info = api.upload_folder(repo_id=repo, folder_path=staged[kind], repo_type=kind, commit_message=message)
        except (httpx2.HTTPError, OSError, ValueError) as error:
            raise PublishError(
                f"upload of the {kind} repo {repo} failed: {_one_line(error)} (staged folders kept in {out_dir})"
            ) from error
        logger.info("pushed the %s repo %s: %s", kind, repo, info.commit_url)
    return staged


def bundle(run_folder: str | Path, repo_id: str = BUNDLED_REPO_ID, into: str | Path = SPACE_DIR / "model") -> Path:
    """Regenerate the Space's bundled model (`space/model/`) from a run folder: the model repo as `push` stages it
    (weights, card, figures) with this checkout's remote code, swapped in whole so a failure leaves the previous copy
    as it was."""
    run = _read_run(run_folder)
    into = Path(into)
    into.parent.mkdir(parents=True, exist_ok=True)
    # Staged in a folder of its own beside the target (same file system, so the swap is a rename), removed after.
    work = Path(tempfile.mkdtemp(prefix=f".{into.name}.bundle-", dir=into.parent))
    previous = work / "previous"
    try:
        fresh = stage_model(run, repo_id, default_dataset_repo_id(repo_id), work / "model")
        _copy_todays_code(fresh)  # the Space runs this checkout's modeling/, whatever code the run saved
        (fresh / ".gitattributes").unlink()  # the checkout's own .gitattributes governs it; a Hub repo needs its own
        if into.exists():
            os.replace(into, previous)
        os.replace(fresh, into)
    except BaseException:
        if previous.exists() and not into.exists():
            os.replace(previous, into)  # the swap failed halfway: the previous copy goes back
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("bundled %s into %s", run.path.name, into)
    return into


def refresh_bundled_card(repo_id: str = BUNDLED_REPO_ID, into: str | Path = SPACE_DIR / "model") -> list[str]:
    """Render the bundled model's card and reports again from the run's records it ships (`reports/`), with this
    checkout's templates: for a change to the card that needs no new run. Returns the names of the files that
    changed."""
    into = Path(into)
    names = ["README.md", *(f"{REPORTS_DIR}/{name}.md" for name in REPORTS)]
    before = {name: (into / name).read_bytes() if (into / name).is_file() else None for name in names}
    write_model_repo_card(into, repo_id, default_dataset_repo_id(repo_id))
    return [name for name in names if (into / name).read_bytes() != before[name]]


def refresh_bundled_code(into: str | Path = SPACE_DIR / "model") -> list[str]:
    """Copy today's remote code (modeling/*_genre_ffn.py) into the bundled model, leaving its weights, config and
    card: for a change to the code that keeps the saved config's meaning (runs are not kept, so a full `bundle`
    needs a new run). Returns the names of the files that changed."""
    into = Path(into)
    if not (into / "config.json").is_file() or not (into / "model.safetensors").is_file():
        raise PublishError(f"{into} is not a bundled model folder (no config.json and model.safetensors)")
    return _copy_todays_code(into)


def _copy_todays_code(into: Path) -> list[str]:
    changed = []
    for name in REMOTE_CODE:
        source = (MODELING_DIR / name).read_bytes()
        target = into / name
        if not target.is_file() or target.read_bytes() != source:
            write_bytes_atomic(target, source)
            changed.append(name)
    return changed


def stage_model(
    run: RunFolder, repo_id: str, dataset_repo_id: str | None, folder: Path, space_repo_id: str | None = None
) -> Path:
    """The model folder as the run saved it, the run's figures and records (`reports/`), and the card (README.md)
    and its reports rendered from what the folder ships, so `music-genre bundle --card-only` renders them alike."""
    folder = _fresh(folder)
    _copy_model_files(run, folder)
    (folder / ".gitattributes").write_text(GITATTRIBUTES)
    if run.figures:
        (folder / FIGURES_DIR).mkdir()  # the card links figures/NAME.png, as in the run folder
        for name in run.figures:
            shutil.copy2(run.path / FIGURES_DIR / name, folder / FIGURES_DIR / name)
    write_run_records(run, folder)
    write_model_repo_card(folder, repo_id, dataset_repo_id, space_repo_id)
    return folder


def dataset_features(genres: list[str]) -> datasets.Features:
    """The published columns: the 13 raw features (missing as null), the genre as a ClassLabel of the run's `genres`
    (in label-id order, so the class ids are the model's), artist and track."""
    types = {name: datasets.Value("float64") for name in FEATURE_NAMES}
    types.update(
        key=datasets.Value("string"),
        mode=datasets.Value("string"),
        genre=datasets.ClassLabel(names=list(genres)),
        artist_name=datasets.Value("string"),
        track_name=datasets.Value("string"),
    )
    return datasets.Features({name: types[name] for name in KEPT_COLUMNS})


def stage_dataset(run: RunFolder, dataset_repo_id: str, folder: Path, data: str | None = None) -> Path:
    """The run's exact train/validation/test rows as Parquet, and a card `datasets.load_dataset` reads."""
    source = data or run_data_source(run.training_run["data_source"])
    try:
        loaded = load_data(source, GenreSelection.from_record(run.training_run.get("genre_selection")))
    except FileNotFoundError as error:
        raise PublishError(f"cannot read the run's data: {error} (pass --data with the same CSV)") from error
    if loaded.sha256 != run.training_run["data_sha256"]:
        raise PublishError(
            f"the data at {source} has sha256 {loaded.sha256}, the run was trained on {run.training_run['data_sha256']}"
        )
    splits_file = run.path / "splits.json"
    if not splits_file.is_file():
        raise PublishError(f"run folder {run.path} lacks splits.json, the row positions of its split")
    positions = json.loads(splits_file.read_text())
    expected = run.data_report.get("split_sizes", {})
    for name in SPLITS:
        if name in expected and len(positions[name]) != expected[name]:
            raise PublishError(
                f"splits.json holds {len(positions[name])} {name} rows, data_report.json {expected[name]}"
            )

    folder = _fresh(folder)
    (folder / ".gitattributes").write_text(GITATTRIBUTES)
    (folder / "data").mkdir()
    genres = run_genres(run)
    if list(loaded.genres) != genres:
        raise PublishError(f"the data's genres {list(loaded.genres)} are not the model's {genres}")
    features = dataset_features(genres)
    files, infos = {}, {}
    for name in SPLITS:
        rows = loaded.frame.iloc[positions[name]][list(KEPT_COLUMNS)].reset_index(drop=True)
        rows["genre"] = rows["genre"].map({genre: i for i, genre in enumerate(genres)})
        rows["artist_name"] = rows["artist_name"].mask(rows["artist_name"] == EMPTY_ARTIST)
        table = pa.Table.from_pandas(rows, schema=features.arrow_schema, preserve_index=False)
        files[name] = f"data/{name}-00000-of-00001.parquet"
        pq.write_table(table, folder / files[name])
        infos[name] = datasets.SplitInfo(name, num_bytes=table.nbytes, num_examples=table.num_rows)

    total = sum(info.num_examples for info in infos.values())
    # The Kaggle table has these columns; a user's own table is described as its own, not as the paper's.
    kaggle_source = set(DROPPED_COLUMNS) <= set(loaded.report.get("source_columns", []))
    pretty_name = (
        "Prediction of Music Genre, cleaned and split"
        if kaggle_source
        else "Spotify audio features and genres, cleaned and split"
    )
    card_data = DatasetCardData(
        # The source states no license in this project's records: its terms are those of its Kaggle page.
        license="other",
        license_name="prediction-of-music-genre-source-terms" if kaggle_source else "source-terms",
        license_link=KAGGLE_URL if kaggle_source else None,
        pretty_name=pretty_name,
        task_categories=["tabular-classification"],
        tags=["music", "genre", "spotify", "audio-features", "tabular"],
        size_categories=[_size_category(total)],
        **{PUBLISHED_SHA256_KEY: loaded.sha256},
    )
    info = datasets.DatasetInfo(
        features=features,
        splits=datasets.SplitDict(infos),
        download_size=sum((folder / path).stat().st_size for path in files.values()),
        dataset_size=sum(info.num_bytes for info in infos.values()),
    )
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs(
        {"default": {"data_files": [{"split": name, "path": path} for name, path in files.items()]}}
    ).to_dataset_card_data(card_data)
    content = render_template(
        "dataset_card.md",
        card_data=card_data.to_yaml(),
        dataset_repo_id=dataset_repo_id,
        sha256=loaded.sha256,
        source_name=public_name(str(source)),
        run=run.training_run,
        columns=[(name, _type_name(feature), COLUMN_MEANINGS[name]) for name, feature in features.items()],
        dropped_columns=_dropped_columns(loaded.report),
        empty_artists=int((loaded.frame["artist_name"] == EMPTY_ARTIST).sum()),
        report=loaded.report,
        splits={name: info.num_examples for name, info in infos.items()},
        features=[(name, _type_name(feature)) for name, feature in features.items()],
        genres=genres,
        kaggle_source=kaggle_source,
        pretty_name=pretty_name,
        selection=run.training_run.get("genre_selection"),
        kaggle_dataset=KAGGLE_DATASET,
        kaggle_url=KAGGLE_URL,
    )
    DatasetCard(content).save(folder / "README.md")
    return folder


def stage_space(
    run: RunFolder,
    repo_id: str,
    dataset_repo_id: str | None,
    folder: Path,
    space_dir: Path,
    model_folder: Path,
    dataset_folder: Path | None = None,
) -> Path:
    """The Space's app and requirements, the staged model repo bundled as `model/` (the app's default), a README,
    and, when the app's own example songs are not all of the run's genres, `examples.json`: songs of the staged
    dataset's test split (one per genre, up to EXAMPLE_SONGS), so that every example is of a genre the model names.

    The bundled copy carries the model card too: the app reads the test accuracy from it.
    """
    missing = [str(space_dir / name) for name in SPACE_FILES if not (space_dir / name).is_file()]
    if missing:
        raise PublishError(
            f"the Space app is missing: {', '.join(missing)} (the Space needs app.py and requirements.txt)"
        )
    imported = _project_imports(space_dir / "app.py")
    if imported:
        raise PublishError(f"{space_dir / 'app.py'} imports {', '.join(imported)}, which the Space does not have")
    try:
        gradio_version = version("gradio")
    except PackageNotFoundError as error:
        raise PublishError("gradio is not installed: the Space README records its version as sdk_version") from error

    folder = _fresh(folder)
    for name in SPACE_FILES:
        shutil.copy2(space_dir / name, folder / name)
    shutil.copytree(model_folder, folder / "model")
    if dataset_folder is not None and not _app_examples_fit(space_dir / "app.py", run_genres(run)):
        write_json_atomic(folder / "examples.json", example_songs(dataset_folder, run_genres(run)))
    (folder / ".gitattributes").write_text(GITATTRIBUTES)
    card_data = SpaceCardData(
        title="Music genre classifier",
        emoji="🎵",
        colorFrom="indigo",
        colorTo="pink",
        sdk="gradio",
        sdk_version=gradio_version,
        # The Hub's default Python cannot install the requirements; this is the version the tests run them on.
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        app_file="app.py",
        license=LICENSE,
        models=[repo_id],
        datasets=[dataset_repo_id] if dataset_repo_id else None,
        tags=["music", "genre", "spotify", "tabular-classification"],
        short_description="Genre of a Spotify track from its 13 audio features",
    )
    content = render_template(
        "space_card.md", card_data=card_data.to_yaml(), repo_id=repo_id, run=run.training_run, genres=run_genres(run)
    )
    SpaceCard(content).save(folder / "README.md")
    return folder


# Example songs a staged Space gets from the run's test split.
EXAMPLE_SONGS = 6


def _app_examples_fit(app: Path, genres: list[str]) -> bool:
    """Whether every built-in example song of the app (its EXAMPLES, read without importing it) is of `genres`."""
    for node in ast.parse(app.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "EXAMPLES" for t in node.targets):
            return {song[2] for song in ast.literal_eval(node.value)} <= set(genres)
    return False


def example_songs(dataset_folder: Path, genres: list[str], n: int = EXAMPLE_SONGS) -> list[dict]:
    """Real songs of the staged dataset's test split, the first complete one of each of the first `n` genres, in the
    app's example format (artist, track, genre and the one-song inputs; duration in seconds)."""
    test = datasets.load_dataset(str(dataset_folder), split="test").to_pandas()
    test["genre"] = [genres[int(i)] for i in test["genre"]]
    complete = test.dropna(subset=list(FEATURE_NAMES))
    songs = []
    for genre in genres[:n]:
        rows = complete[complete["genre"] == genre]
        if rows.empty:
            continue
        row = rows.iloc[0]
        values = [row[name] for name in FEATURE_NAMES]
        values[FEATURE_NAMES.index("duration_ms")] = round(float(row["duration_ms"]) / 1000, 1)
        values = [value.item() if hasattr(value, "item") else value for value in values]
        artist = row["artist_name"] if isinstance(row["artist_name"], str) else ""
        songs.append({"artist": artist, "track": str(row["track_name"]), "genre": genre, "values": values})
    return songs


def _read_run(run_folder: str | Path) -> RunFolder:
    try:
        run = read_run(run_folder)
        verify(Path(run_folder))  # the model and the metrics on the card must be one run's
        return run
    except (FileNotFoundError, ValueError, RunFolderError) as error:
        raise PublishError(_one_line(error)) from error


def _is_run_folder(folder: Path) -> bool:
    return looks_like_run_folder(folder, staged_model="model" in _staged_folders(folder))


def _staged_folders(out: Path) -> set[str]:
    try:
        return set(json.loads((out / STAGE_RECORD).read_text())["folders"])
    except (OSError, ValueError, KeyError, TypeError):
        return set()


def _record_staged(out: Path, kinds: list[str]) -> None:
    write_json_atomic(out / STAGE_RECORD, {"folders": sorted(_staged_folders(out) | set(kinds))})


def _claim_staging_root(out: Path, kinds: list[str], run_folder: Path) -> None:
    """Staging writes only into folders it made: a run folder, or a folder someone else filled, is refused."""
    if out.exists() and not out.is_dir():
        raise PublishError(f"cannot stage into {out}: it is a file, not a folder")
    inside_run = [folder for folder in (out, *out.resolve().parents) if _is_run_folder(folder)]
    if inside_run and out.resolve() != (run_folder / "hub").resolve():  # RUN/hub is push's own default
        where = "it is a run folder" if inside_run[0] == out else f"it lies inside the run folder {inside_run[0]}"
        raise PublishError(f"cannot stage into {out}: {where}; stage into a new or empty folder")
    owned = _staged_folders(out)
    for kind in kinds:
        target = out / kind
        if target.exists() and kind not in owned and (not target.is_dir() or any(target.iterdir())):
            raise PublishError(
                f"cannot stage into {out}: {target} exists and was not made by staging (nothing was changed); "
                "stage into a new or empty folder"
            )
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise PublishError(f"cannot create the staging folder {out}: {error.strerror or error}") from error
    _record_staged(out, [])


def _copy_model_files(run: RunFolder, folder: Path) -> None:
    missing = [name for name in REMOTE_CODE if not (run.model_dir / name).is_file()]
    if missing:
        raise PublishError(f"model folder {run.model_dir} lacks its remote code: {', '.join(missing)}")
    for name in (*MODEL_FILES, *REMOTE_CODE):
        shutil.copy2(run.model_dir / name, folder / name)
    # The published run record names files, never a folder of the machine that made it.
    published = dict(run.training_run, command=without_machine_paths(run.training_run["command"]))
    published["data_source"] = public_name(str(published["data_source"]))
    (folder / "training_run.json").write_text(json.dumps(published, indent=2) + "\n")


def _fresh(folder: Path) -> Path:
    """An empty folder: staging again must not leave files from an earlier staging behind.

    Only a folder the staging record names (made by an earlier staging) is emptied; `_claim_staging_root` has
    refused any other non-empty one before this runs.
    """
    if folder.exists():
        if folder.name not in _staged_folders(folder.parent) and any(folder.iterdir()):
            raise PublishError(f"cannot stage into {folder}: it exists and was not made by staging")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    _record_staged(folder.parent, [folder.name])
    return folder


def _project_imports(path: Path) -> list[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return sorted(roots & PROJECT_PACKAGES)


def _dropped_columns(report: dict) -> list[tuple[str, str]]:
    """The source's columns the published table leaves out, with the reason (none for a published dataset)."""
    # The label column is published as `genre`, a table's `artists` as `artist_name`.
    kept = {*KEPT_COLUMNS, report.get("label_column", "music_genre"), "artists"}
    header = report.get("source_columns", [])
    return [(name, DROPPED_COLUMNS.get(name, "not a model input")) for name in header if name not in kept]


def _size_category(rows: int) -> str:
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if rows < bound:
            return name
    return "1M<n<10M"


def _type_name(feature) -> str:
    if isinstance(feature, datasets.ClassLabel):
        return f"ClassLabel ({len(feature.names)} genres)"
    return feature.dtype


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= 300 else text[:297] + "..."
