"""`music-genre train` on a table the shape of the Hub's "Spotify Tracks Dataset": 114 genres of 1,000 tracks each
(114,000 rows), in that table's layout. Reports the wall clock, the CPU time and the peak resident memory of the
whole process tree (the command and its search workers), and what the run reached.

The table is made from the real CSV's rows (never kept in the repo: it is written under bench/output/, git-ignored).
Each of the 10 genres is cut into 11 or 12 labels (4 x 12 + 6 x 11 = 114) by the quantiles of its rows' popularity,
so a label is a genre and a popularity band (learnable, as a genre of that table is, though not songs of that
table); each label gets 1,000 rows drawn with replacement from its band. The layout is the Hub table's: a leading
unnamed index, `track_id`, `artists`, `album_name`, `track_name`, `explicit`, `time_signature`, `key` as a
pitch-class integer, `mode` as 1/0 and the label in `track_genre`, in lower case.

    python -m bench.many_genres                              # train with its defaults (one search worker)
    python -m bench.many_genres --train-args "--workers 2"   # any extra flags of `music-genre train`
    python -m bench.many_genres --render-only                # bench/many_genres.md again from its result.json

Writes `bench/many_genres.md` (or `--output`).
"""

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from bench.common import BENCH, load_average, machine, read_raw_rows
from bench.predict import run_measured

OUTPUT = BENCH / "many_genres.md"
FOLDER = BENCH / "output" / "many_genres"
GENRES_OF_TABLE = 114
ROWS_PER_GENRE = 1_000
TARGET_PEAK_GB = 2.0


def make_table(path: Path, seed: int = 0) -> dict[str, int]:
    """The 114-label table at `path` (CSV); returns the rows per label."""
    import pandas as pd

    from music_genre.modeling import KEY_NAMES

    rng = np.random.default_rng(seed)
    rows = read_raw_rows().dropna(subset=["music_genre", "key", "mode"]).reset_index(drop=True)
    genres = sorted(rows["music_genre"].unique())
    per_genre = [GENRES_OF_TABLE // len(genres) + (i < GENRES_OF_TABLE % len(genres)) for i in range(len(genres))]
    parts = []
    for genre, bands in zip(genres, per_genre, strict=True):
        own = rows[rows["music_genre"] == genre]
        band = pd.qcut(own["popularity"].rank(method="first"), bands, labels=False)
        for b in range(bands):
            drawn = own[band == b].sample(ROWS_PER_GENRE, replace=True, random_state=int(rng.integers(2**31)))
            parts.append(drawn.assign(track_genre=f"{genre.lower()}-{b + 1}"))
    table = pd.concat(parts).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n = len(table)
    spotify = pd.DataFrame(
        {
            "track_id": [f"{i:022x}" for i in rng.integers(0, 2**62, n)],
            "artists": table["artist_name"],
            "album_name": "album " + table["track_name"].astype(str),
            "track_name": table["track_name"],
            "popularity": table["popularity"],
            "duration_ms": table["duration_ms"],
            "explicit": rng.random(n) < 0.2,
            "danceability": table["danceability"],
            "energy": table["energy"],
            "key": table["key"].map(KEY_NAMES.index).astype(int),
            "loudness": table["loudness"],
            "mode": (table["mode"] == "Major").astype(int),
            "speechiness": table["speechiness"],
            "acousticness": table["acousticness"],
            "instrumentalness": table["instrumentalness"],
            "liveness": table["liveness"],
            "valence": table["valence"],
            "tempo": pd.to_numeric(table["tempo"], errors="coerce"),
            "time_signature": 4,
            "track_genre": table["track_genre"],
        }
    )
    spotify.to_csv(path)  # the leading unnamed index, as the Hub table has it
    return spotify["track_genre"].value_counts().to_dict()


def run_train(data: Path, run: Path, extra: list[str]) -> dict:
    """`music-genre train --data DATA --output RUN [extra]` in a fresh process; wall clock, CPU time of the tree and
    the peak of the tree's summed resident memory (sampled every 0.5 s)."""
    command = [sys.executable, "-m", "music_genre", "train", "--data", str(data), "--output", str(run), *extra]
    result = run_measured(command, interval=0.5)
    if result["returncode"] != 0:
        raise SystemExit(f"train exited with {result['returncode']}:\n{result['stderr'][-3000:]}")
    return {key: result[key] for key in ("wall_s", "cpu_s", "peak_mb", "peak_pss_mb", "processes")}


def run_outcome(run: Path) -> dict:
    """What the run reached, from its metrics.json and trials.csv."""
    import pandas as pd

    metrics = json.loads((run / "metrics.json").read_text())
    trials = pd.read_csv(run / "trials.csv")
    return {
        "genres": len(metrics["tuned"]["per_genre"]),
        "initial": {k: metrics["initial"][k] for k in ("accuracy", "f1_weighted", "roc_auc_macro")},
        "tuned": {k: metrics["tuned"][k] for k in ("accuracy", "f1_weighted", "roc_auc_macro")},
        "trials": trials["state"].value_counts().to_dict(),
        "hyperparameters": metrics["best_hyperparameters"],
        "compute": metrics["compute"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-args", default="", help="extra flags of `music-genre train` (default: none)")
    parser.add_argument("--folder", type=Path, default=FOLDER, help="the table and the run (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the report (default: %(default)s)")
    parser.add_argument("--render-only", action="store_true", help="render the report again from result.json")
    args = parser.parse_args(argv)
    if args.render_only:
        args.output.write_text(render(json.loads((args.folder / "result.json").read_text())))
        return
    args.folder.mkdir(parents=True, exist_ok=True)
    data, run = args.folder / "spotify_114_genres.csv", args.folder / "run"
    counts = make_table(data)
    print(f"{data}: {sum(counts.values()):,} rows, {len(counts)} genres", flush=True)
    if run.exists():
        raise SystemExit(f"{run} exists: remove it (it is this benchmark's own output) or pass another --folder")
    extra = shlex.split(args.train_args)
    load_before = load_average()
    measured = run_train(data, run, extra)
    outcome = run_outcome(run)
    record = {"counts": counts, "measured": measured, "outcome": outcome, "train_args": extra,
              "load_before": load_before, "load_after": load_average(), "date": datetime.date.today().isoformat(),
              "machine": machine(), "cpus": os.cpu_count()}  # fmt: skip
    (args.folder / "result.json").write_text(json.dumps(record, indent=1))
    report = render(record)
    args.output.write_text(report)
    print(report)


def render(record: dict) -> str:
    m, o = record["measured"], record["outcome"]
    flags = " ".join(shlex.quote(a) for a in record["train_args"])
    peak_gb = m["peak_mb"] / 1024
    trials = ", ".join(f"{n} {state.lower()}" for state, n in o["trials"].items())
    lines = [
        f"# `music-genre train` on a {o['genres']}-genre, {sum(record['counts'].values()):,}-row table",
        "",
        f"Measured {record['date']} with `python -m bench.many_genres"
        + (f' --train-args "{flags}"' if flags else "")
        + "`: `music-genre train --data spotify_114_genres.csv --output run"
        + (f" {flags}" if flags else "")
        + f"` ({'its defaults' if not flags else 'its defaults but ' + flags}) on a table in the layout of the Hub's "
        "Spotify Tracks Dataset, made from the real rows (see the module's docstring: each genre cut into "
        f"popularity bands, {ROWS_PER_GENRE:,} rows per label). Machine: {record['machine']}, {record['cpus']} "
        f"cores; load average {record['load_before']} before, {record['load_after']} after.",
        "",
        "| wall clock | CPU time (all processes) | peak RSS, summed over the processes | peak PSS, summed |",
        "|---|---|---|---|",
        f"| {m['wall_s'] / 60:.1f} min | {m['cpu_s'] / 60:.1f} min | {m['peak_mb']:,.0f} MB ({m['processes']} "
        f"processes at most) | {m['peak_pss_mb']:,.0f} MB |",
        "",
        f"- Peak memory under {TARGET_PEAK_GB:g} GB: {peak_gb:.2f} GB RSS summed (each process's shared pages counted "
        "in full): **"
        + ("met" if peak_gb < TARGET_PEAK_GB else "not met")
        + f"**; {m['peak_pss_mb'] / 1024:.2f} GB PSS summed (shared pages counted once): **"
        + ("met" if m["peak_pss_mb"] / 1024 < TARGET_PEAK_GB else "not met")
        + "**.",
        f"- The search: {trials}, {o['compute']['search_seconds'] / 60:.1f} min (with the re-evaluation of its top "
        f"trials); the final model {o['compute']['final_training_seconds'] / 60:.1f} min; its configuration "
        f"`{json.dumps(o['hyperparameters'])}`.",
        f"- Test figures (the run's own test split): initial {o['initial']['accuracy']:.4f} accuracy / "
        f"{o['initial']['roc_auc_macro']:.4f} macro AUC, tuned {o['tuned']['accuracy']:.4f} / "
        f"{o['tuned']['roc_auc_macro']:.4f}. The labels are genre and popularity band, so these say the run "
        "works at this size, not how well a model tells the Hub table's genres apart.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
