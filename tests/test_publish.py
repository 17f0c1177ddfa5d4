"""Publishing a run: the staged folders load as a user loads the repos, and the upload reaches a stand-in Hub."""

import base64
import fnmatch
import json
import logging
import re
import shutil
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.metadata import version
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
from huggingface_hub import DatasetCard, ModelCard, SpaceCard
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

from music_genre import main
from music_genre.hub_card.card import REPORTS
from music_genre.hub_card.publish import PublishError, push, stage
from music_genre.training.data import load_data, split_indices
from tests.conftest import (
    DATASET_REPO_ID,
    GENRES,
    HUB_FOLDER_FILES,
    REPO_ID,
    SPACE_REPO_ID,
    load_in_clean_process,
)

PLANTED_TOKEN = "hf_PLANTEDtokenThatMustNeverLeak0123456789"
MODEL_FILES = HUB_FOLDER_FILES | {"training_run.json"}
# A stand-in for the Space app (space/app.py belongs to the Space's own tests): it reads MODEL_ID, default model/.
SPACE_APP = """import os
from pathlib import Path

MODEL_ID = os.environ.get("MODEL_ID", str(Path(__file__).parent / "model"))
"""


@pytest.fixture(scope="module")
def space_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("space-source")
    (folder / "app.py").write_text(SPACE_APP)
    (folder / "requirements.txt").write_text("transformers>=5.23,<6\ntorch>=2.13\n")
    return folder


@pytest.fixture(scope="module")
def staged(small_run, space_dir, tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("staged")
    return stage(small_run, out, REPO_ID, DATASET_REPO_ID, SPACE_REPO_ID, space_dir=space_dir, data=slice_of(small_run))


def slice_of(run: Path) -> str:
    """The CSV `small_run` trained on: the run records its file name only, never where it lies."""
    return str(run.parent / "slice.csv")


def files_under(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def test_staged_model_loads_without_the_project_and_predicts_as_in_process(staged, small_run, raw_rows):
    folder = staged["model"]
    figures = {f"figures/{p.name}" for p in (small_run / "figures").iterdir()}
    reports = {f"reports/{name}" for name in ("metrics.json", "trials.csv", "data_report.json")} | {
        f"reports/{name}.md" for name in REPORTS
    }
    assert set(files_under(folder)) == MODEL_FILES | {"README.md", ".gitattributes"} | figures | reports
    remote = load_in_clean_process(folder, raw_rows)
    assert remote["model_class"].startswith("transformers_modules.")
    model = AutoModelForSequenceClassification.from_pretrained(small_run / "model").eval()
    extractor = AutoFeatureExtractor.from_pretrained(small_run / "model")
    with torch.no_grad():
        local = model(**extractor(raw_rows, return_tensors="pt")).logits.softmax(-1).numpy()
    np.testing.assert_allclose(remote["probabilities"], local, rtol=1e-5, atol=1e-6)
    best = [model.config.id2label[i] for i in local.argmax(-1)]  # the run's genres, in its slice's order
    assert [row[0]["label"] for row in remote["pipeline"]] == best


def test_staged_dataset_loads_with_the_runs_split(staged, small_run):
    report = json.loads((small_run / "data_report.json").read_text())
    run_info = json.loads((small_run / "model" / "training_run.json").read_text())
    published = datasets.load_dataset(str(staged["dataset"]))
    assert {name: part.num_rows for name, part in published.items()} == report["split_sizes"]
    features = published["train"].features
    assert isinstance(features["genre"], datasets.ClassLabel) and features["genre"].names == run_info["genres"]
    assert sorted(run_info["genres"]) == sorted(GENRES)  # the slice's genres, in the order its rows name them
    assert features["tempo"].dtype == "float64" and features["key"].dtype == "string"
    assert sum(published[name]["tempo"].count(None) for name in published) == report["missing_values"]["tempo"]

    # The training loader reads the folder back as the run's exact rows, split as the run split them.
    assert run_info["data_source"] == "slice.csv"
    original = load_data(slice_of(small_run))
    positions = json.loads((small_run / "splits.json").read_text())
    reloaded = load_data(str(staged["dataset"]))
    assert reloaded.sha256 == run_info["data_sha256"]
    fixed = split_indices(reloaded, seed=123, mode="group")
    unknown_artists = 0
    for name in ("train", "validation", "test"):
        expected = original.frame.iloc[positions[name]].reset_index(drop=True)
        # The source's placeholder artist is published as a missing value.
        placeholder = expected["artist_name"] == "empty_field"
        unknown_artists += int(placeholder.sum())
        expected["artist_name"] = expected["artist_name"].mask(placeholder)
        pd.testing.assert_frame_equal(reloaded.frame.iloc[fixed[name]].reset_index(drop=True), expected)
    assert unknown_artists > 0  # the slice holds some, so the check above means something
    assert sum(published[name]["artist_name"].count(None) for name in published) == unknown_artists


def test_dataset_card_states_license_source_columns_and_what_was_dropped(staged):
    from music_genre.hub_card.publish import COLUMN_MEANINGS

    card = DatasetCard.load(staged["dataset"] / "README.md")
    assert card.data.license == "other"
    assert card.data.license_name and card.data.license_link.startswith("https://www.kaggle.com/datasets/")
    text = card.text
    for name, meaning in COLUMN_MEANINGS.items():
        assert re.search(rf"^\| `{name}` \| [^|]+ \| {re.escape(meaning)} \|$", text, re.M), name
    assert "| `instance_id` |" in text and "| `obtained_date` |" in text
    assert "@misc{prediction_of_music_genre," in text


def machine_paths(small_run: Path) -> set[str]:
    """Absolute paths of the machine that made a run: its folder, its data and where both live."""
    from tests.conftest import REPO

    run_info = json.loads((small_run / "model" / "training_run.json").read_text())
    data = Path(run_info["data_source"]).resolve()
    paths = {small_run, small_run.resolve(), data, data.parent, small_run.parent.resolve(), REPO}
    return {str(path) for path in paths if path.is_absolute() and len(path.parts) > 2}


def test_no_staged_file_holds_a_path_of_the_machine(staged, small_run):
    paths = machine_paths(small_run)
    assert str(small_run.resolve()) in paths and len(paths) >= 4
    for kind, folder in staged.items():
        for name, content in files_under(folder).items():
            for path in paths:
                assert path.encode() not in content, f"{kind}/{name} holds {path}"
    published = json.loads((staged["model"] / "training_run.json").read_text())
    assert published["data_source"] == "slice.csv" and "--data slice.csv --output run " in published["command"]


def test_every_staged_repo_sends_its_binary_files_through_lfs(staged):
    for kind, folder in staged.items():
        patterns = [line.split()[0] for line in (folder / ".gitattributes").read_text().splitlines()]
        assert all("filter=lfs" in line for line in (folder / ".gitattributes").read_text().splitlines())
        binary = [path for path in folder.rglob("*") if path.suffix in (".safetensors", ".parquet", ".png")]
        assert binary, kind
        for path in binary:
            assert any(fnmatch.fnmatch(path.name, pattern) for pattern in patterns), f"{kind}: {path.name}"


def test_staged_space_bundles_the_model_its_app_loads_by_default(staged, space_dir):
    folder = staged["space"]
    files = files_under(folder)
    assert files["app.py"] == (space_dir / "app.py").read_bytes()
    assert files["requirements.txt"] == (space_dir / "requirements.txt").read_bytes()
    # The bundled model is the model repo as staged, its card included: the app reads the test accuracy there.
    bundled = {name.removeprefix("model/"): content for name, content in files.items() if name.startswith("model/")}
    assert bundled == files_under(staged["model"])
    card = SpaceCard.load(folder / "README.md").data
    assert (card.sdk, card.sdk_version, card.app_file) == ("gradio", version("gradio"), "app.py")
    # The Hub's default Python (3.10) cannot install the requirements: the card names the one the tests use.
    assert card.python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert card.models == [REPO_ID] and card.datasets == [DATASET_REPO_ID]


def test_a_missing_space_app_or_an_app_importing_the_project_is_refused(small_run, tmp_path):
    source = tmp_path / "space"
    source.mkdir()
    (source / "requirements.txt").write_text("gradio\n")

    def stage_space() -> None:
        stage(
            small_run,
            tmp_path / "out",
            REPO_ID,
            space_repo_id=SPACE_REPO_ID,
            space_dir=source,
            data=slice_of(small_run),
        )

    with pytest.raises(PublishError, match=r"the Space app is missing: .*app\.py"):
        stage_space()
    (source / "app.py").write_text("from music_genre.modeling import GENRES\n")
    with pytest.raises(PublishError, match="imports music_genre"):
        stage_space()


def test_the_projects_own_space_app_stages_by_default(small_run, tmp_path):
    from tests.conftest import REPO

    folder = stage(small_run, tmp_path, REPO_ID, space_repo_id=SPACE_REPO_ID, data=slice_of(small_run))["space"]
    for name in ("app.py", "requirements.txt"):
        assert (folder / name).read_bytes() == (REPO / "space" / name).read_bytes()
    requirements = [line.split("#")[0].strip() for line in (folder / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in requirements if line]
    # The CPU build of torch, pinned; gradio left to the Hub, which installs gradio==sdk_version itself.
    assert requirements[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert f"torch=={version('torch').split('+')[0]}" in requirements
    assert not [line for line in requirements if line.startswith("gradio")]
    weights = "model/model.safetensors"
    assert (folder / weights).read_bytes() == (small_run / weights).read_bytes()


class FakeHub(ThreadingHTTPServer):
    """The Hub endpoints huggingface_hub's `create_repo` and `upload_folder` call, on 127.0.0.1.

    Every file is declared "regular" at preupload, so its bytes arrive base64-encoded in the commit.
    """

    def __init__(self, fail: bool = False):
        super().__init__(("127.0.0.1", 0), FakeHubHandler)
        self.fail = fail
        self.created: list[dict] = []
        self.files: dict[tuple[str, str], dict[str, bytes]] = {}
        self.commits: list[str] = []
        self.authorizations: set[str | None] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class FakeHubHandler(BaseHTTPRequestHandler):
    server: FakeHub

    def do_POST(self) -> None:
        hub = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        hub.authorizations.add(self.headers.get("Authorization"))
        if hub.fail:
            return self.reply(500, {"error": "Internal Error"})
        path = self.path.split("?")[0]
        repo_path = re.fullmatch(r"/api/(model|dataset|space)s/([^/]+/[^/]+)/(preupload|commit)/main", path)
        if path == "/api/repos/create":
            request = json.loads(body)
            hub.created.append(request)
            prefix = {"model": "", "dataset": "datasets/", "space": "spaces/"}[request.get("type") or "model"]
            return self.reply(200, {"url": f"{hub.url}/{prefix}{request['organization']}/{request['name']}"})
        if path == "/api/validate-yaml":
            return self.reply(200, {})
        if repo_path and repo_path[3] == "preupload":
            files = json.loads(body)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return self.reply(200, {"files": modes})
        if repo_path and repo_path[3] == "commit":
            kind, repo = repo_path[1], repo_path[2]
            received = hub.files.setdefault((kind, repo), {})
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "header":
                    hub.commits.append(item["value"]["summary"])
                elif item["key"] == "file":
                    received[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                else:
                    return self.reply(400, {"error": f"this stand-in takes inline files only, got {item['key']}"})
            return self.reply(200, {"commitUrl": f"{hub.url}/{repo}/commit/{'0' * 40}", "commitOid": "0" * 40})
        return self.reply(404, {"error": f"no route {path}"})

    def reply(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass  # keep the test output to what the client logs


@pytest.fixture
def fake_hub(request, monkeypatch):
    # The tests run offline (conftest); only this loopback server is reachable.
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    hub = FakeHub(fail=getattr(request, "param", False))
    thread = threading.Thread(target=hub.serve_forever, daemon=True)
    thread.start()
    yield hub
    hub.shutdown()
    hub.server_close()


@pytest.fixture
def own_run(small_run, tmp_path) -> Path:
    """A copy of the run folder (and its CSV beside it): `push` stages into RUN/hub."""
    shutil.copy2(slice_of(small_run), tmp_path / "slice.csv")
    return Path(shutil.copytree(small_run, tmp_path / "run"))


def push_args(run: Path, endpoint: str, *extra: str) -> list[str]:
    command = ["push", "--run", str(run), "--repo-id", REPO_ID, "--dataset-repo-id", DATASET_REPO_ID]
    command += ["--data", slice_of(run)]
    return [*command, "--endpoint", endpoint, *extra]


def test_push_uploads_each_staged_folder_byte_for_byte(fake_hub, own_run, space_dir, monkeypatch, caplog, capsys):
    monkeypatch.setenv("HF_TOKEN", PLANTED_TOKEN)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    staged = push(
        own_run,
        REPO_ID,
        DATASET_REPO_ID,
        SPACE_REPO_ID,
        endpoint=fake_hub.url,
        space_dir=space_dir,
        data=slice_of(own_run),
    )

    assert [(r["type"], r["organization"], r["name"]) for r in fake_hub.created] == [
        ("model", "someone", "music-genre-ffn"),
        ("dataset", "someone", "music-genre-data"),
        ("space", "someone", "music-genre-space"),
    ]
    assert fake_hub.created[2]["sdk"] == "gradio" and {r["visibility"] for r in fake_hub.created} == {"public"}
    repos = {"model": REPO_ID, "dataset": DATASET_REPO_ID, "space": SPACE_REPO_ID}
    for kind, repo in repos.items():
        assert staged[kind] == own_run / "hub" / kind
        assert fake_hub.files[(kind, repo)] == files_under(staged[kind]), kind
    run_info = json.loads((own_run / "model" / "training_run.json").read_text())
    assert set(fake_hub.commits) == {
        f"music-genre run: seed 0, stratified split, data sha256 {run_info['data_sha256'][:12]}"
    }
    assert fake_hub.authorizations == {f"Bearer {PLANTED_TOKEN}"}

    # The token went to the Hub and nowhere else: no staged file, log record or printed line holds it.
    for folder in staged.values():
        for name, content in files_under(folder).items():
            assert PLANTED_TOKEN.encode() not in content, name
    assert caplog.records and all(PLANTED_TOKEN not in record.getMessage() for record in caplog.records)
    printed = capsys.readouterr()
    assert PLANTED_TOKEN not in printed.out + printed.err


def test_missing_token_is_a_clear_error_and_keeps_the_staged_folders(fake_hub, own_run, monkeypatch, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(push_args(own_run, fake_hub.url)) == 2
    error = capsys.readouterr().err
    assert error.startswith("music-genre push: error: no Hugging Face token: set HF_TOKEN") and error.count("\n") == 1
    assert not fake_hub.created
    assert (own_run / "hub" / "model" / "README.md").is_file()
    assert len(list((own_run / "hub" / "dataset" / "data").glob("*.parquet"))) == 3


@pytest.mark.parametrize("fake_hub", [True], indirect=True)
def test_a_failing_hub_is_a_clear_error_and_keeps_the_staged_folders(fake_hub, own_run, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", PLANTED_TOKEN)
    assert main(push_args(own_run, fake_hub.url)) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"music-genre push: error: upload of the model repo {REPO_ID} failed: ")
    assert "500" in error and error.count("\n") == 1 and PLANTED_TOKEN not in error
    assert f"staged folders kept in {own_run / 'hub'}" in error
    staged = files_under(own_run / "hub")
    assert "model/README.md" in staged and "model/model.safetensors" in staged
    assert PLANTED_TOKEN.encode() not in b"".join(staged.values())


def test_stage_only_uploads_nothing(fake_hub, own_run, tmp_path, capsys):
    assert main(push_args(own_run, fake_hub.url, "--stage-only", str(tmp_path / "out"))) == 0
    assert not fake_hub.created and not fake_hub.authorizations
    assert (tmp_path / "out" / "model" / "README.md").is_file() and (
        tmp_path / "out" / "dataset" / "README.md"
    ).is_file()
    assert "staged the model repo" in capsys.readouterr().out


def test_bundle_regenerates_the_spaces_model_from_a_run_and_keeps_it_on_failure(small_run, tmp_path, capsys):
    from tests.conftest import REPO

    into = tmp_path / "space" / "model"
    into.mkdir(parents=True)
    (into / "old.txt").write_text("the previous bundled copy\n")
    assert main(["bundle", "--run", str(small_run), "--into", str(into), "--repo-id", REPO_ID]) == 0
    assert not (into / "old.txt").exists() and not (into / ".gitattributes").exists()
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "training_run.json"):
        assert (into / name).read_bytes() == (small_run / "model" / name).read_bytes()
    for source in (REPO / "modeling").glob("*_genre_ffn.py"):
        assert (into / source.name).read_text() == source.read_text()
    card = ModelCard.load(into / "README.md")
    assert {r.metric_type: r.metric_value for r in card.data.eval_results}["accuracy"] == (
        json.loads((small_run / "metrics.json").read_text())["tuned"]["accuracy"]
    )
    figures = sorted(p.name for p in (small_run / "figures").iterdir())
    assert sorted(p.name for p in (into / "figures").iterdir()) == figures
    assert [p.name for p in into.parent.iterdir()] == ["model"]  # no temporary folder left beside it
    before = {p.name: p.read_bytes() for p in into.iterdir() if p.is_file()}
    capsys.readouterr()
    assert main(["bundle", "--run", str(tmp_path / "no-run"), "--into", str(into)]) == 2
    assert "no-run" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in into.iterdir() if p.is_file()} == before


def test_bundle_code_only_refreshes_the_remote_code_and_keeps_the_weights_and_card(small_run, tmp_path, capsys):
    from tests.conftest import REPO

    into = Path(shutil.copytree(small_run / "model", tmp_path / "space" / "model"))
    stale = into / "modeling_genre_ffn.py"
    stale.write_text("# an older copy\n")
    kept = {name: (into / name).read_bytes() for name in ("config.json", "model.safetensors", "README.md")}
    assert main(["bundle", "--code-only", "--into", str(into)]) == 0
    assert "refreshed modeling_genre_ffn.py" in capsys.readouterr().out
    assert stale.read_text() == (REPO / "modeling" / "modeling_genre_ffn.py").read_text()
    assert {name: (into / name).read_bytes() for name in kept} == kept
    assert main(["bundle", "--code-only", "--into", str(into)]) == 0
    assert "was current" in capsys.readouterr().out
    assert main(["bundle", "--code-only", "--into", str(tmp_path)]) == 2  # not a model folder: refused, nothing written
    assert (
        "is not a bundled model folder" in capsys.readouterr().err and not (tmp_path / "modeling_genre_ffn.py").exists()
    )


def test_bundle_ships_the_checkouts_remote_code_not_the_runs(small_run, tmp_path, monkeypatch):
    import music_genre.hub_card.publish as publish

    newer = tmp_path / "modeling"
    shutil.copytree(publish.MODELING_DIR, newer)
    (newer / "pipeline_genre_ffn.py").write_text((newer / "pipeline_genre_ffn.py").read_text() + "# a newer line\n")
    monkeypatch.setattr(publish, "MODELING_DIR", newer)
    into = tmp_path / "space" / "model"
    assert main(["bundle", "--run", str(small_run), "--into", str(into)]) == 0
    assert (into / "pipeline_genre_ffn.py").read_text().endswith("# a newer line\n")
    assert (into / "model.safetensors").read_bytes() == (small_run / "model" / "model.safetensors").read_bytes()


def test_bundle_card_only_renders_the_card_again_from_the_records_the_bundle_ships(small_run, tmp_path, capsys):
    into = tmp_path / "space" / "model"
    assert main(["bundle", "--run", str(small_run), "--into", str(into), "--repo-id", REPO_ID]) == 0
    rendered = {name: (into / name).read_bytes() for name in ("README.md", "reports/evaluation.md")}
    (into / "README.md").write_text("an edited card\n")
    (into / "reports" / "evaluation.md").unlink()
    capsys.readouterr()
    assert main(["bundle", "--card-only", "--into", str(into), "--repo-id", REPO_ID]) == 0
    assert "rendered README.md, reports/evaluation.md in" in capsys.readouterr().out
    assert {name: (into / name).read_bytes() for name in rendered} == rendered
    assert main(["bundle", "--card-only", "--into", str(into), "--repo-id", REPO_ID]) == 0
    assert "was current" in capsys.readouterr().out
    (into / "reports" / "metrics.json").unlink()
    assert main(["bundle", "--card-only", "--into", str(into), "--repo-id", REPO_ID]) == 2
    assert "reports/metrics.json" in capsys.readouterr().err
