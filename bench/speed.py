"""Speed benchmark: training, batch inference and one-song latency, each against its baseline, in one process.

One process and one torch thread throughout (the project's run gives each search worker one thread too):

- training: rows/second of the Trainer path (`training.trainer.make_trainer(...).train()`, 3 epochs, quiet)
  against a bare PyTorch loop over the same model class, configuration, data, batch size 32 and AdamW;
- batch inference: rows/second from a pandas DataFrame of 50,000 raw CSV rows through the feature extractor and
  the model, against LightGBM's `predict` on the same rows (its feature preparation counted);
- one song: latency of `transformers.pipeline(model=folder, trust_remote_code=True)` on one raw row dict;
- the full reproducible run: wall clock and peak memory from each `/usr/bin/time -v music-genre train ...` log
  given with `--full-run-log` (one with `--workers 1`, one with `--workers 2`).

    TQDM_DISABLE=1 python -m bench.speed --full-run-log /tmp/run_w1.log --full-run-log /tmp/run_w2.log  # bench/speed.md
    TQDM_DISABLE=1 python -m bench.speed --quick                              # fewer repeats (bench/output/)

Throughputs are judged on this single-threaded process's CPU time (`time.process_time`), which on a shared machine
is what the work would take on an idle core; the wall-clock measurements stand beside them. Latencies are wall clock.
A missed target gets a cProfile of the section that missed it, and what to change, in the report.
"""

import argparse
import cProfile
import datetime
import io
import os
import pstats
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import torch
import transformers
from torch import nn
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, pipeline, set_seed

from bench.common import BENCH, DEFAULT_CONFIG, SPACE_MODEL, load_config, log, machine, read_raw_rows, versions
from bench.quality import CATEGORICAL, raw_features
from music_genre.modeling import FEATURE_NAMES, GenreFeatureExtractor, save_model_folder
from music_genre.modeling.modeling_genre_ffn import INFERENCE_CHUNK, fold_batch_norm, native_bfloat16
from music_genre.training.data import GenreData, PreparedSplits, balanced_class_weights, load_data, prepare_splits
from music_genre.training.trainer import Hyperparameters, build_model, make_trainer

INFERENCE_ROWS = 50_000
TRAIN_EPOCHS = 3
TRAIN_BATCH_SIZE = 32
LGBM_ROUNDS = 300
TARGETS = {
    "training": 0.67,  # Trainer rows/s over the bare loop's
    "inference_rows_per_s": 100_000,
    "inference_vs_lightgbm": 2.0,
    "one_song_p50_ms": 2.0,
    "full_run_minutes_2_workers": 15.0,
    "full_run_peak_gb": 2.0,  # resident memory of the largest single process
}


@dataclass
class Measurement:
    name: str
    value: str  # from CPU time (latencies: wall clock); the verdict is on this one
    wall: str  # the same from wall-clock time
    target: str
    met: bool | None  # None: informational


@dataclass
class Report:
    measurements: list[Measurement] = field(default_factory=list)
    profiles: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    recommendations: list[str] = field(default_factory=list)
    # When and where it was measured (date, machine, software, load), which the report states first.
    context: dict[str, str] = field(default_factory=dict)

    def add(self, other: "Report") -> None:
        """`other`'s measurements, profiles, notes and recommendations after this report's own."""
        self.measurements += other.measurements
        self.profiles |= other.profiles
        self.notes += other.notes
        self.recommendations += other.recommendations


def profile(call: Callable[[], Any], limit: int = 18) -> str:
    """The heaviest functions of one call, by cumulative time."""
    profiler = cProfile.Profile()
    profiler.enable()
    call()
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).strip_dirs().sort_stats("cumulative").print_stats(limit)
    return out.getvalue().strip()


@dataclass
class Timing:
    """Seconds of one measured section: wall clock, and CPU time of this (single-threaded) process."""

    wall: float
    cpu: float


class Stopwatch:
    def __enter__(self) -> "Stopwatch":
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timing = Timing(time.perf_counter() - self.wall, time.process_time() - self.cpu)


def fastest(timings: list[Timing]) -> Timing:
    """The fastest wall clock and the smallest CPU time of several runs (each the least disturbed by other jobs)."""
    return Timing(min(t.wall for t in timings), min(t.cpu for t in timings))


# Training: the Trainer path against a bare PyTorch loop.


def bare_loop(features: np.ndarray, labels: np.ndarray, hyperparameters: Hyperparameters, seed: int) -> Timing:
    """The time of `epochs` of plain AdamW steps over shuffled batches, same model and loss as the Trainer's."""
    set_seed(seed)
    genres = {i: str(i) for i in range(int(labels.max()) + 1)}  # a timing: the genres' names do not matter
    model = build_model(hyperparameters, balanced_class_weights(labels, len(genres)), features.shape[1], genres)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=hyperparameters.learning_rate, weight_decay=hyperparameters.weight_decay
    )
    x, y = torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with Stopwatch() as watch:
        for _ in range(hyperparameters.epochs):
            order = torch.randperm(len(y), generator=generator)
            for start in range(0, len(y), hyperparameters.batch_size):
                batch = order[start : start + hyperparameters.batch_size]
                loss = model(input_features=x[batch], labels=y[batch]).loss
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
    return watch.timing


def trainer_path(prepared, extractor, hyperparameters: Hyperparameters, seed: int) -> tuple[Timing, Any]:
    """The time of `make_trainer(...)` + `.train()`, as `training.trainer.fit` runs it; returns the trainer too."""
    with tempfile.TemporaryDirectory(prefix="bench-speed-") as output_dir:
        with Stopwatch() as watch:
            trainer = make_trainer(
                prepared, extractor, hyperparameters, Path(output_dir), seed, keep_best=True, quiet=True
            )
            trainer.train()
    return watch.timing, trainer


# Batch inference.


def network_predict(model: nn.Module, extractor, frame: pd.DataFrame) -> np.ndarray:
    """The extractor over the whole frame, then the model in one call (which slices large tables itself)."""
    features = extractor(frame, return_tensors="pt")["input_features"]
    with torch.inference_mode():
        return model(input_features=features).logits.softmax(dim=-1).numpy()


def lightgbm_predict(booster: lgb.Booster, frame: pd.DataFrame) -> np.ndarray:
    return booster.predict(raw_features(frame), num_threads=1)


def best_of(call: Callable[[], Any], repeats: int) -> Timing:
    """The fastest of `repeats` timed calls, after one warm-up (the machine is shared: the minimum is the signal)."""
    call()
    timings = []
    for _ in range(repeats):
        with Stopwatch() as watch:
            call()
        timings.append(watch.timing)
    return fastest(timings)


# The full run's /usr/bin/time -v log.


def parse_time_log(path: Path) -> dict[str, Any]:
    text = path.read_text(errors="replace")
    command = re.search(r'Command being timed: "(.*)"', text)
    elapsed = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    status = re.search(r"Exit status: (\d+)", text)
    if not elapsed or not rss:
        raise ValueError(f"{path} holds no /usr/bin/time -v summary (is the run still going?)")
    seconds = 0.0
    for part in elapsed.group(1).split(":"):
        seconds = seconds * 60 + float(part)
    return {
        "command": command.group(1) if command else None,
        "seconds": seconds,
        "max_rss_kb": int(rss.group(1)),
        "exit_status": int(status.group(1)) if status else None,
    }


# The benchmarks, one function each; `run` calls them in turn and gathers their measurements into one report.


def benchmark_training(
    prepared: PreparedSplits,
    extractor: GenreFeatureExtractor,
    hyperparameters: Hyperparameters,
    seed: int,
    repeats: int,
) -> tuple[Report, Any]:
    """Rows/second of the Trainer path against the bare loop, interleaved; returns the last trainer too (its model
    stands in for the bundled one when there is none)."""
    features, labels = prepared.features["train"], prepared.labels["train"]
    rows = len(labels) * TRAIN_EPOCHS
    log(f"training: {len(labels)} rows x {TRAIN_EPOCHS} epochs, {repeats} repeat(s) each")
    bare_times, trainer_times, trainer = [], [], None
    for repeat in range(repeats):  # interleaved, so background load hits both alike
        bare_times.append(bare_loop(features, labels, hyperparameters, seed))
        timing, trainer = trainer_path(prepared, extractor, hyperparameters, seed)
        trainer_times.append(timing)
        log(
            f"  repeat {repeat}: bare loop {bare_times[-1].wall:.1f} s ({bare_times[-1].cpu:.1f} s CPU), "
            f"Trainer {timing.wall:.1f} s ({timing.cpu:.1f} s CPU)"
        )
    bare, trained = fastest(bare_times), fastest(trainer_times)
    ratio, wall_ratio = bare.cpu / trained.cpu, bare.wall / trained.wall
    report = Report()
    report.measurements += [
        Measurement(
            "Training, bare PyTorch loop (rows/s)", f"{rows / bare.cpu:,.0f}", f"{rows / bare.wall:,.0f}", "-", None
        ),
        Measurement(
            "Training, Trainer path (rows/s)", f"{rows / trained.cpu:,.0f}", f"{rows / trained.wall:,.0f}", "-", None
        ),
        Measurement(
            "Training, Trainer / bare loop",
            f"{ratio:.2f}x",
            f"{wall_ratio:.2f}x",
            f">= {TARGETS['training']}x",
            ratio >= TARGETS["training"],
        ),
    ]
    report.notes.append(
        f"Training: {len(labels):,} encoded training rows x {TRAIN_EPOCHS} epochs, best of {repeats}; "
        "the Trainer path is `make_trainer(keep_best=True, quiet=True)` + `.train()` as `fit` runs it (per-epoch "
        "validation and best-epoch checkpoint included); the bare loop has no evaluation, no checkpoint, no "
        "scheduler. Early stopping (patience 3) cannot stop a 3-epoch run."
    )
    if ratio < TARGETS["training"]:
        report.profiles["Training, Trainer path"] = profile(
            lambda: trainer_path(prepared, extractor, hyperparameters, 0)
        )
        report.recommendations.append(
            "Training, in `training/trainer.py`: the Trainer's own per-step work is what the bare loop lacks "
            "(`GenreTrainer` already counts the parameters for the FLOP log once per model). Gradient clipping "
            "(`TrainingArguments.max_grad_norm`, 1.0 by default) goes through accelerate's `clip_grad_norm_`, "
            "which lists the parameters and checks the torch version (an `importlib` lookup) every step; "
            "`max_grad_norm=0` drops it but changes training (the paper does not clip), so only with a new run. "
            "`model.train()` at every step is the Trainer's and stays."
        )
    return report, trainer


def inference_model(
    trainer: Any, extractor: GenreFeatureExtractor, config: dict, hyperparameters: Hyperparameters, workdir: Path
) -> tuple[Path, nn.Module, Any, str]:
    """The model the inference measurements use, its folder, its extractor and the note saying which it is: the Space's
    bundled model, else the one just trained, saved as a folder in `workdir`."""
    if SPACE_MODEL.is_dir():
        folder, source = SPACE_MODEL, "space/model/ (the Space's bundled model)"
    else:
        folder = save_model_folder(trainer.model, extractor, workdir / "model")
        source = (
            f"space/model/ does not exist: a {config['encoding']} extractor and the {hyperparameters.num_members}-"
            f"member {hyperparameters.hidden_sizes} model fitted above ({TRAIN_EPOCHS} epochs), saved with "
            "`save_model_folder`"
        )
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    folder_extractor = AutoFeatureExtractor.from_pretrained(folder)
    dtype = getattr(model.config, "inference_dtype", "float32")
    native = native_bfloat16("cpu")
    computes = "bfloat16" if dtype == "bfloat16" and native else "float32"
    note = (
        f"Inference model: {source}; inference dtype `{dtype}` in its config, so it computes in {computes} on "
        f"this CPU ({'with' if native else 'without'} native bfloat16)."
    )
    return folder, model, folder_extractor, note


def benchmark_batch_inference(
    data: GenreData, prepared: PreparedSplits, model: nn.Module, extractor, frame: pd.DataFrame, seed: int, repeats: int
) -> Report:
    """Rows/second of the extractor and the network over `frame`, against LightGBM trained on the training split."""
    booster = lgb.train(
        {
            "objective": "multiclass",
            "num_class": len(data.genres),
            "num_threads": 1,
            "verbosity": -1,
            "seed": seed,
            "learning_rate": 0.05,
            "num_leaves": 31,
        },
        lgb.Dataset(
            raw_features(data.frame.iloc[prepared.indices["train"]]),
            data.labels[prepared.indices["train"]],
            feature_name=list(FEATURE_NAMES),
            categorical_feature=CATEGORICAL,
        ),
        num_boost_round=LGBM_ROUNDS,
    )
    small_booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=LGBM_ROUNDS // 10))
    log(f"batch inference: {len(frame):,} raw rows, best of {repeats}")
    network = best_of(lambda: network_predict(model, extractor, frame), repeats)
    lightgbm_time = best_of(lambda: lightgbm_predict(booster, frame), repeats)
    small_time = best_of(lambda: lightgbm_predict(small_booster, frame), repeats)
    encode = best_of(lambda: extractor(frame), repeats)
    n = len(frame)
    network_rate, lightgbm_rate = n / network.cpu, n / lightgbm_time.cpu
    target_rate = TARGETS["inference_rows_per_s"]
    speedup = TARGETS["inference_vs_lightgbm"]
    report = Report()
    report.measurements += [
        Measurement(
            "Batch inference, extractor + network (rows/s)",
            f"{network_rate:,.0f}",
            f"{n / network.wall:,.0f}",
            f">= {target_rate:,}",
            network_rate >= target_rate,
        ),
        Measurement(
            "  of which the feature extractor alone (rows/s)",
            f"{n / encode.cpu:,.0f}",
            f"{n / encode.wall:,.0f}",
            "-",
            None,
        ),
        Measurement(
            f"Batch inference, LightGBM {LGBM_ROUNDS} rounds = {LGBM_ROUNDS * len(data.genres):,} trees (rows/s)",
            f"{lightgbm_rate:,.0f}",
            f"{n / lightgbm_time.wall:,.0f}",
            "-",
            None,
        ),
        Measurement(
            "Batch inference, network / LightGBM",
            f"{network_rate / lightgbm_rate:.2f}x",
            f"{lightgbm_time.wall / network.wall:.2f}x",
            f">= {speedup}x",
            network_rate / lightgbm_rate >= speedup,
        ),
        Measurement(
            f"  LightGBM {LGBM_ROUNDS // 10} rounds = {LGBM_ROUNDS:,} trees (rows/s), for scale; network / it",
            f"{n / small_time.cpu:,.0f}; {small_time.cpu / network.cpu:.2f}x",
            f"{n / small_time.wall:,.0f}; {small_time.wall / network.wall:.2f}x",
            "-",
            None,
        ),
    ]
    report.notes.append(
        f"Batch inference: {n:,} rows read with `pandas.read_csv` (tempo as text, `?` kept), one call over the whole "
        "DataFrame: the extractor (parsing and validation included), then the model under `torch.inference_mode()` "
        "and a softmax, as the pipeline runs a table (encoded and classified in one batch); "
        f"the model itself runs large eval batches in {INFERENCE_CHUNK:,}-row slices through members with BatchNorm "
        f"folded into the Linear layers (`{fold_batch_norm.__name__}`). "
        "LightGBM: `raw_features` (the same parsing, key/mode as "
        f"categorical codes) then `Booster.predict(num_threads=1)`, trained {LGBM_ROUNDS} rounds (learning rate "
        f"0.05, 31 leaves; {len(data.genres)} trees per round, one per genre) on the training split. Best of "
        f"{repeats} after a warm-up."
    )
    if network_rate < target_rate or network_rate / lightgbm_rate < speedup:
        report.profiles["Batch inference, extractor + network"] = profile(
            lambda: network_predict(model, extractor, frame)
        )
        sizes = [model.config.input_size, *model.config.hidden_sizes, model.config.num_labels]
        macs = model.config.num_members * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        network_alone = 1 / max(1 / network_rate - 1 / (n / encode.cpu), 1e-12)
        report.recommendations.append(
            f"Batch inference: the network alone runs at about {network_alone:,.0f} rows/s; "
            f"{model.config.num_members} member(s) of {sizes} are {macs:,} multiply-adds per row, so that is "
            f"{2 * macs * network_alone / 1e9:.0f} GFLOP/s on one core (see the profile for where the rest goes). "
            f"The extractor ({n / encode.cpu:,.0f} rows/s) is {encode.cpu / network.cpu:.0%} of the time."
        )
    return report


def benchmark_one_song(folder: Path, song: dict, calls: int) -> Report:
    """Wall-clock latency of `pipeline(model=folder, trust_remote_code=True)` on one raw row dict."""
    classifier = pipeline(model=str(folder), trust_remote_code=True)
    for _ in range(100):
        classifier(song)
    latencies = []
    for _ in range(calls):
        tick = time.perf_counter_ns()
        classifier(song)
        latencies.append((time.perf_counter_ns() - tick) / 1e6)
    p50, p99 = np.percentile(latencies, [50, 99])
    target = TARGETS["one_song_p50_ms"]
    report = Report()
    report.measurements += [
        Measurement(
            "One song, pipeline latency p50 (ms, wall clock)", f"{p50:.3f}", f"{p50:.3f}", f"< {target}", p50 < target
        ),
        Measurement("One song, pipeline latency p99 (ms, wall clock)", f"{p99:.3f}", f"{p99:.3f}", "-", None),
    ]
    report.notes.append(
        f"One song: `pipeline(model=folder, trust_remote_code=True)` on one raw CSV row as a dict (all its columns, "
        f"tempo as text), {calls:,} calls after 100 warm-up calls."
    )
    if p50 >= target:
        report.profiles["One song, pipeline"] = profile(lambda: [classifier(song) for _ in range(200)])
    log(f"one song: p50 {p50:.3f} ms, p99 {p99:.3f} ms")
    return report


def run(args: argparse.Namespace) -> Report:
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    full_run, full_run_notes = full_run_measurements(args.full_run_log)  # a bad log fails before the timings
    config, config_source = load_config(args.config)
    hyperparameters = replace(
        Hyperparameters(**config["hyperparameters"]), epochs=TRAIN_EPOCHS, batch_size=TRAIN_BATCH_SIZE
    )
    report = Report()
    report.notes.append(
        f"Training network: {config_source}, encoding `{config['encoding']}`, hidden sizes "
        f"{hyperparameters.hidden_sizes}, {hyperparameters.num_members} member(s), dropout "
        f"{hyperparameters.dropout:.3g}, learning rate {hyperparameters.learning_rate:.3g}; batch size "
        f"{TRAIN_BATCH_SIZE} and {TRAIN_EPOCHS} epochs for both paths (the configuration's own batch size is "
        f"{config['hyperparameters'].get('batch_size')})."
    )
    data = load_data(args.data)
    prepared = prepare_splits(data, GenreFeatureExtractor(numeric_encoding=config["encoding"]), args.seed, "stratified")
    extractor = prepared.extractor
    training, trainer = benchmark_training(prepared, extractor, hyperparameters, args.seed, args.train_repeats)
    report.add(training)

    with tempfile.TemporaryDirectory(prefix="bench-speed-model-") as workdir:
        folder, model, folder_extractor, note = inference_model(
            trainer, extractor, config, hyperparameters, Path(workdir)
        )
        report.notes.append(note)
        frame = read_raw_rows(args.data).head(INFERENCE_ROWS).reset_index(drop=True)
        report.add(benchmark_batch_inference(data, prepared, model, folder_extractor, frame, args.seed, args.repeats))
        report.add(benchmark_one_song(folder, frame.iloc[0].to_dict(), args.calls))
    report.add(Report(full_run, notes=full_run_notes))
    return report


def full_run_measurements(paths: list[Path]) -> tuple[list[Measurement], list[str]]:
    """Wall clock and peak memory of each `/usr/bin/time -v music-genre train ...` log, as table rows and notes."""
    if not paths:
        return [], [
            "Full run: no log given. Run `/usr/bin/time -v music-genre train ... > FILE 2>&1`, then "
            "`python -m bench.speed --full-run-log FILE` (once per log)."
        ]
    measurements: list[Measurement] = []
    notes: list[str] = []
    for path in paths:
        run_log = parse_time_log(path)
        if run_log["exit_status"] != 0:
            raise ValueError(f"{path}: the run exited with status {run_log['exit_status']}, not 0")
        workers = re.search(r"--workers[ =](\d+)", run_log["command"] or "")
        label = f"--workers {workers.group(1) if workers else 1}"
        seconds, peak_gb = run_log["seconds"], run_log["max_rss_kb"] * 1024 / 1e9
        wall = f"{int(seconds // 60)} min {seconds % 60:.0f} s"
        two_workers = label == "--workers 2"
        target_minutes = TARGETS["full_run_minutes_2_workers"]
        measurements += [
            Measurement(
                f"Full run {label}, wall clock",
                "-",
                wall,
                f"< {target_minutes:.0f} min" if two_workers else "-",
                seconds < target_minutes * 60 if two_workers else None,
            ),
            Measurement(
                f"Full run {label}, peak resident memory per process (GB)",
                "-",
                f"{peak_gb:.2f}",
                f"< {TARGETS['full_run_peak_gb']:.0f}",
                peak_gb < TARGETS["full_run_peak_gb"],
            ),
        ]
        notes.append(
            f"Full run {label}: `{run_log['command']}` under `/usr/bin/time -v`, log `{path}`; peak memory is "
            f"its maximum resident set size, {run_log['max_rss_kb']:,} KiB, the largest single process (the main "
            "one or a search worker) as getrusage reports it."
        )
    return measurements, notes


def markdown(report: Report, command: str, note: str = "") -> str:
    """The report `bench/speed.md` of a measured `Report`."""

    def verdict(met: bool | None) -> str:
        return "" if met is None else ("met" if met else "**not met**")

    lines = [
        "# Speed benchmark",
        "",
        f"- Date: {report.context['date']}",
        f"- Command: `{command}`",
        f"- Machine: {report.context['machine']}; one process, one torch thread; {report.context['versions']}",
        f"- Load: {report.context['load']} (the measurements are the best of several timed calls, to damp other "
        "jobs' interference)",
        *([f"- Note: {note}"] if note else []),
        "",
        "| figure | value (CPU time) | value (wall clock) | target | |",
        "|---|---|---|---|---|",
        *(f"| {f.name.strip()} | {f.value} | {f.wall} | {f.target} | {verdict(f.met)} |" for f in report.measurements),
        "",
        "Throughputs are judged on the CPU time of this single-threaded process (`time.process_time`): on a machine "
        "shared with other jobs it is what the work takes on a core of its own, while the wall clock also counts "
        "the time other jobs held the core. Latencies are wall clock.",
        "",
        "## How each figure is measured",
        "",
        *(f"- {note}" for note in report.notes),
        "",
    ]
    if report.recommendations:
        lines += ["## What to change for the missed targets", "", *(f"- {r}" for r in report.recommendations), ""]
    if report.profiles:
        lines += ["## Profiles of the missed targets (cProfile, cumulative time)", ""]
        for name, text in report.profiles.items():
            lines += [f"### {name}", "", "```", text, "```", ""]
    return "\n".join(lines)


def table(report: Report) -> str:
    width = max(len(f.name) for f in report.measurements)
    rows = [f"{'figure':<{width}}  {'CPU time':>22}  {'wall clock':>22}  {'target':<12}"]
    for f in report.measurements:
        verdict = "" if f.met is None else ("met" if f.met else "NOT MET")
        rows.append(f"{f.name:<{width}}  {f.value:>22}  {f.wall:>22}  {f.target:<12}{verdict}")
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.speed", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--full-run-log",
        type=Path,
        action="append",
        default=[],
        help="output of /usr/bin/time -v music-genre train (repeat for --workers 1 and --workers 2)",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the network's configuration")
    parser.add_argument("--data", default=None, help="the CSV (default: MUSIC_GENRE_CSV or ../shared/data)")
    parser.add_argument("--seed", type=int, default=42, help="split and training seed")
    parser.add_argument("--repeats", type=int, default=7, help="timed batch-inference calls per model")
    parser.add_argument("--train-repeats", type=int, default=3, help="timed trainings per path")
    parser.add_argument("--calls", type=int, default=1000, help="timed one-song calls")
    parser.add_argument("--output", type=Path, default=None, help="default bench/speed.md (bench/output/ with --quick)")
    parser.add_argument("--note", default="", help="a line added to the report")
    parser.add_argument("--quick", action="store_true", help="1 training repeat, 2 inference repeats, 200 calls")
    args = parser.parse_args(argv)
    if not args.config.is_file():
        parser.error(f"--config {args.config}: no such file")
    if args.quick:
        args.train_repeats, args.repeats, args.calls = 1, 2, 200
    if args.output is None:
        args.output = BENCH / "output" / "speed.md" if args.quick else BENCH / "speed.md"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "bench.speed", *(sys.argv[1:] if argv is None else argv)])
    load_before = os.getloadavg()[0]
    report = run(args)
    report.context = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": versions("torch", "transformers", "lightgbm", "pandas"),
        "load": f"1-minute load average {load_before:.2f} at the start, {os.getloadavg()[0]:.2f} at the end",
    }
    print(table(report), flush=True)
    for line in report.recommendations:
        print(f"\nWhat to change: {line}", flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(markdown(report, command, args.note))
    log(f"wrote {args.output}")


if __name__ == "__main__":
    main()
