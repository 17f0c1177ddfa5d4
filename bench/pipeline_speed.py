"""Rows/second of the pipeline on a large table, with the garbage collector on as in a user's process, for one or
more model folders side by side (e.g. the same weights under two versions of the remote code).

Each folder is measured in fresh subprocesses (one torch thread), which build the table by sampling the real CSV
with replacement (seed 0; never written anywhere), load `pipeline(model=FOLDER, trust_remote_code=True)` and time
whole calls on it: the default top_k (the most probable genre), `top_k=None` (every genre) and `coverage=0.9`
(conformal sets), each returning one list per row. The folders' subprocesses alternate, `--rounds` times, and each
figure is the best of all its calls (CPU time of the process, and wall clock). Also counted: the garbage
collector's full (generation 2) collections during a call, and whether collection was on after it.

`--pipeline-of REV` measures space/model's weights and code with the pipeline's files (pipeline_genre_ffn.py,
calibration_genre_ffn.py) of a git revision (`worktree`: the files in modeling/ now) instead, in a temporary copy:
the way to compare two versions of the pipeline alone.

    python -m bench.pipeline_speed                                       # space/model; bench/pipeline_speed.md
    python -m bench.pipeline_speed --pipeline-of 42f4f7f --pipeline-of worktree     # before and after a change
"""

import argparse
import datetime
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import BENCH, REPO, SPACE_MODEL, csv_path, load_average, log, machine, versions

OUTPUT = BENCH / "pipeline_speed.md"
# The remote-code files that make the pipeline's output, swapped in by --pipeline-of.
PIPELINE_FILES = ("pipeline_genre_ffn.py", "calibration_genre_ffn.py")
CALLS = {"default top_k": {}, "top_k=None": {"top_k": None}, "coverage=0.9": {"coverage": 0.9}}

CHILD = r"""
import gc, json, sys, time
import pandas as pd, torch
from transformers import pipeline
torch.set_num_threads(1)
rows, csv, model, repeats, calls = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
frame = pd.read_csv(csv).dropna(how="all").sample(rows, replace=True, random_state=0).reset_index(drop=True)
classifier = pipeline(model=model, trust_remote_code=True)
full_collections = 0
def count(phase, info):
    global full_collections
    full_collections += phase == "stop" and info["generation"] == 2
gc.callbacks.append(count)
measured = {}
for name, kwargs in calls.items():
    classifier(frame.head(100), **kwargs)  # warm-up
    runs = []
    for _ in range(repeats):
        full_collections = 0
        wall, cpu = time.perf_counter(), time.process_time()
        results = classifier(frame, **kwargs)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert len(results) == rows and all(results[r] for r in (0, rows - 1))
        runs.append({"wall_s": wall, "cpu_s": cpu, "full_collections": full_collections, "gc_on": gc.isenabled()})
        del results
        gc.collect()
    measured[name] = runs
print(json.dumps(measured))
"""


def measure(folder: Path, rows: int, repeats: int, csv: Path) -> dict[str, list[dict]]:
    """One fresh process's timed calls of the pipeline of `folder` on `rows` rows: per call, a list of runs."""
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1", TQDM_DISABLE="1")
    command = [sys.executable, "-c", CHILD, str(rows), str(csv), str(folder), str(repeats), json.dumps(CALLS)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {folder} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def best(runs: list[dict]) -> dict:
    """The fastest CPU time and wall clock of the runs (each the least disturbed by other jobs)."""
    return {
        "cpu_s": min(run["cpu_s"] for run in runs),
        "wall_s": min(run["wall_s"] for run in runs),
        "full_collections": max(run["full_collections"] for run in runs),
        "gc_on": all(run["gc_on"] for run in runs),
    }


def render(results: dict[str, dict[str, dict]], rows: int, command: str, loads: tuple[str, str]) -> str:
    """bench/pipeline_speed.md from the best figures of each model folder and call."""
    lines = [
        "# Pipeline speed on a large table",
        "",
        f"Measured {datetime.date.today().isoformat()} with `{command}`: {rows:,} rows sampled with replacement "
        "(seed 0) from the real CSV at run time, through `pipeline(model=FOLDER, trust_remote_code=True)`, whole "
        "calls on the DataFrame (the feature extractor, the network and the dicts returned), one torch thread, the "
        "garbage collector on; each figure is the best of its calls, the folders' processes alternating.",
        "",
        f"Machine: {machine()}; {versions('torch', 'transformers', 'pandas')}. Load average {loads[0]} at the start, "
        f"{loads[1]} at the end.",
        "",
        *(
            [
                f"`pipeline of REV`: space/model's weights and code with the files {', '.join(PIPELINE_FILES)} of git "
                "revision REV (`worktree`: modeling/ as it is), so that only the pipeline differs.",
                "",
            ]
            if any(label.startswith("pipeline of ") for label in results)
            else []
        ),
        "| model | call | rows/s (CPU) | rows/s (wall) | full GC collections per call | GC on after the call |",
        "|---|---|---|---|---|---|",
    ]
    for label, calls in results.items():
        for call, figures in calls.items():
            lines.append(
                f"| {label} | {call} | {rows / figures['cpu_s']:,.0f} | {rows / figures['wall_s']:,.0f} | "
                f"{figures['full_collections']} | {'yes' if figures['gc_on'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"


def with_pipeline_of(revision: str, into: Path) -> Path:
    """A copy of space/model in `into` whose PIPELINE_FILES are those of a git revision (`worktree`: modeling/ now);
    a file the revision lacks stays space/model's (its other files may import it)."""
    folder = into / f"model_{revision}"
    shutil.copytree(SPACE_MODEL, folder, ignore=shutil.ignore_patterns("figures"))
    for name in PIPELINE_FILES:
        if revision == "worktree":
            source = REPO / "modeling" / name
            if source.is_file():
                shutil.copy2(source, folder / name)
            continue
        shown = subprocess.run(
            ["git", "show", f"{revision}:modeling/{name}"], cwd=REPO, capture_output=True, check=False
        )
        if shown.returncode == 0:
            (folder / name).write_bytes(shown.stdout)
    return folder


def model_argument(text: str) -> tuple[str, Path]:
    label, _, folder = text.rpartition("=")
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise argparse.ArgumentTypeError(f"{folder} is not a model folder (no config.json)")
    return label or folder.name, folder


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_speed", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=model_argument, action="append", default=[], help="LABEL=FOLDER (repeatable)")
    parser.add_argument("--pipeline-of", action="append", default=[], help="git revision or worktree (repeatable)")
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--repeats", type=int, default=2, help="timed calls of each kind per process")
    parser.add_argument("--rounds", type=int, default=2, help="fresh processes per folder, alternating")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    copies = Path(tempfile.mkdtemp(prefix="pipeline-speed-"))
    models = args.model + [(f"pipeline of {rev}", with_pipeline_of(rev, copies)) for rev in args.pipeline_of]
    models = models or [("space/model", SPACE_MODEL)]
    start_load = load_average()
    runs: dict[str, dict[str, list]] = {label: {call: [] for call in CALLS} for label, _ in models}
    for round_ in range(args.rounds):
        for label, folder in models:
            log(f"round {round_ + 1}/{args.rounds}: {label}")
            for call, measured in measure(folder, args.rows, args.repeats, csv_path()).items():
                runs[label][call] += measured
    shutil.rmtree(copies)
    results = {label: {call: best(calls[call]) for call in CALLS} for label, calls in runs.items()}
    command = shlex.join(["python", "-m", "bench.pipeline_speed", *(argv if argv is not None else sys.argv[1:])])
    report = render(results, args.rows, command, (start_load, load_average()))
    args.output.write_text(report)
    print(report)
    log(f"wrote {args.output.relative_to(REPO) if args.output.is_relative_to(REPO) else args.output}")
    return report


if __name__ == "__main__":
    main()
