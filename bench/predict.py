"""`music-genre predict` on a large CSV: peak resident memory of the process tree, rows/s per worker, and 2 workers
against 1, measured in one run.

The CSV is made by repeating the real CSV's data lines (byte for byte, blank lines left out) up to `--rows` rows,
under bench/output/ (git-ignored; never committed), then each worker count runs the command as a user would,
`music-genre predict --model space/model --data BIG.csv --output OUT.parquet --workers N`, in a fresh process. While
it runs, the resident memory of the command and all its worker processes is summed every 0.1 s; the peak of that
sum is reported (shared pages counted once per process, so it overstates). CPU time is the whole tree's
(`RUSAGE_CHILDREN`); on a shared machine, rows per CPU-second is what an idle core would give, and the wall-clock
figures depend on the load (reported). Writes `bench/predict.md`.

    python -m bench.predict                        # 10,000,000 rows, 1 and 2 workers
    python -m bench.predict --rows 200000 --output /tmp/predict.md
"""

import argparse
import datetime
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.common import BENCH, SPACE_MODEL, csv_path, load_average

OUTPUT = BENCH / "predict.md"
FOLDER = BENCH / "output" / "predict"
TARGET_PEAK_GB = 1.0
TARGET_ROWS_PER_S = 150_000
TARGET_SPEED_UP = 1.8


def make_csv(rows: int, path: Path) -> int:
    """The real CSV's header and data lines repeated up to `rows` rows; returns the file's size in bytes."""
    with open(csv_path(), "rb") as handle:
        header, *lines = handle.read().splitlines(keepends=True)
    # Entirely empty rows (only separators) are left out: each line of the big file is a song.
    lines = [line for line in lines if line.strip(b",\r\n")]
    with open(path, "wb") as out:
        out.write(header)
        whole, rest = divmod(rows, len(lines))
        block = b"".join(lines)
        for _ in range(whole):
            out.write(block)
        out.write(b"".join(lines[:rest]))
    return path.stat().st_size


def tree_memory(process: psutil.Process, cpu_seen: dict | None = None) -> tuple[int, int, int]:
    """Resident memory summed over the process and its descendants: RSS (each process's shared pages counted in
    full), PSS (shared pages divided among the processes sharing them) and the number of processes. With `cpu_seen`,
    each process's own CPU seconds so far are written into it under its pid and start time."""
    rss = pss = 0
    members = [process, *process.children(recursive=True)]
    for member in members:
        try:
            info = member.memory_full_info()
            rss, pss = rss + info.rss, pss + info.pss
            if cpu_seen is not None:
                times = member.cpu_times()
                cpu_seen[(member.pid, member.create_time())] = times.user + times.system
        except psutil.Error:  # a worker that just exited
            pass
    return rss, pss, len(members)


def run_measured(command: list[str], env: dict | None = None, interval: float = 0.2) -> dict:
    """`command` in a fresh process: its wall clock, the CPU time of its whole tree, the peak of the tree's summed RSS
    and PSS (sampled every `interval` s), its exit status and what it printed (kept in files, not pipes, so that a
    talkative command never blocks on a full pipe).

    The CPU time is the larger of `RUSAGE_CHILDREN` (exact for the processes reaped up to this one) and the sum of
    every process's own CPU time as last sampled (which counts the processes a fork server starts and reaps, that
    never reach this one's rusage, and misses at most the last `interval` s of each)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        child = subprocess.Popen(command, env=env, stdout=out, stderr=err, text=True)
        process, peak, peak_pss, processes, cpu_seen = psutil.Process(child.pid), 0, 0, 0, {}
        while child.poll() is None:
            try:
                rss, pss, members = tree_memory(process, cpu_seen)
                peak, peak_pss, processes = max(peak, rss), max(peak_pss, pss), max(processes, members)
            except psutil.Error:
                pass
            time.sleep(interval)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        out.seek(0)
        err.seek(0)
        said, complained = out.read(), err.read()
    cpu = max((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), sum(cpu_seen.values()))
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak / 2**20, "peak_pss_mb": peak_pss / 2**20,
            "processes": processes, "returncode": child.returncode, "said": said, "stderr": complained}  # fmt: skip


def run(data: Path, output: Path, workers: int, chunk_rows: int | None) -> dict:
    command = [sys.executable, "-m", "music_genre", "predict", "--model", str(SPACE_MODEL), "--data", str(data),
               "--output", str(output), "--workers", str(workers), "--overwrite"]  # fmt: skip
    if chunk_rows:
        command += ["--chunk-rows", str(chunk_rows)]
    result = run_measured(command, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.pop("returncode") != 0:
        raise SystemExit(f"predict exited with an error:\n{result['stderr'][-3000:]}")
    del result["stderr"]
    return {"workers": workers, **result}


def stage_times(data: Path, chunk_rows: int) -> dict[str, float]:
    """CPU seconds of each stage of one worker's work on `data`, in this process (one torch thread): cutting the
    file into chunks, parsing them, converting and screening the feature columns, the feature extractor, the network
    (the model's forward pass and softmax) and building the output table. The whole file is taken as valid rows."""
    import numpy as np
    import pandas as pd
    import torch

    from music_genre.predict import DEFAULT_TOP_K
    from music_genre.table_prediction import (
        _check_model,
        _Job,
        _Model,
        _open_source,
        _parse_csv,
        _prepared,
        _result_table,
        _screen,
        _take_values,
    )  # fmt: skip

    torch.set_num_threads(1)
    features, checked = _check_model(str(SPACE_MODEL), DEFAULT_TOP_K, None)
    model = _Model.of(str(SPACE_MODEL))
    source = _open_source(data, chunk_rows, features)
    job = _Job(str(SPACE_MODEL), DEFAULT_TOP_K, None, "csv", source.header, source.delimiter, source.carried, False,
               features, checked)  # fmt: skip
    times = dict.fromkeys(["cut", "parse", "convert", "screen", "extract", "network", "table"], 0.0)

    def timed(stage, work, *args):
        start = time.process_time()
        result = work(*args)
        times[stage] += time.process_time() - start
        return result

    def classify(model, inputs):
        with torch.inference_mode():
            return model.network(**inputs).logits.float().softmax(dim=-1)

    chunks = iter(source.chunks)
    while (chunk := timed("cut", next, chunks, None)) is not None:
        columns, records, _, _, _ = timed("parse", _parse_csv, job, chunk)
        prepared = timed("convert", lambda parsed: {name: _prepared(parsed[name]) for name in checked}, columns)
        timed("screen", _screen, model, prepared, len(records))
        good = np.arange(len(records))
        frame = pd.DataFrame({name: _take_values(column, good) for name, column in prepared.items()}, copy=False)
        inputs = timed("extract", model.extractor, frame, "pt")

        probabilities = timed("network", classify, model, inputs)
        timed("table", _result_table, job, model, columns, records, good, probabilities)
    source.close()
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the CSV (default: %(default)s)")
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (default: %(default)s)")
    parser.add_argument("--chunk-rows", type=int, help="predict's --chunk-rows (default: its own)")
    parser.add_argument(
        "--folder", type=Path, default=FOLDER, help="where the CSV and outputs go (default: %(default)s)"
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help="the report (default: %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep the CSV and outputs")
    parser.add_argument(
        "--stages", type=int, default=200_000, help="rows whose stages are timed in this process (0: none)"
    )
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    data = args.folder / f"songs_{args.rows}.csv"
    load_before = load_average()
    size = make_csv(args.rows, data)
    print(f"{data}: {args.rows:,} rows, {size / 2**20:,.0f} MiB", flush=True)
    results, stages = [], None
    try:
        if args.stages:
            part = args.folder / "stages.csv"
            make_csv(args.stages, part)
            stages = stage_times(part, args.chunk_rows or 16_384)
            part.unlink()
            print(stages, flush=True)
        for workers in (int(w) for w in args.workers.split(",")):
            result = run(data, args.folder / f"out_{workers}.parquet", workers, args.chunk_rows)
            results.append(result)
            print(result, flush=True)
    finally:
        if not args.keep:
            data.unlink(missing_ok=True)
            for result in results:
                (args.folder / f"out_{result['workers']}.parquet").unlink(missing_ok=True)
    report = render(args, size, results, load_before, load_average(), stages)
    args.output.write_text(report)
    print(report)


def render(
    args: argparse.Namespace, size: int, results: list[dict], load_before: str, load_after: str, stages: dict | None
) -> str:
    rows = args.rows
    lines = [
        "# `music-genre predict` on a large CSV",
        "",
        f"Measured {datetime.date.today().isoformat()} with `python -m bench.predict --rows {rows}"
        + (f" --chunk-rows {args.chunk_rows}" if args.chunk_rows else "")
        + f"`: a {rows:,}-row CSV ({size / 2**20:,.0f} MiB, the real CSV's lines repeated) to Parquet with the "
        "bundled model (space/model), top 3 genres, one torch thread per process. Machine: "
        f"{os.cpu_count()} cores shared with other jobs; load average {load_before} before, {load_after} after.",
        "",
        "| workers | wall clock | rows/s (wall) | rows/s per worker (wall) | CPU time (all processes) "
        "| rows per CPU-second | peak RSS, summed over the processes | peak PSS, summed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['workers']} | {r['wall_s']:.1f} s | {rows / r['wall_s']:,.0f} | "
            f"{rows / r['wall_s'] / r['workers']:,.0f} | {r['cpu_s']:.1f} s | {rows / r['cpu_s']:,.0f} | "
            f"{r['peak_mb']:,.0f} MB ({r['processes']} process{'es' if r['processes'] > 1 else ''}) | "
            f"{r['peak_pss_mb']:,.0f} MB |"
        )
    lines.append("")
    by_workers = {r["workers"]: r for r in results}
    peak, peak_pss = max(r["peak_mb"] for r in results), max(r["peak_pss_mb"] for r in results)
    lines.append(
        f"- Peak resident memory under {TARGET_PEAK_GB:g} GB: {peak:,.0f} MB RSS summed (**"
        + ("met" if peak < TARGET_PEAK_GB * 1024 else "not met")
        + f"**), {peak_pss:,.0f} MB PSS summed (**"
        + ("met" if peak_pss < TARGET_PEAK_GB * 1024 else "not met")
        + "**), the most of any worker count"
    )
    one = by_workers.get(1)
    if one:
        per_cpu = rows / one["cpu_s"]
        lines.append(
            f"- At least {TARGET_ROWS_PER_S:,} rows/s per worker: {rows / one['wall_s']:,.0f} rows/s wall clock, "
            f"{per_cpu:,.0f} rows per CPU-second with 1 worker: "
            + ("**met**" if per_cpu >= TARGET_ROWS_PER_S else "**not met**")
        )
    if one and 2 in by_workers:
        speed_up = one["wall_s"] / by_workers[2]["wall_s"]
        lines.append(
            f"- At least {TARGET_SPEED_UP}x with 2 workers: {speed_up:.2f}x wall clock: "
            + ("**met**" if speed_up >= TARGET_SPEED_UP else "**not met**")
        )
    if stages:
        total = sum(stages.values())
        lines += [
            "",
            f"Where one worker's CPU time goes ({args.stages:,} rows in this process, `stage_times`; "
            f"{args.stages / total:,.0f} rows per CPU-second over these stages):",
            "",
            "| stage | CPU time | share | rows per CPU-second of this stage alone |",
            "|---|---|---|---|",
        ]
        for stage, seconds in stages.items():
            lines.append(
                f"| {stage} | {seconds:.2f} s | {seconds / total:.0%} | {args.stages / max(seconds, 1e-9):,.0f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
