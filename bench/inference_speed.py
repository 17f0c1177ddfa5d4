"""Inference speed of the network alone: the bundled model against the TabM-style and embedding options.

Rows/second of `model(input_features=...)` on 50,000 encoded rows in one call, and the latency of a one-row call,
under `torch.inference_mode()` in one process with one torch thread, for the Space's bundled model (space/model)
and for variants of its configuration (same widths, dropout and input width; untrained weights, which cost the
same): TabM ensembles of k members (`ensemble="tabm"` / `"tabm-mini"`) and piecewise-linear or periodic embeddings
of the numeric columns. Each is measured in float32 and in the bundled model's inference dtype.

    python -m bench.inference_speed                     # bench/inference_speed.md
    python -m bench.inference_speed --quick --output /tmp/inference_speed.md
    python -m bench.inference_speed --bundled-only --compare-with-commit 7127a9f   # the remote code then and now
    python -m bench.inference_speed --bundled-only --reference-commit 3ed9543      # the model bundled then and now

`--compare-with-commit` loads the bundled weights into the remote code of that commit too (its
modeling_genre_ffn.py and configuration_genre_ffn.py, taken with `git show` into a temporary package) and measures
both in turns, so that both see the same load: the cost of how each refreshes its folded inference copy.

Throughputs and latencies are this process's CPU time (`time.process_time`), as bench/speed.py judges
throughputs: on a machine shared with other jobs it is what the work takes on a core of its own.
"""

import argparse
import datetime
import importlib
import inspect
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.common import BENCH, SPACE_MODEL, load_average, log, machine, versions
from music_genre.modeling import GenreFFNConfig, GenreFFNForSequenceClassification
from music_genre.modeling.configuration_genre_ffn import KEY_NAMES
from music_genre.modeling.modeling_genre_ffn import native_bfloat16

OUTPUT = BENCH / "inference_speed.md"
ROWS = 50_000
# The variants of the bundled configuration measured beside it: config overrides.
VARIANTS = {
    "tabm k=4": {"ensemble": "tabm", "num_members": 4},
    "tabm k=8": {"ensemble": "tabm", "num_members": 8},
    "tabm k=4 + piecewise-linear d=16": {"ensemble": "tabm", "num_members": 4, "numeric_embedding": "piecewise-linear"},
    "tabm k=4 + piecewise-linear d=16, widths 256-256-128": {
        "ensemble": "tabm",
        "num_members": 4,
        "numeric_embedding": "piecewise-linear",
        "hidden_sizes": [256, 256, 128],
    },
    "independent k=3 + piecewise-linear d=16": {"numeric_embedding": "piecewise-linear"},
    "tabm-mini k=4 + periodic d=16": {"ensemble": "tabm-mini", "num_members": 4, "numeric_embedding": "periodic"},
}
# Quantile bins of standard-normal columns stand in for bins fitted on training rows (the speed is the same).
BINS = 48


def encoded_rows(config: GenreFFNConfig, rows: int, seed: int = 0) -> torch.Tensor:
    """`rows` encoded rows of the config's width: standard-normal numeric columns, a one-hot key and a 0/1 mode."""
    generator = torch.Generator().manual_seed(seed)
    numeric = config.input_size - len(KEY_NAMES) - 1
    keys = torch.nn.functional.one_hot(torch.randint(len(KEY_NAMES), (rows,), generator=generator), len(KEY_NAMES))
    mode = torch.randint(2, (rows, 1), generator=generator)
    return torch.cat([torch.randn(rows, numeric, generator=generator), keys, mode], dim=1).float()


def variant_model(bundled: GenreFFNForSequenceClassification, overrides: dict) -> GenreFFNForSequenceClassification:
    settings = bundled.config.to_dict() | overrides
    if overrides.get("numeric_embedding") == "piecewise-linear":
        reference = encoded_rows(bundled.config, 20_000, seed=1)
        numeric = bundled.config.input_size - len(KEY_NAMES) - 1
        edges = torch.quantile(reference[:, :numeric], torch.linspace(0, 1, BINS + 1), dim=0).T
        settings["embedding_bins"] = [column.unique().tolist() for column in edges]
    torch.manual_seed(0)
    return GenreFFNForSequenceClassification(GenreFFNConfig(**settings)).eval()


def throughput(model: torch.nn.Module, rows: torch.Tensor, repeats: int) -> float:
    """Rows per CPU second of one call over all `rows`, best of `repeats` after a warm-up."""
    timings = []
    with torch.inference_mode():
        model(input_features=rows)
        for _ in range(repeats):
            start = time.process_time()
            model(input_features=rows)
            timings.append(time.process_time() - start)
    return len(rows) / min(timings)


def latency_ms(model: torch.nn.Module, row: torch.Tensor, calls: int) -> float:
    """Median CPU milliseconds of a one-row call, after 50 warm-up calls (CPU time: on a shared machine the wall
    clock of so short a call mostly measures the other jobs)."""
    timings = []
    with torch.inference_mode():
        for _ in range(50):
            model(input_features=row)
        for _ in range(calls):
            start = time.process_time()
            model(input_features=row)
            timings.append(time.process_time() - start)
    return statistics.median(timings) * 1000


def measure(name: str, model: GenreFFNForSequenceClassification, dtype: str, repeats: int, calls: int) -> dict:
    model.config.inference_dtype = dtype
    model.eval()  # a changed dtype is served from a new folded copy
    rows = encoded_rows(model.config, ROWS)
    result = {
        "model": name,
        "dtype": dtype if dtype == "float32" or native_bfloat16("cpu") else f"{dtype} (float32: not native here)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "rows_per_s": throughput(model, rows, repeats),
        "one_row_ms": latency_ms(model, rows[:1], calls),
    }
    log(f"{name:<42} {dtype:<9} {result['rows_per_s']:>12,.0f} rows/s  {result['one_row_ms']:.3f} ms/row")
    return result


def remote_code_of(commit: str, folder: Path):
    """The model class of `commit`'s remote code, imported from a package written into `folder`."""
    package = folder / "remote_code_then"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("modeling_genre_ffn.py", "configuration_genre_ffn.py"):
        source = subprocess.run(
            ["git", "show", f"{commit}:modeling/{name}"], cwd=BENCH.parent, capture_output=True, text=True, check=True
        )
        (package / name).write_text(source.stdout)
    sys.path.insert(0, str(folder))
    return importlib.import_module("remote_code_then.modeling_genre_ffn").GenreFFNForSequenceClassification


def compare_in_turns(commit: str, dtypes: list[str], repeats: int, calls: int) -> list[dict]:
    """The bundled model in `commit`'s remote code and in today's, measured in turns (`repeats` rounds)."""
    with tempfile.TemporaryDirectory() as folder:
        models = {
            f"bundled, remote code of {commit}": remote_code_of(commit, Path(folder)).from_pretrained(SPACE_MODEL),
            "bundled, remote code now": GenreFFNForSequenceClassification.from_pretrained(SPACE_MODEL),
        }
        return in_turns(models, dtypes, repeats, calls)


def bundled_model_of(commit: str, folder: Path) -> GenreFFNForSequenceClassification:
    """The model bundled in space/model at `commit` (its weights and config, run by today's remote code)."""
    archive = subprocess.run(
        ["git", "archive", commit, "space/model"], cwd=BENCH.parent, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return GenreFFNForSequenceClassification.from_pretrained(folder / "space" / "model")


def in_turns(models: dict, dtypes: list[str], repeats: int, calls: int) -> list[dict]:
    """Each model in each dtype, measured in turns (`repeats` rounds), so that all see the same load; the best of
    the rounds, as for every other figure."""
    best: dict[tuple[str, str], dict] = {}
    for _ in range(repeats):
        for dtype in dtypes:
            for name, model in models.items():
                result = measure(name, model.eval(), dtype, 1, calls // repeats)
                key = (name, dtype)
                if key not in best:
                    best[key] = result
                else:
                    best[key]["rows_per_s"] = max(best[key]["rows_per_s"], result["rows_per_s"])
                    best[key]["one_row_ms"] = min(best[key]["one_row_ms"], result["one_row_ms"])
    return list(best.values())


def markdown(results: list[dict], command: str, load: str, note: str) -> str:
    bundled = {r["dtype"]: r["rows_per_s"] for r in results if r["model"] == "bundled"}
    lines = [
        "# Inference speed of the network",
        "",
        f"- Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- Command: `{command}`",
        f"- Machine: {machine()}; one process, one torch thread; {versions('torch', 'transformers')}",
        f"- Load: 1-minute load average {load}",
        *([f"- Note: {note}"] if note else []),
        "",
        f"The model alone on {ROWS:,} encoded rows in one call (rows per CPU second, best of several calls) and one "
        "encoded row per call (median CPU time). `bundled` is space/model; the variants keep its widths (unless "
        "named), dropout and input width and change what the row names; piecewise-linear embeddings use "
        f"{BINS} quantile bins.",
        "",
        "| model | dtype | parameters | rows/s | vs bundled | one row (CPU ms) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in results:
        ratio = r["rows_per_s"] / bundled[r["dtype"]] if r["dtype"] in bundled else float("nan")
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['parameters']:,} | {r['rows_per_s']:,.0f} | {ratio:.2f}x "
            f"| {r['one_row_ms']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.inference_speed",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--repeats", type=int, default=7, help="timed 50,000-row calls per model and dtype")
    parser.add_argument("--calls", type=int, default=2000, help="timed one-row calls per model and dtype")
    parser.add_argument("--bundled-only", action="store_true", help="the bundled model only")
    parser.add_argument(
        "--compare-with-commit", default=None, metavar="COMMIT", help="also the bundled model in that commit's code"
    )
    parser.add_argument(
        "--reference-commit",
        metavar="COMMIT",
        help="also measure the model bundled at COMMIT (e.g. before a regeneration), in turns with today's",
    )
    parser.add_argument("--output", type=Path, default=OUTPUT, help="default bench/inference_speed.md")
    parser.add_argument("--note", default="", help="a line added to the report")
    parser.add_argument("--quick", action="store_true", help="2 repeats and 300 calls")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.calls = 2, 300
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(1)
    load_start = load_average()
    bundled = GenreFFNForSequenceClassification.from_pretrained(SPACE_MODEL).eval()
    dtypes = sorted({"float32", bundled.config.inference_dtype})
    if args.reference_commit:  # today's bundled model and the one bundled at that commit, in turns
        with tempfile.TemporaryDirectory() as folder:
            reference = bundled_model_of(args.reference_commit, Path(folder))
            models = {"bundled": bundled, f"bundled at {args.reference_commit}": reference}
            results = in_turns(models, dtypes, args.repeats, args.calls)
    else:
        results = [measure("bundled", bundled, dtype, args.repeats, args.calls) for dtype in dtypes]
    if not args.bundled_only:
        if "ensemble" not in inspect.signature(GenreFFNConfig.__init__).parameters:
            raise SystemExit("this GenreFFNConfig has no ensemble option: measure with --bundled-only")
        for name, overrides in VARIANTS.items():
            model = variant_model(bundled, overrides)
            results += [measure(name, model, dtype, args.repeats, args.calls) for dtype in dtypes]
    if args.compare_with_commit:
        results += compare_in_turns(args.compare_with_commit, dtypes, args.repeats, args.calls)
    command = shlex.join(["python", "-m", "bench.inference_speed", *(sys.argv[1:] if argv is None else argv)])
    report = markdown(results, command, f"{load_start} at the start, {load_average()} at the end", args.note)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(report, flush=True)


if __name__ == "__main__":
    main()
