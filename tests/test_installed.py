"""A non-editable `pip install .` as a user gets it: one namespace in site-packages, the command runs from any
folder, and no default path resolves inside site-packages.

The virtualenv sees this interpreter's packages (torch, transformers, ...), so only the project itself is installed
(from a copy of the checkout, without dependencies); the commands run from a folder outside the checkout.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow
GENERIC_NAMES = ("cli", "training", "modeling", "hub_card", "space")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("installed")
    # A copy of the tracked files: the build writes build/ and *.egg-info beside the sources it builds.
    source = root / "source"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, tracked.decode().split("\0")):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(source)]
    subprocess.run(install, check=True, timeout=600, env=_env())
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    workdir = root / "elsewhere"
    workdir.mkdir()
    return {"python": python, "bin": venv / "bin", "site": Path(site), "workdir": workdir}


def _env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONNOUSERSITE="1", **extra)
    return env


def _run(installed: dict, *command: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(installed["bin"] / "music-genre"), *command],
        cwd=installed["workdir"],
        capture_output=True,
        text=True,
        timeout=600,
        env=_env(**env),
    )


def test_one_namespace_is_installed(installed):
    site = installed["site"]
    assert (site / "music_genre" / "__init__.py").is_file()
    for name in ("modeling", "training", "hub_card", "space"):
        assert (site / "music_genre" / name / "__init__.py").is_file(), name
    assert not [name for name in GENERIC_NAMES if (site / name).exists()]
    where = subprocess.run(
        [
            str(installed["python"]),
            "-c",
            "import music_genre.training.data as d, music_genre.modeling as m; print(d.__file__); print(m.__file__)",
        ],
        cwd=installed["workdir"],
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
    ).stdout.split()
    assert all(Path(path).is_relative_to(site) for path in where), where


def test_help_and_evaluate_run_from_another_folder(installed, csv_path):
    assert "evaluate" in _run(installed, "--help").stdout
    bundled = installed["site"] / "music_genre" / "space" / "model"
    result = _run(installed, "evaluate", "--model", str(bundled), "--json", MUSIC_GENRE_CSV=str(csv_path.resolve()))
    assert result.returncode == 0, result.stderr
    installed_figures = json.loads(result.stdout)["tuned"]
    from music_genre.training.run import evaluate_folder

    # The installed command computes what the checkout computes, on the copy of the model it ships.
    assert installed_figures == json.loads(json.dumps(evaluate_folder(REPO / "space" / "model", str(csv_path))))


def test_no_default_resolves_inside_site_packages(installed):
    # Without MUSIC_GENRE_CSV the default CSV is ../shared/data seen from the working folder, not from the package.
    result = _run(installed, "eda", "--output", "figures")
    assert result.returncode == 2
    assert "shared/data/music_genre.csv" in result.stderr and str(installed["site"]) not in result.stderr
    # bundle writes into the source checkout's space/model only; installed, it asks for --into.
    result = _run(installed, "bundle", "--code-only")
    assert result.returncode == 2 and "--into" in result.stderr
    assert not (installed["site"] / "music_genre" / "space" / "model" / "set-aside").exists()
