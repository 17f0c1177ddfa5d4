"""The model card, generated from a run folder (never written by hand).

Every number on the card is read from the run: `metrics.json`, `trials.csv`,
`data_report.json`, `model/training_run.json`, `model/config.json`,
`model/preprocessor_config.json` and the PNGs in `figures/`. The metadata is a
`ModelCardData` whose `eval_results` become the Hub's model-index; the body is
the Jinja template `templates/model_card.md`, kept short: its long tables are
in `reports/training.md` and `reports/evaluation.md` (`templates/report_*.md`).

A staged model repo ships the run's records beside them in `reports/`
(`write_run_records`), so its card and reports can be rendered again from the
repo alone (`read_model_repo`, `write_model_repo_card`): `music-genre bundle
--card-only` does that for the bundled model.
"""

import dataclasses
import json
import shlex
import shutil
from collections import Counter
from itertools import combinations
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open

from music_genre.modeling import FEATURE_NAMES, TASK
from music_genre.training.options import public_name
from music_genre.training.run_folder import (
    DATA_REPORT,
    FIGURES_DIR,
    METRICS,
    RUN_INFO,
    TRIALS,
    RunFolder,
    read_run,
    write_bytes_atomic,
    write_json_atomic,
)
from music_genre.training.scoring import SUMMARY_METRICS

TEMPLATES = Path(__file__).resolve().parent / "templates"
LICENSE = "apache-2.0"
KAGGLE_DATASET = "vicsuperman/prediction-of-music-genre"
KAGGLE_URL = f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}"
# The dataset repo a push stages by default, under the model repo's owner.
DEFAULT_DATASET_NAME = "prediction-of-music-genre-cleaned"
# The paper this model reproduces, as its text gives it (../shared/paper/): it states no venue or year, so the card
# and CITATION.cff cite none.
PAPER_SOURCE = {
    "title": "Music Genre Classification Using Enhanced Feedforward Neural Networks and Hyperparameter Optimization",
    "authors": "Yuze Jiang",
    "affiliation": "Department of Statistics, University of Michigan, Ann Arbor",
    "code": "https://github.com/StephanJ911/MusicGenreClassification",
    "model": "https://huggingface.co/JyzJiang/music-genre-classifier",
}
# The model-index entries: metrics.json key, Hub metric id, metric arguments, display name.
EVAL_METRICS = (
    ("accuracy", "accuracy", None, "Test accuracy"),
    ("f1_weighted", "f1", {"average": "weighted"}, "Test weighted F1"),
    ("roc_auc_macro", "roc_auc", {"average": "macro", "multi_class": "ovr"}, "Test macro OvR ROC AUC"),
)
FIGURES = {
    "log_transform.png": "The skewed features before and after the feature extractor's transform (training rows).",
    "pca.png": "PCA of the encoded training rows, coloured by genre.",
    "tsne.png": "t-SNE of the encoded training rows, coloured by genre.",
    "loss_curves.png": "Training and validation loss of the tuned model.",
    "roc_curves.png": "One-vs-rest ROC curves of the tuned model on the test split.",
    "confusion_matrix.png": "Confusion matrix of the tuned model on the test split.",
    "optimization_history.png": "Optuna optimisation history: the validation objective of every trial.",
    "reliability_diagram.png": "Reliability diagram on the test split, before and after the calibration temperature.",
    "permutation_importance.png": "Permutation importance of the 13 raw features on the test split (accuracy lost).",
}
# Figures shown in their own sections of the card rather than with the test results.
TRUST_FIGURES = ("reliability_diagram.png", "permutation_importance.png")
# The genre-set level the card's summary and per-genre table quote (the Space shows this level too).
SUMMARY_COVERAGE = "0.9"
# How many genre pairs the card's limitations list: those filing the most songs under both (from the run's data).
LOOKALIKE_PAIRS = 4
# Where a staged model repo keeps the run's records and the card's long tables (rendered from templates/report_*.md).
REPORTS_DIR = "reports"
REPORTS = ("training", "evaluation")
# The data report lists every song filed under several genres (artist and track names, thousands of the source's
# rows); a model repo ships counts per genre pair and this many examples instead.
SHARED_LIST = "pairs_under_several_genres_list"
SHARED_EXAMPLES = 5


def run_genres(run: RunFolder) -> list[str]:
    """The run's genres by label id: the saved config's `id2label` (what the model returns)."""
    id2label = run.config["id2label"]
    return [id2label[str(i)] if str(i) in id2label else id2label[i] for i in range(len(id2label))]


def write_model_card(
    run_folder: str | Path,
    output_path: str | Path,
    repo_id: str | None = None,
    dataset_repo_id: str | None = None,
    space_repo_id: str | None = None,
) -> ModelCard:
    """Render the run's model card to `output_path` (a README.md) and return it."""
    run = read_run(run_folder)
    card = ModelCard(render_model_card(run, repo_id, dataset_repo_id, space_repo_id))
    Path(output_path).parent.mkdir(parents=True, exist_ok=True)
    card.save(output_path)
    return card


def default_dataset_repo_id(repo_id: str) -> str:
    """The dataset repo a push of `repo_id` stages unless told otherwise: the same owner, a fixed name."""
    return f"{repo_id.split('/')[0]}/{DEFAULT_DATASET_NAME}"


def without_machine_paths(command: str) -> str:
    """`command` as published: each absolute path cut to its last part, the data source and a storage URL (which
    may hold a host and password) as `public_name` records them, so it names nothing of the machine that ran it.
    Recorded commands are already so; this also cleans a command recorded by an older run."""
    parts = shlex.split(command)
    for i, part in enumerate(parts):
        option = parts[i - 1] if i else ""
        if option in ("--data", "--storage"):
            parts[i] = public_name(part)
        elif Path(part).is_absolute():
            parts[i] = Path(part).name
    return shlex.join(parts)


def card_data(run: RunFolder, repo_id: str | None = None, dataset_repo_id: str | None = None) -> ModelCardData:
    """The card's YAML: license, library, tags, dataset, pipeline tag and the test figures as a model-index.

    The model-index and `datasets:` name a Hub dataset id: `dataset_repo_id`, else the default under `repo_id`'s
    owner. Without either no Hub dataset can be named, so the card carries no model-index.
    """
    tuned = run.metrics["tuned"]
    dataset_repo_id = dataset_repo_id or (default_dataset_repo_id(repo_id) if repo_id else None)
    dataset_name = (
        f"Prediction of Music Genre (Spotify, cleaned), {run.training_run['split_mode']} split, "
        f"seed {run.training_run['seed']}"
    )
    eval_results = [
        EvalResult(
            task_type=TASK,
            task_name="Music genre classification",
            dataset_type=dataset_repo_id,
            dataset_name=dataset_name,
            dataset_config="default",
            dataset_split="test",
            metric_type=metric_type,
            metric_value=tuned[key],
            metric_name=name,
            metric_args=args,
        )
        for key, metric_type, args, name in EVAL_METRICS
        if dataset_repo_id
    ]
    return ModelCardData(
        license=LICENSE,
        library_name="transformers",
        pipeline_tag=TASK,
        tags=["tabular-classification", "music", "genre-classification", "spotify", "pytorch", "custom_code"],
        datasets=[dataset_repo_id] if dataset_repo_id else None,
        metrics=["accuracy", "f1", "roc_auc"],
        model_name=repo_id.split("/")[-1] if repo_id else "music-genre-ffn",
        eval_results=eval_results or None,
    )


def render_model_card(
    run: RunFolder, repo_id: str | None = None, dataset_repo_id: str | None = None, space_repo_id: str | None = None
) -> str:
    """The whole README.md: YAML front matter and the templated body."""
    return render_template("model_card.md", **card_values(run, repo_id, dataset_repo_id, space_repo_id))


def render_reports(
    run: RunFolder, repo_id: str | None = None, dataset_repo_id: str | None = None, space_repo_id: str | None = None
) -> dict[str, str]:
    """The card's long tables, by file name in `reports/`: the training data, preprocessing and search
    (`training.md`), per-genre figures, plots, calibration, genre sets and importance (`evaluation.md`)."""
    values = card_values(run, repo_id, dataset_repo_id, space_repo_id)
    return {f"{name}.md": render_template(f"report_{name}.md", **values) for name in REPORTS}


def card_values(
    run: RunFolder, repo_id: str | None = None, dataset_repo_id: str | None = None, space_repo_id: str | None = None
) -> dict:
    """Everything the card and its reports say, from the run: the templates only lay it out."""
    run = dataclasses.replace(run, data_report=published_data_report(run.data_report, run_genres(run)))
    metrics, report = run.metrics, run.data_report
    data = card_data(run, repo_id, dataset_repo_id)
    return dict(
        card_data=data.to_yaml(),
        model_name=data.model_name,
        license=LICENSE,
        model_ref=repo_id or "path/to/this/folder",
        repo_id=repo_id,
        dataset_repo_id=(data.datasets or [None])[0],
        space_repo_id=space_repo_id,
        paper_source=PAPER_SOURCE,
        source_name=public_name(report["source"]),
        command=without_machine_paths(run.training_run["command"]),
        evaluation=metrics.get("evaluation"),
        compute=metrics.get("compute"),
        software=metrics.get("software"),
        task=TASK,
        genres=run_genres(run),
        genre_selection=run.training_run.get("genre_selection"),
        label_column=run.training_run.get("label_column"),
        example_row=_python_dict(EXAMPLE_ROW),
        misread=_share(1 - metrics["tuned"]["accuracy"], 1),
        tuned={key: _metric(metrics["tuned"][key]) for key in SUMMARY_METRICS},
        run=run.training_run,
        report=report,
        dropped=[(reason, n) for reason, n in report["rows_dropped"].items() if reason != "total" and n],
        missing=[(name, n) for name, n in report["missing_values"].items() if n],
        shared_examples=report["pairs_under_several_genres_examples"],
        shared_pairs=[(f"{a} / {b}", n) for (a, b), n in shared_genre_pairs(report).items() if n],
        preprocessing=_preprocessing(run.preprocessor),
        architecture=_architecture(run),
        search=_search(run),
        results=_results_rows(metrics),
        unseen=_unseen_songs(metrics),
        per_genre=_per_genre_rows(metrics["tuned"], run_genres(run)),
        figures=[
            (name, _caption(name, run.preprocessor)) for name in _figure_order(run.figures) if name not in TRUST_FIGURES
        ],
        trust=_trust(run),
        limitations=_limitations(run),
        kaggle_dataset=KAGGLE_DATASET,
        kaggle_url=KAGGLE_URL,
        paper=metrics["paper"],
    )


def published_data_report(report: dict, genres: list[str]) -> dict:
    """The run's data report as a model repo ships it: the list of songs filed under several genres becomes the
    count per genre pair (`genre_pairs_sharing_songs`, most shared first) and a few examples. A report already in
    this form is returned as it is."""
    if SHARED_LIST not in report:
        return report
    position = {genre: i for i, genre in enumerate(genres)}
    counts = Counter()
    for entry in report[SHARED_LIST]:
        known = sorted((genre for genre in entry["genres"] if genre in position), key=position.get)
        counts.update(combinations(known, 2))
    ranked = sorted(counts.items(), key=lambda item: (-item[1], position[item[0][0]], position[item[0][1]]))
    published = {key: value for key, value in report.items() if key != SHARED_LIST}
    published["genre_pairs_sharing_songs"] = [{"genres": list(pair), "pairs": n} for pair, n in ranked]
    published["pairs_under_several_genres_examples"] = report[SHARED_LIST][:SHARED_EXAMPLES]
    return published


def shared_genre_pairs(published_report: dict) -> dict[tuple[str, str], int]:
    """(genre, genre) -> songs filed under both, from a published data report, most shared first."""
    return {tuple(entry["genres"]): entry["pairs"] for entry in published_report["genre_pairs_sharing_songs"]}


class PublishedRun(RunFolder):
    """A run as its staged model repo holds it: the model files at the top, the run's records in `reports/`."""

    @property
    def model_dir(self) -> Path:
        return self.path


def write_run_records(run: RunFolder, folder: Path) -> None:
    """The run's records the card is rendered from, into a model repo's `reports/`: `metrics.json` and
    `trials.csv` as the run wrote them, `data_report.json` in its published form."""
    reports = folder / REPORTS_DIR
    reports.mkdir(parents=True, exist_ok=True)
    for name in (METRICS, TRIALS):
        shutil.copyfile(run.path / name, reports / name)
    write_json_atomic(reports / DATA_REPORT, published_data_report(run.data_report, run_genres(run)))


def read_model_repo(folder: str | Path) -> PublishedRun:
    """Read a staged model repo (or the bundled `space/model/`) as the run it ships: its `reports/` records, its
    config, preprocessor config, `training_run.json` and figures. A missing file raises `FileNotFoundError`."""
    import pandas as pd

    folder = Path(folder)
    reports = folder / REPORTS_DIR
    needed = [reports / METRICS, reports / TRIALS, reports / DATA_REPORT] + [
        folder / name for name in (RUN_INFO, "config.json", "preprocessor_config.json", "model.safetensors")
    ]
    missing = [str(path.relative_to(folder)) for path in needed if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"model repo {folder} lacks {', '.join(missing)} (stage it from a run with push)")
    figures = folder / FIGURES_DIR
    return PublishedRun(
        path=folder,
        metrics=json.loads((reports / METRICS).read_text()),
        trials=pd.read_csv(reports / TRIALS),
        data_report=json.loads((reports / DATA_REPORT).read_text()),
        training_run=json.loads((folder / RUN_INFO).read_text()),
        config=json.loads((folder / "config.json").read_text()),
        preprocessor=json.loads((folder / "preprocessor_config.json").read_text()),
        figures=sorted(path.name for path in figures.glob("*.png")) if figures.is_dir() else [],
    )


def model_repo_pages(
    folder: str | Path, repo_id: str | None, dataset_repo_id: str | None = None, space_repo_id: str | None = None
) -> dict[str, str]:
    """A model repo's card and reports rendered from the records it ships, by path in the repo: `README.md` (as
    `ModelCard.save` writes it) and `reports/*.md`."""
    run = read_model_repo(folder)
    card = ModelCard(render_model_card(run, repo_id, dataset_repo_id, space_repo_id))
    reports = render_reports(run, repo_id, dataset_repo_id, space_repo_id)
    return {"README.md": str(card), **{f"{REPORTS_DIR}/{name}": text for name, text in reports.items()}}


def write_model_repo_card(
    folder: str | Path, repo_id: str | None, dataset_repo_id: str | None = None, space_repo_id: str | None = None
) -> None:
    """Render a model repo's card (README.md) and reports (reports/*.md) from the records it ships."""
    for name, text in model_repo_pages(folder, repo_id, dataset_repo_id, space_repo_id).items():
        write_bytes_atomic(Path(folder) / name, text.encode("utf-8"))


def render_template(name: str, **values) -> str:
    """Render one of this package's Jinja templates; an undefined name is an error, not a blank."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # Markdown, not HTML
    )
    environment.filters["num"] = _number
    environment.filters["setting"] = _setting
    environment.filters["metric"] = _metric
    environment.filters["duration"] = _duration
    return environment.get_template(name).render(**values)


def _python_dict(row: dict) -> str:
    """`row` as the card's Python code shows it: one key per line, with the trailing comma a formatter adds."""
    return json.dumps(row, indent=4).removesuffix("\n}") + ",\n}"


# One raw row in the public CSV's format: `?` tempo and a pitch-name key, as a user would paste it.
EXAMPLE_ROW = {
    "popularity": 45,
    "acousticness": 0.02,
    "danceability": 0.6,
    "duration_ms": 215000,
    "energy": 0.8,
    "instrumentalness": 0.0,
    "key": "C#",
    "liveness": 0.1,
    "loudness": -5.2,
    "mode": "Major",
    "speechiness": 0.05,
    "tempo": "?",
    "valence": 0.5,
}


def _preprocessing(preprocessor: dict) -> dict:
    numeric = [name for name in FEATURE_NAMES if name not in ("key", "mode")]
    encoding = preprocessor["numeric_encoding"]
    views = encoding.split("+")
    # The log transform applies only where the encoding has the paper's "log-standard" view.
    log_features = (preprocessor.get("log_features") or {}) if "log-standard" in views else {}

    def transform(name: str) -> str:
        steps = []
        if "quantile-normal" in views:
            steps.append("training quantiles to a standard normal")
        if "log-standard" in views:
            steps.append(f"log(x + {_setting(log_features[name])})" if name in log_features else "as is")
        return "; ".join(steps) if steps != ["as is"] else "-"

    rows = [
        [
            name,
            _number(preprocessor["medians"][name]),
            _number(preprocessor["clip_low"][name]),
            _number(preprocessor["clip_high"][name]),
            transform(name),
        ]
        for name in numeric
    ]
    return {
        "encoding": encoding,
        "views": views,
        "numeric_columns": len(views) * len(numeric),
        "log_features": log_features,
        "clip_quantiles": preprocessor["clip_quantiles"],
        "n_quantiles": preprocessor.get("n_quantiles"),
        "key_fill": preprocessor["key_fill"],
        "mode_fill": preprocessor["mode_fill"],
        "rows": rows,
    }


def _architecture(run: RunFolder) -> dict:
    config = run.config
    with safe_open(run.model_dir / "model.safetensors", framework="numpy") as weights:
        parameters = sum(int(np.prod(weights.get_slice(name).get_shape())) for name in weights.keys())
    return {
        "input_size": config["input_size"],
        "hidden_sizes": config["hidden_sizes"],
        "dropout": config["dropout"],
        "num_members": config["num_members"],
        "ensemble": config.get("ensemble", "independent"),
        "numeric_embedding": config.get("numeric_embedding"),
        "embedding_size": config.get("embedding_size"),
        "embedding_bins": max((len(edges) - 1 for edges in config.get("embedding_bins") or []), default=0),
        "label_smoothing": config["label_smoothing"],
        "inference_dtype": config["inference_dtype"],
        "class_weights": config["class_weights"],
        "num_labels": len(config["id2label"]),
        "parameters": parameters,
    }


def _search(run: RunFolder) -> dict:
    trials = run.trials
    states = trials["state"].value_counts().to_dict() if "state" in trials else {}
    complete = trials[trials["state"] == "COMPLETE"] if "state" in trials else trials
    best = complete.loc[complete["value"].idxmax()] if len(complete) and complete["value"].notna().any() else None
    space = []
    for column in (c for c in trials.columns if c.startswith("params_")):
        values = trials[column].dropna()
        if values.empty:
            continue
        if pd.api.types.is_numeric_dtype(values) and values.nunique() > 4:
            tried = f"{_number(values.min())} to {_number(values.max())}"
        else:
            tried = ", ".join(_number(v) for v in sorted(values.unique()))
        space.append([column.removeprefix("params_"), tried])
    search = run.metrics["search"]
    return {
        "n_trials": len(trials),
        "requested": search["n_trials"],
        "objective": search["objective"],
        "complete": int(states.get("COMPLETE", 0)),
        "pruned": int(states.get("PRUNED", 0)),
        "other": {state: int(n) for state, n in states.items() if state not in ("COMPLETE", "PRUNED")},
        "best_number": int(best["number"]) if best is not None else None,
        "best_value": float(best["value"]) if best is not None else None,
        "chosen_number": search.get("chosen_trial"),
        "reevaluation": search.get("reevaluation"),
        "space": space,
        "hyperparameters": _side_by_side(
            run.metrics["initial"]["hyperparameters"], run.metrics["best_hyperparameters"]
        ),
    }


def _unseen_songs(metrics: dict) -> dict | None:
    """The test rows whose song no training or validation row holds: how many, and both models' figures on them
    (None for a run that did not record them, or a table without song names)."""
    tuned = metrics["tuned"].get("unseen_songs")
    if not tuned or not tuned["rows"]:
        return None
    initial = metrics["initial"].get("unseen_songs") or {}
    return {
        "rows": tuned["rows"],
        "share": _share(tuned["rows"], metrics["tuned"]["rows"]) if "rows" in metrics["tuned"] else None,
        "tuned": {key: _metric(tuned[key]) for key in SUMMARY_METRICS},
        "initial": {key: _metric(initial[key]) for key in SUMMARY_METRICS if key in initial},
    }


def _side_by_side(initial: dict, tuned: dict) -> list[list[str]]:
    """[name, initial, tuned] per hyperparameter of either, "-" where one lacks it."""
    names = list(initial) + [name for name in tuned if name not in initial]
    return [
        [name, *(_setting(values[name]) if name in values else "-" for values in (initial, tuned))] for name in names
    ]


def _results_rows(metrics: dict) -> list[list[str]]:
    paper = metrics["paper"]
    rows = []
    for key, name in SUMMARY_METRICS.items():
        cells = [_metric(metrics[stage][key]) for stage in ("initial", "tuned")]
        cells += [_metric(paper[stage][key]) if key in paper[stage] else "-" for stage in ("initial", "tuned")]
        rows.append([name, *cells])
    return rows


def _per_genre_rows(figures: dict, genres: list[str]) -> list[list[str]]:
    per_genre = figures["per_genre"]
    return [
        [
            genre,
            *(_metric(per_genre[genre][k]) for k in ("precision", "recall", "f1")),
            str(int(per_genre[genre]["support"])),
        ]
        for genre in genres
    ]


def _trust(run: RunFolder) -> dict:
    """What the card says about trusting a prediction, from `metrics.json` (calibration, conformal sets, permutation
    importance) and the config (how many validation rows calibrated the sets); each part None where not recorded."""
    metrics = run.metrics
    calibration = metrics.get("calibration")
    if calibration:
        calibration = {
            "temperature": f"{calibration['temperature']:.4f}",
            "rows": [
                [stage, *(_metric(calibration[stage][key]) for key in ("ece", "nll", "brier"))]
                for stage in ("before", "after")
            ],
        }
    conformal = metrics.get("conformal")
    if conformal:
        stored = run.config.get("conformal") or {}
        levels = []
        for level, figures in conformal.items():
            per_genre = figures["per_genre_coverage"]
            lowest = min(per_genre, key=per_genre.get)
            levels.append(
                {
                    "level": level,
                    "coverage": _metric(figures["coverage"]),
                    "mean_set_size": f"{figures['mean_set_size']:.2f}",
                    "lowest": f"{per_genre[lowest]:.3f} ({lowest})",
                }
            )
        summary = conformal.get(SUMMARY_COVERAGE) or next(iter(conformal.values()))
        level = SUMMARY_COVERAGE if SUMMARY_COVERAGE in conformal else next(iter(conformal))
        conformal = {
            "levels": levels,
            "summary_level": level,
            "summary_percent": f"{float(level):.0%}",
            "summary_coverage": _metric(summary["coverage"]),
            "summary_set_size": f"{summary['mean_set_size']:.2f}",
            "per_genre": [
                [genre, f"{summary['per_genre_coverage'][genre]:.3f}"] for genre in summary["per_genre_coverage"]
            ],
            "n_calibration": stored["n_calibration"],
            "method": stored["method"],
        }
    importance = metrics.get("permutation_importance")
    if importance:
        ranked = sorted(importance["features"].items(), key=lambda item: -item[1]["mean"])
        importance = {
            "n_repeats": importance["n_repeats"],
            "scoring": importance["scoring"],
            "rows": [[name, _metric(value["mean"]), _metric(value["std"])] for name, value in ranked],
        }
    figure = {name: (name, FIGURES[name]) if name in run.figures else None for name in TRUST_FIGURES}
    return {
        "calibration": calibration,
        "conformal": conformal,
        "importance": importance,
        "reliability_figure": figure["reliability_diagram.png"],
        "importance_figure": figure["permutation_importance.png"],
    }


def _caption(name: str, preprocessor: dict) -> str:
    caption = FIGURES.get(name, name)
    if name == "log_transform.png":
        # The figure shows the extractor's own transform, which is a log only under the paper's encoding.
        rule = "log transform" if "log-standard" in preprocessor["numeric_encoding"] else "quantile-normal map"
        caption = caption.replace("the feature extractor's transform", f"the feature extractor's {rule}")
    return caption


def _figure_order(present: list[str]) -> list[str]:
    return [name for name in FIGURES if name in present] + [name for name in present if name not in FIGURES]


def _limitations(run: RunFolder) -> dict:
    """Numbers behind the card's limitations: pairs filed under two look-alike genres, and test confusions."""
    genres = run_genres(run)
    position = {genre: i for i, genre in enumerate(genres)}
    shared = {pair: 0 for pair in combinations(genres, 2)}
    shared.update(shared_genre_pairs(run.data_report))
    matrix = np.asarray(run.metrics["tuned"]["confusion_matrix"])
    lookalikes = []
    # The genre pairs filing the most songs under both: the data's own look-alikes, most shared first.
    for (a, b), count in sorted(shared.items(), key=lambda item: -item[1])[:LOOKALIKE_PAIRS]:
        if not count:
            break
        i, j = position[a], position[b]
        lookalikes.append(
            {
                "genres": f"{a} / {b}",
                "shared_pairs": count,
                "a_as_b": _share(matrix[i, j], matrix[i].sum()),
                "b_as_a": _share(matrix[j, i], matrix[j].sum()),
            }
        )
    # The test split's largest off-diagonal cells: what the model confuses most.
    off = matrix.astype(float).copy()
    np.fill_diagonal(off, -1)
    top = np.dstack(np.unravel_index(np.argsort(off, axis=None)[::-1][:3], off.shape))[0]
    confusions = [
        {
            "true": genres[i],
            "predicted": genres[j],
            "rows": int(matrix[i, j]),
            "share": _share(matrix[i, j], matrix[i].sum()),
        }
        for i, j in top
        if matrix[i, j] > 0
    ]
    return {
        "pairs": run.data_report["pairs_under_several_genres"],
        "distinct_pairs": run.data_report.get("distinct_artist_track_pairs"),
        "lookalikes": lookalikes,
        "confusions": confusions,
    }


def _share(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def _number(value) -> str:
    """Metrics with four decimals, large numbers whole, tiny ones in three significant digits."""
    if isinstance(value, bool) or not isinstance(value, (float, np.floating)):
        return str(value)
    value = float(value)
    if value.is_integer():
        return str(int(value))
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4f}" if abs(value) >= 1e-3 else f"{value:.3g}"


def _metric(value: float) -> str:
    """A test metric: always four decimals, so tables line up and 0 reads as a score."""
    return f"{float(value):.4f}"


def _duration(seconds: float) -> str:
    """Seconds as the card reads them: 1 h 02 min, 4 min 16 s, 12.3 s."""
    seconds = float(seconds)
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{seconds:.1f} s"


def _setting(value) -> str:
    """A hyperparameter or offset as one would type it (0.001, 1e-06, 0.2)."""
    return f"{value:g}" if isinstance(value, float) else str(value)
