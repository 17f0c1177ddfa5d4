"""What caps the quality table: how far any model of the 13 features can go on this data, measured.

    python -m bench.ceiling                      # reads bench/quality.json and bench/output/predictions/
    python -m bench.ceiling --models network tabm autogluon-medium catboost

Measured (`measure`, written into `quality.json` as `meta.ceiling`, then `quality.md` rendered again from that file,
with this section by `render`):

- duplicates: rows whose 13 features are identical to another row's filed under another genre (the same track under
  two genres), and the highest accuracy any function of the features can reach on the whole table (each group of
  identical features answered with its most common genre);
- per split, from the saved test probabilities of the chosen models (`bench.quality --predictions-dir`): each model's
  accuracy, its accuracy with Rap and Hip-Hop merged into one genre, its recall per genre, the genre pairs it
  confuses most; how often the models agree on a row, their accuracy where they agree and where they do not, and how
  often at least one of them is right;
- on stratified splits, how many test rows share their artist and track with a training or validation row, and how
  many of those with one filed under another genre.

Nothing is trained here: the figures come from the predictions the quality benchmark saved.
"""

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from bench.common import BENCH, log
from bench.quality import GENRES, MODEL_NAMES, _write, predictions_file
from music_genre.modeling import FEATURE_NAMES
from music_genre.training.data import GROUP_COLUMNS, GenreData, load_data, split_indices, unseen_test_rows

MERGED = ("Rap", "Hip-Hop")
DEFAULT_MODELS = ("network", "tabm", "autogluon-medium", "autogluon-best", "catboost", "lightgbm")


def duplicate_ceiling(data: GenreData) -> dict:
    """Rows whose 13 features repeat under another genre, and the best accuracy any function of the features can
    reach on all rows: each group of identical feature vectors answered with its most common genre."""
    features = data.frame[list(FEATURE_NAMES)]
    groups = features.groupby(list(FEATURE_NAMES), sort=False, dropna=False).ngroup().to_numpy()
    counts = np.zeros((groups.max() + 1, len(GENRES)), dtype=np.int64)
    np.add.at(counts, (groups, data.labels), 1)
    several = (counts > 0).sum(axis=1) > 1
    return {
        "rows": len(groups),
        "rows_with_a_twin_under_another_genre": int(counts[several].sum()),
        "feature_groups_under_several_genres": int(several.sum()),
        "best_possible_accuracy": float(counts.max(axis=1).sum() / len(groups)),
    }


def seen_tracks(data: GenreData, split: dict[str, np.ndarray]) -> dict:
    """How many test rows share their artist and track with a training or validation row, and with one of another
    genre (a model can learn to name "the other genre" of a track it has seen)."""
    pairs = data.frame.groupby(list(GROUP_COLUMNS), sort=False).ngroup().to_numpy()
    fitted = np.concatenate([split["train"], split["validation"]])
    seen = np.isin(pairs[split["test"]], pairs[fitted])
    genres_of = {}
    for pair, label in zip(pairs[fitted], data.labels[fitted]):
        genres_of.setdefault(pair, set()).add(label)
    other = [
        pair in genres_of and bool(genres_of[pair] - {label})
        for pair, label in zip(pairs[split["test"]], data.labels[split["test"]])
    ]
    return {"test_rows": len(split["test"]), "seen_track": int(seen.sum()), "seen_under_another_genre": int(sum(other))}


def model_figures(labels: np.ndarray, predicted: np.ndarray) -> dict:
    merged = [GENRES.index(name) for name in MERGED]

    def merge(values: np.ndarray) -> np.ndarray:
        return np.where(np.isin(values, merged), merged[0], values)

    confusion = np.zeros((len(GENRES), len(GENRES)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted), 1)
    pairs = sorted(
        ((confusion[a, b] + confusion[b, a], GENRES[a], GENRES[b]) for a, b in itertools.combinations(range(10), 2)),
        reverse=True,
    )
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "accuracy_rap_hiphop_merged": float(np.mean(merge(predicted) == merge(labels))),
        "recall_per_genre": {genre: float(confusion[i, i] / confusion[i].sum()) for i, genre in enumerate(GENRES)},
        "most_confused_pairs": [
            {"genres": [a, b], "errors": int(n), "share_of_errors": float(n / max(1, (predicted != labels).sum()))}
            for n, a, b in pairs[:3]
        ],
    }


def measure(data: GenreData, predictions_dir: Path, models: list[str], splits: list[tuple[str, int]]) -> dict:
    """The ceiling figures (see the module's docstring) on each split for which every model's predictions exist."""
    per_split = []
    for mode, seed in splits:
        files = {model: predictions_file(predictions_dir, MODEL_NAMES[model], mode, seed) for model in models}
        if not all(path.is_file() for path in files.values()):
            continue
        split = split_indices(data, seed, mode)
        labels = data.labels[split["test"]]
        predicted = {}
        for model, path in files.items():
            saved = np.load(path)
            if not np.array_equal(saved["test_rows"], split["test"]):
                raise ValueError(f"{path}: its test rows are not those of the {mode} split of seed {seed}")
            predicted[model] = saved["probabilities"].argmax(axis=1)
        stacked = np.stack(list(predicted.values()))
        agree = (stacked == stacked[0]).all(axis=0)
        entry = {
            "mode": mode,
            "seed": seed,
            "models": {model: model_figures(labels, predicted[model]) for model in models},
            "all_agree": float(agree.mean()),
            "accuracy_where_all_agree": float(np.mean(stacked[0][agree] == labels[agree])),
            "best_accuracy_where_they_differ": float(
                max(np.mean(p[~agree] == labels[~agree]) for p in stacked) if (~agree).any() else float("nan")
            ),
            "any_model_right": float((stacked == labels).any(axis=0).mean()),
        }
        if mode == "stratified":
            entry["tracks"] = seen_tracks(data, split)
            seen = ~unseen_test_rows(data, split)
            for model in models:  # right on a track training files under another genre: it names the other one
                entry["models"][model]["accuracy_on_seen_tracks"] = float(
                    np.mean(predicted[model][seen] == labels[seen])
                )
        per_split.append(entry)
        log(f"{mode} seed {seed}: all {len(models)} models agree on {entry['all_agree']:.3f} of the test rows")
    return {"models": models, "duplicates": duplicate_ceiling(data), "splits": per_split}


def _mean(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.4f}"


def render(ceiling: dict) -> list[str]:
    """The section of `quality.md` that shows what caps the table, from `measure`'s payload alone."""
    duplicates, splits = ceiling["duplicates"], ceiling["splits"]
    lines = [
        "",
        "## What caps the table",
        "",
        f"- {duplicates['rows_with_a_twin_under_another_genre']} of {duplicates['rows']} rows have identical 13 "
        f"features to a row filed under another genre ({duplicates['feature_groups_under_several_genres']} groups); "
        f"no function of the features can be right on all of them: the best accuracy possible on the whole table is "
        f"{duplicates['best_possible_accuracy']:.4f}",
    ]
    if not splits:
        return [*lines, "- No split has every chosen model's saved predictions: nothing more measured", ""]
    for mode in dict.fromkeys(entry["mode"] for entry in splits):
        entries = [entry for entry in splits if entry["mode"] == mode]
        names = ", ".join(ceiling["models"])
        lines += [
            f"- {mode}, {len(entries)} split(s), models {names}: all agree on "
            f"{_mean([e['all_agree'] for e in entries])} of the test rows, with accuracy "
            f"{_mean([e['accuracy_where_all_agree'] for e in entries])} there; where they differ the best of them is "
            f"right on {_mean([e['best_accuracy_where_they_differ'] for e in entries])}; at least one is right on "
            f"{_mean([e['any_model_right'] for e in entries])} of all rows",
        ]
        tracks = [e["tracks"] for e in entries if "tracks" in e]
        if tracks:
            lines.append(
                f"- {mode}: share of test rows whose artist and track are in training or validation: "
                f"{_mean([t['seen_track'] / t['test_rows'] for t in tracks])}; under another genre there: "
                f"{_mean([t['seen_under_another_genre'] / t['test_rows'] for t in tracks])}. Accuracy on those rows: "
                + ", ".join(
                    f"{MODEL_NAMES[model]} {_mean([e['models'][model]['accuracy_on_seen_tracks'] for e in entries])}"
                    for model in ceiling["models"]
                )
            )
        lines += [
            "",
            f"{mode}: accuracy as scored, and with {MERGED[0]} and {MERGED[1]} merged into one genre; the recall of "
            "the hardest genres; the pair of genres most confused (share of the model's errors)",
            "",
            "| model | accuracy | Rap + Hip-Hop merged | recall: " + " | recall: ".join(_hardest(entries)) + " | most "
            "confused pair |",
            "|---|---|---|" + "---|" * (len(_hardest(entries)) + 1),
        ]
        for model in ceiling["models"]:
            figures = [e["models"][model] for e in entries]
            pair = figures[0]["most_confused_pairs"][0]
            lines.append(
                f"| {MODEL_NAMES[model]} | {_mean([f['accuracy'] for f in figures])} | "
                f"{_mean([f['accuracy_rap_hiphop_merged'] for f in figures])} | "
                + " | ".join(_mean([f["recall_per_genre"][g] for f in figures]) for g in _hardest(entries))
                + f" | {pair['genres'][0]} / {pair['genres'][1]} ({pair['share_of_errors']:.2f}) |"
            )
        lines.append("")
    return lines


def _hardest(entries: list[dict], n: int = 4) -> list[str]:
    """The genres with the lowest recall, averaged over the models and splits."""
    recall = {
        genre: np.mean([m["recall_per_genre"][genre] for e in entries for m in e["models"].values()])
        for genre in GENRES
    }
    return sorted(recall, key=recall.get)[:n]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ceiling", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quality", type=Path, default=BENCH / "quality.json", help="the quality.json to add to")
    parser.add_argument("--predictions-dir", type=Path, default=BENCH / "output" / "predictions")
    parser.add_argument("--models", nargs="+", choices=list(MODEL_NAMES), default=list(DEFAULT_MODELS))
    parser.add_argument("--data", default=None, help="the CSV (default: MUSIC_GENRE_CSV or ../shared/data)")
    args = parser.parse_args(argv)
    payload = json.loads(args.quality.read_text())
    data = load_data(args.data)
    if data.sha256 != payload["meta"]["data_sha256"]:
        parser.error(f"{args.quality} was measured on other data than {args.data or 'the default CSV'}")
    meta = payload["meta"]
    splits = [(mode, seed) for seed in meta["seeds"] for mode in meta["modes"]]
    meta["ceiling"] = measure(data, args.predictions_dir, args.models, splits)
    print("\n".join(render(meta["ceiling"])))
    _write(args.quality.parent, meta, payload["results"], meta["modes"])


if __name__ == "__main__":
    main()
