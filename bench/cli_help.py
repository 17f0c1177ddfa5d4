"""How long `music-genre --help` and each command's `--help` take, each in a fresh Python process.

The target is under 1 s: the CLI imports its heavy stack (torch, transformers, datasets, gradio) only inside the
command that runs. Each figure is the median wall clock of several fresh `python -m music_genre ... --help`
processes (interpreter start-up included); a bare `python -c pass` is timed the same way for reference. Writes
`bench/cli_help.md`.

    python -m bench.cli_help
"""

import argparse
import datetime
import os
import platform
import statistics
import subprocess
import sys
import time

from bench.common import BENCH, REPO, load_average

OUTPUT = BENCH / "cli_help.md"
COMMANDS = ([], ["train"], ["evaluate"], ["eda"], ["serve"], ["push"])
TARGET_S = 1.0


def time_process(arguments: list[str], repeats: int) -> float:
    """Median seconds of `python ARGUMENTS` run `repeats` times, each a fresh process."""
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *arguments], cwd=REPO, env=environment, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(repeats: int) -> dict:
    """Median seconds of each command's `--help` and of a bare interpreter, with the machine they ran on."""
    baseline = time_process(["-c", "pass"], repeats)
    rows = []
    for command in COMMANDS:
        seconds = time_process(["-m", "music_genre", *command, "--help"], repeats)
        shown = " ".join(["music-genre", *command, "--help"])
        rows.append((shown, seconds))
        print(f"{shown:<32} {seconds * 1000:7.0f} ms")
    print(f"{'python -c pass':<32} {baseline * 1000:7.0f} ms")
    return {
        "date": datetime.date.today().isoformat(),
        "repeats": repeats,
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "python": platform.python_version(),
        "commands": rows,
        "baseline_s": baseline,
    }


def render(measured: dict) -> str:
    """The report `bench/cli_help.md` of what `measure` returned."""
    rows, baseline = measured["commands"], measured["baseline_s"]
    slowest = max(seconds for _, seconds in rows)
    lines = [
        "# CLI help time",
        "",
        f"Measured {measured['date']} with `python -m bench.cli_help` ({measured['repeats']} fresh "
        f"processes per line, median). Machine: {measured['cpus']} CPU cores, shared with other jobs (load average "
        f"{measured['load_average']}); Python {measured['python']}.",
        "",
        f"Target: under {TARGET_S:.0f} s for every line. Slowest: {slowest * 1000:.0f} ms "
        f"({'met' if slowest < TARGET_S else 'NOT met'}).",
        "",
        "| command | median wall clock |",
        "| --- | --- |",
        *(f"| `{shown}` | {seconds * 1000:.0f} ms |" for shown, seconds in rows),
        f"| `python -c pass` (interpreter start-up alone) | {baseline * 1000:.0f} ms |",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.cli_help", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="fresh processes per command (default: %(default)s)")
    args = parser.parse_args()
    OUTPUT.write_text(render(measure(args.repeats)))
    print(f"wrote {OUTPUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
