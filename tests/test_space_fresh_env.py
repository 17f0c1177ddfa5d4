"""The staged Space as the Hub builds it: its requirements.txt alone in a fresh virtualenv, its app.py started from
the staged folder alone (the project not importable), both API endpoints called over HTTP.

Slow (a fresh virtualenv gets torch, transformers and gradio, about a minute from pip's cache) but part of the
default run: CI runs plain `python -m pytest`. pip reads the requirements file as the Hub does, so its
`--extra-index-url` for the CPU torch wheel is used as written; where that index cannot be reached pip says so and
takes `torch==...` from the indexes it can reach (here, PyPI and pip's configured wheel folder).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from huggingface_hub import SpaceCard

from music_genre.hub_card.publish import stage
from tests.conftest import GENRES, REPO_ID, SPACE_REPO_ID

pytestmark = pytest.mark.slow
INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 180


@pytest.fixture(scope="module")
def staged_space(small_run, tmp_path_factory) -> Path:
    staged = stage(
        small_run,
        tmp_path_factory.mktemp("hub"),
        REPO_ID,
        space_repo_id=SPACE_REPO_ID,
        data=str(small_run.parent / "slice.csv"),
    )["space"]
    # The Space's folder alone, away from the project's checkout.
    return Path(shutil.copytree(staged, tmp_path_factory.mktemp("space-repo") / "space"))


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that would let the project's packages be imported."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PYTHONNOUSERSITE="1", **extra)
    return env


@pytest.fixture(scope="module")
def space_python(staged_space, tmp_path_factory) -> Path:
    """A fresh virtualenv holding what the Hub installs for the Space: requirements.txt and gradio==sdk_version."""
    venv = tmp_path_factory.mktemp("venv") / "space-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    sdk_version = SpaceCard.load(staged_space / "README.md").data.sdk_version
    # --no-compile: byte-compiling torch's files takes longer than the install and is not what is tested.
    command = [str(python), "-m", "pip", "install", "--quiet", "--no-compile", "--retries", "1", "--timeout", "20"]
    command += ["-r", "requirements.txt", f"gradio=={sdk_version}"]
    result = subprocess.run(
        command, cwd=staged_space, env=clean_env(), capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S
    )
    assert result.returncode == 0, f"the Space's requirements do not install:\n{result.stderr[-3000:]}"
    yield python
    shutil.rmtree(venv, ignore_errors=True)  # about 1.4 GB


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def space_url(staged_space, space_python, tmp_path_factory):
    port = free_port()
    home = tmp_path_factory.mktemp("space-home")
    env = clean_env(
        GRADIO_SERVER_PORT=str(port),
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(home / "hf"),
    )
    log = (home / "app.log").open("w")
    # Started from the staged folder: app.py, requirements.txt, README.md and the bundled model/ only.
    app = subprocess.Popen(
        [str(space_python), "app.py"], cwd=staged_space, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            assert app.poll() is None, f"app.py exited with {app.returncode}:\n{(home / 'app.log').read_text()[-3000:]}"
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, f"app.py did not listen within {START_TIMEOUT_S} s"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/"
    finally:
        app.terminate()
        try:
            app.wait(timeout=5)
        except subprocess.TimeoutExpired:
            app.kill()
        log.close()


def test_the_staged_requirements_install_the_cpu_torch_and_no_project_package(space_python):
    listed = subprocess.run(
        [str(space_python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True, check=True
    ).stdout
    names = {line.split("==")[0].lower() for line in listed.splitlines()}
    assert {"torch", "gradio", "captum"} <= names and "music-genre-ffn" not in names
    assert not [name for name in names if name.startswith("nvidia-")]  # the CPU build: no CUDA libraries
    probe = "import importlib.util as u; print([m for m in ('modeling', 'training', 'hub_card') if u.find_spec(m)])"
    found = subprocess.run(
        [str(space_python), "-c", probe], capture_output=True, text=True, check=True, cwd="/", env=clean_env()
    )
    assert found.stdout.strip() == "[]"


def test_the_staged_space_answers_both_endpoints(space_url, staged_space, raw_rows, tmp_path):
    from gradio_client import Client, handle_file

    from music_genre.space.app import EXAMPLES

    client = Client(space_url, verbose=False)
    # Positional inputs in the app's own order (its first example song): robust to renamed parameters.
    song, summary, chart = client.predict(*EXAMPLES[0][3], api_name="/predict_song")
    scores = {item["label"]: item["confidence"] for item in song["confidences"]}
    assert song["label"] in GENRES and set(scores) <= set(GENRES)
    assert scores[song["label"]] == max(scores.values())
    # captum came from the requirements: the chart of what moved the top genre has a bar per feature.
    assert len(chart["data"]) == 13 and f"**Why {song['label']}:**" in summary

    table = tmp_path / "songs.csv"
    pd.DataFrame(raw_rows).to_csv(table, index=False)
    results, *_ = client.predict(handle_file(str(table)), api_name="/predict_csv")
    assert len(results["data"]) == len(raw_rows)
    genre_column = results["headers"].index("predicted_genre")
    assert {row[genre_column] for row in results["data"]} <= set(GENRES)


def test_a_model_of_the_datas_own_genres_runs_in_the_spaces_environment(space_python, spotify_run, spotify_tables):
    """The pipeline of a run on the Hub's Spotify table (lower-case genres, one with a space and an accent, key as
    an integer, mode as 1/0) in the Space's fresh virtualenv, where the project was never installed."""
    import json

    from music_genre.modeling import FEATURE_NAMES
    from tests.conftest import REMOTE_LOAD

    folder = spotify_run / "model"
    rows = json.loads(spotify_tables["table"].head(4)[list(FEATURE_NAMES)].to_json(orient="records"))
    env = clean_env(HF_HUB_OFFLINE="1", HF_HOME=str(folder.parent / "hf-home"))
    result = subprocess.run(
        [str(space_python), "-c", REMOTE_LOAD, str(folder), json.dumps(rows)],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    labels = [item["label"] for row in loaded["pipeline"] for item in row]
    assert len(loaded["pipeline"]) == 4 and set(labels) <= set(spotify_tables["genres"])
    assert loaded["pipeline"] == loaded["pipeline_by_task"]
