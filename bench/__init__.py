"""The project's benchmarks, each run from the repository root as a module: `python -m bench.quality`,
`python -m bench.speed`, `python -m bench.trust`, ... (bench/README.md lists them). Their shared set-up (paths,
the CSV, the network's configuration, the machine lines of the reports) is `bench.common`.

A package's `__init__` runs before any of its modules, so the environment below is in place before a benchmark
imports numpy, torch, LightGBM, scikit-learn or gradio, which read it when they load: one process, one thread (the
figures are per core on a shared machine, and the tiny network trains fastest so), no progress bars, and no Hub.
A variable already set by the caller is kept.
"""

import os

for _name, _value in (
    ("OMP_NUM_THREADS", "1"),
    ("TQDM_DISABLE", "1"),
    ("HF_HUB_OFFLINE", "1"),
    ("HF_DATASETS_OFFLINE", "1"),
    ("HF_EVALUATE_OFFLINE", "1"),
    ("HF_HUB_DISABLE_TELEMETRY", "1"),
    ("GRADIO_ANALYTICS_ENABLED", "False"),
):
    os.environ.setdefault(_name, _value)
