"""The Space under load, on loopback: many one-song clients at once, and one-song latency while CSVs are uploaded.

The Space runs as its own process (`python space/app.py`, the bundled model), as on a Hugging Face Space; the
clients are asyncio tasks in this process calling Gradio's plain HTTP API (POST `/gradio_api/call/...`, then read
the server-sent events), so client and server never share an interpreter lock. Scenarios, in one run:

1. 1 client x 20 one-song requests, then 20 concurrent clients x 20 one-song requests: requests/s, p50, p95, errors;
2. one-song latency of 1 client x 40 requests on an idle Space, then while 4 clients upload 10,000-row CSVs
   (sampled at run time from the real dataset, written to a temporary folder) in a loop: p95 and its ratio.

`--baseline REV` runs the same scenarios first against `space/app.py` as of git revision REV (its default limits,
same model), so the two are measured minutes apart on the same machine. `--song-concurrency N ...` repeats the
scenarios with the one-song limit set to each N (the app reads GENRE_SPACE_SONG_CONCURRENCY). Writes
`bench/space_load.md`.

    python -m bench.space_load --baseline f77fbad --song-concurrency 1 4 8 16
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from bench.common import BENCH, REPO, SPACE_MODEL, load_average, read_raw_rows
from music_genre.space.app import EXAMPLES

OUTPUT = BENCH / "space_load.md"

SONGS = [values for _, _, _, values in EXAMPLES]
# No client waits longer than this for one answer; a slower one is counted as an error.
REQUEST_TIMEOUT_S = 120


@dataclass
class Run:
    """Latencies (seconds) and errors of one scenario, and its wall clock."""

    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def p(self, q: float) -> float:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall_s if self.wall_s else float("nan")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def call(http: httpx.AsyncClient, endpoint: str, data: list) -> str:
    """One call through Gradio's REST API; the `complete` event's data, or an error raised."""
    response = await http.post(f"/gradio_api/call/{endpoint}", json={"data": data})
    event = response.raise_for_status().json()["event_id"]
    body = (await http.get(f"/gradio_api/call/{endpoint}/{event}")).raise_for_status().text
    if "event: complete" not in body:
        raise RuntimeError(body.strip().splitlines()[-1][:200] if body.strip() else "empty answer")
    return body.split("event: complete\ndata: ", 1)[1]


async def song_client(http: httpx.AsyncClient, requests: int, run: Run, offset: int) -> None:
    for i in range(requests):
        start = time.perf_counter()
        try:
            await call(http, "predict_song", SONGS[(i + offset) % len(SONGS)])
            run.latencies.append(time.perf_counter() - start)
        except Exception as error:  # counted, not fatal: the figure is how many fail
            run.errors.append(f"{type(error).__name__}: {error}")


async def songs(url: str, clients: int, requests: int) -> Run:
    run = Run()
    limits = httpx.Limits(max_connections=clients * 2)
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(song_client(http, requests, run, i) for i in range(clients)))
        run.wall_s = time.perf_counter() - start
    return run


async def upload_csv(http: httpx.AsyncClient, path: Path) -> str:
    with open(path, "rb") as handle:
        files = {"files": (path.name, handle.read(), "text/csv")}
    server_path = (await http.post("/gradio_api/upload", files=files)).raise_for_status().json()[0]
    return await call(http, "predict_csv", [{"path": server_path, "meta": {"_type": "gradio.FileData"}}])


async def songs_during_uploads(url: str, csv_path: Path, uploaders: int, requests: int) -> tuple[Run, Run]:
    """One song client's latencies while `uploaders` clients upload the CSV again and again until it is done."""
    song_run, upload_run = Run(), Run()
    done = asyncio.Event()

    async def uploader(http: httpx.AsyncClient) -> None:
        while not done.is_set():
            start = time.perf_counter()
            try:
                answer = await upload_csv(http, csv_path)
                if "Predicted" not in answer:
                    raise RuntimeError(answer[:200])
                upload_run.latencies.append(time.perf_counter() - start)
            except Exception as error:
                upload_run.errors.append(f"{type(error).__name__}: {error}")

    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        tasks = [asyncio.create_task(uploader(http)) for _ in range(uploaders)]
        await asyncio.sleep(2.0)  # the uploads are under way before the first song is asked for
        start = time.perf_counter()
        await song_client(http, requests, song_run, 0)
        song_run.wall_s = time.perf_counter() - start
        done.set()
        await asyncio.gather(*tasks)
    return song_run, upload_run


def serve(app_file: Path, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**env, "GRADIO_SERVER_PORT": str(port), "MODEL_ID": str(SPACE_MODEL)}
    server = subprocess.Popen(
        [sys.executable, str(app_file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the Space exited: {server.stderr.read()[-2000:]}")
        try:
            if httpx.get(url + "/", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    server.kill()
    raise RuntimeError("the Space did not start within 180 s")


def scenarios(app_file: Path, env: dict, csv_path: Path, args: argparse.Namespace) -> dict:
    server, url = serve(app_file, env)
    try:
        asyncio.run(songs(url, 1, 10))  # warm-up
        asyncio.run(upload_csv_once(url, csv_path))  # the CSV worker is started and warm
        measurements = {"one": asyncio.run(songs(url, 1, args.requests))}
        cpu = process_cpu_s(server.pid)
        measurements["many"] = asyncio.run(songs(url, args.clients, args.requests))
        # The web process's CPU per request: the ceiling of one-song throughput is cores it can use / this.
        measurements["cpu_ms"] = (process_cpu_s(server.pid) - cpu) * 1000 / max(len(measurements["many"].latencies), 1)
        measurements["idle"] = asyncio.run(songs(url, 1, args.ratio_requests))
        measurements["loaded"], measurements["uploads"] = asyncio.run(
            songs_during_uploads(url, csv_path, args.uploaders, args.ratio_requests)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return measurements


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def upload_csv_once(url: str, csv_path: Path) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
        await upload_csv(http, csv_path)


def row(name: str, measurements: dict, args: argparse.Namespace) -> str:
    one, many, idle, loaded, uploads = (measurements[k] for k in ("one", "many", "idle", "loaded", "uploads"))
    errors = sum(len(measurements[k].errors) for k in ("one", "many", "idle", "loaded"))
    return (
        f"| {name} | {one.rate:.1f} req/s, p50 {one.p(50):.0f} ms, p95 {one.p(95):.0f} ms "
        f"| {many.rate:.1f} req/s, p50 {many.p(50):.0f} ms, p95 {many.p(95):.0f} ms | {measurements['cpu_ms']:.1f} ms "
        f"| {idle.p(95):.0f} ms | {loaded.p(95):.0f} ms (p50 {loaded.p(50):.0f}) | {loaded.p(95) / idle.p(95):.2f}x "
        f"| {len(uploads.latencies)} done, median {statistics.median(uploads.latencies or [float('nan')]):.1f} s, "
        f"{len(uploads.errors)} errors | {errors} |"
    )


def measure(args: argparse.Namespace) -> dict:
    """Each app's scenarios (`scenarios`), in this order, with the machine they ran on."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    env["PYTHONPATH"] = str(REPO)
    results = []
    with tempfile.TemporaryDirectory(prefix="space-load-") as scratch:
        scratch = Path(scratch)
        csv_path = scratch / "songs.csv"
        frame = read_raw_rows()
        frame.sample(args.rows, random_state=0, replace=args.rows > len(frame)).to_csv(csv_path, index=False)
        if args.baseline:
            old = subprocess.run(
                ["git", "show", f"{args.baseline}:space/app.py"], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout
            (scratch / "baseline_app.py").write_text(old)
            results.append((f"`{args.baseline}` (before)", scenarios(scratch / "baseline_app.py", env, csv_path, args)))
        app_file = REPO / "space" / "app.py"
        results.append(("this tree, default limits", scenarios(app_file, env, csv_path, args)))
        for limit in args.song_concurrency:
            limited = {**env, "GENRE_SPACE_SONG_CONCURRENCY": str(limit)}
            results.append((f"this tree, one-song limit {limit}", scenarios(app_file, limited, csv_path, args)))
    return {
        "time": f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M}",
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "results": results,
    }


def render(measured: dict, args: argparse.Namespace, command: str) -> str:
    """The report `bench/space_load.md` of what `measure` returned; `command` is the one that ran it."""
    results, load = measured["results"], measured["load_average"]
    errors = {name: [e for k in ("one", "many", "idle", "loaded") for e in f[k].errors][:3] for name, f in results}
    return f"""# The Space under load

Measured {measured["time"]} UTC with `{command}`, all lines in this one run.

Machine: {measured["cpus"]} CPU cores, shared with other jobs (load average {load} at the end: measurements move between
runs); Python {measured["python"]}. The Space runs as its own process (`python space/app.py`, the bundled model,
OMP_NUM_THREADS=1); the clients are asyncio tasks of the benchmark's process on 127.0.0.1 calling Gradio's plain HTTP
API (POST, then read the server-sent events).

| app | 1 client x {args.requests} | {args.clients} clients x {args.requests} | web process CPU per request \
| idle p95 (1 x {args.ratio_requests}) | p95 during {args.uploaders} uploaders | ratio \
| {args.rows:,}-row uploads during that | one-song errors |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(row(name, measurements, args) for name, measurements in results)}

Errors seen (first 3 per app): {json.dumps(errors)}
"""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.space_load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=20, help="one-song requests per client")
    parser.add_argument("--ratio-requests", type=int, default=40, help="one-song requests, idle and during uploads")
    parser.add_argument("--uploaders", type=int, default=4)
    parser.add_argument("--rows", type=int, default=10_000, help="rows of each uploaded CSV")
    parser.add_argument("--baseline", help="git revision whose space/app.py is measured first")
    parser.add_argument("--song-concurrency", type=int, nargs="*", default=[], help="one-song limits to try")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    measured = measure(args)
    for name, measurements in measured["results"]:
        runs = {k: run for k, run in measurements.items() if isinstance(run, Run)}
        print(name, json.dumps({k: [run.rate, run.p(50), run.p(95), len(run.errors)] for k, run in runs.items()}))
    report = render(measured, args, "python -m bench.space_load" + (f" {' '.join(argv)}" if argv else ""))
    args.output.write_text(report)
    print(report)


if __name__ == "__main__":
    main(sys.argv[1:])
