"""The model card, generated from a small real run folder, checked as a Hub user would read it."""

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from huggingface_hub import ModelCard

from hub_card.card import FIGURES, write_model_card
from modeling import GENRES

REPO_ID = "someone/music-genre-ffn"
DATASET_REPO_ID = "someone/music-genre-data"
PAPER = {
    "initial": {"accuracy": 0.5514, "f1_weighted": 0.5392, "roc_auc_macro": 0.9115},
    "tuned": {"accuracy": 0.5952, "f1_weighted": 0.5937, "roc_auc_macro": 0.9338},
}


def build_small_run(csv_path: Path, root: Path) -> Path:
    """A run folder in the training contract, from real pieces: a slice of the real CSV, the real loader,
    splits and metrics, a tiny network trained one epoch, a real Optuna trials table and small real PNGs.

    Built once per session under `root` (the test modules share it).
    """
    import matplotlib.pyplot as plt
    import optuna
    import torch

    from modeling import GenreFeatureExtractor, GenreFFNConfig, GenreFFNForSequenceClassification, save_model_folder
    from training.data import balanced_class_weights, load_data, prepare_splits
    from training.scoring import test_metrics

    run = root / "run"
    if (run / "metrics.json").is_file():
        return run
    # 150 raw rows per genre, every row of 20 songs filed under several genres, and two empty rows: the slice
    # is written at test time, never kept in the repo.
    frame = pd.read_csv(csv_path, dtype={"tempo": str})
    rows = frame.dropna(how="all")
    genres_per_pair = rows.groupby(["artist_name", "track_name"])["music_genre"].nunique()
    shared = genres_per_pair[genres_per_pair > 1].index[:20]
    shared_rows = rows.set_index(["artist_name", "track_name"]).loc[shared].reset_index()
    sample = rows.groupby("music_genre", group_keys=False).sample(150, random_state=0)
    empty = pd.DataFrame([[np.nan] * len(frame.columns)] * 2, columns=frame.columns)
    sliced = pd.concat([sample, shared_rows[frame.columns], empty]).sample(frac=1.0, random_state=1)
    csv = root / "slice.csv"
    sliced.to_csv(csv, index=False)

    data = load_data(csv)
    extractor = GenreFeatureExtractor()
    prepared = prepare_splits(data, extractor, seed=0)
    torch.manual_seed(0)
    config = GenreFFNConfig(hidden_sizes=[32], class_weights=balanced_class_weights(prepared.labels["train"]))
    model = GenreFFNForSequenceClassification(config)

    def test_figures() -> dict:
        model.eval()
        with torch.no_grad():
            logits = model(input_features=torch.as_tensor(prepared.features["test"])).logits
        return test_metrics(prepared.labels["test"], logits.softmax(-1).numpy().astype(np.float64))

    initial = test_figures()
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    features, labels = torch.as_tensor(prepared.features["train"]), torch.as_tensor(prepared.labels["train"])
    for batch in torch.randperm(len(labels)).split(64):
        optimizer.zero_grad()
        model(input_features=features[batch], labels=labels[batch]).loss.backward()
        optimizer.step()
    tuned = test_figures()

    save_model_folder(model.eval(), extractor, run / "model")
    command = ["music-genre", "train", "--data", str(csv), "--output", str(run), "--seed", "0", "--n-trials", "3"]
    run_info = {
        "seed": 0,
        "split_mode": "stratified",
        "data_sha256": data.sha256,
        "data_source": str(csv),
        "command": shlex.join(command),
    }
    _write_json(run / "model" / "training_run.json", run_info)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True)
        trial.suggest_int("n_layers", 2, 4)
        trial.suggest_float("dropout", 0.0, 0.5)
        trial.suggest_categorical("batch_size", [32, 64, 128])
        if trial.number == 1:
            raise optuna.TrialPruned()
        return 0.3 + trial.number / 100

    study.optimize(objective, n_trials=3)
    study.trials_dataframe().to_csv(run / "trials.csv", index=False)

    initial_hyperparameters = {"hidden_sizes": [32], "dropout": 0.2, "learning_rate": 0.01, "epochs": 0}
    tuned_hyperparameters = {"hidden_sizes": [32], "dropout": 0.2, "learning_rate": 0.01, "epochs": 1}
    metrics = {
        "seed": 0,
        "split_mode": "stratified",
        "data_sha256": data.sha256,
        "best_hyperparameters": tuned_hyperparameters,
        "search": {"n_trials": 3, "objective": "validation accuracy"},
        "initial": {**initial, "hyperparameters": initial_hyperparameters},
        "tuned": {**tuned, "hyperparameters": tuned_hyperparameters},
        "paper": PAPER,
    }
    _write_json(run / "metrics.json", metrics)
    split_sizes = {name: len(rows) for name, rows in prepared.indices.items()}
    _write_json(run / "data_report.json", {**data.report, "sha256": data.sha256, "split_sizes": split_sizes})
    _write_json(run / "splits.json", {name: rows.tolist() for name, rows in prepared.indices.items()})

    (run / "figures").mkdir()
    for i, name in enumerate(FIGURES):
        figure, axes = plt.subplots(figsize=(1, 1), dpi=20)
        axes.plot([0, 1], [0, i])
        figure.savefig(run / "figures" / name)
        plt.close(figure)
    return run


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, default=lambda value: value.item()) + "\n")


@pytest.fixture(scope="session")
def run_dir(csv_path, tmp_path_factory) -> Path:
    return build_small_run(csv_path, tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def card_path(run_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("card") / "README.md"
    write_model_card(run_dir, path, repo_id=REPO_ID, dataset_repo_id=DATASET_REPO_ID)
    return path


def test_card_metadata_round_trips_to_the_runs_numbers(card_path, run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    card = ModelCard.load(card_path)
    data = card.data
    assert data.license == "apache-2.0" and data.library_name == "transformers"
    assert data.pipeline_tag == "tabular-classification"
    assert {"tabular-classification", "music", "genre", "spotify", "pytorch"} <= set(data.tags)
    assert data.datasets == [DATASET_REPO_ID]
    results = {result.metric_type: result for result in data.eval_results}
    assert results["accuracy"].metric_value == metrics["tuned"]["accuracy"]
    assert results["f1"].metric_value == metrics["tuned"]["f1_weighted"]
    assert results["roc_auc"].metric_value == metrics["tuned"]["roc_auc_macro"]
    for result in results.values():
        assert result.task_type == "tabular-classification"
        assert result.dataset_type == DATASET_REPO_ID and result.dataset_split == "test"
    assert data.to_dict()["model-index"][0]["name"] == "music-genre-ffn"


def test_card_holds_the_results_the_data_and_the_way_to_reproduce(card_path, run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    report = json.loads((run_dir / "data_report.json").read_text())
    run_info = json.loads((run_dir / "model" / "training_run.json").read_text())
    text = card_path.read_text()
    lines = text.splitlines()
    header = lines.index("| test split | initial | tuned | paper, initial | paper, tuned |")
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[header + 2 : header + 7]]
    rows = {cells[0]: cells[1:] for cells in table}
    initial, tuned = metrics["initial"]["accuracy"], metrics["tuned"]["accuracy"]
    assert rows["accuracy"] == [f"{initial:.4f}", f"{tuned:.4f}", "0.5514", "0.5952"]
    assert rows["weighted precision"][2:] == ["-", "-"]
    assert rows["macro one-vs-rest ROC AUC"][2:] == ["0.9115", "0.9338"]
    for genre in GENRES:
        f1 = metrics["tuned"]["per_genre"][genre]["f1"]
        assert re.search(rf"^\| {genre} \| .* \| {f1:.4f} \| \d+ \|$", text, re.M), genre
    assert f"| rows read | {report['rows_in']} |" in text
    assert f"| dropped: entirely empty | {report['rows_dropped']['entirely_empty']} |" in text
    assert f"| (artist, track) pairs filed under two or more genres | {report['pairs_under_several_genres']} |" in text
    assert f'pipeline(model="{REPO_ID}", trust_remote_code=True)' in text
    assert run_info["command"] in text and run_info["data_sha256"] in text
    assert "3 trials (2 completed, 1 pruned)" in text


def test_card_usage_code_runs_on_the_model_folder(card_path, run_dir):
    """The two Python snippets a user copies from the card, pointed at the run's model folder."""
    blocks = re.findall(r"```python\n(.*?)```", card_path.read_text(), re.S)
    assert len(blocks) == 2
    one_row = {}
    exec(blocks[0].replace(REPO_ID, str(run_dir / "model")).replace("classifier(\n", "top = classifier(\n"), one_row)
    assert [set(genre) for genre in one_row["top"]] == [{"label", "score"}] * 3
    batch = {}
    exec(blocks[1].replace(REPO_ID, str(run_dir / "model")), batch)
    assert tuple(batch["probabilities"].shape) == (1, len(GENRES))
    assert one_row["top"][0]["label"] == GENRES[int(batch["probabilities"].argmax())]


def test_every_figure_the_card_links_is_in_the_staged_folder(run_dir, tmp_path):
    from hub_card.publish import stage

    staged = stage(run_dir, REPO_ID, out_dir=tmp_path)["model"]
    text = (staged / "README.md").read_text()
    links = re.findall(r"\]\(([^)]+)\)", text)
    local = [link for link in links if not link.startswith(("http://", "https://", "#"))]
    assert sorted(local) == sorted(f"figures/{name}" for name in FIGURES)
    for link in local:
        assert (staged / link).read_bytes() == (run_dir / link).read_bytes()
