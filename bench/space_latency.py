"""End-to-end latency of the Gradio Space through its HTTP API on loopback, with gradio_client.

One song: p50/p95 of `/predict_song` over a few hundred calls. Many songs: rows per second of `/predict_csv` on a
10,000-row CSV built at run time from the real dataset (written to a temp dir, never committed). The model is the
bundled `space/model/`, calibrated as `music-genre train` calibrates (on its run's validation split, in a temporary
copy) when the folder has no conformal scores of its own, so one song costs what the page computes: probabilities,
the 90 % genre set and the feature chart. One song is timed with and without the chart, over HTTP (a second app
with `explain=False`, calls alternating) and in-process (`GenreApp.predict_song`). Writes the measurements to
`bench/space_latency.md`.

    OMP_NUM_THREADS=1 python -m bench.space_latency
"""

import argparse
import datetime
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import torch
from gradio_client import Client, handle_file

from bench.common import BENCH, cpu_name, csv_path, load_average, read_raw_rows, versions
from music_genre.modeling import GenreFeatureExtractor, GenreFFNForSequenceClassification, save_model_folder
from music_genre.space.app import DEFAULT_MODEL, EXAMPLES, GenreApp, launch, song_row
from music_genre.training.calibration import calibrate
from music_genre.training.data import load_data, split_indices

OUTPUT = BENCH / "space_latency.md"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def timed(call, repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls."""
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    return seconds


def raw_predict(http: httpx.Client, values: list) -> str:
    event = http.post("/gradio_api/call/predict_song", json={"data": values}).raise_for_status().json()["event_id"]
    body = http.get(f"/gradio_api/call/predict_song/{event}").raise_for_status().text
    if "event: complete" not in body:
        raise RuntimeError(f"/predict_song failed: {body[:300]}")
    return body


def calibrated_copy(folder: Path, scratch: Path) -> tuple[Path, str]:
    """`folder` itself if it has conformal scores, else a copy calibrated on its run's validation split."""
    model = GenreFFNForSequenceClassification.from_pretrained(folder).eval()
    if model.config.conformal:
        return folder, "with its own calibration"
    extractor = GenreFeatureExtractor.from_pretrained(folder)
    run = json.loads((folder / "training_run.json").read_text())
    data = load_data(csv_path())
    validation = split_indices(data, run["seed"], run["split_mode"])["validation"]
    calibrate(model, extractor(data.frame.iloc[validation])["input_features"], data.labels[validation])
    return save_model_folder(model, extractor, scratch / "calibrated"), (
        f"a copy calibrated on its run's {len(validation):,} validation rows (temperature "
        f"{model.config.calibration_temperature:.4f}), as `music-genre train` now does"
    )


def percentile_ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(seconds, q) * 1000)


def machine_note() -> str:
    return (
        f"{os.cpu_count()} CPU cores ({cpu_name()}), shared with other jobs (load average {load_average()} when the "
        f"run ended, so measurements vary between runs); OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}; "
        + versions("torch", "gradio", "gradio_client", "transformers")
    )


def measure(calls: int, rows: int, repeats: int) -> dict:
    """The one-song and CSV figures through HTTP and in-process, with the model and machine they were measured on."""
    with tempfile.TemporaryDirectory(prefix="space-latency-") as scratch:
        scratch = Path(scratch)
        if not (DEFAULT_MODEL / "config.json").exists():
            raise SystemExit(f"no bundled model in {DEFAULT_MODEL}: run `music-genre train` and stage it first")
        model, model_note = DEFAULT_MODEL, "the bundled `space/model/`"
        frame = read_raw_rows()
        batch = frame.sample(rows, random_state=0, replace=rows > len(frame))
        batch_csv = scratch / "songs.csv"
        batch.to_csv(batch_csv, index=False)

        # Served and timed as the page will be once the bundled model carries its calibration (sets and chart).
        model, calibration_note = calibrated_copy(model, scratch)
        port, plain_port = free_port(), free_port()
        demo = launch(model, port=port, prevent_thread_lock=True, quiet=True)
        plain_demo = launch(model, port=plain_port, prevent_thread_lock=True, quiet=True, explain=False)
        try:
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            songs = [values for _, _, _, values in EXAMPLES]
            call_numbers = iter(range(10**9))
            song = lambda: client.predict(*songs[next(call_numbers) % len(songs)], api_name="/predict_song")  # noqa: E731
            timed(song, 20)
            one_song = timed(song, calls)
            # The same calls without gradio_client: Gradio's documented two-step REST API (POST, then read the SSE).
            http = httpx.Client(base_url=f"http://127.0.0.1:{port}")
            plain_http = httpx.Client(base_url=f"http://127.0.0.1:{plain_port}")
            raw_song = lambda: raw_predict(http, songs[next(call_numbers) % len(songs)])  # noqa: E731
            plain_song = lambda: raw_predict(plain_http, songs[next(call_numbers) % len(songs)])  # noqa: E731
            timed(raw_song, 20)
            timed(plain_song, 20)
            # With and without the chart call by call, so that both see the same load on a shared machine.
            raw_one_song, raw_plain_song = [], []
            for _ in range(calls):
                raw_one_song += timed(raw_song, 1)
                raw_plain_song += timed(plain_song, 1)
            upload = lambda: client.predict(handle_file(str(batch_csv)), api_name="/predict_csv")  # noqa: E731
            status = upload()[3]  # results, problems, download, status, counts, confusion matrix
            assert status.startswith(f"Predicted {rows:,} of {rows:,}"), status
            many = timed(upload, repeats)
        finally:
            demo.close()
            plain_demo.close()

        # The same work in-process, to show what the HTTP round trip and Gradio add.
        app = GenreApp(model)
        song_rows = [song_row(*values) for values in songs]
        in_process_song = timed(lambda: app.classifier(song_rows[0]), calls)
        # What the one-song tab computes: probabilities, the 90 % set and the chart; and the same without the chart.
        page_song = lambda: app.predict_song(*songs[next(call_numbers) % len(songs)])  # noqa: E731
        timed(page_song, 20)
        in_process_page = timed(page_song, calls)
        no_chart = GenreApp(model, explain=False)
        plain_song = lambda: no_chart.predict_song(*songs[next(call_numbers) % len(songs)])  # noqa: E731
        timed(plain_song, 20)
        in_process_plain = timed(plain_song, calls)
        # With and without the 90 % set column (made from the same probabilities as the top 3), alternating; the best
        # of 5 runs each, since on a shared machine a median of a few runs moves with the load more than with the code.
        no_sets = GenreApp(model)
        no_sets.set_coverage = None
        in_process_table, in_process_table_without_sets = [], []
        for _ in range(max(repeats, 5)):
            in_process_table += timed(lambda: app.predict_table(str(batch_csv)), 1)
            in_process_table_without_sets += timed(lambda: no_sets.predict_table(str(batch_csv)), 1)

    measurements = {
        "one_song_p50_ms": percentile_ms(one_song, 50),
        "one_song_p95_ms": percentile_ms(one_song, 95),
        "one_song_mean_ms": statistics.fmean(one_song) * 1000,
        "raw_http_one_song_p50_ms": percentile_ms(raw_one_song, 50),
        "raw_http_one_song_p95_ms": percentile_ms(raw_one_song, 95),
        "raw_http_without_chart_p50_ms": percentile_ms(raw_plain_song, 50),
        "raw_http_without_chart_p95_ms": percentile_ms(raw_plain_song, 95),
        "pipeline_one_row_p50_ms": percentile_ms(in_process_song, 50),
        "predict_song_p50_ms": percentile_ms(in_process_page, 50),
        "predict_song_without_chart_p50_ms": percentile_ms(in_process_plain, 50),
        "batch_seconds_median": statistics.median(many),
        "batch_rows_per_s": rows / statistics.median(many),
        "in_process_table_rows_per_s": rows / min(in_process_table),
        "in_process_table_without_sets_rows_per_s": rows / min(in_process_table_without_sets),
    }
    return {
        "date": datetime.date.today().isoformat(),
        "machine": machine_note(),
        "model": model_note,
        "calibration": calibration_note,
        "calls": calls,
        "rows": rows,
        "repeats": repeats,
        "measurements": measurements,
    }


def render(measured: dict, command: str) -> str:
    """The report `bench/space_latency.md` of what `measure` returned; `command` is the one that ran it."""
    measurements, rows, calls, repeats = (measured[key] for key in ("measurements", "rows", "calls", "repeats"))
    lines = [
        ("what", "figure"),
        ("---", "---"),
        (f"one song, `/predict_song`, p50 over {calls} calls", f"{measurements['one_song_p50_ms']:.1f} ms"),
        ("one song, `/predict_song`, p95", f"{measurements['one_song_p95_ms']:.1f} ms"),
        ("one song, `/predict_song`, mean", f"{measurements['one_song_mean_ms']:.1f} ms"),
        (
            "one song over plain HTTP (httpx: POST `/gradio_api/call/predict_song`, read the SSE), p50 / p95",
            f"{measurements['raw_http_one_song_p50_ms']:.1f} ms / {measurements['raw_http_one_song_p95_ms']:.1f} ms",
        ),
        (
            "the same from a second app without the feature chart (`launch(..., explain=False)`), calls alternating "
            "with the line above, p50 / p95",
            f"{measurements['raw_http_without_chart_p50_ms']:.1f} ms / "
            f"{measurements['raw_http_without_chart_p95_ms']:.1f} ms",
        ),
        ("one row through the pipeline in-process (no HTTP), p50", f"{measurements['pipeline_one_row_p50_ms']:.2f} ms"),
        (
            "`GenreApp.predict_song` in-process (what the one-song tab computes: probabilities, the 90 % genre set, "
            "the feature chart by Integrated Gradients), p50",
            f"{measurements['predict_song_p50_ms']:.2f} ms",
        ),
        (
            "the same without the feature chart (`GenreApp(model, explain=False)`), p50",
            f"{measurements['predict_song_without_chart_p50_ms']:.2f} ms",
        ),
        (
            f"{rows:,}-row CSV, `/predict_csv` (upload, check, predict, table + CSV back), median of {repeats}",
            f"{measurements['batch_seconds_median']:.2f} s = {measurements['batch_rows_per_s']:,.0f} rows/s",
        ),
        (
            f"the same {rows:,} rows through `GenreApp.predict_table` in-process (no HTTP), best of 5",
            f"{measurements['in_process_table_rows_per_s']:,.0f} rows/s",
        ),
        (
            "the same without the `genre_set_90` column (runs alternating with the line above), best of 5",
            f"{measurements['in_process_table_without_sets_rows_per_s']:,.0f} rows/s",
        ),
    ]
    table = "\n".join(f"| {what} | {figure} |" for what, figure in lines)
    date, machine, model, calibration = (measured[key] for key in ("date", "machine", "model", "calibration"))
    return f"""# Space latency

Measured {date} with `{command}`.

Machine: {machine}.

Model: {model}: {calibration}, so that every one-song call computes the probabilities, the 90 % genre
set and the feature chart, and the CSV its 90 % sets.

The app runs in the benchmark's process on 127.0.0.1; every call is a full trip through Gradio's queue (submit, then
the result as server-sent events). `gradio_client` waits for queue messages in 50 ms polling steps
(`gradio_client/utils.py`), so most of its one-song figure is the client's own polling; the plain HTTP line shows
what the server takes.

{table}

The batch CSV is {rows:,} rows sampled (seed 0) from the real dataset at run time and written to a temporary
folder; it is not part of the repository.
"""


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.space_latency", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="one-song calls timed (after 20 warm-up calls)")
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the batch CSV")
    parser.add_argument("--repeats", type=int, default=3, help="timed uploads of the batch CSV")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    measured = measure(args.calls, args.rows, args.repeats)
    command = "OMP_NUM_THREADS=1 python -m bench.space_latency" + (f" {' '.join(argv)}" if argv else "")
    args.output.write_text(render(measured, command))
    for name, value in measured["measurements"].items():
        print(f"{name}: {value:,.2f}")
    print(f"wrote {args.output}")
    return measured["measurements"]


if __name__ == "__main__":
    main(sys.argv[1:])
