"""The model card, generated from a small real run folder, checked as a Hub user would read it."""

import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

import huggingface_hub
import pandas as pd
import pytest
from huggingface_hub import ModelCard

from music_genre.hub_card.card import (
    FIGURES,
    KAGGLE_DATASET,
    PAPER_SOURCE,
    published_data_report,
    read_model_repo,
    read_run,
    render_model_card,
    render_reports,
    run_genres,
    without_machine_paths,
    write_model_card,
)
from tests.conftest import DATASET_REPO_ID, GENRES, REPO, REPO_ID


@pytest.fixture(scope="module")
def card_path(small_run, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("card") / "README.md"
    write_model_card(small_run, path, repo_id=REPO_ID, dataset_repo_id=DATASET_REPO_ID)
    return path


@pytest.fixture(scope="module")
def staged_model(small_run, tmp_path_factory) -> Path:
    """The model repo a push stages: the card, its reports and the run's records."""
    from music_genre.hub_card.publish import stage_model

    return stage_model(read_run(small_run), REPO_ID, DATASET_REPO_ID, tmp_path_factory.mktemp("staged") / "model")


def card_and_reports(staged_model: Path) -> str:
    """What a reader of the model repo reads: the card, then reports/training.md and reports/evaluation.md."""
    names = ("README.md", "reports/training.md", "reports/evaluation.md")
    return "\n".join((staged_model / name).read_text() for name in names)


def test_card_metadata_round_trips_to_the_runs_numbers(card_path, small_run):
    metrics = json.loads((small_run / "metrics.json").read_text())
    card = ModelCard.load(card_path)
    data = card.data
    assert data.license == "apache-2.0" and data.library_name == "transformers"
    assert data.pipeline_tag == "tabular-classification"
    assert {"tabular-classification", "music", "genre-classification", "spotify", "pytorch"} <= set(data.tags)
    assert data.datasets == [DATASET_REPO_ID]
    results = {result.metric_type: result for result in data.eval_results}
    assert results["accuracy"].metric_value == metrics["tuned"]["accuracy"]
    assert results["f1"].metric_value == metrics["tuned"]["f1_weighted"]
    assert results["roc_auc"].metric_value == metrics["tuned"]["roc_auc_macro"]
    for result in results.values():
        assert result.task_type == "tabular-classification"
        assert result.dataset_type == DATASET_REPO_ID and result.dataset_split == "test"
    assert data.to_dict()["model-index"][0]["name"] == "music-genre-ffn"


def test_card_holds_the_results_the_data_and_the_way_to_reproduce(staged_model, small_run):
    metrics = json.loads((small_run / "metrics.json").read_text())
    report = json.loads((small_run / "data_report.json").read_text())
    run_info = json.loads((small_run / "model" / "training_run.json").read_text())
    text = card_and_reports(staged_model)
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
    assert without_machine_paths(run_info["command"]) in text and run_info["data_sha256"] in text
    trials = pd.read_csv(small_run / "trials.csv")
    completed, pruned = (int((trials["state"] == state).sum()) for state in ("COMPLETE", "PRUNED"))
    assert f"{len(trials)} trials ({completed} completed, {pruned} pruned)" in text
    config = json.loads((small_run / "model" / "config.json").read_text())
    assert config["inference_dtype"] == "bfloat16"
    assert "the networks compute in bfloat16" in text
    # The re-evaluation that chose the final trial: each candidate's scores on further splits, the chosen one marked.
    reevaluation = metrics["search"]["reevaluation"]
    chosen = metrics["search"]["chosen_trial"]
    assert f"trial {chosen} had the best mean" in text
    for candidate in reevaluation["candidates"]:
        scores = ", ".join(f"{v:.4f}" for v in candidate["further_splits"])
        marked = " (chosen)" if candidate["slot"] == chosen else ""
        assert f"| {candidate['slot']}{marked} | {candidate['search_validation']:.4f} | {scores} |" in text
    # The architecture as the config has it: a TabM-style ensemble and embedded numeric columns are named.
    assert ("TabM-style ensemble" in text) == (config["ensemble"] != "independent" and config["num_members"] > 1)
    assert ("embedded" in text) == (config["numeric_embedding"] is not None)


# Sections huggingface_hub's template marks optional that this card must have all the same (issue 15).
WANTED_OPTIONAL = {
    "Model Sources", "Technical Specifications", "Model Architecture and Objective", "Compute Infrastructure",
    "Hardware", "Software", "Citation", "Preprocessing", "Speeds, Sizes, Times",
}  # fmt: skip


def headings(markdown: str) -> list[tuple[int, str]]:
    """(level, title) of each Markdown heading outside code blocks and the YAML header."""
    body = re.sub(r"```.*?```", "", markdown.split("\n---\n", 1)[-1], flags=re.S)
    return [(len(marks), title.strip()) for marks, title in re.findall(r"^(#{1,6}) (.+)$", body, re.M)]


def test_card_has_the_sections_of_the_hubs_model_card_template_in_its_order(card_path):
    template = Path(huggingface_hub.__file__).parent / "templates" / "modelcard_template.md"
    expected = []
    for level, title in headings(template.read_text()):
        optional = title.endswith("[optional]")
        title = title.removesuffix("[optional]").strip()
        if level > 1 and (not optional or title in WANTED_OPTIONAL):
            expected.append((level, title))
    assert len(expected) > 20  # the template's sections were read
    found, position = headings(card_path.read_text()), 0
    for heading in expected:
        assert heading in found[position:], f"{heading} missing or out of the template's order"
        position = found.index(heading, position) + 1


def test_card_reports_the_runs_evaluation_compute_and_software_and_cites_the_paper(card_path, small_run):
    metrics = json.loads((small_run / "metrics.json").read_text())
    text = card_path.read_text()
    evaluation = metrics["evaluation"]
    assert (
        f"Its figures were computed on {evaluation['rows']} rows in {evaluation['dtype']} on {evaluation['device']}, "
        f"{evaluation['hardware']}" in text
    )
    assert "AVX-512 BF16. " not in text  # no dtype or hardware claim the run does not record
    assert f"- **Hardware Type:** {metrics['compute']['hardware']}" in text
    software = text.split("#### Software\n", 1)[1].split("\n## ", 1)[0]
    for name, installed in metrics["software"].items():
        assert f"{name} {installed}" in software
    # The paper by its exact title, in the prose, the sources and the BibTeX, with its author, code and model; no
    # venue or year, which its text does not state.
    assert text.count(PAPER_SOURCE["title"]) >= 3
    sources = text.split("### Model Sources", 1)[1].split("## Uses", 1)[0]
    for value in (PAPER_SOURCE["authors"], PAPER_SOURCE["affiliation"], PAPER_SOURCE["code"], PAPER_SOURCE["model"]):
        assert value in sources
    entry = re.search(r"@misc\{jiang_music_genre_ffn,(.*?)\n\}", text, re.S)[1]
    assert "author       = {Yuze Jiang}," in entry and PAPER_SOURCE["model"] in entry
    assert not re.search(r"^\s*(year|journal|booktitle)\s*=", entry, re.M)


def test_card_names_a_hub_dataset_id_never_the_kaggle_slug(small_run, tmp_path):
    derived = write_model_card(small_run, tmp_path / "derived.md", repo_id=REPO_ID).data
    assert derived.datasets == ["someone/prediction-of-music-genre-cleaned"]
    assert {result.dataset_type for result in derived.eval_results} == {"someone/prediction-of-music-genre-cleaned"}
    local = write_model_card(small_run, tmp_path / "local.md")  # no repo: no Hub dataset to name, so no model-index
    assert local.data.eval_results is None and local.data.datasets is None
    for path in (tmp_path / "derived.md", tmp_path / "local.md"):
        assert KAGGLE_DATASET not in path.read_text().split("\n---\n", 1)[0]  # the YAML header


def python_blocks(card_path: Path) -> list[str]:
    """The card's Python code blocks, as a user copies them."""
    return re.findall(r"```python\n(.*?)```", card_path.read_text(), re.S)


def test_card_usage_code_runs_on_the_model_folder(card_path, small_run):
    """The Python snippet a user copies from the card, pointed at the run's model folder, and the Auto classes the
    card says load it the same way."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification

    (block,) = python_blocks(card_path)
    namespace = {}
    exec(block.replace(REPO_ID, str(small_run / "model")).replace("classifier(row", "top = classifier(row"), namespace)
    assert [set(genre) for genre in namespace["top"]] == [{"label", "score"}] * 3
    model = AutoModelForSequenceClassification.from_pretrained(small_run / "model", trust_remote_code=True).eval()
    extractor = AutoFeatureExtractor.from_pretrained(small_run / "model", trust_remote_code=True)
    with torch.no_grad():
        probabilities = model(**extractor([namespace["row"]], return_tensors="pt")).logits.softmax(-1)
    assert namespace["top"][0]["label"] == model.config.id2label[int(probabilities.argmax())]
    said = "`AutoModelForSequenceClassification` and `AutoFeatureExtractor` load it the same way"
    assert said in card_path.read_text()


def test_card_usage_code_is_as_the_formatter_leaves_it(card_path):
    """Code a user copies from the card needs no reformatting (the project's ruff settings)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is in the dev extra")
    for block in python_blocks(card_path):
        formatted = subprocess.run(
            [ruff, "format", "--stdin-filename", "card_usage.py", "-"],
            input=block, capture_output=True, text=True, check=True, cwd=REPO,
        ).stdout  # fmt: skip
        assert formatted == block


def test_every_file_the_card_and_its_reports_link_is_in_the_staged_folder(staged_model, small_run):
    linked = set()
    for page in ("README.md", "reports/training.md", "reports/evaluation.md"):
        for link in re.findall(r"\]\(([^)]+)\)", (staged_model / page).read_text()):
            target = link.strip("<>").split("#", 1)[0]
            if target and not target.startswith(("http://", "https://")):
                path = ((staged_model / page).parent / target).resolve()
                assert path.is_file(), f"{page} links {link}, which the staged model repo lacks"
                linked.add(path.relative_to(staged_model.resolve()).as_posix())
    assert {f"figures/{name}" for name in FIGURES} <= linked  # every figure of the run is shown somewhere
    for name in FIGURES:
        assert (staged_model / "figures" / name).read_bytes() == (small_run / "figures" / name).read_bytes()
    assert {"reports/metrics.json", "reports/trials.csv", "reports/data_report.json"} <= linked
    assert (staged_model / "reports" / "metrics.json").read_bytes() == (small_run / "metrics.json").read_bytes()
    assert (staged_model / "reports" / "trials.csv").read_bytes() == (small_run / "trials.csv").read_bytes()


def test_the_staged_data_report_counts_shared_songs_without_listing_them(staged_model, small_run):
    report = json.loads((small_run / "data_report.json").read_text())
    published = json.loads((staged_model / "reports" / "data_report.json").read_text())
    songs = report["pairs_under_several_genres_list"]
    assert songs and "pairs_under_several_genres_list" not in published
    assert published["pairs_under_several_genres_examples"] == songs[:5]
    assert {key: value for key, value in published.items() if key in report} == {
        key: value for key, value in report.items() if key in published
    }
    genres = run_genres(read_run(small_run))
    counted = {}
    for song in songs:
        for pair in itertools.combinations(sorted(song["genres"], key=genres.index), 2):
            counted[pair] = counted.get(pair, 0) + 1
    shared = {tuple(entry["genres"]): entry["pairs"] for entry in published["genre_pairs_sharing_songs"]}
    assert shared == counted and list(shared.values()) == sorted(shared.values(), reverse=True)
    assert published_data_report(published, genres) == published  # already published: unchanged


def test_the_staged_card_renders_again_from_the_repo_alone(staged_model, small_run):
    """What `bundle --card-only` relies on: the records a model repo ships give back its card and reports."""
    run = read_model_repo(staged_model)
    assert render_model_card(run, REPO_ID, DATASET_REPO_ID) == (staged_model / "README.md").read_text()
    for name, text in render_reports(run, REPO_ID, DATASET_REPO_ID).items():
        assert text == (staged_model / "reports" / name).read_text()
    assert run_genres(run) == run_genres(read_run(small_run))


def test_the_card_is_short_and_its_reports_hold_the_long_tables(staged_model):
    card = (staged_model / "README.md").read_text()
    assert len(card.splitlines()) <= 300
    assert "| genre | precision | recall | F1 | support |" not in card  # in reports/evaluation.md


def test_published_command_names_no_folder_host_or_password():
    command = (
        "music-genre train --data /home/me/data/music_genre.csv --output /home/me/runs/w2 "
        "--storage postgresql://me:secret@db.example/optuna --workers 2"
    )
    assert without_machine_paths(command) == (
        "music-genre train --data music_genre.csv --output w2 --storage postgresql://optuna --workers 2"
    )
    assert without_machine_paths("music-genre train --storage postgresql://me:secret@db.example?sslmode=x") == (
        "music-genre train --storage postgresql://..."
    )
    relative = "music-genre train --data ../shared/data/music_genre.csv --output runs/w2"
    assert without_machine_paths(relative) == "music-genre train --data music_genre.csv --output runs/w2"
    assert without_machine_paths("music-genre train --data someone/music-genre-data") == (
        "music-genre train --data someone/music-genre-data"
    )


def markdown_table(text: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header line is `header`."""
    lines = text.splitlines()
    start = lines.index(header) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_card_reports_calibration_genre_sets_and_importance_from_the_run(staged_model, small_run):
    metrics = json.loads((small_run / "metrics.json").read_text())
    config = json.loads((small_run / "model" / "config.json").read_text())
    text = card_and_reports(staged_model)
    calibration, conformal = metrics["calibration"], metrics["conformal"]
    assert f"temperature T = {calibration['temperature']:.4f} fitted on the validation split" in text
    assert markdown_table(text, "| test split | ECE | NLL | Brier |") == [
        [f"{stage} temperature", *(f"{calibration[stage][key]:.4f}" for key in ("ece", "nll", "brier"))]
        for stage in ("before", "after")
    ]
    levels = markdown_table(text, "| level | coverage | mean set size | lowest per-genre coverage |")
    assert [row[:3] for row in levels] == [
        [level, f"{level_metrics['coverage']:.4f}", f"{level_metrics['mean_set_size']:.2f}"]
        for level, level_metrics in conformal.items()
    ]
    per_genre = conformal["0.9"]["per_genre_coverage"]
    lowest = min(per_genre, key=per_genre.get)
    assert levels[1][3] == f"{per_genre[lowest]:.3f} ({lowest})"
    assert markdown_table(text, "| genre | coverage |") == [[g, f"{c:.3f}"] for g, c in per_genre.items()]
    # The summary puts the mean set size at 0.9 beside top-1 accuracy.
    summary = text.split("#### Summary", 1)[1].split("###", 1)[0]
    assert (
        f"Top-1 accuracy {metrics['tuned']['accuracy']:.4f}; the 90% genre sets (`coverage=0.9`) hold\n"
        f"{conformal['0.9']['mean_set_size']:.2f} genres on average and contain the true genre for "
        f"{conformal['0.9']['coverage']:.4f} of the test songs" in summary
    )
    # What the guarantee rests on.
    assert f"calibrated on the {config['conformal']['n_calibration']} rows of the validation split" in text
    for assumption in ("Marginal coverage.", "Exchangeable data.", "Calibrated on the validation split.",
                       "Non-randomised APS."):  # fmt: skip
        assert f"- **{assumption}**" in text
    importance = metrics["permutation_importance"]["features"]
    ranked = sorted(importance, key=lambda name: -importance[name]["mean"])
    assert markdown_table(text, "| feature | mean | std |") == [
        [name, f"{importance[name]['mean']:.4f}", f"{importance[name]['std']:.4f}"] for name in ranked
    ]
    # Each figure sits in its section of the evaluation report.
    evaluation = (staged_model / "reports" / "evaluation.md").read_text()
    section = evaluation.split("## Calibration and genre sets", 1)[1].split("## Model examination", 1)
    assert "](../figures/reliability_diagram.png)" in section[0]
    assert "](../figures/permutation_importance.png)" in section[1]


def test_a_run_from_before_calibration_says_it_was_not_recorded(small_run):
    run = read_run(small_run)
    for key in ("calibration", "conformal", "permutation_importance"):
        del run.metrics[key]
    run.figures = [
        name for name in run.figures if name not in ("reliability_diagram.png", "permutation_importance.png")
    ]
    text = render_model_card(run)
    assert "Calibration: not recorded" in text and "Genre sets: not recorded" in text
    assert "Permutation importance: not recorded by this run." in text
    assert f"Top-1 accuracy {run.metrics['tuned']['accuracy']:.4f}; genre sets: not recorded by this run." in text
    assert "reliability_diagram.png" not in text and "### Calibration and genre sets" in text
    evaluation = render_reports(run)["evaluation.md"]
    assert "Calibration: not recorded" in evaluation and "Genre sets: not recorded" in evaluation
    assert "Permutation importance: not recorded by this run." in evaluation
    assert "reliability_diagram.png" not in evaluation
