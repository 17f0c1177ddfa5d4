"""Peak memory and rows/second of the pipeline on a 1,000,000-row DataFrame, with the default top_k (the most
probable genre) and with every genre.

Each measurement runs in a fresh subprocess (one torch thread) that builds the DataFrame by sampling the real CSV
with replacement (seed 0; never written anywhere), loads `pipeline(model=space/model, trust_remote_code=True)`,
calls it once, and reports its peak resident memory (`resource.getrusage`, `ru_maxrss`), its resident memory just
before the call, and the call's wall-clock and CPU time. Writes `bench/pipeline_memory.md`.

    python -m bench.pipeline_memory                       # 1,000,000 rows: default top_k, top_k=None, slices
    python -m bench.pipeline_memory --rows 100000 --output /tmp/pipeline_memory.md
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from bench.common import BENCH, SPACE_MODEL, csv_path, load_average
from music_genre.modeling.pipeline_genre_ffn import CHUNK_ROWS

OUTPUT = BENCH / "pipeline_memory.md"
TARGET_PEAK_GB = 1.5
TARGET_ROWS_PER_S = 100_000

CHILD = r"""
import json, os, resource, sys, time
import numpy as np, pandas as pd, torch
from transformers import pipeline
torch.set_num_threads(1)
rows, top_k, csv, model, chunk = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
asked = {} if top_k == "default" else {"top_k": top_k}  # "default": the call passes no top_k
def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024
frame = pd.read_csv(csv).dropna(how="all")
frame = frame.sample(rows, replace=True, random_state=0).reset_index(drop=True)
classifier = pipeline(model=model, trust_remote_code=True)
classifier(frame.head(100))  # warm-up
before_mb = rss_mb()
wall, cpu = time.perf_counter(), time.process_time()
if chunk:  # the caller's own chunks, each result used (its best genres counted) and dropped
    best = {}
    for start in range(0, rows, chunk):
        for genres in classifier(frame.iloc[start : start + chunk], **asked):
            best[genres[0]["label"]] = best.get(genres[0]["label"], 0) + 1
    assert sum(best.values()) == rows
else:
    results = classifier(frame, **asked)
    assert len(results) == rows and len(results[0]) == {"default": 1, None: 10}.get(top_k, top_k)
wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "top_k": top_k, "chunk": chunk, "before_mb": before_mb, "peak_mb": peak_mb,
                  "wall_s": wall, "cpu_s": cpu, "after_mb": rss_mb()}))
"""


def measure(rows: int, top_k: int | str | None, csv: Path, model: Path, chunk: int = 0) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1")
    command = [sys.executable, "-c", CHILD, str(rows), json.dumps(top_k), str(csv), str(model), str(chunk)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_all(rows: int) -> dict:
    """The three calls (default top_k, every genre, the caller's slices), each in a fresh process, and the machine."""
    measurements = [measure(rows, top_k, csv_path(), SPACE_MODEL) for top_k in ("default", None)]
    measurements.append(measure(rows, None, csv_path(), SPACE_MODEL, chunk=100_000))
    return {
        "date": datetime.date.today().isoformat(),
        "rows": rows,
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "measurements": measurements,
    }


def render(measured: dict, command: str) -> str:
    """The report `bench/pipeline_memory.md` of what `measure_all` returned; `command` is the one that ran it."""
    measurements = measured["measurements"]
    lines = [
        "| call | top_k | RSS before the call | peak RSS | call wall clock | rows/s (wall) | rows/s (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    shown = {"default": "not given (default: 1)", None: "None (all 10)"}
    for one in measurements:
        call = f"{one['chunk']:,}-row slices, results used and dropped" if one["chunk"] else "the whole frame"
        lines.append(
            f"| {call} | {shown.get(one['top_k'], one['top_k'])} | {one['before_mb']:,.0f} MB "
            f"| {one['peak_mb']:,.0f} MB | "
            f"{one['wall_s']:.1f} s | {one['rows'] / one['wall_s']:,.0f} | "
            f"{one['rows'] / one['cpu_s']:,.0f} |"
        )
    default = measurements[0]
    peak_met = default["peak_mb"] / 1024 < TARGET_PEAK_GB
    rate_wall, rate_cpu = default["rows"] / default["wall_s"], default["rows"] / default["cpu_s"]
    verdicts = [
        f"- Peak under {TARGET_PEAK_GB} GB with the default top_k: {default['peak_mb']:,.0f} MB: "
        + ("**met**" if peak_met else "**not met**"),
        f"- At least {TARGET_ROWS_PER_S:,} rows/s with the default top_k: {rate_wall:,.0f} rows/s wall clock on the "
        f"shared machine, {rate_cpu:,.0f} rows/s of CPU time (what an idle core gives): "
        + (
            "**met**"
            if rate_wall >= TARGET_ROWS_PER_S
            else "**met in CPU time**"
            if rate_cpu >= TARGET_ROWS_PER_S
            else "**not met**"
        ),
    ]
    cpus, load, python = measured["cpus"], measured["load_average"], measured["python"]
    return f"""# Pipeline memory on a large table

Measured {measured["date"]} with `{command}`: {measured["rows"]:,} rows sampled with replacement (seed 0)
from the real CSV at run time, through `pipeline(model=space/model, trust_remote_code=True)`, one call, one torch
thread, each line in a fresh process. Targets: peak under {TARGET_PEAK_GB} GB and at least {TARGET_ROWS_PER_S:,}
rows/s with the default top_k. Machine: {cpus} shared cores (load average {load} at the end), Python
{python}.

{chr(10).join(lines)}

{chr(10).join(verdicts)}

As transformers' text-classification pipeline, the default gives each row its most probable genre;
`top_k=None` asks for all ten. "RSS before the call" is the process with the DataFrame and the model loaded;
the peak includes it. Inside the pipeline a table is encoded, classified and turned into dicts {CHUNK_ROWS:,}
rows at a time, so its own working memory is bounded; what grows with the table is the returned list itself:
with every genre it holds 10 dicts ({{"label", "score"}}, about 230 bytes each with the score's float) per row.
The third line is the bounded-memory way to use the pipeline on a table this size with every genre: the
caller's slices, each result used and dropped.
"""


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline_memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    measured = measure_all(args.rows)
    report = render(measured, "python -m bench.pipeline_memory" + (f" {' '.join(argv)}" if argv else ""))
    args.output.write_text(report)
    print(report)
    return measured["measurements"]


if __name__ == "__main__":
    main(sys.argv[1:])
