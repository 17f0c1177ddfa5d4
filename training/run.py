"""`music-genre train`: the paper's whole method as one reproducible run, and `music-genre evaluate`.

Order: load and clean, split 80/10/10, fit the feature extractor on train, SMOTE
on the encoded training split; train the paper's first design; search with
Optuna through `Trainer.hyperparameter_search`; retrain the best trial; test
once. Everything lands in one run folder (see README, "The run folder").
"""

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

from music_genre.modeling import GenreFeatureExtractor, GenreFFNForSequenceClassification, save_model_folder
from music_genre.modeling.modeling_genre_ffn import native_bfloat16
from music_genre.training import figures
from music_genre.training.calibration import calibrate
from music_genre.training.data import (
    GROUP_COLUMNS,
    DataError,
    GenreData,
    PreparedSplits,
    load_data,
    prepare_splits,
    run_data_source,
    split_indices,
    unseen_test_rows,
)
from music_genre.training.environment import compute_record, evaluation_record, hardware, software_versions
from music_genre.training.options import GenreSelection, RunOptions
from music_genre.training.run_folder import (
    DATA_REPORT,
    FIGURES_DIR,
    LOCK_FILE,
    MANIFEST,
    METRICS,
    MODEL_DIR,
    RUN_ENTRIES,
    RUN_INFO,
    SPLITS,
    STUDY_JOURNAL,
    TRIALS,
    RunFolderError,
    commit,
    file_hashes,
    new_pending,
    run_lock,
    settle,
    verify,
    write_json_atomic,
    write_text_atomic,
)
from music_genre.training.scoring import SUMMARY_METRICS, summary_metrics, test_metrics
from music_genre.training.search import (
    KEEP_EPOCH_BY,
    SEARCH_SPACE_VERSION,
    SearchSettings,
    best_trial,
    hyperparameters_from,
    open_study,
    run_reevaluation,
    run_search,
    slot_of,
    trials_frame,
)
from music_genre.training.trainer import (
    AVERAGED_EPOCHS,
    PAPER_INITIAL,
    SELECTION_METRIC,
    Hyperparameters,
    fit,
    predict_probabilities,
)
from music_genre.training.trust import trust_report
from music_genre.training.workers import BackgroundCall

logger = logging.getLogger("music_genre")

# The published metrics this project reproduces and has to beat (test split).
PAPER = {
    "initial": {"accuracy": 0.5514, "f1_weighted": 0.5392, "roc_auc_macro": 0.9115},
    "tuned": {"accuracy": 0.5952, "f1_weighted": 0.5937, "roc_auc_macro": 0.9338},
}
# What `write_card(run_folder, card_path)` is given by the `music-genre` command: the card renderer of hub_card.
CardWriter = Callable[[Path, Path], object]


def train_run(options: RunOptions, write_card: CardWriter | None = None, torch_threads: int = 1) -> Path:
    """Run the whole method; returns the run folder.

    One command at a time per folder (`run_lock`); everything is written into a pending folder of the run's
    own and committed with a manifest (`run.json`) last, so a kill at any point leaves the previous complete
    state or the new one (see training/run_folder.py). `write_card(run_folder, path)` renders the model card into
    `model/README.md` before the commit (the command passes hub_card's). Training runs on `torch_threads`
    threads (one is several times faster for this small network); the caller's setting is restored after.
    """
    run_folder = Path(options.output)
    created = not run_folder.exists()
    _make_run_folder(run_folder)
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with run_lock(run_folder, options.command()):
            for note in settle(run_folder):
                logger.info("run folder: %s", note)
            pending = new_pending(run_folder)
            try:
                _train_into(options, run_folder, pending, write_card)
            except BaseException:
                shutil.rmtree(pending, ignore_errors=True)  # ours, uncommitted: the previous state stays as it was
                raise
    except BaseException:
        if created:  # a run that failed at once (bad data, say) leaves no empty folder behind
            (run_folder / LOCK_FILE).unlink(missing_ok=True)
            if not any(run_folder.iterdir()):
                run_folder.rmdir()
        raise
    finally:
        torch.set_num_threads(caller_threads)
    return run_folder


def _train_into(options: RunOptions, run_folder: Path, pending: Path, write_card: CardWriter | None) -> None:
    """The run itself, one named step after another, writing into the folder `pending`; commits it into `run_folder`
    at the end."""
    started = time.perf_counter()
    logger.info("run folder: %s", run_folder)
    (pending / FIGURES_DIR).mkdir(parents=True, exist_ok=True)
    data, prepared, options = _read_and_split(options, pending)
    search_settings = _search_settings(options, run_folder, data, prepared)
    # A study made under other settings is refused now, before any training.
    open_study(search_settings)
    initial = _InitialModel(options, data, prepared, pending)
    # One worker trains the paper's first design here, first, and draws the data figures at the end. With more, the
    # search keeps every worker busy, and the final model's training uses one core: the initial model and the data
    # figures are then made beside it, in a process of their own. Each training is seeded on its own, so both ways
    # give the same models and metrics.
    logger.info("initial model: the paper's first design %s", initial.hyperparameters.to_dict())
    if not initial.in_background:
        initial.metrics = fit_initial(*initial.arguments, quiet=False)
    search = _search(options, prepared, search_settings, pending)
    tuned, final_seconds = _train_final(options, prepared, search, initial, pending)
    tuned_metrics = _save_model(options, data, prepared, tuned, pending)
    timings = {"started": started, "search_seconds": search.seconds, "final_seconds": final_seconds}
    metrics = _metrics(options, data, prepared, search, initial, tuned, tuned_metrics, timings, pending)
    _write_json(pending / METRICS, metrics)
    if not initial.in_background:
        write_data_figures(pending / FIGURES_DIR, data, prepared, prepared.extractor, seed=0)
    write_model_figures(pending / FIGURES_DIR, prepared, tuned, search.trials)
    shutil.rmtree(pending / "checkpoints", ignore_errors=True)
    if write_card is not None:
        _write_model_card(pending, write_card)
    commit(
        run_folder,
        pending,
        {
            "settings": {**options.public_settings(), "output": run_folder.name},
            "data_sha256": data.sha256,
            "files": file_hashes(pending, RUN_ENTRIES),
        },
    )
    print(results_table(metrics))
    _warn_if_tuned_is_worse(metrics)
    logger.info("done: model, metrics.json, trials.csv, data_report.json and figures/ in %s", run_folder)


def _read_and_split(options: RunOptions, pending: Path) -> tuple[GenreData, PreparedSplits, RunOptions]:
    """Load and clean the data, split it 80/10/10 and fit the feature extractor on train (SMOTE on the encoded
    training split); writes data_report.json and splits.json. The options come back with the source the loader
    resolved, which the run records (the caller's options stay as given)."""
    data = load_data(options.data, options.genre_selection())
    _log_dropped_rows(data.report)
    logger.info("genres: %d from the column %r", len(data.genres), data.report["label_column"])
    options = replace(options, data=data.report["source"])
    prepared = prepare_splits(
        data, GenreFeatureExtractor(numeric_encoding=options.encoding), options.seed, options.split
    )
    _write_json(pending / DATA_REPORT, _data_report(data, prepared))
    _write_json(pending / SPLITS, {name: rows.tolist() for name, rows in prepared.indices.items()})
    return data, prepared, options


def _search_settings(
    options: RunOptions, run_folder: Path, data: GenreData, prepared: PreparedSplits
) -> SearchSettings:
    """The Optuna study's settings: the run folder's journal (moved aside first with --fresh-study) unless --storage
    names another, and the identity a stored study must match."""
    storage = options.storage or str(run_folder / STUDY_JOURNAL)
    if options.fresh_study:
        storage = _fresh_study_storage(options, run_folder)
    return SearchSettings(
        n_trials=options.n_trials,
        seed=options.seed,
        storage=storage,
        study_name=f"genre-ffn-{options.split}-seed{options.seed}",
        timeout=options.timeout,
        workers=options.workers,
        max_epochs=options.max_epochs,
        trial_batch=options.trial_batch,
        reevaluated_trials=options.reevaluate_top,
        reevaluation_splits=options.reevaluation_splits,
        groups=_search_groups(data, prepared) if options.split == "group" else None,
        identity=_study_identity(options, data.sha256),
    )


class _InitialModel:
    """The paper's first design: its hyperparameters, what `fit_initial` is called with, whether it trains in a process
    of its own beside the final model (several workers), and its test metrics once trained."""

    def __init__(self, options: RunOptions, data: GenreData, prepared: PreparedSplits, pending: Path):
        self.hyperparameters = replace(PAPER_INITIAL, epochs=min(PAPER_INITIAL.epochs, options.max_epochs))
        test_rows = data.frame.iloc[prepared.indices["test"]]
        folder = pending / "checkpoints" / "initial"
        unseen = unseen_test_rows(data, prepared.indices)
        self.arguments = (prepared, prepared.extractor, self.hyperparameters, folder, options.seed, test_rows, unseen)
        self.figure_arguments = (pending / FIGURES_DIR, data, prepared, prepared.extractor)
        self.in_background = options.workers > 1
        self.metrics: dict | None = None


@dataclass
class _SearchOutcome:
    trials: pd.DataFrame  # trials.csv
    searched_best: optuna.trial.FrozenTrial  # the best trial of the search itself
    chosen: optuna.trial.FrozenTrial  # the trial the re-evaluation chose: the final model's configuration
    reevaluation: dict
    best: Hyperparameters  # the chosen trial's parameters as the final model's training settings
    seconds: float


def _search(
    options: RunOptions, prepared: PreparedSplits, search_settings: SearchSettings, pending: Path
) -> _SearchOutcome:
    """The Optuna search, then the re-evaluation of its top trials; writes trials.csv. Both see train and validation
    only: their objective can never read the test split."""
    logger.info(
        "search: %d trials, %d worker(s), study in %s",
        options.n_trials,
        options.workers,
        Path(search_settings.storage).name,
    )
    started = time.perf_counter()
    seen = prepared.only("train", "validation")
    local_storage = options.storage is None
    study = run_search(seen, prepared.extractor, search_settings, pending / "checkpoints" / "search", local_storage)
    trials = trials_frame(study)
    _write_csv(pending / TRIALS, trials)
    searched_best = best_trial(study)
    logger.info(
        "re-evaluation: the top %d trials on %d further splits of train and validation",
        options.reevaluate_top,
        options.reevaluation_splits,
    )
    chosen, reevaluation = run_reevaluation(
        seen, prepared.extractor, search_settings, study, pending / "checkpoints" / "search", local_storage
    )
    seconds = time.perf_counter() - started
    best = hyperparameters_from(chosen.params, options.num_members)
    return _SearchOutcome(trials, searched_best, chosen, reevaluation, best, seconds)


def _train_final(
    options: RunOptions, prepared: PreparedSplits, search: _SearchOutcome, initial: _InitialModel, pending: Path
):
    """Train the final model on the chosen configuration (the initial model and the data figures beside it in a
    process of their own when the run has several workers); returns it and its training seconds."""
    logger.info("final model: best trial %d, %s", slot_of(search.chosen), search.best.to_dict())
    started = time.perf_counter()
    beside = (
        BackgroundCall(
            "music_genre.training.run:initial_model_and_data_figures",
            (initial.arguments, initial.figure_arguments),
            torch.get_num_threads(),
        )
        if initial.in_background
        else nullcontext()
    )
    with beside as background:
        if background is not None:
            logger.info("initial model and data figures: in a process of their own, beside the final model")
        tuned = fit(
            prepared,
            prepared.extractor,
            search.best,
            pending / "checkpoints" / "tuned",
            options.seed,
            description="tuned",
            keep_epoch_by=KEEP_EPOCH_BY,
        )
        seconds = time.perf_counter() - started
        if background is not None:
            initial.metrics = background.result()
    return tuned, seconds


def _save_model(options: RunOptions, data: GenreData, prepared: PreparedSplits, tuned, pending: Path) -> dict:
    """Calibrate the final model, save its folder with the run's record (training_run.json) and return its test
    metrics, measured on the saved folder as `music-genre evaluate` measures them."""
    # How the saved model computes at inference; its test metrics are measured that way.
    tuned.model.config.inference_dtype = options.inference_dtype
    # Temperature and conformal sets, fitted on validation and stored in the config the saved folder serves.
    calibrate(tuned.model, prepared.features["validation"], prepared.labels["validation"])
    save_model_folder(tuned.model, prepared.extractor, pending / MODEL_DIR)
    run_info = {
        "seed": options.seed,
        "split_mode": options.split,
        "data_sha256": data.sha256,
        "data_source": options.data,
        # How the genres were read from the data (evaluate and push read it the same way) and which they are.
        "genre_selection": options.genre_selection().record(),
        "label_column": data.report["label_column"],
        "genres": list(data.genres),
        "command": options.command(),
    }
    _write_json(pending / MODEL_DIR / RUN_INFO, run_info)
    return evaluate_folder(pending / MODEL_DIR, data)


def _metrics(
    options: RunOptions,
    data: GenreData,
    prepared: PreparedSplits,
    search: _SearchOutcome,
    initial: _InitialModel,
    tuned,
    tuned_metrics: dict,
    timings: dict,
    pending: Path,
) -> dict:
    """metrics.json: the test metrics of both models, the search, the trust report (which draws its figures), the
    paper's figures, how the metrics were computed, the run's timings and software."""
    test_rows = data.frame.iloc[prepared.indices["test"]]
    return {
        "seed": options.seed,
        "split_mode": options.split,
        "data_sha256": data.sha256,
        "selection_metric": f"validation {SELECTION_METRIC}",
        "best_hyperparameters": search.best.to_dict(),
        "search": {
            "n_trials": options.n_trials,
            "best_trial": slot_of(search.searched_best),
            "best_validation": search.searched_best.value,
            "objective": f"validation {SELECTION_METRIC} of the trial's last {AVERAGED_EPOCHS} epochs averaged",
            "chosen_trial": slot_of(search.chosen),
            "reevaluation": search.reevaluation,
            "final_weights": f"the last {AVERAGED_EPOCHS} epochs' weights averaged, batch-norm statistics recomputed "
            "on shuffled training rows",
        },
        "initial": {**initial.metrics, "hyperparameters": initial.hyperparameters.to_dict()},
        "tuned": {**tuned_metrics, "hyperparameters": search.best.to_dict()},
        **trust_report(
            tuned.model, prepared.extractor, test_rows, prepared.labels["test"], pending / FIGURES_DIR, options.seed
        ),
        "paper": PAPER,
        # What the card reports of the run: how the test metrics were computed, its timings and software.
        "evaluation": evaluation_record(tuned.model, len(test_rows)),
        "compute": compute_record(
            time.perf_counter() - timings["started"],
            timings["search_seconds"],
            timings["final_seconds"],
            options.workers,
            torch.get_num_threads(),
        ),
        "software": software_versions(),
    }


def _make_run_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError as error:
        raise RunFolderError(f"--output {folder} is a file, not a folder") from error
    except OSError as error:
        raise RunFolderError(f"cannot create the run folder {folder}: {error.strerror or error}") from error
    if not folder.is_dir():
        raise RunFolderError(f"--output {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise RunFolderError(f"the run folder {folder} is not writable")


def _study_identity(options: RunOptions, data_sha256: str) -> dict:
    """What a study's trials were measured on: a rerun differing in any of these is not the same study."""
    return {
        "data_sha256": data_sha256,
        "encoding": options.encoding,
        "max_epochs": options.max_epochs,
        "split": options.split,
        "seed": options.seed,
        "search_space_version": SEARCH_SPACE_VERSION,
        "trial_batch": options.trial_batch,
        "reevaluation": [options.reevaluate_top, options.reevaluation_splits],
    }


def _search_groups(data: GenreData, prepared) -> dict[str, np.ndarray]:
    """Each training and validation row's (artist, track) group, for the re-evaluation's group splits."""
    units = data.frame.groupby(list(GROUP_COLUMNS), sort=False).ngroup().to_numpy()
    return {name: units[prepared.indices[name]] for name in ("train", "validation")}


def _fresh_study_storage(options: RunOptions, run_folder: Path) -> str:
    """`--fresh-study`: the folder's journal is moved aside (kept, never deleted) and a new one begins."""
    if options.storage is not None:
        raise RunFolderError("--fresh-study works on the run folder's own journal; give a new --storage instead")
    journal = run_folder / STUDY_JOURNAL
    if journal.exists():
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        kept = journal.with_name(f"{journal.stem}.{stamp}{journal.suffix}")
        os.replace(journal, kept)
        logger.info("--fresh-study: the previous study is kept in %s", kept.name)
    return str(journal)


def _log_dropped_rows(report: dict) -> None:
    dropped = report["rows_dropped"]
    if dropped["total"]:
        reasons = ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in dropped.items() if count)
        reasons = reasons.replace(f", {dropped['total']} total", "")
        logger.warning("dropped %d of %d rows: %s", dropped["total"], report["rows_in"], reasons)


def _warn_if_tuned_is_worse(metrics: dict) -> None:
    initial, tuned = metrics["initial"]["accuracy"], metrics["tuned"]["accuracy"]
    if tuned < initial:
        logger.warning(
            "the tuned model's test accuracy %.4f is below the initial model's %.4f: the search found nothing "
            "better on validation that held on test (raise --n-trials; %d were run)",
            tuned,
            initial,
            metrics["search"]["n_trials"],
        )


def _write_model_card(pending: Path, write_card: CardWriter) -> None:
    try:
        write_card(pending, pending / MODEL_DIR / "README.md")
    except Exception as error:  # the card is rendered again by push; a card fault must not lose the run
        logger.warning("the model card was not written into model/README.md: %s", " ".join(str(error).split()))


def fit_initial(
    prepared: PreparedSplits,
    extractor: GenreFeatureExtractor,
    hyperparameters: Hyperparameters,
    output_dir: Path,
    seed: int,
    test_rows,
    unseen: np.ndarray | None = None,
    quiet: bool = True,
) -> dict:
    """Train the paper's first design and return its test metrics (only the metrics are kept of it)."""
    initial = fit(prepared, extractor, hyperparameters, output_dir, seed, quiet=quiet, description="initial")
    return score(initial.model, extractor, test_rows, prepared.labels["test"], unseen)


def initial_model_and_data_figures(initial_arguments: tuple, figure_arguments: tuple) -> dict:
    """What a run with several workers makes beside its final model: the initial model's test metrics, and the
    data figures (`write_data_figures(*figure_arguments, seed=0)`)."""
    metrics = fit_initial(*initial_arguments)
    write_data_figures(*figure_arguments, seed=0)
    return metrics


def score(
    model: GenreFFNForSequenceClassification,
    extractor: GenreFeatureExtractor,
    rows,
    labels: np.ndarray,
    unseen: np.ndarray | None = None,
) -> dict:
    """Test metrics of a model on raw rows, encoded by its own feature extractor; with `unseen` (a mask over the
    rows, `unseen_test_rows`), also the summary metrics of the rows whose song the model never saw, and their count."""
    probabilities = predict_probabilities(model, extractor(rows)["input_features"])
    metrics = test_metrics(labels, probabilities, model_genres(model))
    if unseen is not None:
        labels = np.asarray(labels)
        subset = summary_metrics(labels[unseen], probabilities[unseen]) if unseen.any() else {}
        metrics["unseen_songs"] = {"rows": int(unseen.sum()), **subset}
    return metrics


def model_genres(model: GenreFFNForSequenceClassification) -> list[str]:
    """The model's genres, by label id (its config's `id2label`)."""
    return [model.config.id2label[i] for i in range(model.config.num_labels)]


def evaluate_folder(model_dir: Path, data: GenreData | str | None = None, allow_other_data: bool = False) -> dict:
    """Recompute a saved model's test metrics on the split its run recorded.

    Without `data`, the run's recorded source (a file name or Hub id) is looked up: a CSV via MUSIC_GENRE_CSV or
    the default path; its sha256 must be the run's.
    """
    info_path = Path(model_dir) / RUN_INFO
    if not info_path.is_file():
        raise RunFolderError(f"{model_dir} is not a model folder written by `music-genre train` (no {RUN_INFO})")
    run_info = json.loads(info_path.read_text())
    if not isinstance(data, GenreData):
        selection = GenreSelection.from_record(run_info.get("genre_selection"))
        data = load_data(data or run_data_source(run_info["data_source"]), selection)
    if data.sha256 != run_info["data_sha256"] and not allow_other_data:
        raise DataError(
            f"the data's sha256 {data.sha256} differs from the run's {run_info['data_sha256']}: "
            f"its split would not be the run's (pass --data with the run's {run_info['data_source']}, "
            "or --allow-other-data to evaluate anyway)"
        )
    indices = split_indices(data, run_info["seed"], run_info["split_mode"])
    test = indices["test"]
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    extractor = AutoFeatureExtractor.from_pretrained(model_dir)
    if list(data.genres) != model_genres(model):
        raise DataError(
            f"the data's genres ({len(data.genres)}: {', '.join(data.genres[:12])}"
            f"{', ...' if len(data.genres) > 12 else ''}) are not the model's ({model.config.num_labels}, in its "
            "config's id2label, same order): evaluate on data read with the run's --label-column, --genres and "
            "--merge-genres"
        )
    return score(model, extractor, data.frame.iloc[test], data.labels[test], unseen_test_rows(data, indices))


def evaluate_report(model_dir: Path, data: str | None = None, allow_other_data: bool = False) -> dict:
    """`music-genre evaluate`: the tuned model's metrics recomputed, and the initial model's from its run.

    A model folder inside a run folder (RUN/model) is checked against the run's manifest first.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise RunFolderError(f"--model {model_dir} is not a folder (give a model folder written by train, RUN/model)")
    run_folder = model_dir.parent
    in_run = model_dir.name == MODEL_DIR and any((run_folder / name).exists() for name in (METRICS, MANIFEST))
    report = {"model": str(model_dir)}
    if in_run:
        verify(run_folder)
        recorded = json.loads((run_folder / METRICS).read_text())
        report["initial"] = {k: v for k, v in recorded["initial"].items() if k != "hyperparameters"}
    report["tuned"] = evaluate_folder(model_dir, data, allow_other_data=allow_other_data)
    report["evaluation"] = _how_evaluated(model_dir, recorded.get("evaluation") if in_run else None)
    return report


def _how_evaluated(model_dir: Path, recorded: dict | None) -> dict:
    """The dtype and device `evaluate` computed in (the model is loaded on the CPU), and why its figures may differ
    from the run's or the card's: bfloat16 is used only where the hardware computes it natively."""
    asked = json.loads((model_dir / "config.json").read_text())["inference_dtype"]
    dtype = "bfloat16" if asked == "bfloat16" and native_bfloat16("cpu") else "float32"
    now = {"dtype": dtype, "device": "cpu", "hardware": hardware("cpu"), "inference_dtype": asked}
    note = None
    if recorded is not None and (recorded["dtype"], recorded["device"]) != (dtype, "cpu"):
        note = (
            f"the run computed its figures in {recorded['dtype']} on {recorded['device']} ({recorded['hardware']}): "
            "they may differ from these in the fourth decimal"
        )
    elif recorded is None and asked != dtype:
        note = (
            f"the model asks for {asked} at inference, which this CPU does not compute natively (AVX-512 BF16 or "
            f"AMX), so it ran in {dtype}: the card's figures, computed in {asked} where the run had it, may differ "
            "from these in the fourth decimal"
        )
    return {**now, "run": recorded, "note": note}


def evaluation_table(report: dict) -> str:
    """The summary metrics as the terminal shows them: initial (from the run) and tuned (recomputed)."""
    stages = [stage for stage in ("initial", "tuned") if stage in report]
    header = {"initial": "initial (run)", "tuned": "tuned (now)"}
    lines = [f"test split, {report['model']}", f"{'':<20}" + "".join(f"{header[s]:>16}" for s in stages)]
    for name in SUMMARY_METRICS:
        lines.append(f"{name:<20}" + "".join(f"{report[stage][name]:>16.4f}" for stage in stages))
    unseen = report["tuned"].get("unseen_songs")
    if unseen and unseen["rows"]:
        lines.append(
            f"tuned, on the {unseen['rows']} test rows whose song no training or validation row holds: accuracy "
            f"{unseen['accuracy']:.4f}, macro ROC AUC {unseen['roc_auc_macro']:.4f}"
        )
    evaluation = report["evaluation"]
    lines.append(f"computed in {evaluation['dtype']} on {evaluation['device']} ({evaluation['hardware']})")
    if evaluation["note"]:
        lines.append(f"note: {evaluation['note']}")
    lines.append("(--json prints the full record: per-genre metrics and the confusion matrix)")
    return "\n".join(lines)


def write_data_figures(folder: Path, data: GenreData, prepared, extractor, seed: int) -> None:
    """Transforms, PCA and t-SNE of the real training rows (before SMOTE's), as the fitted extractor encodes them."""
    train_rows = prepared.indices["train"]
    encoded = prepared.features["train"][: len(train_rows)]
    labels = prepared.labels["train"][: len(train_rows)]
    figures.plot_log_transforms(data.frame.iloc[train_rows], extractor, folder / "log_transform.png")
    figures.plot_pca(encoded, labels, folder / "pca.png", genres=data.genres)
    figures.plot_tsne(encoded, labels, folder / "tsne.png", seed=seed, genres=data.genres)


def write_model_figures(folder: Path, prepared, tuned, trials) -> None:
    """The final model's loss curves, test ROC curves and confusion matrix, and the search's history."""
    figures.plot_loss_curves(tuned.state.log_history, folder / "loss_curves.png")
    probabilities = predict_probabilities(tuned.model, prepared.features["test"])
    figures.plot_roc_curves(prepared.labels["test"], probabilities, folder / "roc_curves.png", prepared.genres)
    matrix = test_metrics(prepared.labels["test"], probabilities, prepared.genres)["confusion_matrix"]
    figures.plot_confusion_matrix(matrix, folder / "confusion_matrix.png", prepared.genres)
    figures.plot_optimization_history(trials, folder / "optimization_history.png")


def write_eda_figures(
    source: str | None,
    output: Path,
    seed: int = 42,
    split: str = "stratified",
    selection: GenreSelection | None = None,
) -> Path:
    """`music-genre eda`: the data figures (log transforms, PCA, t-SNE) from a fresh train-only fit, on the genres
    `selection` picks (as train's --label-column, --genres and --merge-genres do)."""
    output.mkdir(parents=True, exist_ok=True)
    data = load_data(source, selection)
    prepared = prepare_splits(data, GenreFeatureExtractor(), seed, split)
    write_data_figures(output, data, prepared, prepared.extractor, seed)
    _write_json(output / DATA_REPORT, _data_report(data, prepared))
    return output


def results_table(metrics: dict) -> str:
    """Initial vs tuned vs the paper's published metrics, as the terminal shows them."""
    lines = [f"{'test split':<20}{'initial':>10}{'tuned':>10}{'paper initial':>15}{'paper tuned':>13}"]
    for name in SUMMARY_METRICS:
        paper = [metrics["paper"][stage].get(name) for stage in ("initial", "tuned")]
        cells = [f"{metrics[stage][name]:>10.4f}" for stage in ("initial", "tuned")]
        cells += [f"{value:>15.4f}" if value is not None else f"{'-':>15}" for value in paper[:1]]
        cells += [f"{value:>13.4f}" if value is not None else f"{'-':>13}" for value in paper[1:]]
        lines.append(f"{name:<20}" + "".join(cells))
    return "\n".join(lines)


def _data_report(data: GenreData, prepared) -> dict:
    return {
        **data.report,
        "sha256": data.sha256,
        "split_sizes": {name: len(rows) for name, rows in prepared.indices.items()},
        "train_rows_after_smote": len(prepared.labels["train"]),
        "genres": list(data.genres),
    }


def _write_json(path: Path, payload: dict) -> None:
    write_json_atomic(path, payload, default=_plain)


def _write_csv(path: Path, frame) -> None:
    write_text_atomic(path, frame.to_csv(index=False))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
