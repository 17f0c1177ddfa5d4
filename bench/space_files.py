"""How long hostile CSV files hold the Space's CSV worker: `GenreApp.predict_table` in-process, wall clock.

Files, written at run time to a temporary folder (real rows sampled from the dataset, never committed):
- the issue's file: a header, then one data row with about 1 MB of extra fields, then 19 ordinary rows;
- a 50 MB file of the widest accepted shape: 32 columns (the limit), rows up to the 100,000-row limit;
- a 50 MB file of one line without a line break;
- 100,000 ordinary rows (the row limit).

    python -m bench.space_files     # writes bench/space_files.md
"""

import datetime
import os
import tempfile
import time
from pathlib import Path

from bench.common import BENCH, SPACE_MODEL, load_average, read_raw_rows
from music_genre.space.app import MAX_COLUMNS, MAX_FILE_MB, MAX_ROWS, GenreApp

OUTPUT = BENCH / "space_files.md"


def write_files(folder: Path) -> dict[str, Path]:
    real = read_raw_rows()
    files = {}
    lines = real.head(20).to_csv(index=False).splitlines()
    files["one row with ~1 MB of extra fields, then 19 rows"] = folder / "wide_row.csv"
    files["one row with ~1 MB of extra fields, then 19 rows"].write_text(
        "\n".join([lines[0], lines[1] + ",1" * 500_000, *lines[2:], ""])
    )
    rows = real.sample(MAX_ROWS, replace=True, random_state=0).reset_index(drop=True)
    # Extra columns padded so that the file comes just under the size limit.
    room = int(MAX_FILE_MB * 2**20 * 0.98) - len(rows.to_csv(index=False).encode())
    padding = max(room // MAX_ROWS // (MAX_COLUMNS - rows.shape[1]) - 1, 1)
    widest = rows.assign(**{f"x{i}": "x" * padding for i in range(MAX_COLUMNS - rows.shape[1])})
    files[f"{MAX_COLUMNS} columns x {MAX_ROWS:,} rows"] = folder / "widest.csv"
    widest.to_csv(files[f"{MAX_COLUMNS} columns x {MAX_ROWS:,} rows"], index=False)
    files["one line, no line break"] = folder / "one_line.csv"
    files["one line, no line break"].write_text(lines[0] + "," + "1," * (MAX_FILE_MB * 2**20 // 2 - 200))
    files[f"{MAX_ROWS:,} ordinary rows"] = folder / "ordinary.csv"
    rows.to_csv(files[f"{MAX_ROWS:,} ordinary rows"], index=False)
    return files


def measure() -> dict:
    """Each hostile file's size, the seconds `predict_table` held the worker and the status it gave, with the
    machine it ran on."""
    app = GenreApp(SPACE_MODEL)
    files = []
    with tempfile.TemporaryDirectory(prefix="space-files-") as scratch:
        for name, path in write_files(Path(scratch)).items():
            start = time.perf_counter()
            status = app.predict_table(str(path))[3]
            seconds = time.perf_counter() - start
            files.append({"file": name, "mb": path.stat().st_size / 2**20, "seconds": seconds, "status": status})
            print(_row(files[-1]))
    return {
        "date": datetime.date.today().isoformat(),
        "cpus": os.cpu_count(),
        "load_average": load_average(),
        "files": files,
    }


def _row(measured: dict) -> str:
    return f"| {measured['file']} | {measured['mb']:.1f} MB | {measured['seconds']:.2f} | {measured['status'][:110]} |"


def render(measured: dict) -> str:
    """The report `bench/space_files.md` of what `measure` returned."""
    lines = ["| file | size | seconds | status |", "|---|---|---|---|", *map(_row, measured["files"])]
    return f"""# Hostile files through the CSV worker

Measured {measured["date"]} with `python -m bench.space_files`: `GenreApp.predict_table` in one
process (what the Space's worker process runs), one torch thread, wall clock; {measured["cpus"]} shared cores (load
average {measured["load_average"]} at the end).

{chr(10).join(lines)}
"""


def main() -> None:
    OUTPUT.write_text(render(measure()))


if __name__ == "__main__":
    main()
