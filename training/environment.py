"""What a run records about the machine and software it ran on, for `metrics.json` and the model card.

Nothing here names a path, a host or a user: only hardware models, versions and timings.
"""

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch

from music_genre.modeling.modeling_genre_ffn import native_bfloat16

# The distributions a run's metrics depend on, by their PyPI names.
SOFTWARE = (
    "torch",
    "transformers",
    "datasets",
    "optuna",
    "scikit-learn",
    "imbalanced-learn",
    "evaluate",
    "numpy",
    "pandas",
)


def software_versions() -> dict[str, str]:
    """Python's version and each package's installed version ("not installed" where absent)."""
    versions = {"python": platform.python_version()}
    for name in SOFTWARE:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware(device_type: str = "cpu") -> str:
    """The processor a computation ran on and whether it computes bfloat16 natively."""
    if device_type == "cuda":
        name = torch.cuda.get_device_name()
    else:
        name = f"{cpu_name()} ({os.cpu_count() or 1} logical CPUs)"
    bf16 = "native bfloat16" if native_bfloat16(device_type) else "no native bfloat16"
    return f"{name}, {bf16}"


def evaluation_record(model: torch.nn.Module, rows: int, split: str = "test") -> dict:
    """How a model's metrics on `split` were computed: rows, the dtype the network computed in, device, hardware."""
    device_type = next(model.parameters()).device.type
    bfloat16 = model.config.inference_dtype == "bfloat16" and native_bfloat16(device_type)
    return {
        "split": split,
        "rows": int(rows),
        "dtype": "bfloat16" if bfloat16 else "float32",
        "device": device_type,
        "hardware": hardware(device_type),
    }


def compute_record(
    wall_seconds: float, search_seconds: float, final_seconds: float, workers: int, torch_threads: int
) -> dict:
    """The run's own timings, its search workers and the torch threads of its training (each search worker has
    one)."""
    return {
        "wall_seconds": round(wall_seconds, 1),
        "search_seconds": round(search_seconds, 1),
        "final_training_seconds": round(final_seconds, 1),
        "workers": workers,
        "torch_threads": torch_threads,
        "hardware": hardware("cpu"),
    }
